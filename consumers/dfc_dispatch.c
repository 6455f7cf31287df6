/*  dfc_dispatch: the last step of every event, live or replayed: dedupe, the
    group filter, the watermark record, then one job per accepting listener
    (is_accepting_event runs here, counted as running for unsubscribe). */
#include <stdlib.h>
#include <string.h>

#include "dfc_loop_priv.h"

void
dfc_snap_clear(dfc_loop_t *loop)
{
    for (size_t i = 0; i < loop->nsnap; i++)
        dfc_lrec_unref(loop->snap[i]);
    loop->nsnap = 0;
    loop->snap_gen = 0;
}

/*  The receiver's copy of the listener list, taken again only when the list
    changed (lgen): the per-event path takes no lock for it. A listener
    removed since is still in the copy, and skipped (dfc_lrec_enter). */
static bool
snap_refresh(dfc_loop_t *loop)
{
    pthread_mutex_lock(&loop->mu);
    size_t n = 0;
    for (lrec_t *lr = loop->listeners; lr; lr = lr->next)
        n++;
    if (n > loop->snap_cap) {
        lrec_t **grown = realloc(loop->snap, n * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&loop->mu);
            return false;
        }
        loop->snap = grown;
        loop->snap_cap = n;
    }
    for (size_t i = 0; i < loop->nsnap; i++)
        dfc_lrec_unref(loop->snap[i]);
    n = 0;
    for (lrec_t *lr = loop->listeners; lr; lr = lr->next) {
        atomic_fetch_add(&lr->refs, 1);
        loop->snap[n++] = lr;
    }
    loop->nsnap = n;
    loop->snap_gen = atomic_load(&loop->lgen);
    pthread_mutex_unlock(&loop->mu);
    return true;
}

/*  Hands an event to the listeners: one job per accepting listener with a
    callback, on the shared queue or (STREAM order) on the queue of the
    worker its partition key hashes to. */
static void
dispatch(dfc_loop_t *loop, dfc_event_t *ev, track_t *trk)
{
    int qi = 0;
    if (loop->nq > 1) {
        size_t kl;
        const char *key = dfc_event_partition_key(ev, &kl);
        uint64_t h = dfc_fnv1a64(key, kl);
        /* remix: a group member only sees keys with one FNV value modulo
           members, which must still spread over its workers */
        h ^= h >> 31;
        h *= 0xbf58476d1ce4e5b9ull;
        h ^= h >> 29;
        qi = (int)(h % (uint64_t)loop->nq);
    }
    if (!dfc_event_is_known(ev))
        STAT_ADD(loop, unknown_type, 1);
    if (atomic_load(&loop->lgen) != loop->snap_gen && !snap_refresh(loop)) {
        if (trk) {
            dfc_track_fail(loop, trk);
            dfc_track_release(loop, trk);
        }
        dfc_log(DFC_LOG_ERROR, "out of memory: event dropped");
        return;
    }

    const dfc_initiator_t *init = dfc_event_initiator(ev);
    int64_t bot = dfc_event_bot(ev);
    bool stopping = false;
    for (size_t i = 0; i < loop->nsnap; i++) {
        lrec_t *lr = loop->snap[i];
        if (stopping) {
            STAT_ADD(loop, dropped_at_stop, 1);
            continue;
        }
        /* The filter runs user code with the listener's ctx: it counts as
           running, so that unsubscribe waits for it like for a callback
           (and a listener removed meanwhile is not asked at all). */
        if (!dfc_lrec_enter(loop, lr))
            continue;
        dfc_tl_listener = lr; /* unsubscribing itself from its filter must not wait */
        bool accept = lr->l.is_accepting_event ? lr->l.is_accepting_event(lr->l.ctx, ev, init, bot)
                                               : dfc_default_is_accepting(lr->l.ctx, ev, init, bot);
        dfc_tl_listener = NULL;
        dfc_lrec_leave(loop, lr);
        bool queue = accept && !atomic_load(&lr->removed) && dfc_event_has_callback(ev, &lr->l);
        if (queue)
            atomic_fetch_add(&lr->refs, 1); /* the job's; a removal from now on makes the worker
                                               skip it */
        if (!accept)
            STAT_ADD(loop, filtered, 1);
        if (queue && !dfc_pool_enqueue(loop, qi, ev, lr, trk))
            stopping = true; /* that job was dropped and counted */
    }
    if (trk)
        dfc_track_release(loop, trk);
}

/*  The last step for every event, live or replayed: lag, dedupe, group
    filter, then dispatch. Skipped events still count as handled for the
    watermark. */
void
dfc_deliver(dfc_loop_t *loop, dfc_event_t *ev)
{
    uint64_t now = dfc_wall_ms(), ts = dfc_event_ts(ev);
    size_t idl, tl;
    const char *id = dfc_event_id_n(ev, &idl), *type = dfc_event_type_n(ev, &tl);
    bool done = false;
    if (loop->ckpt_path) { /* handled before a restart, above the watermark */
        pthread_mutex_lock(&loop->wm_mu);
        size_t el;
        const char *epoch = dfc_event_epoch_n(ev, &el);
        wm_t *w = dfc_wm_get(loop, epoch, el, false);
        uint64_t g = dfc_event_gseq(ev);
        done = w && w->ndone && bsearch(&g, w->done, w->ndone, sizeof g, dfc_cmp_u64);
        pthread_mutex_unlock(&loop->wm_mu);
    }
    bool dup = loop->dedupe && id && dfc_dedupe_seen(loop->dedupe, id, idl, type ? type : "", tl);
    dup = dup || done;
    bool mine = true;
    if (!dup && loop->cfg.members > 1) {
        size_t kl;
        const char *key = dfc_event_partition_key(ev, &kl);
        mine = dfc_partition(key, kl, (uint32_t)loop->cfg.members) == (uint32_t)loop->cfg.member;
    }
    STAT_SET(loop, lag_ms, now > ts ? now - ts : 0);
    if (dup)
        STAT_ADD(loop, duplicates, 1);
    else if (!mine)
        STAT_ADD(loop, not_mine, 1);
    track_t *trk = dfc_track_new(loop, ev);
    if (dup || !mine) {
        if (trk)
            dfc_track_release(loop, trk);
        return;
    }
    dispatch(loop, ev, trk);
}
