/* dfpod state: tokens, feeds and their queues (ack, visibility, TTL), scripted faults,
 * counters and the call log. One mutex guards it all; one condition variable wakes held
 * reads when events arrive, feeds die, tokens change or the pod shuts down. */
#include "pod.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/socket.h>

#include <openssl/rand.h>

/* How often a held read checks that its client is still connected. */
#define POD_ALIVE_CHECK_MS 200

int64_t
pod_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
pod_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* sessionauth, keyauth: certificate auth; agentinfo: simplified key delivery; msgcreate ..
 * users: the outbound endpoints (pod_outbound.c). */
static const char *ep_names[POD_EP_COUNT] = {
    "auth",        "relay",      "sessioninfo", "list",      "create",
    "delete",      "read",       "v1create",    "v1read",    "dhread",
    "sessionauth", "keyauth",    "agentinfo",   "msgcreate", "msgupdate",
    "msgsuppress", "msgget",     "msglist",     "imcreate",  "roomadd",
    "roomremove",  "streaminfo", "users",       "unknown",   "any",
};

bool
pod_ep_outbound(pod_ep_t ep)
{
    return ep >= POD_EP_MSGCREATE && ep <= POD_EP_USERS;
}

const char *
pod_ep_name(pod_ep_t ep)
{
    return (ep >= 0 && ep < POD_EP_COUNT) ? ep_names[ep] : "?";
}

int
pod_ep_from_name(const char *name)
{
    for (int i = 0; i < POD_EP_COUNT; i++)
        if (strcmp(ep_names[i], name) == 0 && i != POD_EP_UNKNOWN)
            return i;
    return -1;
}

/* ---------------------------------------------------------------------- */

typedef struct {
    char *raw; /* NULL once freed (--no-history, nobody holds it) */
    size_t len;
    uint32_t refs; /* feed queues, batches and the backlog holding it, +1 for the history */
} event_t;

/* A FIFO of event indices into the store. */
typedef struct {
    uint32_t *v;
    size_t head, n, cap;
} idxq_t;

/* A delivered, unacknowledged batch: redelivered whole when visible_at passes. */
typedef struct batch {
    pod_ackid_t ackid;
    uint32_t *ev;
    size_t n;
    int64_t visible_at;
    struct batch *next;
} batch_t;

typedef struct feed {
    char id[64];
    bool v1;
    bool dead;
    char *dh_key;   /* datahose feeds only: "<tag>\n,<type>,<type>," (sorted types) */
    char *dh_types; /* points into dh_key: ",<type>,...," for a ",TYPE," search */
    int64_t created_wall;
    int64_t last_read; /* monotonic */
    int readers;       /* reads in progress: a held read keeps the feed alive */
    idxq_t q;
    batch_t *inflight;
    struct feed *next;
} feed_t;

typedef struct fault_node {
    pod_ep_t ep;
    pod_fault_t f;
    long count;
    struct fault_node *next;
} fault_node_t;

typedef struct {
    char *json; /* the log entry, already serialised */
} call_entry_t;

/* A read in progress, so that the "held" gauge can count only live clients. */
typedef struct held {
    int fd;
    bool gone;
    struct held *next;
} held_t;

typedef struct {
    char tok[33];
    pod_token_kind_t kind;
    int64_t issued; /* monotonic */
} token_t;

struct pod_state_t {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    const pod_config_t *cfg;
    bool stopping;

    event_t *events;
    size_t nevents, capevents;
    idxq_t backlog;

    feed_t *feeds; /* live and dead: a dead feed is freed by the next sweep once no read
                    * points at it */
    token_t *tokens;
    size_t ntokens, captokens;
    char **issued; /* every token value handed out (GET /admin/tokens) */
    size_t nissued, capissued;
    fault_node_t *faults;

    call_entry_t *calls;
    size_t ncalls, capcalls;
    uint64_t call_seq;
    uint64_t ack_seq;
    pod_ackid_t next_ack; /* POST /admin/next-ackid: the next batch's ackId (len 0 = none) */

    uint64_t calls_by_ep[POD_EP_COUNT];
    uint64_t status_count[600];
    uint64_t enqueued, served, acked, redelivered, feeds_created, feeds_deleted, feeds_expired,
        auth_ok, auth_failed, faults_applied;
    held_t *held; /* reads inside pod_state_read */
};

void *
pod_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "dfpod: out of memory\n");
        exit(2);
    }
    return q;
}

static void
idxq_push(idxq_t *q, uint32_t v)
{
    if (q->head + q->n == q->cap) {
        if (q->head > 0 && q->head >= q->cap / 2) {
            memmove(q->v, q->v + q->head, q->n * sizeof *q->v);
            q->head = 0;
        } else {
            q->cap = q->cap ? q->cap * 2 : 64;
            q->v = pod_xrealloc(q->v, q->cap * sizeof *q->v);
        }
    }
    q->v[q->head + q->n++] = v;
}

static void
idxq_free(idxq_t *q)
{
    free(q->v);
    memset(q, 0, sizeof *q);
}

static void
batch_free_list(batch_t *b)
{
    while (b) {
        batch_t *next = b->next;
        free(b->ev);
        free(b);
        b = next;
    }
}

/* Drops one reference; the text is freed when neither a feed nor the history holds it. */
static void
event_unref_locked(pod_state_t *self, uint32_t idx)
{
    event_t *e = &self->events[idx];
    if (e->refs > 0 && --e->refs == 0) {
        free(e->raw);
        e->raw = NULL;
    }
}

static void
batch_unref_locked(pod_state_t *self, const batch_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        event_unref_locked(self, b->ev[i]);
}

pod_state_t *
pod_state_new(const pod_config_t *cfg)
{
    pod_state_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = cfg;
    pthread_mutex_init(&self->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&self->cv, &ca);
    pthread_condattr_destroy(&ca);
    return self;
}

void
pod_state_destroy(pod_state_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pod_state_t *self = *self_p;
    for (size_t i = 0; i < self->nevents; i++)
        free(self->events[i].raw);
    free(self->events);
    idxq_free(&self->backlog);
    for (feed_t *f = self->feeds; f;) {
        feed_t *next = f->next;
        idxq_free(&f->q);
        batch_free_list(f->inflight);
        free(f->dh_key);
        free(f);
        f = next;
    }
    free(self->tokens);
    for (size_t i = 0; i < self->nissued; i++)
        free(self->issued[i]);
    free(self->issued);
    for (fault_node_t *n = self->faults; n;) {
        fault_node_t *next = n->next;
        free(n->f.body);
        free(n);
        n = next;
    }
    for (size_t i = 0; i < self->ncalls; i++)
        free(self->calls[i].json);
    free(self->calls);
    pthread_cond_destroy(&self->cv);
    pthread_mutex_destroy(&self->mu);
    free(self);
    *self_p = NULL;
}

void
pod_state_shutdown(pod_state_t *self)
{
    pthread_mutex_lock(&self->mu);
    self->stopping = true;
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
}

bool
pod_state_stopping(pod_state_t *self)
{
    pthread_mutex_lock(&self->mu);
    bool s = self->stopping;
    pthread_mutex_unlock(&self->mu);
    return s;
}

static void
deadline_ts(int64_t mono_ms, struct timespec *ts)
{
    ts->tv_sec = mono_ms / 1000;
    ts->tv_nsec = (mono_ms % 1000) * 1000000;
}

bool
pod_state_sleep(pod_state_t *self, int64_t ms)
{
    int64_t deadline = pod_mono_ms() + ms;
    pthread_mutex_lock(&self->mu);
    while (!self->stopping && pod_mono_ms() < deadline) {
        struct timespec ts;
        deadline_ts(deadline, &ts);
        pthread_cond_timedwait(&self->cv, &self->mu, &ts);
    }
    bool ok = !self->stopping;
    pthread_mutex_unlock(&self->mu);
    return ok;
}

/* ---- tokens ---- */

static void
random_hex(char *out, size_t nbytes)
{
    unsigned char buf[32];
    if (nbytes > sizeof buf)
        nbytes = sizeof buf;
    if (RAND_bytes(buf, (int)nbytes) != 1) {
        /* Not a security token: a weaker source is acceptable for a test pod. */
        for (size_t i = 0; i < nbytes; i++)
            buf[i] = (unsigned char)(rand() & 0xff);
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[buf[i] >> 4];
        out[2 * i + 1] = hex[buf[i] & 15];
    }
    out[2 * nbytes] = '\0';
}

void
pod_state_token_issue(pod_state_t *self, pod_token_kind_t kind, char out[33])
{
    random_hex(out, 16);
    pthread_mutex_lock(&self->mu);
    if (self->ntokens == self->captokens) {
        self->captokens = self->captokens ? self->captokens * 2 : 16;
        self->tokens = pod_xrealloc(self->tokens, self->captokens * sizeof *self->tokens);
    }
    token_t *t = &self->tokens[self->ntokens++];
    memcpy(t->tok, out, 33);
    t->kind = kind;
    t->issued = pod_mono_ms();
    pthread_mutex_unlock(&self->mu);
}

bool
pod_state_token_valid(pod_state_t *self, pod_token_kind_t kind, const char *tok)
{
    if (!tok || strlen(tok) != 32)
        return false;
    bool ok = false;
    int64_t now = pod_mono_ms();
    pthread_mutex_lock(&self->mu);
    for (size_t i = 0; i < self->ntokens; i++) {
        token_t *t = &self->tokens[i];
        if (t->kind == kind && strcmp(t->tok, tok) == 0) {
            ok = self->cfg->token_ttl_ms <= 0 || now - t->issued < self->cfg->token_ttl_ms;
            break;
        }
    }
    pthread_mutex_unlock(&self->mu);
    return ok;
}

void
pod_state_tokens_expire(pod_state_t *self)
{
    pthread_mutex_lock(&self->mu);
    self->ntokens = 0;
    pthread_mutex_unlock(&self->mu);
}

void
pod_state_token_record(pod_state_t *self, const char *value)
{
    char *copy = strdup(value);
    if (!copy) {
        fprintf(stderr, "dfpod: out of memory\n");
        exit(2);
    }
    pthread_mutex_lock(&self->mu);
    if (self->nissued == self->capissued) {
        self->capissued = self->capissued ? self->capissued * 2 : 16;
        self->issued = pod_xrealloc(self->issued, self->capissued * sizeof *self->issued);
    }
    self->issued[self->nissued++] = copy;
    pthread_mutex_unlock(&self->mu);
}

char *
pod_state_tokens_json(pod_state_t *self)
{
    json_t *a = json_array();
    pthread_mutex_lock(&self->mu);
    for (size_t i = 0; a && i < self->nissued; i++)
        json_array_append_new(a, json_string(self->issued[i]));
    pthread_mutex_unlock(&self->mu);
    char *out = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    return out;
}

void
pod_state_count_auth(pod_state_t *self, bool ok)
{
    pthread_mutex_lock(&self->mu);
    if (ok)
        self->auth_ok++;
    else
        self->auth_failed++;
    pthread_mutex_unlock(&self->mu);
}

/* ---- feeds and events ---- */

static void
feed_kill_locked(pod_state_t *self, feed_t *f)
{
    f->dead = true;
    for (size_t i = 0; i < f->q.n; i++)
        event_unref_locked(self, f->q.v[f->q.head + i]);
    for (batch_t *b = f->inflight; b; b = b->next)
        batch_unref_locked(self, b);
    idxq_free(&f->q);
    batch_free_list(f->inflight);
    f->inflight = NULL;
    pthread_cond_broadcast(&self->cv);
}

/* Expires feeds not read for --ttl-ms (a feed with a read in progress is being read). */
static void
sweep_locked(pod_state_t *self, int64_t now)
{
    for (feed_t **pf = &self->feeds; *pf;) {
        feed_t *f = *pf;
        if (!f->dead && f->readers == 0 && now - f->last_read > self->cfg->ttl_ms) {
            feed_kill_locked(self, f);
            self->feeds_expired++;
        }
        /* A dead feed no read points at any more can go (its queues are already freed). */
        if (f->dead && f->readers == 0) {
            *pf = f->next;
            free(f->dh_key);
            free(f);
            continue;
        }
        pf = &f->next;
    }
}

/* Live feeds: want_v1 < 0 all of them, 1 the v1 feeds, 0 the fanout feeds (datahose feeds
 * are counted only by want_v1 < 0). */
static int
live_feeds_locked(pod_state_t *self, int want_v1)
{
    int n = 0;
    for (feed_t *f = self->feeds; f; f = f->next)
        if (!f->dead && (want_v1 < 0 || (f->v1 == (want_v1 != 0) && (want_v1 != 0 || !f->dh_key))))
            n++;
    return n;
}

/* The "type" of one raw event, as ",TYPE," in OUT ("" if it has none). Only needed while a
 * datahose feed is live, so the parse costs nothing otherwise. */
static void
event_type_key(const char *raw, size_t len, char *out, size_t cap)
{
    out[0] = '\0';
    json_t *j = json_loadb(raw, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    const char *t = json_string_value(json_object_get(j, "type"));
    if (t && strlen(t) + 3 <= cap)
        snprintf(out, cap, ",%s,", t);
    json_decref(j);
}

/* Stores one event (copied) and queues it on every live feed, or the backlog; the caller
 * holds mu and wakes the readers. */
static void
enqueue_locked(pod_state_t *self, const char *raw, size_t len)
{
    char *copy = pod_xrealloc(NULL, len + 1);
    memcpy(copy, raw, len);
    copy[len] = '\0';
    if (self->nevents == self->capevents) {
        self->capevents = self->capevents ? self->capevents * 2 : 256;
        self->events = pod_xrealloc(self->events, self->capevents * sizeof *self->events);
    }
    uint32_t idx = (uint32_t)self->nevents;
    event_t *e = &self->events[self->nevents++];
    *e = (event_t){copy, len, self->cfg->no_history ? 0 : 1};
    self->enqueued++;
    bool any = false;
    char type_key[128];
    bool type_known = false;
    for (feed_t *f = self->feeds; f; f = f->next) {
        if (f->dead)
            continue;
        if (f->dh_key) {
            /* Datahose: only the types asked for; does not stop the backlog. */
            if (!type_known) {
                event_type_key(copy, len, type_key, sizeof type_key);
                type_known = true;
            }
            if (!type_key[0] || !strstr(f->dh_types, type_key))
                continue;
            idxq_push(&f->q, idx);
            e->refs++;
            continue;
        }
        idxq_push(&f->q, idx);
        e->refs++;
        any = true;
    }
    if (!any) {
        idxq_push(&self->backlog, idx);
        e->refs++;
    }
}

void
pod_state_enqueue(pod_state_t *self, const char *raw, size_t len)
{
    pod_state_enqueue_many(self, &raw, &len, 1);
}

void
pod_state_enqueue_many(pod_state_t *self, const char *const *raw, const size_t *len, size_t n)
{
    pthread_mutex_lock(&self->mu);
    sweep_locked(self, pod_mono_ms());
    for (size_t i = 0; i < n; i++)
        enqueue_locked(self, raw[i], len[i]);
    /* One wake-up for all of them: a held read sees none or all (up to --batch-max). */
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
}

/* Appends "[raw,raw,...]" built from N indices. */
typedef struct {
    char *p;
    size_t n, cap;
} buf_t;

static void
buf_add(buf_t *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        b->p = pod_xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void
buf_adds(buf_t *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void
buf_events_locked(pod_state_t *self, buf_t *b, const uint32_t *idx, size_t n)
{
    buf_adds(b, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_adds(b, ",");
        event_t *e = &self->events[idx[i]];
        buf_add(b, e->raw, e->len);
    }
    buf_adds(b, "]");
}

char *
pod_state_events_json(pod_state_t *self, size_t *len)
{
    buf_t b = {0};
    pthread_mutex_lock(&self->mu);
    buf_adds(&b, "[");
    bool first = true;
    for (size_t i = 0; i < self->nevents; i++) {
        if (!self->events[i].raw)
            continue;
        if (!first)
            buf_adds(&b, ",");
        first = false;
        buf_add(&b, self->events[i].raw, self->events[i].len);
    }
    buf_adds(&b, "]");
    pthread_mutex_unlock(&self->mu);
    *len = b.n;
    return b.p;
}

int
pod_state_feed_create(pod_state_t *self, bool v1, char id_out[64])
{
    char hex[33];
    random_hex(hex, 16);
    pthread_mutex_lock(&self->mu);
    int64_t now = pod_mono_ms();
    sweep_locked(self, now);
    if (!v1 && live_feeds_locked(self, 0) >= self->cfg->max_feeds) {
        pthread_mutex_unlock(&self->mu);
        return POD_ETOOMANY;
    }
    feed_t *f = calloc(1, sizeof *f);
    if (!f) {
        pthread_mutex_unlock(&self->mu);
        fprintf(stderr, "dfpod: out of memory\n");
        exit(2);
    }
    snprintf(f->id, sizeof f->id, "%s%s", hex, v1 ? "" : "_f");
    f->v1 = v1;
    f->created_wall = pod_wall_ms();
    f->last_read = now;
    /* The first feed after a gap with none takes the backlog. */
    if (self->backlog.n > 0) {
        f->q = self->backlog;
        memset(&self->backlog, 0, sizeof self->backlog);
    }
    f->next = self->feeds;
    self->feeds = f;
    self->feeds_created++;
    memcpy(id_out, f->id, sizeof f->id);
    pthread_mutex_unlock(&self->mu);
    return POD_OK;
}

char *
pod_state_feeds_json(pod_state_t *self)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&self->mu);
    sweep_locked(self, pod_mono_ms());
    /* The list is kept newest first; report in creation order. */
    size_t n = 0;
    for (feed_t *f = self->feeds; f; f = f->next)
        n++;
    feed_t **v = pod_xrealloc(NULL, n * sizeof *v);
    size_t i = 0;
    for (feed_t *f = self->feeds; f; f = f->next)
        v[i++] = f;
    while (i-- > 0) {
        feed_t *f = v[i];
        if (f->dead || f->v1)
            continue;
        json_array_append_new(arr, json_pack("{s:s,s:s,s:I}", "id", f->id, "type",
                                             f->dh_key ? "datahose" : "fanout", "createdAt",
                                             (json_int_t)f->created_wall));
    }
    free(v);
    pthread_mutex_unlock(&self->mu);
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return s;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void
pod_state_datahose_feed(pod_state_t *self, const char *tag, json_t *types, char id_out[64])
{
    /* The key: the tag, then the sorted, de-duplicated types. */
    size_t n = json_array_size(types), cap = strlen(tag) + 4;
    const char **v = pod_xrealloc(NULL, (n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        v[i] = json_string_value(json_array_get(types, i));
        cap += strlen(v[i]) + 1;
    }
    qsort(v, n, sizeof *v, cmp_str);
    char *key = pod_xrealloc(NULL, cap);
    size_t k = (size_t)snprintf(key, cap, "%s\n,", tag);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || strcmp(v[i], v[i - 1]) != 0)
            k += (size_t)snprintf(key + k, cap - k, "%s,", v[i]);
    free(v);
    char hex[33], suffix[7];
    random_hex(hex, 16);
    random_hex(suffix, 3);
    pthread_mutex_lock(&self->mu);
    sweep_locked(self, pod_mono_ms());
    for (feed_t *f = self->feeds; f; f = f->next) {
        if (!f->dead && f->dh_key && strcmp(f->dh_key, key) == 0) {
            memcpy(id_out, f->id, sizeof f->id);
            pthread_mutex_unlock(&self->mu);
            free(key);
            return;
        }
    }
    feed_t *f = calloc(1, sizeof *f);
    if (!f) {
        fprintf(stderr, "dfpod: out of memory\n");
        exit(2);
    }
    snprintf(f->id, sizeof f->id, "%s_p_%.5s", hex, suffix);
    f->dh_key = key;
    f->dh_types = key + strlen(tag) + 1; /* the tag may hold a newline itself */
    f->created_wall = pod_wall_ms();
    f->last_read = pod_mono_ms();
    f->next = self->feeds;
    self->feeds = f;
    self->feeds_created++;
    memcpy(id_out, f->id, sizeof f->id);
    pthread_mutex_unlock(&self->mu);
}

static feed_t *
find_live_locked(pod_state_t *self, const char *id)
{
    for (feed_t *f = self->feeds; f; f = f->next)
        if (!f->dead && strcmp(f->id, id) == 0)
            return f;
    return NULL;
}

int
pod_state_feed_delete(pod_state_t *self, const char *id)
{
    pthread_mutex_lock(&self->mu);
    sweep_locked(self, pod_mono_ms());
    feed_t *f = find_live_locked(self, id);
    if (f) {
        feed_kill_locked(self, f);
        self->feeds_deleted++;
    }
    pthread_mutex_unlock(&self->mu);
    return f ? POD_OK : POD_ENOFEED;
}

int
pod_state_feed_expire(pod_state_t *self, const char *id)
{
    int n = 0;
    pthread_mutex_lock(&self->mu);
    for (feed_t *f = self->feeds; f; f = f->next) {
        if (!f->dead && (!id || strcmp(f->id, id) == 0)) {
            feed_kill_locked(self, f);
            self->feeds_expired++;
            n++;
        }
    }
    pthread_mutex_unlock(&self->mu);
    return n;
}

/* ackIds look like the real ones: base64 of 12 random bytes, '-', a sequence number. */
static bool
ackid_format_ok(const char *a, size_t len)
{
    if (len > 60 || memchr(a, '\0', len))
        return false;
    const char *dash = strrchr(a, '-');
    if (!dash || dash == a || dash[1] == '\0')
        return false;
    for (const char *p = a; p < dash; p++) {
        char c = *p;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/' || c == '=' || c == '_'))
            return false;
    }
    for (const char *p = dash + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

static void
new_ackid_locked(pod_state_t *self, pod_ackid_t *ack)
{
    char *out = ack->b;
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char r[12];
    if (RAND_bytes(r, sizeof r) != 1)
        memset(r, 0x5a, sizeof r);
    char enc[17];
    for (int i = 0; i < 4; i++) {
        uint32_t v = (uint32_t)r[3 * i] << 16 | (uint32_t)r[3 * i + 1] << 8 | r[3 * i + 2];
        enc[4 * i] = b64[(v >> 18) & 63];
        enc[4 * i + 1] = b64[(v >> 12) & 63];
        enc[4 * i + 2] = b64[(v >> 6) & 63];
        enc[4 * i + 3] = b64[v & 63];
    }
    enc[16] = '\0';
    int n = snprintf(out, sizeof ack->b, "%s-%" PRIu64, enc, ++self->ack_seq);
    ack->len = n > 0 ? (size_t)n : 0;
}

/* A batch's ackId: the one set by POST /admin/next-ackid (once), else a fresh one. */
static void
batch_ackid_locked(pod_state_t *self, pod_ackid_t *ack)
{
    if (self->next_ack.len == 0) {
        new_ackid_locked(self, ack);
        return;
    }
    *ack = self->next_ack;
    self->next_ack.len = 0;
    self->ack_seq++;
}

int
pod_state_set_next_ackid(pod_state_t *self, const char *ack, size_t len)
{
    if (len == 0 || len > 60)
        return -1;
    pthread_mutex_lock(&self->mu);
    memcpy(self->next_ack.b, ack, len);
    self->next_ack.len = len;
    pthread_mutex_unlock(&self->mu);
    return 0;
}

/* Appends the ackId as a JSON string literal (it may hold any byte). */
static void
buf_ackid(buf_t *b, const pod_ackid_t *ack)
{
    buf_adds(b, "\"");
    for (size_t i = 0; i < ack->len; i++) {
        unsigned char c = (unsigned char)ack->b[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            buf_add(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            buf_adds(b, esc);
        } else {
            buf_add(b, (const char *)&c, 1);
        }
    }
    buf_adds(b, "\"");
}

static int64_t
earliest_visible_locked(feed_t *f)
{
    int64_t e = INT64_MAX;
    for (batch_t *b = f->inflight; b; b = b->next)
        if (b->visible_at < e)
            e = b->visible_at;
    return e;
}

/* True if the peer of FD has closed (or reset) its side. Pending data means alive. */
static bool
client_gone(int fd)
{
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r > 0)
        return false;
    if (r == 0)
        return true;
    return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

int
pod_state_read(pod_state_t *self, const char *id, bool v1, const char *ack_in, size_t ack_in_len,
               int client_fd, char **body, size_t *len, pod_ackid_t *ack_out, long *nevents)
{
    *body = NULL;
    *len = 0;
    *nevents = 0;
    ack_out->len = 0;
    pthread_mutex_lock(&self->mu);
    int64_t now = pod_mono_ms();
    sweep_locked(self, now);
    feed_t *f = find_live_locked(self, id);
    if (!f || f->v1 != v1) {
        pthread_mutex_unlock(&self->mu);
        return POD_ENOFEED;
    }
    if (!v1 && ack_in && ack_in_len > 0) {
        /* The exact bytes, NULs included, name the batch. An unknown ackId of a valid
           format acknowledges nothing, like Symphony. */
        batch_t **pb = &f->inflight;
        while (*pb &&
               !((*pb)->ackid.len == ack_in_len && memcmp((*pb)->ackid.b, ack_in, ack_in_len) == 0))
            pb = &(*pb)->next;
        if (*pb) {
            batch_t *b = *pb;
            *pb = b->next;
            self->acked += b->n;
            batch_unref_locked(self, b);
            b->next = NULL;
            batch_free_list(b);
        } else if (!ackid_format_ok(ack_in, ack_in_len)) {
            f->last_read = now;
            pthread_mutex_unlock(&self->mu);
            return POD_EBADACK;
        }
    }
    f->readers++;
    held_t me = {client_fd, false, self->held};
    self->held = &me;
    bool waited = false;
    f->last_read = now;
    int64_t deadline = now + self->cfg->hold_ms;
    buf_t out = {0};
    int rc = POD_OK;
    for (;;) {
        if (f->dead) {
            rc = POD_ENOFEED;
            break;
        }
        /* A client gone during the hold must not take events with it. */
        if (waited && client_fd >= 0 && (me.gone || client_gone(client_fd))) {
            rc = POD_EGONE;
            break;
        }
        batch_t *due = NULL;
        for (batch_t *b = f->inflight; b; b = b->next)
            if (b->visible_at <= now && (!due || b->visible_at < due->visible_at))
                due = b;
        if (due) {
            batch_ackid_locked(self, &due->ackid);
            due->visible_at = now + self->cfg->visibility_ms;
            self->redelivered += due->n;
            self->served += due->n;
            buf_adds(&out, "{\"events\":");
            buf_events_locked(self, &out, due->ev, due->n);
            *nevents = (long)due->n;
            *ack_out = due->ackid;
            break;
        }
        if (f->q.n > 0) {
            size_t n =
                f->q.n < (size_t)self->cfg->batch_max ? f->q.n : (size_t)self->cfg->batch_max;
            const uint32_t *idx = f->q.v + f->q.head;
            if (!v1)
                buf_adds(&out, "{\"events\":");
            buf_events_locked(self, &out, idx, n);
            if (!v1) {
                batch_t *b = calloc(1, sizeof *b);
                if (!b) {
                    fprintf(stderr, "dfpod: out of memory\n");
                    exit(2);
                }
                b->ev = pod_xrealloc(NULL, n * sizeof *b->ev);
                memcpy(b->ev, idx, n * sizeof *b->ev);
                b->n = n;
                b->visible_at = now + self->cfg->visibility_ms;
                batch_ackid_locked(self, &b->ackid);
                *ack_out = b->ackid;
                /* Append so that redeliveries keep the original order. */
                batch_t **pb = &f->inflight;
                while (*pb)
                    pb = &(*pb)->next;
                *pb = b;
            }
            if (v1) /* no ack in v1: served events are gone */
                for (size_t i = 0; i < n; i++)
                    event_unref_locked(self, idx[i]);
            f->q.head += n;
            f->q.n -= n;
            if (f->q.n == 0)
                f->q.head = 0;
            self->served += n;
            *nevents = (long)n;
            break;
        }
        if (now >= deadline || self->stopping) {
            if (!v1) {
                new_ackid_locked(self, ack_out);
                buf_adds(&out, "{\"events\":[]");
            }
            break;
        }
        int64_t wake = deadline;
        int64_t vis = earliest_visible_locked(f);
        if (vis < wake)
            wake = vis;
        if (client_fd >= 0 && now + POD_ALIVE_CHECK_MS < wake)
            wake = now + POD_ALIVE_CHECK_MS;
        struct timespec ts;
        deadline_ts(wake, &ts);
        pthread_cond_timedwait(&self->cv, &self->mu, &ts);
        waited = true;
        now = pod_mono_ms();
    }
    f->readers--;
    for (held_t **ph = &self->held; *ph; ph = &(*ph)->next) {
        if (*ph == &me) {
            *ph = me.next;
            break;
        }
    }
    f->last_read = pod_mono_ms();
    pthread_mutex_unlock(&self->mu);
    if (rc != POD_OK) {
        free(out.p);
        return rc;
    }
    if (!v1) {
        buf_adds(&out, ",\"ackId\":");
        buf_ackid(&out, ack_out);
        buf_adds(&out, "}");
    }
    *body = out.p; /* NULL for an idle v1 read: 204 */
    *len = out.n;
    return POD_OK;
}

/* ---- known streams ---- */

/* The object holding "streamId": SID anywhere in J (borrowed), or NULL. */
static json_t *
stream_in(json_t *j, const char *sid, int depth)
{
    if (depth > 32)
        return NULL;
    if (json_is_object(j)) {
        const char *id = json_string_value(json_object_get(j, "streamId"));
        if (id && strcmp(id, sid) == 0)
            return j;
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v)
        {
            json_t *t = stream_in(v, sid, depth + 1);
            if (t)
                return t;
        }
    } else if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) {
            json_t *t = stream_in(json_array_get(j, i), sid, depth + 1);
            if (t)
                return t;
        }
    }
    return NULL;
}

static bool
contains(const char *hay, size_t hn, const char *needle, size_t nn)
{
    for (size_t i = 0; nn <= hn && i <= hn - nn; i++) {
        const char *p = memchr(hay + i, needle[0], hn - nn - i + 1);
        if (!p)
            return false;
        i = (size_t)(p - hay);
        if (memcmp(p, needle, nn) == 0)
            return true;
    }
    return false;
}

json_t *
pod_state_find_stream(pod_state_t *self, const char *sid)
{
    json_t *found = NULL;
    size_t sl = strlen(sid);
    if (sl == 0)
        return NULL;
    pthread_mutex_lock(&self->mu);
    for (size_t i = self->nevents; i-- > 0 && !found;) {
        const event_t *e = &self->events[i];
        if (!e->raw || !contains(e->raw, e->len, sid, sl))
            continue; /* cheap filter; the parse below confirms */
        json_t *j = json_loadb(e->raw, e->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        json_t *o = j ? stream_in(j, sid, 0) : NULL;
        if (o)
            found = json_deep_copy(o);
        json_decref(j);
    }
    pthread_mutex_unlock(&self->mu);
    return found;
}

/* ---- faults ---- */

static const char *const s_fault_names[POD_FAULT_COUNT] = {
    [POD_FAULT_STATUS] = "status",
    [POD_FAULT_DROP] = "drop",
    [POD_FAULT_TRUNCATE] = "truncate",
    [POD_FAULT_SLOW] = "slow",
    [POD_FAULT_EXPIRE_TOKEN] = "expire_token",
    [POD_FAULT_EXPIRE_FEED] = "expire_feed",
    [POD_FAULT_HUGE_HEADER] = "huge_header",
    [POD_FAULT_NOT_HTTP] = "not_http",
    [POD_FAULT_ECHO] = "echo",
    [POD_FAULT_RETRY_AFTER] = "retry_after",
};

const char *
pod_fault_name(pod_fault_action_t action)
{
    return action >= 0 && action < POD_FAULT_COUNT ? s_fault_names[action] : "?";
}

static int
fault_parse(json_t *o, fault_node_t *n, char *why, size_t whylen)
{
    if (!json_is_object(o)) {
        snprintf(why, whylen, "a fault must be an object");
        return -1;
    }
    const char *ep = json_string_value(json_object_get(o, "endpoint"));
    const char *act = json_string_value(json_object_get(o, "action"));
    int e = ep ? pod_ep_from_name(ep) : -1;
    if (e < 0) {
        snprintf(why, whylen, "unknown endpoint");
        return -1;
    }
    int a = -1;
    for (int i = 0; act && i < POD_FAULT_COUNT; i++)
        if (strcmp(s_fault_names[i], act) == 0)
            a = i;
    if (a < 0) {
        snprintf(why, whylen, "unknown action");
        return -1;
    }
    json_t *st = json_object_get(o, "status"), *cnt = json_object_get(o, "count"),
           *dl = json_object_get(o, "delay_ms"), *bd = json_object_get(o, "body"),
           *cm = json_object_get(o, "commit"), *ra = json_object_get(o, "retry_after");
    if ((st && !json_is_integer(st)) || (cnt && !json_is_integer(cnt)) ||
        (dl && !json_is_integer(dl)) || (ra && !json_is_integer(ra))) {
        snprintf(why, whylen, "status, count, delay_ms and retry_after must be integers");
        return -1;
    }
    if (cm && !json_is_boolean(cm)) {
        snprintf(why, whylen, "commit must be a boolean");
        return -1;
    }
    if (ra && json_integer_value(ra) < 0) {
        snprintf(why, whylen, "retry_after must be >= 0");
        return -1;
    }
    memset(n, 0, sizeof *n);
    n->ep = (pod_ep_t)e;
    n->f.action = (pod_fault_action_t)a;
    n->f.status = st ? (int)json_integer_value(st) : 500;
    if (n->f.action == POD_FAULT_RETRY_AFTER)
        n->f.status = 429;
    /* Outbound endpoints: slow and truncate make the call by default, status and drop not. */
    n->f.commit = cm ? json_is_true(cm)
                     : (n->f.action == POD_FAULT_SLOW || n->f.action == POD_FAULT_TRUNCATE);
    n->f.retry_after = ra ? (long)json_integer_value(ra) : 1;
    if (n->f.action == POD_FAULT_STATUS && (n->f.status < 100 || n->f.status > 599)) {
        snprintf(why, whylen, "status must be 100..599");
        return -1;
    }
    n->count = cnt ? (long)json_integer_value(cnt) : 1;
    if (n->count < 1) {
        snprintf(why, whylen, "count must be >= 1");
        return -1;
    }
    n->f.delay_ms = dl ? json_integer_value(dl) : 1000;
    if (n->f.delay_ms < 0)
        n->f.delay_ms = 0;
    if (bd && !json_is_null(bd))
        n->f.body = json_is_string(bd) ? strdup(json_string_value(bd))
                                       : json_dumps(bd, JSON_COMPACT | JSON_ENCODE_ANY);
    return 0;
}

int
pod_state_faults_add(pod_state_t *self, json_t *spec, char *why, size_t whylen)
{
    size_t n = json_is_array(spec) ? json_array_size(spec) : 1;
    fault_node_t *parsed = pod_xrealloc(NULL, n * sizeof *parsed);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_is_array(spec) ? json_array_get(spec, i) : spec;
        if (fault_parse(o, &parsed[i], why, whylen) != 0) {
            for (size_t j = 0; j < i; j++)
                free(parsed[j].f.body);
            free(parsed);
            return -1;
        }
    }
    pthread_mutex_lock(&self->mu);
    fault_node_t **tail = &self->faults;
    while (*tail)
        tail = &(*tail)->next;
    for (size_t i = 0; i < n; i++) {
        fault_node_t *node = pod_xrealloc(NULL, sizeof *node);
        *node = parsed[i];
        node->next = NULL;
        *tail = node;
        tail = &node->next;
    }
    pthread_mutex_unlock(&self->mu);
    free(parsed);
    return 0;
}

void
pod_state_faults_clear(pod_state_t *self)
{
    pthread_mutex_lock(&self->mu);
    fault_node_t *n = self->faults;
    self->faults = NULL;
    pthread_mutex_unlock(&self->mu);
    while (n) {
        fault_node_t *next = n->next;
        free(n->f.body);
        free(n);
        n = next;
    }
}

bool
pod_state_fault_take(pod_state_t *self, pod_ep_t ep, pod_fault_t *out)
{
    bool taken = false;
    pthread_mutex_lock(&self->mu);
    for (fault_node_t **pn = &self->faults; *pn; pn = &(*pn)->next) {
        fault_node_t *n = *pn;
        if (n->ep != ep && n->ep != POD_EP_ANY)
            continue;
        *out = n->f;
        out->body = n->f.body ? strdup(n->f.body) : NULL;
        if (--n->count == 0) {
            *pn = n->next;
            free(n->f.body);
            free(n);
        }
        self->faults_applied++;
        taken = true;
        break;
    }
    pthread_mutex_unlock(&self->mu);
    return taken;
}

/* ---- call log and counters ---- */

/* jansson refuses invalid UTF-8: such bytes become '?' so that the log stays JSON. */
static json_t *
json_string_lossy(const char *s, size_t n)
{
    json_t *j = json_stringn(s ? s : "", s ? n : 0);
    if (j)
        return j;
    char *copy = pod_xrealloc(NULL, n + 1);
    for (size_t i = 0; i < n; i++)
        copy[i] = (unsigned char)s[i] < 0x80 && s[i] != '\0' ? s[i] : '?';
    copy[n] = '\0';
    j = json_stringn(copy, n);
    free(copy);
    return j;
}

void
pod_state_log_call(pod_state_t *self, const pod_call_t *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "seq", json_integer(0)); /* filled under the lock */
    json_object_set_new(o, "endpoint", json_string(pod_ep_name(c->ep)));
    json_object_set_new(o, "method", json_string_lossy(c->method, strlen(c->method)));
    json_object_set_new(o, "path", json_string_lossy(c->path, strlen(c->path)));
    json_object_set_new(o, "status", json_integer(c->status));
    json_object_set_new(o, "body", json_string_lossy(c->body, c->body_len));
    if (c->feed)
        json_object_set_new(o, "feed", json_string_lossy(c->feed, strlen(c->feed)));
    if (c->ack_in)
        json_object_set_new(o, "ackIdIn", json_string_lossy(c->ack_in, c->ack_in_len));
    if (c->ack_out)
        json_object_set_new(o, "ackId", json_string_lossy(c->ack_out, c->ack_out_len));
    if (c->events >= 0)
        json_object_set_new(o, "events", json_integer(c->events));
    if (c->fault)
        json_object_set_new(o, "fault", json_string(c->fault));
    if (c->gone)
        json_object_set_new(o, "gone", json_true());
    if (c->headers)
        json_object_set(o, "headers", c->headers);
    if (c->client_cn)
        json_object_set_new(o, "clientCn", json_string_lossy(c->client_cn, strlen(c->client_cn)));
    json_object_set_new(o, "ms", json_integer(c->wall_ms));

    pthread_mutex_lock(&self->mu);
    json_object_set_new(o, "seq", json_integer((json_int_t)++self->call_seq));
    char *s = json_dumps(o, JSON_COMPACT);
    if (self->ncalls == self->capcalls) {
        self->capcalls = self->capcalls ? self->capcalls * 2 : 64;
        self->calls = pod_xrealloc(self->calls, self->capcalls * sizeof *self->calls);
    }
    self->calls[self->ncalls++].json = s;
    self->calls_by_ep[c->ep]++;
    if (c->status > 0 && c->status < 600)
        self->status_count[c->status]++;
    pthread_mutex_unlock(&self->mu);
    json_decref(o);
}

char *
pod_state_calls_json(pod_state_t *self)
{
    buf_t b = {0};
    pthread_mutex_lock(&self->mu);
    buf_adds(&b, "[");
    for (size_t i = 0; i < self->ncalls; i++) {
        if (i)
            buf_adds(&b, ",");
        if (self->calls[i].json)
            buf_adds(&b, self->calls[i].json);
        else
            buf_adds(&b, "null");
    }
    buf_adds(&b, "]");
    pthread_mutex_unlock(&self->mu);
    return b.p;
}

void
pod_state_calls_clear(pod_state_t *self)
{
    pthread_mutex_lock(&self->mu);
    for (size_t i = 0; i < self->ncalls; i++)
        free(self->calls[i].json);
    self->ncalls = 0;
    pthread_mutex_unlock(&self->mu);
}

char *
pod_state_counters_json(pod_state_t *self)
{
    json_t *o = json_object(), *calls = json_object(), *status = json_object();
    pthread_mutex_lock(&self->mu);
    sweep_locked(self, pod_mono_ms());
    for (int i = 0; i < POD_EP_COUNT; i++)
        if (i != POD_EP_ANY)
            json_object_set_new(calls, ep_names[i], json_integer((json_int_t)self->calls_by_ep[i]));
    for (int i = 0; i < 600; i++) {
        if (self->status_count[i]) {
            char k[8];
            snprintf(k, sizeof k, "%d", i);
            json_object_set_new(status, k, json_integer((json_int_t)self->status_count[i]));
        }
    }
    uint64_t queued = self->backlog.n, inflight = 0;
    for (feed_t *f = self->feeds; f; f = f->next) {
        if (f->dead)
            continue;
        queued += f->q.n;
        for (batch_t *b = f->inflight; b; b = b->next)
            inflight += b->n;
    }
#define SETI(name, v) json_object_set_new(o, name, json_integer((json_int_t)(v)))
    json_object_set_new(o, "calls", calls);
    json_object_set_new(o, "status", status);
    SETI("enqueued", self->enqueued);
    SETI("served", self->served);
    SETI("acked", self->acked);
    SETI("redelivered", self->redelivered);
    SETI("feeds_created", self->feeds_created);
    SETI("feeds_deleted", self->feeds_deleted);
    SETI("feeds_expired", self->feeds_expired);
    SETI("auth_ok", self->auth_ok);
    SETI("auth_failed", self->auth_failed);
    SETI("faults_applied", self->faults_applied);
    SETI("live_feeds", live_feeds_locked(self, -1));
    SETI("pending", queued + inflight);
    SETI("inflight", inflight);
    SETI("backlog", self->backlog.n);
    /* Count only reads whose client is still there, and wake those that are not. */
    int held = 0;
    for (held_t *h = self->held; h; h = h->next) {
        if (!h->gone && h->fd >= 0 && client_gone(h->fd)) {
            h->gone = true;
            pthread_cond_broadcast(&self->cv);
        }
        held += !h->gone;
    }
    SETI("reads_held", held);
    SETI("held", held); /* alias: the end-to-end tests use this name */
#undef SETI
    pthread_mutex_unlock(&self->mu);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}
