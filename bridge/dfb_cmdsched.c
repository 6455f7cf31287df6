/*  dfb_cmdsched: the command channel's scheduler (see dfb_cmdsched.h). The
    waiting requests are one list in arrival order; a scan picks the first
    that may go. Streams are a small table of their own (what is waiting
    or in flight, and the last dispatch), pruned once a stream is idle and
    its spacing has passed: memory is bounded by the queue and the
    executors. The queue is at most a few thousand, the scan is cheap at
    the channel's rates (tens per second). */
#include "dfb_cmdsched.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct stream {
    char id[256];
    size_t waiting;   /* jobs of this stream in the queue */
    int inflight;     /* one of its jobs is with an executor */
    int64_t last_ms;  /* when its last job finished (or was dispatched, while in flight);
                         INT64_MIN: none */
    uint64_t scan;    /* the scan that met it first (FIFO: later ones of it wait) */
    struct stream *next;
} stream_t;

typedef struct job {
    void *job;
    stream_t *stream; /* NULL: not a posting request */
    struct job *prev, *next;
} job_t;

struct dfb_cmdsched {
    dfb_cmdsched_opts_t o;
    double tokens, burst;
    int64_t refill_ms; /* the bucket's last refill; INT64_MIN: full */
    int64_t spacing_ms;
    job_t *head, *tail;
    size_t queued, inflight;
    stream_t *streams;
    uint64_t scan;
};

dfb_cmdsched_t *
dfb_cmdsched_new(const dfb_cmdsched_opts_t *o)
{
    dfb_cmdsched_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->o = *o;
    if (self->o.queue < 1)
        self->o.queue = 1;
    if (self->o.executors < 1)
        self->o.executors = 1;
    self->burst = o->rate > 0 ? ceil(o->rate) : 0;
    self->tokens = self->burst;
    self->refill_ms = INT64_MIN;
    self->spacing_ms = o->stream_rate > 0 ? (int64_t)ceil(1000.0 / o->stream_rate) : 0;
    return self;
}

void
dfb_cmdsched_destroy(dfb_cmdsched_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_cmdsched_t *self = *self_p;
    while (self->head)
        dfb_cmdsched_pop(self);
    while (self->streams) {
        stream_t *s = self->streams;
        self->streams = s->next;
        free(s);
    }
    free(self);
    *self_p = NULL;
}

static stream_t *
stream_find(dfb_cmdsched_t *self, const char *id)
{
    for (stream_t *s = self->streams; s; s = s->next)
        if (strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

/*  Forgets the streams that constrain nothing any more. */
static void
stream_prune(dfb_cmdsched_t *self, int64_t now_ms)
{
    for (stream_t **p = &self->streams; *p;) {
        stream_t *s = *p;
        if (!s->waiting && !s->inflight &&
            (s->last_ms == INT64_MIN || now_ms - s->last_ms >= self->spacing_ms)) {
            *p = s->next;
            free(s);
        } else {
            p = &s->next;
        }
    }
}

int
dfb_cmdsched_push(dfb_cmdsched_t *self, void *job, const char *stream, int64_t now_ms,
                  int64_t *retry_after_ms)
{
    if (self->queued >= self->o.queue) {
        /* The time the queue needs: its length at the global rate, or a
           guess of 100 ms per executor round without one. */
        double ms = self->o.rate > 0 ? (double)self->queued * 1000.0 / self->o.rate
                                     : 100.0 * (double)self->queued / self->o.executors;
        *retry_after_ms = ms < 100 ? 100 : (int64_t)ceil(ms);
        return -1;
    }
    job_t *j = calloc(1, sizeof *j);
    if (!j) {
        *retry_after_ms = 100;
        return -1;
    }
    if (stream) {
        stream_t *s = stream_find(self, stream);
        if (!s) {
            stream_prune(self, now_ms);
            if (!(s = calloc(1, sizeof *s))) {
                free(j);
                *retry_after_ms = 100;
                return -1;
            }
            size_t n = strlen(stream);
            n = n < sizeof s->id - 1 ? n : sizeof s->id - 1;
            memcpy(s->id, stream, n);
            s->last_ms = INT64_MIN;
            s->next = self->streams;
            self->streams = s;
        }
        s->waiting++;
        j->stream = s;
    }
    j->job = job;
    j->prev = self->tail;
    if (self->tail)
        self->tail->next = j;
    else
        self->head = j;
    self->tail = j;
    self->queued++;
    return 0;
}

static void
unlink_job(dfb_cmdsched_t *self, job_t *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        self->head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        self->tail = j->prev;
    self->queued--;
    if (j->stream)
        j->stream->waiting--;
}

void *
dfb_cmdsched_next(dfb_cmdsched_t *self, int64_t now_ms, int64_t *wait_ms)
{
    *wait_ms = -1;
    if (self->o.rate > 0) {
        if (self->refill_ms != INT64_MIN && now_ms > self->refill_ms) {
            self->tokens += (double)(now_ms - self->refill_ms) * self->o.rate / 1000.0;
            if (self->tokens > self->burst)
                self->tokens = self->burst;
        }
        if (self->refill_ms == INT64_MIN || now_ms > self->refill_ms)
            self->refill_ms = now_ms;
    }
    if (self->inflight >= (size_t)self->o.executors)
        return NULL; /* wait for dfb_cmdsched_done */
    uint64_t scan = ++self->scan;
    int64_t wait = -1;
    for (job_t *j = self->head; j; j = j->next) {
        stream_t *s = j->stream;
        if (s) {
            int first = s->scan != scan;
            s->scan = scan;
            if (!first || s->inflight)
                continue; /* FIFO per stream; one in flight per stream */
            if (self->spacing_ms && s->last_ms != INT64_MIN &&
                now_ms - s->last_ms < self->spacing_ms) {
                int64_t w = s->last_ms + self->spacing_ms - now_ms;
                if (wait < 0 || w < wait)
                    wait = w;
                continue;
            }
        }
        if (self->o.rate > 0 && self->tokens < 1.0 - 1e-9) {
            /* The order is kept: the first that may go waits for a token. */
            int64_t w = (int64_t)ceil((1.0 - self->tokens) * 1000.0 / self->o.rate - 1e-6);
            *wait_ms = w < 1 ? 1 : w;
            return NULL;
        }
        if (self->o.rate > 0)
            self->tokens -= 1.0;
        unlink_job(self, j);
        if (s) {
            s->inflight = 1;
            s->last_ms = now_ms;
        }
        self->inflight++;
        void *job = j->job;
        free(j);
        return job;
    }
    *wait_ms = wait;
    return NULL;
}

void
dfb_cmdsched_done(dfb_cmdsched_t *self, const char *stream, int64_t now_ms)
{
    if (self->inflight > 0)
        self->inflight--;
    stream_t *s = stream ? stream_find(self, stream) : NULL;
    if (s) {
        s->inflight = 0;
        s->last_ms = now_ms;
    }
}

void *
dfb_cmdsched_pop(dfb_cmdsched_t *self)
{
    job_t *j = self->head;
    if (!j)
        return NULL;
    unlink_job(self, j);
    void *job = j->job;
    free(j);
    return job;
}

size_t
dfb_cmdsched_queued(const dfb_cmdsched_t *self)
{
    return self->queued;
}

size_t
dfb_cmdsched_inflight(const dfb_cmdsched_t *self)
{
    return self->inflight;
}

/* ---- self-test ------------------------------------------------------------- */

#include <stdio.h>

#include "df_check.h"

/*  Jobs are small integers cast to pointers (never 0). */
#define J(n) ((void *)(uintptr_t)(n))
#define N(p) ((int)(uintptr_t)(p))

int
dfb_cmdsched_test(int verbose)
{
    int failures = df_check_failures;
    int64_t w, ra;
    /* Global rate 2/s (burst 2), no stream limit, 8 executors: 2 at once,
       then one every 500 ms; the wait says when. */
    {
        dfb_cmdsched_opts_t o = {.rate = 2, .stream_rate = 0, .queue = 10, .executors = 8};
        dfb_cmdsched_t *s = dfb_cmdsched_new(&o);
        for (int i = 1; i <= 5; i++)
            CHECK(dfb_cmdsched_push(s, J(i), NULL, 1000, &ra) == 0);
        CHECK_EQ(dfb_cmdsched_queued(s), 5);
        CHECK_EQ(N(dfb_cmdsched_next(s, 1000, &w)), 1);
        CHECK_EQ(N(dfb_cmdsched_next(s, 1000, &w)), 2);
        CHECK(dfb_cmdsched_next(s, 1000, &w) == NULL);
        CHECK_EQ(w, 500);
        CHECK(dfb_cmdsched_next(s, 1499, &w) == NULL);
        CHECK_EQ(w, 1);
        CHECK_EQ(N(dfb_cmdsched_next(s, 1500, &w)), 3);
        CHECK(dfb_cmdsched_next(s, 1500, &w) == NULL && w == 500);
        /* A long idle time refills to the burst only. */
        CHECK_EQ(N(dfb_cmdsched_next(s, 9000, &w)), 4);
        CHECK_EQ(N(dfb_cmdsched_next(s, 9000, &w)), 5);
        CHECK(dfb_cmdsched_next(s, 9000, &w) == NULL && w == -1); /* nothing waits */
        CHECK_EQ(dfb_cmdsched_inflight(s), 5);
        for (int i = 0; i < 5; i++)
            dfb_cmdsched_done(s, NULL, 9000);
        CHECK_EQ(dfb_cmdsched_inflight(s), 0);
        for (int i = 6; i <= 8; i++)
            CHECK(dfb_cmdsched_push(s, J(i), NULL, 9000, &ra) == 0);
        CHECK(dfb_cmdsched_next(s, 9000, &w) == NULL && w == 500); /* the bucket is empty */
        CHECK_EQ(N(dfb_cmdsched_next(s, 9500, &w)), 6);
        dfb_cmdsched_destroy(&s); /* 7 and 8 still wait: freed */
        CHECK(s == NULL);
        if (verbose)
            printf("  global rate: burst 2 then one per 500 ms, in order\n");
    }
    /* Fractional rate 0.5/s: burst 1, one every 2000 ms. */
    {
        dfb_cmdsched_opts_t o = {.rate = 0.5, .queue = 10, .executors = 4};
        dfb_cmdsched_t *s = dfb_cmdsched_new(&o);
        for (int i = 1; i <= 3; i++)
            dfb_cmdsched_push(s, J(i), NULL, 0, &ra);
        CHECK_EQ(N(dfb_cmdsched_next(s, 0, &w)), 1);
        CHECK(dfb_cmdsched_next(s, 0, &w) == NULL && w == 2000);
        CHECK(dfb_cmdsched_next(s, 1000, &w) == NULL && w == 1000);
        CHECK_EQ(N(dfb_cmdsched_next(s, 2000, &w)), 2);
        dfb_cmdsched_destroy(&s);
    }
    /* Per stream: 2/s (500 ms spacing), FIFO per stream, one in flight per
       stream; two streams do not wait for each other; a non-posting
       request passes a waiting stream. No global limit. */
    {
        dfb_cmdsched_opts_t o = {.rate = 0, .stream_rate = 2, .queue = 10, .executors = 8};
        dfb_cmdsched_t *s = dfb_cmdsched_new(&o);
        CHECK(dfb_cmdsched_push(s, J(1), "A", 0, &ra) == 0);
        CHECK(dfb_cmdsched_push(s, J(2), "A", 0, &ra) == 0);
        CHECK(dfb_cmdsched_push(s, J(3), "B", 0, &ra) == 0);
        CHECK(dfb_cmdsched_push(s, J(4), "A", 0, &ra) == 0);
        CHECK(dfb_cmdsched_push(s, J(5), NULL, 0, &ra) == 0);
        CHECK_EQ(N(dfb_cmdsched_next(s, 0, &w)), 1); /* A */
        CHECK_EQ(N(dfb_cmdsched_next(s, 0, &w)), 3); /* B: not behind A */
        CHECK_EQ(N(dfb_cmdsched_next(s, 0, &w)), 5); /* not a posting request */
        CHECK(dfb_cmdsched_next(s, 0, &w) == NULL);
        CHECK_EQ(w, -1); /* A and B in flight: only a done can help */
        dfb_cmdsched_done(s, "A", 50); /* A's first took 50 ms */
        CHECK(dfb_cmdsched_next(s, 100, &w) == NULL);
        CHECK_EQ(w, 450); /* A's spacing: 500 ms after its first finished at 50 */
        CHECK(dfb_cmdsched_next(s, 549, &w) == NULL && w == 1);
        CHECK_EQ(N(dfb_cmdsched_next(s, 550, &w)), 2); /* A's second, in order */
        CHECK(dfb_cmdsched_next(s, 550, &w) == NULL && w == -1);
        /* In flight longer than the spacing: the next waits for the done,
           then the spacing again. */
        CHECK(dfb_cmdsched_next(s, 1500, &w) == NULL && w == -1);
        dfb_cmdsched_done(s, "A", 1500);
        CHECK(dfb_cmdsched_next(s, 1600, &w) == NULL && w == 400);
        CHECK_EQ(N(dfb_cmdsched_next(s, 2000, &w)), 4);
        dfb_cmdsched_done(s, "A", 2010);
        dfb_cmdsched_done(s, "B", 10);
        dfb_cmdsched_done(s, NULL, 10);
        CHECK_EQ(dfb_cmdsched_inflight(s), 0);
        /* B's last finished at 10: free to go at 2010. */
        CHECK(dfb_cmdsched_push(s, J(6), "B", 2010, &ra) == 0);
        CHECK_EQ(N(dfb_cmdsched_next(s, 2010, &w)), 6);
        dfb_cmdsched_destroy(&s);
        if (verbose)
            printf("  per stream: 500 ms after the previous one finished, FIFO, one in flight, "
                   "streams independent\n");
    }
    /* Executors: 2; both in flight: nothing goes until a done. */
    {
        dfb_cmdsched_opts_t o = {.rate = 0, .stream_rate = 0, .queue = 10, .executors = 2};
        dfb_cmdsched_t *s = dfb_cmdsched_new(&o);
        for (int i = 1; i <= 3; i++)
            dfb_cmdsched_push(s, J(i), NULL, 0, &ra);
        CHECK_EQ(N(dfb_cmdsched_next(s, 0, &w)), 1);
        CHECK_EQ(N(dfb_cmdsched_next(s, 0, &w)), 2);
        CHECK(dfb_cmdsched_next(s, 0, &w) == NULL && w == -1);
        dfb_cmdsched_done(s, NULL, 0);
        CHECK_EQ(N(dfb_cmdsched_next(s, 0, &w)), 3);
        dfb_cmdsched_destroy(&s);
    }
    /* Queue full: busy with the expected time; the queue takes more once
       one left; pop drains in order. */
    {
        dfb_cmdsched_opts_t o = {.rate = 10, .stream_rate = 2, .queue = 3, .executors = 1};
        dfb_cmdsched_t *s = dfb_cmdsched_new(&o);
        for (int i = 1; i <= 3; i++)
            CHECK(dfb_cmdsched_push(s, J(i), i == 2 ? "S" : NULL, 0, &ra) == 0);
        ra = 0;
        CHECK(dfb_cmdsched_push(s, J(4), NULL, 0, &ra) == -1);
        CHECK_EQ(ra, 300); /* 3 waiting at 10/s */
        CHECK_EQ(dfb_cmdsched_queued(s), 3);
        CHECK_EQ(N(dfb_cmdsched_next(s, 0, &w)), 1);
        CHECK(dfb_cmdsched_push(s, J(4), NULL, 0, &ra) == 0);
        CHECK_EQ(N(dfb_cmdsched_pop(s)), 2);
        CHECK_EQ(N(dfb_cmdsched_pop(s)), 3);
        CHECK_EQ(N(dfb_cmdsched_pop(s)), 4);
        CHECK(dfb_cmdsched_pop(s) == NULL);
        CHECK_EQ(dfb_cmdsched_queued(s), 0);
        /* A small queue at a high rate: at least 100 ms. */
        dfb_cmdsched_destroy(&s);
        dfb_cmdsched_opts_t o2 = {.rate = 1000, .queue = 1, .executors = 1};
        s = dfb_cmdsched_new(&o2);
        dfb_cmdsched_push(s, J(1), NULL, 0, &ra);
        CHECK(dfb_cmdsched_push(s, J(2), NULL, 0, &ra) == -1 && ra == 100);
        dfb_cmdsched_destroy(&s);
        if (verbose)
            printf("  queue full: busy, retry_after_ms from the rate (>= 100)\n");
    }
    /* Streams are forgotten once idle and past their spacing: 1000 streams
       in turn leave a bounded table. */
    {
        dfb_cmdsched_opts_t o = {.rate = 0, .stream_rate = 2, .queue = 4, .executors = 4};
        dfb_cmdsched_t *s = dfb_cmdsched_new(&o);
        char id[32];
        for (int i = 0; i < 1000; i++) {
            snprintf(id, sizeof id, "s%d", i);
            CHECK(dfb_cmdsched_push(s, J(i + 1), id, (int64_t)i * 600, &ra) == 0);
            CHECK_EQ(N(dfb_cmdsched_next(s, (int64_t)i * 600, &w)), i + 1);
            dfb_cmdsched_done(s, id, (int64_t)i * 600 + 10);
        }
        size_t n = 0;
        for (stream_t *t = s->streams; t; t = t->next)
            n++;
        CHECK(n <= 2);
        dfb_cmdsched_destroy(&s);
    }
    return df_check_failures - failures;
}
