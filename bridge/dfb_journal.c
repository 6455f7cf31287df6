/*  dfb_journal: segment files of length+CRC framed records (see
    dfb_journal.h for the contract). File layout, all integers little-endian:

      segment  <dir>/journal/<first gseq, 20 digits>.dfj
      record   u32 payload length | u32 CRC-32C of the payload | payload
      header   'H' u8 version=1 | u32 len + epoch | u64 first gseq | u64 created ms |
               u32 topic count | (u32 len + topic | u64 seq before this segment)*
      event    'E' u64 gseq | u64 seq | u64 ts ms | u32 topic len | u32 type len |
               u32 id len | u32 body len | topic | type | id | body

    Appends go through writev from the caller's buffers (no copy, nothing
    allocated per record once warm). Readers use their own descriptors and
    pread, so replay never blocks the writer for I/O. */
#define _GNU_SOURCE
#include "dfb_journal.h"

#include <dirent.h>
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
#include <time.h>
#include <unistd.h>

#include "dfb_log.h"
#include "dfb_transcode.h"

#define REC_HEAD 8
#define EVENT_FIXED (1 + 8 + 8 + 8 + 4 * 4)
#define MAX_PAYLOAD ((uint32_t)1 << 30)
#define INDEX_EVERY 256 /* sparse index: one (gseq, offset) per this many records */

typedef struct {
    uint64_t gseq, off;
} mark_t;

typedef struct {
    uint64_t first_gseq; /* gseq of its first record (or of the next one when empty) */
    uint64_t size;       /* committed bytes */
    int64_t mtime_ms;    /* last write */
    uint64_t records;    /* known only for segments written or scanned in this run */
    mark_t *marks;       /* sparse index, same */
    size_t nmarks, capmarks;
    int indexed;
} seg_t;

struct dfb_journal {
    dfb_journal_opts_t opts;
    char *jdir;
    char epoch[64];
    int lock_fd;
    int fd; /* active segment, writer */
    pthread_mutex_t mu;
    seg_t *segs; /* oldest first; the last is active */
    size_t nsegs, capsegs;
    dfb_topics_t *topics;
    uint64_t last_gseq;
    int dirty, batch_mode;
    int64_t last_sync_ms;
    dfb_journal_stats_t st;
    dfb_buf_t hbuf;
};

struct dfb_journal_reader {
    dfb_journal_t *j;
    int fd;
    uint64_t first; /* segment open */
    uint64_t off;
    uint64_t min_gseq;
    uint64_t last; /* gseq of the last record read (0 = none yet) */
    dfb_buf_t buf;
};

/* ---- small helpers -------------------------------------------------------- */

static uint32_t s_crc_table[256];
static pthread_once_t s_crc_once = PTHREAD_ONCE_INIT;

static void
crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        s_crc_table[i] = c;
    }
}

uint32_t
dfb_crc32c(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&s_crc_once, crc_init);
    const unsigned char *p = data;
    crc = ~crc;
    while (len--)
        crc = s_crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void
le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void
le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t
rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t
rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static int
buf_reserve(dfb_buf_t *b, size_t n)
{
    if (b->cap >= n)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < n)
        cap *= 2;
    uint8_t *d = realloc(b->data, cap);
    if (!d)
        return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

static int
buf_put(dfb_buf_t *b, const void *p, size_t n)
{
    if (buf_reserve(b, b->len + n) != 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static int64_t
wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
seg_path(const dfb_journal_t *j, uint64_t first, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%020" PRIu64 ".dfj", j->jdir, first);
}

static ssize_t
pread_full(int fd, void *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/*  Reads the record at off (not beyond limit) into buf. Returns 1 (payload
    in buf->data, length buf->len), 0 when the record is incomplete before
    limit (a torn tail or the head), -1 when corrupt (bad length or CRC) or
    on an I/O error. */
static int
read_record(int fd, uint64_t off, uint64_t limit, dfb_buf_t *buf)
{
    uint8_t h[REC_HEAD];
    if (off + REC_HEAD > limit)
        return 0;
    ssize_t r = pread_full(fd, h, REC_HEAD, off);
    if (r < 0)
        return -1;
    if (r < REC_HEAD)
        return 0;
    uint32_t len = rd32(h), crc = rd32(h + 4);
    if (len == 0 || len > MAX_PAYLOAD)
        return -1;
    if (off + REC_HEAD + len > limit)
        return 0;
    if (buf_reserve(buf, len) != 0)
        return -1;
    r = pread_full(fd, buf->data, len, off + REC_HEAD);
    if (r < 0)
        return -1;
    if ((size_t)r < len)
        return 0;
    buf->len = len;
    return dfb_crc32c(0, buf->data, len) == crc ? 1 : -1;
}

/*  Decodes an event payload. 0, or -1 when it is not a well-formed event. */
static int
parse_event(const uint8_t *p, size_t len, dfb_journal_rec_t *rec)
{
    if (len < EVENT_FIXED || p[0] != 'E')
        return -1;
    rec->gseq = rd64(p + 1);
    rec->seq = rd64(p + 9);
    rec->ts = (int64_t)rd64(p + 17);
    uint64_t tl = rd32(p + 25), yl = rd32(p + 29), il = rd32(p + 33), bl = rd32(p + 37);
    if (EVENT_FIXED + tl + yl + il + bl != len)
        return -1;
    const uint8_t *q = p + EVENT_FIXED;
    rec->topic = (const char *)q;
    rec->topic_len = tl;
    rec->type = (const char *)(q += tl);
    rec->type_len = yl;
    rec->id = (const char *)(q += yl);
    rec->id_len = il;
    rec->body = q + il;
    rec->body_len = bl;
    return 0;
}

/*  Header payload: epoch into epoch (cap 64), first gseq, and, if topics,
    each topic's seq before the segment. 0 or -1. */
static int
parse_header(const uint8_t *p, size_t len, char *epoch, uint64_t *first, dfb_topics_t *topics)
{
    if (len < 2 + 4 || p[0] != 'H' || p[1] != 1)
        return -1;
    size_t off = 2;
    uint32_t el = rd32(p + off);
    off += 4;
    if (el == 0 || el >= 64 || off + el + 8 + 8 + 4 > len)
        return -1;
    if (epoch) {
        memcpy(epoch, p + off, el);
        epoch[el] = '\0';
    }
    off += el;
    *first = rd64(p + off);
    off += 16; /* first gseq, created ms */
    uint32_t n = rd32(p + off);
    off += 4;
    for (uint32_t i = 0; i < n; i++) {
        if (off + 4 > len)
            return -1;
        uint32_t tl = rd32(p + off);
        off += 4;
        if (tl > len || off + tl + 8 > len)
            return -1;
        if (topics) {
            dfb_topic_t *t = dfb_topics_get(topics, (const char *)p + off, tl, 1);
            if (!t)
                return -1;
            t->seq = rd64(p + off + tl);
        }
        off += tl + 8;
    }
    return off == len ? 0 : -1;
}

static int
seg_mark(seg_t *s, uint64_t gseq, uint64_t off)
{
    if (s->nmarks == s->capmarks) {
        size_t cap = s->capmarks ? s->capmarks * 2 : 64;
        mark_t *m = realloc(s->marks, cap * sizeof *m);
        if (!m)
            return -1;
        s->marks = m;
        s->capmarks = cap;
    }
    s->marks[s->nmarks++] = (mark_t){gseq, off};
    return 0;
}

/*  Records one more record in s (sparse index every INDEX_EVERY). */
static void
seg_count(seg_t *s, uint64_t gseq, uint64_t off)
{
    if (s->indexed && s->records % INDEX_EVERY == 0 && seg_mark(s, gseq, off) != 0)
        s->indexed = 0; /* out of memory: fall back to scanning from the start */
    s->records++;
}

static int
fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int
write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* ---- segments (writer) ---------------------------------------------------- */

static seg_t *
push_seg(dfb_journal_t *j, uint64_t first)
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
    current topic seqs, and makes it active. Caller holds no lock. */
static int
new_segment(dfb_journal_t *j, uint64_t first, int64_t now_ms)
{
    dfb_buf_t *b = &j->hbuf;
    b->len = 0;
    uint8_t tmp[16];
    size_t el = strlen(j->epoch);
    uint8_t zero[REC_HEAD] = {0};
    int rc = buf_put(b, zero, REC_HEAD);
    tmp[0] = 'H';
    tmp[1] = 1;
    rc |= buf_put(b, tmp, 2);
    le32(tmp, (uint32_t)el);
    rc |= buf_put(b, tmp, 4);
    rc |= buf_put(b, j->epoch, el);
    le64(tmp, first);
    le64(tmp + 8, (uint64_t)now_ms);
    rc |= buf_put(b, tmp, 16);
    le32(tmp, dfb_topics_count(j->topics));
    rc |= buf_put(b, tmp, 4);
    size_t cur = 0;
    for (dfb_topic_t *t; (t = dfb_topics_next(j->topics, &cur));) {
        le32(tmp, (uint32_t)t->len);
        le64(tmp + 4, t->seq);
        rc |= buf_put(b, tmp, 4);
        rc |= buf_put(b, t->topic, t->len);
        rc |= buf_put(b, tmp + 4, 8);
    }
    if (rc != 0)
        return -1;
    le32(b->data, (uint32_t)(b->len - REC_HEAD));
    le32(b->data + 4, dfb_crc32c(0, b->data + REC_HEAD, b->len - REC_HEAD));

    char path[4096];
    seg_path(j, first, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        dfb_error("journal: cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    if (write_all(fd, b->data, b->len) != 0 ||
        (j->opts.fsync != DFB_FSYNC_NEVER && (fdatasync(fd) != 0 || fsync_dir(j->jdir) != 0))) {
        dfb_error("journal: cannot write %s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    pthread_mutex_lock(&j->mu);
    seg_t *s = push_seg(j, first);
    if (!s) {
        pthread_mutex_unlock(&j->mu);
        close(fd);
        unlink(path);
        return -1;
    }
    s->size = b->len;
    s->mtime_ms = now_ms;
    s->indexed = 1;
    int old = j->fd, dirty = j->dirty;
    j->fd = fd;
    j->dirty = 0;
    j->st.segments = j->nsegs;
    j->st.bytes += b->len;
    pthread_mutex_unlock(&j->mu);
    if (old >= 0) {
        if (j->opts.fsync != DFB_FSYNC_NEVER && dirty)
            fdatasync(old);
        close(old);
    }
    return 0;
}

/*  Deletes the oldest segments beyond the limits. Caller holds mu. */
static void
retain_locked(dfb_journal_t *j, int64_t now_ms)
{
    while (j->nsegs > 1) {
        seg_t *s = &j->segs[0];
        int too_big = j->opts.max_bytes && j->st.bytes > j->opts.max_bytes;
        int too_old = j->opts.max_age_ms > 0 && s->mtime_ms + j->opts.max_age_ms < now_ms;
        if (!too_big && !too_old)
            break;
        char path[4096];
        seg_path(j, s->first_gseq, path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT) {
            dfb_warn("journal: cannot delete %s: %s", path, strerror(errno));
            break;
        }
        dfb_debug("journal: retention deleted %s (%s)", path, too_big ? "size" : "age");
        j->st.bytes -= s->size;
        free(s->marks);
        memmove(j->segs, j->segs + 1, (j->nsegs - 1) * sizeof *s);
        j->nsegs--;
        j->st.segments = j->nsegs;
        j->st.segments_deleted++;
    }
}

/* ---- open / recovery ------------------------------------------------------ */

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/*  Lists the segment files' first gseqs, sorted. Returns the count or -1. */
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

/*  Scans the last segment: checks its header, counts its records, builds
    its index, cuts a torn or corrupt tail. Returns 0 (state recovered),
    1 (the file has no complete header: caller drops it), -1 (I/O error). */
static int
recover_last(dfb_journal_t *j, seg_t *s, char *epoch)
{
    char path[4096];
    seg_path(j, s->first_gseq, path, sizeof path);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return -1;
    }
    dfb_buf_t buf;
    dfb_buf_init(&buf);
    uint64_t size = (uint64_t)sb.st_size, off = 0, first;
    int r = read_record(fd, 0, size, &buf);
    if (r != 1 || parse_header(buf.data, buf.len, epoch, &first, j->topics) != 0 ||
        first != s->first_gseq) {
        dfb_buf_free(&buf);
        close(fd);
        return 1;
    }
    off = REC_HEAD + buf.len;
    s->indexed = 1;
    uint64_t last = first - 1;
    for (;;) {
        r = read_record(fd, off, size, &buf);
        dfb_journal_rec_t rec;
        if (r != 1 || parse_event(buf.data, buf.len, &rec) != 0 || rec.gseq <= last)
            break;
        dfb_topic_t *t = dfb_topics_get(j->topics, rec.topic, rec.topic_len, 1);
        if (t)
            t->seq = rec.seq;
        seg_count(s, rec.gseq, off);
        last = rec.gseq;
        off += REC_HEAD + buf.len;
    }
    if (off < size) {
        dfb_warn("journal: %s: %s tail of %" PRIu64 " bytes at offset %" PRIu64 " cut", path,
                 r == 0 ? "torn" : "corrupt", size - off, off);
        if (ftruncate(fd, (off_t)off) != 0) {
            dfb_buf_free(&buf);
            close(fd);
            return -1;
        }
        fdatasync(fd);
        j->st.truncated_bytes = size - off;
    }
    dfb_buf_free(&buf);
    close(fd);
    s->size = off;
    s->mtime_ms = (int64_t)sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000;
    j->last_gseq = last;
    j->st.recovered_records = s->records;
    return 0;
}

/*  Deletes every segment file (the journal is unreadable: new epoch). */
static void
reset_files(dfb_journal_t *j, const uint64_t *firsts, long n)
{
    char path[4096];
    for (long i = 0; i < n; i++) {
        seg_path(j, firsts[i], path, sizeof path);
        unlink(path);
    }
}

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
    pthread_mutex_init(&j->mu, NULL);
    dfb_buf_init(&j->hbuf);
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
    uint64_t *firsts = NULL;
    long n = list_segments(j->jdir, &firsts);
    if (n < 0) {
        snprintf(err, errlen, "config: bridge.stateDir: cannot read '%s': %s", j->jdir,
                 strerror(errno));
        dfb_journal_destroy(&j);
        return NULL;
    }
    int recovered = 0;
    while (n > 0 && !recovered) {
        /* All but the last: sizes and times only (headers are read on demand). */
        j->nsegs = 0;
        j->st.bytes = 0;
        for (long i = 0; i < n; i++) {
            seg_t *s = push_seg(j, firsts[i]);
            struct stat sb;
            seg_path(j, firsts[i], path, sizeof path);
            if (!s || stat(path, &sb) != 0) {
                snprintf(err, errlen, "journal: cannot stat %s: %s", path, strerror(errno));
                free(firsts);
                dfb_journal_destroy(&j);
                return NULL;
            }
            s->size = (uint64_t)sb.st_size;
            s->mtime_ms = (int64_t)sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000;
        }
        seg_t *last = &j->segs[n - 1];
        int r = recover_last(j, last, j->epoch);
        if (r < 0) {
            snprintf(err, errlen, "journal: cannot recover %s: %s", j->jdir, strerror(errno));
            free(firsts);
            dfb_journal_destroy(&j);
            return NULL;
        }
        if (r == 0) {
            for (long i = 0; i < n; i++)
                j->st.bytes += j->segs[i].size;
            recovered = 1;
            break;
        }
        /* No complete header: a segment created just before a crash has no
           record; drop it and recover the previous one. */
        seg_path(j, firsts[n - 1], path, sizeof path);
        struct stat sb;
        if (n > 1 && stat(path, &sb) == 0 && (uint64_t)sb.st_size < 4096) {
            dfb_warn("journal: %s has no complete header, removed", path);
            unlink(path);
            n--;
            dfb_topics_destroy(&j->topics);
            j->topics = dfb_topics_new();
            continue;
        }
        dfb_warn("journal: %s is unreadable: the journal is reset (new epoch)", path);
        reset_files(j, firsts, n);
        n = 0;
    }
    free(firsts);
    if (!j->topics) {
        snprintf(err, errlen, "journal: out of memory");
        dfb_journal_destroy(&j);
        return NULL;
    }
    if (recovered) {
        seg_t *last = &j->segs[j->nsegs - 1];
        seg_path(j, last->first_gseq, path, sizeof path);
        j->fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (j->fd < 0) {
            snprintf(err, errlen, "journal: cannot open %s: %s", path, strerror(errno));
            dfb_journal_destroy(&j);
            return NULL;
        }
        j->st.segments = j->nsegs;
        dfb_info("journal: %s: epoch %s continues at gseq %" PRIu64 " (%zu segments, %" PRIu64
                 " bytes)",
                 j->jdir, j->epoch, j->last_gseq + 1, j->nsegs, j->st.bytes);
    } else {
        j->nsegs = 0;
        j->st.bytes = 0;
        snprintf(j->epoch, sizeof j->epoch, "%s", new_epoch);
        j->st.new_epoch = 1;
        if (new_segment(j, 1, now_ms) != 0) {
            snprintf(err, errlen, "journal: cannot create the first segment in %s: %s", j->jdir,
                     strerror(errno));
            dfb_journal_destroy(&j);
            return NULL;
        }
        dfb_info("journal: %s: new epoch %s", j->jdir, j->epoch);
    }
    j->st.head_gseq = j->last_gseq;
    j->last_sync_ms = now_ms;
    return j;
}

void
dfb_journal_destroy(dfb_journal_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_journal_t *j = *self_p;
    if (j->fd >= 0) {
        if (j->dirty && j->opts.fsync != DFB_FSYNC_NEVER)
            fdatasync(j->fd);
        close(j->fd);
    }
    if (j->lock_fd >= 0)
        close(j->lock_fd); /* releases the flock */
    for (size_t i = 0; i < j->nsegs; i++)
        free(j->segs[i].marks);
    free(j->segs);
    dfb_topics_destroy(&j->topics);
    dfb_buf_free(&j->hbuf);
    free(j->jdir);
    pthread_mutex_destroy(&j->mu);
    free(j);
    *self_p = NULL;
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

static int
do_sync(dfb_journal_t *j, int64_t now_ms)
{
    if (fdatasync(j->fd) != 0) {
        dfb_error("journal: fdatasync: %s", strerror(errno));
        return -1;
    }
    j->dirty = 0;
    j->last_sync_ms = now_ms;
    j->st.fsyncs++;
    return 0;
}

int
dfb_journal_append(dfb_journal_t *j, const dfb_journal_rec_t *rec, int64_t now_ms)
{
    if (rec->gseq <= j->last_gseq || rec->topic_len > MAX_PAYLOAD || rec->type_len > MAX_PAYLOAD ||
        rec->id_len > MAX_PAYLOAD || rec->body_len > MAX_PAYLOAD ||
        EVENT_FIXED + rec->topic_len + rec->type_len + rec->id_len + rec->body_len > MAX_PAYLOAD) {
        dfb_error("journal: record gseq %" PRIu64 " refused (out of order or too large)",
                  rec->gseq);
        bump_errors(j);
        return -1;
    }
    /* The segment list may be shifted by retention on another thread:
       the active segment is always read under the lock. */
    pthread_mutex_lock(&j->mu);
    uint64_t size = j->segs[j->nsegs - 1].size, records = j->segs[j->nsegs - 1].records;
    pthread_mutex_unlock(&j->mu);
    if (size >= j->opts.segment_bytes && records > 0) {
        if (new_segment(j, rec->gseq, now_ms) != 0) {
            bump_errors(j);
            return -1;
        }
        pthread_mutex_lock(&j->mu);
        retain_locked(j, now_ms);
        size = j->segs[j->nsegs - 1].size;
        pthread_mutex_unlock(&j->mu);
    }
    uint8_t h[REC_HEAD + EVENT_FIXED];
    uint8_t *p = h + REC_HEAD;
    p[0] = 'E';
    le64(p + 1, rec->gseq);
    le64(p + 9, rec->seq);
    le64(p + 17, (uint64_t)now_ms);
    le32(p + 25, (uint32_t)rec->topic_len);
    le32(p + 29, (uint32_t)rec->type_len);
    le32(p + 33, (uint32_t)rec->id_len);
    le32(p + 37, (uint32_t)rec->body_len);
    size_t len = EVENT_FIXED + rec->topic_len + rec->type_len + rec->id_len + rec->body_len;
    uint32_t crc = dfb_crc32c(0, p, EVENT_FIXED);
    crc = dfb_crc32c(crc, rec->topic, rec->topic_len);
    crc = dfb_crc32c(crc, rec->type, rec->type_len);
    crc = dfb_crc32c(crc, rec->id, rec->id_len);
    crc = dfb_crc32c(crc, rec->body, rec->body_len);
    le32(h, (uint32_t)len);
    le32(h + 4, crc);
    struct iovec iov[5] = {{h, sizeof h},
                           {(void *)rec->topic, rec->topic_len},
                           {(void *)rec->type, rec->type_len},
                           {(void *)rec->id, rec->id_len},
                           {(void *)rec->body, rec->body_len}};
    size_t total = REC_HEAD + len, done = 0;
    int i = 0;
    while (done < total) {
        ssize_t w = writev(j->fd, iov + i, 5 - i);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            /* Cut back to the last whole record: no partial record stays. */
            if (ftruncate(j->fd, (off_t)size) != 0)
                dfb_error("journal: cannot cut a partial record: %s", strerror(errno));
            dfb_error("journal: write: %s (gseq %" PRIu64 ")", strerror(e), rec->gseq);
            bump_errors(j);
            errno = e;
            return -1;
        }
        done += (size_t)w;
        while (i < 5 && (size_t)w >= iov[i].iov_len) {
            w -= (ssize_t)iov[i].iov_len;
            i++;
        }
        if (i < 5) {
            iov[i].iov_base = (char *)iov[i].iov_base + w;
            iov[i].iov_len -= (size_t)w;
        }
    }
    dfb_topic_t *t = dfb_topics_get(j->topics, rec->topic, rec->topic_len, 1);
    if (t)
        t->seq = rec->seq;
    j->last_gseq = rec->gseq;
    int rc = 0;
    pthread_mutex_lock(&j->mu);
    j->dirty = 1;
    if ((j->opts.fsync == DFB_FSYNC_ALWAYS && !j->batch_mode) ||
        (j->opts.fsync == DFB_FSYNC_INTERVAL && now_ms - j->last_sync_ms >= j->opts.fsync_ms))
        rc = do_sync(j, now_ms);
    seg_t *act = &j->segs[j->nsegs - 1];
    seg_count(act, rec->gseq, act->size);
    act->size += total;
    act->mtime_ms = now_ms;
    j->st.bytes += total;
    j->st.appended++;
    j->st.head_gseq = rec->gseq;
    pthread_mutex_unlock(&j->mu);
    return rc;
}

int
dfb_journal_flush(dfb_journal_t *j)
{
    if (j->opts.fsync != DFB_FSYNC_ALWAYS)
        return 0;
    j->batch_mode = 1; /* from now on `always` syncs once per batch */
    pthread_mutex_lock(&j->mu);
    int rc = j->dirty ? do_sync(j, wall_ms()) : 0;
    pthread_mutex_unlock(&j->mu);
    return rc;
}

void
dfb_journal_tick(dfb_journal_t *j, int64_t now_ms)
{
    pthread_mutex_lock(&j->mu);
    if (j->opts.fsync == DFB_FSYNC_INTERVAL && j->dirty &&
        now_ms - j->last_sync_ms >= j->opts.fsync_ms)
        do_sync(j, now_ms);
    retain_locked(j, now_ms);
    pthread_mutex_unlock(&j->mu);
}

void
dfb_journal_stats(dfb_journal_t *j, dfb_journal_stats_t *stats)
{
    pthread_mutex_lock(&j->mu);
    *stats = j->st;
    stats->oldest_gseq = j->nsegs ? j->segs[0].first_gseq : 1;
    pthread_mutex_unlock(&j->mu);
}

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
    free(r);
    *self_p = NULL;
}

static int
reader_open(dfb_journal_reader_t *r, uint64_t first, uint64_t off)
{
    if (r->fd >= 0)
        close(r->fd);
    char path[4096];
    seg_path(r->j, first, path, sizeof path);
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    r->first = first;
    r->off = off;
    return r->fd >= 0 ? 0 : -1;
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

int
dfb_journal_reader_seek_gseq(dfb_journal_reader_t *r, uint64_t from)
{
    dfb_journal_t *j = r->j;
    if (from == 0)
        from = 1;
    pthread_mutex_lock(&j->mu);
    if (from < j->segs[0].first_gseq) {
        pthread_mutex_unlock(&j->mu);
        return DFB_JOURNAL_GONE;
    }
    size_t i = j->nsegs - 1;
    while (i > 0 && j->segs[i].first_gseq > from)
        i--;
    const seg_t *s = &j->segs[i];
    uint64_t first = s->first_gseq, off = 0;
    if (s->indexed)
        for (size_t k = 0; k < s->nmarks && s->marks[k].gseq <= from; k++)
            off = s->marks[k].off;
    pthread_mutex_unlock(&j->mu);
    r->min_gseq = from;
    r->last = 0;
    return reader_open(r, first, off);
}

/*  seq of topic before the segment starting at first (from its header).
    0 or -1 (unreadable: the segment was deleted meanwhile). */
static int
header_seq(dfb_journal_reader_t *r, uint64_t first, const char *topic, size_t len, uint64_t *seq)
{
    if (reader_open(r, first, 0) != 0)
        return -1;
    uint64_t f;
    if (read_record(r->fd, 0, UINT64_MAX, &r->buf) != 1 ||
        parse_header(r->buf.data, r->buf.len, NULL, &f, NULL) != 0)
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
        return -1;
    /* Newest first: the segment whose header seq is below from holds seq from
       (or the topic's later seqs). */
    int rc = DFB_JOURNAL_GONE;
    for (size_t k = n; k-- > 0;) {
        uint64_t before;
        if (header_seq(r, firsts[k], topic, len, &before) != 0)
            break; /* deleted by retention meanwhile: older ones are gone too */
        if (before < from) {
            rc = reader_open(r, firsts[k], 0);
            break;
        }
    }
    free(firsts);
    r->min_gseq = 0;
    r->last = 0;
    return rc;
}

int
dfb_journal_reader_next(dfb_journal_reader_t *r, dfb_journal_rec_t *rec)
{
    dfb_journal_t *j = r->j;
    if (r->fd < 0)
        return -1;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        long i = find_seg(j, r->first);
        uint64_t limit = UINT64_MAX, next = 0;
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
        int rc = read_record(r->fd, r->off, limit, &r->buf);
        if (rc == 1) {
            const uint8_t *p = r->buf.data;
            r->off += REC_HEAD + r->buf.len;
            if (p[0] == 'H')
                continue;
            if (parse_event(p, r->buf.len, rec) != 0) {
                rc = -1;
            } else {
                r->last = rec->gseq;
                if (rec->gseq < r->min_gseq)
                    continue;
                return 1;
            }
        }
        if (rc < 0) {
            dfb_warn("journal: corrupt record in segment %" PRIu64 " at offset %" PRIu64, r->first,
                     r->off);
            pthread_mutex_lock(&j->mu);
            j->st.read_errors++;
            pthread_mutex_unlock(&j->mu);
            return -1;
        }
        if (!next)
            return 0;
        /* gseqs are contiguous across segments: a jump means retention
           deleted the segments in between while this reader was behind. */
        if (r->last && next != r->last + 1)
            return DFB_JOURNAL_READER_GONE;
        if (reader_open(r, next, 0) != 0)
            return -1;
    }
}

/* ---- dedupe recovery ------------------------------------------------------ */

/*  Counts the records of the segment starting at first (lengths only). */
static uint64_t
count_records(dfb_journal_t *j, uint64_t first)
{
    char path[4096];
    seg_path(j, first, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat sb;
    uint64_t n = 0, off = 0, size = fstat(fd, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    uint8_t h[REC_HEAD];
    while (off + REC_HEAD <= size && pread_full(fd, h, REC_HEAD, off) == REC_HEAD) {
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
            while (dfb_journal_reader_next(r, &rec) == 1) {
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
