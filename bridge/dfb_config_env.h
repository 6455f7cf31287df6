/*  dfb_config_env: configuration from the environment. Every config key has
    a variable, DFBRIDGE_ + its dotted path upper-cased with '_' between the
    segments (bot.privateKey.path -> DFBRIDGE_BOT_PRIVATEKEY_PATH); the names
    are derived from the one list of keys (the BDK keys below, the bridge.*
    table of dfb_config.c), never written out. The variables are laid over
    the parsed YAML document key by key, so a value from the environment
    goes through the same parsing and the same checks as one from the file.
    Internal to dfb_config (see README "Configuration from the environment"). */
#ifndef DFB_CONFIG_ENV_H
#define DFB_CONFIG_ENV_H

#include <stddef.h>
#include <yaml.h>

#include "dfb_config.h"

/*  Flags of a key. */
#define DFB_KEYF_SECRET 1u /* its value is never shown (--check: ***); env: wiped, unset */
#define DFB_KEYF_FLOW 2u   /* a list or a map: the variable is YAML flow text ([a, b], {k: v}) */

/*  The i-th key of the whole config as a dotted path ("bot.privateKey.path",
    "bridge.journal.fsync") into path, and its flags. Returns 0, or -1 when
    i is past the last key (or path is too small). */
int dfb_config_env_key(size_t i, char *path, size_t len, unsigned *flags);

/*  The variable of a dotted path: DFBRIDGE_ + upper case, '.' -> '_'.
    Returns 0, or -1 when buf is too small. Works for any path. */
int dfb_config_env_name(const char *path, char *buf, size_t len);

/*  The variables that were applied: path and variable of each. */
typedef struct {
    char *path;
    char *var;
} dfb_config_env_var_t;

typedef struct {
    dfb_config_env_var_t *v;
    size_t n;
} dfb_config_env_t;

/*  Lays every DFBRIDGE_* variable of the process environment over doc
    (whose root must be a mapping, possibly empty): the key's value is
    replaced, or added with the mappings above it. An empty variable is
    "not set" and changes nothing. A secret variable's bytes are wiped in
    the environment and the variable is removed once copied. Records what
    was applied in *env (freed with dfb_config_env_free). Returns the number
    of variables applied, or -1 with "config: DFBRIDGE_X: ..." in err (an
    unknown name, a bad flow value). */
int dfb_config_env_overlay(yaml_document_t *doc, dfb_config_env_t *env, char *err, size_t errlen);

/*  Whether the environment has any DFBRIDGE_* variable. */
int dfb_config_env_present(void);

/*  Names the variable in a config error ("config: <path>: ...") when the
    key came from the environment ("config: bridge.sndhwm (from
    DFBRIDGE_BRIDGE_SNDHWM): ..."), or, for "<key>: required", adds the
    variable that would set it. err is edited in place. */
void dfb_config_env_explain(const dfb_config_env_t *env, char *err, size_t errlen);

/*  The provenance of every key that is set (merged doc, env record, the
    file's path or NULL): a new array in *out (*n entries), secret values
    as DFB_SECRET_MASK; bridge.* keys not set show their default. Returns 0,
    or -1 when out of memory. Free with dfb_config_origins_free. */
int dfb_config_env_origins(yaml_document_t *doc, const dfb_config_env_t *env, const char *file,
                           dfb_config_origin_t **out, size_t *n);

void dfb_config_origins_free(dfb_config_origin_t *o, size_t n);
void dfb_config_env_free(dfb_config_env_t *env);

/*  Self-test: names unique, rule cases (part of bridge_config). */
int dfb_config_env_test(int verbose);

#endif
