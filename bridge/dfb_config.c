/*  dfb_config: BDK YAML config -> dfb_config_t (see dfb_config.h).
    Parsing uses libyaml's document API; every key is checked against the
    tables below so that a bad value gets one message naming its key path.
    An unknown key is a warning in the BDK's sections (as the BDKs ignore
    it) and an error in the bridge's own section (s_keys). */
#include "dfb_config.h"
#include "dfb_config_env.h"
#include "dfb_dedupe.h"
#include "dfb_metrics.h"
#include "dfb_secret.h"

#include <errno.h>
#include <stddef.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include <openssl/crypto.h>

/*  Raw client section: NULL / 0 = not set here. */
typedef struct {
    const char *scheme, *host, *context;
    int port;
    yaml_node_t *proxy, *headers; /* transport: NULL = not set in this section */
} raw_endpoint_t;

typedef struct {
    yaml_document_t *doc;
    dfb_config_t *cfg;
    char *err;
    size_t errlen;
    int failed;
    raw_endpoint_t global, pod, agent, km, sa;
    int has_key_path, has_key_content;
    const dfb_config_env_t *env; /* the variables laid over the file (env) */
} ctx_t;

static void fail(ctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
fail(ctx_t *c, const char *fmt, ...)
{
    if (c->failed)
        return;
    c->failed = 1;
    int n = snprintf(c->err, c->errlen, "config: ");
    if (n < 0 || (size_t)n >= c->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static char *
xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/*  Scalar text of a node, or NULL when the node is not a scalar. */
static const char *
scalar(yaml_node_t *node)
{
    if (!node || node->type != YAML_SCALAR_NODE)
        return NULL;
    return (const char *)node->data.scalar.value;
}

/*  A plain `~`, `null` or empty value means "not set". */
static int
is_null(yaml_node_t *node)
{
    if (!node)
        return 1;
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = scalar(node);
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcasecmp(s, "null") == 0;
}

static const char *
get_string(ctx_t *c, yaml_node_t *node, const char *key)
{
    const char *s = scalar(node);
    if (!s)
        fail(c, "%s: not a string", key);
    return s;
}

static int
get_long(ctx_t *c, yaml_node_t *node, const char *key, long long *out)
{
    const char *s = scalar(node);
    char *end = NULL;
    if (!s || !*s) {
        fail(c, "%s: not an integer", key);
        return -1;
    }
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end != '\0') {
        fail(c, "%s: not an integer", key);
        return -1;
    }
    *out = v;
    return 0;
}

static int
get_double(ctx_t *c, yaml_node_t *node, const char *key, double *out)
{
    const char *s = scalar(node);
    char *end = NULL;
    if (!s || !*s) {
        fail(c, "%s: not a number", key);
        return -1;
    }
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end != '\0' || !isfinite(v)) {
        fail(c, "%s: not a number", key);
        return -1;
    }
    *out = v;
    return 0;
}

static int
get_bool(ctx_t *c, yaml_node_t *node, const char *key, int *out)
{
    const char *s = scalar(node);
    if (s &&
        (strcasecmp(s, "true") == 0 || strcasecmp(s, "yes") == 0 || strcasecmp(s, "on") == 0)) {
        *out = 1;
        return 0;
    }
    if (s &&
        (strcasecmp(s, "false") == 0 || strcasecmp(s, "no") == 0 || strcasecmp(s, "off") == 0)) {
        *out = 0;
        return 0;
    }
    fail(c, "%s: not a boolean", key);
    return -1;
}

static int
get_range(ctx_t *c, yaml_node_t *node, const char *key, long long lo, long long hi, long long *out)
{
    if (get_long(c, node, key, out) != 0)
        return -1;
    if (*out < lo || *out > hi) {
        fail(c, "%s: must be between %lld and %lld", key, lo, hi);
        return -1;
    }
    return 0;
}

/*  Calls fn for every key/value pair of a mapping node. `prefix` is the
    key path of the mapping ("" at the root). */
typedef void (*pair_fn)(ctx_t *c, const char *path, const char *key, yaml_node_t *value, void *arg);

static void
walk_map(ctx_t *c, yaml_node_t *map, const char *prefix, pair_fn fn, void *arg)
{
    if (is_null(map))
        return; /* `section:` with nothing under it */
    if (map->type != YAML_MAPPING_NODE) {
        fail(c, "%s: not a mapping", prefix);
        return;
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top && !c->failed; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        const char *key = scalar(k);
        if (!key) {
            fail(c, "%s: a key is not a string", *prefix ? prefix : "(root)");
            return;
        }
        char path[256];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", key);
        fn(c, path, key, v, arg);
    }
}

static void
ignore(ctx_t *c, const char *path, const char *why)
{
    dfb_debug("config: %s: %s", path, why);
}

static unsigned s_unknown_keys; /* self-test: every env key reaches a known branch */

unsigned
dfb_config_unknown_keys(void)
{
    return s_unknown_keys;
}

static void
unknown(ctx_t *c, const char *path)
{
    s_unknown_keys++;
    dfb_warn("config: %s: unknown key, ignored", path);
}

/* ---- client sections ---------------------------------------------------- */

static void
client_pair(ctx_t *c, const char *path, const char *key, yaml_node_t *v, void *arg)
{
    raw_endpoint_t *ep = arg;
    if (is_null(v) && strcmp(key, "proxy") != 0)
        return;
    if (strcmp(key, "scheme") == 0) {
        const char *s = get_string(c, v, path);
        if (s && strcmp(s, "http") != 0 && strcmp(s, "https") != 0)
            fail(c, "%s: must be http or https", path);
        ep->scheme = s;
    } else if (strcmp(key, "host") == 0) {
        ep->host = get_string(c, v, path);
        if (ep->host && !*ep->host)
            fail(c, "%s: empty", path);
        /* secrets: "user:password@host" would reach every logged URL */
        if (ep->host && strpbrk(ep->host, "@/ "))
            fail(c, "%s: a host name or address, not a URL", path);
    } else if (strcmp(key, "port") == 0) {
        long long port;
        if (get_range(c, v, path, 1, 65535, &port) == 0)
            ep->port = (int)port;
    } else if (strcmp(key, "context") == 0) {
        ep->context = get_string(c, v, path);
    } else if (strcmp(key, "proxy") == 0) {
        /* transport: checked when the endpoint is resolved (inheritance) */
        ep->proxy = is_null(v) ? NULL : v;
    } else if (strcmp(key, "defaultHeaders") == 0) {
        ep->headers = is_null(v) ? NULL : v;
    } else if (strcmp(key, "ssl") == 0) {
        /* The BDKs have one global ssl section; a per-client one is not applied. */
        if (!is_null(v))
            dfb_warn("config: %s: not supported per client, ignored (use the global ssl)", path);
    } else if (strcmp(key, "connectionTimeout") == 0 || strcmp(key, "readTimeout") == 0 ||
               strcmp(key, "connectionPoolMax") == 0 ||
               strcmp(key, "connectionPoolPerRoute") == 0 || strcmp(key, "loadBalancing") == 0 ||
               strcmp(key, "nodes") == 0) {
        ignore(c, path, "accepted, not used by the bridge");
    } else {
        unknown(c, path);
    }
}

/* ---- retry blocks ---------------------------------------------------------- */

static void
retry_pair(ctx_t *c, const char *path, const char *key, yaml_node_t *v, void *arg)
{
    dfb_retry_cfg_t *r = arg;
    long long n;
    double d;
    if (is_null(v))
        return;
    if (strcmp(key, "maxAttempts") == 0) {
        if (get_long(c, v, path, &n) != 0)
            return;
        if (n == 0 || n < -1 || n > INT32_MAX)
            fail(c, "%s: must be -1 (unlimited) or at least 1", path);
        r->max_attempts = (int)n;
    } else if (strcmp(key, "initialIntervalMillis") == 0) {
        if (get_range(c, v, path, 10, 86400000, &n) == 0)
            r->initial_ms = (long)n;
    } else if (strcmp(key, "multiplier") == 0) {
        if (get_double(c, v, path, &d) != 0)
            return;
        if (d < 1.0) {
            /* The BDKs silently reset a multiplier below 1 to 2. */
            dfb_warn("config: %s: %g is below 1, using 2", path, d);
            d = 2.0;
        }
        if (d > 1000.0)
            fail(c, "%s: must be at most 1000", path);
        r->multiplier = d;
    } else if (strcmp(key, "maxIntervalMillis") == 0) {
        if (get_range(c, v, path, 10, 86400000, &n) == 0)
            r->max_ms = (long)n;
    } else {
        unknown(c, path);
    }
}

static void
parse_retry(ctx_t *c, yaml_node_t *v, const char *path, dfb_retry_cfg_t *r)
{
    /* A retry block that is present starts from the global defaults (§5 of
       the reference): fields it does not name take 10 / 500 / 2 / 300000. */
    dfb_retry_cfg_t def = {10, 500, 2.0, 300000};
    if (is_null(v))
        return;
    *r = def;
    walk_map(c, v, path, retry_pair, r);
    if (!c->failed && r->max_ms < r->initial_ms)
        fail(c, "%s.maxIntervalMillis: must be at least initialIntervalMillis", path);
}

/* ---- transport: proxy, defaultHeaders, ssl, bot.certificate --------------- */
/* (owned by the auth and transport work; keep other sections out of here) */

/*  Copies a non-empty string option into *slot. */
static void
set_str(ctx_t *c, yaml_node_t *v, const char *path, char **slot)
{
    const char *s = get_string(c, v, path);
    if (s && !*s)
        fail(c, "%s: empty", path);
    if (s && *s) {
        if (*slot)
            OPENSSL_cleanse(*slot, strlen(*slot));
        free(*slot);
        *slot = xstrdup(s);
        if (!*slot)
            fail(c, "out of memory");
    }
}

static void
cert_pair(ctx_t *c, const char *path, const char *key, yaml_node_t *v, void *arg)
{
    if (is_null(v))
        return;
    if (strcmp(key, "path") == 0)
        set_str(c, v, path, &c->cfg->cert_path);
    else if (strcmp(key, "content") == 0)
        set_str(c, v, path, &c->cfg->cert_content);
    else if (strcmp(key, "password") == 0) {
        /* An empty password is a valid PKCS#12 password. */
        const char *s = get_string(c, v, path);
        if (s) {
            dfb_secret_free_str(c->cfg->cert_password);
            c->cfg->cert_password = xstrdup(s);
        }
    } else
        unknown(c, path);
}

static void
trust_store_pair(ctx_t *c, const char *path, const char *key, yaml_node_t *v, void *arg)
{
    if (is_null(v))
        return;
    if (strcmp(key, "path") == 0)
        set_str(c, v, path, &c->cfg->trust_store_path);
    else if (strcmp(key, "password") == 0)
        ignore(c, path, "accepted, not used (the trust store is a PEM bundle)");
    else
        unknown(c, path);
}

static void
ssl_pair(ctx_t *c, const char *path, const char *key, yaml_node_t *v, void *arg)
{
    if (strcmp(key, "trustStore") == 0)
        walk_map(c, v, path, trust_store_pair, NULL);
    else
        unknown(c, path);
}

static void
proxy_pair(ctx_t *c, const char *path, const char *key, yaml_node_t *v, void *arg)
{
    dfb_proxy_t *p = arg;
    long long port;
    if (is_null(v))
        return;
    if (strcmp(key, "host") == 0)
        set_str(c, v, path, &p->host);
    else if (strcmp(key, "port") == 0) {
        if (get_range(c, v, path, 1, 65535, &port) == 0)
            p->port = (int)port;
    } else if (strcmp(key, "username") == 0)
        set_str(c, v, path, &p->username);
    else if (strcmp(key, "password") == 0) {
        const char *s = get_string(c, v, path);
        if (s) {
            dfb_secret_free_str(p->password);
            p->password = xstrdup(s);
        }
    } else
        unknown(c, path);
}

static void
proxy_free(dfb_proxy_t *p)
{
    free(p->host);
    free(p->username);
    if (p->password)
        OPENSSL_cleanse(p->password, strlen(p->password));
    free(p->password);
    memset(p, 0, sizeof *p);
}

static void
headers_free(dfb_headers_t *h)
{
    for (size_t i = 0; i < h->count; i++) {
        free(h->names[i]);
        if (h->values[i])
            OPENSSL_cleanse(h->values[i], strlen(h->values[i]));
        free(h->values[i]);
    }
    free(h->names);
    free(h->values);
    memset(h, 0, sizeof *h);
}

/*  A header name is an RFC 7230 token; a value has no CR, LF or NUL. */
static int
header_name_ok(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!strchr("!#$%&'*+-.^_`|~", *s) && !(*s >= '0' && *s <= '9') &&
            !(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z'))
            return 0;
    return 1;
}

static void
headers_pair(ctx_t *c, const char *path, const char *key, yaml_node_t *v, void *arg)
{
    dfb_headers_t *h = arg;
    const char *val = is_null(v) ? "" : scalar(v);
    if (!val) {
        fail(c, "%s: not a string", path);
        return;
    }
    if (!header_name_ok(key)) {
        fail(c, "%s: not a valid header name", path);
        return;
    }
    if (strpbrk(val, "\r\n")) {
        fail(c, "%s: the value has a line break", path);
        return;
    }
    /* The bridge's own headers cannot be replaced (tokens, JSON bodies). */
    static const char *const reserved[] = {"sessionToken", "keyManagerToken", "Content-Type",
                                           "Accept",       "Content-Length",  "Host",
                                           "Expect"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strcasecmp(key, reserved[i]) == 0) {
            fail(c, "%s: set by the bridge, cannot be a default header", path);
            return;
        }
    char **n = realloc(h->names, (h->count + 1) * sizeof *n);
    if (n)
        h->names = n;
    char **vv = realloc(h->values, (h->count + 1) * sizeof *vv);
    if (vv)
        h->values = vv;
    if (!n || !vv) {
        fail(c, "out of memory");
        return;
    }
    h->names[h->count] = xstrdup(key);
    h->values[h->count] = xstrdup(val);
    h->count++;
    if (!h->names[h->count - 1] || !h->values[h->count - 1])
        fail(c, "out of memory");
}

/*  Resolves a client's proxy and defaultHeaders: its own section's value if
    set, else the global one (a value replaces the other as a whole, as in
    the BDKs). */
static void
resolve_transport(ctx_t *c, const raw_endpoint_t *raw, const char *section, dfb_endpoint_t *out)
{
    char path[128];
    yaml_node_t *proxy = raw->proxy ? raw->proxy : c->global.proxy;
    if (proxy && !c->failed) {
        if (raw->proxy)
            snprintf(path, sizeof path, "%s.proxy", section);
        else
            snprintf(path, sizeof path, "proxy");
        walk_map(c, proxy, path, proxy_pair, &out->proxy);
        if (!c->failed && !out->proxy.host)
            fail(c, "%s.host: required", path);
        if (!c->failed && !out->proxy.port)
            fail(c, "%s.port: required", path);
        if (!c->failed && out->proxy.username && !out->proxy.password)
            fail(c, "%s.password: required with %s.username", path, path);
        if (!c->failed && strpbrk(out->proxy.host, "/@ "))
            fail(c, "%s.host: a host name or address, not a URL", path);
    }
    yaml_node_t *headers = raw->headers ? raw->headers : c->global.headers;
    if (headers && !c->failed) {
        if (raw->headers)
            snprintf(path, sizeof path, "%s.defaultHeaders", section);
        else
            snprintf(path, sizeof path, "defaultHeaders");
        walk_map(c, headers, path, headers_pair, &out->headers);
    }
}

/*  bot.privateKey and bot.certificate together: the Python BDK uses the
    key, the Java BDK refuses to start; the bridge takes the Python rule so
    that every file a BDK accepts works, and says so. */
static void
check_credentials(ctx_t *c)
{
    dfb_config_t *cfg = c->cfg;
    int has_key = c->has_key_path || c->has_key_content;
    int has_cert = cfg->cert_path || cfg->cert_content;
    if (cfg->cert_path && cfg->cert_content) {
        fail(c, "bot.certificate: set path or content, not both");
        return;
    }
    if (has_key && has_cert) {
        dfb_warn("config: bot.certificate: ignored because bot.privateKey is also set (RSA "
                 "authentication is used, as the Python BDK does; the Java BDK refuses both)");
        cfg->cert_ignored = 1;
        return;
    }
    if (!has_key && !has_cert)
        fail(c, "bot.privateKey.path: required (or bot.privateKey.content, or "
                "bot.certificate.path for certificate authentication)");
}

/* ---- bot ----------------------------------------------------------------- */

static void
key_pair(ctx_t *c, const char *path, const char *key, yaml_node_t *v, void *arg)
{
    if (is_null(v))
        return;
    if (strcmp(key, "path") == 0) {
        const char *s = get_string(c, v, path);
        if (s && !*s)
            fail(c, "%s: empty", path);
        if (s && *s) {
            free(c->cfg->key_path);
            c->cfg->key_path = xstrdup(s);
            c->has_key_path = 1;
        }
    } else if (strcmp(key, "content") == 0) {
        const char *s = get_string(c, v, path);
        if (s && !*s)
            fail(c, "%s: empty", path);
        if (s && *s) {
            dfb_secret_free_str(c->cfg->key_content);
            c->cfg->key_content = xstrdup(s);
            c->has_key_content = 1;
        }
    } else {
        unknown(c, path);
    }
}

static void
bot_pair(ctx_t *c, const char *path, const char *key, yaml_node_t *v, void *arg)
{
    if (strcmp(key, "username") == 0) {
        if (is_null(v))
            return; /* reported as "required" below */
        const char *s = get_string(c, v, path);
        if (s) {
            free(c->cfg->bot_username);
            c->cfg->bot_username = xstrdup(s);
        }
    } else if (strcmp(key, "privateKey") == 0) {
        walk_map(c, v, path, key_pair, NULL);
    } else if (strcmp(key, "certificate") == 0) {
        walk_map(c, v, path, cert_pair, NULL);
    } else {
        unknown(c, path);
    }
}

/* ---- datafeed ------------------------------------------------------------- */

static void
datafeed_pair(ctx_t *c, const char *path, const char *key, yaml_node_t *v, void *arg)
{
    dfb_config_t *cfg = c->cfg;
    if (strcmp(key, "version") == 0) {
        if (is_null(v))
            return;
        const char *s = get_string(c, v, path);
        if (!s)
            return;
        if (strcasecmp(s, "v2") == 0)
            cfg->datafeed_version = DFB_DATAFEED_V2;
        else if (strcasecmp(s, "v1") == 0) {
            cfg->datafeed_version = DFB_DATAFEED_V1;
            dfb_warn("config: %s: v1 is deprecated (end of support April 2023); prefer v2", path);
        } else
            fail(c,
                 "%s: must be v2 (or v1), not '%s' (the datahose is selected by "
                 "bridge.source: datahose)",
                 path, s);
    } else if (strcmp(key, "retry") == 0) {
        parse_retry(c, v, path, &cfg->datafeed_retry);
    } else if (strcmp(key, "tag") == 0) {
        if (is_null(v))
            return;
        const char *s = get_string(c, v, path);
        if (s && strlen(s) > 100)
            fail(c, "%s: at most 100 characters", path);
        if (s) {
            free(cfg->datafeed_tag);
            cfg->datafeed_tag = xstrdup(s);
        }
    } else if (strcmp(key, "includeInvisible") == 0) {
        if (is_null(v))
            return;
        int b;
        if (get_bool(c, v, path, &b) == 0)
            cfg->datafeed_include_invisible = b;
    } else if (strcmp(key, "idFilePath") == 0) {
        if (is_null(v))
            return;
        const char *s = get_string(c, v, path);
        if (s) {
            free(cfg->datafeed_id_file_path);
            cfg->datafeed_id_file_path = xstrdup(s);
        }
    } else {
        unknown(c, path);
    }
}

/* ---- datahose ------------------------------------------------------------- */

static void
free_event_types(dfb_config_t *cfg)
{
    for (size_t i = 0; i < cfg->datahose_event_types_n; i++)
        free(cfg->datahose_event_types[i]);
    free(cfg->datahose_event_types);
    cfg->datahose_event_types = NULL;
    cfg->datahose_event_types_n = 0;
}

/*  datahose.eventTypes: a YAML list of non-empty strings (a single string
    is taken as a list of one, as a BDK user may write it). */
static void
parse_event_types(ctx_t *c, yaml_node_t *v, const char *path)
{
    dfb_config_t *cfg = c->cfg;
    free_event_types(cfg);
    yaml_node_item_t *start = NULL, *top = NULL;
    if (v->type == YAML_SEQUENCE_NODE) {
        start = v->data.sequence.items.start;
        top = v->data.sequence.items.top;
    } else if (v->type != YAML_SCALAR_NODE) {
        fail(c, "%s: must be a list of event types", path);
        return;
    }
    size_t n = start ? (size_t)(top - start) : 1;
    cfg->datahose_event_types = calloc(n + 1, sizeof *cfg->datahose_event_types);
    if (!cfg->datahose_event_types) {
        fail(c, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = start ? yaml_document_get_node(c->doc, start[i]) : v;
        const char *t = scalar(item);
        if (!t || !*t || is_null(item)) {
            fail(c, "%s: item %zu is not a non-empty string", path, i + 1);
            return;
        }
        if (strlen(t) > 64 || strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != strlen(t))
            dfb_warn("config: %s: '%s' does not look like an event type (MESSAGESENT ...)", path,
                     t);
        cfg->datahose_event_types[i] = xstrdup(t);
        if (!cfg->datahose_event_types[i]) {
            fail(c, "out of memory");
            return;
        }
        cfg->datahose_event_types_n = i + 1;
    }
}

static void
datahose_pair(ctx_t *c, const char *path, const char *key, yaml_node_t *v, void *arg)
{
    dfb_config_t *cfg = c->cfg;
    if (is_null(v))
        return;
    if (strcmp(key, "tag") == 0) {
        const char *s = get_string(c, v, path);
        if (s && !*s)
            return; /* empty = the default, as in the BDKs */
        if (s) {
            free(cfg->datahose_tag);
            cfg->datahose_tag = xstrdup(s);
        }
    } else if (strcmp(key, "eventTypes") == 0) {
        parse_event_types(c, v, path);
    } else if (strcmp(key, "retry") == 0) {
        parse_retry(c, v, path, &cfg->datahose_retry);
    } else {
        unknown(c, path);
    }
}

/*  Cuts s (UTF-8) to at most max characters in place. Returns 1 if cut. */
static int
utf8_cut(char *s, size_t max)
{
    size_t chars = 0;
    for (char *p = s; *p; p++) {
        if (((unsigned char)*p & 0xC0) == 0x80)
            continue; /* continuation byte */
        if (chars++ == max) {
            *p = '\0';
            return 1;
        }
    }
    return 0;
}

/*  Cross-field rules of the datahose section, once bot.username is known. */
static void
check_datahose(ctx_t *c)
{
    dfb_config_t *cfg = c->cfg;
    if (!cfg->datahose_tag) {
        size_t n = strlen(cfg->bot_username) + sizeof "datahose-";
        cfg->datahose_tag = malloc(n);
        if (!cfg->datahose_tag) {
            fail(c, "out of memory");
            return;
        }
        snprintf(cfg->datahose_tag, n, "datahose-%s", cfg->bot_username);
    }
    if (utf8_cut(cfg->datahose_tag, DFB_DATAHOSE_TAG_MAX))
        dfb_warn("config: datahose.tag: cut to %d characters: '%s'", DFB_DATAHOSE_TAG_MAX,
                 cfg->datahose_tag);
    if (cfg->source == DFB_SOURCE_DATAHOSE && cfg->datahose_event_types_n == 0)
        fail(c, "datahose.eventTypes: required (a non-empty list) when bridge.source is "
                "datahose");
}

/* ---- bridge: the key table ------------------------------------------------ */

/*  Where a value goes: the C type of its dfb_config_t field. */
enum { CT_INT, CT_LONG, CT_LLONG, CT_SIZE, CT_ENUM, CT_STR, CT_DOUBLE, CT_ALLOW };

#define AT(field, ct) offsetof(dfb_config_t, field), ct

static const char *const s_sources[] = {"datafeed", "datahose", NULL};
static const char *const s_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const s_logformats[] = {"text", "json", NULL};
static const char *const s_fsyncs[] = {"always", "interval", "never", NULL};
static const char *const s_bools[] = {"false", "true", NULL};

/*  Every key of the bridge: section, in the order the README and the
    example config document them. Parsing, the defaults and --check all go
    through this table; bridge_check_keys checks the example config and the
    README table against it. An enum's value is its choice's index. */
static const dfb_config_key_t s_keys[] = {
    {"source", DFB_KEY_ENUM, "datafeed", 0, 0, s_sources, AT(source, CT_ENUM),
     "what the bridge reads: the bot's datafeed (v2 or v1 per datafeed.version) or the pod-wide "
     "datahose"},
    {"publish", DFB_KEY_ENDPOINT, "tcp://127.0.0.1:5556", 0, 0, NULL, AT(publish, CT_STR),
     "the ZeroMQ endpoint the PUB socket binds (a non-loopback one needs curve or insecure)"},
    {"sndhwm", DFB_KEY_INT, "10000", 0, INT32_MAX, NULL, AT(sndhwm, CT_INT),
     "PUB high-water mark per subscriber, in messages (0 = unlimited)"},
    {"curve.secretKey", DFB_KEY_PATH, "", 0, 0, NULL, AT(curve_secret_key, CT_STR),
     "the bridge's secret CURVE certificate (dfbridge keygen); with clientsDir: CURVE on the PUB "
     "and replay sockets"},
    {"curve.clientsDir", DFB_KEY_PATH, "", 0, 0, NULL, AT(curve_clients_dir, CT_STR),
     "folder of the allowed consumers' public certificates (*.key), re-read every second"},
    {"insecure", DFB_KEY_ENUM, "false", 0, 0, s_bools, AT(insecure, CT_ENUM),
     "true: allow a non-loopback publish, replay or commands endpoint without curve (a warning at "
     "start)"},
    {"logLevel", DFB_KEY_ENUM, "info", 0, 0, s_levels, AT(log_level, CT_ENUM),
     "the most verbose level logged to stderr"},
    {"logFormat", DFB_KEY_ENUM, "text", 0, 0, s_logformats, AT(log_format, CT_ENUM),
     "text lines, or json: one JSON object per line (time, level, message, fields)"},
    {"strictPermissions", DFB_KEY_ENUM, "false", 0, 0, s_bools, AT(strict_permissions, CT_ENUM),
     "refuse to start when a secret file (bot key, certificate) is group- or world-accessible "
     "(false: warn)"},
    {"readTimeoutMillis", DFB_KEY_INT, "60000", 1000, 86400000, NULL, AT(read_timeout_ms, CT_LONG),
     "longest HTTP call; must exceed the ~30 s long-poll hold"},
    {"connectTimeoutMillis", DFB_KEY_INT, "15000", 1, 3600000, NULL,
     AT(connect_timeout_ms, CT_LONG), "longest TCP + TLS (+ proxy CONNECT) connect"},
    {"maxBodyBytes", DFB_KEY_INT, "67108864", 1024, (long long)1 << 40, NULL,
     AT(max_body_bytes, CT_SIZE), "largest response accepted; a bigger one is a retried error"},
    {"maxBatchEvents", DFB_KEY_INT, "10000", 1, 100000000, NULL, AT(max_batch_events, CT_LLONG),
     "a batch with more events is published in chunks of this many, each flushed"},
    {"maxEventBytes", DFB_KEY_INT, "8388608", 1024, (long long)1 << 40, NULL,
     AT(max_event_bytes, CT_LLONG),
     "largest published event (frame 2); a bigger one is published as a stub with too_large"},
    {"stateDir", DFB_KEY_PATH, "", 0, 0, NULL, AT(state_dir, CT_STR),
     "folder of the journal; unset = no journal and no replay"},
    {"journal.segmentBytes", DFB_KEY_INT, "67108864", 4096, (long long)1 << 40, NULL,
     AT(journal_segment_bytes, CT_LLONG), "a journal segment file is closed at this size"},
    {"journal.maxBytes", DFB_KEY_INT, "1073741824", 0, (long long)1 << 50, NULL,
     AT(journal_max_bytes, CT_LLONG), "journal retention by total size (0 = no limit)"},
    {"journal.maxAgeMillis", DFB_KEY_INT, "604800000", 0, (long long)1 << 50, NULL,
     AT(journal_max_age_ms, CT_LLONG),
     "journal retention by age of a segment's last write (0 = no limit)"},
    {"journal.fsync", DFB_KEY_ENUM, "interval", 0, 0, s_fsyncs, AT(journal_fsync, CT_ENUM),
     "when the journal is synced to disk"},
    {"journal.fsyncMillis", DFB_KEY_INT, "1000", 1, 3600000, NULL, AT(journal_fsync_ms, CT_LONG),
     "period of the interval fsync policy"},
    {"replay", DFB_KEY_ENDPOINT, "", 0, 0, NULL, AT(replay, CT_STR),
     "ZeroMQ endpoint of the replay ROUTER (needs stateDir); unset = off"},
    {"replayAdvertise", DFB_KEY_ENDPOINT, "", 0, 0, NULL, AT(replay_advertise, CT_STR),
     "the replay endpoint heartbeats tell consumers; unset = the bound endpoint"},
    {"replayMaxBytes", DFB_KEY_INT, "268435456", 1048576, (long long)1 << 40, NULL,
     AT(replay_max_bytes, CT_LLONG),
     "replay answer bytes queued and not yet written out, all clients (answers pause above)"},
    {"replayClientBytes", DFB_KEY_INT, "16777216", 65536, (long long)1 << 40, NULL,
     AT(replay_client_bytes, CT_LLONG), "the same per client: its answer pauses until it reads"},
    {"maxConnections", DFB_KEY_INT, "0", 0, 100000000, NULL, AT(max_connections, CT_LLONG),
     "live TCP connections per listening socket (PUB, replay, commands); more are closed at once; 0 = a "
     "quarter of the descriptor limit"},
    {"heartbeatMillis", DFB_KEY_INT, "1000", 0, 3600000, NULL, AT(heartbeat_ms, CT_INT),
     "period of the _hb heartbeat (0 = off)"},
    {"zmtpHeartbeatMillis", DFB_KEY_INT, "0", 0, 3600000, NULL, AT(zmtp_heartbeat_ms, CT_INT),
     "ZMTP PING interval on the PUB and replay sockets (0 = off)"},
    {"dedupeWindow", DFB_KEY_INT, "100000", 0, DFB_DEDUPE_MAX_WINDOW, NULL,
     AT(dedupe_window, CT_LLONG),
     "recent (id, type) keys remembered to drop redeliveries (0 = off)"},
    {"dedupeMillis", DFB_KEY_INT, "3600000", 0, (long long)1 << 50, NULL, AT(dedupe_ms, CT_LLONG),
     "longest time a dedupe key is remembered (0 = no age limit)"},
    {"metrics", DFB_KEY_ADDRESS, "", 0, 0, NULL, AT(metrics, CT_STR),
     "HTTP address of /metrics, /healthz and /readyz (127.0.0.1:9464; port 0 = any, logged); "
     "unset = off"},
    {"health.maxReadAgeMillis", DFB_KEY_INT, "75000", 1, (long long)1 << 40, NULL,
     AT(health_max_read_age_ms, CT_LLONG),
     "/healthz answers 503 when the last successful read is older than this"},
    {"commands", DFB_KEY_ENDPOINT, "", 0, 0, NULL, AT(commands, CT_STR),
     "ZeroMQ endpoint of the command ROUTER (workers' Symphony calls); unset = off"},
    {"commandsAllow", DFB_KEY_MAP, "", 0, 0, NULL, AT(commands_allow, CT_ALLOW),
     "client certificate name -> list of ops it may call (messages.send, messages.*, *); needs "
     "curve; unset = every client may call every op"},
    {"commandsWindowMillis", DFB_KEY_INT, "86400000", 1000, (long long)1 << 40, NULL,
     AT(commands_window_ms, CT_LLONG),
     "how long a request id and its outcome are remembered (a retry gets the recorded reply)"},
    {"commandsLookbackMillis", DFB_KEY_INT, "120000", 0, 86400000, NULL,
     AT(commands_lookback_ms, CT_LLONG),
     "after an ambiguous failure, the stream is searched for the message from this long before "
     "the request"},
    {"commandsSettleMillis", DFB_KEY_INT, "1000", 0, 60000, NULL,
     AT(commands_settle_ms, CT_LLONG),
     "after an ambiguous failure, the wait before the stream is searched (time for Symphony to "
     "list a message it stored)"},
    {"commandsRate", DFB_KEY_NUMBER, "20", 0, 100000, NULL, AT(commands_rate, CT_DOUBLE),
     "Symphony calls per second over the whole channel (0 = no limit)"},
    {"commandsStreamRate", DFB_KEY_NUMBER, "2", 0, 100000, NULL,
     AT(commands_stream_rate, CT_DOUBLE),
     "message sends and updates per second into one stream (0 = no limit)"},
    {"commandsQueue", DFB_KEY_INT, "1000", 1, 1000000, NULL, AT(commands_queue, CT_LLONG),
     "requests waiting for a rate limit or an executor; more are answered busy"},
    {"commandsConcurrency", DFB_KEY_INT, "4", 1, 64, NULL, AT(commands_concurrency, CT_INT),
     "executor threads making Symphony calls at once"},
    {"commandsMaxBytes", DFB_KEY_INT, "8388608", 1024, (long long)64 << 20, NULL,
     AT(commands_max_bytes, CT_LLONG),
     "largest request frame; a bigger one is answered bad_request"},
};
#undef AT

_Static_assert(sizeof(dfb_source_t) == sizeof(int) && sizeof(dfb_log_level_t) == sizeof(int) &&
                   sizeof(dfb_fsync_t) == sizeof(int) && sizeof(dfb_log_format_t) == sizeof(int),
               "CT_ENUM fields are stored as int");

const dfb_config_key_t *
dfb_config_keys(size_t *count)
{
    *count = sizeof s_keys / sizeof s_keys[0];
    return s_keys;
}

const char *
dfb_config_key_type_name(dfb_key_type_t type)
{
    switch (type) {
    case DFB_KEY_INT:
        return "integer";
    case DFB_KEY_ENUM:
        return "choice";
    case DFB_KEY_ENDPOINT:
        return "endpoint";
    case DFB_KEY_PATH:
        return "path";
    case DFB_KEY_ADDRESS:
        return "address";
    case DFB_KEY_NUMBER:
        return "number";
    case DFB_KEY_MAP:
        return "map";
    }
    return "?";
}

static const dfb_config_key_t *
find_key(const char *name)
{
    for (size_t i = 0; i < sizeof s_keys / sizeof s_keys[0]; i++)
        if (strcmp(s_keys[i].name, name) == 0)
            return &s_keys[i];
    return NULL;
}

/*  Whether name is a section of the table ("journal" for "journal.*"). */
static int
is_key_section(const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof s_keys / sizeof s_keys[0]; i++)
        if (strncmp(s_keys[i].name, name, n) == 0 && s_keys[i].name[n] == '.')
            return 1;
    return 0;
}

static void
store_int(dfb_config_t *cfg, const dfb_config_key_t *k, long long v)
{
    char *at = (char *)cfg + k->offset;
    switch (k->ctype) {
    case CT_INT:
    case CT_ENUM: {
        int x = (int)v;
        memcpy(at, &x, sizeof x);
        break;
    }
    case CT_LONG: {
        long x = (long)v;
        memcpy(at, &x, sizeof x);
        break;
    }
    case CT_LLONG:
        memcpy(at, &v, sizeof v);
        break;
    case CT_SIZE: {
        size_t x = (size_t)v;
        memcpy(at, &x, sizeof x);
        break;
    }
    }
}

/*  Parses the text s (NULL: the YAML value is not a scalar) of key k into
    its field; on a bad value, one message naming path. */
static void
apply_key(ctx_t *c, const dfb_config_key_t *k, const char *s, const char *path)
{
    switch (k->type) {
    case DFB_KEY_INT: {
        char *end = NULL;
        errno = 0;
        long long v = s && *s ? strtoll(s, &end, 10) : 0;
        if (!s || !*s || errno || *end != '\0') {
            fail(c, "%s: not an integer", path);
            return;
        }
        if (v < k->lo || v > k->hi) {
            fail(c, "%s: must be between %lld and %lld", path, k->lo, k->hi);
            return;
        }
        store_int(c->cfg, k, v);
        return;
    }
    case DFB_KEY_ENUM: {
        int n = 0;
        for (; s && k->choices[n]; n++) {
            if (strcasecmp(s, k->choices[n]) == 0) {
                store_int(c->cfg, k, n);
                return;
            }
        }
        char list[160] = "";
        for (int i = 0; k->choices[i]; i++) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s",
                     i == 0              ? ""
                     : k->choices[i + 1] ? ", "
                                         : " or ",
                     k->choices[i]);
        }
        if (!s)
            fail(c, "%s: must be %s", path, list);
        else
            fail(c, "%s: must be %s, not '%s'", path, list, s);
        return;
    }
    case DFB_KEY_NUMBER: {
        char *end = NULL;
        errno = 0;
        double v = s && *s ? strtod(s, &end) : 0;
        if (!s || !*s || errno || *end != '\0' || v != v) {
            fail(c, "%s: not a number", path);
            return;
        }
        if (v < (double)k->lo || v > (double)k->hi) {
            fail(c, "%s: must be between %lld and %lld", path, k->lo, k->hi);
            return;
        }
        memcpy((char *)c->cfg + k->offset, &v, sizeof v);
        return;
    }
    case DFB_KEY_MAP: /* parse_allow: a YAML node, not text */
        fail(c, "%s: must be a map", path);
        return;
    case DFB_KEY_ENDPOINT:
    case DFB_KEY_PATH:
    case DFB_KEY_ADDRESS:
        break;
    }
    if (!s) {
        fail(c, "%s: not a string", path);
        return;
    }
    if (k->type == DFB_KEY_PATH && !*s) {
        fail(c, "%s: must not be empty (leave the key out to leave it unset)", path);
        return;
    }
    if (k->type == DFB_KEY_ENDPOINT && !strstr(s, "://") && (*s || k->def[0])) {
        /* "" is "unset" for an endpoint that is unset by default (replay) */
        fail(c, "%s: not a ZeroMQ endpoint (tcp://host:port, ipc://path ...)", path);
        return;
    }
    if (k->type == DFB_KEY_ADDRESS && dfb_metrics_parse_address(s, NULL, 0, NULL) != 0) {
        fail(c, "%s: not an address (127.0.0.1:9464, [::1]:9464, :9464; port 0 = any)", path);
        return;
    }
    char **at = (char **)((char *)c->cfg + k->offset);
    free(*at);
    *at = *s ? xstrdup(s) : NULL;
}

/*  The defaults, through the parser: what the table says is what is set. */
static void
bridge_defaults(dfb_config_t *cfg)
{
    char err[256];
    ctx_t c = {.cfg = cfg, .err = err, .errlen = sizeof err};
    for (size_t i = 0; i < sizeof s_keys / sizeof s_keys[0]; i++)
        if (s_keys[i].def[0])
            apply_key(&c, &s_keys[i], s_keys[i].def, s_keys[i].name);
}

static void
free_allow(dfb_config_t *cfg)
{
    for (size_t i = 0; i < cfg->commands_allow_n; i++) {
        free(cfg->commands_allow[i].client);
        for (size_t j = 0; j < cfg->commands_allow[i].nops; j++)
            free(cfg->commands_allow[i].ops[j]);
        free(cfg->commands_allow[i].ops);
    }
    free(cfg->commands_allow);
    cfg->commands_allow = NULL;
    cfg->commands_allow_n = 0;
    cfg->commands_allow_set = 0;
}

/*  bridge.commandsAllow: {name: [op patterns]} (a single string is a list
    of one). The patterns are checked against the op names by dfb_cmd at
    start (dfb_cmd_check_allow): the config knows no ops. */
static void
parse_allow(ctx_t *c, yaml_node_t *v, const char *path)
{
    dfb_config_t *cfg = c->cfg;
    free_allow(cfg);
    if (v->type != YAML_MAPPING_NODE) {
        fail(c, "%s: must be a map of client certificate name -> list of ops", path);
        return;
    }
    cfg->commands_allow_set = 1;
    size_t n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
    cfg->commands_allow = calloc(n ? n : 1, sizeof *cfg->commands_allow);
    if (!cfg->commands_allow) {
        fail(c, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_pair_t *p = &v->data.mapping.pairs.start[i];
        const char *name = scalar(yaml_document_get_node(c->doc, p->key));
        yaml_node_t *list = yaml_document_get_node(c->doc, p->value);
        if (!name || !*name) {
            fail(c, "%s: entry %zu: the client name must be a non-empty string", path, i + 1);
            return;
        }
        for (size_t j = 0; j < cfg->commands_allow_n; j++)
            if (strcmp(cfg->commands_allow[j].client, name) == 0) {
                fail(c, "%s.%s: named twice", path, name);
                return;
            }
        dfb_cmd_allow_t *a = &cfg->commands_allow[cfg->commands_allow_n++];
        if (!(a->client = xstrdup(name))) {
            fail(c, "out of memory");
            return;
        }
        yaml_node_item_t *start = NULL, *top = NULL;
        if (list && list->type == YAML_SEQUENCE_NODE) {
            start = list->data.sequence.items.start;
            top = list->data.sequence.items.top;
        } else if (!list || list->type != YAML_SCALAR_NODE || is_null(list)) {
            fail(c, "%s.%s: must be a list of ops (messages.send, messages.*, *)", path, name);
            return;
        }
        size_t m = start ? (size_t)(top - start) : 1;
        if (!(a->ops = calloc(m ? m : 1, sizeof *a->ops))) {
            fail(c, "out of memory");
            return;
        }
        for (size_t j = 0; j < m; j++) {
            yaml_node_t *item = start ? yaml_document_get_node(c->doc, start[j]) : list;
            const char *t = scalar(item);
            if (!t || !*t || is_null(item)) {
                fail(c, "%s.%s: item %zu is not a non-empty string", path, name, j + 1);
                return;
            }
            if (!(a->ops[j] = xstrdup(t))) {
                fail(c, "out of memory");
                return;
            }
            a->nops = j + 1;
        }
    }
}

/*  One pair of the bridge section (arg: the prefix inside it, "" or
    "journal."). The section is the bridge's own: an unknown key is an
    error, so a mistyped key cannot silently leave a default in force. */
static void
bridge_pair(ctx_t *c, const char *path, const char *key, yaml_node_t *v, void *arg)
{
    const char *prefix = arg ? arg : "";
    char name[128];
    snprintf(name, sizeof name, "%s%s", prefix, key);
    const dfb_config_key_t *k = find_key(name);
    if (k && k->type == DFB_KEY_MAP) {
        if (!is_null(v))
            parse_allow(c, v, path);
    } else if (k) {
        if (!is_null(v))
            apply_key(c, k, scalar(v), path);
    } else if (is_key_section(name)) {
        char sub[sizeof name + 1];
        snprintf(sub, sizeof sub, "%s.", name);
        walk_map(c, v, path, bridge_pair, sub);
    } else {
        fail(c, "%s: unknown key (bridge keys: see dfbridge.example.yaml)", path);
    }
}

static void
bridge_check(ctx_t *c)
{
    dfb_config_t *cfg = c->cfg;
    if (cfg->replay && !cfg->state_dir)
        fail(c, "bridge.replay: needs bridge.stateDir (replay reads the journal)");
    else if (!cfg->curve_secret_key != !cfg->curve_clients_dir)
        fail(c, "%s: required when %s is set (CURVE needs both)",
             cfg->curve_secret_key ? "bridge.curve.clientsDir" : "bridge.curve.secretKey",
             cfg->curve_secret_key ? "bridge.curve.secretKey" : "bridge.curve.clientsDir");
    else if (cfg->commands_allow_set && !cfg->curve_secret_key)
        fail(c, "bridge.commandsAllow: needs CURVE (bridge.curve.secretKey and "
                "bridge.curve.clientsDir): without it a client has no certificate name");
    else if (cfg->read_timeout_ms <= 35000)
        dfb_warn("config: bridge.readTimeoutMillis: %ld ms does not exceed the ~30 s long-poll "
                 "hold of a real pod; idle reads will time out and be retried",
                 cfg->read_timeout_ms);
}

static void
bridge_free(dfb_config_t *cfg)
{
    for (size_t i = 0; i < sizeof s_keys / sizeof s_keys[0]; i++) {
        if (s_keys[i].ctype == CT_STR) {
            char **at = (char **)((char *)cfg + s_keys[i].offset);
            free(*at);
            *at = NULL;
        }
    }
    free_allow(cfg);
}

/* ---- root ------------------------------------------------------------------ */

static void
root_pair(ctx_t *c, const char *path, const char *key, yaml_node_t *v, void *arg)
{
    if (strcmp(key, "scheme") == 0 || strcmp(key, "host") == 0 || strcmp(key, "port") == 0 ||
        strcmp(key, "context") == 0 || strcmp(key, "proxy") == 0 ||
        strcmp(key, "defaultHeaders") == 0 || strcmp(key, "connectionTimeout") == 0 ||
        strcmp(key, "readTimeout") == 0 || strcmp(key, "connectionPoolMax") == 0 ||
        strcmp(key, "connectionPoolPerRoute") == 0)
        client_pair(c, path, key, v, &c->global);
    else if (strcmp(key, "pod") == 0)
        walk_map(c, v, path, client_pair, &c->pod);
    else if (strcmp(key, "agent") == 0)
        walk_map(c, v, path, client_pair, &c->agent);
    else if (strcmp(key, "keyManager") == 0)
        walk_map(c, v, path, client_pair, &c->km);
    else if (strcmp(key, "sessionAuth") == 0)
        walk_map(c, v, path, client_pair, &c->sa);
    else if (strcmp(key, "bot") == 0)
        walk_map(c, v, path, bot_pair, NULL);
    else if (strcmp(key, "datafeed") == 0)
        walk_map(c, v, path, datafeed_pair, NULL);
    else if (strcmp(key, "retry") == 0)
        parse_retry(c, v, path, &c->cfg->retry);
    else if (strcmp(key, "bridge") == 0)
        walk_map(c, v, path, bridge_pair, NULL);
    else if (strcmp(key, "ssl") == 0) {
        walk_map(c, v, path, ssl_pair, NULL);
    } else if (strcmp(key, "datahose") == 0)
        walk_map(c, v, path, datahose_pair, NULL);
    else if (strcmp(key, "app") == 0 || strcmp(key, "manifest") == 0 ||
             strcmp(key, "_version") == 0 || strcmp(key, "botUsername") == 0)
        ignore(c, path, "accepted, not used by the bridge");
    else
        unknown(c, path);
}

/*  The level must be known before the walk logs anything at debug level. */
static void
prescan_log_level(yaml_document_t *doc, yaml_node_t *root)
{
    if (!root || root->type != YAML_MAPPING_NODE)
        return;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(yaml_document_get_node(doc, p->key));
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        if (!k || strcmp(k, "bridge") != 0 || !v || v->type != YAML_MAPPING_NODE)
            continue;
        for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top;
             q++) {
            const char *k2 = scalar(yaml_document_get_node(doc, q->key));
            const char *v2 = scalar(yaml_document_get_node(doc, q->value));
            dfb_log_level_t level;
            if (k2 && v2 && strcmp(k2, "logLevel") == 0 && dfb_log_level_parse(v2, &level) == 0)
                dfb_log_set_level(level);
            if (k2 && v2 && strcmp(k2, "logFormat") == 0)
                dfb_log_set_format(strcasecmp(v2, "json") == 0 ? DFB_LOG_JSON : DFB_LOG_TEXT);
        }
    }
}

static int
resolve_endpoint(ctx_t *c, const raw_endpoint_t *raw, const char *section, int required,
                 dfb_endpoint_t *out)
{
    const raw_endpoint_t *g = &c->global;
    const char *scheme = raw->scheme ? raw->scheme : g->scheme ? g->scheme : "https";
    const char *host = raw->host ? raw->host : g->host;
    int port = raw->port ? raw->port : g->port ? g->port : 443;
    const char *context = raw->context ? raw->context : g->context ? g->context : "";
    if (!host) {
        if (required)
            fail(c, "%s.host: required (or a global host)", section);
        return -1;
    }
    out->scheme = xstrdup(scheme);
    out->host = xstrdup(host);
    out->port = port;
    /* Normalise the context to "" or "/x/y" (no trailing slash). */
    size_t len = strlen(context);
    while (len > 0 && context[len - 1] == '/')
        len--;
    out->context = malloc(len + 2);
    if (!out->scheme || !out->host || !out->context) {
        fail(c, "out of memory");
        return -1;
    }
    if (len == 0)
        out->context[0] = '\0';
    else
        snprintf(out->context, len + 2, "%s%.*s", context[0] == '/' ? "" : "/", (int)len, context);
    resolve_transport(c, raw, section, out); /* transport */
    return c->failed ? -1 : 0;
}

static void
endpoint_free(dfb_endpoint_t *ep)
{
    free(ep->scheme);
    free(ep->host);
    free(ep->context);
    proxy_free(&ep->proxy);     /* transport */
    headers_free(&ep->headers); /* transport */
    memset(ep, 0, sizeof *ep);
}

void
dfb_config_print_origins(const dfb_config_t *cfg, FILE *out)
{
    static const char *const from[] = {"default", "file", "env"};
    for (size_t i = 0; i < cfg->origins_n; i++) {
        const dfb_config_origin_t *o = &cfg->origins[i];
        fprintf(out, "  %s = %s  [%s%s%s]\n", o->key, o->value, from[o->from], o->where ? " " : "",
                o->where ? o->where : "");
    }
}

int
dfb_endpoint_url(const dfb_endpoint_t *ep, char *buf, size_t len)
{
    int n;
    /* An IPv6 literal needs brackets in a URL. */
    if (strchr(ep->host, ':') && ep->host[0] != '[')
        n = snprintf(buf, len, "%s://[%s]:%d%s", ep->scheme, ep->host, ep->port, ep->context);
    else
        n = snprintf(buf, len, "%s://%s:%d%s", ep->scheme, ep->host, ep->port, ep->context);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* ---- secrets: the config file as a secret file ---------------------------- */

/*  Wipes what libyaml kept of the file's text (its input buffers). */
static void
parser_wipe(yaml_parser_t *p)
{
    if (p->raw_buffer.start)
        OPENSSL_cleanse(p->raw_buffer.start, (size_t)(p->raw_buffer.end - p->raw_buffer.start));
    if (p->buffer.start)
        OPENSSL_cleanse(p->buffer.start, (size_t)(p->buffer.end - p->buffer.start));
}

/*  Wipes every scalar of the document (keys, passwords, header values). */
static void
document_wipe(yaml_document_t *doc)
{
    for (yaml_node_t *n = doc->nodes.start; n && n < doc->nodes.top; n++)
        if (n->type == YAML_SCALAR_NODE && n->data.scalar.value)
            OPENSSL_cleanse(n->data.scalar.value, n->data.scalar.length);
}

/*  A config file that holds a key or a password inline is a secret file:
    the same permission rule as bot.privateKey.path, checked on the file
    that was read (fd), naming the first such key. */
static void
check_inline_secrets(ctx_t *c, int fd)
{
    const dfb_config_t *cfg = c->cfg;
    const struct {
        const dfb_endpoint_t *ep;
        const raw_endpoint_t *raw;
        const char *key;
    } eps[] = {{&cfg->pod, &c->pod, "pod.proxy.password"},
               {&cfg->agent, &c->agent, "agent.proxy.password"},
               {&cfg->key_manager, &c->km, "keyManager.proxy.password"},
               {&cfg->session_auth, &c->sa, "sessionAuth.proxy.password"}};
    const char *cand[3 + sizeof eps / sizeof eps[0]];
    size_t n = 0;
    if (cfg->key_content)
        cand[n++] = "bot.privateKey.content";
    if (cfg->cert_content)
        cand[n++] = "bot.certificate.content";
    if (cfg->cert_password && *cfg->cert_password)
        cand[n++] = "bot.certificate.password";
    for (size_t i = 0; i < sizeof eps / sizeof eps[0]; i++)
        if (eps[i].ep->proxy.password && *eps[i].ep->proxy.password)
            cand[n++] = eps[i].raw->proxy ? eps[i].key : "proxy.password"; /* own or inherited */
    /* env: a secret from the environment does not make the file secret */
    const char *key = NULL;
    for (size_t i = 0; !key && i < n; i++) {
        key = cand[i];
        for (size_t j = 0; c->env && j < c->env->n; j++)
            if (strcmp(c->env->v[j].path, cand[i]) == 0)
                key = NULL;
    }
    if (!key)
        return;
    char why[1024];
    if (dfb_secret_check_fd(fd, cfg->path, key, cfg->strict_permissions, why, sizeof why) != 0)
        fail(c, "%s", why + strlen("config: "));
}

static void
set_defaults(dfb_config_t *cfg)
{
    cfg->datafeed_version = DFB_DATAFEED_V2;
    cfg->datafeed_retry = (dfb_retry_cfg_t){-1, 500, 2.0, 300000};
    cfg->datafeed_include_invisible = -1;
    cfg->datafeed_id_file_path = xstrdup(".");
    cfg->datahose_retry = (dfb_retry_cfg_t){-1, 500, 2.0, 300000};
    cfg->retry = (dfb_retry_cfg_t){10, 500, 2.0, 300000};
    bridge_defaults(cfg);
}

/*  Reads the YAML file at path into doc (with a root mapping, maybe
    empty); no path: an empty document. Returns the open file (NULL without
    a path) in *fp, 0, or -1 with a message in err. */
static int
read_document(const char *path, yaml_document_t *doc, FILE **fp, char *err, size_t errlen)
{
    *fp = NULL;
    if (!path) {
        if (!yaml_document_initialize(doc, NULL, NULL, NULL, 1, 1) ||
            !yaml_document_add_mapping(doc, NULL, YAML_BLOCK_MAPPING_STYLE)) {
            snprintf(err, errlen, "config: out of memory");
            return -1;
        }
        return 0;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "config: %s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    /* secrets: the file may hold keys and passwords; unbuffered, libyaml
       reads straight into its own buffer, which is wiped below. */
    setvbuf(f, NULL, _IONBF, 0);
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, doc)) {
        snprintf(err, errlen, "config: %s: invalid YAML at line %lu column %lu: %s", path,
                 (unsigned long)parser.problem_mark.line + 1,
                 (unsigned long)parser.problem_mark.column + 1,
                 parser.problem ? parser.problem : "parse error");
        parser_wipe(&parser);
        yaml_parser_delete(&parser);
        fclose(f);
        return -1;
    }
    parser_wipe(&parser);
    yaml_parser_delete(&parser);
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (!root || is_null(root)) {
        /* an empty file: the environment may still give everything */
        yaml_document_delete(doc);
        if (!yaml_document_initialize(doc, NULL, NULL, NULL, 1, 1) ||
            !yaml_document_add_mapping(doc, NULL, YAML_BLOCK_MAPPING_STYLE)) {
            snprintf(err, errlen, "config: out of memory");
            fclose(f);
            return -1;
        }
    } else if (root->type != YAML_MAPPING_NODE) {
        snprintf(err, errlen, "config: %s: the document is not a mapping", path);
        document_wipe(doc);
        yaml_document_delete(doc);
        fclose(f);
        return -1;
    }
    *fp = f;
    return 0;
}

dfb_config_t *
dfb_config_load(const char *path, char *err, size_t errlen)
{
    dfb_config_t *cfg = calloc(1, sizeof *cfg);
    if (!cfg) {
        snprintf(err, errlen, "config: out of memory");
        return NULL;
    }
    set_defaults(cfg);
    cfg->path = xstrdup(path);

    FILE *f = NULL;
    yaml_document_t doc;
    if (read_document(path, &doc, &f, err, errlen) != 0) {
        dfb_config_destroy(&cfg);
        return NULL;
    }
    /* The environment over the file, key by key (env). */
    dfb_config_env_t env = {NULL, 0};
    if (dfb_config_env_overlay(&doc, &env, err, errlen) < 0) {
        dfb_config_env_free(&env);
        if (f)
            fclose(f);
        document_wipe(&doc);
        yaml_document_delete(&doc);
        dfb_config_destroy(&cfg);
        return NULL;
    }

    ctx_t c;
    memset(&c, 0, sizeof c);
    c.doc = &doc;
    c.cfg = cfg;
    c.err = err;
    c.errlen = errlen;
    c.env = &env;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    prescan_log_level(&doc, root);
    walk_map(&c, root, "", root_pair, NULL);
    /* Cross-field checks, in the order an operator would fix them. */
    if (!c.failed && (!cfg->bot_username || !*cfg->bot_username))
        fail(&c, "bot.username: required");
    if (!c.failed && c.has_key_path && c.has_key_content)
        fail(&c, "bot.privateKey: set path or content, not both");
    if (!c.failed)
        check_credentials(&c);
    if (!c.failed)
        check_datahose(&c);
    if (!c.failed)
        resolve_endpoint(&c, &c.pod, "pod", 1, &cfg->pod);
    if (!c.failed)
        resolve_endpoint(&c, &c.agent, "agent", 1, &cfg->agent);
    if (!c.failed)
        resolve_endpoint(&c, &c.km, "keyManager", 1, &cfg->key_manager);
    if (!c.failed)
        resolve_endpoint(&c, &c.sa, "sessionAuth", 0, &cfg->session_auth);
    /* transport: certificate authentication needs the sessionAuth client */
    if (!c.failed && !c.has_key_path && !c.has_key_content && !cfg->session_auth.host)
        fail(&c, "sessionAuth.host: required for certificate authentication (or a global host)");
    if (!c.failed)
        bridge_check(&c);
    if (!c.failed && cfg->read_timeout_ms <= cfg->connect_timeout_ms)
        dfb_warn("config: bridge.readTimeoutMillis (%ld) should exceed "
                 "bridge.connectTimeoutMillis (%ld)",
                 cfg->read_timeout_ms, cfg->connect_timeout_ms);
    if (!c.failed && f)
        check_inline_secrets(&c, fileno(f));
    if (f)
        fclose(f);
    if (!c.failed && dfb_config_env_origins(&doc, &env, path, &cfg->origins, &cfg->origins_n) != 0)
        fail(&c, "out of memory");
    if (c.failed)
        dfb_config_env_explain(&env, err, errlen); /* names the variable (env) */
    dfb_config_env_free(&env);
    /* String values point into the document: everything kept was copied. */
    document_wipe(&doc);
    yaml_document_delete(&doc);
    if (c.failed) {
        dfb_config_destroy(&cfg);
        return NULL;
    }
    if (!cfg->publish || (path && !cfg->path) || !cfg->datafeed_id_file_path) {
        snprintf(err, errlen, "config: out of memory");
        dfb_config_destroy(&cfg);
        return NULL;
    }
    return cfg;
}

void
dfb_config_destroy(dfb_config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_config_t *cfg = *self_p;
    endpoint_free(&cfg->pod);
    endpoint_free(&cfg->agent);
    endpoint_free(&cfg->key_manager);
    endpoint_free(&cfg->session_auth);
    free(cfg->path);
    dfb_config_origins_free(cfg->origins, cfg->origins_n);
    free(cfg->bot_username);
    free(cfg->key_path);
    if (cfg->key_content) {
        OPENSSL_cleanse(cfg->key_content, strlen(cfg->key_content));
        free(cfg->key_content);
    }
    /* transport */
    free(cfg->cert_path);
    if (cfg->cert_content)
        OPENSSL_cleanse(cfg->cert_content, strlen(cfg->cert_content));
    free(cfg->cert_content);
    if (cfg->cert_password)
        OPENSSL_cleanse(cfg->cert_password, strlen(cfg->cert_password));
    free(cfg->cert_password);
    free(cfg->trust_store_path);
    free(cfg->datafeed_tag);
    free(cfg->datafeed_id_file_path);
    free(cfg->datahose_tag);
    free_event_types(cfg);
    bridge_free(cfg);
    free(cfg);
    *self_p = NULL;
}
