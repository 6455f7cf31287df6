/*  dfb_cmd: the command channel's thread and its executors (see dfb_cmd.h).

    The channel thread owns the ROUTER, the in-flight table (key -> job, with
    every requester waiting for it) and the scheduler. A job goes to the
    executors through a mutex + condvar queue and comes back through a
    second list and an eventfd the thread polls (zmq sockets are not
    shared). An executor never touches the socket; the thread never waits
    on the disk except for dfb_cmdlog_find's read of a recorded outcome.
    The journal's periodic work (expiry, compaction: a rewrite of the live
    records, seconds on a big journal and a slow disk) and its gauges are
    the keeper thread's, so the ROUTER keeps answering meanwhile. */
#include "dfb_cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "dfb_clock.h"
#include "dfb_cmdlog.h"
#include "dfb_cmdproto.h"
#include "dfb_cmdsched.h"
#include "dfb_log.h"
#include "dfb_mpack.h"
#include "dfb_outbound.h"
#include "dfb_stop.h"
#include "dfb_upstream.h"

#define MAX_RID 255          /* ZeroMQ routing ids are 1..255 bytes */
#define RECV_PER_TURN 64     /* requests read per turn: the rest wait for the next poll */
#define TICK_MS 1000         /* dfb_cmdlog_tick, on the keeper thread */
#define POLL_MAX_MS 1000     /* the channel thread's longest poll */
#define REBIND_RETRY_MS 100  /* CURVE: a failed re-bind is tried again */
#define REBIND_CHECK_MS 500  /* CURVE: longest wait before auth_rebinds is looked at */
#define DENY_LOG_EVERY_MS 1000
/*  Request bytes held by waiting and executing requests, all together: a
    request that would go over is answered busy (bridge.commandsQueue alone
    would let 1000 requests of 8 MiB hold 8 GB). At least 4 requests of the
    largest size fit. */
#define HELD_BYTES_MIN ((size_t)256 << 20)

/*  One requester of a job: where its reply goes. */
typedef struct waiter {
    uint8_t rid[MAX_RID];
    size_t rid_len;
    int delim;        /* it sent an empty delimiter first: the reply has one too */
    int64_t t0_us;    /* when its request was read (latency) */
    struct waiter *next;
} waiter_t;

typedef struct job {
    dfb_cmd_req_t req;
    char scope[256]; /* the CURVE certificate name, "" without CURVE */
    size_t scope_len;
    uint8_t key[DFB_CMDLOG_KEY_MAX]; /* scope "\0" id */
    size_t key_len;
    int resumed;      /* the journal had it PENDING: an earlier attempt may have reached Symphony */
    int64_t begin_ms; /* resumed: its first begin (wall ms) */
    int posts;        /* messages.send/update: the per-stream rules apply */
    waiter_t *waiters;
    dfb_buf_t outcome; /* set by the executor: the journal's form of the outcome */
    struct job *hnext; /* in-flight table chain */
    struct job *qnext; /* executor queue / finished list */
} job_t;

struct dfb_cmd {
    const dfb_config_t *cfg;
    dfb_pub_counters_t *c;
    void *ctx;
    void *sock;
    dfb_zsock_opts_t zo;
    char endpoint[256];
    int curve;
    int stop_fd;
    int wake_fd; /* eventfd: finished jobs, destroy */
    _Atomic int term;
    pthread_t thread;
    int started;
    dfb_fdguard_t *guard;
    dfb_cmdlog_t *log;
    dfb_cmdsched_t *sched;
    /* the in-flight table: every job between its first request and its
       reply, queued or with an executor (the channel thread's) */
    job_t **table;
    size_t table_cap;
    size_t jobs;
    size_t held, held_max; /* request frame bytes of the jobs in the table, and the cap */
    dfb_buf_t out;
    int stopping; /* the daemon's stop or destroy: nothing new goes to the executors */
    /* CURVE re-bind */
    int rebinding;
    int64_t rebind_at;
    uint64_t rebind_seen, rebind_tries;
    /* denied calls in the log: one line each, at most one a second */
    int64_t deny_logged_ms;
    uint64_t deny_suppressed;
    /* executors */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job_t *ready, *ready_tail; /* for the executors */
    job_t *done;             /* back from them */
    int quit;
    int nexec;
    pthread_t *execs;
    dfb_outbound_t **obs;
    int execs_started;
    /* the keeper: the journal's tick and gauges (quit under mu) */
    pthread_t keeper;
    pthread_cond_t keeper_cv; /* CLOCK_MONOTONIC */
    int keeper_started;
};

/* ---- the allow-list ------------------------------------------------------- */

/*  Does pattern (an op, "prefix.*" or "*") match op? */
static int
pattern_matches(const char *pattern, const char *op)
{
    size_t n = strlen(pattern);
    if (strcmp(pattern, "*") == 0)
        return 1;
    if (n >= 2 && strcmp(pattern + n - 2, ".*") == 0)
        return strncmp(op, pattern, n - 1) == 0; /* "messages." */
    return strcmp(pattern, op) == 0;
}

int
dfb_cmd_check_allow(const dfb_config_t *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->commands_allow_n; i++) {
        const dfb_cmd_allow_t *a = &cfg->commands_allow[i];
        for (size_t j = 0; j < a->nops; j++) {
            int any = 0;
            for (int op = 0; op < DFB_OP_COUNT && !any; op++)
                any = pattern_matches(a->ops[j], dfb_op_name((dfb_op_t)op));
            if (any)
                continue;
            char list[512] = "";
            for (int op = 0; op < DFB_OP_COUNT; op++) {
                size_t l = strlen(list);
                snprintf(list + l, sizeof list - l, "%s%s", op ? ", " : "",
                         dfb_op_name((dfb_op_t)op));
            }
            snprintf(err, errlen,
                     "config: bridge.commandsAllow.%s: '%s' names no operation (ops: %s; or a "
                     "prefix then .*, or *)",
                     a->client, a->ops[j], list);
            return -1;
        }
    }
    return 0;
}

int
dfb_cmd_allowed(const dfb_config_t *cfg, const char *client, const char *op)
{
    if (!cfg->commands_allow_set)
        return 1;
    for (size_t i = 0; i < cfg->commands_allow_n; i++) {
        const dfb_cmd_allow_t *a = &cfg->commands_allow[i];
        if (strcmp(a->client, client) != 0)
            continue;
        for (size_t j = 0; j < a->nops; j++)
            if (pattern_matches(a->ops[j], op))
                return 1;
        return 0;
    }
    return 0;
}

void
dfb_cmd_describe(const dfb_config_t *cfg, int curve, char *out, size_t cap)
{
    char allow[256] = "";
    if (!curve)
        snprintf(allow, sizeof allow, "no CURVE: every local client may call every op");
    else if (!cfg->commands_allow_set)
        snprintf(allow, sizeof allow, "CURVE: every client of clientsDir may call every op");
    else {
        size_t l = (size_t)snprintf(allow, sizeof allow, "CURVE, allow-list of %zu client(s):",
                                    cfg->commands_allow_n);
        for (size_t i = 0; i < cfg->commands_allow_n && l < sizeof allow; i++) {
            const dfb_cmd_allow_t *a = &cfg->commands_allow[i];
            int n = snprintf(allow + l, sizeof allow - l, " %s=%zu op pattern(s)", a->client,
                             a->nops);
            if (n < 0)
                break;
            l += (size_t)n;
        }
    }
    char journal[300];
    if (cfg->state_dir)
        snprintf(journal, sizeof journal, "%s/commands.log", cfg->state_dir);
    else
        snprintf(journal, sizeof journal, "memory only (no bridge.stateDir)");
    char rate[32] = "no limit", srate[32] = "no limit";
    if (cfg->commands_rate > 0)
        snprintf(rate, sizeof rate, "%g/s", cfg->commands_rate);
    if (cfg->commands_stream_rate > 0)
        snprintf(srate, sizeof srate, "%g/s", cfg->commands_stream_rate);
    snprintf(out, cap,
             "commands %s (%s); rate %s, per stream %s, queue %lld, %d executor(s), max "
             "request %lld bytes, ids remembered %lld ms, lookback %lld ms, settle %lld ms, "
             "journal %s",
             cfg->commands ? cfg->commands : "off", allow, rate, srate, cfg->commands_queue,
             cfg->commands_concurrency, cfg->commands_max_bytes, cfg->commands_window_ms,
             cfg->commands_lookback_ms, cfg->commands_settle_ms, journal);
}

/* ---- jobs and the in-flight table ----------------------------------------- */

static uint64_t
key_hash(const uint8_t *k, size_t n)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ k[i]) * 1099511628211ull;
    return h;
}

static job_t *
table_find(dfb_cmd_t *self, const uint8_t *key, size_t len)
{
    for (job_t *j = self->table[key_hash(key, len) & (self->table_cap - 1)]; j; j = j->hnext)
        if (j->key_len == len && memcmp(j->key, key, len) == 0)
            return j;
    return NULL;
}

static void
table_add(dfb_cmd_t *self, job_t *j)
{
    size_t b = key_hash(j->key, j->key_len) & (self->table_cap - 1);
    j->hnext = self->table[b];
    self->table[b] = j;
    self->jobs++;
    self->held += j->req.frame_len;
}

static void
table_remove(dfb_cmd_t *self, job_t *j)
{
    for (job_t **p = &self->table[key_hash(j->key, j->key_len) & (self->table_cap - 1)]; *p;
         p = &(*p)->hnext)
        if (*p == j) {
            *p = j->hnext;
            self->jobs--;
            self->held -= j->req.frame_len;
            return;
        }
}

static void
job_free(job_t *j)
{
    if (!j)
        return;
    while (j->waiters) {
        waiter_t *w = j->waiters;
        j->waiters = w->next;
        free(w);
    }
    dfb_cmd_req_free(&j->req);
    dfb_buf_free(&j->outcome);
    free(j);
}

/* ---- replies ---------------------------------------------------------------- */

static int64_t
mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*  The counter of an error code (NULL: not one of D1's). */
static dfb_counter_t *
code_counter(dfb_pub_counters_t *c, const char *code, size_t len)
{
    static const struct {
        const char *code;
        size_t off;
    } codes[] = {
        {DFB_CMD_BAD_REQUEST, offsetof(dfb_pub_counters_t, commands_errors_bad_request)},
        {DFB_CMD_NOT_ALLOWED, offsetof(dfb_pub_counters_t, commands_errors_not_allowed)},
        {DFB_CMD_REJECTED, offsetof(dfb_pub_counters_t, commands_errors_rejected)},
        {DFB_CMD_UNAVAILABLE, offsetof(dfb_pub_counters_t, commands_errors_unavailable)},
        {DFB_CMD_UNKNOWN_OUTCOME, offsetof(dfb_pub_counters_t, commands_errors_unknown_outcome)},
        {DFB_CMD_BUSY, offsetof(dfb_pub_counters_t, commands_errors_busy)},
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strlen(codes[i].code) == len && memcmp(codes[i].code, code, len) == 0)
            return (dfb_counter_t *)((char *)c + codes[i].off);
    return NULL;
}

/*  What a reply says, for the counters: read back from its bytes (the one
    encoding of dfb_cmdproto), so the counts cannot disagree with the wire. */
static void
count_reply(dfb_cmd_t *self, const uint8_t *reply, size_t len, int64_t t0_us)
{
    dfb_mpack_reader_t r = {reply, reply + len};
    uint32_t n;
    int ok = 0, replayed = 0, found = 0;
    const char *code = NULL;
    size_t code_len = 0;
    if (dfb_mpack_read_map(&r, &n) == 0) {
        for (uint32_t i = 0; i < n; i++) {
            const char *k;
            size_t kl;
            if (dfb_mpack_read_str(&r, &k, &kl) != 0)
                break;
            if (kl == 2 && memcmp(k, "ok", 2) == 0 && r.p < r.end && (*r.p & 0xfe) == 0xc2) {
                ok = *r.p++ == 0xc3;
            } else if (kl == 8 && memcmp(k, "replayed", 8) == 0 && r.p < r.end &&
                       (*r.p & 0xfe) == 0xc2) {
                replayed = *r.p++ == 0xc3;
            } else if (kl == 5 && memcmp(k, "found", 5) == 0 && r.p < r.end &&
                       (*r.p & 0xfe) == 0xc2) {
                found = *r.p++ == 0xc3;
            } else if (kl == 5 && memcmp(k, "error", 5) == 0 &&
                       dfb_mpack_peek(&r) == DFB_MP_MAP) {
                uint32_t m;
                dfb_mpack_read_map(&r, &m);
                for (uint32_t j = 0; j < m; j++) {
                    const char *ek;
                    size_t ekl;
                    if (dfb_mpack_read_str(&r, &ek, &ekl) != 0)
                        break;
                    if (ekl == 4 && memcmp(ek, "code", 4) == 0 &&
                        dfb_mpack_read_str(&r, &code, &code_len) == 0)
                        continue;
                    if (dfb_mpack_skip(&r, 600) != 0)
                        break;
                }
            } else if (dfb_mpack_skip(&r, 600) != 0) {
                break;
            }
        }
    }
    dfb_pub_counters_t *c = self->c;
    if (ok)
        c->commands_ok++;
    else {
        dfb_counter_t *cc = code ? code_counter(c, code, code_len) : NULL;
        if (cc)
            (*cc)++;
        else
            c->commands_errors_unavailable++; /* cannot happen: every reply has a code of D1 */
    }
    if (replayed)
        c->commands_replayed++;
    if (found)
        c->commands_found++;
    int64_t us = mono_us() - t0_us;
    if (us < 0)
        us = 0;
    size_t b = 0;
    while (b < DFB_UP_BUCKETS && (double)us / 1e6 > dfb_up_bounds_s[b])
        b++;
    c->commands_seconds[b]++;
    c->commands_seconds_sum_us += (uint64_t)us;
}

/*  Sends [rid][""][reply] without blocking; a reply that cannot go (the
    client is gone: ROUTER_MANDATORY's EHOSTUNREACH; its pipe is full) is
    dropped and counted. Counts the reply in any case. */
static void
send_reply(dfb_cmd_t *self, const uint8_t *rid, size_t rid_len, int delim, const uint8_t *reply,
           size_t len, int64_t t0_us)
{
    count_reply(self, reply, len, t0_us);
    int sent = 0;
    if (self->sock && zmq_send(self->sock, rid, rid_len, ZMQ_DONTWAIT | ZMQ_SNDMORE) >= 0) {
        /* A ROUTER takes the rest of a message whose first frame it took. */
        sent = (!delim || zmq_send(self->sock, "", 0, ZMQ_DONTWAIT | ZMQ_SNDMORE) >= 0) &&
               zmq_send(self->sock, reply, len, ZMQ_DONTWAIT) >= 0;
    }
    if (!sent) {
        self->c->commands_dropped_replies++;
        dfb_debug("commands: a reply could not be delivered (%s): dropped", zmq_strerror(errno));
    }
}

/*  An error reply decided before any call. */
static void
reply_error(dfb_cmd_t *self, const uint8_t *rid, size_t rid_len, int delim, const char *id,
            size_t id_len, const char *code, const char *message, int64_t retry_after_ms,
            int64_t t0_us)
{
    dfb_buf_t *b = &self->out;
    dfb_buf_reset(b);
    if (dfb_cmd_reply_error(b, id, id_len, code, message, 0, retry_after_ms) != 0) {
        self->c->commands_dropped_replies++; /* out of memory: nothing to send */
        return;
    }
    send_reply(self, rid, rid_len, delim, b->data, b->len, t0_us);
}

/*  Replies to every requester of j with its outcome (replayed = 0: this
    execution's own outcome). */
static void
reply_job(dfb_cmd_t *self, job_t *j)
{
    dfb_buf_t *b = &self->out;
    for (waiter_t *w = j->waiters; w; w = w->next) {
        dfb_buf_reset(b);
        if (j->outcome.len &&
            dfb_cmd_reply_from_outcome(b, j->req.id, j->req.id_len, j->outcome.data,
                                       j->outcome.len, 0) == 0) {
            send_reply(self, w->rid, w->rid_len, w->delim, b->data, b->len, w->t0_us);
        } else {
            dfb_warn("commands: request %.*s: its outcome cannot be encoded: answered "
                     "unavailable",
                     (int)j->req.id_len, j->req.id);
            reply_error(self, w->rid, w->rid_len, w->delim, j->req.id, j->req.id_len,
                        DFB_CMD_UNAVAILABLE, "internal error: the outcome could not be encoded",
                        0, w->t0_us);
        }
    }
}

/* ---- the executors ------------------------------------------------------------ */

typedef struct {
    dfb_cmd_t *self;
    int index;
} exec_arg_t;

/*  One request to an outcome, on an executor thread: begin record, the
    Symphony call(s), done record (or release), the outcome's bytes into
    j->outcome. */
static void
execute(dfb_cmd_t *self, dfb_outbound_t *ob, job_t *j)
{
    dfb_cmd_outcome_t out;
    dfb_cmd_outcome_init(&out);
    int64_t now = dfb_wall_ms();
    const char *op = dfb_op_name(j->req.op);
    if (dfb_cmdlog_begin(self->log, j->key, j->key_len, j->req.fp, op,
                         j->req.stream[0] ? j->req.stream : NULL, now) != 0) {
        int e = errno;
        dfb_warn("commands: request %.*s (%s): cannot journal it (%s): answered unavailable, no "
                 "call made",
                 (int)j->req.id_len, j->req.id, op, strerror(e));
        dfb_cmd_outcome_error(&out, DFB_CMD_UNAVAILABLE, 0, "cannot journal the request: %s",
                              strerror(e));
    } else {
        dfb_outbound_ctx_t ctx = {.scope = j->scope,
                                  .scope_len = j->scope_len,
                                  .begin_ms = j->resumed ? j->begin_ms : now,
                                  .resumed = j->resumed};
        dfb_outbound_exec(ob, &j->req, &ctx, &out);
    }
    dfb_buf_reset(&j->outcome);
    if (dfb_cmd_outcome_encode(&j->outcome, &out) != 0)
        dfb_buf_reset(&j->outcome); /* answered unavailable by reply_job */
    if (out.definite && j->outcome.len) {
        /* The reply waits for this record: a retry must find it. */
        if (dfb_cmdlog_done(self->log, j->key, j->key_len, j->outcome.data, j->outcome.len) != 0)
            dfb_warn("commands: request %.*s (%s): its outcome could not be journaled (%s): "
                     "replied anyway; a retry with the same id looks for the message instead",
                     (int)j->req.id_len, j->req.id, op, strerror(errno));
    } else if (!out.definite || !j->outcome.len) {
        dfb_cmdlog_release(self->log, j->key, j->key_len);
    }
    dfb_logkv(DFB_LOG_DEBUG,
              DFB_FIELDS(dfb_ls("op", op), dfb_li("attempts", out.attempts),
                         dfb_ls("result", out.ok ? "ok" : out.code ? out.code : "?")),
              "commands: request %.*s executed", (int)j->req.id_len, j->req.id);
    dfb_cmd_outcome_free(&out);
}

static void
wake(dfb_cmd_t *self)
{
    uint64_t one = 1;
    ssize_t n;
    do
        n = write(self->wake_fd, &one, sizeof one);
    while (n < 0 && errno == EINTR);
}

static void *
exec_main(void *arg)
{
    exec_arg_t *a = arg;
    dfb_cmd_t *self = a->self;
    dfb_outbound_t *ob = self->obs[a->index];
    free(a);
    for (;;) {
        pthread_mutex_lock(&self->mu);
        while (!self->ready && !self->quit)
            pthread_cond_wait(&self->cv, &self->mu);
        job_t *j = self->ready;
        if (!j) {
            pthread_mutex_unlock(&self->mu);
            return NULL; /* quit, nothing left */
        }
        self->ready = j->qnext;
        if (!self->ready)
            self->ready_tail = NULL;
        pthread_mutex_unlock(&self->mu);
        execute(self, ob, j);
        pthread_mutex_lock(&self->mu);
        j->qnext = self->done;
        self->done = j;
        pthread_mutex_unlock(&self->mu);
        wake(self);
    }
}

static void
dispatch(dfb_cmd_t *self, job_t *j)
{
    self->c->commands_queued = dfb_cmdsched_queued(self->sched);
    self->c->commands_inflight = dfb_cmdsched_inflight(self->sched);
    pthread_mutex_lock(&self->mu);
    j->qnext = NULL;
    if (self->ready_tail)
        self->ready_tail->qnext = j;
    else
        self->ready = j;
    self->ready_tail = j;
    pthread_cond_signal(&self->cv);
    pthread_mutex_unlock(&self->mu);
}

/*  Replies to the jobs the executors finished. */
static void
collect(dfb_cmd_t *self)
{
    uint64_t v;
    ssize_t n;
    do
        n = read(self->wake_fd, &v, sizeof v);
    while (n < 0 && errno == EINTR);
    pthread_mutex_lock(&self->mu);
    job_t *list = self->done;
    self->done = NULL;
    pthread_mutex_unlock(&self->mu);
    /* The list is newest first: reply in the order they finished. */
    job_t *rev = NULL;
    while (list) {
        job_t *next = list->qnext;
        list->qnext = rev;
        rev = list;
        list = next;
    }
    while (rev) {
        job_t *j = rev;
        rev = j->qnext;
        reply_job(self, j);
        dfb_cmdsched_done(self->sched, j->posts ? j->req.stream : NULL, dfb_mono_ms());
        table_remove(self, j);
        job_free(j);
    }
    self->c->commands_inflight = dfb_cmdsched_inflight(self->sched);
}

/* ---- requests ------------------------------------------------------------------- */

static void
log_denied(dfb_cmd_t *self, const char *client, const char *op)
{
    int64_t now = dfb_mono_ms();
    if (now - self->deny_logged_ms < DENY_LOG_EVERY_MS) {
        self->deny_suppressed++;
        return;
    }
    if (self->deny_suppressed)
        dfb_warn("commands: %" PRIu64 " more denied call(s) in the last second, not logged one "
                 "by one",
                 self->deny_suppressed);
    self->deny_suppressed = 0;
    self->deny_logged_ms = now;
    dfb_logkv(DFB_LOG_WARN, DFB_FIELDS(dfb_ls("client", client), dfb_ls("op", op)),
              "commands: client '%s' may not call %s (bridge.commandsAllow): not_allowed", client,
              op);
}

/*  One request message: [rid] then its frames (frames[0..nframes), at most
    the first two kept). */
static void
handle(dfb_cmd_t *self, zmq_msg_t *rid, zmq_msg_t *frames, int nframes, int64_t t0_us)
{
    const uint8_t *r = zmq_msg_data(rid);
    size_t rl = zmq_msg_size(rid);
    int delim = 0;
    zmq_msg_t *body = NULL;
    const char *framing = NULL;
    if (nframes == 1) {
        body = &frames[0];
    } else if (nframes >= 2 && zmq_msg_size(&frames[0]) == 0) {
        delim = 1;
        body = &frames[1];
        if (nframes > 2)
            framing = "a request is one frame, after an optional empty delimiter frame";
    } else if (nframes >= 2) {
        body = &frames[0];
        framing = "a request is one frame, after an optional empty delimiter frame";
    }
    if (!body || rl == 0 || rl > MAX_RID) {
        self->c->commands_dropped_replies++; /* nothing to answer */
        return;
    }
    char why[512] = "";
    dfb_cmd_req_t req;
    memset(&req, 0, sizeof req);
    size_t maxb = (size_t)self->cfg->commands_max_bytes;
    int rc = dfb_cmd_req_parse(zmq_msg_data(body), zmq_msg_size(body), maxb, &req, why,
                               sizeof why);
    const char *id = req.has_id ? req.id : "";
    size_t id_len = req.has_id ? req.id_len : 0;
    if (rc != 0 || framing) {
        dfb_debug("commands: bad request %.*s: %s", (int)id_len, id, framing ? framing : why);
        reply_error(self, r, rl, delim, id, id_len, DFB_CMD_BAD_REQUEST, framing ? framing : why,
                    0, t0_us);
        dfb_cmd_req_free(&req);
        return;
    }
    const char *op = dfb_op_name(req.op);
    /* The scope: the CURVE certificate's name (ZAP's user id), "" without. */
    const char *scope = "";
    if (self->curve) {
        const char *uid = zmq_msg_gets(body, "User-Id");
        scope = uid ? uid : "";
    }
    size_t scope_len = strlen(scope);
    if (self->curve && !dfb_cmd_allowed(self->cfg, scope, op)) {
        self->c->commands_denied++;
        log_denied(self, scope, op);
        char msg[400];
        snprintf(msg, sizeof msg, "client '%.*s' may not call %s (bridge.commandsAllow)",
                 (int)(scope_len < 200 ? scope_len : 200), scope, op);
        reply_error(self, r, rl, delim, id, id_len, DFB_CMD_NOT_ALLOWED, msg, 0, t0_us);
        dfb_cmd_req_free(&req);
        return;
    }
    if (self->stopping) {
        reply_error(self, r, rl, delim, id, id_len, DFB_CMD_UNAVAILABLE, "the bridge is stopping",
                    0, t0_us);
        dfb_cmd_req_free(&req);
        return;
    }
    uint8_t key[DFB_CMDLOG_KEY_MAX];
    size_t key_len = scope_len + 1 + req.id_len;
    if (scope_len > 255 || key_len > sizeof key) {
        reply_error(self, r, rl, delim, id, id_len, DFB_CMD_BAD_REQUEST,
                    "the client certificate's name is too long", 0, t0_us);
        dfb_cmd_req_free(&req);
        return;
    }
    memcpy(key, scope, scope_len);
    key[scope_len] = 0;
    memcpy(key + scope_len + 1, req.id, req.id_len);
    waiter_t *w = calloc(1, sizeof *w);
    if (!w) {
        reply_error(self, r, rl, delim, id, id_len, DFB_CMD_BUSY, "out of memory", 100, t0_us);
        dfb_cmd_req_free(&req);
        return;
    }
    memcpy(w->rid, r, rl);
    w->rid_len = rl;
    w->delim = delim;
    w->t0_us = t0_us;
    char conflict[300];
    snprintf(conflict, sizeof conflict, "id %.*s was already used for a different request",
             (int)(req.id_len < 200 ? req.id_len : 200), req.id);
    /* In progress: the new requester waits for the same outcome. */
    job_t *j = table_find(self, key, key_len);
    if (j) {
        if (memcmp(j->req.fp, req.fp, sizeof req.fp) != 0) {
            reply_error(self, r, rl, delim, id, id_len, DFB_CMD_BAD_REQUEST, conflict, 0, t0_us);
            free(w);
        } else {
            w->next = j->waiters;
            j->waiters = w;
            dfb_debug("commands: request %.*s (%s) in progress: a second requester waits for it",
                      (int)req.id_len, req.id, op);
        }
        dfb_cmd_req_free(&req);
        return;
    }
    dfb_cmdlog_entry_t e;
    memset(&e, 0, sizeof e);
    dfb_cmdlog_state_t st = dfb_cmdlog_find(self->log, key, key_len, req.fp, &e);
    if (st == DFB_CMDLOG_DONE) {
        dfb_buf_t *b = &self->out;
        dfb_buf_reset(b);
        if (dfb_cmd_reply_from_outcome(b, req.id, req.id_len, e.outcome, e.outcome_len, 1) == 0) {
            dfb_debug("commands: request %.*s (%s) already done: the recorded outcome is replied",
                      (int)req.id_len, req.id, op);
            send_reply(self, r, rl, delim, b->data, b->len, t0_us);
        } else {
            dfb_warn("commands: request %.*s: its recorded outcome cannot be read: answered "
                     "unavailable",
                     (int)req.id_len, req.id);
            reply_error(self, r, rl, delim, id, id_len, DFB_CMD_UNAVAILABLE,
                        "the recorded outcome of this id cannot be read", 0, t0_us);
        }
        free(e.outcome);
        free(w);
        dfb_cmd_req_free(&req);
        return;
    }
    free(e.outcome);
    if (st == DFB_CMDLOG_CONFLICT || st == DFB_CMDLOG_INFLIGHT) {
        /* INFLIGHT without a job here cannot happen (every begun request
           has its job until its reply); answered as a reuse, nothing sent. */
        reply_error(self, r, rl, delim, id, id_len,
                    st == DFB_CMDLOG_CONFLICT ? DFB_CMD_BAD_REQUEST : DFB_CMD_UNAVAILABLE,
                    st == DFB_CMDLOG_CONFLICT ? conflict : "this id is being executed", 0, t0_us);
        free(w);
        dfb_cmd_req_free(&req);
        return;
    }
    j = calloc(1, sizeof *j);
    if (!j) {
        reply_error(self, r, rl, delim, id, id_len, DFB_CMD_BUSY, "out of memory", 100, t0_us);
        free(w);
        dfb_cmd_req_free(&req);
        return;
    }
    j->req = req; /* takes the frame */
    memcpy(j->scope, scope, scope_len);
    j->scope_len = scope_len;
    memcpy(j->key, key, key_len);
    j->key_len = key_len;
    j->resumed = st == DFB_CMDLOG_PENDING;
    j->begin_ms = e.begin_ms;
    j->posts = dfb_op_posts(req.op) && req.stream[0];
    j->waiters = w;
    dfb_buf_init(&j->outcome);
    int64_t retry_after = 0;
    if (self->held + j->req.frame_len > self->held_max) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "the requests in progress hold %zu bytes (at most %zu): try again", self->held,
                 self->held_max);
        reply_error(self, r, rl, delim, id, id_len, DFB_CMD_BUSY, msg, 1000, t0_us);
        job_free(j);
        return;
    }
    if (dfb_cmdsched_push(self->sched, j, j->posts ? j->req.stream : NULL, dfb_mono_ms(),
                          &retry_after) != 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "%zu requests are waiting (bridge.commandsQueue): try again",
                 dfb_cmdsched_queued(self->sched));
        reply_error(self, r, rl, delim, id, id_len, DFB_CMD_BUSY, msg, retry_after, t0_us);
        job_free(j);
        return;
    }
    table_add(self, j);
    self->c->commands_queued = dfb_cmdsched_queued(self->sched);
    dfb_logkv(DFB_LOG_DEBUG,
              DFB_FIELDS(dfb_ls("op", op), dfb_ls("client", scope),
                         dfb_li("resumed", j->resumed)),
              "commands: request %.*s queued", (int)req.id_len, req.id);
}

static void
receive(dfb_cmd_t *self)
{
    for (int k = 0; k < RECV_PER_TURN; k++) {
        zmq_msg_t rid;
        zmq_msg_init(&rid);
        if (zmq_msg_recv(&rid, self->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&rid);
            return;
        }
        int64_t t0 = mono_us();
        self->c->commands_received++;
        /* The frames: the first two kept, the rest read and dropped (a
           ROUTER delivers whole messages). */
        zmq_msg_t frames[2];
        zmq_msg_init(&frames[0]);
        zmq_msg_init(&frames[1]);
        int n = 0, ok = 1;
        for (int more = zmq_msg_more(&rid); more && ok;) {
            zmq_msg_t extra, *m = n < 2 ? &frames[n] : &extra;
            if (n >= 2)
                zmq_msg_init(&extra);
            if (zmq_msg_recv(m, self->sock, 0) < 0)
                ok = 0;
            else {
                more = zmq_msg_more(m);
                n++;
            }
            if (m == &extra)
                zmq_msg_close(&extra);
        }
        if (ok)
            handle(self, &rid, frames, n, t0);
        zmq_msg_close(&frames[0]);
        zmq_msg_close(&frames[1]);
        zmq_msg_close(&rid);
    }
}

/*  Every waiting request answered unavailable (a stop): they were never
    begun, nothing was sent. */
static void
drain_queue(dfb_cmd_t *self)
{
    job_t *j;
    size_t n = 0;
    while ((j = dfb_cmdsched_pop(self->sched))) {
        for (waiter_t *w = j->waiters; w; w = w->next)
            reply_error(self, w->rid, w->rid_len, w->delim, j->req.id, j->req.id_len,
                        DFB_CMD_UNAVAILABLE, "the bridge is stopping", 0, w->t0_us);
        table_remove(self, j);
        job_free(j);
        n++;
    }
    if (n)
        dfb_info("commands: %zu waiting request(s) answered unavailable: the bridge is stopping",
                 n);
    self->c->commands_queued = 0;
}

/*  CURVE: the allow-list lost a key: close the ROUTER (every connection
    goes; requests in progress are kept, their replies are dropped unless
    the client is back: it asks again with the same id) and bind it again.
    Returns 1 while unbound. */
static int
check_rebind(dfb_cmd_t *self, int64_t now)
{
    uint64_t g = self->c->auth_rebinds;
    if (g != self->rebind_seen) {
        self->rebind_seen = g;
        if (self->sock) {
            zmq_close(self->sock);
            self->sock = NULL;
        }
        self->rebinding = 1;
        self->rebind_at = now;
        self->rebind_tries = 0;
    }
    if (!self->rebinding || now < self->rebind_at)
        return self->rebinding;
    char bound[256], err[512];
    self->sock = dfb_zsock_new(self->ctx, &self->zo, bound, sizeof bound, err, sizeof err);
    if (!self->sock) {
        if (self->rebind_tries++ % 50 == 0)
            dfb_warn("commands: re-bind after an allow-list change failed (%s): retrying every "
                     "%d ms",
                     err, REBIND_RETRY_MS);
        self->rebind_at = now + REBIND_RETRY_MS;
        return 1;
    }
    self->rebinding = 0;
    dfb_fdguard_rewatch(self->guard, self->sock, "bridge.commands");
    dfb_info("commands: ROUTER re-bound at %s after an allow-list change", bound);
    return 0;
}

/*  The stop fd is readable: a stop was requested (its byte is never read).
    Read here rather than dfb_stop_requested(), whose flag is the signal
    handler's and the main thread's. */
static int
fd_ready(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static const char *
run(dfb_cmd_t *self)
{
    int stop_seen = 0;
    for (;;) {
        int64_t now = dfb_mono_ms();
        if (!stop_seen && (atomic_load(&self->term) || fd_ready(self->stop_fd))) {
            stop_seen = 1;
            self->stopping = 1;
            drain_queue(self);
        }
        if (self->stopping && atomic_load(&self->term) && self->jobs == 0)
            return NULL;
        int64_t timeout = POLL_MAX_MS;
        if (self->zo.curve_secret) {
            check_rebind(self, now);
            int64_t cap = self->rebinding ? REBIND_RETRY_MS : REBIND_CHECK_MS;
            if (timeout > cap)
                timeout = cap;
        }
        /* What may go now goes; the rest says when. */
        while (!self->stopping) {
            int64_t wait;
            job_t *j = dfb_cmdsched_next(self->sched, now, &wait);
            if (!j) {
                if (wait >= 0 && wait < timeout)
                    timeout = wait;
                break;
            }
            dispatch(self, j);
        }
        zmq_pollitem_t items[3] = {{NULL, self->wake_fd, ZMQ_POLLIN, 0},
                                   {NULL, self->stop_fd, ZMQ_POLLIN, 0},
                                   {self->sock, 0, ZMQ_POLLIN, 0}};
        /* The stop fd stays readable once a stop is requested: polled
           until then only. */
        int poll_stop = !stop_seen && self->stop_fd >= 0;
        if (!poll_stop)
            items[1] = items[0];
        int n = self->sock ? 3 : 2;
        if (timeout < 0)
            timeout = 0;
        if (zmq_poll(items, n, (long)timeout) < 0 && errno != EINTR)
            return zmq_strerror(errno);
        if (items[0].revents & ZMQ_POLLIN)
            collect(self);
        if (self->sock && (items[2].revents & ZMQ_POLLIN))
            receive(self);
    }
}

/*  The journal's size and work, as the info rows commands_log_* (the
    keeper's: their one writer once the threads run). */
static void
log_gauges(dfb_cmd_t *self)
{
    dfb_cmdlog_stats_t st;
    dfb_cmdlog_stats(self->log, &st);
    self->c->commands_log_entries = st.entries;
    self->c->commands_log_bytes = st.file_bytes;
    self->c->commands_log_compactions = st.compactions;
    self->c->commands_log_write_errors = st.write_errors;
}

static void *
keeper_main(void *arg)
{
    dfb_cmd_t *self = arg;
    pthread_mutex_lock(&self->mu);
    while (!self->quit) {
        struct timespec at;
        clock_gettime(CLOCK_MONOTONIC, &at);
        at.tv_sec += TICK_MS / 1000;
        at.tv_nsec += (long)(TICK_MS % 1000) * 1000000L;
        if (at.tv_nsec >= 1000000000L)
            at.tv_sec++, at.tv_nsec -= 1000000000L;
        while (!self->quit && pthread_cond_timedwait(&self->keeper_cv, &self->mu, &at) == 0)
            ;
        if (self->quit)
            break;
        pthread_mutex_unlock(&self->mu);
        dfb_cmdlog_tick(self->log, dfb_wall_ms());
        log_gauges(self);
        pthread_mutex_lock(&self->mu);
    }
    pthread_mutex_unlock(&self->mu);
    return NULL;
}

static void *
cmd_main(void *arg)
{
    dfb_cmd_t *self = arg;
    const char *why = run(self);
    if (why) {
        self->c->dead_threads++;
        dfb_error("commands: the command thread stopped: %s; the bridge exits (status 5)", why);
        dfb_stop_request();
    }
    return NULL;
}

/* ---- life cycle --------------------------------------------------------------- */

dfb_cmd_t *
dfb_cmd_new(const dfb_cmd_opts_t *o, char *err, size_t errlen)
{
    dfb_cmd_t *self = calloc(1, sizeof *self);
    if (!self) {
        if (o->sock)
            zmq_close(o->sock);
        snprintf(err, errlen, "commands: out of memory");
        return NULL;
    }
    const dfb_config_t *cfg = o->cfg;
    self->cfg = cfg;
    self->c = o->counters;
    self->ctx = o->ctx;
    self->sock = o->sock;
    self->zo = *o->zo;
    snprintf(self->endpoint, sizeof self->endpoint, "%s", o->zo->endpoint);
    self->zo.endpoint = self->endpoint;
    self->curve = o->zo->curve_secret != NULL;
    self->stop_fd = o->stop_fd;
    self->guard = o->guard;
    self->rebind_seen = self->c->auth_rebinds;
    self->deny_logged_ms = INT64_MIN / 2;
    self->wake_fd = -1;
    dfb_buf_init(&self->out);
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&self->keeper_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (dfb_cmd_check_allow(cfg, err, errlen) != 0) {
        dfb_cmd_destroy(&self);
        return NULL;
    }
    char e[512] = "";
    self->log = dfb_cmdlog_open(cfg->state_dir, cfg->commands_window_ms, e, sizeof e);
    if (!self->log) {
        snprintf(err, errlen, "commands: the command journal cannot be opened: %s", e);
        dfb_cmd_destroy(&self);
        return NULL;
    }
    const char *cd = getenv("DFB_TEST_COMPACT_DELAY_MS"); /* commands_compaction */
    if (cd && atoi(cd) > 0)
        dfb_cmdlog_test_compact_delay(self->log, atoi(cd));
    log_gauges(self);
    dfb_cmdsched_opts_t so = {.rate = cfg->commands_rate,
                              .stream_rate = cfg->commands_stream_rate,
                              .queue = (size_t)cfg->commands_queue,
                              .executors = cfg->commands_concurrency};
    self->sched = dfb_cmdsched_new(&so);
    self->held_max = 4 * (size_t)cfg->commands_max_bytes;
    if (self->held_max < HELD_BYTES_MIN)
        self->held_max = HELD_BYTES_MIN;
    self->table_cap = 64;
    while (self->table_cap < 2 * ((size_t)cfg->commands_queue + (size_t)so.executors))
        self->table_cap *= 2;
    self->table = calloc(self->table_cap, sizeof *self->table);
    self->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->nexec = cfg->commands_concurrency;
    self->execs = calloc((size_t)self->nexec, sizeof *self->execs);
    self->obs = calloc((size_t)self->nexec, sizeof *self->obs);
    if (!self->sched || !self->table || self->wake_fd < 0 || !self->execs || !self->obs) {
        snprintf(err, errlen, "commands: out of memory (or no eventfd)");
        dfb_cmd_destroy(&self);
        return NULL;
    }
    for (int i = 0; i < self->nexec; i++) {
        if (!(self->obs[i] = dfb_outbound_new(cfg, o->auth, o->stop_fd, err, errlen))) {
            dfb_cmd_destroy(&self);
            return NULL;
        }
        dfb_outbound_set_lookback(self->obs[i], cfg->commands_lookback_ms);
    }
    for (int i = 0; i < self->nexec; i++) {
        exec_arg_t *a = malloc(sizeof *a);
        if (!a || (a->self = self, a->index = i,
                   pthread_create(&self->execs[i], NULL, exec_main, a) != 0)) {
            free(a);
            snprintf(err, errlen, "commands: cannot start the executor threads");
            dfb_cmd_destroy(&self);
            return NULL;
        }
        self->execs_started++;
    }
    if (pthread_create(&self->keeper, NULL, keeper_main, self) != 0) {
        snprintf(err, errlen, "commands: cannot start the journal's keeper thread");
        dfb_cmd_destroy(&self);
        return NULL;
    }
    self->keeper_started = 1;
    /* pthread_create is the barrier that hands the ROUTER to the thread. */
    if (pthread_create(&self->thread, NULL, cmd_main, self) != 0) {
        snprintf(err, errlen, "commands: cannot start the command thread");
        dfb_cmd_destroy(&self);
        return NULL;
    }
    self->started = 1;
    char line[1024];
    dfb_cmd_describe(cfg, self->curve, line, sizeof line);
    dfb_info("%s", line);
    if (self->endpoint[0] && cfg->commands && strcmp(self->endpoint, cfg->commands) != 0)
        dfb_info("commands: ROUTER bound at %s", self->endpoint);
    if (!cfg->state_dir)
        dfb_warn("commands: no bridge.stateDir: request ids and outcomes are kept in memory "
                 "only; a request retried after a restart of the bridge may be sent twice");
    return self;
}

void
dfb_cmd_destroy(dfb_cmd_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_cmd_t *self = *self_p;
    if (self->started) {
        atomic_store(&self->term, 1);
        wake(self);
        pthread_join(self->thread, NULL);
    }
    pthread_mutex_lock(&self->mu);
    self->quit = 1;
    pthread_cond_broadcast(&self->cv);
    pthread_cond_broadcast(&self->keeper_cv);
    pthread_mutex_unlock(&self->mu);
    for (int i = 0; i < self->execs_started; i++)
        pthread_join(self->execs[i], NULL);
    if (self->keeper_started)
        pthread_join(self->keeper, NULL);
    /* What the thread left (it did not start, or it died): no one to answer. */
    for (size_t b = 0; self->table && b < self->table_cap; b++)
        while (self->table[b]) {
            job_t *j = self->table[b];
            self->table[b] = j->hnext;
            job_free(j);
        }
    /* every job was in the table (done, ready and the scheduler's too) */
    while (self->sched && dfb_cmdsched_pop(self->sched))
        ;
    for (int i = 0; self->obs && i < self->nexec; i++)
        dfb_outbound_destroy(&self->obs[i]);
    free(self->obs);
    free(self->execs);
    free(self->table);
    dfb_cmdsched_destroy(&self->sched);
    dfb_cmdlog_close(&self->log);
    if (self->sock)
        zmq_close(self->sock);
    if (self->wake_fd >= 0)
        close(self->wake_fd);
    dfb_buf_free(&self->out);
    pthread_cond_destroy(&self->cv);
    pthread_cond_destroy(&self->keeper_cv);
    pthread_mutex_destroy(&self->mu);
    self->c->commands_queued = 0;
    self->c->commands_inflight = 0;
    free(self);
    *self_p = NULL;
}

const char *
dfb_cmd_endpoint(const dfb_cmd_t *self)
{
    return self->endpoint;
}

/* ---- self-test --------------------------------------------------------------- */

#include "df_check.h"

int
dfb_cmd_test(int verbose)
{
    int failures = df_check_failures;
    CHECK(pattern_matches("*", "messages.send"));
    CHECK(pattern_matches("messages.*", "messages.send"));
    CHECK(pattern_matches("messages.*", "messages.update"));
    CHECK(!pattern_matches("messages.*", "rooms.addMember"));
    CHECK(!pattern_matches("messages.*", "messagesX.send"));
    CHECK(pattern_matches("rooms.addMember", "rooms.addMember"));
    CHECK(!pattern_matches("rooms.addMember", "rooms.removeMember"));
    CHECK(!pattern_matches("rooms", "rooms.addMember"));

    char *ops1[] = {"messages.send", "rooms.*"}, *ops2[] = {"*"}, *bad[] = {"messages.sned"},
         *badp[] = {"message.*"};
    dfb_cmd_allow_t allow[2] = {{"w1", ops1, 2}, {"w2", ops2, 1}};
    dfb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    /* unset: everyone may call everything */
    CHECK(dfb_cmd_allowed(&cfg, "anyone", "users.lookup"));
    cfg.commands_allow = allow;
    cfg.commands_allow_n = 2;
    cfg.commands_allow_set = 1;
    char err[600];
    CHECK(dfb_cmd_check_allow(&cfg, err, sizeof err) == 0);
    CHECK(dfb_cmd_allowed(&cfg, "w1", "messages.send"));
    CHECK(!dfb_cmd_allowed(&cfg, "w1", "messages.update"));
    CHECK(dfb_cmd_allowed(&cfg, "w1", "rooms.removeMember"));
    CHECK(dfb_cmd_allowed(&cfg, "w2", "users.lookup"));
    CHECK(!dfb_cmd_allowed(&cfg, "w3", "messages.send")); /* not in the map */
    CHECK(!dfb_cmd_allowed(&cfg, "", "messages.send"));
    allow[1].ops = bad;
    CHECK(dfb_cmd_check_allow(&cfg, err, sizeof err) == -1 &&
          strstr(err, "bridge.commandsAllow.w2: 'messages.sned' names no operation"));
    if (verbose)
        printf("  %s\n", err);
    allow[1].ops = badp;
    CHECK(dfb_cmd_check_allow(&cfg, err, sizeof err) == -1 && strstr(err, "'message.*'"));
    /* every op of the protocol has a name the patterns can match */
    for (int op = 0; op < DFB_OP_COUNT; op++) {
        const char *name = dfb_op_name((dfb_op_t)op);
        CHECK(dfb_op_from_name(name, strlen(name)) == op);
    }
    cfg.state_dir = "/var/lib/dfbridge";
    cfg.commands = "tcp://127.0.0.1:5558";
    cfg.commands_rate = 20;
    cfg.commands_stream_rate = 2;
    allow[1].ops = ops2;
    char line[1024];
    dfb_cmd_describe(&cfg, 1, line, sizeof line);
    if (verbose)
        printf("  %s\n", line);
    CHECK(strstr(line, "commands tcp://127.0.0.1:5558 (CURVE, allow-list of 2 client(s): w1=2 "
                       "op pattern(s) w2=1 op pattern(s)); rate 20/s, per stream 2/s") != NULL);
    CHECK(strstr(line, "journal /var/lib/dfbridge/commands.log") != NULL);
    return df_check_failures - failures;
}
