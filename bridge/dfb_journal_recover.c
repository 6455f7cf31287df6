/*  dfb_journal_recover: open-time recovery of the journal folder: lists the
    segments, checks or rebuilds their headers, moves damaged files aside,
    cuts a bad tail and keeps the EPOCH file (rules in dfb_journal.h). */
#define _GNU_SOURCE
#include "dfb_journal_priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dfb_log.h"

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/*  Lists the segment files' first gseqs, sorted; anything else in the
    folder (LOCK, EPOCH, damaged/, strays) is left alone. Count or -1. */
static long
list_segments(const char *jdir, uint64_t **out)
{
    DIR *d = opendir(jdir);
    if (!d)
        return -1;
    size_t n = 0, cap = 0;
    uint64_t *v = NULL;
    for (struct dirent *e; (e = readdir(d));) {
        const char *name = e->d_name;
        size_t len = strlen(name);
        if (len != 24 || strcmp(name + 20, ".dfj") != 0)
            continue;
        uint64_t g = 0;
        int ok = 1;
        for (int i = 0; i < 20; i++) {
            if (name[i] < '0' || name[i] > '9')
                ok = 0;
            g = g * 10 + (uint64_t)(name[i] - '0');
        }
        if (!ok)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *w = realloc(v, cap * sizeof *w);
            if (!w) {
                free(v);
                closedir(d);
                return -1;
            }
            v = w;
        }
        v[n++] = g;
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof *v, cmp_u64);
    *out = v;
    return (long)n;
}

/*  A file mapped read-only for recovery's scans (p NULL when empty). */
typedef struct {
    int fd;
    const uint8_t *p;
    uint64_t size;
    int64_t mtime_ms;
} map_t;

static int
map_open(const char *path, int rw, map_t *m)
{
    memset(m, 0, sizeof *m);
    m->fd = open(path, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    struct stat sb;
    if (m->fd < 0 || fstat(m->fd, &sb) != 0) {
        int e = errno;
        if (m->fd >= 0)
            close(m->fd);
        m->fd = -1;
        errno = e;
        return -1;
    }
    m->size = (uint64_t)sb.st_size;
    m->mtime_ms = mtime_ms(&sb);
    if (m->size) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_SHARED, m->fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(m->fd);
            m->fd = -1;
            errno = e;
            return -1;
        }
        m->p = p;
    }
    return 0;
}

static void
map_unmap(map_t *m)
{
    if (m->p)
        munmap((void *)m->p, m->size);
    m->p = NULL;
}

static void
map_close(map_t *m)
{
    map_unmap(m);
    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
}

/*  The record at off: RR_OK (payload *pl of *len bytes), RR_SHORT (cut
    short by the end), DFB_JOURNAL_CORRUPT (absurd length or CRC). */
static int
mem_record(const map_t *m, uint64_t off, const uint8_t **pl, uint32_t *len)
{
    if (off + REC_HEAD > m->size)
        return RR_SHORT;
    uint32_t n = rd32(m->p + off);
    if (n == 0 || n > MAX_PAYLOAD)
        return DFB_JOURNAL_CORRUPT;
    if (off + REC_HEAD + n > m->size)
        return RR_SHORT;
    if (dfb_crc32c(0, m->p + off + REC_HEAD, n) != rd32(m->p + off + 4))
        return DFB_JOURNAL_CORRUPT;
    *pl = m->p + off + REC_HEAD;
    *len = n;
    return RR_OK;
}

/*  Raises topics' seqs to at least rec's (creating the topic). */
static void
topics_raise(dfb_topics_t *topics, const dfb_journal_rec_t *rec)
{
    dfb_topic_t *t = topics ? dfb_topics_get(topics, rec->topic, rec->topic_len, 1) : NULL;
    if (t && rec->seq > t->seq)
        t->seq = rec->seq;
}

/*  Byte by byte from off: every whole, CRC-valid event record with gseq
    above min (what a corrupt stretch may still hold). Returns the offset
    of the first one (m->size when none) and raises *max_gseq and topics. */
static uint64_t
mem_resync(const map_t *m, uint64_t off, uint64_t min, uint64_t *max_gseq, dfb_topics_t *topics)
{
    uint64_t first = m->size;
    while (off + MIN_RECORD <= m->size) {
        uint32_t n = rd32(m->p + off);
        const uint8_t *pl;
        uint32_t len;
        dfb_journal_rec_t rec;
        if (n >= EVENT_FIXED && n <= MAX_PAYLOAD && off + REC_HEAD + n <= m->size &&
            m->p[off + REC_HEAD] == 'E' && rd64(m->p + off + REC_HEAD + 1) > min &&
            mem_record(m, off, &pl, &len) == RR_OK && jr_parse_event(pl, len, &rec) == 0) {
            if (first == m->size)
                first = off;
            if (rec.gseq > *max_gseq)
                *max_gseq = rec.gseq;
            topics_raise(topics, &rec);
            off += REC_HEAD + len;
            continue;
        }
        off++;
    }
    return first;
}

/*  A sequential walk of the event records from off. */
typedef struct {
    uint64_t end;  /* offset after the last good record */
    uint64_t last; /* its gseq (the walk's start value when none) */
    int stop;      /* RR_SHORT at a cut-short record, DFB_JOURNAL_CORRUPT otherwise */
    int whole;     /* the bad record has a plausible length inside the file */
} walk_t;

static void
mem_walk(const map_t *m, uint64_t off, uint64_t last, dfb_topics_t *topics, seg_t *s, walk_t *w)
{
    for (;;) {
        const uint8_t *pl;
        uint32_t len;
        dfb_journal_rec_t rec;
        int r = off >= m->size ? RR_SHORT : mem_record(m, off, &pl, &len);
        if (r == RR_OK && (jr_parse_event(pl, len, &rec) != 0 || rec.gseq <= last))
            r = DFB_JOURNAL_CORRUPT;
        if (r != RR_OK) {
            w->end = off;
            w->last = last;
            w->stop = r;
            uint32_t n = off + REC_HEAD <= m->size ? rd32(m->p + off) : 0;
            w->whole = r == DFB_JOURNAL_CORRUPT && n > 0 && n <= MAX_PAYLOAD &&
                       off + REC_HEAD + n <= m->size;
            return;
        }
        if (topics) {
            dfb_topic_t *t = dfb_topics_get(topics, rec.topic, rec.topic_len, 1);
            if (t)
                t->seq = rec.seq;
        }
        if (s)
            jr_seg_count(s, rec.gseq, off);
        last = rec.gseq;
        off += REC_HEAD + len;
    }
}

/*  Header of a mapped segment: 0 with its length in *hlen, or -1. */
static int
mem_header(const map_t *m, char *epoch, uint64_t *first, dfb_topics_t *topics, uint64_t *hlen)
{
    const uint8_t *pl;
    uint32_t len;
    if (!m->p || mem_record(m, 0, &pl, &len) != RR_OK ||
        jr_parse_header(pl, len, epoch, first, topics) != 0)
        return -1;
    *hlen = REC_HEAD + len;
    return 0;
}

/*  Moves jdir/name aside to jdir/damaged/name.reason (or, keep, links it
    there and leaves the original). The destination in out. 0 or -1. */
static int
move_aside(dfb_journal_t *j, const char *name, const char *reason, int keep, char *out, size_t cap)
{
    char dir[4096], src[4096];
    snprintf(dir, sizeof dir, "%s/damaged", j->jdir);
    snprintf(src, sizeof src, "%s/%s", j->jdir, name);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return -1;
    for (int k = 0; k < 1000; k++) {
        int w = k == 0 ? snprintf(out, cap, "%s/%s.%s", dir, name, reason)
                       : snprintf(out, cap, "%s/%s.%s.%d", dir, name, reason, k);
        if (w >= (int)cap) {
            errno = ENAMETOOLONG;
            return -1;
        }
        if (access(out, F_OK) == 0)
            continue;
        int rc = keep ? link(src, out) : rename(src, out);
        if (rc != 0)
            return -1;
        if (jr_fsync_dir(dir) != 0 || jr_fsync_dir(j->jdir) != 0)
            return -1;
        j->st.damaged_files++;
        return 0;
    }
    errno = EEXIST;
    return -1;
}

/*  Writes len bytes to a new file jdir/damaged/name.reason. 0 or -1. */
static int
save_aside(dfb_journal_t *j, const char *name, const char *reason, const void *data, size_t len,
           char *out, size_t cap)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/damaged", j->jdir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return -1;
    if (snprintf(out, cap, "%s/%s.%s", dir, name, reason) >= (int)cap) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    int rc = jr_write_all(fd, data, len) == 0 && fdatasync(fd) == 0 ? 0 : -1;
    int e = errno;
    close(fd);
    if (rc == 0 && jr_fsync_dir(dir) != 0)
        return -1;
    errno = e;
    return rc;
}

/*  The EPOCH file: 1 (valid, copied to epoch) or 0. */
static int
read_epoch_file(const char *jdir, char *epoch)
{
    char path[4096], text[80];
    snprintf(path, sizeof path, "%s/EPOCH", jdir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = jr_pread_full(fd, text, sizeof text, 0);
    close(fd);
    if (n < 2 || n > 64 || text[n - 1] != '\n')
        return 0;
    for (ssize_t i = 0; i < n - 1; i++)
        if (text[i] <= ' ' || text[i] > '~')
            return 0;
    memcpy(epoch, text, (size_t)n - 1);
    epoch[n - 1] = '\0';
    return 1;
}

/*  Writes the EPOCH file atomically (tmp, fdatasync, rename, dir fsync). */
static int
write_epoch_file(dfb_journal_t *j)
{
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/EPOCH.tmp", j->jdir);
    snprintf(path, sizeof path, "%s/EPOCH", j->jdir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    char text[80];
    int n = snprintf(text, sizeof text, "%s\n", j->epoch);
    int rc = jr_write_all(fd, text, (size_t)n) == 0 && fdatasync(fd) == 0 ? 0 : -1;
    close(fd);
    if (rc != 0 || rename(tmp, path) != 0 || jr_fsync_dir(j->jdir) != 0)
        return -1;
    return 0;
}

/*  Topic seqs after the (readable) segment starting at first: its header's
    advanced by its records. 0 or -1. */
static int
topics_after(dfb_journal_t *j, uint64_t first, dfb_topics_t *topics)
{
    char path[4096];
    jr_seg_path(j, first, path, sizeof path);
    map_t m;
    if (map_open(path, 0, &m) != 0)
        return -1;
    uint64_t f, hlen;
    walk_t w;
    int rc = mem_header(&m, NULL, &f, topics, &hlen);
    if (rc == 0)
        mem_walk(&m, hlen, f - 1, topics, NULL, &w);
    map_close(&m);
    return rc;
}

/*  Rewrites segment name (mapped in m) as a rebuilt header followed by its
    bytes from off; the original is kept in damaged/. 0 or -1. */
static int
rewrite_segment(dfb_journal_t *j, const char *name, uint64_t first, const map_t *m, uint64_t off,
                const dfb_topics_t *topics, int64_t now_ms, char *aside, size_t cap)
{
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/%s.repair", j->jdir, name);
    snprintf(path, sizeof path, "%s/%s", j->jdir, name);
    if (jr_build_header(&j->hbuf, j->epoch, first, now_ms, topics) != 0)
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    int rc = jr_write_all(fd, j->hbuf.data, j->hbuf.len) == 0 &&
                     jr_write_all(fd, m->p + off, m->size - off) == 0 && fdatasync(fd) == 0
                 ? 0
                 : -1;
    close(fd);
    /* The original is linked aside before the copy replaces it: a crash at
       any point leaves one of the two under the segment's name. */
    if (rc != 0 || move_aside(j, name, "header", 1, aside, cap) != 0 || rename(tmp, path) != 0 ||
        jr_fsync_dir(j->jdir) != 0)
        return -1;
    return 0;
}

enum { F_OK_HDR, F_BAD, F_FOREIGN, F_MISNAMED };

typedef struct {
    uint64_t first;
    int state;
    char epoch[64];
} found_t;

/*  Recovers the segment files firsts[0..n) (see dfb_journal.h for the
    rules). Returns 0 (recovered: segs, fd, epoch, last_gseq, topics set),
    1 (nothing can be continued without risking a reused number: the
    caller starts a new epoch) or -1 (an I/O or memory error, in err).
    *epoch_bad is set when the EPOCH file must be rewritten. */
static int
recover(dfb_journal_t *j, const uint64_t *firsts, long n, int have_epoch, int *epoch_bad,
        int64_t now_ms, char *err, size_t errlen)
{
    found_t *f = calloc((size_t)n, sizeof *f);
    dfb_topics_t *floor_topics = dfb_topics_new(), *tp = NULL;
    char path[4096], name[64], aside[4200];
    uint64_t floor = 0; /* the highest gseq that may have been used */
    uint64_t known = 0; /* the highest gseq found in a readable record */
    int rc = -1;
    if (!f || !floor_topics) {
        snprintf(err, errlen, "journal: out of memory");
        goto done;
    }
    /* Pass 1: every header. */
    const char *epoch_from = have_epoch ? "EPOCH" : NULL;
    for (long i = 0; i < n; i++) {
        f[i].first = firsts[i];
        jr_seg_path(j, firsts[i], path, sizeof path);
        map_t m;
        uint64_t hf, hlen;
        f[i].state = F_BAD;
        if (map_open(path, 0, &m) == 0 && mem_header(&m, f[i].epoch, &hf, NULL, &hlen) == 0)
            f[i].state = hf == firsts[i] ? F_OK_HDR : F_MISNAMED;
        map_close(&m);
    }
    /* EPOCH names no readable header's epoch: EPOCH is the damaged one. */
    int matches = 0, readable = 0;
    for (long i = 0; have_epoch && i < n; i++)
        if (f[i].state == F_OK_HDR) {
            readable++;
            matches += strcmp(f[i].epoch, j->epoch) == 0;
        }
    if (readable && !matches) {
        dfb_error("journal: %s/EPOCH names epoch %s that no segment has: it is ignored and "
                  "rewritten",
                  j->jdir, j->epoch);
        have_epoch = 0;
        *epoch_bad = 1;
    }
    for (long i = n; !have_epoch && i-- > 0;)
        if (f[i].state == F_OK_HDR) {
            snprintf(j->epoch, sizeof j->epoch, "%s", f[i].epoch);
            have_epoch = 1;
            epoch_from = "the newest segment header";
        }
    if (!have_epoch) {
        rc = n > 0 ? 1 : 1;
        if (n > 0)
            dfb_error("journal: %s: no segment header and no EPOCH file can be read", j->jdir);
        goto done;
    }
    dfb_debug("journal: epoch %s from %s", j->epoch, epoch_from);
    for (long i = 0; i < n; i++)
        if (f[i].state == F_OK_HDR && strcmp(f[i].epoch, j->epoch) != 0)
            f[i].state = F_FOREIGN;

    /* Pass 2: keep, rebuild or move aside each file, oldest first. */
    for (long i = 0; i < n; i++) {
        uint64_t first = firsts[i], next = i + 1 < n ? firsts[i + 1] : 0;
        snprintf(name, sizeof name, "%020" PRIu64 ".dfj", first);
        jr_seg_path(j, first, path, sizeof path);
        map_t m;
        if (map_open(path, 0, &m) != 0) {
            snprintf(err, errlen, "journal: cannot read %s: %s", path, strerror(errno));
            goto done;
        }
        if (f[i].state == F_OK_HDR) {
            seg_t *s = jr_push_seg(j, first);
            if (!s) {
                map_close(&m);
                snprintf(err, errlen, "journal: out of memory");
                goto done;
            }
            s->size = m.size;
            s->mtime_ms = m.mtime_ms;
            map_close(&m);
            continue;
        }
        if (f[i].state == F_FOREIGN) {
            map_close(&m);
            if (move_aside(j, name, "foreign-epoch", 0, aside, sizeof aside) != 0)
                goto io_error;
            dfb_error("journal: %s belongs to epoch %s, not %s: moved to %s", path, f[i].epoch,
                      j->epoch, aside);
            j->st.damaged_bytes += m.size;
            continue;
        }
        /* Misnamed or unreadable header: what do its records say? */
        uint64_t max_gseq = 0, min = f[i].state == F_MISNAMED ? 0 : first - 1;
        dfb_topics_t *seen = f[i].state == F_MISNAMED ? floor_topics : NULL;
        uint64_t start = mem_resync(&m, 0, min, &max_gseq, seen);
        if (f[i].state == F_MISNAMED || start == m.size) {
            /* Nothing to keep. Its numbers stay used: its name says gseqs
               before first exist, and whatever it may have held (at most
               one record per MIN_RECORD bytes) must not be given again. */
            uint64_t bound = first - 1 + m.size / MIN_RECORD;
            if (next && bound >= next)
                bound = next - 1;
            if (f[i].state == F_MISNAMED) {
                bound = max_gseq;
                if (max_gseq > known)
                    known = max_gseq;
            }
            if (bound > floor)
                floor = bound;
            if (first - 1 > floor)
                floor = first - 1;
            uint64_t size = m.size;
            map_close(&m);
            const char *why = f[i].state == F_MISNAMED ? "misnamed" : size ? "unreadable" : "empty";
            if (move_aside(j, name, why, 0, aside, sizeof aside) != 0)
                goto io_error;
            j->st.damaged_bytes += size;
            if (f[i].state == F_MISNAMED)
                dfb_error("journal: %s: its header names another first gseq: moved to %s (%" PRIu64
                          " bytes, records up to gseq %" PRIu64 ")",
                          path, aside, size, max_gseq);
            else if (bound >= first)
                dfb_error("journal: %s: no readable header or record: moved to %s (%" PRIu64
                          " bytes lost, gseq %" PRIu64 "..%" PRIu64 " at most)",
                          path, aside, size, first, bound);
            else
                dfb_warn("journal: %s: no complete header and no record (%" PRIu64
                         " bytes, a crash while creating it): moved to %s",
                         path, size, aside);
            continue;
        }
        /* Records from `start` on: rebuild the header. Its topic seqs follow
           from the previous segment, or for the first segment of an epoch
           are all 0, or follow from the next header and this file's records. */
        dfb_topics_destroy(&tp);
        tp = dfb_topics_new();
        int derived = 0;
        if (!tp) {
            map_close(&m);
            snprintf(err, errlen, "journal: out of memory");
            goto done;
        }
        if (j->nsegs > 0)
            derived = topics_after(j, j->segs[j->nsegs - 1].first_gseq, tp) == 0;
        else if (first == 1)
            derived = 1;
        else {
            for (long k = i + 1; k < n && !derived; k++) {
                if (f[k].state != F_OK_HDR)
                    continue;
                map_t mk;
                uint64_t hf, hlen;
                jr_seg_path(j, firsts[k], path, sizeof path);
                if (map_open(path, 0, &mk) == 0 && mem_header(&mk, NULL, &hf, tp, &hlen) == 0)
                    derived = 1;
                map_close(&mk);
            }
            if (derived) {
                /* A topic with a record here had seq (its first here - 1). */
                dfb_topics_t *mine = dfb_topics_new();
                uint64_t off = start, last = first - 1;
                const uint8_t *pl;
                uint32_t len;
                dfb_journal_rec_t rec;
                while (mine && mem_record(&m, off, &pl, &len) == RR_OK &&
                       jr_parse_event(pl, len, &rec) == 0 && rec.gseq > last) {
                    if (!dfb_topics_get(mine, rec.topic, rec.topic_len, 0)) {
                        dfb_topic_t *a = dfb_topics_get(mine, rec.topic, rec.topic_len, 1);
                        dfb_topic_t *b = dfb_topics_get(tp, rec.topic, rec.topic_len, 1);
                        if (a && b)
                            b->seq = rec.seq - 1;
                    }
                    last = rec.gseq;
                    off += REC_HEAD + len;
                }
                dfb_topics_destroy(&mine);
            }
            jr_seg_path(j, first, path, sizeof path);
        }
        if (!derived) {
            map_close(&m);
            dfb_error("journal: %s: header unreadable and not derivable (no earlier segment, "
                      "no later header)",
                      path);
            rc = 1;
            goto done;
        }
        if (rewrite_segment(j, name, first, &m, start, tp, now_ms, aside, sizeof aside) != 0) {
            map_close(&m);
            goto io_error;
        }
        map_close(&m);
        j->st.damaged_bytes += start;
        dfb_error("journal: %s: header unreadable: rebuilt from the file name and %s (no "
                  "record lost; the original, %" PRIu64 " bytes before its first record, is in %s)",
                  path,
                  j->nsegs     ? "the previous segment"
                  : first == 1 ? "the epoch's start"
                               : "the next header",
                  start, aside);
        struct stat sb;
        seg_t *s = jr_push_seg(j, first);
        if (!s || stat(path, &sb) != 0) {
            snprintf(err, errlen, "journal: cannot stat %s: %s", path,
                     s ? strerror(errno) : "out of memory");
            goto done;
        }
        s->size = (uint64_t)sb.st_size;
        s->mtime_ms = mtime_ms(&sb);
    }

    if (j->nsegs == 0) {
        if (floor > 0) {
            dfb_error("journal: %s: no segment can be continued and gseqs up to %" PRIu64
                      " may have been used",
                      j->jdir, floor);
            rc = 1;
            goto done;
        }
        /* Nothing could have been written (an empty first segment): the
           epoch continues from gseq 1. */
        if (jr_new_segment(j, 1, now_ms) != 0) {
            snprintf(err, errlen, "journal: cannot create the first segment in %s: %s", j->jdir,
                     strerror(errno));
            goto done;
        }
        rc = 0;
        goto done;
    }

    /* Pass 3: the newest segment, record by record; a bad tail is cut. */
    seg_t *s = &j->segs[j->nsegs - 1];
    snprintf(name, sizeof name, "%020" PRIu64 ".dfj", s->first_gseq);
    jr_seg_path(j, s->first_gseq, path, sizeof path);
    map_t m;
    uint64_t hf, hlen;
    if (map_open(path, 1, &m) != 0) {
        snprintf(err, errlen, "journal: cannot open %s: %s", path, strerror(errno));
        goto done;
    }
    if (mem_header(&m, NULL, &hf, j->topics, &hlen) != 0) {
        map_close(&m);
        snprintf(err, errlen, "journal: %s: header unreadable after repair", path);
        goto done;
    }
    s->indexed = 1;
    walk_t w;
    mem_walk(&m, hlen, hf - 1, j->topics, s, &w);
    if (w.end < m.size) {
        uint64_t cut = m.size - w.end, found = 0;
        mem_resync(&m, w.end, w.last, &found, floor_topics);
        if (found > known)
            known = found;
        if (w.stop == RR_SHORT && found == 0) {
            dfb_warn("journal: %s: torn tail of %" PRIu64 " bytes at offset %" PRIu64 " cut", path,
                     cut, w.end);
        } else {
            uint64_t upto = found > w.last ? found : w.last + (w.whole ? 1 : 0);
            if (upto > floor)
                floor = upto;
            char reason[64];
            snprintf(reason, sizeof reason, "%" PRIu64 ".tail", w.end);
            if (save_aside(j, name, reason, m.p + w.end, cut, aside, sizeof aside) != 0) {
                map_close(&m);
                goto io_error;
            }
            j->st.damaged_files++;
            j->st.damaged_bytes += cut;
            if (upto > w.last)
                dfb_error("journal: %s: corrupt record at offset %" PRIu64 ": %" PRIu64
                          " bytes cut (copied to %s); gseq %" PRIu64 "..%" PRIu64
                          " lost, the epoch continues after them",
                          path, w.end, cut, aside, w.last + 1, upto);
            else
                dfb_error("journal: %s: corrupt record at offset %" PRIu64 ": %" PRIu64
                          " bytes cut (copied to %s); no gseq lost",
                          path, w.end, cut, aside);
        }
        map_unmap(&m);
        if (ftruncate(m.fd, (off_t)w.end) != 0 || fdatasync(m.fd) != 0) {
            map_close(&m);
            goto io_error;
        }
        j->st.truncated_bytes = cut;
    }
    map_close(&m);
    s->size = w.end;
    j->last_gseq = w.last;
    if (w.last > known)
        known = w.last;
    j->st.recovered_records = s->records;
    for (long i = 0; i < (long)j->nsegs; i++)
        j->st.bytes += j->segs[i].size;
    /* Seqs found in what was set aside are used numbers too. */
    size_t cur = 0;
    for (dfb_topic_t *t; (t = dfb_topics_next(floor_topics, &cur));) {
        dfb_topic_t *u = dfb_topics_get(j->topics, t->topic, t->len, 1);
        if (u && t->seq > u->seq)
            u->seq = t->seq;
    }
    jr_seg_path(j, s->first_gseq, path, sizeof path);
    j->fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (j->fd < 0) {
        snprintf(err, errlen, "journal: cannot open %s: %s", path, strerror(errno));
        goto done;
    }
    if (floor > j->last_gseq) {
        /* Never renumber: continue after every gseq that may have been
           used, in a new segment so that readers see the hole between
           segments (and report it) rather than inside one. Records above
           the newest one whose topic is unknown may have used any
           topic's next seqs: every topic skips that many. */
        uint64_t unknown = floor > known ? floor - known : 0;
        cur = 0;
        for (dfb_topic_t *t; unknown && (t = dfb_topics_next(j->topics, &cur));)
            t->seq += unknown;
        j->last_gseq = floor;
        if (jr_new_segment(j, floor + 1, now_ms) != 0) {
            snprintf(err, errlen, "journal: cannot create a segment in %s: %s", j->jdir,
                     strerror(errno));
            goto done;
        }
    }
    rc = 0;
    goto done;
io_error:
    snprintf(err, errlen, "journal: recovery of %s failed: %s", j->jdir, strerror(errno));
    rc = -1;
done:
    dfb_topics_destroy(&tp);
    dfb_topics_destroy(&floor_topics);
    free(f);
    return rc;
}

/*  Moves every segment file aside (a new epoch is starting). */
static int
set_all_aside(dfb_journal_t *j)
{
    uint64_t *firsts = NULL;
    long n = list_segments(j->jdir, &firsts);
    char name[64], aside[4200];
    int rc = n < 0 ? -1 : 0;
    for (long i = 0; i < n && rc == 0; i++) {
        snprintf(name, sizeof name, "%020" PRIu64 ".dfj", firsts[i]);
        rc = move_aside(j, name, "old-epoch", 0, aside, sizeof aside);
    }
    free(firsts);
    return rc;
}

int
jr_recover(dfb_journal_t *j, const char *new_epoch, int64_t now_ms, char *err, size_t errlen)
{
    uint64_t *firsts = NULL;
    long n = list_segments(j->jdir, &firsts);
    if (n < 0) {
        snprintf(err, errlen, "config: bridge.stateDir: cannot read '%s': %s", j->jdir,
                 strerror(errno));
        return -1;
    }
    int have_epoch = read_epoch_file(j->jdir, j->epoch);
    int epoch_bad = 0;
    int r = n > 0 ? recover(j, firsts, n, have_epoch, &epoch_bad, now_ms, err, errlen) : 1;
    free(firsts);
    if (r < 0)
        return -1;
    if (r == 0) {
        if ((!have_epoch || epoch_bad) && write_epoch_file(j) != 0)
            dfb_warn("journal: cannot write %s/EPOCH: %s", j->jdir, strerror(errno));
        j->st.segments = j->nsegs;
        dfb_info("journal: %s: epoch %s continues at gseq %" PRIu64 " (%zu segments, %" PRIu64
                 " bytes)",
                 j->jdir, j->epoch, j->last_gseq + 1, j->nsegs, j->st.bytes);
    } else {
        /* A new epoch: whatever is left of the old one is kept aside. */
        if (n > 0) {
            if (set_all_aside(j) != 0) {
                snprintf(err, errlen, "journal: cannot move the old segments aside in %s: %s",
                         j->jdir, strerror(errno));
                return -1;
            }
            dfb_error("journal: %s: epoch %s cannot be continued without reusing numbers: new "
                      "epoch %s, the old segments are in %s/damaged",
                      j->jdir, have_epoch ? j->epoch : "(unknown)", new_epoch, j->jdir);
        }
        for (size_t i = 0; i < j->nsegs; i++)
            free(j->segs[i].marks);
        j->nsegs = 0;
        j->st.bytes = 0;
        j->last_gseq = 0;
        if (j->fd >= 0)
            close(j->fd);
        j->fd = -1;
        dfb_topics_destroy(&j->topics);
        j->topics = dfb_topics_new();
        snprintf(j->epoch, sizeof j->epoch, "%s", new_epoch);
        j->st.new_epoch = 1;
        /* EPOCH first: without it a later damaged header could not be
           derived, so a new epoch that cannot write it does not start. */
        const char *what = !j->topics                     ? "out of memory"
                           : write_epoch_file(j) != 0     ? "cannot write EPOCH"
                           : jr_new_segment(j, 1, now_ms) ? "cannot create the first segment"
                                                          : NULL;
        if (what) {
            snprintf(err, errlen, "journal: %s: %s: %s", j->jdir, what, strerror(errno));
            return -1;
        }
        dfb_info("journal: %s: new epoch %s", j->jdir, j->epoch);
    }
    return 0;
}
