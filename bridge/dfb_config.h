/*  dfb_config: the bridge's configuration, read from the BDK's YAML config
    file unchanged (the same file a Python or Java bot uses), plus a
    `bridge:` section for the daemon's own settings. Grows by adding fields:
    every field has a default set by dfb_config_load before parsing. */
#ifndef DFB_CONFIG_H
#define DFB_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "dfb_journal.h"
#include "dfb_log.h"
#include "dfb_retry.h"

/* ---- transport (auth and transport owner) ---- */
/*  An HTTP proxy (`proxy:` globally or per client): host NULL = none. */
typedef struct {
    char *host;
    int port;
    char *username; /* NULL = no credentials */
    char *password; /* NULL = none; cleansed on destroy */
} dfb_proxy_t;

/*  `defaultHeaders:` name/value pairs sent on every call of a client. */
typedef struct {
    char **names;
    char **values; /* cleansed on destroy (they may hold API keys) */
    size_t count;
} dfb_headers_t;
/* ---- end transport ---- */

/*  One HTTP client's base address: {scheme}://{host}:{port}{context}, and
    its transport settings. proxy and headers are the client's own when its
    section sets them, else the global ones (the BDKs' rule: a client's
    value replaces the global one as a whole). */
typedef struct {
    char *scheme;          /* "https" by default */
    char *host;            /* required (directly or inherited from the global host) */
    int port;              /* 443 by default */
    char *context;         /* "" by default; no trailing slash */
    dfb_proxy_t proxy;     /* host NULL = direct connection */
    dfb_headers_t headers; /* count 0 = none */
} dfb_endpoint_t;

typedef enum { DFB_DATAFEED_V2 = 2, DFB_DATAFEED_V1 = 1 } dfb_datafeed_version_t;

/*  What the loop reads (bridge.source): the bot's datafeed (v2 or v1, per
    datafeed.version), or the pod-wide datahose. */
typedef enum { DFB_SOURCE_DATAFEED = 0, DFB_SOURCE_DATAHOSE = 1 } dfb_source_t;

/*  Longest datahose tag the agent accepts; longer ones are cut (as the BDKs do). */
#define DFB_DATAHOSE_TAG_MAX 80

/*  One entry of bridge.commandsAllow: a client certificate's name and the
    op patterns it may call ("messages.send", "messages.*", "*"). */
typedef struct {
    char *client;
    char **ops;
    size_t nops;
} dfb_cmd_allow_t;

/*  Where a key's value came from (`dfbridge --check` lists them). */
typedef enum { DFB_FROM_DEFAULT = 0, DFB_FROM_FILE, DFB_FROM_ENV } dfb_config_from_t;

typedef struct {
    char *key;              /* dotted path: "bot.username", "bridge.stateDir" */
    dfb_config_from_t from;
    char *where;            /* the file's path, the variable's name, NULL for a default */
    char *value;            /* one line; a secret's is DFB_SECRET_MASK */
} dfb_config_origin_t;

typedef struct dfb_config {
    char *path; /* the file it was read from; NULL: environment only */
    dfb_config_origin_t *origins; /* every key set, and bridge.* defaults (env) */
    size_t origins_n;

    /* Clients (global scheme/host/port/context inherited, per-client override). */
    dfb_endpoint_t pod;
    dfb_endpoint_t agent;
    dfb_endpoint_t key_manager;
    dfb_endpoint_t session_auth;

    /* bot */
    char *bot_username;
    char *key_path;    /* at most one of key_path / key_content is set */
    char *key_content; /* PEM text; cleansed on destroy */
    /* bot.certificate (certificate authentication, used when no privateKey
       is set): PEM (certificate + unencrypted key) or PKCS#12 with
       cert_password; content is PEM text or base64 PKCS#12 (Java). */
    char *cert_path;
    char *cert_content;  /* cleansed on destroy */
    char *cert_password; /* cleansed on destroy */
    int cert_ignored;    /* 1: a certificate was set but privateKey wins */

    /* ssl.trustStore: a PEM CA bundle replacing the system CAs (NULL = system) */
    char *trust_store_path;

    /* datafeed */
    dfb_datafeed_version_t datafeed_version; /* v2 default */
    dfb_retry_cfg_t datafeed_retry;          /* -1, 500, 2, 300000 */
    char *datafeed_tag;                      /* NULL = not sent */
    int datafeed_include_invisible;          /* -1 = not set; sent only when 1 (Java BDK) */
    char *datafeed_id_file_path;             /* v1 only; "." default */

    /* datahose (used when source is DFB_SOURCE_DATAHOSE) */
    dfb_source_t source;            /* bridge.source: datafeed (default) or datahose */
    char *datahose_tag;             /* "datahose-<bot.username>", cut to 80 characters */
    char **datahose_event_types;    /* NULL-terminated; required non-empty for datahose */
    size_t datahose_event_types_n;  /* how many */
    dfb_retry_cfg_t datahose_retry; /* -1, 500, 2, 300000 (its own: never datafeed.retry) */

    /* global retry (authentication): 10, 500, 2, 300000 */
    dfb_retry_cfg_t retry;

    /* bridge: the daemon's own settings */
    char *publish;             /* ZeroMQ endpoint (default tcp://127.0.0.1:5556) */
    int sndhwm;                /* PUB high-water mark, 10000 */
    dfb_log_level_t log_level; /* info */
    dfb_log_format_t log_format; /* bridge.logFormat: text */
    long read_timeout_ms;      /* 60000 */
    long connect_timeout_ms;   /* 15000 */
    size_t max_body_bytes;     /* 64 MiB */
    int strict_permissions;    /* bridge.strictPermissions: 0 warn, 1 refuse open secret files */
    long long max_batch_events; /* bridge.maxBatchEvents: 10000, published in chunks of this */
    long long max_event_bytes;  /* bridge.maxEventBytes: 8 MiB, a bigger event becomes a stub */

    /* bridge: delivery guarantees (journal, replay, heartbeat, dedupe) */
    char *state_dir;                /* bridge.stateDir: NULL = no journal, no replay */
    char *replay;                   /* bridge.replay: NULL = off (needs state_dir) */
    char *replay_advertise;         /* bridge.replayAdvertise: NULL = the bound endpoint */
    int heartbeat_ms;               /* bridge.heartbeatMillis: 1000, 0 = off */
    int zmtp_heartbeat_ms;          /* bridge.zmtpHeartbeatMillis: 0 = off */
    long long journal_segment_bytes; /* bridge.journal.segmentBytes: 64 MiB */
    long long journal_max_bytes;    /* bridge.journal.maxBytes: 1 GiB (0 = no limit) */
    long long journal_max_age_ms;   /* bridge.journal.maxAgeMillis: 7 days (0 = no limit) */
    dfb_fsync_t journal_fsync;      /* bridge.journal.fsync: interval */
    long journal_fsync_ms;          /* bridge.journal.fsyncMillis: 1000 */
    long long dedupe_window;        /* bridge.dedupeWindow: 100000 keys (0 = off) */
    long long dedupe_ms;            /* bridge.dedupeMillis: 1 h (0 = no age limit) */

    /* bridge: security (README "Security") */
    char *curve_secret_key;  /* bridge.curve.secretKey: NULL = no CURVE */
    char *curve_clients_dir; /* bridge.curve.clientsDir: set exactly when curve_secret_key is */
    int insecure;            /* bridge.insecure: 1 = non-loopback endpoints without CURVE allowed */
    long long replay_max_bytes;     /* bridge.replayMaxBytes: 256 MiB held by replay answers */
    long long replay_client_bytes;  /* bridge.replayClientBytes: 16 MiB per client */
    long long max_connections;      /* bridge.maxConnections: per socket, 0 = a quarter of the fds */

    /* bridge: the command channel (README "Replying from a worker", issue 12) */
    char *commands;                   /* bridge.commands: ROUTER endpoint, NULL = off */
    dfb_cmd_allow_t *commands_allow;  /* bridge.commandsAllow: NULL = unset (every client) */
    size_t commands_allow_n;
    int commands_allow_set;           /* 1: the key was given (even as an empty map) */
    long long commands_window_ms;     /* bridge.commandsWindowMillis: 86400000 */
    long long commands_lookback_ms;   /* bridge.commandsLookbackMillis: 120000 */
    long long commands_settle_ms;     /* bridge.commandsSettleMillis: 1000 */
    double commands_rate;             /* bridge.commandsRate: 20 per second, 0 = no limit */
    double commands_stream_rate;      /* bridge.commandsStreamRate: 2 per second, 0 = no limit */
    long long commands_queue;         /* bridge.commandsQueue: 1000 requests waiting */
    int commands_concurrency;         /* bridge.commandsConcurrency: 4 executor threads */
    long long commands_max_bytes;     /* bridge.commandsMaxBytes: 8 MiB per request frame */

    /* bridge: metrics and health (README "Metrics and health") */
    char *metrics;                    /* bridge.metrics: HOST:PORT of /metrics, NULL = off */
    long long health_max_read_age_ms; /* bridge.health.maxReadAgeMillis: 75000 */
} dfb_config_t;

/*  Reads and validates the YAML file at path (NULL: no file), with every
    DFBRIDGE_* environment variable laid over it key by key (README
    "Configuration from the environment"). Returns a new config, or NULL
    on error with one human-readable message in err ("config: bot.username:
    required"). Unknown keys in the BDK's sections are logged as warnings
    (the BDKs ignore them); under bridge: they are errors, and so is an
    unknown DFBRIDGE_* variable. The caller owns the result. */
dfb_config_t *dfb_config_load(const char *path, char *err, size_t errlen);

/*  Prints one line per entry of cfg->origins:
    "  <key> = <value>  [file <path>|env <VARIABLE>|default]". */
void dfb_config_print_origins(const dfb_config_t *cfg, FILE *out);

/*  The kinds of value a bridge: key takes. */
typedef enum {
    DFB_KEY_INT,      /* a decimal integer in [lo, hi] */
    DFB_KEY_ENUM,     /* one of choices (case-insensitive) */
    DFB_KEY_ENDPOINT, /* a ZeroMQ endpoint (scheme://...) */
    DFB_KEY_PATH,     /* a non-empty file system path */
    DFB_KEY_ADDRESS,  /* an HTTP listening address: IP:PORT, [IPv6]:PORT or :PORT */
    DFB_KEY_NUMBER,   /* a decimal number (fractions allowed) in [lo, hi] */
    DFB_KEY_MAP       /* a map of lists (bridge.commandsAllow); the environment gives flow text */
} dfb_key_type_t;

/*  One key of the bridge: section: the single source that parsing, the
    defaults, `--check`, the example config and the README table follow. */
typedef struct {
    const char *name; /* under bridge:, dotted: "publish", "journal.fsync" */
    dfb_key_type_t type;
    const char *def;            /* the default as YAML text; "" = unset */
    long long lo, hi;           /* DFB_KEY_INT: the accepted range */
    const char *const *choices; /* DFB_KEY_ENUM: NULL-terminated; the value is the index */
    size_t offset;              /* internal: the dfb_config_t field */
    int ctype;                  /* internal: that field's C type */
    const char *help;           /* one sentence */
} dfb_config_key_t;

/*  The bridge: keys, in documentation order (static; *count set). */
const dfb_config_key_t *dfb_config_keys(size_t *count);

/*  "integer", "choice", "endpoint", "path", "address", "number", "map"
    (static). */
const char *dfb_config_key_type_name(dfb_key_type_t type);

/*  Frees the config (key content is wiped first), NULLs *self_p; accepts
    NULL. */
void dfb_config_destroy(dfb_config_t **self_p);

/*  Writes the base URL of an endpoint (no trailing slash) into buf.
    Returns 0, or -1 when buf is too small. */
int dfb_endpoint_url(const dfb_endpoint_t *ep, char *buf, size_t len);

/*  Self-test (reads the reference configs from DFB_TEST_DATA_DIR when set);
    returns 0 when all checks pass. */
int dfb_config_test(int verbose);
/*  Unknown keys met by the parser since the start (the self-test checks
    that every env key reaches a known branch). */
unsigned dfb_config_unknown_keys(void);

#endif
