/*  dfb_journal_reader: readers of the journal (seek by gseq or by a topic's
    seq, read on across segments, report what cannot be read) and the tail
    scan that refills the dedupe window at start. */
#define _GNU_SOURCE
#include "dfb_journal_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dfb_log.h"

#define PASS_PER_CALL 64           /* filtered-out records stepped over per reader_next call */
#define WINDOW ((size_t)256 << 10) /* records are read from the file in windows up to this large   \
                                    */
#define WINDOW_MIN ((size_t)16 << 10) /* the first after an open; each next one twice the last */

struct dfb_journal_reader {
    dfb_journal_t *j;
    int fd;
    uint64_t first; /* segment open */
    uint64_t off;
    uint64_t min_gseq;
    uint64_t last; /* gseq of the last record read (0 = none yet) */
    uint64_t lost_from, lost_to;
    dfb_buf_t buf;
    /* The caller's topic filter (borrowed): whole segments without a
       record of these topics are skipped by their headers' seqs. */
    char *const *ftopics;
    const size_t *flens;
    uint32_t nf;
    dfb_buf_t hbuf;
    uint64_t *seqs_a, *seqs_b; /* nf each */
    uint64_t skipped;          /* segments skipped (tests) */
    uint64_t passed;           /* bytes of records stepped over since the last take */
    uint32_t passed_now;       /* records stepped over in this call */
    /* The read window: bytes [woff, woff + wlen) of the open segment, all
       below its committed size when read (committed bytes never change), so
       a record is one pread per WINDOW bytes instead of two per record. */
    uint8_t *win;
    uint64_t woff;
    size_t wlen, wcap;
    size_t wnext;         /* the next fill's size: small for a reader that reads a few records */
    dfb_journal_pos_t at; /* of the last record returned */
};

/* ---- readers -------------------------------------------------------------- */

dfb_journal_reader_t *
dfb_journal_reader_new(dfb_journal_t *journal)
{
    dfb_journal_reader_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->j = journal;
    r->fd = -1;
    dfb_buf_init(&r->buf);
    dfb_buf_init(&r->hbuf);
    return r;
}

void
dfb_journal_reader_destroy(dfb_journal_reader_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_journal_reader_t *r = *self_p;
    if (r->fd >= 0)
        close(r->fd);
    dfb_buf_free(&r->buf);
    dfb_buf_free(&r->hbuf);
    free(r->win);
    free(r->seqs_a);
    free(r->seqs_b);
    free(r);
    *self_p = NULL;
}

static int
reader_open(dfb_journal_reader_t *r, uint64_t first, uint64_t off)
{
    if (r->fd >= 0)
        close(r->fd);
    char path[4096];
    jr_seg_path(r->j, first, path, sizeof path);
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    r->first = first;
    r->off = off;
    r->wlen = 0;
    r->wnext = WINDOW_MIN;
    return r->fd >= 0 ? 0 : -1;
}

/*  Room for n bytes in the window (its bytes are dropped). 0 or -1. */
static int
window_reserve(dfb_journal_reader_t *r, size_t n)
{
    r->wlen = 0;
    if (r->wcap >= n)
        return 0;
    uint8_t *w = realloc(r->win, n);
    if (!w)
        return -1;
    r->win = w;
    r->wcap = n;
    return 0;
}

/*  Fills the window with the bytes from off: at least need, else the
    next fill's size, within limit. DFB_JOURNAL_EIO, NOMEM or 0. */
static int
window_fill(dfb_journal_reader_t *r, uint64_t off, uint64_t limit, size_t need)
{
    size_t want = need > r->wnext ? need : r->wnext;
    if (want > limit - off)
        want = (size_t)(limit - off);
    if (window_reserve(r, want) != 0)
        return DFB_JOURNAL_NOMEM;
    ssize_t got = jr_pread_full(r->fd, r->win, want, off);
    if (got < 0)
        return DFB_JOURNAL_EIO;
    r->woff = off;
    r->wlen = (size_t)got;
    if (r->wnext < WINDOW)
        r->wnext *= 2;
    return 0;
}

/*  jr_read_record of the record at r->off through the read window: the
    same results, and on RR_OK *payload (valid until the next call) and
    *len. A record larger than the window is read on its own into r->buf. */
static int
window_record(dfb_journal_reader_t *r, uint64_t limit, const uint8_t **payload, uint32_t *len)
{
    uint64_t off = r->off;
    if (off + REC_HEAD > limit)
        return RR_SHORT;
    int rc;
    if (!(off >= r->woff && off + REC_HEAD <= r->woff + r->wlen) &&
        (rc = window_fill(r, off, limit, REC_HEAD)) != 0)
        return rc;
    if (r->wlen < REC_HEAD)
        return RR_SHORT; /* the file is shorter than its committed size */
    const uint8_t *h = r->win + (off - r->woff);
    uint32_t n = rd32(h), crc = rd32(h + 4);
    if (n == 0 || n > MAX_PAYLOAD)
        return DFB_JOURNAL_CORRUPT;
    if (off + REC_HEAD + n > limit)
        return RR_SHORT;
    if (REC_HEAD + (uint64_t)n > WINDOW) {
        rc = jr_read_record(r->fd, off, limit, &r->buf);
        *payload = r->buf.data;
        *len = (uint32_t)r->buf.len;
        return rc;
    }
    if (off + REC_HEAD + n > r->woff + r->wlen) {
        if ((rc = window_fill(r, off, limit, REC_HEAD + n)) != 0)
            return rc;
        if (r->wlen < REC_HEAD + n)
            return RR_SHORT;
        h = r->win;
    }
    *payload = h + REC_HEAD;
    *len = n;
    return dfb_crc32c(0, h + REC_HEAD, n) == crc ? RR_OK : DFB_JOURNAL_CORRUPT;
}

int
dfb_journal_reader_filter(dfb_journal_reader_t *r, char *const *topics, const size_t *lens,
                          uint32_t n)
{
    free(r->seqs_a);
    free(r->seqs_b);
    r->seqs_a = r->seqs_b = NULL;
    r->nf = 0;
    if (!n)
        return 0;
    r->seqs_a = calloc(n, sizeof *r->seqs_a);
    r->seqs_b = calloc(n, sizeof *r->seqs_b);
    if (!r->seqs_a || !r->seqs_b)
        return DFB_JOURNAL_NOMEM;
    r->ftopics = topics;
    r->flens = lens;
    r->nf = n;
    return 0;
}

uint64_t
dfb_journal_reader_skipped(const dfb_journal_reader_t *r)
{
    return r->skipped;
}

/*  The filter topics' seqs before the segment starting at first, from its
    header, into out[nf] (0 for a topic it does not list). 0, or -1 when
    the header cannot be read (then nothing is skipped). */
static int
filter_seqs(dfb_journal_reader_t *r, uint64_t first, uint64_t *out)
{
    char path[4096];
    jr_seg_path(r->j, first, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    uint64_t f;
    int ok = jr_read_record(fd, 0, UINT64_MAX, &r->hbuf) == RR_OK &&
             jr_parse_header(r->hbuf.data, r->hbuf.len, NULL, &f, NULL) == 0 && f == first;
    close(fd);
    if (!ok)
        return -1;
    const uint8_t *p = r->hbuf.data;
    size_t off = 2 + 4 + rd32(p + 2) + 16;
    uint32_t n = rd32(p + off);
    off += 4;
    memset(out, 0, r->nf * sizeof *out);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t tl = rd32(p + off);
        for (uint32_t k = 0; k < r->nf; k++)
            if (r->flens[k] == tl && memcmp(p + off + 4, r->ftopics[k], tl) == 0)
                out[k] = rd64(p + off + 4 + tl);
        off += 4 + tl + 8;
    }
    return 0;
}

/*  With a filter: from the segment starting at next, skips every closed
    segment whose header and its successor's give the same seq to each
    filter topic (it holds none of their records); the reader then stands
    as if it had read them (last = the successor's first gseq - 1).
    Returns the first segment to read. */
static uint64_t
skip_segments(dfb_journal_reader_t *r, uint64_t next)
{
    if (!r->nf)
        return next;
    int have_a = 0;
    for (;;) {
        dfb_journal_t *j = r->j;
        uint64_t nn = 0;
        pthread_mutex_lock(&j->mu);
        for (size_t k = 0; k < j->nsegs && !nn; k++)
            if (j->segs[k].first_gseq > next)
                nn = j->segs[k].first_gseq;
        pthread_mutex_unlock(&j->mu);
        if (!nn)
            return next; /* the active segment: read it */
        if (!have_a && filter_seqs(r, next, r->seqs_a) != 0)
            return next;
        if (filter_seqs(r, nn, r->seqs_b) != 0)
            return next;
        if (memcmp(r->seqs_a, r->seqs_b, r->nf * sizeof *r->seqs_a) != 0)
            return next; /* a filter topic has records in it */
        /* nn's header starts right after next's records: gseqs are
           contiguous unless recovery left a hole, which the caller's
           contiguity check reports on its own (last stays next's end). */
        r->skipped++;
        r->last = nn - 1;
        uint64_t *t = r->seqs_a;
        r->seqs_a = r->seqs_b;
        r->seqs_b = t;
        have_a = 1;
        next = nn;
    }
}

/*  With a filter: reads only the head of the event record at r->off (its
    fixed part and topic, not the body) and, when its topic is not in the
    filter, steps over it (1: the record is passed, as if read). 0 means
    read it whole: a match, or anything unusual (a header record, a bad
    length, a gseq not above the last, a topic over DFB_TOPICS_MAX_LEN),
    which the full read checks and reports. A record stepped over is not
    CRC-checked: it is never returned. */
static int
skip_record(dfb_journal_reader_t *r, uint64_t limit)
{
    uint8_t h[REC_HEAD + EVENT_FIXED];
    char topic[DFB_TOPICS_MAX_LEN];
    if (r->off + sizeof h > limit || jr_pread_full(r->fd, h, sizeof h, r->off) != (ssize_t)sizeof h)
        return 0;
    const uint8_t *p = h + REC_HEAD;
    uint32_t len = rd32(h), tl = rd32(p + 25);
    uint64_t gseq = rd64(p + 1);
    if (p[0] != 'E' || len < EVENT_FIXED || len > MAX_PAYLOAD || r->off + REC_HEAD + len > limit ||
        gseq <= r->last || tl > DFB_TOPICS_MAX_LEN || EVENT_FIXED + (uint64_t)tl > len)
        return 0;
    if (jr_pread_full(r->fd, topic, tl, r->off + sizeof h) != (ssize_t)tl)
        return 0;
    for (uint32_t k = 0; k < r->nf; k++)
        if (r->flens[k] == tl && memcmp(r->ftopics[k], topic, tl) == 0)
            return 0;
    r->off += REC_HEAD + len;
    r->last = gseq;
    r->passed += REC_HEAD + len;
    return 1;
}

uint64_t
dfb_journal_reader_last(const dfb_journal_reader_t *r)
{
    return r->last;
}

uint64_t
dfb_journal_reader_take_passed(dfb_journal_reader_t *r)
{
    uint64_t n = r->passed;
    r->passed = 0;
    return n;
}

/*  Index of the segment starting at first, or -1. Caller holds mu. */
static long
find_seg(const dfb_journal_t *j, uint64_t first)
{
    size_t lo = 0, hi = j->nsegs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (j->segs[mid].first_gseq < first)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < j->nsegs && j->segs[lo].first_gseq == first ? (long)lo : -1;
}

/*  reader_open of the segment starting at first, found in the list a moment
    ago. Retention (on the sync thread) may delete it between that lookup
    and the open: ENOENT for a segment no longer listed is
    DFB_JOURNAL_READER_GONE (the caller seeks again), not an I/O error. */
static int
reader_open_listed(dfb_journal_reader_t *r, uint64_t first, uint64_t off)
{
    if (reader_open(r, first, off) == 0)
        return 0;
    if (errno != ENOENT)
        return DFB_JOURNAL_EIO;
    pthread_mutex_lock(&r->j->mu);
    int gone = find_seg(r->j, first) < 0;
    pthread_mutex_unlock(&r->j->mu);
    return gone ? DFB_JOURNAL_READER_GONE : DFB_JOURNAL_EIO;
}

/*  Builds the sparse index of the closed segment starting at first (size
    committed bytes) when it has none (a segment of an earlier run: only
    the one recovery scanned has one), so that a seek into it, and every
    later request of a late joiner reading on, starts at most INDEX_EVERY
    records before its position instead of at the segment's start. Only
    the record lengths and gseqs are read, in windows, through r->win; the
    walk stops at the first record that does not chain (a bad length, a tag
    or gseq out of order): seeks beyond it start at the last mark and the
    reader meets and reports the damage as before. Without memory, or when
    the segment went meanwhile, nothing changes. */
static void
index_segment(dfb_journal_reader_t *r, uint64_t first, uint64_t size)
{
    if (window_reserve(r, WINDOW) != 0)
        return;
    char path[4096];
    jr_seg_path(r->j, first, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    mark_t *marks = NULL;
    size_t n = 0, cap = 0;
    uint64_t off = 0, woff = 0, wlen = 0, last = 0, events = 0;
    int ok = 1;
    while (ok && off + REC_HEAD + 9 <= size) {
        if (off < woff || off + REC_HEAD + 9 > woff + wlen) {
            uint64_t want = size - off < WINDOW ? size - off : WINDOW;
            ssize_t got = jr_pread_full(fd, r->win, (size_t)want, off);
            if (got < REC_HEAD + 9)
                break;
            woff = off;
            wlen = (uint64_t)got;
        }
        const uint8_t *h = r->win + (off - woff);
        uint32_t len = rd32(h);
        if (len < 9 || len > MAX_PAYLOAD || off + REC_HEAD + len > size)
            break;
        if (off == 0) {
            ok = h[REC_HEAD] == 'H';
        } else {
            uint64_t g = rd64(h + REC_HEAD + 1);
            if (h[REC_HEAD] != 'E' || len < EVENT_FIXED || g <= last)
                break;
            if (events++ % INDEX_EVERY == 0) {
                if (n == cap) {
                    size_t c = cap ? cap * 2 : 64;
                    mark_t *m = realloc(marks, c * sizeof *m);
                    if (!m) {
                        ok = 0;
                        break;
                    }
                    marks = m;
                    cap = c;
                }
                marks[n++] = (mark_t){g, off};
            }
            last = g;
        }
        off += REC_HEAD + len;
    }
    close(fd);
    r->wlen = 0; /* the window held another file's bytes */
    dfb_journal_t *j = r->j;
    if (ok && n) {
        pthread_mutex_lock(&j->mu);
        long i = find_seg(j, first);
        if (i >= 0 && (size_t)i + 1 < j->nsegs && !j->segs[i].indexed && j->segs[i].size == size) {
            seg_t *s = &j->segs[i];
            free(s->marks);
            s->marks = marks;
            s->nmarks = n;
            s->capmarks = cap;
            s->indexed = 1;
            marks = NULL;
        }
        pthread_mutex_unlock(&j->mu);
    }
    free(marks);
}

int
dfb_journal_reader_seek_gseq(dfb_journal_reader_t *r, uint64_t from)
{
    dfb_journal_t *j = r->j;
    if (from == 0)
        from = 1;
    for (int attempt = 0;; attempt++) {
        pthread_mutex_lock(&j->mu);
        if (from < j->segs[0].first_gseq) {
            pthread_mutex_unlock(&j->mu);
            return DFB_JOURNAL_GONE;
        }
        size_t i = j->nsegs - 1;
        while (i > 0 && j->segs[i].first_gseq > from)
            i--;
        const seg_t *s = &j->segs[i];
        uint64_t first = s->first_gseq, off = 0, size = s->size;
        int closed = i + 1 < j->nsegs, indexed = s->indexed;
        if (s->indexed)
            for (size_t k = 0; k < s->nmarks && s->marks[k].gseq <= from; k++)
                off = s->marks[k].off;
        pthread_mutex_unlock(&j->mu);
        if (!indexed && closed && attempt == 0 && !r->nf) {
            index_segment(r, first, size);
            pthread_mutex_lock(&j->mu);
            long k = find_seg(j, first);
            if (k >= 0 && j->segs[k].indexed)
                for (size_t m = 0; m < j->segs[k].nmarks && j->segs[k].marks[m].gseq <= from; m++)
                    off = j->segs[k].marks[m].off;
            pthread_mutex_unlock(&j->mu);
        }
        r->min_gseq = from;
        r->last = 0;
        /* With a filter, the segments from here that hold none of its
           topics are not read at all. */
        uint64_t to = skip_segments(r, first);
        if (to != first)
            off = 0;
        if (reader_open(r, to, off) == 0)
            return 0;
        /* Deleted by retention between the lookup and the open: look again
           (retention deletes from the front, so the next lookup says GONE
           or finds a later segment; a loaded machine may lose this race
           more than once). A file missing but still listed is an error. */
        if (errno != ENOENT || attempt >= 8)
            return DFB_JOURNAL_EIO;
        pthread_mutex_lock(&j->mu);
        int listed = find_seg(j, to) >= 0;
        pthread_mutex_unlock(&j->mu);
        if (listed)
            return DFB_JOURNAL_EIO;
    }
}

void
dfb_journal_reader_pos(const dfb_journal_reader_t *r, dfb_journal_pos_t *pos)
{
    *pos = r->at;
}

int
dfb_journal_reader_seek_pos(dfb_journal_reader_t *r, uint64_t from, const dfb_journal_pos_t *pos)
{
    dfb_journal_t *j = r->j;
    if (from == 0 || pos->gseq != from || r->nf)
        return dfb_journal_reader_seek_gseq(r, from);
    pthread_mutex_lock(&j->mu);
    int gone = from < j->segs[0].first_gseq, listed = find_seg(j, pos->first) >= 0;
    pthread_mutex_unlock(&j->mu);
    if (gone)
        return DFB_JOURNAL_GONE;
    /* Deleted by retention (or about to be: then the open fails): seek. */
    if (!listed || reader_open(r, pos->first, pos->off) != 0)
        return dfb_journal_reader_seek_gseq(r, from);
    r->min_gseq = from;
    r->last = 0;
    return 0;
}

/*  seq of topic before the segment starting at first (from its header).
    0 or -1 (unreadable: the segment was deleted meanwhile). */
static int
header_seq(dfb_journal_reader_t *r, uint64_t first, const char *topic, size_t len, uint64_t *seq)
{
    if (reader_open(r, first, 0) != 0)
        return -1;
    uint64_t f;
    if (jr_read_record(r->fd, 0, UINT64_MAX, &r->buf) != RR_OK ||
        jr_parse_header(r->buf.data, r->buf.len, NULL, &f, NULL) != 0)
        return -1;
    /* Walk the topic list again, without a map: match by name. */
    const uint8_t *p = r->buf.data;
    size_t off = 2 + 4 + rd32(p + 2) + 16;
    uint32_t n = rd32(p + off);
    off += 4;
    *seq = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t tl = rd32(p + off);
        if (tl == len && memcmp(p + off + 4, topic, len) == 0) {
            *seq = rd64(p + off + 4 + tl);
            break;
        }
        off += 4 + tl + 8;
    }
    return 0;
}

int
dfb_journal_reader_seek_topic(dfb_journal_reader_t *r, const char *topic, size_t len, uint64_t from)
{
    dfb_journal_t *j = r->j;
    if (from == 0)
        from = 1;
    pthread_mutex_lock(&j->mu);
    size_t n = j->nsegs;
    uint64_t *firsts = malloc(n * sizeof *firsts);
    for (size_t i = 0; firsts && i < n; i++)
        firsts[i] = j->segs[i].first_gseq;
    pthread_mutex_unlock(&j->mu);
    if (!firsts)
        return DFB_JOURNAL_NOMEM;
    /* Newest first: the segment whose header seq is below from holds seq from
       (or the topic's later seqs). */
    int rc = DFB_JOURNAL_GONE;
    for (size_t k = n; k-- > 0;) {
        uint64_t before;
        if (header_seq(r, firsts[k], topic, len, &before) != 0)
            break; /* deleted by retention meanwhile: older ones are gone too */
        if (before < from) {
            rc = reader_open(r, firsts[k], 0) == 0 ? 0 : DFB_JOURNAL_EIO;
            break;
        }
    }
    free(firsts);
    r->min_gseq = 0;
    r->last = 0;
    return rc;
}

/*  Records the range [from, to] as lost for the caller and counts it. */
static int
reader_lost(dfb_journal_reader_t *r, uint64_t from, uint64_t to, const char *why)
{
    dfb_journal_t *j = r->j;
    if (from < r->min_gseq)
        from = r->min_gseq;
    r->lost_from = from;
    r->lost_to = to;
    dfb_warn("journal: reader: %s in segment %" PRIu64 " at offset %" PRIu64 ": gseq %" PRIu64
             "..%" PRIu64 " cannot be read",
             why, r->first, r->off, from, to);
    pthread_mutex_lock(&j->mu);
    j->st.read_errors++;
    pthread_mutex_unlock(&j->mu);
    return DFB_JOURNAL_CORRUPT;
}

int
dfb_journal_reader_next(dfb_journal_reader_t *r, dfb_journal_rec_t *rec)
{
    dfb_journal_t *j = r->j;
    r->passed_now = 0;
    if (r->fd < 0)
        return DFB_JOURNAL_EIO;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        long i = find_seg(j, r->first);
        uint64_t limit = UINT64_MAX, next = 0, head = j->st.head_gseq;
        if (i >= 0) {
            limit = j->segs[i].size;
            if ((size_t)i + 1 < j->nsegs)
                next = j->segs[i + 1].first_gseq;
        } else {
            for (size_t k = 0; k < j->nsegs && !next; k++)
                if (j->segs[k].first_gseq > r->first)
                    next = j->segs[k].first_gseq;
        }
        pthread_mutex_unlock(&j->mu);
        if (i < 0) { /* deleted while we read it: the file is final */
            struct stat sb;
            if (fstat(r->fd, &sb) == 0)
                limit = (uint64_t)sb.st_size;
        }
        if (r->nf && r->off > 0 && skip_record(r, limit)) {
            /* Bounded work per call: the caller checks its time budget. */
            if (++r->passed_now >= PASS_PER_CALL) {
                r->passed_now = 0;
                return DFB_JOURNAL_PASSED;
            }
            continue;
        }
        const uint8_t *p = NULL;
        uint32_t plen = 0;
        int rc = window_record(r, limit, &p, &plen);
        if (rc == DFB_JOURNAL_EIO) {
            dfb_warn("journal: reader: segment %" PRIu64 " at offset %" PRIu64 ": %s", r->first,
                     r->off, strerror(errno));
            pthread_mutex_lock(&j->mu);
            j->st.read_errors++;
            pthread_mutex_unlock(&j->mu);
            return DFB_JOURNAL_EIO;
        }
        if (rc == DFB_JOURNAL_NOMEM)
            return DFB_JOURNAL_NOMEM;
        if (rc == RR_SHORT && r->off < limit)
            rc = DFB_JOURNAL_CORRUPT; /* limit is committed: a length that overruns it is bad */
        if (rc == RR_OK) {
            if (r->off == 0 && p[0] == 'H') {
                r->off += REC_HEAD + plen;
                continue;
            }
            if (jr_parse_event(p, plen, rec) == 0 && rec->gseq > r->last) {
                uint64_t at = r->off;
                r->off += REC_HEAD + plen;
                r->last = rec->gseq;
                if (rec->gseq < r->min_gseq)
                    continue;
                r->at = (dfb_journal_pos_t){rec->gseq, r->first, at};
                return 1;
            }
            rc = DFB_JOURNAL_CORRUPT;
        }
        if (rc == DFB_JOURNAL_CORRUPT) {
            /* Never stuck: the rest of a closed segment is reported lost
               and reading goes on with the next one; in the active
               segment, everything up to the head is. */
            uint64_t from = r->last ? r->last + 1 : r->first;
            /* A range wholly below the position asked for is not the
               caller's loss: skip it without a report. */
            if (next) {
                int lost =
                    next - 1 < r->min_gseq ? 0 : reader_lost(r, from, next - 1, "corrupt record");
                int orc = reader_open_listed(r, next, 0);
                if (orc != 0)
                    return orc;
                r->last = next - 1;
                if (!lost)
                    continue;
                return lost;
            }
            r->off = limit;
            if (head < r->min_gseq) {
                r->last = head;
                continue;
            }
            int lost = reader_lost(r, from, head, "corrupt record");
            r->last = head;
            return lost;
        }
        if (!next)
            return 0;
        /* gseqs are contiguous across segments unless recovery left a
           hole: a jump over a segment that still exists is such a hole
           (reported), a jump after a deleted one means retention removed
           segments while this reader was behind. */
        if (r->last && next != r->last + 1) {
            if (i < 0)
                return DFB_JOURNAL_READER_GONE;
            uint64_t from = r->last + 1;
            int orc = reader_open_listed(r, next, 0);
            if (orc != 0)
                return orc;
            r->last = next - 1;
            if (next - 1 < r->min_gseq)
                continue;
            return reader_lost(r, from, next - 1, "a gap between segments");
        }
        next = skip_segments(r, next);
        int orc = reader_open_listed(r, next, 0);
        if (orc != 0)
            return orc;
    }
}

void
dfb_journal_reader_lost(const dfb_journal_reader_t *self, uint64_t *from, uint64_t *to)
{
    *from = self->lost_from;
    *to = self->lost_to;
}

/* ---- dedupe recovery ------------------------------------------------------ */

/*  Counts the records of the segment starting at first (lengths only). */
static uint64_t
count_records(dfb_journal_t *j, uint64_t first)
{
    char path[4096];
    jr_seg_path(j, first, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat sb;
    uint64_t n = 0, off = 0, size = fstat(fd, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    uint8_t h[REC_HEAD];
    while (off + REC_HEAD <= size && jr_pread_full(fd, h, REC_HEAD, off) == REC_HEAD) {
        off += REC_HEAD + rd32(h);
        n++;
    }
    close(fd);
    return n ? n - 1 : 0; /* the header */
}

void
dfb_journal_scan_tail(dfb_journal_t *j, size_t max, int64_t since_ms,
                      void (*fn)(void *arg, const dfb_journal_rec_t *rec), void *arg)
{
    if (max == 0)
        return;
    /* Writer thread: the list only shrinks meanwhile (retention). */
    pthread_mutex_lock(&j->mu);
    size_t n = j->nsegs;
    uint64_t *firsts = malloc(n * sizeof *firsts);
    int64_t *mtimes = malloc(n * sizeof *mtimes);
    for (size_t i = 0; firsts && mtimes && i < n; i++) {
        firsts[i] = j->segs[i].first_gseq;
        mtimes[i] = j->segs[i].mtime_ms;
    }
    pthread_mutex_unlock(&j->mu);
    dfb_journal_reader_t *r = dfb_journal_reader_new(j);
    if (firsts && mtimes && r) {
        /* Walk back until max records or segments last written before since. */
        size_t start = n - 1;
        uint64_t total = count_records(j, firsts[start]);
        while (start > 0 && total < max && mtimes[start - 1] >= since_ms)
            total += count_records(j, firsts[--start]);
        uint64_t skip = total > max ? total - max : 0;
        dfb_journal_rec_t rec;
        if (reader_open(r, firsts[start], 0) == 0) {
            r->min_gseq = 0;
            for (int rc; (rc = dfb_journal_reader_next(r, &rec)) != 0;) {
                if (rc == DFB_JOURNAL_CORRUPT)
                    continue; /* reported; the rest is still worth having */
                if (rc != 1)
                    break;
                if (skip) {
                    skip--;
                    continue;
                }
                if (rec.ts >= since_ms)
                    fn(arg, &rec);
            }
        }
    }
    dfb_journal_reader_destroy(&r);
    free(firsts);
    free(mtimes);
}
