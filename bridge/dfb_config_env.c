/*  dfb_config_env: DFBRIDGE_* variables laid over the config document (see
    dfb_config_env.h). The keys are one list: the BDK keys here, written
    once as data (a client key stands for the global one and the four
    clients', a retry key for the three retry blocks), then the bridge.*
    table of dfb_config.c. */
#include "dfb_config_env.h"
#include "dfb_secret.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

extern char **environ;

#define ENV_PREFIX "DFBRIDGE_"
#define K_CLIENT 0x100u /* under the root and each client section */
#define K_RETRY 0x200u  /* in each retry block */

/*  The BDK's keys the bridge reads (the ones it accepts and ignores, such
    as connectionPoolMax or app, have no variable). */
static const struct {
    const char *name;
    unsigned flags;
} s_bdk_keys[] = {
    {"scheme", K_CLIENT},
    {"host", K_CLIENT},
    {"port", K_CLIENT},
    {"context", K_CLIENT},
    {"proxy.host", K_CLIENT},
    {"proxy.port", K_CLIENT},
    {"proxy.username", K_CLIENT},
    {"proxy.password", K_CLIENT | DFB_KEYF_SECRET},
    /* header values may be API keys */
    {"defaultHeaders", K_CLIENT | DFB_KEYF_FLOW | DFB_KEYF_SECRET},
    {"bot.username", 0},
    {"bot.privateKey.path", 0},
    {"bot.privateKey.content", DFB_KEYF_SECRET},
    {"bot.certificate.path", 0},
    {"bot.certificate.content", DFB_KEYF_SECRET},
    {"bot.certificate.password", DFB_KEYF_SECRET},
    {"ssl.trustStore.path", 0},
    {"datafeed.version", 0},
    {"datafeed.tag", 0},
    {"datafeed.includeInvisible", 0},
    {"datafeed.idFilePath", 0},
    {"datahose.tag", 0},
    {"datahose.eventTypes", DFB_KEYF_FLOW},
    {"maxAttempts", K_RETRY},
    {"initialIntervalMillis", K_RETRY},
    {"multiplier", K_RETRY},
    {"maxIntervalMillis", K_RETRY},
};

static const char *const s_clients[] = {"", "pod.", "agent.", "keyManager.", "sessionAuth."};
static const char *const s_retries[] = {"retry.", "datafeed.retry.", "datahose.retry."};

#define N(a) (sizeof(a) / sizeof((a)[0]))

int
dfb_config_env_key(size_t i, char *path, size_t len, unsigned *flags)
{
    for (size_t k = 0; k < N(s_bdk_keys); k++) {
        const char *const *pre = NULL;
        size_t npre = 1;
        if (s_bdk_keys[k].flags & K_CLIENT)
            pre = s_clients, npre = N(s_clients);
        else if (s_bdk_keys[k].flags & K_RETRY)
            pre = s_retries, npre = N(s_retries);
        if (i >= npre) {
            i -= npre;
            continue;
        }
        int n = snprintf(path, len, "%s%s", pre ? pre[i] : "", s_bdk_keys[k].name);
        *flags = s_bdk_keys[k].flags & (DFB_KEYF_SECRET | DFB_KEYF_FLOW);
        return n < 0 || (size_t)n >= len ? -1 : 0;
    }
    size_t nb;
    const dfb_config_key_t *keys = dfb_config_keys(&nb);
    if (i >= nb)
        return -1;
    int n = snprintf(path, len, "bridge.%s", keys[i].name);
    *flags = keys[i].type == DFB_KEY_MAP ? DFB_KEYF_FLOW : 0; /* bridge.commandsAllow */
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

int
dfb_config_env_name(const char *path, char *buf, size_t len)
{
    size_t n = strlen(ENV_PREFIX);
    if (len < n + strlen(path) + 1)
        return -1;
    memcpy(buf, ENV_PREFIX, n);
    for (const char *p = path; *p; p++)
        buf[n++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    buf[n] = '\0';
    return 0;
}

/*  The key whose variable is name: its path and flags, or -1. */
static int
key_of_var(const char *name, size_t namelen, char *path, size_t len, unsigned *flags)
{
    char var[160];
    for (size_t i = 0; dfb_config_env_key(i, path, len, flags) == 0; i++)
        if (dfb_config_env_name(path, var, sizeof var) == 0 && strlen(var) == namelen &&
            memcmp(var, name, namelen) == 0)
            return 0;
    return -1;
}

/*  Edit distance, for "did you mean" (short strings only). */
static size_t
distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 120 || lb > 120)
        return (size_t)-1;
    size_t row[121];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

int
dfb_config_env_present(void)
{
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, ENV_PREFIX, strlen(ENV_PREFIX)) == 0)
            return 1;
    return 0;
}

/* ---- the document ---------------------------------------------------------- */

static const char *
scalar_of(yaml_document_t *d, int id)
{
    yaml_node_t *n = yaml_document_get_node(d, id);
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int
is_null_node(yaml_node_t *n)
{
    if (!n)
        return 1;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = (const char *)n->data.scalar.value;
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcasecmp(s, "null") == 0;
}

/*  Copies node id of src (a parsed flow value) into dst; returns its id in
    dst, or 0 (out of memory, too deep). */
static int
copy_node(yaml_document_t *dst, yaml_document_t *src, int id, int depth, int *budget)
{
    yaml_node_t *n = yaml_document_get_node(src, id);
    /* aliases may repeat a node: the budget bounds the copies (an alias bomb) */
    if (!n || depth > 16 || --*budget < 0)
        return 0;
    if (n->type == YAML_SCALAR_NODE)
        return yaml_document_add_scalar(dst, NULL, n->data.scalar.value, (int)n->data.scalar.length,
                                        n->data.scalar.style);
    if (n->type == YAML_SEQUENCE_NODE) {
        int s = yaml_document_add_sequence(dst, NULL, YAML_FLOW_SEQUENCE_STYLE);
        for (yaml_node_item_t *it = n->data.sequence.items.start;
             s && it < n->data.sequence.items.top; it++) {
            int c = copy_node(dst, src, *it, depth + 1, budget);
            if (!c || !yaml_document_append_sequence_item(dst, s, c))
                return 0;
        }
        return s;
    }
    int m = yaml_document_add_mapping(dst, NULL, YAML_FLOW_MAPPING_STYLE);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; m && p < n->data.mapping.pairs.top;
         p++) {
        int k = copy_node(dst, src, p->key, depth + 1, budget);
        int v = k ? copy_node(dst, src, p->value, depth + 1, budget) : 0;
        if (!v || !yaml_document_append_mapping_pair(dst, m, k, v))
            return 0;
    }
    return m;
}

/*  Sets path (dotted) under the root mapping to node value: every pair of
    that name gets it, or one is appended; a missing (or non-mapping)
    section above it becomes a new mapping. Returns 0, or -1. Node pointers
    move when nodes are added: only ids are kept across additions. */
static int
set_path(yaml_document_t *d, const char *path, int value)
{
    char buf[256];
    if (strlen(path) >= sizeof buf)
        return -1;
    strcpy(buf, path);
    int cur = 1; /* the root */
    char *save = NULL;
    for (char *seg = strtok_r(buf, ".", &save); seg; seg = strtok_r(NULL, ".", &save)) {
        int last = save == NULL || *save == '\0';
        yaml_node_t *m = yaml_document_get_node(d, cur);
        if (!m || m->type != YAML_MAPPING_NODE)
            return -1;
        int next = 0;
        size_t npairs = (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
        for (size_t i = 0; i < npairs; i++) {
            m = yaml_document_get_node(d, cur);
            yaml_node_pair_t *p = &m->data.mapping.pairs.start[i];
            const char *k = scalar_of(d, p->key);
            if (!k || strcmp(k, seg) != 0)
                continue;
            if (last) {
                p->value = value;
                next = value;
                continue;
            }
            yaml_node_t *child = yaml_document_get_node(d, p->value);
            if (child && child->type == YAML_MAPPING_NODE) {
                next = p->value;
            } else {
                int nm = yaml_document_add_mapping(d, NULL, YAML_BLOCK_MAPPING_STYLE);
                if (!nm)
                    return -1;
                m = yaml_document_get_node(d, cur);
                m->data.mapping.pairs.start[i].value = nm;
                next = nm;
            }
            break;
        }
        if (!next) {
            int k =
                yaml_document_add_scalar(d, NULL, (yaml_char_t *)seg, -1, YAML_PLAIN_SCALAR_STYLE);
            next = last ? value : yaml_document_add_mapping(d, NULL, YAML_BLOCK_MAPPING_STYLE);
            if (!k || !next || !yaml_document_append_mapping_pair(d, cur, k, next))
                return -1;
        }
        cur = next;
    }
    return 0;
}

/*  A flow value's node in d (0 with a message in err). */
static int
flow_value(yaml_document_t *d, const char *var, const char *text, char *err, size_t errlen)
{
    yaml_parser_t p;
    yaml_document_t tmp;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, strlen(text));
    int id = 0;
    if (!yaml_parser_load(&p, &tmp)) {
        snprintf(err, errlen,
                 "config: %s: invalid YAML at column %lu: %s (a list or map key "
                 "takes YAML flow text: [a, b] or {k: v})",
                 var, (unsigned long)p.problem_mark.column + 1,
                 p.problem ? p.problem : "parse error");
    } else {
        int budget = 10000;
        if (yaml_document_get_root_node(&tmp))
            id = copy_node(d, &tmp, 1, 0, &budget);
        else
            id = yaml_document_add_scalar(d, NULL, (yaml_char_t *)"", 0, YAML_PLAIN_SCALAR_STYLE);
        if (!id)
            snprintf(err, errlen, "config: %s: too large or nested too deep (or out of memory)",
                     var);
        /* secrets: header values */
        for (yaml_node_t *n = tmp.nodes.start; n && n < tmp.nodes.top; n++)
            if (n->type == YAML_SCALAR_NODE && n->data.scalar.value)
                OPENSSL_cleanse(n->data.scalar.value, n->data.scalar.length);
        yaml_document_delete(&tmp);
    }
    if (p.buffer.start)
        OPENSSL_cleanse(p.buffer.start, (size_t)(p.buffer.end - p.buffer.start));
    yaml_parser_delete(&p);
    return id;
}

static int
env_add(dfb_config_env_t *env, const char *path, const char *var)
{
    dfb_config_env_var_t *v = realloc(env->v, (env->n + 1) * sizeof *v);
    if (!v)
        return -1;
    env->v = v;
    v[env->n].path = strdup(path);
    v[env->n].var = strdup(var);
    env->n++;
    return v[env->n - 1].path && v[env->n - 1].var ? 0 : -1;
}

int
dfb_config_env_overlay(yaml_document_t *doc, dfb_config_env_t *env, char *err, size_t errlen)
{
    /* The entries first: unsetenv (secrets) reorders environ. */
    size_t count = 0;
    for (char **e = environ; e && *e; e++)
        count += strncmp(*e, ENV_PREFIX, strlen(ENV_PREFIX)) == 0;
    if (count == 0)
        return 0;
    char **entries = calloc(count, sizeof *entries);
    if (!entries) {
        snprintf(err, errlen, "config: out of memory");
        return -1;
    }
    size_t k = 0;
    for (char **e = environ; e && *e && k < count; e++)
        if (strncmp(*e, ENV_PREFIX, strlen(ENV_PREFIX)) == 0)
            entries[k++] = *e;
    int applied = 0, rc = 0;
    for (size_t i = 0; i < k && rc == 0; i++) {
        char *eq = strchr(entries[i], '=');
        size_t namelen = eq ? (size_t)(eq - entries[i]) : strlen(entries[i]);
        char name[160], path[160];
        unsigned flags;
        snprintf(name, sizeof name, "%.*s",
                 (int)(namelen < sizeof name ? namelen : sizeof name - 1), entries[i]);
        if (key_of_var(entries[i], namelen, path, sizeof path, &flags) != 0) {
            /* the closest known name, if it is close */
            char best[160] = "", cand[160], var[160];
            size_t bestd = (size_t)-1;
            unsigned f;
            for (size_t j = 0; dfb_config_env_key(j, cand, sizeof cand, &f) == 0; j++) {
                if (dfb_config_env_name(cand, var, sizeof var) != 0)
                    continue;
                size_t d = distance(name, var);
                if (d < bestd)
                    bestd = d, snprintf(best, sizeof best, "%s", var);
            }
            if (bestd <= 2)
                snprintf(err, errlen,
                         "config: %s: unknown environment variable (no such key); did you mean "
                         "%s?",
                         name, best);
            else
                snprintf(err, errlen,
                         "config: %s: unknown environment variable (no such key; every key's "
                         "variable is DFBRIDGE_ + its path in upper case, '_' between the parts)",
                         name);
            rc = -1;
            break;
        }
        const char *value = eq ? eq + 1 : "";
        if (!*value)
            continue; /* empty = not set (a compose ${VAR} with VAR unset) */
        int id;
        if (flags & DFB_KEYF_FLOW)
            id = flow_value(doc, name, value, err, errlen);
        else {
            /* The text as it is (no YAML quoting): a secret as a quoted
               scalar, so that even "null" or "~" stays a string. */
            id =
                yaml_document_add_scalar(doc, NULL, (yaml_char_t *)value, -1,
                                         (flags & DFB_KEYF_SECRET) ? YAML_SINGLE_QUOTED_SCALAR_STYLE
                                                                   : YAML_PLAIN_SCALAR_STYLE);
            if (!id)
                snprintf(err, errlen, "config: out of memory");
        }
        if (!id || set_path(doc, path, id) != 0 || env_add(env, path, name) != 0) {
            if (id)
                snprintf(err, errlen, "config: %s: cannot apply (out of memory)", name);
            rc = -1;
        }
        applied++;
        if (flags & DFB_KEYF_SECRET) {
            OPENSSL_cleanse((char *)value, strlen(value));
            unsetenv(name);
        }
    }
    free(entries);
    return rc == 0 ? applied : -1;
}

void
dfb_config_env_free(dfb_config_env_t *env)
{
    for (size_t i = 0; i < env->n; i++) {
        free(env->v[i].path);
        free(env->v[i].var);
    }
    free(env->v);
    env->v = NULL;
    env->n = 0;
}

/* ---- errors and provenance ------------------------------------------------- */

static int
is_key(const char *path)
{
    char p[160];
    unsigned f;
    for (size_t i = 0; dfb_config_env_key(i, p, sizeof p, &f) == 0; i++)
        if (strcmp(p, path) == 0)
            return 1;
    return 0;
}

void
dfb_config_env_explain(const dfb_config_env_t *env, char *err, size_t errlen)
{
    static const char pre[] = "config: ";
    if (strncmp(err, pre, strlen(pre)) != 0)
        return;
    char *m = err + strlen(pre);
    char add[200];
    for (size_t i = 0; env && i < env->n; i++) {
        size_t l = strlen(env->v[i].path);
        if (strncmp(m, env->v[i].path, l) != 0 || (m[l] != ':' && m[l] != '.'))
            continue;
        char *colon = strstr(m + l, ": ");
        if (!colon)
            return;
        int n = snprintf(add, sizeof add, " (from %s)", env->v[i].var);
        size_t len = strlen(err);
        if (n < 0 || len + (size_t)n + 1 > errlen)
            return;
        memmove(colon + n, colon, strlen(colon) + 1);
        memcpy(colon, add, (size_t)n);
        return;
    }
    char *colon = strstr(m, ": ");
    if (!colon || strncmp(colon + 2, "required", 8) != 0)
        return;
    char path[160], var[200];
    snprintf(path, sizeof path, "%.*s", (int)(colon - m), m);
    if (!is_key(path) || dfb_config_env_name(path, var, sizeof var) != 0)
        return;
    size_t len = strlen(err);
    snprintf(err + len, errlen - len, " (in the file, or the environment variable %s)", var);
}

static yaml_node_t *
find_path(yaml_document_t *d, const char *path)
{
    char buf[256];
    if (strlen(path) >= sizeof buf)
        return NULL;
    strcpy(buf, path);
    yaml_node_t *n = yaml_document_get_root_node(d);
    char *save = NULL;
    for (char *seg = strtok_r(buf, ".", &save); seg; seg = strtok_r(NULL, ".", &save)) {
        if (!n || n->type != YAML_MAPPING_NODE)
            return NULL;
        yaml_node_t *found = NULL;
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            const char *k = scalar_of(d, p->key);
            if (k && strcmp(k, seg) == 0)
                found = yaml_document_get_node(d, p->value); /* the last one counts */
        }
        n = found;
    }
    return n;
}

/*  Appends s to out (cut at len), control characters as spaces. */
static void
put(char *out, size_t len, const char *s)
{
    size_t l = strlen(out);
    for (; *s && l + 1 < len; s++)
        out[l++] = (unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s;
    out[l] = '\0';
}

/*  A value as one line: the scalar's text, a list as [a, b], a map as
    {k: v}; secret scalars as ***, a secret map's keys shown. */
static void
render(yaml_document_t *d, yaml_node_t *n, int secret, char *out, size_t len, int depth)
{
    if (!n || depth > 4) {
        put(out, len, "...");
        return;
    }
    if (n->type == YAML_SCALAR_NODE) {
        put(out, len, secret ? DFB_SECRET_MASK : (const char *)n->data.scalar.value);
    } else if (n->type == YAML_SEQUENCE_NODE) {
        put(out, len, "[");
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++) {
            if (it != n->data.sequence.items.start)
                put(out, len, ", ");
            render(d, yaml_document_get_node(d, *it), secret, out, len, depth + 1);
        }
        put(out, len, "]");
    } else {
        put(out, len, "{");
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            if (p != n->data.mapping.pairs.start)
                put(out, len, ", ");
            render(d, yaml_document_get_node(d, p->key), 0, out, len, depth + 1);
            put(out, len, ": ");
            render(d, yaml_document_get_node(d, p->value), secret, out, len, depth + 1);
        }
        put(out, len, "}");
    }
}

void
dfb_config_origins_free(dfb_config_origin_t *o, size_t n)
{
    for (size_t i = 0; o && i < n; i++) {
        free(o[i].key);
        free(o[i].where);
        free(o[i].value);
    }
    free(o);
}

int
dfb_config_env_origins(yaml_document_t *doc, const dfb_config_env_t *env, const char *file,
                       dfb_config_origin_t **out, size_t *n)
{
    size_t nb;
    const dfb_config_key_t *bkeys = dfb_config_keys(&nb);
    size_t cap = 0;
    char path[160];
    unsigned flags;
    while (dfb_config_env_key(cap, path, sizeof path, &flags) == 0)
        cap++;
    dfb_config_origin_t *o = calloc(cap ? cap : 1, sizeof *o);
    if (!o)
        return -1;
    size_t k = 0, nbdk = cap - nb;
    for (size_t i = 0; i < cap; i++) {
        if (dfb_config_env_key(i, path, sizeof path, &flags) != 0)
            break;
        yaml_node_t *node = find_path(doc, path);
        char value[320] = "";
        const char *where = NULL;
        dfb_config_from_t from;
        if (node && !is_null_node(node)) {
            from = DFB_FROM_FILE;
            where = file;
            for (size_t j = 0; env && j < env->n; j++)
                if (strcmp(env->v[j].path, path) == 0)
                    from = DFB_FROM_ENV, where = env->v[j].var;
            render(doc, node, (flags & DFB_KEYF_SECRET) != 0, value, sizeof value, 0);
        } else if (i >= nbdk && bkeys[i - nbdk].def[0]) {
            from = DFB_FROM_DEFAULT;
            put(value, sizeof value, bkeys[i - nbdk].def);
        } else {
            continue;
        }
        o[k].key = strdup(path);
        o[k].from = from;
        o[k].where = where ? strdup(where) : NULL;
        o[k].value = strdup(value);
        k++;
        if (!o[k - 1].key || !o[k - 1].value || (where && !o[k - 1].where)) {
            dfb_config_origins_free(o, k);
            return -1;
        }
    }
    *out = o;
    *n = k;
    return 0;
}

/* ---- self-test ------------------------------------------------------------- */

#include "df_check.h"

int
dfb_config_env_test(int verbose)
{
    int failures = df_check_failures;
    /* No two keys share a variable; every variable is a valid name. */
    char a[160], b[160], va[200], vb[200];
    unsigned fa, fb;
    size_t total = 0;
    for (size_t i = 0; dfb_config_env_key(i, a, sizeof a, &fa) == 0; i++) {
        total++;
        CHECK(dfb_config_env_name(a, va, sizeof va) == 0);
        CHECK(strspn(va, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == strlen(va));
        for (size_t j = 0; j < i; j++) {
            CHECK(dfb_config_env_key(j, b, sizeof b, &fb) == 0);
            CHECK(strcmp(a, b) != 0);
            CHECK(dfb_config_env_name(b, vb, sizeof vb) == 0);
            if (strcmp(va, vb) == 0)
                printf("  %s and %s both map to %s\n", a, b, va);
            CHECK(strcmp(va, vb) != 0);
        }
    }
    size_t nb;
    dfb_config_keys(&nb);
    /* 9 client keys x 5 + 13 others + 4 retry keys x 3, then bridge.* */
    CHECK(total == 9 * 5 + 13 + 4 * 3 + nb);
    if (verbose)
        printf("  %zu keys, %zu variables, all distinct\n", total, total);
    /* The rule's cases, as the issue writes them. */
    static const struct {
        const char *path, *var;
    } rule[] = {
        {"bridge.stateDir", "DFBRIDGE_BRIDGE_STATEDIR"},
        {"datafeed.retry.maxAttempts", "DFBRIDGE_DATAFEED_RETRY_MAXATTEMPTS"},
        {"bot.privateKey.path", "DFBRIDGE_BOT_PRIVATEKEY_PATH"},
        {"bridge.curve.secretKey", "DFBRIDGE_BRIDGE_CURVE_SECRETKEY"},
        {"keyManager.proxy.password", "DFBRIDGE_KEYMANAGER_PROXY_PASSWORD"},
        {"bridge.journal.fsyncMillis", "DFBRIDGE_BRIDGE_JOURNAL_FSYNCMILLIS"},
    };
    for (size_t i = 0; i < N(rule); i++) {
        char p[160];
        unsigned f;
        CHECK(dfb_config_env_name(rule[i].path, va, sizeof va) == 0 &&
              strcmp(va, rule[i].var) == 0);
        CHECK(key_of_var(rule[i].var, strlen(rule[i].var), p, sizeof p, &f) == 0 &&
              strcmp(p, rule[i].path) == 0);
    }
    CHECK(key_of_var("DFBRIDGE_BRIDGE_NOPE", 20, a, sizeof a, &fa) != 0);
    CHECK(key_of_var("DFBRIDGE_BOT_PRIVATEKEY_CONTENT", 31, a, sizeof a, &fa) == 0 &&
          (fa & DFB_KEYF_SECRET));
    CHECK(key_of_var("DFBRIDGE_AGENT_DEFAULTHEADERS", 29, a, sizeof a, &fa) == 0 &&
          (fa & DFB_KEYF_FLOW) && (fa & DFB_KEYF_SECRET));
    CHECK(key_of_var("DFBRIDGE_BRIDGE_COMMANDSALLOW", 29, a, sizeof a, &fa) == 0 &&
          strcmp(a, "bridge.commandsAllow") == 0 && fa == DFB_KEYF_FLOW);
    CHECK(distance("DFBRIDGE_BRIDGE_SNDHWN", "DFBRIDGE_BRIDGE_SNDHWM") == 1);
    /* explain: a key from the environment is named; "required" names the variable. */
    dfb_config_env_var_t v = {"bridge.sndhwm", "DFBRIDGE_BRIDGE_SNDHWM"};
    dfb_config_env_t env = {&v, 1};
    char err[256] = "config: bridge.sndhwm: must be between 0 and 2147483647";
    dfb_config_env_explain(&env, err, sizeof err);
    CHECK(strcmp(err, "config: bridge.sndhwm (from DFBRIDGE_BRIDGE_SNDHWM): must be between 0 "
                      "and 2147483647") == 0);
    snprintf(err, sizeof err, "config: bot.username: required");
    dfb_config_env_explain(&env, err, sizeof err);
    CHECK(strcmp(err, "config: bot.username: required (in the file, or the environment variable "
                      "DFBRIDGE_BOT_USERNAME)") == 0);
    if (verbose)
        printf("  %s\n", err);
    return df_check_failures - failures;
}
