/*  dfc_pool: the worker pool. Bounded job queues (one shared, or one per worker in STREAM
    order), worker threads that run one (event, listener) job at a time with the
    listener context set, and the listener reference counts that let unsubscribe wait. */

#include <stdlib.h>
#include <time.h>

#include "dfc_loop_priv.h"

_Thread_local lrec_t *dfc_tl_listener;

/* Under mu. */
void
dfc_lrec_unref(lrec_t *lr)
{
    if (--lr->refs == 0)
        free(lr);
}

static void *
worker_main(void *arg)
{
    worker_t *w = arg;
    dfc_loop_t *loop = w->loop;
    wqueue_t *wq = &loop->qs[loop->nq == 1 ? 0 : w->index];
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
        wq->head = (wq->head + 1) % loop->cfg.queue_size;
        wq->len--;
        if (wq->full_wait)
            pthread_cond_broadcast(&wq->not_full);
        pthread_mutex_unlock(&wq->mu);

        lrec_t *lr = job.lr;
        pthread_mutex_lock(&loop->mu);
        bool run = !lr->removed;
        if (run)
            lr->running++;
        pthread_mutex_unlock(&loop->mu);
        if (run) {
            dfc_tl_listener = lr;
            dfc_context_set(w->name, dfc_event_id(job.ev), lr->id);
            dfc_event_dispatch(job.ev, &lr->l);
            dfc_context_clear();
            dfc_tl_listener = NULL;
            STAT_ADD(loop, completed, 1);
        } else {
            STAT_ADD(loop, skipped, 1);
        }
        pthread_mutex_lock(&loop->mu);
        if (run && --lr->running == 0)
            pthread_cond_broadcast(&loop->idle);
        dfc_lrec_unref(lr);
        pthread_mutex_unlock(&loop->mu);
        if (job.trk)
            dfc_track_release(loop, job.trk);
        dfc_event_unref(job.ev); /* may free: outside the locks */
    }
    return NULL;
}

/*  Queues one job on queue qi, waiting while it is full (back-pressure: the
    SUB socket then fills up to its RCVHWM). The caller gave the job its
    listener reference; this takes one on ev and on trk. Returns false when
    stop was requested while waiting (nothing queued). Takes the queue's
    lock only. */
bool
dfc_pool_enqueue(dfc_loop_t *loop, int qi, dfc_event_t *ev, lrec_t *lr, track_t *trk)
{
    wqueue_t *wq = &loop->qs[qi];
    pthread_mutex_lock(&wq->mu);
    if (wq->len == loop->cfg.queue_size) {
        STAT_ADD(loop, queue_waits, 1);
        /* Full: wait for room. stop cannot signal a condvar (it must be
           async-signal-safe), so the flag is polled every 50 ms; once we had
           to wait, a stop wins even if room appears at the same time. */
        while (!atomic_load(&loop->stop_req) && wq->len == loop->cfg.queue_size) {
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
            pthread_mutex_unlock(&wq->mu);
            return false;
        }
    }
    dfc_event_ref(ev);
    if (trk)
        dfc_track_hold(loop, trk);
    wq->q[(wq->head + wq->len) % loop->cfg.queue_size] = (job_t){ev, lr, trk};
    wq->len++;
    STAT_ADD(loop, dispatched, 1);
    if (wq->idle > 0)
        pthread_cond_signal(&wq->not_empty);
    pthread_mutex_unlock(&wq->mu);
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
