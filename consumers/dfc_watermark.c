/*  dfc_watermark: per bridge epoch, the gseq below which every event was handled
    by every listener (tracked in hand-out order, moved over the finished prefix),
    and the checkpoint file that keeps it across restarts. */
#include <stdlib.h>
#include <string.h>

#include "dfc_loop_priv.h"

/*  Finds (or, with create, makes) the watermark of an epoch. Under wm_mu. A
    full table forgets the least recently used epoch that has nothing in
    flight. Under wm_mu. */
wm_t *
dfc_wm_get(dfc_loop_t *loop, const char *epoch, size_t el, bool create)
{
    if (el >= DFC_EPOCH_MAX)
        return NULL;
    wm_t *free_slot = NULL, *oldest = NULL;
    for (int i = 0; i < DFC_CKPT_MAX; i++) {
        wm_t *w = &loop->wms[i];
        if (w->used && w->epoch_len == el && memcmp(w->epoch, epoch, el) == 0) {
            w->stamp = ++loop->wm_clock;
            return w;
        }
        if (!w->used && !free_slot)
            free_slot = w;
        if (w->used && !w->head && (!oldest || w->stamp < oldest->stamp))
            oldest = w;
    }
    if (!create)
        return NULL;
    wm_t *w = free_slot ? free_slot : oldest;
    if (!w)
        return NULL;
    free(w->done);
    memset(w, 0, sizeof *w);
    w->used = true;
    memcpy(w->epoch, epoch, el);
    w->epoch[el] = '\0';
    w->epoch_len = el;
    w->stamp = ++loop->wm_clock;
    return w;
}

/*  Drops one pending count; a finished prefix moves the watermark. Takes
    wm_mu. */
void
dfc_track_release(dfc_loop_t *loop, track_t *t)
{
    pthread_mutex_lock(&loop->wm_mu);
    if (--t->pending > 0) {
        pthread_mutex_unlock(&loop->wm_mu);
        return;
    }
    wm_t *w = t->wm;
    loop->ckpt_dirty = true; /* the watermark or the done set moved */
    while (w->head && w->head->pending == 0) {
        track_t *h = w->head;
        if (h->failed)
            w->blocked = true; /* until a restart replays it */
        if (!w->blocked && h->gseq > w->gseq)
            w->gseq = h->gseq;
        w->head = h->next;
        if (!w->head)
            w->tail = NULL;
        free(h);
    }
    pthread_mutex_unlock(&loop->wm_mu);
}

void
dfc_track_hold(dfc_loop_t *loop, track_t *t)
{
    pthread_mutex_lock(&loop->wm_mu);
    t->pending++;
    pthread_mutex_unlock(&loop->wm_mu);
}

void
dfc_track_fail(dfc_loop_t *loop, track_t *t)
{
    pthread_mutex_lock(&loop->wm_mu);
    t->failed = true; /* not handled: the watermark must not pass it */
    pthread_mutex_unlock(&loop->wm_mu);
}

/*  A tracking record for an event about to be handed out (or skipped), with
    the receiver's own pending count; NULL without a checkpoint. Takes
    wm_mu. */
track_t *
dfc_track_new(dfc_loop_t *loop, const dfc_event_t *ev)
{
    if (!loop->ckpt_path)
        return NULL;
    size_t el;
    const char *epoch = dfc_event_epoch_n(ev, &el);
    pthread_mutex_lock(&loop->wm_mu);
    wm_t *w = dfc_wm_get(loop, epoch, el, true);
    track_t *t = w ? calloc(1, sizeof *t) : NULL;
    if (!t) {
        pthread_mutex_unlock(&loop->wm_mu);
        return NULL;
    }
    t->wm = w;
    t->gseq = dfc_event_gseq(ev);
    t->pending = 1;
    if (w->tail)
        w->tail->next = t;
    else
        w->head = t;
    w->tail = t;
    pthread_mutex_unlock(&loop->wm_mu);
    return t;
}

int
dfc_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/*  How many of w's recorded gseqs (ascending) are <= g. */
static size_t
done_upto(const wm_t *w, uint64_t g)
{
    size_t lo = 0, hi = w->ndone;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (w->done[mid] <= g)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool
dfc_wm_check_head(dfc_loop_t *loop, wm_t *w, uint64_t head)
{
    if (w->gseq > head) {
        dfc_log(DFC_LOG_ERROR,
                "checkpoint: epoch %s: watermark %llu is beyond the bridge's head %llu: not "
                "used (the epoch starts as without a checkpoint)",
                w->epoch, (unsigned long long)w->gseq, (unsigned long long)head);
        w->ndone = 0;
        loop->ckpt_dirty = true;
        return false;
    }
    size_t keep = done_upto(w, head);
    if (keep < w->ndone) {
        dfc_log(DFC_LOG_ERROR,
                "checkpoint: epoch %s: %zu handled gseq(s) beyond the bridge's head %llu: not "
                "used",
                w->epoch, w->ndone - keep, (unsigned long long)head);
        w->ndone = keep;
        loop->ckpt_dirty = true;
    }
    return true;
}

uint64_t
dfc_wm_done_in(dfc_loop_t *loop, const char *epoch, size_t el, uint64_t a, uint64_t b)
{
    if (!loop->ckpt_path || b <= a)
        return 0;
    pthread_mutex_lock(&loop->wm_mu);
    const wm_t *w = dfc_wm_get(loop, epoch, el, false);
    uint64_t n = w && w->ndone ? done_upto(w, b) - done_upto(w, a) : 0;
    pthread_mutex_unlock(&loop->wm_mu);
    return n;
}

/*  The gseqs of w handled above its watermark: finished events still behind
    an unfinished one, plus those the last checkpoint named and this run has
    not reached. Under wm_mu; *out malloc'ed. */
static size_t
wm_done_above(const wm_t *w, uint64_t **out)
{
    size_t n = 0, cap = w->ndone;
    for (const track_t *t = w->head; t; t = t->next)
        cap++;
    *out = cap ? malloc(cap * sizeof **out) : NULL;
    if (!*out)
        return 0;
    for (size_t i = 0; i < w->ndone; i++)
        if (w->done[i] > w->gseq)
            (*out)[n++] = w->done[i];
    for (const track_t *t = w->head; t; t = t->next)
        if (t->pending == 0 && !t->failed && t->gseq > w->gseq)
            (*out)[n++] = t->gseq;
    qsort(*out, n, sizeof **out, dfc_cmp_u64);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || (*out)[i] != (*out)[u - 1])
            (*out)[u++] = (*out)[i];
    return u < DFC_CKPT_DONE_MAX ? u : DFC_CKPT_DONE_MAX;
}

void
dfc_wm_save(dfc_loop_t *loop)
{
    dfc_ckpt_entry_t e[DFC_CKPT_MAX];
    size_t n = 0;
    pthread_mutex_lock(&loop->wm_mu);
    if (!loop->ckpt_path || !loop->ckpt_dirty) {
        pthread_mutex_unlock(&loop->wm_mu);
        return;
    }
    /* oldest first, so that a reader keeping the newest keeps the right ones */
    wm_t *order[DFC_CKPT_MAX];
    for (int i = 0; i < DFC_CKPT_MAX; i++) /* the text file cannot hold a NUL */
        if (loop->wms[i].used && !memchr(loop->wms[i].epoch, '\0', loop->wms[i].epoch_len))
            order[n++] = &loop->wms[i];
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && order[j]->stamp < order[j - 1]->stamp; j--) {
            wm_t *tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    for (size_t i = 0; i < n; i++) {
        memcpy(e[i].epoch, order[i]->epoch, DFC_EPOCH_MAX);
        e[i].gseq = order[i]->gseq;
        e[i].ndone = wm_done_above(order[i], &e[i].done);
    }
    loop->ckpt_dirty = false;
    pthread_mutex_unlock(&loop->wm_mu);
    /* a full disk fails every period: one error line, then quiet */
    int rc =
        dfc_ckpt_save(loop->ckpt_path, e, n, loop->ckpt_failing ? DFC_LOG_DEBUG : DFC_LOG_ERROR);
    dfc_ckpt_entries_free(e, n);
    if (rc != DFC_OK) {
        if (loop->ckpt_failing++ == 0)
            dfc_log(DFC_LOG_WARN,
                    "cannot write the checkpoint %s (%s): the previous one is "
                    "kept; retrying every %d ms",
                    loop->ckpt_path, dfc_strerror(rc), loop->cfg.checkpoint_ms);
        pthread_mutex_lock(&loop->wm_mu);
        loop->ckpt_dirty = true; /* try again next period */
        STAT_ADD(loop, checkpoint_errors, 1);
        pthread_mutex_unlock(&loop->wm_mu);
        return;
    }
    if (loop->ckpt_failing)
        dfc_log(DFC_LOG_INFO, "checkpoint %s written again after %llu failed attempt(s)",
                loop->ckpt_path, (unsigned long long)loop->ckpt_failing);
    loop->ckpt_failing = 0;
    STAT_ADD(loop, checkpoints, 1);
}

void
dfc_wm_restore(dfc_loop_t *loop)
{
    if (!loop->ckpt_path || loop->ckpt_loaded)
        return;
    dfc_ckpt_entry_t e[DFC_CKPT_MAX];
    size_t n = 0;
    if (dfc_ckpt_load(loop->ckpt_path, e, DFC_CKPT_MAX, &n) != DFC_OK)
        dfc_log(DFC_LOG_ERROR, "checkpoint %s is malformed: %zu entries used", loop->ckpt_path, n);
    pthread_mutex_lock(&loop->wm_mu);
    for (size_t i = 0; i < n; i++) {
        wm_t *w = dfc_wm_get(loop, e[i].epoch, strlen(e[i].epoch), true);
        if (w) {
            w->gseq = e[i].gseq;
            w->done = e[i].done; /* taken over */
            w->ndone = e[i].ndone;
            e[i].done = NULL;
        }
    }
    loop->ckpt_loaded = true;
    pthread_mutex_unlock(&loop->wm_mu);
    dfc_ckpt_entries_free(e, n);
    if (n)
        dfc_log(DFC_LOG_INFO, "checkpoint %s: %zu epoch(s), resuming", loop->ckpt_path, n);
}
