/*  dfbridge: the daemon. Reads the BDK config, authenticates the bot, runs
    the datafeed loop (v2, the deprecated v1, or the datahose) and publishes
    every event on a ZeroMQ PUB socket (topic frame + msgpack envelope).
    Exit statuses: see usage() and dfb_loop.h. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dfb_fdguard.h"
#include "dfb_tsan.h" /* libzmq under ThreadSanitizer (empty otherwise) */
#include "dfb_auth.h"
#include <zmq.h>

#include "dfb_cmd.h"
#include "dfb_config.h"
#include "dfb_config_env.h"
#include "dfb_curve.h"
#include "dfb_http.h"
#include "dfb_info.h"
#include "dfb_infodump.h"
#include "dfb_log.h"
#include "dfb_loop.h"
#include "dfb_metrics.h"
#include "dfb_publish.h"
#include "dfb_stop.h"
#include "dfz_cert.h"

static void
usage(FILE *out)
{
    fprintf(out, "usage: dfbridge [--config FILE] [--check]\n"
                 "       dfbridge keygen DIR NAME\n"
                 "       dfbridge --version | --help\n"
                 "  --config FILE  the BDK YAML config (plus a bridge: section); optional when\n"
                 "                 DFBRIDGE_* variables give the required keys (every key has\n"
                 "                 one: DFBRIDGE_ + its path, upper case, '_' for '.')\n"
                 "  --check        validate the config, the bot key and the CURVE files, list\n"
                 "                 where each value came from, then exit (0 ok, 2 bad)\n"
                 "  keygen DIR NAME  write a new CURVE key pair: DIR/NAME.key (public, 0644) and\n"
                 "                 DIR/NAME.key_secret (0600); never overwrites (exit 2)\n"
                 "exit status (one error line says why):\n"
                 "  0  stopped by SIGINT/SIGTERM\n"
                 "  1  fatal upstream status (403, 404, datahose 400, 403 on create: 20 feeds),\n"
                 "     or an unexpected answer to authentication\n"
                 "  2  bad configuration or command line, unbindable bridge.publish\n"
                 "     or bridge.metrics\n"
                 "  3  retries exhausted (datafeed.retry, datahose.retry or retry maxAttempts)\n"
                 "  4  authentication refused (401 on login or re-login)\n"
                 "  5  internal error (out of memory, cannot start the HTTP client, the\n"
                 "     publisher or replay thread stopped)\n");
}

/*  `dfbridge keygen DIR NAME`: a certificate pair for the bridge or a
    consumer, in the format czmq and pyzmq read. Exit 0, or 2 with one
    line (an existing file is never overwritten). */
static int
keygen(const char *dir, const char *name)
{
    char err[512], pp[4200], sp[4200], z85[DFZ_Z85_LEN + 1];
    dfz_cert_t cert;
    if (dfz_cert_save_pair(dir, name, &cert, pp, sizeof pp, sp, sizeof sp, err, sizeof err) != 0) {
        fprintf(stderr, "dfbridge keygen: %s\n", err);
        return DFB_EXIT_CONFIG;
    }
    dfz_key_encode(cert.public_key, z85);
    dfz_cert_wipe(&cert);
    printf("public certificate: %s\nsecret certificate: %s (mode 0600: keep it private)\n"
           "public key: %s\n",
           pp, sp, z85);
    return 0;
}

/*  Delivery guarantees: PUB, journal (bridge.stateDir), replay, heartbeat,
    dedupe window, from the bridge: section; CURVE when curve->enabled.
    NULL on error (message in err). */
static dfb_publish_t *
start_publisher(const dfb_config_t *cfg, const dfb_curve_t *curve, char *err, size_t errlen)
{
    dfb_publish_opts_t o = {
        .endpoint = cfg->publish,
        .sndhwm = cfg->sndhwm,
        .state_dir = cfg->state_dir,
        .journal = {.segment_bytes = (uint64_t)cfg->journal_segment_bytes,
                    .max_bytes = (uint64_t)cfg->journal_max_bytes,
                    .max_age_ms = cfg->journal_max_age_ms,
                    .fsync = cfg->journal_fsync,
                    .fsync_ms = cfg->journal_fsync_ms},
        .replay = cfg->replay,
        .replay_advertise = cfg->replay_advertise,
        .heartbeat_ms = cfg->heartbeat_ms,
        .zmtp_heartbeat_ms = cfg->zmtp_heartbeat_ms,
        .dedupe_window = (size_t)cfg->dedupe_window,
        .dedupe_ms = cfg->dedupe_ms,
        .curve_secret = curve->enabled ? curve->secret_key : NULL,
        .curve_clients_dir = curve->enabled ? curve->clients_dir : NULL,
        .max_event_bytes = (uint64_t)cfg->max_event_bytes,
        .replay_max_bytes = (uint64_t)cfg->replay_max_bytes,
        .max_connections = (uint64_t)cfg->max_connections,
        .replay_client_bytes = (uint64_t)cfg->replay_client_bytes,
        .commands = cfg->commands,
        /* a bigger request is read and answered bad_request; beyond this
           libzmq drops the connection */
        .commands_maxmsgsize = 2 * (int64_t)cfg->commands_max_bytes + 65536,
    };
    if (curve->enabled)
        dfb_info("CURVE on the PUB and replay sockets: the bridge's public key starts %s; allowed "
                 "clients: the *.key certificates in %s",
                 curve->fingerprint, curve->clients_dir);
    dfb_publish_t *pub = dfb_publish_new_opts(&o, err, errlen);
    if (pub && !cfg->state_dir)
        dfb_warn("no bridge.stateDir: no journal and no replay; a message PUB drops for a slow "
                 "or absent subscriber cannot be recovered");
    else if (pub)
        dfb_info("journal %s/journal, replay %s, heartbeat every %d ms", cfg->state_dir,
                 *dfb_publish_replay_endpoint(pub) ? dfb_publish_replay_endpoint(pub) : "off",
                 cfg->heartbeat_ms);
    return pub;
}

int
main(int argc, char **argv)
{
    const char *config_path = NULL;
    int check = 0;
    if (argc >= 2 && strcmp(argv[1], "keygen") == 0) {
        if (argc != 4) {
            fprintf(stderr, "dfbridge: keygen takes DIR NAME\n");
            usage(stderr);
            return DFB_EXIT_CONFIG;
        }
        return keygen(argv[2], argv[3]);
    }
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) && i + 1 < argc)
            config_path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            config_path = argv[i] + 9;
        else if (strcmp(argv[i], "--check") == 0)
            check = 1;
        else if (strcmp(argv[i], "--version") == 0) {
            printf("dfbridge %s\n", DF_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "dfbridge: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return DFB_EXIT_CONFIG;
        }
    }
    if (!config_path && !dfb_config_env_present()) {
        fprintf(stderr, "dfbridge: --config FILE (or DFBRIDGE_* environment variables) is "
                        "required\n");
        usage(stderr);
        return DFB_EXIT_CONFIG;
    }
    /* Signals first: a SIGTERM during start-up must not kill us half-way. */
    if (dfb_stop_init() != 0) {
        fprintf(stderr, "dfbridge: cannot install signal handlers\n");
        return DFB_EXIT_FATAL;
    }

    char err[1024] = "";
    dfb_config_t *cfg = dfb_config_load(config_path, err, sizeof err);
    if (!cfg) {
        dfb_error("%s", err);
        return DFB_EXIT_CONFIG;
    }
    dfb_log_set_level(cfg->log_level);
    dfb_log_set_format(cfg->log_format);
    dfb_auth_t *auth = dfb_auth_new(cfg, err, sizeof err);
    if (!auth) {
        dfb_error("%s", err);
        dfb_config_destroy(&cfg);
        return DFB_EXIT_CONFIG;
    }
    dfb_curve_t curve; /* the CURVE keys and the loopback rule (--check too) */
    if (dfb_curve_setup(cfg, &curve, err, sizeof err) != 0) {
        dfb_error("%s", err);
        dfb_auth_destroy(&auth);
        dfb_config_destroy(&cfg);
        return DFB_EXIT_CONFIG;
    }
    if (cfg->commands) {
        if (dfb_cmd_check_allow(cfg, err, sizeof err) != 0) {
            dfb_error("%s", err);
            dfb_curve_wipe(&curve);
            dfb_auth_destroy(&auth);
            dfb_config_destroy(&cfg);
            return DFB_EXIT_CONFIG;
        }
    }
    char pod[512], agent[512], km[512];
    dfb_endpoint_url(&cfg->pod, pod, sizeof pod);
    dfb_endpoint_url(&cfg->agent, agent, sizeof agent);
    dfb_endpoint_url(&cfg->key_manager, km, sizeof km);
    if (check) {
        printf("%s: OK (pod %s, agent %s, keyManager %s, bot %s, publish %s%s)\n",
               config_path ? config_path : "(environment)", pod, agent, km, cfg->bot_username,
               cfg->publish, curve.enabled ? ", CURVE" : "");
        /* env: where every value came from, one grep-able line per key */
        if (cfg->commands) {
            char line[1024];
            dfb_cmd_describe(cfg, curve.enabled, line, sizeof line);
            printf("%s\n", line);
        }
        printf("sources:\n");
        dfb_config_print_origins(cfg, stdout);
        dfb_curve_wipe(&curve);
        dfb_auth_destroy(&auth);
        dfb_config_destroy(&cfg);
        return 0;
    }

    int rc = DFB_EXIT_FATAL;
    dfb_fdguard_raise_limit(); /* before any socket: connection caps derive from it */
    dfb_http_t *http = dfb_http_new(cfg->connect_timeout_ms, cfg->read_timeout_ms,
                                    cfg->max_body_bytes, dfb_stop_fd());
    dfb_publish_t *pub = start_publisher(cfg, &curve, err, sizeof err);
    dfb_curve_wipe(&curve); /* the publisher keeps its own copy */
    dfb_loop_t *loop = NULL;
    if (!http) {
        dfb_error("cannot initialise the HTTP client");
        rc = DFB_EXIT_INTERNAL;
    } else if (dfb_http_configure(http, cfg, err, sizeof err) != 0) {
        /* transport: proxies, defaultHeaders, trust store, bot certificate */
        dfb_error("%s", err);
        rc = DFB_EXIT_CONFIG;
    } else if (!pub) {
        dfb_error("%s", err);
        rc = DFB_EXIT_CONFIG;
    } else if (!(loop = dfb_loop_new(cfg, auth, http, pub, dfb_stop_fd()))) {
        dfb_error("cannot create the datafeed loop");
        rc = DFB_EXIT_INTERNAL;
    } else {
        dfb_info("dfbridge %s: pod %s, agent %s, keyManager %s, bot %s, %s, publish %s "
                 "(sndhwm %d), epoch %s",
                 DF_VERSION, pod, agent, km, cfg->bot_username,
                 cfg->source == DFB_SOURCE_DATAHOSE         ? "datahose"
                 : cfg->datafeed_version == DFB_DATAFEED_V1 ? "datafeed v1"
                                                            : "datafeed v2",
                 dfb_publish_endpoint(pub), cfg->sndhwm, dfb_publish_epoch(pub));
        dfb_publish_set_loop(pub, dfb_loop_counters(loop));
        dfb_info_sources_t src = {.loop = dfb_loop_counters(loop),
                                  .pub = dfb_publish_counters(pub),
                                  .journal = dfb_publish_journal(pub)};
        dfb_infodump_t *dump = dfb_infodump_new(&src); /* SIGUSR1 */
        if (!dump)
            dfb_warn("SIGUSR1 info dump unavailable: %s", strerror(errno));
        dfb_metrics_t *metrics = NULL; /* bridge.metrics: /metrics, /healthz, /readyz */
        if (cfg->metrics) {
            dfb_metrics_opts_t mo = {.address = cfg->metrics,
                                     .max_read_age_ms = cfg->health_max_read_age_ms,
                                     .src = src};
            if (!(metrics = dfb_metrics_new(&mo, err, sizeof err))) {
                dfb_error("%s", err);
                rc = DFB_EXIT_CONFIG;
            }
        }
        dfb_cmd_t *cmd = NULL; /* bridge.commands: workers' Symphony calls */
        dfb_zsock_opts_t czo;
        void *csock = dfb_publish_take_commands(pub, &czo);
        if (csock && (!cfg->metrics || metrics)) {
            dfb_cmd_opts_t co = {.cfg = cfg,
                                 .auth = auth,
                                 .stop_fd = dfb_stop_fd(),
                                 .ctx = dfb_publish_ctx(pub),
                                 .sock = csock,
                                 .zo = &czo,
                                 .counters = dfb_publish_counters_rw(pub),
                                 .guard = dfb_publish_guard(pub)};
            if (!(cmd = dfb_cmd_new(&co, err, sizeof err))) {
                dfb_error("%s", err);
                rc = DFB_EXIT_INTERNAL;
            }
        } else if (csock) {
            zmq_close(csock);
        }
        if ((!cfg->metrics || metrics) && (!csock || cmd))
            rc = dfb_loop_run(loop);
        /* Requests still waiting are answered unavailable; the ones with an
           executor are cut by the stop (a loop that ended on an error did
           not request one) and answered. */
        dfb_stop_request();
        dfb_cmd_destroy(&cmd);
        /* Stopped after the loop (SIGTERM/SIGINT end it): until here
           /healthz and /readyz say the loop stopped and why. */
        dfb_metrics_destroy(&metrics);
        dfb_infodump_destroy(&dump);
        /* A dead internal thread requested the stop; its error line is out. */
        if (dfb_publish_failed(pub))
            rc = DFB_EXIT_INTERNAL;
        dfb_loop_stats_t ls;
        dfb_publish_stats_t ps;
        dfb_loop_stats(loop, &ls);
        dfb_publish_stats(pub, &ps);
        if (rc == DFB_EXIT_STOPPED)
            dfb_info("stopped by %s", dfb_stop_signal() == SIGTERM  ? "SIGTERM"
                                      : dfb_stop_signal() == SIGINT ? "SIGINT"
                                                                    : "request");
        dfb_info("reads %" PRIu64 ", events %" PRIu64 ", published %" PRIu64
                 ", encode errors %" PRIu64 ", send errors %" PRIu64 ", retries %" PRIu64
                 ", re-auths %" PRIu64 ", recreates %" PRIu64 " (adopted %" PRIu64
                 "), feeds created %" PRIu64 ", unacked batches %" PRIu64 ", malformed %" PRIu64
                 ", replaced %" PRIu64,
                 ls.reads, ls.events, ps.published, ps.encode_errors, ps.send_errors, ls.retries,
                 ls.reauths, ls.recreates, ls.adopted, ls.created, ls.unacked, ls.malformed,
                 ls.replaced);
        dfb_info("journaled %" PRIu64 ", journal errors %" PRIu64 ", deduped %" PRIu64
                 ", heartbeats %" PRIu64 ", replay requests %" PRIu64 " (messages %" PRIu64
                 ", errors %" PRIu64 ", abandoned %" PRIu64 ")",
                 ps.journaled, ps.journal_errors, ps.deduped, ps.heartbeats, ps.replay_requests,
                 ps.replay_messages, ps.replay_errors, ps.replay_abandoned);
        dfb_infodump_log(&src);
    }
    /* The publisher first: its replay thread reads the loop's counters for
       info answers until it is stopped (the loop does not use pub to die). */
    dfb_publish_destroy(&pub);
    dfb_loop_destroy(&loop);
    dfb_http_destroy(&http);
    dfb_auth_destroy(&auth);
    dfb_config_destroy(&cfg);
    return rc;
}
