/*  dfc_pool: the worker pool. Bounded job queues (one shared, or one per worker in STREAM
    order), worker threads that run one (event, listener) job at a time with the
    listener context set, and the listener reference counts that let unsubscribe wait. */

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "dfc_loop_priv.h"

_Thread_local lrec_t *dfc_tl_listener;

void
dfc_lrec_unref(lrec_t *lr)
{
    if (atomic_fetch_sub(&lr->refs, 1) == 1)
        free(lr);
}

bool
dfc_lrec_enter(dfc_loop_t *loop, lrec_t *lr)
{
    atomic_fetch_add(&lr->running, 1);
    if (!atomic_load(&lr->removed))
        return true;
    dfc_lrec_leave(loop, lr);
    return false;
}

void
dfc_lrec_leave(dfc_loop_t *loop, lrec_t *lr)
{
    /* removed is read after the decrement: an unsubscribe that saw us
       running set it before, and waits under mu (so the broadcast, under
       mu, cannot come between its check and its wait) */
    if (atomic_fetch_sub(&lr->running, 1) == 1 && atomic_load(&lr->removed)) {
        pthread_mutex_lock(&loop->mu);
        pthread_cond_broadcast(&loop->idle);
        pthread_mutex_unlock(&loop->mu);
    }
}

static void
run_job(dfc_loop_t *loop, const worker_t *w, const job_t *job)
{
    lrec_t *lr = job->lr;
    if (dfc_lrec_enter(loop, lr)) {
        dfc_tl_listener = lr;
        dfc_context_set(w->name, dfc_event_id(job->ev), lr->id);
        dfc_event_dispatch(job->ev, &lr->l);
        dfc_context_clear();
        dfc_tl_listener = NULL;
        dfc_lrec_leave(loop, lr);
        STAT_ADD(loop, completed, 1);
    } else {
        STAT_ADD(loop, skipped, 1);
    }
    dfc_lrec_unref(lr);
    if (job->trk)
        dfc_track_release(loop, job->trk);
    dfc_event_unref(job->ev); /* may free: outside the locks */
}

/*  A worker takes one job per lock: a listener may block, and a job taken
    is a job no other worker can run (and no longer counts against the
    queue's bound). The receiver hands jobs over in batches, so this lock is
    rarely contended. */
static void *
worker_main(void *arg)
{
    worker_t *w = arg;
    dfc_loop_t *loop = w->loop;
    wqueue_t *wq = &loop->qs[loop->nq == 1 ? 0 : w->index];
    size_t qsize = loop->cfg.queue_size;
    for (;;) {
        pthread_mutex_lock(&wq->mu);
        while (wq->len == 0 && !atomic_load(&loop->quit)) {
            wq->idle++;
            pthread_cond_wait(&wq->not_empty, &wq->mu);
            wq->idle--;
        }
        if (wq->len == 0) {
            pthread_mutex_unlock(&wq->mu);
            break; /* quit and drained */
        }
        job_t job = wq->q[wq->head];
        wq->head = wq->head + 1 == qsize ? 0 : wq->head + 1;
        wq->len--;
        if (wq->full_wait)
            pthread_cond_broadcast(&wq->not_full);
        if (wq->len > 0 && wq->idle > 0) /* the receiver woke one: pass it on */
            pthread_cond_signal(&wq->not_empty);
        pthread_mutex_unlock(&wq->mu);
        run_job(loop, w, &job);
    }
    return NULL;
}

/*  A job that was staged but will not be queued (stop while waiting for
    room): counted, its watermark record failed, its references dropped. */
static void
drop_staged(dfc_loop_t *loop, const job_t *job)
{
    STAT_ADD(loop, dropped_at_stop, 1);
    if (job->trk) {
        dfc_track_fail(loop, job->trk); /* not handled: the checkpoint must not pass it */
        dfc_track_release(loop, job->trk);
    }
    dfc_lrec_unref(job->lr);
    dfc_event_unref(job->ev);
}

/*  Moves queue qi's staged jobs into it, waiting while it is full
    (back-pressure: the SUB socket then fills up to its RCVHWM). Takes the
    queue's lock only. */
static bool
flush_queue(dfc_loop_t *loop, wqueue_t *wq)
{
    size_t qsize = loop->cfg.queue_size, done = 0;
    bool ok = true;
    if (wq->nstage == 0)
        return true;
    pthread_mutex_lock(&wq->mu);
    while (done < wq->nstage) {
        if (wq->len == qsize) {
            STAT_ADD(loop, queue_waits, 1);
            if (wq->idle > 0) /* what we queued so far must run before room appears */
                pthread_cond_broadcast(&wq->not_empty);
            /* Full: wait for room. stop cannot signal a condvar (it must be
               async-signal-safe), so the flag is polled every 50 ms; once we
               had to wait, a stop wins even if room appears at the same time. */
            while (!atomic_load(&loop->stop_req) && wq->len == qsize) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 50 * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                wq->full_wait = true;
                pthread_cond_timedwait(&wq->not_full, &wq->mu, &ts);
                wq->full_wait = false;
            }
            if (atomic_load(&loop->stop_req)) {
                ok = false;
                break;
            }
        }
        size_t room = qsize - wq->len, n = wq->nstage - done;
        if (n > room)
            n = room;
        for (size_t i = 0; i < n; i++) {
            size_t at = wq->head + wq->len;
            wq->q[at >= qsize ? at - qsize : at] = wq->stage[done + i];
            wq->len++;
        }
        done += n;
        STAT_ADD(loop, dispatched, n);
    }
    if (wq->len > 0 && wq->idle > 0) /* one; it wakes the next if more is left */
        pthread_cond_signal(&wq->not_empty);
    /* the room seen now is there at the next flush too (only workers take):
       staging never holds more than fits, so the bound is the queue's */
    wq->stage_room = qsize - wq->len < STAGE_MAX ? qsize - wq->len : STAGE_MAX;
    pthread_mutex_unlock(&wq->mu);
    for (size_t i = done; i < wq->nstage; i++)
        drop_staged(loop, &wq->stage[i]);
    wq->nstage = 0;
    return ok;
}

bool
dfc_pool_flush(dfc_loop_t *loop)
{
    bool ok = true;
    for (int i = 0; i < loop->nq; i++)
        ok = flush_queue(loop, &loop->qs[i]) && ok;
    return ok;
}

bool
dfc_pool_enqueue(dfc_loop_t *loop, int qi, dfc_event_t *ev, lrec_t *lr, track_t *trk)
{
    wqueue_t *wq = &loop->qs[qi];
    dfc_event_ref(ev);
    if (trk)
        dfc_track_hold(loop, trk);
    wq->stage[wq->nstage++] = (job_t){ev, lr, trk};
    /* as many as the queue had room for: hand them over now, so that the
       receiver waits (and stops reading) exactly when the queue is full */
    if (wq->nstage >= wq->stage_room && !flush_queue(loop, wq))
        return false;
    return true;
}

int
dfc_pool_start(dfc_loop_t *loop, worker_t **workers_p, int *n_p)
{
    *n_p = 0;
    worker_t *workers = calloc((size_t)loop->cfg.workers, sizeof *workers);
    *workers_p = workers;
    if (!workers) {
        dfc_log(DFC_LOG_ERROR, "cannot start: out of memory");
        return DFC_ENOMEM;
    }
    atomic_store(&loop->quit, false);
    for (int i = 0; i < loop->nq; i++) {
        wqueue_t *wq = &loop->qs[i];
        wq->stage_room = loop->cfg.queue_size < STAGE_MAX ? loop->cfg.queue_size : STAGE_MAX;
    }
    for (int i = 0; i < loop->cfg.workers; i++) {
        worker_t *w = &workers[i];
        w->loop = loop;
        w->index = i;
        snprintf(w->name, sizeof w->name, "worker-%d", i + 1);
        if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
            dfc_log(DFC_LOG_ERROR, "cannot start worker %d", i + 1);
            return DFC_ENOMEM;
        }
        *n_p = i + 1;
    }
    return DFC_OK;
}

void
dfc_pool_stop(dfc_loop_t *loop, worker_t *workers, int n)
{
    /* let the workers run what is queued, then join them */
    dfc_pool_flush(loop);
    atomic_store(&loop->quit, true);
    for (int i = 0; i < loop->nq; i++) { /* under the lock: no worker misses it */
        pthread_mutex_lock(&loop->qs[i].mu);
        pthread_cond_broadcast(&loop->qs[i].not_empty);
        pthread_mutex_unlock(&loop->qs[i].mu);
    }
    for (int i = 0; i < n; i++)
        pthread_join(workers[i].tid, NULL);
    free(workers);
}

bool
dfc_loop_receiver_waits(dfc_loop_t *loop)
{
    bool waits = false;
    for (int i = 0; i < loop->nq && !waits; i++) {
        pthread_mutex_lock(&loop->qs[i].mu);
        waits = loop->qs[i].full_wait; /* true only inside the timed wait */
        pthread_mutex_unlock(&loop->qs[i].mu);
    }
    return waits;
}
