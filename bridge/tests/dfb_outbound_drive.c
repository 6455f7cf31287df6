/*  dfb_outbound_drive: runs command channel requests through dfb_outbound_exec
    against a pod, for bridge/tests/outbound_e2e.py (no ROUTER, no journal:
    the executor's part alone).

    dfb_outbound_drive --config CFG [--scope S] [--begin-ms MS] [--resumed]
                       [--lookback MS] [--paging PAGE,PAGES] [--login-first] [--loop-like] REQ...

    Each REQ is a file holding one request frame (msgpack). The requests run
    in parallel, one thread and one dfb_outbound_t each, sharing one
    dfb_auth_t. --login-first: log in, print "ready", wait for a line on
    stdin, then start. --serial: one thread and one dfb_outbound_t run the
    requests one after the other (its keep-alive connection reused). --loop-like: one more thread
   does what the datafeed loop does on a 401 (GET sessioninfo with its own client, then
    dfb_auth_refresh_shared). One line per request, in argument order:
    "outcome <hex of dfb_cmd_outcome_encode> attempts <n> ms <elapsed>". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "dfb_auth.h"
#include "dfb_cmdproto.h"
#include "dfb_config.h"
#include "dfb_http.h"
#include "dfb_log.h"
#include "dfb_outbound.h"
#include "dfb_retry.h"

typedef struct {
    const dfb_config_t *cfg;
    dfb_auth_t *auth;
    dfb_outbound_t *ob; /* --serial: shared, borrowed */
    const char *path;
    dfb_outbound_ctx_t ctx;
    int64_t lookback;
    int page, pages; /* --paging: the lookup's bounds (0: defaults) */
    dfb_buf_t line; /* the output line */
    int rc;
} job_t;

static void *
run(void *arg)
{
    job_t *j = arg;
    char err[512], why[512];
    FILE *f = fopen(j->path, "rb");
    uint8_t *frame = malloc(64u << 20);
    size_t n = f && frame ? fread(frame, 1, 64u << 20, f) : 0;
    if (f)
        fclose(f);
    dfb_cmd_req_t req;
    if (dfb_cmd_req_parse(frame, n, 64u << 20, &req, why, sizeof why) != 0) {
        fprintf(stderr, "%s: %s\n", j->path, why);
        free(frame);
        j->rc = 1;
        return NULL;
    }
    free(frame);
    dfb_outbound_t *own = j->ob ? NULL : dfb_outbound_new(j->cfg, j->auth, -1, err, sizeof err);
    dfb_outbound_t *ob = j->ob ? j->ob : own;
    if (!ob) {
        fprintf(stderr, "dfb_outbound_new: %s\n", err);
        j->rc = 1;
        dfb_cmd_req_free(&req);
        return NULL;
    }
    if (j->lookback >= 0)
        dfb_outbound_set_lookback(ob, j->lookback);
    if (j->page)
        dfb_outbound_set_paging(ob, j->page, j->pages);
    dfb_cmd_outcome_t o;
    dfb_cmd_outcome_init(&o);
    long long t0 = dfb_now_ms();
    dfb_outbound_exec(ob, &req, &j->ctx, &o);
    long long ms = dfb_now_ms() - t0;
    dfb_buf_t enc = {0};
    dfb_cmd_outcome_encode(&enc, &o);
    char head[] = "outcome ";
    dfb_buf_put(&j->line, head, strlen(head));
    for (size_t i = 0; i < enc.len; i++) {
        char h[3];
        snprintf(h, sizeof h, "%02x", enc.data[i]);
        dfb_buf_put(&j->line, h, 2);
    }
    char tail[96];
    snprintf(tail, sizeof tail, " attempts %d ms %lld definite %d\n", o.attempts, ms, o.definite);
    dfb_buf_put(&j->line, tail, strlen(tail) + 1);
    dfb_buf_free(&enc);
    dfb_cmd_outcome_free(&o);
    dfb_outbound_destroy(&own);
    dfb_cmd_req_free(&req);
    return NULL;
}

typedef struct {
    const dfb_config_t *cfg;
    dfb_auth_t *auth;
    int rc;
} loop_t;

/*  What the datafeed loop does with its own client: a call, a 401, the
    shared refresh, the call again. */
static void *
loop_like(void *arg)
{
    loop_t *l = arg;
    dfb_http_t *http =
        dfb_http_new(l->cfg->connect_timeout_ms, l->cfg->read_timeout_ms, 1 << 20, -1);
    char err[256];
    if (!http || dfb_http_configure(http, l->cfg, err, sizeof err) != 0) {
        l->rc = 1;
        dfb_http_destroy(&http);
        return NULL;
    }
    uint64_t gen = dfb_auth_apply(l->auth, http);
    int64_t bot = 0;
    dfb_auth_rc_t rc = dfb_auth_session_info(l->auth, http, -1, &bot);
    if (rc == DFB_AUTH_UNAUTHORIZED) {
        rc = dfb_auth_refresh_shared(l->auth, http, -1, &gen);
        if (rc == DFB_AUTH_OK)
            rc = dfb_auth_session_info(l->auth, http, -1, &bot);
    }
    l->rc = rc == DFB_AUTH_OK ? 0 : 1;
    printf("loop %s bot %lld\n", rc == DFB_AUTH_OK ? "ok" : "failed", (long long)bot);
    dfb_http_destroy(&http);
    return NULL;
}

int
main(int argc, char **argv)
{
    const char *config = NULL, *scope = "";
    int64_t begin_ms = -1, lookback = -1;
    int page = 0, pages = 0;
    int resumed = 0, login_first = 0, with_loop = 0, serial = 0, nreq = 0;
    const char *reqs[64];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            config = argv[++i];
        else if (!strcmp(argv[i], "--scope") && i + 1 < argc)
            scope = argv[++i];
        else if (!strcmp(argv[i], "--begin-ms") && i + 1 < argc)
            begin_ms = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--lookback") && i + 1 < argc)
            lookback = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--paging") && i + 1 < argc &&
                 sscanf(argv[i + 1], "%d,%d", &page, &pages) == 2)
            i++;
        else if (!strcmp(argv[i], "--resumed"))
            resumed = 1;
        else if (!strcmp(argv[i], "--login-first"))
            login_first = 1;
        else if (!strcmp(argv[i], "--serial"))
            serial = 1;
        else if (!strcmp(argv[i], "--loop-like"))
            with_loop = 1;
        else if (nreq < 64)
            reqs[nreq++] = argv[i];
    }
    char err[1024];
    dfb_config_t *cfg = config ? dfb_config_load(config, err, sizeof err) : NULL;
    if (!cfg) {
        fprintf(stderr, "config: %s\n", config ? err : "--config missing");
        return 2;
    }
    dfb_log_set_level(cfg->log_level);
    dfb_auth_t *auth = dfb_auth_new(cfg, err, sizeof err);
    if (!auth) {
        fprintf(stderr, "auth: %s\n", err);
        dfb_config_destroy(&cfg);
        return 2;
    }
    if (begin_ms < 0) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        begin_ms = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    }
    if (login_first) {
        dfb_http_t *http = dfb_http_new(cfg->connect_timeout_ms, cfg->read_timeout_ms, 1 << 20, -1);
        if (!http || dfb_http_configure(http, cfg, err, sizeof err) != 0 ||
            dfb_auth_login(auth, http, -1) != DFB_AUTH_OK) {
            fprintf(stderr, "login failed\n");
            return 2;
        }
        dfb_http_destroy(&http);
        printf("ready\n");
        fflush(stdout);
        char line[16];
        if (!fgets(line, sizeof line, stdin))
            return 2;
    }
    job_t *jobs = calloc((size_t)nreq + 1, sizeof *jobs);
    pthread_t *th = calloc((size_t)nreq + 1, sizeof *th);
    dfb_outbound_t *shared = serial ? dfb_outbound_new(cfg, auth, -1, err, sizeof err) : NULL;
    if (serial && !shared) {
        fprintf(stderr, "dfb_outbound_new: %s\n", err);
        return 2;
    }
    for (int i = 0; i < nreq; i++) {
        jobs[i] =
            (job_t){.cfg = cfg, .auth = auth, .ob = shared, .path = reqs[i], .lookback = lookback,
                    .page = page, .pages = pages};
        jobs[i].ctx = (dfb_outbound_ctx_t){scope, strlen(scope), begin_ms, resumed};
        if (serial)
            run(&jobs[i]);
        else
            pthread_create(&th[i], NULL, run, &jobs[i]);
    }
    loop_t lp = {cfg, auth, 0};
    pthread_t lt;
    if (with_loop)
        pthread_create(&lt, NULL, loop_like, &lp);
    int rc = 0;
    for (int i = 0; i < nreq; i++) {
        if (!serial)
            pthread_join(th[i], NULL);
        rc |= jobs[i].rc;
    }
    dfb_outbound_destroy(&shared);
    if (with_loop) {
        pthread_join(lt, NULL);
        rc |= lp.rc;
    }
    for (int i = 0; i < nreq; i++) {
        if (jobs[i].line.len)
            fputs((char *)jobs[i].line.data, stdout);
        else
            printf("failed\n");
        dfb_buf_free(&jobs[i].line);
    }
    unsigned logins = 0;
    dfb_auth_counts(auth, &logins, NULL);
    printf("logins %u\n", logins);
    free(jobs);
    free(th);
    dfb_auth_destroy(&auth);
    dfb_config_destroy(&cfg);
    return rc;
}
