/*  dfb_config's self-test (dfb_selftest config): the reference configs of
    bridge/tests/data, every key's default, type and range, the env
    overrides, secrets and the errors of broken files, through the public
    API only (dfb_config_load, dfb_config_keys, dfb_endpoint_url). */
#include "dfb_config.h"
#include "dfb_config_env.h"
#include "dfb_dedupe.h"
#include "dfb_metrics.h"
#include "dfb_secret.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The project's one CHECK macro set (tests/include/df_check.h). */
#include "df_check.h"

static int
ep_is(const dfb_endpoint_t *ep, const char *url)
{
    char buf[512];
    if (!ep->host || dfb_endpoint_url(ep, buf, sizeof buf) != 0)
        return 0;
    if (strcmp(buf, url) != 0) {
        printf("  endpoint %s, want %s\n", buf, url);
        return 0;
    }
    return 1;
}

static int
retry_is(const dfb_retry_cfg_t *r, int max, long initial, double mult, long maxms)
{
    int ok = r->max_attempts == max && r->initial_ms == initial &&
             fabs(r->multiplier - mult) < 1e-9 && r->max_ms == maxms;
    if (!ok)
        printf("  retry %d/%ld/%g/%ld, want %d/%ld/%g/%ld\n", r->max_attempts, r->initial_ms,
               r->multiplier, r->max_ms, max, initial, mult, maxms);
    return ok;
}

/*  Loads text from a temporary file of the given mode (secrets). */
static dfb_config_t *
load_text_mode(const char *text, mode_t mode, char *err, size_t errlen)
{
    char path[] = "/tmp/dfb_config_test_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    if (fchmod(fd, mode) != 0) {
        close(fd);
        unlink(path);
        return NULL;
    }
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    dfb_config_t *cfg = dfb_config_load(path, err, errlen);
    unlink(path);
    return cfg;
}

static dfb_config_t *
load_text(const char *text, char *err, size_t errlen)
{
    return load_text_mode(text, 0600, err, errlen); /* mkstemp's own mode */
}

int
dfb_config_test(int verbose)
{
    char err[512] = "";
    df_check_failures = 0;
    const char *dir = getenv("DFB_TEST_DATA_DIR");
    char path[1024];

    if (dir) {
        /* The reference configs ship in bridge/tests/data: missing is a failure. */
        snprintf(path, sizeof path, "%s/python-docs-full-config.yaml", dir);
        if (access(path, R_OK) != 0) {
            printf("  reference configs: %s not readable\n", path);
            CHECK(!"reference configs readable");
            dir = NULL;
        }
    }
    if (dir) {
        /* The Python BDK's documented full config: every section, inheritance. */
        snprintf(path, sizeof path, "%s/python-docs-full-config.yaml", dir);
        dfb_config_t *cfg = dfb_config_load(path, err, sizeof err);
        if (verbose)
            printf("  %s -> %s\n", path, cfg ? "ok" : err);
        CHECK(cfg);
        if (cfg) {
            CHECK(ep_is(&cfg->pod, "https://dev.symphony.com:443"));
            CHECK(ep_is(&cfg->agent, "https://dev-agent.symphony.com:5678"));
            CHECK(ep_is(&cfg->key_manager, "https://dev-key.symphony.com:8444"));
            CHECK(ep_is(&cfg->session_auth, "https://dev-session.symphony.com:8444"));
            CHECK(cfg->trust_store_path &&
                  strcmp(cfg->trust_store_path, "/path/to/truststore.pem") == 0); /* transport */
            CHECK(strcmp(cfg->bot_username, "bot-name") == 0);
            CHECK(cfg->key_path && strcmp(cfg->key_path, "/path/to/bot/rsa-private-key.pem") == 0);
            CHECK(!cfg->key_content);
            CHECK(cfg->datafeed_version == DFB_DATAFEED_V2);
            CHECK(retry_is(&cfg->datafeed_retry, 6, 2000, 1.5, 10000));
            CHECK(retry_is(&cfg->retry, 6, 2000, 1.5, 10000));
            CHECK(cfg->datafeed_include_invisible == -1);
            CHECK(!cfg->datafeed_tag);
            CHECK(strcmp(cfg->publish, "tcp://127.0.0.1:5556") == 0);
            CHECK(cfg->sndhwm == 10000);
            CHECK(cfg->read_timeout_ms == 60000 && cfg->connect_timeout_ms == 15000);
            CHECK(cfg->max_body_bytes == 64u << 20);
        }
        dfb_config_destroy(&cfg);

        /* The Java BDK's test config: partial datafeed.retry block. */
        snprintf(path, sizeof path, "%s/java-test-config.yaml", dir);
        cfg = dfb_config_load(path, err, sizeof err);
        if (verbose)
            printf("  %s -> %s\n", path, cfg ? "ok" : err);
        CHECK(cfg);
        if (cfg) {
            CHECK(ep_is(&cfg->pod, "https://devx1.symphony.com:443"));
            CHECK(ep_is(&cfg->agent, "https://devx1.symphony.com:443"));
            CHECK(ep_is(&cfg->key_manager, "https://devx1.symphony.com:443"));
            CHECK(!cfg->session_auth.host);
            CHECK(strcmp(cfg->bot_username, "tibot") == 0);
            CHECK(strcmp(cfg->key_path, "/Users/local/conf/agent/privatekey.pem") == 0);
            CHECK(cfg->datafeed_include_invisible == 1);
            /* maxAttempts given; the rest from the global defaults. */
            CHECK(retry_is(&cfg->datafeed_retry, 2, 500, 2.0, 300000));
            CHECK(retry_is(&cfg->retry, 10, 500, 2.0, 300000));
        }
        dfb_config_destroy(&cfg);
    } else {
        printf("  DFB_TEST_DATA_DIR not set: reference configs skipped\n");
    }

    /* Inheritance, overrides, context normalisation, bridge section, defaults. */
    dfb_config_t *cfg = load_text("scheme: http\nhost: 127.0.0.1\nport: 8080\ncontext: base/\n"
                                  "agent: {port: 9090, context: ''}\n"
                                  "keyManager: {host: km.local, scheme: https}\n"
                                  "bot: {username: my-bot, privateKey: {content: \"PEM\"}}\n"
                                  "datafeed: {tag: t1, includeInvisible: false}\n"
                                  "bridge:\n  publish: tcp://127.0.0.1:7777\n  sndhwm: 5\n"
                                  "  logLevel: warn\n  readTimeoutMillis: 40000\n"
                                  "  connectTimeoutMillis: 2000\n  maxBodyBytes: 4096\n"
                                  "unknownThing: 1\n",
                                  err, sizeof err);
    if (verbose)
        printf("  inline -> %s\n", cfg ? "ok" : err);
    CHECK(cfg);
    if (cfg) {
        CHECK(ep_is(&cfg->pod, "http://127.0.0.1:8080/base"));
        CHECK(ep_is(&cfg->agent, "http://127.0.0.1:9090"));
        CHECK(ep_is(&cfg->key_manager, "https://km.local:8080/base"));
        CHECK(strcmp(cfg->key_content, "PEM") == 0 && !cfg->key_path);
        CHECK(strcmp(cfg->datafeed_tag, "t1") == 0);
        CHECK(cfg->datafeed_include_invisible == 0);
        CHECK(retry_is(&cfg->datafeed_retry, -1, 500, 2.0, 300000));
        CHECK(retry_is(&cfg->retry, 10, 500, 2.0, 300000));
        CHECK(strcmp(cfg->publish, "tcp://127.0.0.1:7777") == 0);
        CHECK(cfg->sndhwm == 5 && cfg->log_level == DFB_LOG_WARN);
        CHECK(cfg->read_timeout_ms == 40000 && cfg->connect_timeout_ms == 2000);
        CHECK(cfg->max_body_bytes == 4096);
    }
    dfb_config_destroy(&cfg);
    dfb_log_set_level(DFB_LOG_INFO);

    /* datahose (loop section): defaults, the tag cut to 80 characters (not bytes), its own
       retry block, bridge.source. */
    cfg = load_text("host: h\nbot: {username: my-bot, privateKey: {path: k}}\n", err, sizeof err);
    CHECK(cfg);
    if (cfg) {
        CHECK(cfg->source == DFB_SOURCE_DATAFEED);
        CHECK(strcmp(cfg->datahose_tag, "datahose-my-bot") == 0);
        CHECK(cfg->datahose_event_types_n == 0);
        CHECK(retry_is(&cfg->datahose_retry, -1, 500, 2.0, 300000));
        CHECK(strcmp(cfg->datafeed_id_file_path, ".") == 0);
    }
    dfb_config_destroy(&cfg);
    {
        char yaml[1024], tag[200];
        /* 78 ASCII + 4 x "é" (2 bytes each): 82 characters, cut after 80. */
        memset(tag, 'a', 78);
        strcpy(tag + 78, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
        snprintf(yaml, sizeof yaml,
                 "host: h\nbot: {username: u, privateKey: {path: k}}\n"
                 "bridge: {source: datahose}\n"
                 "datafeed: {retry: {maxAttempts: 7}, idFilePath: /var/lib/x}\n"
                 "datahose: {tag: \"%s\", eventTypes: [MESSAGESENT, ROOMCREATED],\n"
                 "  retry: {initialIntervalMillis: 100}}\n",
                 tag);
        cfg = load_text(yaml, err, sizeof err);
        if (verbose)
            printf("  datahose -> %s\n", cfg ? cfg->datahose_tag : err);
        CHECK(cfg);
        if (cfg) {
            CHECK(cfg->source == DFB_SOURCE_DATAHOSE);
            CHECK(strlen(cfg->datahose_tag) == 78 + 4 &&
                  strncmp(cfg->datahose_tag, tag, 82) == 0); /* 80 characters, 82 bytes */
            CHECK(cfg->datahose_event_types_n == 2 &&
                  strcmp(cfg->datahose_event_types[0], "MESSAGESENT") == 0 &&
                  strcmp(cfg->datahose_event_types[1], "ROOMCREATED") == 0 &&
                  cfg->datahose_event_types[2] == NULL);
            /* Its own block (missing fields from the global defaults), never datafeed.retry. */
            CHECK(retry_is(&cfg->datahose_retry, 10, 100, 2.0, 300000));
            CHECK(retry_is(&cfg->datafeed_retry, 7, 500, 2.0, 300000));
            CHECK(strcmp(cfg->datafeed_id_file_path, "/var/lib/x") == 0);
        }
        dfb_config_destroy(&cfg);
        /* The default tag is cut too: datahose-<85 characters> -> 80. */
        memset(tag, 'u', 85);
        tag[85] = '\0';
        snprintf(yaml, sizeof yaml, "host: h\nbot: {username: %s, privateKey: {path: k}}\n", tag);
        cfg = load_text(yaml, err, sizeof err);
        CHECK(cfg && strlen(cfg->datahose_tag) == 80 &&
              strncmp(cfg->datahose_tag, "datahose-uuu", 12) == 0);
        dfb_config_destroy(&cfg);
    }

    /* A few error messages (the full list runs through `dfbridge --check`). */
    struct {
        const char *yaml, *want;
    } bad[] = {
        {"host: h\nbot: {privateKey: {path: k}}\n", "config: bot.username: required"},
        {"host: h\nport: abc\nbot: {username: u, privateKey: {path: k}}\n",
         "config: port: not an integer"},
        {"host: h\nbot: {username: u, privateKey: {path: k}}\ndatafeed: {retry: {multiplier: "
         "x}}\n",
         "config: datafeed.retry.multiplier: not a number"},
        {"bot: {username: u, privateKey: {path: k}}\n", "config: pod.host: required"},
        {"host: h\nbot: {username: u, privateKey: {path: k}}\nretry: {maxAttempts: 0}\n",
         "config: retry.maxAttempts: must be -1"},
        {"host: [\n", "invalid YAML"},
        /* bridge: is the bridge's own section: a mistyped key is an error */
        {"host: h\nbot: {username: u, privateKey: {path: k}}\nbridge: {publsh: tcp://*:1}\n",
         "config: bridge.publsh: unknown key"},
        {"host: h\nbot: {username: u, privateKey: {path: k}}\nbridge: {journal: {fsynk: "
         "always}}\n",
         "config: bridge.journal.fsynk: unknown key"},
        {"host: h\nbot: {username: u, privateKey: {path: k}}\nbridge: {journal: 3}\n",
         "config: bridge.journal: not a mapping"},
        {"host: h\nbot: {username: u, privateKey: {path: k}}\nbridge: {journal: {fsync: "
         "often}}\n",
         "config: bridge.journal.fsync: must be always, interval or never, not 'often'"},
        {"host: h\nbot: {username: u, privateKey: {path: k}}\nbridge: {sndhwm: -1}\n",
         "config: bridge.sndhwm: must be between 0 and 2147483647"},
        {"host: h\nbot: {username: u, privateKey: {path: k}}\nbridge: {stateDir: ''}\n",
         "config: bridge.stateDir: must not be empty"},
        {"host: h\nbot: {username: u, privateKey: {path: k}}\nbridge: {strictPermissions: maybe}\n",
         "config: bridge.strictPermissions: must be false or true, not 'maybe'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        cfg = load_text(bad[i].yaml, err, sizeof err);
        if (verbose)
            printf("  bad %zu -> %s\n", i, err);
        CHECK(!cfg);
        CHECK(strstr(err, bad[i].want));
        dfb_config_destroy(&cfg);
    }

    /* The bridge key table: the defaults it sets, written out apart from it. */
    cfg = load_text("host: h\nbot: {username: u, privateKey: {path: k}}\n", err, sizeof err);
    CHECK(cfg);
    if (cfg) {
        CHECK(cfg->source == DFB_SOURCE_DATAFEED && strcmp(cfg->publish, "tcp://127.0.0.1:5556") == 0);
        CHECK(cfg->sndhwm == 10000 && cfg->log_level == DFB_LOG_INFO);
        CHECK(cfg->read_timeout_ms == 60000 && cfg->connect_timeout_ms == 15000);
        CHECK(cfg->max_body_bytes == (size_t)64 << 20 && !cfg->state_dir);
        CHECK(cfg->journal_segment_bytes == (long long)64 << 20 &&
              cfg->journal_max_bytes == (long long)1 << 30);
        CHECK(cfg->journal_max_age_ms == 7LL * 24 * 3600 * 1000);
        CHECK(cfg->journal_fsync == DFB_FSYNC_INTERVAL && cfg->journal_fsync_ms == 1000);
        CHECK(!cfg->replay && !cfg->replay_advertise && cfg->heartbeat_ms == 1000);
        CHECK(cfg->strict_permissions == 0);
        CHECK(cfg->zmtp_heartbeat_ms == 0 && cfg->dedupe_window == 100000 &&
              cfg->dedupe_ms == 3600000);
        CHECK(!cfg->curve_secret_key && !cfg->curve_clients_dir && cfg->insecure == 0);
        CHECK(cfg->max_batch_events == 10000 && cfg->max_event_bytes == 8 << 20 &&
              cfg->replay_max_bytes == 256 << 20 && cfg->replay_client_bytes == 16 << 20);
    }
    dfb_config_destroy(&cfg);
    /* A boolean key (secrets): false / true, stored as 0 / 1. */
    cfg = load_text("host: h\nbot: {username: u, privateKey: {path: k}}\n"
                    "bridge: {strictPermissions: True}\n",
                    err, sizeof err);
    CHECK(cfg && cfg->strict_permissions == 1);
    dfb_config_destroy(&cfg);
    cfg = load_text("host: h\nbot: {username: u, privateKey: {path: k}}\n"
                    "bridge: {strictPermissions: False}\n",
                    err, sizeof err);
    CHECK(cfg && cfg->strict_permissions == 0);
    dfb_config_destroy(&cfg);
    /* secrets: a config file holding a key or a password inline follows the
       secret-file rule (under strict: refused, naming the first such key);
       one without any is not a secret file. */
    {
        static const struct {
            const char *yaml, *key; /* key NULL: no inline secret */
        } inl[] = {
            {"bot: {username: u, privateKey: {content: PEM}}\n", "bot.privateKey.content"},
            {"bot: {username: u, certificate: {path: c, password: pw}}\n",
             "bot.certificate.password"},
            {"bot: {username: u, privateKey: {path: k}}\nagent: {proxy: {host: p, port: 1, "
             "username: x, password: y}}\n",
             "agent.proxy.password"},
            {"bot: {username: u, privateKey: {path: k}}\nproxy: {host: p, port: 1, "
             "username: x, password: y}\n",
             "proxy.password"},
            {"bot: {username: u, privateKey: {path: k}}\ndefaultHeaders: {X-A: b}\n", NULL},
        };
        for (size_t i = 0; i < sizeof inl / sizeof inl[0]; i++) {
            char yaml[512];
            snprintf(yaml, sizeof yaml, "host: h\nbridge: {strictPermissions: true}\n%s",
                     inl[i].yaml);
            err[0] = '\0';
            cfg = load_text_mode(yaml, 0640, err, sizeof err);
            if (verbose)
                printf("  inline secret %zu, 0640, strict -> %s\n", i, cfg ? "ok" : err);
            if (inl[i].key) {
                char want[128];
                snprintf(want, sizeof want, "config: %s: /tmp/dfb_config_test_", inl[i].key);
                CHECK(!cfg && strstr(err, want) == err &&
                      strstr(err, "is group-readable (mode 0640): refused") &&
                      strstr(err, "chmod 600 /tmp/dfb_config_test_"));
            } else {
                CHECK(cfg);
            }
            dfb_config_destroy(&cfg);
            cfg = load_text_mode(yaml, 0600, err, sizeof err);
            CHECK(cfg);
            dfb_config_destroy(&cfg);
        }
        /* Without strict: loaded (the warning is logged). */
        cfg = load_text_mode("host: h\nbot: {username: u, privateKey: {content: PEM}}\n", 0644, err,
                             sizeof err);
        CHECK(cfg && cfg->key_content && strcmp(cfg->key_content, "PEM") == 0);
        dfb_config_destroy(&cfg);
    }
    /* Every key's default is a value of its own type and range; every key
       is named once, with a sentence of help. */
    {
        size_t n;
        const dfb_config_key_t *keys = dfb_config_keys(&n);
        CHECK(n == 41); /* 19 + strictPermissions + CURVE + hostile-input limits (issue 9) +
                           logFormat, metrics, health.maxReadAgeMillis (issue 10) +
                           the 10 command channel keys (issue 12) */
        for (size_t i = 0; i < n; i++) {
            const dfb_config_key_t *k = &keys[i];
            CHECK(k->help && k->help[0]);
            for (size_t j = 0; j < i; j++)
                CHECK(strcmp(keys[j].name, k->name) != 0);
            if (k->type == DFB_KEY_INT) {
                char *end;
                long long d = strtoll(k->def, &end, 10);
                CHECK(*k->def && *end == '\0' && d >= k->lo && d <= k->hi);
            } else if (k->type == DFB_KEY_NUMBER) {
                char *end;
                double d = strtod(k->def, &end);
                CHECK(*k->def && *end == '\0' && d >= (double)k->lo && d <= (double)k->hi);
            } else if (k->type == DFB_KEY_MAP) {
                CHECK(!*k->def);
            } else if (k->type == DFB_KEY_ENUM) {
                int found = 0;
                for (int c = 0; k->choices[c]; c++)
                    found |= strcmp(k->choices[c], k->def) == 0;
                CHECK(found);
            }
        }
    }

    /* ---- the command channel (issue 12): numbers, the allow map ---- */
    cfg = load_text("host: h\nbot: {username: u, privateKey: {content: PEM}}\n"
                    "bridge: {commands: 'tcp://127.0.0.1:0', commandsRate: 0.5,\n"
                    "  curve: {secretKey: /s.key_secret, clientsDir: /c},\n"
                    "  commandsAllow: {w1: [messages.send, 'rooms.*'], w2: '*', w3: []}}\n",
                    err, sizeof err);
    if (verbose)
        printf("  commands -> %s\n", cfg ? "ok" : err);
    CHECK(cfg);
    if (cfg) {
        CHECK(strcmp(cfg->commands, "tcp://127.0.0.1:0") == 0);
        CHECK(cfg->commands_rate == 0.5 && cfg->commands_stream_rate == 2.0);
        CHECK(cfg->commands_queue == 1000 && cfg->commands_concurrency == 4 &&
              cfg->commands_max_bytes == 8388608 && cfg->commands_window_ms == 86400000 &&
              cfg->commands_lookback_ms == 120000 && cfg->commands_settle_ms == 1000);
        CHECK(cfg->commands_allow_set && cfg->commands_allow_n == 3);
        CHECK(cfg->commands_allow_n == 3 && strcmp(cfg->commands_allow[0].client, "w1") == 0 &&
              cfg->commands_allow[0].nops == 2 &&
              strcmp(cfg->commands_allow[0].ops[1], "rooms.*") == 0 &&
              cfg->commands_allow[1].nops == 1 && strcmp(cfg->commands_allow[1].ops[0], "*") == 0 &&
              cfg->commands_allow[2].nops == 0);
        dfb_config_destroy(&cfg);
    }
    cfg = load_text("host: h\nbot: {username: u, privateKey: {content: PEM}}\n"
                    "bridge: {commandsAllow: {w1: [messages.send]}}\n",
                    err, sizeof err);
    CHECK(!cfg && strstr(err, "bridge.commandsAllow: needs CURVE"));
    dfb_config_destroy(&cfg);
    cfg = load_text("host: h\nbot: {username: u, privateKey: {content: PEM}}\n"
                    "bridge: {commandsRate: fast}\n",
                    err, sizeof err);
    CHECK(!cfg && strstr(err, "bridge.commandsRate: not a number"));
    dfb_config_destroy(&cfg);
    cfg = load_text("host: h\nbot: {username: u, privateKey: {content: PEM}}\n"
                    "bridge: {commandsConcurrency: 65}\n",
                    err, sizeof err);
    CHECK(!cfg && strstr(err, "bridge.commandsConcurrency: must be between 1 and 64"));
    dfb_config_destroy(&cfg);
    cfg = load_text("host: h\nbot: {username: u, privateKey: {content: PEM}}\n"
                    "bridge: {curve: {secretKey: /s, clientsDir: /c}, commandsAllow: [a]}\n",
                    err, sizeof err);
    CHECK(!cfg && strstr(err, "commandsAllow: must be a map"));
    dfb_config_destroy(&cfg);

    /* ---- transport keys: proxy and defaultHeaders inheritance, certificate ---- */
    cfg = load_text("host: 127.0.0.1\n"
                    "proxy: {host: gp.local, port: 3128, username: u, password: \"p:w\"}\n"
                    "defaultHeaders: {X-A: '1', X-B: two words}\n"
                    "agent: {proxy: {host: '::1', port: 8080}, defaultHeaders: {X-C: ''}}\n"
                    "ssl: {trustStore: {path: /etc/ca.pem, password: x}}\n"
                    "bot: {username: b, certificate: {path: /c.p12, password: ''}}\n",
                    err, sizeof err);
    if (verbose)
        printf("  transport -> %s\n", cfg ? "ok" : err);
    CHECK(cfg);
    if (cfg) {
        CHECK(cfg->pod.proxy.host && strcmp(cfg->pod.proxy.host, "gp.local") == 0);
        CHECK(cfg->pod.proxy.port == 3128 && strcmp(cfg->pod.proxy.username, "u") == 0 &&
              strcmp(cfg->pod.proxy.password, "p:w") == 0);
        CHECK(cfg->key_manager.proxy.port == 3128 && cfg->session_auth.proxy.port == 3128);
        CHECK(strcmp(cfg->agent.proxy.host, "::1") == 0 && cfg->agent.proxy.port == 8080 &&
              !cfg->agent.proxy.username && !cfg->agent.proxy.password);
        CHECK(cfg->pod.headers.count == 2 && strcmp(cfg->pod.headers.names[1], "X-B") == 0 &&
              strcmp(cfg->pod.headers.values[1], "two words") == 0);
        /* a client's defaultHeaders replace the global ones as a whole */
        CHECK(cfg->agent.headers.count == 1 && strcmp(cfg->agent.headers.names[0], "X-C") == 0 &&
              strcmp(cfg->agent.headers.values[0], "") == 0);
        CHECK(strcmp(cfg->trust_store_path, "/etc/ca.pem") == 0);
        CHECK(!cfg->key_path && !cfg->key_content && strcmp(cfg->cert_path, "/c.p12") == 0 &&
              strcmp(cfg->cert_password, "") == 0 && !cfg->cert_ignored);
    }
    dfb_config_destroy(&cfg);
    /* Both a key and a certificate: the key wins (Python BDK), with a warning. */
    cfg = load_text("host: h\nbot: {username: b, privateKey: {path: k}, certificate: {path: c}}\n",
                    err, sizeof err);
    CHECK(cfg && cfg->cert_ignored && strcmp(cfg->key_path, "k") == 0);
    dfb_config_destroy(&cfg);
    struct {
        const char *yaml, *want;
    } tbad[] = {
        {"host: h\nbot: {username: u, privateKey: {path: k}}\nproxy: {port: 1}\n",
         "config: proxy.host: required"},
        {"host: h\nbot: {username: u, privateKey: {path: k}}\nagent: {proxy: {host: p}}\n",
         "config: agent.proxy.port: required"},
        {"host: h\nbot: {username: u, privateKey: {path: k}}\nproxy: {host: p, port: 70000}\n",
         "config: proxy.port: must be between 1 and 65535"},
        {"host: h\nbot: {username: u, privateKey: {path: k}}\nproxy: {host: p, port: 1, "
         "username: x}\n",
         "config: proxy.password: required with proxy.username"},
        {"host: h\nbot: {username: u, privateKey: {path: k}}\nproxy: {host: 'http://p', port: 1}\n",
         "config: proxy.host: a host name or address, not a URL"},
        {"host: 'u:pw@h'\nbot: {username: u, privateKey: {path: k}}\n",
         "config: host: a host name or address, not a URL"},
        {"host: h\nagent: {host: 'https://a'}\nbot: {username: u, privateKey: {path: k}}\n",
         "config: agent.host: a host name or address, not a URL"},
        {"host: h\nbot: {username: u, privateKey: {path: k}}\ndefaultHeaders: {'a b': x}\n",
         "config: defaultHeaders.a b: not a valid header name"},
        {"host: h\nbot: {username: u, privateKey: {path: k}}\npod: {defaultHeaders: "
         "{sessionToken: x}}\n",
         "config: pod.defaultHeaders.sessionToken: set by the bridge"},
        {"host: h\nbot: {username: u, privateKey: {path: k}}\ndefaultHeaders: {X: \"a\\nb\"}\n",
         "config: defaultHeaders.X: the value has a line break"},
        {"host: h\nbot: {username: u, certificate: {path: a, content: b}}\n",
         "config: bot.certificate: set path or content, not both"},
        {"pod: {host: h}\nagent: {host: h}\nkeyManager: {host: h}\nbot: {username: u, "
         "certificate: {path: a}}\n",
         "config: sessionAuth.host: required for certificate authentication"},
        {"host: h\nbot: {username: u}\n", "config: bot.privateKey.path: required"},
    };
    for (size_t i = 0; i < sizeof tbad / sizeof tbad[0]; i++) {
        err[0] = '\0';
        cfg = load_text(tbad[i].yaml, err, sizeof err);
        if (verbose)
            printf("  transport bad %zu -> %s\n", i, err);
        CHECK(!cfg);
        CHECK(strstr(err, tbad[i].want));
        dfb_config_destroy(&cfg);
    }
    /* ---- end transport keys ---- */
    df_check_failures += dfb_config_env_test(verbose); /* env */

    /* ---- env: variables over the file, through the same parser ---- */
    setenv("DFBRIDGE_BRIDGE_SNDHWM", "9", 1);               /* an int, env beats file */
    setenv("DFBRIDGE_BRIDGE_STRICTPERMISSIONS", "TRUE", 1); /* a bool */
    setenv("DFBRIDGE_DATAHOSE_EVENTTYPES", "[MESSAGESENT, ROOMCREATED]", 1);  /* a list */
    setenv("DFBRIDGE_AGENT_DEFAULTHEADERS", "{X-A: '1', X-B: two words}", 1); /* a map */
    setenv("DFBRIDGE_DATAFEED_RETRY_INITIALINTERVALMILLIS", "20", 1); /* in the file's block */
    setenv("DFBRIDGE_BOT_USERNAME", "", 1);                           /* empty: not set */
    setenv("DFBRIDGE_BOT_PRIVATEKEY_CONTENT", "PEM-FROM-ENV", 1);     /* a secret, wiped */
    cfg = load_text("host: h\nbot: {username: u}\ndatafeed: {retry: {maxAttempts: 3}}\n"
                    "bridge: {sndhwm: 5, heartbeatMillis: 250}\n",
                    err, sizeof err);
    if (verbose)
        printf("  env over file -> %s\n", cfg ? "ok" : err);
    CHECK(cfg);
    if (cfg) {
        CHECK(cfg->sndhwm == 9 && cfg->heartbeat_ms == 250 && cfg->strict_permissions == 1);
        CHECK(strcmp(cfg->bot_username, "u") == 0);
        CHECK(cfg->key_content && strcmp(cfg->key_content, "PEM-FROM-ENV") == 0);
        CHECK(cfg->datahose_event_types_n == 2 &&
              strcmp(cfg->datahose_event_types[1], "ROOMCREATED") == 0);
        CHECK(cfg->agent.headers.count == 2 &&
              strcmp(cfg->agent.headers.values[1], "two words") == 0);
        CHECK(cfg->pod.headers.count == 0);
        CHECK(retry_is(&cfg->datafeed_retry, 3, 20, 2.0, 300000));
        int seen = 0;
        for (size_t i = 0; i < cfg->origins_n; i++) {
            const dfb_config_origin_t *o = &cfg->origins[i];
            if (strcmp(o->key, "bot.privateKey.content") == 0)
                seen += o->from == DFB_FROM_ENV && strcmp(o->value, DFB_SECRET_MASK) == 0;
            if (strcmp(o->key, "bridge.heartbeatMillis") == 0)
                seen += o->from == DFB_FROM_FILE && strcmp(o->value, "250") == 0;
            if (strcmp(o->key, "bridge.dedupeWindow") == 0)
                seen += o->from == DFB_FROM_DEFAULT && !o->where;
        }
        CHECK(seen == 3);
    }
    dfb_config_destroy(&cfg);
    CHECK(!getenv("DFBRIDGE_BOT_PRIVATEKEY_CONTENT")); /* a secret is unset once read */
    /* No file at all: the environment gives everything required. */
    setenv("DFBRIDGE_HOST", "h", 1);
    setenv("DFBRIDGE_BOT_USERNAME", "env-bot", 1);
    setenv("DFBRIDGE_BOT_PRIVATEKEY_PATH", "k", 1);
    cfg = dfb_config_load(NULL, err, sizeof err);
    CHECK(cfg && !cfg->path && strcmp(cfg->bot_username, "env-bot") == 0 && cfg->sndhwm == 9);
    dfb_config_destroy(&cfg);
    /* An unknown variable: refused, naming it. */
    setenv("DFBRIDGE_BRIDGE_NOPE", "1", 1);
    cfg = dfb_config_load(NULL, err, sizeof err);
    CHECK(!cfg && strstr(err, "config: DFBRIDGE_BRIDGE_NOPE: unknown environment variable"));
    unsetenv("DFBRIDGE_BRIDGE_NOPE");
    static const char *const vars[] = {"DFBRIDGE_BRIDGE_SNDHWM",
                                       "DFBRIDGE_BRIDGE_STRICTPERMISSIONS",
                                       "DFBRIDGE_DATAHOSE_EVENTTYPES",
                                       "DFBRIDGE_AGENT_DEFAULTHEADERS",
                                       "DFBRIDGE_DATAFEED_RETRY_INITIALINTERVALMILLIS",
                                       "DFBRIDGE_BOT_USERNAME",
                                       "DFBRIDGE_HOST",
                                       "DFBRIDGE_BOT_PRIVATEKEY_PATH"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    /* Every key of the env list is one the parser knows (never "unknown
       key"), whether or not "1" is a good value for it. */
    {
        char kp[160], var[200];
        unsigned kf;
        size_t checked = 0;
        for (size_t i = 0; dfb_config_env_key(i, kp, sizeof kp, &kf) == 0; i++) {
            if (dfb_config_env_name(kp, var, sizeof var) != 0)
                continue;
            unsigned before = dfb_config_unknown_keys();
            setenv(var, (kf & DFB_KEYF_FLOW) ? "{X-A: b}" : "1", 1);
            cfg =
                load_text("host: h\nbot: {username: u, privateKey: {path: k}}\n", err, sizeof err);
            dfb_config_destroy(&cfg);
            unsetenv(var);
            if (dfb_config_unknown_keys() != before)
                printf("  %s (%s): unknown to the parser\n", kp, var);
            CHECK(dfb_config_unknown_keys() == before);
            checked++;
        }
        CHECK(checked > 90);
    }
    return df_check_failures;
}
