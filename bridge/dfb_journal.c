/*  dfb_journal: the journal's writer side: open and destroy, segment rolls
    and retention, the sync thread, append and flush (see dfb_journal.h for
    the contract, the recovery rules and the threads; the on-disk format is
    in dfb_journal_priv.h, recovery in dfb_journal_recover.c, readers in
    dfb_journal_reader.c).

    Appends go through writev from the caller's buffers (no copy, nothing
    allocated per record once warm). Readers use their own descriptors and
    pread. */
#define _GNU_SOURCE
#include "dfb_journal_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dfb_clock.h"
#include "dfb_log.h"

/*  An append failure is said once: the first of a streak as a warning (the
    publisher adds the one error line: nothing is acknowledged meanwhile),
    the retries (the publisher retries until the disk works again) at debug. */
#define APPEND_ERR(j, ...) dfb_log((j)->append_failing ? DFB_LOG_DEBUG : DFB_LOG_WARN, __VA_ARGS__)

/* ---- durability ----------------------------------------------------------- */

/*  Records the outcome of a sync that began at generation g. Caller holds
    mu. Logs nothing (the caller logs after unlocking). Returns 1 when this
    failure starts a bad spell or this success ends one (worth a log line). */
static int
note_sync_locked(dfb_journal_t *j, int ok, uint64_t g, int64_t now_ms)
{
    if (ok) {
        j->st.fsyncs++;
        if (g > j->gen_synced)
            j->gen_synced = g;
        j->last_sync_ms = now_ms;
        if (j->sync_bad && g >= j->bad_gen) {
            j->sync_bad = 0;
            return 1;
        }
        return 0;
    }
    j->st.sync_errors++;
    if (g > j->bad_gen)
        j->bad_gen = g;
    int first = !j->sync_bad;
    j->sync_bad = 1;
    return first;
}

static void
busy_begin(dfb_journal_t *j)
{
    pthread_mutex_lock(&j->mu);
    if (j->busy++ == 0)
        j->st.disk_busy_since_ms = dfb_wall_ms();
    pthread_mutex_unlock(&j->mu);
}

/*  Caller holds mu. */
static void
busy_end_locked(dfb_journal_t *j)
{
    if (--j->busy == 0)
        j->st.disk_busy_since_ms = 0;
}

/*  fdatasync of fd, which holds the data appended up to generation g.
    Runs without mu; counts and logs. 0 or -1 (errno kept). */
static int
sync_fd(dfb_journal_t *j, int fd, uint64_t g, int64_t now_ms, const char *what)
{
    busy_begin(j);
    int rc = fdatasync(fd), e = errno;
    pthread_mutex_lock(&j->mu);
    busy_end_locked(j);
    int edge = note_sync_locked(j, rc == 0, g, now_ms);
    pthread_mutex_unlock(&j->mu);
    if (rc != 0 && edge) /* once per bad spell; sync_errors counts each */
        dfb_error("journal: fdatasync (%s): %s: batches stay unacknowledged until a sync "
                  "succeeds",
                  what, strerror(e));
    else if (edge)
        dfb_info("journal: fdatasync works again (%s): acknowledging resumes", what);
    errno = e;
    return rc;
}

/*  Writer thread: syncs the active segment for everything appended so far. */
static int
writer_sync(dfb_journal_t *j, int64_t now_ms, const char *what)
{
    pthread_mutex_lock(&j->mu);
    uint64_t g = j->gen_written;
    pthread_mutex_unlock(&j->mu);
    return sync_fd(j, j->fd, g, now_ms, what);
}

/* ---- segments (writer) ---------------------------------------------------- */

seg_t *
jr_push_seg(dfb_journal_t *j, uint64_t first)
{
    if (j->nsegs == j->capsegs) {
        size_t cap = j->capsegs ? j->capsegs * 2 : 16;
        seg_t *s = realloc(j->segs, cap * sizeof *s);
        if (!s)
            return NULL;
        j->segs = s;
        j->capsegs = cap;
    }
    seg_t *s = &j->segs[j->nsegs++];
    memset(s, 0, sizeof *s);
    s->first_gseq = first;
    return s;
}

/*  Creates the segment starting at gseq first with a header holding the
    current topic seqs, and makes it active. The old active segment is made
    durable first (unless fsync is `never`): a failed sync leaves it active
    and returns -1, so its data stays covered by the next flush. The new
    file, its header and the directory entry are synced before it is used;
    on failure it is removed again (it holds no record) and -1 returned.
    Writer thread; takes mu only to switch. */
int
jr_new_segment(dfb_journal_t *j, uint64_t first, int64_t now_ms)
{
    int syncs = j->opts.fsync != DFB_FSYNC_NEVER;
    if (j->fd >= 0 && syncs) {
        pthread_mutex_lock(&j->mu);
        int dirty = j->gen_synced < j->gen_written;
        pthread_mutex_unlock(&j->mu);
        if (dirty && writer_sync(j, now_ms, "segment roll") != 0)
            return -1;
    }
    if (jr_build_header(&j->hbuf, j->epoch, first, now_ms, j->topics) != 0) {
        APPEND_ERR(j, "journal: out of memory for a segment header");
        return -1;
    }
    dfb_buf_t *b = &j->hbuf;
    char path[4096];
    jr_seg_path(j, first, path, sizeof path);
    if (j->spare_fd < 0) /* given up at an EMFILE, taken again when it can */
        j->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE) && j->spare_fd >= 0) {
        /* Out of descriptors (peers' connections): the spare one is given
           up for the segment, then taken again when one is free. */
        close(j->spare_fd);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
        j->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) {
        APPEND_ERR(j, "journal: cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    const char *fail = NULL;
    if (jr_write_all(fd, b->data, b->len) != 0)
        fail = "write";
    else if (syncs) {
        pthread_mutex_lock(&j->mu);
        uint64_t g = j->gen_written;
        pthread_mutex_unlock(&j->mu);
        busy_begin(j);
        if (fdatasync(fd) != 0)
            fail = "fdatasync";
        else if (jr_fsync_dir(j->jdir) != 0)
            fail = "directory fsync";
        int e = errno;
        pthread_mutex_lock(&j->mu);
        busy_end_locked(j);
        if (fail)
            note_sync_locked(j, 0, g, now_ms);
        pthread_mutex_unlock(&j->mu);
        errno = e;
    }
    if (fail) {
        APPEND_ERR(j, "journal: cannot create %s: %s: %s", path, fail, strerror(errno));
        close(fd);
        unlink(path); /* ours, just created, no record in it */
        return -1;
    }
    pthread_mutex_lock(&j->mu);
    seg_t *s = jr_push_seg(j, first);
    if (!s) {
        pthread_mutex_unlock(&j->mu);
        APPEND_ERR(j, "journal: out of memory for segment %s", path);
        close(fd);
        unlink(path);
        return -1;
    }
    s->size = b->len;
    s->mtime_ms = now_ms;
    s->indexed = 1;
    int old = j->fd;
    j->fd = fd;
    j->st.segments = j->nsegs;
    j->st.bytes += b->len;
    pthread_mutex_unlock(&j->mu);
    if (old >= 0)
        close(old);
    return 0;
}

/*  Deletes the oldest segments beyond the limits. A segment leaves the
    list under mu (readers stop finding it) and is unlinked without it; one
    that cannot be deleted goes back to the front and is retried by the
    next call. Any thread but the tick caller's; takes ret_mu. */
static void
retain(dfb_journal_t *j, int64_t now_ms)
{
    pthread_mutex_lock(&j->ret_mu);
    for (;;) {
        pthread_mutex_lock(&j->mu);
        if (j->nsegs <= 1) {
            pthread_mutex_unlock(&j->mu);
            break;
        }
        seg_t gone = j->segs[0];
        int too_big = j->opts.max_bytes && j->st.bytes > j->opts.max_bytes;
        int too_old = j->opts.max_age_ms > 0 && gone.mtime_ms + j->opts.max_age_ms < now_ms;
        if (!too_big && !too_old) {
            pthread_mutex_unlock(&j->mu);
            break;
        }
        memmove(j->segs, j->segs + 1, (j->nsegs - 1) * sizeof gone);
        j->nsegs--;
        j->st.segments = j->nsegs;
        j->st.bytes -= gone.size;
        if (j->busy++ == 0)
            j->st.disk_busy_since_ms = dfb_wall_ms();
        pthread_mutex_unlock(&j->mu);

        char path[4096];
        jr_seg_path(j, gone.first_gseq, path, sizeof path);
        int rc = unlink(path), e = errno;
        pthread_mutex_lock(&j->mu);
        busy_end_locked(j);
        if (rc != 0 && e != ENOENT) {
            /* Back to the front: only retention removes there, and we hold ret_mu. */
            seg_t *s = jr_push_seg(j, 0);
            if (s) {
                memmove(j->segs + 1, j->segs, (j->nsegs - 1) * sizeof gone);
                j->segs[0] = gone;
                j->st.segments = j->nsegs;
                j->st.bytes += gone.size;
            } else
                free(gone.marks);
            j->st.delete_errors++;
            pthread_mutex_unlock(&j->mu);
            if (!j->del_failing)
                dfb_error("journal: retention cannot delete %s: %s (retried at every tick)", path,
                          strerror(e));
            j->del_failing = 1;
            break;
        }
        j->st.segments_deleted++;
        pthread_mutex_unlock(&j->mu);
        free(gone.marks);
        if (j->del_failing)
            dfb_info("journal: retention deletes again (%s)", path);
        j->del_failing = 0;
        dfb_debug("journal: retention deleted %s (%s)", path, too_big ? "size" : "age");
    }
    pthread_mutex_unlock(&j->ret_mu);
}

/* ---- the sync thread ------------------------------------------------------ */

/*  The `interval` fdatasync of an idle tail: the active descriptor is
    dup'ed under mu so that a roll may close it meanwhile. */
static void
bg_sync(dfb_journal_t *j, int64_t now_ms)
{
    pthread_mutex_lock(&j->mu);
    int due = j->opts.fsync == DFB_FSYNC_INTERVAL && j->fd >= 0 &&
              (j->gen_synced < j->gen_written || j->sync_bad) &&
              now_ms - j->last_sync_ms >= j->opts.fsync_ms;
    int fd = due ? dup(j->fd) : -1;
    uint64_t g = j->gen_written;
    pthread_mutex_unlock(&j->mu);
    if (fd < 0)
        return;
    sync_fd(j, fd, g, now_ms, "interval");
    close(fd);
}

static void *
bg_main(void *arg)
{
    dfb_journal_t *j = arg;
    pthread_mutex_lock(&j->mu);
    for (;;) {
        while (!j->bg_stop && j->bg_done == j->bg_req)
            pthread_cond_wait(&j->bg_cv, &j->mu);
        if (j->bg_stop)
            break;
        uint64_t req = j->bg_req;
        int64_t now = j->bg_now;
        pthread_mutex_unlock(&j->mu);
        bg_sync(j, now);
        retain(j, now);
        pthread_mutex_lock(&j->mu);
        j->bg_done = req;
        j->sync_posted = 0; /* a writer's request is served (bg_sync re-checked it) */
        pthread_cond_broadcast(&j->idle_cv);
    }
    pthread_cond_broadcast(&j->idle_cv);
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

void
dfb_journal_tick(dfb_journal_t *j, int64_t now_ms)
{
    pthread_mutex_lock(&j->mu);
    j->bg_now = now_ms;
    j->bg_req++;
    pthread_cond_signal(&j->bg_cv);
    pthread_mutex_unlock(&j->mu);
}

void
dfb_journal_drain(dfb_journal_t *j)
{
    pthread_mutex_lock(&j->mu);
    uint64_t want = j->bg_req;
    while (j->bg_started && !j->bg_stop && j->bg_done < want)
        pthread_cond_wait(&j->idle_cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
}

/* ---- open / destroy ------------------------------------------------------- */

dfb_journal_t *
dfb_journal_open(const dfb_journal_opts_t *opts, const char *new_epoch, int64_t now_ms, char *err,
                 size_t errlen)
{
    dfb_journal_t *j = calloc(1, sizeof *j);
    if (!j) {
        snprintf(err, errlen, "journal: out of memory");
        return NULL;
    }
    j->opts = *opts;
    j->fd = -1;
    j->lock_fd = -1;
    j->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pthread_mutex_init(&j->mu, NULL);
    pthread_mutex_init(&j->ret_mu, NULL);
    pthread_cond_init(&j->bg_cv, NULL);
    pthread_cond_init(&j->idle_cv, NULL);
    dfb_buf_init(&j->hbuf);
    dfb_buf_init(&j->pend);
    j->topics = dfb_topics_new();
    size_t dl = strlen(opts->dir) + 16;
    j->jdir = malloc(dl);
    if (!j->topics || !j->jdir) {
        snprintf(err, errlen, "journal: out of memory");
        dfb_journal_destroy(&j);
        return NULL;
    }
    j->opts.dir = NULL; /* not kept: the caller's string */
    snprintf(j->jdir, dl, "%s/journal", opts->dir);
    if ((mkdir(opts->dir, 0755) != 0 && errno != EEXIST) ||
        (mkdir(j->jdir, 0755) != 0 && errno != EEXIST)) {
        snprintf(err, errlen, "config: bridge.stateDir: cannot create '%s': %s", j->jdir,
                 strerror(errno));
        dfb_journal_destroy(&j);
        return NULL;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/LOCK", j->jdir);
    j->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (j->lock_fd < 0 || flock(j->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, errlen, "config: bridge.stateDir: '%s' %s", opts->dir,
                 j->lock_fd < 0 ? strerror(errno) : "is in use by another dfbridge");
        dfb_journal_destroy(&j);
        return NULL;
    }
    if (jr_recover(j, new_epoch, now_ms, err, errlen) != 0) {
        dfb_journal_destroy(&j);
        return NULL;
    }
    j->st.head_gseq = j->last_gseq;
    j->last_sync_ms = now_ms;
    if (pthread_create(&j->bg, NULL, bg_main, j) != 0) {
        snprintf(err, errlen, "journal: cannot start its sync thread");
        dfb_journal_destroy(&j);
        return NULL;
    }
    j->bg_started = 1;
    return j;
}

void
dfb_journal_destroy(dfb_journal_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_journal_t *j = *self_p;
    if (j->bg_started) {
        pthread_mutex_lock(&j->mu);
        j->bg_stop = 1;
        pthread_cond_signal(&j->bg_cv);
        pthread_mutex_unlock(&j->mu);
        pthread_join(j->bg, NULL);
    }
    if (j->fd >= 0) {
        if (j->opts.fsync != DFB_FSYNC_NEVER && (j->gen_synced < j->gen_written || j->sync_bad))
            writer_sync(j, dfb_wall_ms(), "close");
        close(j->fd);
    }
    if (j->lock_fd >= 0)
        close(j->lock_fd); /* releases the flock */
    if (j->spare_fd >= 0)
        close(j->spare_fd);
    for (size_t i = 0; i < j->nsegs; i++)
        free(j->segs[i].marks);
    free(j->segs);
    dfb_topics_destroy(&j->topics);
    dfb_buf_free(&j->hbuf);
    dfb_buf_free(&j->pend);
    free(j->jdir);
    pthread_cond_destroy(&j->bg_cv);
    pthread_cond_destroy(&j->idle_cv);
    pthread_mutex_destroy(&j->ret_mu);
    pthread_mutex_destroy(&j->mu);
    free(j);
    *self_p = NULL;
}

int
dfb_journal_has_topic(dfb_journal_t *j, const char *topic, size_t len)
{
    pthread_mutex_lock(&j->mu);
    int has = dfb_topics_get(j->topics, topic, len, 0) != NULL;
    pthread_mutex_unlock(&j->mu);
    return has;
}

const char *
dfb_journal_epoch(const dfb_journal_t *self)
{
    return self->epoch;
}

uint64_t
dfb_journal_last_gseq(const dfb_journal_t *self)
{
    return self->last_gseq;
}

const dfb_topics_t *
dfb_journal_topics(const dfb_journal_t *self)
{
    return self->topics;
}

/* ---- append --------------------------------------------------------------- */

static void
bump_errors(dfb_journal_t *j)
{
    pthread_mutex_lock(&j->mu);
    j->st.append_errors++;
    pthread_mutex_unlock(&j->mu);
}

/*  Cuts the active segment back to size after a failed append. When even
    that fails the next append retries it first (nothing is appended after
    a partial record). */
static void
cut_back(dfb_journal_t *j, uint64_t size)
{
    if (ftruncate(j->fd, (off_t)size) == 0) {
        j->need_cut = 0;
        return;
    }
    if (!j->need_cut)
        dfb_error("journal: cannot cut a partial record: %s (retried before the next append)",
                  strerror(errno));
    j->need_cut = 1;
    j->cut_to = size;
}

static int stage_record(dfb_journal_t *j, const dfb_journal_rec_t *rec, int64_t now_ms);
static int write_staged(dfb_journal_t *j, int64_t now_ms, int sync_now);

int
dfb_journal_append(dfb_journal_t *j, const dfb_journal_rec_t *rec, int64_t now_ms)
{
    /* Write-through: what an earlier dfb_journal_stage left goes first. */
    uint64_t len0 = j->pend.len, n0 = j->npend, last0 = j->last_gseq;
    int rc = stage_record(j, rec, now_ms);
    if (rc == 0) {
        dfb_topic_t *t = dfb_topics_get(j->topics, rec->topic, rec->topic_len, 0);
        uint64_t seq0 = j->pend_prev_seq;
        rc = write_staged(j, now_ms, j->opts.fsync == DFB_FSYNC_ALWAYS && !j->batch_mode);
        if (rc != 0) {
            /* Not in the file, so not appended: the caller may append the
               same gseq again. (When the records staged before it could
               not be written either, they stay staged.) */
            if (j->npend == n0 + 1) {
                j->pend.len = (size_t)len0;
                j->npend = (size_t)n0;
                j->last_gseq = last0;
                if (t)
                    t->seq = seq0;
            }
        }
    }
    j->append_failing = rc != 0;
    return rc;
}

int
dfb_journal_stage(dfb_journal_t *j, const dfb_journal_rec_t *rec, int64_t now_ms)
{
    int rc = stage_record(j, rec, now_ms);
    j->append_failing = rc != 0;
    return rc;
}

int
dfb_journal_commit(dfb_journal_t *j, int64_t now_ms)
{
    if (!j->npend)
        return 0;
    int rc = write_staged(j, now_ms, j->opts.fsync == DFB_FSYNC_ALWAYS && !j->batch_mode);
    j->append_failing = rc != 0;
    return rc;
}

/*  Checks rec, rolls the segment when due (writing what is staged first),
    and encodes rec at the end of j->pend with its CRC. The journal's topic
    seqs and last_gseq move at once (the writer's view); the segment's
    size, index and stats move when the bytes are written. 0 or -1 (logged,
    counted; rec not staged). */
static int
stage_record(dfb_journal_t *j, const dfb_journal_rec_t *rec, int64_t now_ms)
{
    if (rec->gseq <= j->last_gseq || rec->topic_len > MAX_PAYLOAD || rec->type_len > MAX_PAYLOAD ||
        rec->id_len > MAX_PAYLOAD || rec->body_len > MAX_PAYLOAD ||
        EVENT_FIXED + rec->topic_len + rec->type_len + rec->id_len + rec->body_len > MAX_PAYLOAD) {
        dfb_error("journal: record gseq %" PRIu64 " refused (out of order or too large)",
                  rec->gseq);
        bump_errors(j);
        return -1;
    }
    size_t len = EVENT_FIXED + rec->topic_len + rec->type_len + rec->id_len + rec->body_len;
    /* The staging area is bounded: past its caps what is staged is written. */
    if (j->npend &&
        (j->npend >= DFB_JOURNAL_STAGE_MAX ||
         j->pend.len + REC_HEAD + len > DFB_JOURNAL_STAGE_BYTES) &&
        write_staged(j, now_ms, 0) != 0)
        return -1;
    /* The segment list may be shifted by retention on another thread:
       the active segment is always read under the lock. */
    pthread_mutex_lock(&j->mu);
    uint64_t size = j->segs[j->nsegs - 1].size, records = j->segs[j->nsegs - 1].records;
    pthread_mutex_unlock(&j->mu);
    size += j->pend.len;
    records += j->npend;
    /* A segment rolls once full, and never before its records are as large
       as its header (the topic table, bounded by DFB_TOPICS_MAX_BYTES):
       a big table must not roll a segment per event. */
    uint64_t hdr = REC_HEAD + 2 + 4 + 64 + 16 + 4 + 12 * (uint64_t)dfb_topics_count(j->topics) +
                   dfb_topics_bytes(j->topics);
    if (size >= j->opts.segment_bytes && size >= 2 * hdr && records > 0) {
        /* The old segment gets what is staged; the new one starts at rec. */
        if (j->npend && write_staged(j, now_ms, 0) != 0)
            return -1;
        if (jr_new_segment(j, rec->gseq, now_ms) != 0) {
            bump_errors(j);
            return -1;
        }
        retain(j, now_ms);
    }
    if (dfb_buf_reserve(&j->pend, REC_HEAD + len) != 0) {
        APPEND_ERR(j, "journal: out of memory staging gseq %" PRIu64, rec->gseq);
        bump_errors(j);
        return -1;
    }
    uint8_t *h = j->pend.data + j->pend.len;
    uint8_t *p = h + REC_HEAD;
    p[0] = 'E';
    le64(p + 1, rec->gseq);
    le64(p + 9, rec->seq);
    le64(p + 17, (uint64_t)now_ms);
    le32(p + 25, (uint32_t)rec->topic_len);
    le32(p + 29, (uint32_t)rec->type_len);
    le32(p + 33, (uint32_t)rec->id_len);
    le32(p + 37, (uint32_t)rec->body_len);
    uint8_t *q = p + EVENT_FIXED;
    memcpy(q, rec->topic, rec->topic_len);
    q += rec->topic_len;
    memcpy(q, rec->type, rec->type_len);
    q += rec->type_len;
    memcpy(q, rec->id, rec->id_len);
    q += rec->id_len;
    memcpy(q, rec->body, rec->body_len);
    le32(h, (uint32_t)len);
    le32(h + 4, dfb_crc32c(0, p, len));
    j->pmeta[j->npend].gseq = rec->gseq;
    j->pmeta[j->npend].off = j->pend.len;
    j->npend++;
    j->pend.len += REC_HEAD + len;
    /* A new topic is inserted under mu: readers ask dfb_journal_has_topic
       from other threads (they read the names, never the seqs). */
    dfb_topic_t *t = dfb_topics_get(j->topics, rec->topic, rec->topic_len, 0);
    if (!t) {
        pthread_mutex_lock(&j->mu);
        t = dfb_topics_get(j->topics, rec->topic, rec->topic_len, 1);
        pthread_mutex_unlock(&j->mu);
    }
    j->pend_prev_seq = t ? t->seq : 0;
    if (t)
        t->seq = rec->seq;
    j->last_gseq = rec->gseq;
    return 0;
}

/*  Writes every staged record with one writev (the active segment grows by
    all of them at once, so a reader never sees half of it), then makes them
    visible: segment size, index, stats. sync_now: fdatasync before they
    count (`always` before batches are announced). 0, or -1 (logged,
    counted; the file is cut back, the records stay staged). */
static int
write_staged(dfb_journal_t *j, int64_t now_ms, int sync_now)
{
    if (j->need_cut) {
        cut_back(j, j->cut_to);
        if (j->need_cut) {
            bump_errors(j);
            return -1;
        }
    }
    pthread_mutex_lock(&j->mu);
    uint64_t size = j->segs[j->nsegs - 1].size;
    pthread_mutex_unlock(&j->mu);
    size_t total = j->pend.len, done = 0;
    uint64_t first = j->pmeta[0].gseq;
    while (done < total) {
        struct iovec iov = {j->pend.data + done, total - done};
        ssize_t w = writev(j->fd, &iov, 1);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            if (done > 0) /* a short write came first: no partial record stays */
                cut_back(j, size);
            APPEND_ERR(j, "journal: write: %s (gseq %" PRIu64 ")", strerror(e), first);
            bump_errors(j);
            errno = e;
            return -1;
        }
        done += (size_t)w;
    }
    pthread_mutex_lock(&j->mu);
    j->gen_written++;
    pthread_mutex_unlock(&j->mu);
    if (sync_now && writer_sync(j, now_ms, "append") != 0) {
        /* Not durable, so not appended: the caller retries. */
        int e = errno;
        cut_back(j, size);
        bump_errors(j);
        errno = e;
        return -1;
    }
    pthread_mutex_lock(&j->mu);
    seg_t *act = &j->segs[j->nsegs - 1];
    for (size_t i = 0; i < j->npend; i++)
        jr_seg_count(act, j->pmeta[i].gseq, act->size + j->pmeta[i].off);
    act->size += total;
    act->mtime_ms = now_ms;
    j->st.bytes += total;
    j->st.appended += j->npend;
    j->st.head_gseq = j->pmeta[j->npend - 1].gseq;
    /*  `interval` promises no durability per record, so its fdatasync is
        posted to the sync thread, never run here: the writer (the loop
        thread) must not wait on the disk while events flow (a slow
        fdatasync showed up as a stall of every event behind it). A failed
        sync is sticky and fails the next flush, as before. */
    if (j->opts.fsync == DFB_FSYNC_INTERVAL && !j->sync_posted &&
        now_ms - j->last_sync_ms >= j->opts.fsync_ms) {
        j->sync_posted = 1;
        j->bg_now = now_ms;
        j->bg_req++;
        pthread_cond_signal(&j->bg_cv);
    }
    pthread_mutex_unlock(&j->mu);
    j->npend = 0;
    j->pend.len = 0;
    return 0;
}

int
dfb_journal_flush(dfb_journal_t *j)
{
    if (j->npend && dfb_journal_commit(j, dfb_wall_ms()) != 0)
        return -1;
    if (j->opts.fsync == DFB_FSYNC_NEVER)
        return 0;
    if (j->opts.fsync == DFB_FSYNC_ALWAYS)
        j->batch_mode = 1; /* from now on `always` syncs once per batch */
    pthread_mutex_lock(&j->mu);
    int need = j->sync_bad || (j->opts.fsync == DFB_FSYNC_ALWAYS && j->gen_synced < j->gen_written);
    pthread_mutex_unlock(&j->mu);
    if (!need)
        return 0;
    int rc = writer_sync(j, dfb_wall_ms(), "flush");
    pthread_mutex_lock(&j->mu);
    int bad = j->sync_bad;
    pthread_mutex_unlock(&j->mu);
    return rc == 0 && !bad ? 0 : -1;
}

void
dfb_journal_stats(dfb_journal_t *j, dfb_journal_stats_t *stats)
{
    pthread_mutex_lock(&j->mu);
    *stats = j->st;
    stats->oldest_gseq = j->nsegs ? j->segs[0].first_gseq : 1;
    stats->sync_failing = j->sync_bad;
    pthread_mutex_unlock(&j->mu);
}
