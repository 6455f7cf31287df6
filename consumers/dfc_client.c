/*  dfc_client: the command channel's client (dfconsumer.h "Command channel").
    One DEALER owned by an I/O thread; callers hand requests over through a
    mutex-protected queue and an eventfd, then wait on their call's condition
    variable (sync) or get a callback on the I/O thread (async). The I/O
    thread matches replies by id, resends the same request after a timeout
    and retries busy replies within the call's budget. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "dfc_internal.h"

#define ID_MAX 128
#define NBUCKETS 4096
#define RECV_BURST 256

/* ---------------------------------------------------------------- replies */

struct dfc_reply {
    dfc_doc_t *doc;
    const dfc_value_t *root, *result, *error;
    const char *id, *code, *message;
    bool ok, replayed, found;
    int status;
    int64_t retry_after_ms;
};

static bool
value_true(const dfc_value_t *v)
{
    return dfc_value_type(v) == DFC_BOOL && dfc_value_bool(v);
}

/*  Reads a reply frame; NULL when it is not a reply map (v, id, ok). */
static dfc_reply_t *
reply_parse(const void *buf, size_t len, int *rc)
{
    dfc_doc_t *doc;
    *rc = dfc_doc_parse(buf, len, &doc);
    if (*rc)
        return NULL;
    const dfc_value_t *root = dfc_doc_root(doc), *v = DFC_FIND(root, "v"),
                      *id = DFC_FIND(root, "id"), *ok = DFC_FIND(root, "ok");
    uint64_t ver;
    if (dfc_value_type(root) != DFC_MAP || dfc_value_uint64(v, &ver) || ver != 1 ||
        dfc_value_type(id) != DFC_STR || dfc_value_type(ok) != DFC_BOOL) {
        dfc_doc_destroy(&doc);
        *rc = DFC_EINVAL;
        return NULL;
    }
    dfc_reply_t *r = calloc(1, sizeof *r);
    if (!r) {
        dfc_doc_destroy(&doc);
        *rc = DFC_ENOMEM;
        return NULL;
    }
    r->doc = doc;
    r->root = root;
    r->id = dfc_value_cstr(id);
    r->ok = dfc_value_bool(ok);
    r->replayed = value_true(DFC_FIND(root, "replayed"));
    r->found = value_true(DFC_FIND(root, "found"));
    if (r->ok) {
        r->result = DFC_FIND(root, "result");
    } else {
        r->error = DFC_FIND(root, "error");
        r->code = dfc_value_cstr(DFC_FIND(r->error, "code"));
        r->message = dfc_value_cstr(DFC_FIND(r->error, "message"));
        int64_t n;
        if (!dfc_value_int64(DFC_FIND(r->error, "status"), &n) && n > 0 && n < 1000)
            r->status = (int)n;
        if (!dfc_value_int64(DFC_FIND(r->error, "retry_after_ms"), &n) && n > 0)
            r->retry_after_ms = n;
        if (!r->code)
            r->code = ""; /* not ok is an error even when the bridge named none */
    }
    *rc = DFC_OK;
    return r;
}

bool
dfc_reply_ok(const dfc_reply_t *r)
{
    return r && r->ok;
}
const dfc_value_t *
dfc_reply_value(const dfc_reply_t *r)
{
    return r ? r->root : NULL;
}
const dfc_value_t *
dfc_reply_result(const dfc_reply_t *r)
{
    return r && r->ok ? r->result : NULL;
}
const char *
dfc_reply_error_code(const dfc_reply_t *r)
{
    return r && !r->ok ? r->code : NULL;
}
const char *
dfc_reply_error_message(const dfc_reply_t *r)
{
    return r && !r->ok ? r->message : NULL;
}
int
dfc_reply_status(const dfc_reply_t *r)
{
    return r ? r->status : 0;
}
int64_t
dfc_reply_retry_after_ms(const dfc_reply_t *r)
{
    return r ? r->retry_after_ms : 0;
}
bool
dfc_reply_replayed(const dfc_reply_t *r)
{
    return r && r->replayed;
}
bool
dfc_reply_found(const dfc_reply_t *r)
{
    return r && r->found;
}
const char *
dfc_reply_id(const dfc_reply_t *r)
{
    return r ? r->id : NULL;
}

void
dfc_reply_destroy(dfc_reply_t **r_p)
{
    if (!r_p || !*r_p)
        return;
    dfc_doc_destroy(&(*r_p)->doc);
    free(*r_p);
    *r_p = NULL;
}

/* ------------------------------------------------------------------ calls */

typedef struct call {
    struct call *qnext;       /* submission queue (under mu) */
    struct call *hnext;       /* bucket chain, submission order (I/O thread) */
    struct call *prev, *next; /* every call in flight (I/O thread) */
    char id[ID_MAX + 1];
    size_t idlen;
    uint64_t hash;
    unsigned char *frame;
    size_t frame_len;
    int64_t start, hard_end; /* monotonic ms: accepted, and the end of the budget */
    int64_t deadline;        /* the current attempt times out then */
    int64_t send_at;         /* need_send: not before then (busy retry) */
    bool need_send, resend, busy;
    int timeouts;
    /* completion */
    dfc_reply_fn fn;
    void *arg;
    bool sync, done; /* sync: done/rc/reply under mu, then cond */
    pthread_cond_t cond;
    int rc;
    dfc_reply_t *reply;
} call_t;

struct dfc_client {
    void *zctx;
    bool own_ctx;
    void *sock; /* the DEALER: the I/O thread's alone once started */
    int wake;   /* eventfd */
    int timeout_ms, attempts;
    pthread_t thread;
    bool started;

    pthread_mutex_t mu; /* queue, closing, users, sync completions */
    pthread_cond_t idle;
    call_t *qhead, *qtail;
    bool closing;
    int users; /* threads inside a dfc_client_call* (enter/leave) */

    /* I/O thread only */
    call_t *buckets[NBUCKETS];
    call_t *all;
    bool blocked;     /* the socket's queue was full: sends wait for POLLOUT */
    int64_t next_due; /* the earliest timer of any call (scan() runs then) */

    struct {
        _Atomic uint64_t calls, sent, resent, busy_retries, replies, unmatched, bad_replies,
            timeouts, canceled;
    } st;
};

#define ST_ADD(c, f) atomic_fetch_add_explicit(&(c)->st.f, 1, memory_order_relaxed)

void
dfc_client_stats(dfc_client_t *c, dfc_client_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (!c)
        return;
    out->calls = atomic_load(&c->st.calls);
    out->sent = atomic_load(&c->st.sent);
    out->resent = atomic_load(&c->st.resent);
    out->busy_retries = atomic_load(&c->st.busy_retries);
    out->replies = atomic_load(&c->st.replies);
    out->unmatched = atomic_load(&c->st.unmatched);
    out->bad_replies = atomic_load(&c->st.bad_replies);
    out->timeouts = atomic_load(&c->st.timeouts);
    out->canceled = atomic_load(&c->st.canceled);
}

/*  The id rule of the contract: 1..128 bytes of UTF-8, no control
    characters (C0, DEL, C1). */
static bool
id_valid(const char *s, size_t n)
{
    if (n == 0 || n > ID_MAX)
        return false;
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        unsigned c = *p, cp, need;
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return false;
            p++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            need = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            need = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            need = 3, cp = c & 0x07;
        else
            return false;
        if ((size_t)(end - p) <= need)
            return false;
        for (unsigned i = 1; i <= need; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((need == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (need == 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0x80 && cp <= 0x9f))
            return false;
        p += need + 1;
    }
    return true;
}

static int
uuid4(char out[37])
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
    return 0;
}

/*  Builds a call: the id (explicit, the job's default or a UUID) and the
    request frame {v:1, id, op, args}. */
static int
call_new(dfc_client_t *c, const char *op, const char *id, const void *args, size_t args_len,
         call_t **out)
{
    *out = NULL;
    /* counted first: a job's n does not depend on whether this call is valid */
    char dflt[ID_MAX + 2];
    int job = dfc_context_call_id(id ? NULL : dflt, sizeof dflt);
    size_t oplen = op ? strlen(op) : 0;
    if (!c || !op || oplen == 0 || oplen > 255 || (!args && args_len))
        return DFC_EINVAL;
    static const unsigned char empty_map = 0x80;
    if (!args) {
        args = &empty_map;
        args_len = 1;
    }
    /* args must be exactly one msgpack map (the bounded decoder says so) */
    dfc_doc_t *doc;
    int rc = dfc_doc_parse(args, args_len, &doc);
    if (rc)
        return rc;
    bool is_map = dfc_value_type(dfc_doc_root(doc)) == DFC_MAP;
    dfc_doc_destroy(&doc);
    if (!is_map)
        return DFC_EINVAL;

    call_t *k = calloc(1, sizeof *k);
    if (!k)
        return DFC_ENOMEM;
    if (id) {
        k->idlen = strlen(id);
        if (!id_valid(id, k->idlen)) {
            free(k);
            return DFC_EINVAL;
        }
        memcpy(k->id, id, k->idlen + 1);
    } else if (job == 1 && id_valid(dflt, strlen(dflt))) {
        k->idlen = strlen(dflt);
        memcpy(k->id, dflt, k->idlen + 1);
    } else {
        if (job)
            dfc_log(DFC_LOG_WARN,
                    "command %s: this job's default id would be empty, longer than "
                    "%d bytes or not valid: a random id is used instead (give an "
                    "explicit id for exactly-once across redeliveries)",
                    op, ID_MAX);
        if (uuid4(k->id)) {
            free(k);
            return DFC_EIO;
        }
        k->idlen = strlen(k->id);
    }
    k->hash = dfc_fnv1a64(k->id, k->idlen);
    k->frame = malloc(32 + k->idlen + oplen + args_len);
    if (!k->frame) {
        free(k);
        return DFC_ENOMEM;
    }
    unsigned char *p = k->frame;
    size_t n = 0;
    p[n++] = 0x84;
    n += dfc_mp_str(p + n, "v", 1);
    p[n++] = 0x01;
    n += dfc_mp_str(p + n, "id", 2);
    n += dfc_mp_str(p + n, k->id, k->idlen);
    n += dfc_mp_str(p + n, "op", 2);
    n += dfc_mp_str(p + n, op, oplen);
    n += dfc_mp_str(p + n, "args", 4);
    memcpy(p + n, args, args_len);
    k->frame_len = n + args_len;
    *out = k;
    return DFC_OK;
}

static void
call_free(call_t *k)
{
    if (!k)
        return;
    if (k->sync)
        pthread_cond_destroy(&k->cond);
    free(k->frame);
    free(k);
}

/*  Hands a call to the I/O thread. DFC_ECANCELED when closing. */
static int
submit(dfc_client_t *c, call_t *k)
{
    pthread_mutex_lock(&c->mu);
    if (c->closing) {
        pthread_mutex_unlock(&c->mu);
        return DFC_ECANCELED;
    }
    k->qnext = NULL;
    if (c->qtail)
        c->qtail->qnext = k;
    else
        c->qhead = k;
    c->qtail = k;
    ST_ADD(c, calls); /* before the I/O thread can see it: counted before it completes */
    pthread_mutex_unlock(&c->mu);
    uint64_t one = 1;
    ssize_t w;
    do
        w = write(c->wake, &one, sizeof one);
    while (w < 0 && errno == EINTR);
    return DFC_OK;
}

static bool
on_io_thread(const dfc_client_t *c)
{
    return c->started && pthread_equal(pthread_self(), c->thread);
}

/*  Every public call runs between enter and leave: destroy waits until no
    thread is inside one, and one entering after destroy began is refused. */
static bool
enter(dfc_client_t *c)
{
    pthread_mutex_lock(&c->mu);
    bool ok = !c->closing;
    if (ok)
        c->users++;
    pthread_mutex_unlock(&c->mu);
    if (!ok)
        dfc_context_call_id(NULL, 0); /* a job's n counts every call, refused ones too */
    return ok;
}

static void
leave(dfc_client_t *c)
{
    pthread_mutex_lock(&c->mu);
    if (--c->users == 0 && c->closing)
        pthread_cond_broadcast(&c->idle);
    pthread_mutex_unlock(&c->mu);
}

int
dfc_client_call(dfc_client_t *c, const char *op, const char *id, const void *args, size_t args_len,
                dfc_reply_t **out)
{
    if (out)
        *out = NULL;
    if (c && !enter(c))
        return DFC_ECANCELED;
    call_t *k;
    int rc = call_new(c, op, id, args, args_len, &k);
    if (rc == DFC_OK && (!out || on_io_thread(c))) {
        call_free(k);
        rc = DFC_EINVAL;
    } else if (rc == DFC_OK) {
        k->sync = true;
        pthread_cond_init(&k->cond, NULL);
        rc = submit(c, k);
        if (rc == DFC_OK) {
            pthread_mutex_lock(&c->mu);
            while (!k->done)
                pthread_cond_wait(&k->cond, &c->mu);
            rc = k->rc;
            *out = k->reply;
            pthread_mutex_unlock(&c->mu);
        }
        call_free(k);
    }
    if (c)
        leave(c);
    return rc;
}

int
dfc_client_call_async(dfc_client_t *c, const char *op, const char *id, const void *args,
                      size_t args_len, dfc_reply_fn fn, void *arg)
{
    if (c && !enter(c))
        return DFC_ECANCELED;
    call_t *k;
    int rc = call_new(c, op, id, args, args_len, &k);
    if (rc == DFC_OK && !fn) {
        call_free(k);
        rc = DFC_EINVAL;
    } else if (rc == DFC_OK) {
        k->fn = fn;
        k->arg = arg;
        rc = submit(c, k);
        if (rc)
            call_free(k);
    }
    if (c)
        leave(c);
    return rc;
}

int
dfc_client_send_message(dfc_client_t *c, const char *stream_id, const char *message,
                        const char *data_json, dfc_reply_t **out)
{
    if (out)
        *out = NULL;
    if (!stream_id || !message)
        return dfc_client_call(c, NULL, NULL, NULL, 0, out); /* counts the call, EINVAL */
    dfc_args_t *a = dfc_args_new();
    if (!a)
        return DFC_ENOMEM;
    dfc_args_str(a, "stream_id", stream_id);
    dfc_args_str(a, "message", message);
    if (data_json)
        dfc_args_str(a, "data", data_json); /* the bridge parses it (a JSON object) */
    size_t len;
    const void *args = dfc_args_data(a, &len);
    int rc = args ? dfc_client_call(c, "messages.send", NULL, args, len, out) : DFC_ENOMEM;
    dfc_args_destroy(&a);
    return rc;
}

/* -------------------------------------------------------------- I/O thread */

static void
table_add(dfc_client_t *c, call_t *k)
{
    call_t **pp = &c->buckets[k->hash % NBUCKETS];
    while (*pp)
        pp = &(*pp)->hnext; /* tail: the oldest call of an id is matched first */
    k->hnext = NULL;
    *pp = k;
    k->prev = NULL;
    k->next = c->all;
    if (c->all)
        c->all->prev = k;
    c->all = k;
}

static void
table_remove(dfc_client_t *c, call_t *k)
{
    call_t **pp = &c->buckets[k->hash % NBUCKETS];
    while (*pp && *pp != k)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = k->hnext;
    if (k->prev)
        k->prev->next = k->next;
    else
        c->all = k->next;
    if (k->next)
        k->next->prev = k->prev;
}

static call_t *
table_find(dfc_client_t *c, const char *id, size_t len)
{
    uint64_t h = dfc_fnv1a64(id, len);
    for (call_t *k = c->buckets[h % NBUCKETS]; k; k = k->hnext)
        if (k->hash == h && k->idlen == len && memcmp(k->id, id, len) == 0)
            return k;
    return NULL;
}

/*  Ends a call (taken out of the table first): wakes its caller or runs its
    callback. The call must not be touched afterwards. */
static void
complete(dfc_client_t *c, call_t *k, int rc, dfc_reply_t *reply)
{
    if (rc == DFC_ETIMEOUT)
        ST_ADD(c, timeouts);
    else if (rc == DFC_ECANCELED)
        ST_ADD(c, canceled);
    if (k->sync) {
        pthread_mutex_lock(&c->mu);
        k->rc = rc;
        k->reply = reply;
        k->done = true;
        pthread_cond_signal(&k->cond);
        pthread_mutex_unlock(&c->mu);
        return;
    }
    k->fn(k->arg, rc, reply);
    call_free(k);
}

/*  Sends k's request now. Returns false when the socket's queue is full
    (EAGAIN): the I/O thread then waits for POLLOUT and sends from scan(). */
static bool
send_one(dfc_client_t *c, call_t *k, int64_t now)
{
    if (zmq_send(c->sock, k->frame, k->frame_len, ZMQ_DONTWAIT) < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return false;
        dfc_log(DFC_LOG_WARN,
                "command channel: send failed: %s (tried again at the call's "
                "next attempt)",
                zmq_strerror(errno));
        k->need_send = false;
        k->deadline = now + c->timeout_ms;
    } else {
        ST_ADD(c, sent);
        if (k->resend)
            ST_ADD(c, resent);
        if (k->busy)
            ST_ADD(c, busy_retries);
        k->need_send = k->resend = k->busy = false;
        k->deadline = now + c->timeout_ms;
    }
    if (k->deadline > k->hard_end)
        k->deadline = k->hard_end;
    return true;
}

/*  When k next needs the I/O thread. */
static int64_t
call_due(const dfc_client_t *c, const call_t *k)
{
    int64_t due = !k->need_send ? k->deadline : c->blocked ? k->hard_end : k->send_at;
    return due < k->hard_end ? due : k->hard_end;
}

static void
on_frame(dfc_client_t *c, const void *buf, size_t len, int64_t now)
{
    int rc;
    dfc_reply_t *r = reply_parse(buf, len, &rc);
    if (!r) {
        uint64_t n = atomic_fetch_add(&c->st.bad_replies, 1) + 1;
        if ((n & (n - 1)) == 0) /* the 1st, 2nd, 4th, 8th...: a flood cannot flood the log */
            dfc_log(DFC_LOG_WARN,
                    "command channel: a frame of %zu bytes is not a reply (%s): "
                    "dropped (%llu so far)",
                    len, dfc_strerror(rc), (unsigned long long)n);
        return;
    }
    size_t idlen;
    const char *id = dfc_value_str(DFC_FIND(r->root, "id"), &idlen);
    call_t *k = table_find(c, id, idlen);
    if (!k) {
        ST_ADD(c, unmatched);
        dfc_reply_destroy(&r);
        return;
    }
    if (!r->ok && r->code && strcmp(r->code, "busy") == 0) {
        int64_t wait = r->retry_after_ms > 0 ? r->retry_after_ms : 100;
        if (wait > k->hard_end - now)
            wait = k->hard_end - now; /* beyond the budget (and no overflow) */
        if (now + wait < k->hard_end) {
            dfc_reply_destroy(&r);
            k->need_send = true;
            k->busy = true;
            k->send_at = now + wait;
            k->deadline = k->hard_end;
            if (k->send_at < c->next_due)
                c->next_due = k->send_at;
            return;
        }
    }
    table_remove(c, k);
    complete(c, k, DFC_OK, r);
}

/*  Reads every waiting frame (at most RECV_BURST). */
static void
recv_all(dfc_client_t *c, int64_t now)
{
    for (int i = 0; i < RECV_BURST; i++) {
        zmq_msg_t m[2];
        size_t nparts, total;
        int got = dfc_msg_read(c->sock, m, &nparts, &total);
        if (got <= 0)
            return;
        ST_ADD(c, replies);
        /* one frame, or an empty delimiter then the reply (REQ-style framing) */
        if (nparts == 1)
            on_frame(c, zmq_msg_data(&m[0]), zmq_msg_size(&m[0]), now);
        else if (nparts == 2 && zmq_msg_size(&m[0]) == 0)
            on_frame(c, zmq_msg_data(&m[1]), zmq_msg_size(&m[1]), now);
        else
            ST_ADD(c, bad_replies);
        zmq_msg_close(&m[0]);
        zmq_msg_close(&m[1]);
    }
}

/*  The timers of every call: a timed-out attempt is sent again (the same
    request) or, once every attempt or the budget is used, ends
    DFC_ETIMEOUT; requests due (resends, busy retries, those the full queue
    held back) are sent. Returns the next time anything is due. Calls that
    need nothing are only looked at here, when a timer fires. */
static int64_t
scan(dfc_client_t *c, int64_t now)
{
    int64_t next = now + 1000;
    call_t *k = c->all;
    while (k) {
        call_t *nx = k->next;
        bool over = false;
        if (!k->need_send && k->deadline <= now) {
            k->timeouts++;
            over = k->timeouts >= c->attempts || now >= k->hard_end;
            k->need_send = k->resend = !over;
            k->send_at = now;
        } else if (k->need_send && now >= k->hard_end) {
            over = true; /* never got out (queue full), or a busy retry came due too late */
        }
        if (over) {
            table_remove(c, k);
            complete(c, k, DFC_ETIMEOUT, NULL);
            k = nx;
            continue;
        }
        if (k->need_send && k->send_at <= now && !c->blocked && !send_one(c, k, now))
            c->blocked = true;
        int64_t due = call_due(c, k);
        if (due < next)
            next = due;
        k = nx;
    }
    return next;
}

static void
cancel_all(dfc_client_t *c)
{
    while (c->all) {
        call_t *k = c->all;
        table_remove(c, k);
        complete(c, k, DFC_ECANCELED, NULL);
    }
}

static void *
io_main(void *arg)
{
    dfc_client_t *c = arg;
    c->next_due = dfc_mono_ms() + 1000;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        call_t *q = c->qhead;
        c->qhead = c->qtail = NULL;
        bool closing = c->closing;
        pthread_mutex_unlock(&c->mu);
        int64_t now = dfc_mono_ms();
        while (q) { /* new calls: sent at once unless the socket's queue is full */
            call_t *k = q;
            q = q->qnext;
            k->start = now;
            k->hard_end = now + (int64_t)c->timeout_ms * c->attempts;
            k->need_send = true;
            k->send_at = now;
            k->deadline = k->hard_end;
            table_add(c, k);
            if (!c->blocked && !send_one(c, k, now))
                c->blocked = true;
            int64_t due = call_due(c, k);
            if (due < c->next_due)
                c->next_due = due;
        }
        if (closing) {
            cancel_all(c);
            break;
        }
        if (now >= c->next_due)
            c->next_due = scan(c, now);
        zmq_pollitem_t items[2] = {
            {.socket = c->sock, .events = (short)(ZMQ_POLLIN | (c->blocked ? ZMQ_POLLOUT : 0))},
            {.fd = c->wake, .events = ZMQ_POLLIN},
        };
        int n = zmq_poll(items, 2, c->next_due > now ? (long)(c->next_due - now) : 0);
        if (n < 0 && errno != EINTR) {
            dfc_log(DFC_LOG_ERROR, "command channel: poll failed: %s", zmq_strerror(errno));
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL); /* never spin */
        }
        now = dfc_mono_ms();
        if (n > 0 && c->blocked && (items[0].revents & ZMQ_POLLOUT)) {
            c->blocked = false;
            c->next_due = now; /* send what waited */
        }
        if (n > 0 && (items[1].revents & ZMQ_POLLIN)) {
            uint64_t v;
            if (read(c->wake, &v, sizeof v) < 0 && errno != EAGAIN)
                dfc_log(DFC_LOG_WARN, "command channel: wake-up read: %s", strerror(errno));
        }
        recv_all(c, now);
    }
    return NULL;
}

/* --------------------------------------------------------- construction */

dfc_client_t *
dfc_client_new(const dfc_client_config_t *cfg)
{
    if (!cfg || !cfg->endpoint || !*cfg->endpoint || cfg->timeout_ms < 0 || cfg->attempts < 0) {
        dfc_log(DFC_LOG_ERROR, "dfc_client_new: invalid argument: %s",
                !cfg || !cfg->endpoint || !*cfg->endpoint ? "endpoint is required"
                                                          : "timeout_ms and attempts must be >= 0");
        errno = EINVAL;
        return NULL;
    }
    dfc_curve_t curve;
    char why[512];
    if (dfc_curve_load(&curve, cfg->server_key, cfg->cert, why, sizeof why)) {
        dfc_log(DFC_LOG_ERROR, "dfc_client_new: invalid argument: %s", why);
        errno = EINVAL;
        return NULL;
    }
    dfc_client_t *c = calloc(1, sizeof *c);
    if (!c) {
        dfc_curve_wipe(&curve);
        errno = ENOMEM;
        return NULL;
    }
    c->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 10000;
    c->attempts = cfg->attempts ? cfg->attempts : 3;
    c->wake = -1;
    int err = 0;
    c->zctx = cfg->zmq_ctx;
    if (!c->zctx) {
        c->zctx = zmq_ctx_new();
        c->own_ctx = true;
        if (!c->zctx) {
            err = errno;
            goto fail;
        }
    }
    c->sock = zmq_socket(c->zctx, ZMQ_DEALER);
    if (!c->sock) {
        err = errno;
        goto fail;
    }
    int linger = 0;
    int64_t maxmsg = cfg->max_reply ? (int64_t)cfg->max_reply : (int64_t)64 << 20;
    /* ZMQ_IMMEDIATE stays 0: a request made while the bridge is away (or
       restarting) waits in the pipe and goes out when it connects; one lost
       on a dropped connection is sent again by the timeout */
    if (zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) ||
        dfc_curve_apply(&curve, c->sock)) {
        err = errno;
        goto fail;
    }
    dfc_curve_wipe(&curve);
    if (zmq_connect(c->sock, cfg->endpoint)) {
        err = errno;
        dfc_log(DFC_LOG_ERROR, "dfc_client_new: connect %s: %s", cfg->endpoint, zmq_strerror(err));
        goto fail;
    }
    c->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->wake < 0) {
        err = errno;
        goto fail;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->idle, NULL);
    if ((err = pthread_create(&c->thread, NULL, io_main, c))) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->idle);
        goto fail;
    }
    c->started = true;
    return c;
fail:
    dfc_curve_wipe(&curve);
    if (err && err != EINVAL)
        dfc_log(DFC_LOG_ERROR, "dfc_client_new: %s", zmq_strerror(err));
    if (c->wake >= 0)
        close(c->wake);
    if (c->sock)
        zmq_close(c->sock);
    if (c->own_ctx && c->zctx)
        zmq_ctx_term(c->zctx);
    free(c);
    errno = err ? err : EINVAL;
    return NULL;
}

void
dfc_client_destroy(dfc_client_t **c_p)
{
    if (!c_p || !*c_p)
        return;
    dfc_client_t *c = *c_p;
    if (on_io_thread(c)) {
        dfc_log(DFC_LOG_ERROR, "dfc_client_destroy from a reply callback: refused (it would wait "
                               "for itself)");
        return;
    }
    pthread_mutex_lock(&c->mu);
    c->closing = true;
    pthread_mutex_unlock(&c->mu);
    uint64_t one = 1;
    ssize_t w;
    do
        w = write(c->wake, &one, sizeof one);
    while (w < 0 && errno == EINTR);
    pthread_join(c->thread, NULL); /* it fails every call still waiting */
    pthread_mutex_lock(&c->mu);
    while (c->users > 0)
        pthread_cond_wait(&c->idle, &c->mu);
    pthread_mutex_unlock(&c->mu);
    zmq_close(c->sock);
    if (c->own_ctx)
        zmq_ctx_term(c->zctx);
    close(c->wake);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->idle);
    free(c);
    *c_p = NULL;
}
