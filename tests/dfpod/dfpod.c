/* dfpod: a fake Symphony pod for the tests, the demo and the benchmarks.
 * main() parses the options, starts the HTTP daemon and the optional event generator,
 * writes --port-file once listening, and stops cleanly on SIGINT/SIGTERM (exit 0). */
#include "pod.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
usage(FILE *out)
{
    fprintf(out, "usage: dfpod --public-key FILE [options]\n"
                 "  --listen ADDR:PORT     default 127.0.0.1:0 ([::1]:PORT for IPv6)\n"
                 "  --port-file FILE       write the bound port once listening\n"
                 "  --bot-username NAME    default my-bot\n"
                 "  --bot-id ID            default 68719476738\n"
                 "  --public-key FILE      PEM public key (SPKI or PKCS#1) for RS512 JWTs\n"
                 "  --hold-ms MS           long-poll hold (default 30000)\n"
                 "  --visibility-ms MS     redelivery of unacknowledged batches (default 30000)\n"
                 "  --ttl-ms MS            feed TTL without reads (default 1800000)\n"
                 "  --max-feeds N          live v2 feeds allowed (default 20)\n"
                 "  --batch-max N          events per read response (default 100)\n"
                 "  --rate R               generate R events/s continuously (default 0)\n"
                 "  --generate N           generate N events at start-up (default 0)\n"
                 "  --gen-kind KIND        what --generate, --rate and /admin/generate make:\n"
                 "                         mix (the 17 types, default) or messagesent\n"
                 "  --gen-bytes B          size of a messagesent event's JSON (default 1200)\n"
                 "  --seed S               generator seed (default 1)\n"
                 "  --token-ttl-ms MS      token lifetime (default 0 = never expires)\n"
                 "  --verbose              log every call to stderr\n"
                 "  --tls-cert FILE        serve HTTPS with this PEM certificate (and --tls-key)\n"
                 "  --tls-key FILE         its PEM private key\n"
                 "  --tls-client-ca FILE   PEM CA of client certificates: enables mutual TLS\n"
                 "                         /sessionauth and /keyauth (CN = bot username)\n"
                 "  --agent-version V      GET /agent/v1/info version (default Agent-24.12.1)\n"
                 "  --skd                  session tokens are JWTs with\n"
                 "                         canUseSimplifiedKeyDelivery=true\n"
                 "  --no-history           free events once acknowledged (long benchmarks);\n"
                 "                         GET /admin/events then lists only pending ones\n"
                 "  --no-echo-posts        a message create/update enqueues no MESSAGESENT\n"
                 "  --list-lag-ms MS       a stored message is listed (stream message list) MS\n"
                 "                         after its create, as a lagging listing would (default 0)\n"
                 "  --version\n");
}

/* Parses a non-negative integer option; exits with usage on error. */
static int64_t
num_opt(const char *name, const char *v, int64_t min, int64_t max)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < min || x > max) {
        fprintf(stderr, "dfpod: bad value for --%s: %s\n", name, v);
        exit(2);
    }
    return (int64_t)x;
}

static void
parse_listen(pod_config_t *cfg, const char *v)
{
    const char *colon;
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (!close || close[1] != ':' || (size_t)(close - v - 1) >= sizeof cfg->listen_host)
            goto bad;
        memcpy(cfg->listen_host, v + 1, (size_t)(close - v - 1));
        cfg->listen_host[close - v - 1] = '\0';
        cfg->ipv6 = true;
        colon = close + 1;
    } else {
        colon = strrchr(v, ':');
        if (!colon || (size_t)(colon - v) >= sizeof cfg->listen_host)
            goto bad;
        memcpy(cfg->listen_host, v, (size_t)(colon - v));
        cfg->listen_host[colon - v] = '\0';
        cfg->ipv6 = strchr(cfg->listen_host, ':') != NULL;
    }
    cfg->listen_port = (int)num_opt("listen", colon + 1, 0, 65535);
    return;
bad:
    fprintf(stderr, "dfpod: --listen wants ADDR:PORT or [ADDR6]:PORT, got %s\n", v);
    exit(2);
}

/* The --rate generator: a thread that tops up to rate*elapsed events every 10 ms. */
typedef struct {
    pod_state_t *st;
    pod_gen_t *gen;
    double rate;
    const pod_config_t *cfg;
} rate_arg_t;

static void *
rate_main(void *p)
{
    rate_arg_t *a = p;
    int64_t start = pod_mono_ms();
    uint64_t made = 0;
    while (pod_state_sleep(a->st, 10)) {
        double due = a->rate * (double)(pod_mono_ms() - start) / 1000.0;
        while ((double)made < due) {
            /* Every twentieth event is the bot's own, types cycle through all 17. */
            size_t len;
            char *s = a->cfg->gen_kind == POD_GEN_MESSAGESENT
                          ? pod_gen_message_sent(a->gen, a->cfg->gen_bytes, &len, NULL)
                          : pod_gen_event(a->gen, (int)(made % 17), made % 20 == 19, &len);
            if (s) {
                pod_state_enqueue(a->st, s, len);
                free(s);
            }
            made++;
        }
    }
    return NULL;
}

static int
write_port_file(const char *path, int port)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0)
        return -1;
    /* rename: a test polling the file never sees it half written */
    return rename(tmp, path);
}

int
main(int argc, char **argv)
{
    pod_config_t cfg = {
        .listen_host = "127.0.0.1",
        .listen_port = 0,
        .bot_username = "my-bot",
        .bot_id = 68719476738LL,
        .hold_ms = 30000,
        .visibility_ms = 30000,
        .ttl_ms = 1800000,
        .token_ttl_ms = 0,
        .max_feeds = 20,
        .batch_max = 100,
        .seed = 1,
        .gen_kind = POD_GEN_MIX,
        .gen_bytes = 1200,
    };
    enum {
        O_LISTEN = 256,
        O_PORTFILE,
        O_USER,
        O_ID,
        O_KEY,
        O_HOLD,
        O_VIS,
        O_TTL,
        O_MAXF,
        O_BATCH,
        O_RATE,
        O_GEN,
        O_SEED,
        O_TOKTTL,
        O_VERBOSE,
        O_VERSION,
        O_HELP,
        O_NOHIST,
        O_NOECHO,
        O_LISTLAG,
        O_TLSCERT, /* TLS and certificate authentication */
        O_TLSKEY,
        O_TLSCA,
        O_AGENTVER,
        O_SKD,
        O_GENKIND,
        O_GENBYTES
    };
    static const struct option opts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"port-file", required_argument, NULL, O_PORTFILE},
        {"bot-username", required_argument, NULL, O_USER},
        {"bot-id", required_argument, NULL, O_ID},
        {"public-key", required_argument, NULL, O_KEY},
        {"hold-ms", required_argument, NULL, O_HOLD},
        {"visibility-ms", required_argument, NULL, O_VIS},
        {"ttl-ms", required_argument, NULL, O_TTL},
        {"max-feeds", required_argument, NULL, O_MAXF},
        {"batch-max", required_argument, NULL, O_BATCH},
        {"rate", required_argument, NULL, O_RATE},
        {"generate", required_argument, NULL, O_GEN},
        {"seed", required_argument, NULL, O_SEED},
        {"token-ttl-ms", required_argument, NULL, O_TOKTTL},
        {"verbose", no_argument, NULL, O_VERBOSE},
        {"no-history", no_argument, NULL, O_NOHIST},
        {"no-echo-posts", no_argument, NULL, O_NOECHO},
        {"list-lag-ms", required_argument, NULL, O_LISTLAG},
        {"version", no_argument, NULL, O_VERSION},
        {"help", no_argument, NULL, O_HELP},
        {"tls-cert", required_argument, NULL, O_TLSCERT},
        {"tls-key", required_argument, NULL, O_TLSKEY},
        {"tls-client-ca", required_argument, NULL, O_TLSCA},
        {"agent-version", required_argument, NULL, O_AGENTVER},
        {"skd", no_argument, NULL, O_SKD},
        {"gen-kind", required_argument, NULL, O_GENKIND},
        {"gen-bytes", required_argument, NULL, O_GENBYTES},
        {NULL, 0, NULL, 0},
    };
    const int64_t big = (int64_t)1 << 40;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_LISTEN:
            parse_listen(&cfg, optarg);
            break;
        case O_PORTFILE:
            cfg.port_file = optarg;
            break;
        case O_USER:
            cfg.bot_username = optarg;
            break;
        case O_ID:
            cfg.bot_id = num_opt("bot-id", optarg, 1, INT64_MAX);
            break;
        case O_KEY:
            cfg.public_key_path = optarg;
            break;
        case O_HOLD:
            cfg.hold_ms = num_opt("hold-ms", optarg, 0, big);
            break;
        case O_VIS:
            cfg.visibility_ms = num_opt("visibility-ms", optarg, 0, big);
            break;
        case O_TTL:
            cfg.ttl_ms = num_opt("ttl-ms", optarg, 1, big);
            break;
        case O_MAXF:
            cfg.max_feeds = (int)num_opt("max-feeds", optarg, 0, 1000000);
            break;
        case O_BATCH:
            cfg.batch_max = (int)num_opt("batch-max", optarg, 1, 1000000);
            break;
        case O_RATE: {
            char *end;
            cfg.rate = strtod(optarg, &end);
            if (end == optarg || *end || cfg.rate < 0 || cfg.rate > 1e7) {
                fprintf(stderr, "dfpod: bad value for --rate: %s\n", optarg);
                return 2;
            }
            break;
        }
        case O_GEN:
            cfg.generate = (long)num_opt("generate", optarg, 0, 100000000);
            break;
        case O_GENKIND:
            if (strcmp(optarg, "mix") == 0) {
                cfg.gen_kind = POD_GEN_MIX;
            } else if (strcmp(optarg, "messagesent") == 0) {
                cfg.gen_kind = POD_GEN_MESSAGESENT;
            } else {
                fprintf(stderr, "dfpod: --gen-kind wants mix or messagesent, got %s\n", optarg);
                return 2;
            }
            break;
        case O_GENBYTES:
            cfg.gen_bytes = (size_t)num_opt("gen-bytes", optarg, 600, 1000000);
            break;
        case O_SEED:
            cfg.seed = (uint64_t)num_opt("seed", optarg, 0, INT64_MAX);
            break;
        case O_TOKTTL:
            cfg.token_ttl_ms = num_opt("token-ttl-ms", optarg, 0, big);
            break;
        case O_NOHIST:
            cfg.no_history = true;
            break;
        case O_NOECHO:
            cfg.no_echo_posts = true;
            break;
        case O_LISTLAG:
            cfg.list_lag_ms = num_opt("list-lag-ms", optarg, 0, 3600000);
            break;
        case O_TLSCERT:
            cfg.tls_cert_path = optarg;
            break;
        case O_TLSKEY:
            cfg.tls_key_path = optarg;
            break;
        case O_TLSCA:
            cfg.tls_client_ca_path = optarg;
            break;
        case O_AGENTVER:
            cfg.agent_version = optarg;
            break;
        case O_SKD:
            cfg.skd = true;
            break;
        case O_VERBOSE:
            cfg.verbose = true;
            break;
        case O_VERSION:
            printf("dfpod %s\n", DF_VERSION);
            return 0;
        case O_HELP:
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc || !cfg.public_key_path) {
        usage(stderr);
        return 2;
    }
    if (!cfg.tls_cert_path != !cfg.tls_key_path || (cfg.tls_client_ca_path && !cfg.tls_cert_path)) {
        fprintf(stderr,
                "dfpod: --tls-cert and --tls-key go together; --tls-client-ca needs them\n");
        return 2;
    }

    char err[256];
    pod_jwt_t *jwt = pod_jwt_new(cfg.public_key_path, cfg.bot_username, err, sizeof err);
    if (!jwt) {
        fprintf(stderr, "dfpod: %s\n", err);
        return 1;
    }

    /* Block the stop signals before any thread starts, so that only sigwait() sees them. */
    sigset_t stopset;
    sigemptyset(&stopset);
    sigaddset(&stopset, SIGINT);
    sigaddset(&stopset, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stopset, NULL);
    signal(SIGPIPE, SIG_IGN);

    pod_state_t *st = pod_state_new(&cfg);
    pod_gen_t *gen = pod_gen_new(cfg.seed, cfg.bot_id, cfg.bot_username);
    if (!st || !gen) {
        fprintf(stderr, "dfpod: out of memory\n");
        return 1;
    }
    if (cfg.generate > 0)
    {
        pod_gen_opts_t go = {(pod_gen_kind_t)cfg.gen_kind, cfg.gen_bytes, false, 0, NULL, NULL};
        pod_gen_enqueue_opts(gen, st, cfg.generate, 0.05, &go, NULL);
    }

    pod_out_t *out = pod_out_new(&cfg, st);
    if (!out) {
        fprintf(stderr, "dfpod: out of memory\n");
        return 1;
    }
    pod_http_t *http = pod_http_new(&cfg, st, jwt, gen, out);
    if (!http)
        return 1;
    if (cfg.port_file && write_port_file(cfg.port_file, pod_http_port(http)) != 0) {
        fprintf(stderr, "dfpod: cannot write %s: %s\n", cfg.port_file, strerror(errno));
        pod_state_shutdown(st);
        pod_http_destroy(&http);
        return 1;
    }
    if (cfg.verbose)
        fprintf(stderr, "dfpod: listening on %s%s%s:%d\n", cfg.ipv6 ? "[" : "", cfg.listen_host,
                cfg.ipv6 ? "]" : "", pod_http_port(http));

    pthread_t rate_thread;
    rate_arg_t rate_arg = {st, gen, cfg.rate, &cfg};
    bool rate_on = cfg.rate > 0 && pthread_create(&rate_thread, NULL, rate_main, &rate_arg) == 0;

    int sig = 0;
    while (sigwait(&stopset, &sig) != 0)
        ;
    if (cfg.verbose)
        fprintf(stderr, "dfpod: signal %d, stopping\n", sig);

    /* Let held reads and sleepers answer first, then stop the daemon (joins connections). */
    pod_state_shutdown(st);
    if (rate_on)
        pthread_join(rate_thread, NULL);
    pod_http_destroy(&http);
    pod_out_destroy(&out);
    pod_gen_destroy(&gen);
    pod_state_destroy(&st);
    pod_jwt_destroy(&jwt);
    return 0;
}
