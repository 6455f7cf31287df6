/*  dfb_cmdlog: the command journal <stateDir>/commands.log and its table in
    memory (D3 of issue 12): begin before the Symphony call, done before the
    reply, both durable; the same key again finds what was recorded.

    File layout, all integers little-endian:
      header  "DFBCMD1\n" | u32 version = 1                      (12 bytes)
      record  u32 payload length | u32 CRC-32C(payload) | payload
      begin   'B' | fp[32] | i64 wall ms | u16 key len | u8 op len |
              u16 stream len | key | op | stream
      done    'D' | u16 key len | key | outcome (the rest of the payload)
    Each record is written with one pwritev at the end of the file, then
    fdatasync (group commit: one covers every record written before it
    began): a kill leaves at most one torn record, which the loader cuts.
    The mark of a request is not stored: it is derived from the key.
    Loading: the first begin of a key wins (begin_ms, fp); a later begin of
    a known key is dead; the last done of a known key wins (a done whose
    fdatasync failed is followed by another); a done without a live begin
    (expired) is dead. The first damaged record ends the file: it and
    everything after it are cut (copied aside first unless it is the torn
    last record).

    Locks: `mu` guards the table, the list and the counters and is the only
    lock find takes. `wmu` serialises the file: appends and compaction; it
    is taken before `smu`, which serialises fdatasync, and before mu. An entry's file offsets, its place
    in the table/list and `end` change only under both, so a compaction
    (which holds wmu) reads them without mu. */
#define _GNU_SOURCE 1
#include "dfb_cmdlog.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "dfb_clock.h"
#include "dfb_crc32c.h"
#include "dfb_log.h"

#define MAGIC "DFBCMD1\n"
#define VERSION 1u
#define HDR 12
#define REC_HEAD 8
#define B_FIXED (1 + 32 + 8 + 2 + 1 + 2)
#define D_FIXED (1 + 2)
#define OP_MAX 255
#define STREAM_MAX 1024
#define MAX_PAYLOAD ((uint64_t)D_FIXED + DFB_CMDLOG_KEY_MAX + DFB_CMDLOG_OUTCOME_MAX)
#define COMPACT_MIN (1u << 20)

typedef struct entry {
    struct entry *prev, *next; /* first-begin order (= file order) */
    uint64_t hash;
    uint8_t fp[32];
    int64_t begin_ms;
    uint64_t b_off, d_off; /* record offsets (file mode) */
    uint32_t b_len;        /* whole record, framing included */
    uint64_t d_len;        /* 0: no done record */
    uint8_t *outcome;      /* memory mode */
    size_t outcome_len;
    uint8_t state; /* INFLIGHT, PENDING or DONE */
    uint16_t key_len;
    uint8_t key[];
} entry_t;

struct dfb_cmdlog {
    char *path; /* NULL: memory only */
    char *dir;
    int fd;
    int64_t window_ms;
    uint64_t sip[2];
    pthread_mutex_t mu, wmu;
    entry_t **slots;
    size_t cap, n; /* cap: power of two */
    entry_t *head, *tail;
    uint64_t end;  /* file size (committed records) */
    uint64_t live; /* bytes of the records the table points to */
    uint64_t n_pending, n_done;
    uint64_t compactions, write_errors, dropped;
    int broken;    /* a partial record could not be cut: no more appends */
    int fail_next; /* test hook (under wmu) */
    int failing;   /* the last append failed: the next failures log at debug (under wmu) */
    /* Group commit: every append bumps wgen (under wmu, read atomically);
       `smu` serialises fdatasync: one that began at wgen g and succeeded
       makes synced_gen >= g, one that failed makes bad_gen >= g (those
       records are reported failed: their data may be lost). */
    pthread_mutex_t smu;
    uint64_t wgen, synced_gen, bad_gen, syncs;
    int sync_delay_ms, fail_next_sync; /* test hooks (under smu) */
    _Atomic int compact_delay_ms;      /* test hook: a compaction waits this long before its rename */
};

/* ---- little-endian helpers ---- */
static void
le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
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
static uint16_t
rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t
rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t
rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* ---- SipHash-2-4: keys are chosen by clients, so the table's hash is keyed ---- */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t
siphash(const uint64_t k[2], const uint8_t *in, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k[0], v1 = 0x646f72616e646f6dULL ^ k[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ k[0], v3 = 0x7465646279746573ULL ^ k[1];
    uint64_t b = (uint64_t)len << 56;
    const uint8_t *endp = in + (len & ~(size_t)7);
    for (; in != endp; in += 8) {
        uint64_t m = rd64(in);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)in[i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- the table: open addressing, linear probing, backward-shift deletion ---- */
static entry_t *
tbl_get(const dfb_cmdlog_t *s, const uint8_t *key, size_t len, uint64_t h)
{
    if (!s->cap)
        return NULL;
    size_t mask = s->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        entry_t *e = s->slots[i];
        if (!e)
            return NULL;
        if (e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0)
            return e;
    }
}

static void
tbl_place(entry_t **slots, size_t cap, entry_t *e)
{
    size_t i = (size_t)e->hash & (cap - 1);
    while (slots[i])
        i = (i + 1) & (cap - 1);
    slots[i] = e;
}

/*  Adds e (absent); the table stays at most half full. 0 or -1 (memory). */
static int
tbl_add(dfb_cmdlog_t *s, entry_t *e)
{
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        entry_t **slots = calloc(cap, sizeof *slots);
        if (!slots)
            return -1;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slots[i])
                tbl_place(slots, cap, s->slots[i]);
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    tbl_place(s->slots, s->cap, e);
    s->n++;
    return 0;
}

static void
tbl_del(dfb_cmdlog_t *s, entry_t *e)
{
    size_t mask = s->cap - 1, i = (size_t)e->hash & mask;
    while (s->slots[i] != e)
        i = (i + 1) & mask;
    s->slots[i] = NULL;
    for (size_t j = (i + 1) & mask; s->slots[j]; j = (j + 1) & mask) {
        size_t k = (size_t)s->slots[j]->hash & mask; /* its home */
        /* move it into the hole unless its home lies cyclically in (i, j] */
        int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            s->slots[i] = s->slots[j];
            s->slots[j] = NULL;
            i = j;
        }
    }
    s->n--;
}

static entry_t *
entry_new(const dfb_cmdlog_t *s, const uint8_t *key, size_t len, const uint8_t fp[32],
          int64_t begin_ms)
{
    entry_t *e = calloc(1, sizeof *e + len);
    if (!e)
        return NULL;
    memcpy(e->key, key, len);
    e->key_len = (uint16_t)len;
    e->hash = siphash(s->sip, key, len);
    memcpy(e->fp, fp, 32);
    e->begin_ms = begin_ms;
    return e;
}

/*  Links e into the table and the list (its counters follow its state). */
static int
entry_link(dfb_cmdlog_t *s, entry_t *e)
{
    if (tbl_add(s, e) != 0)
        return -1;
    e->prev = s->tail;
    if (s->tail)
        s->tail->next = e;
    else
        s->head = e;
    s->tail = e;
    s->live += e->b_len + e->d_len;
    s->n_pending += e->state == DFB_CMDLOG_PENDING;
    s->n_done += e->state == DFB_CMDLOG_DONE;
    return 0;
}

static void
entry_unlink(dfb_cmdlog_t *s, entry_t *e)
{
    tbl_del(s, e);
    if (e->prev)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    s->live -= e->b_len + e->d_len;
    s->n_pending -= e->state == DFB_CMDLOG_PENDING;
    s->n_done -= e->state == DFB_CMDLOG_DONE;
    free(e->outcome);
    free(e);
}

static void
set_state(dfb_cmdlog_t *s, entry_t *e, uint8_t st)
{
    s->n_pending -= e->state == DFB_CMDLOG_PENDING;
    s->n_done -= e->state == DFB_CMDLOG_DONE;
    e->state = st;
    s->n_pending += st == DFB_CMDLOG_PENDING;
    s->n_done += st == DFB_CMDLOG_DONE;
}

/* ---- file helpers ---- */
static int
fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd), e = errno;
    close(fd);
    errno = e;
    return rc;
}

static int
pwrite_all(int fd, const void *p, size_t len, uint64_t off)
{
    const uint8_t *b = p;
    while (len) {
        ssize_t w = pwrite(fd, b, len, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        b += w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static int
pread_all(int fd, void *p, size_t len, uint64_t off)
{
    uint8_t *b = p;
    while (len) {
        ssize_t r = pread(fd, b, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EIO; /* the file is shorter than the table says */
            return -1;
        }
        b += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/*  Writes the record iov[0..n) (total bytes) at s->end; its write
    generation into *gen (make it durable with durable()). Caller holds
    wmu. 0, or -1 with errno: then the partial record is cut again (or,
    when that fails too, appends stop: `broken`). Does not move s->end
    (the caller does, under mu). */
static int
append(dfb_cmdlog_t *s, struct iovec *iov, int n, size_t total, uint64_t *gen)
{
    if (s->broken) {
        errno = EIO;
        return -1;
    }
    uint64_t at = s->end;
    int err = 0;
    if (s->fail_next) {
        /* the test hook: half a record reaches the file, then the error */
        err = s->fail_next;
        s->fail_next = 0;
        size_t half = iov[0].iov_len / 2;
        if (pwrite_all(s->fd, iov[0].iov_base, half, at) != 0)
            err = errno;
    } else {
        uint64_t off = at;
        size_t left = total;
        while (left && !err) {
            ssize_t w = pwritev(s->fd, iov, n, (off_t)off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                err = errno;
                break;
            }
            off += (uint64_t)w;
            left -= (size_t)w;
            for (size_t k = (size_t)w; k && n;) { /* skip what was written */
                if (k >= iov->iov_len) {
                    k -= iov->iov_len;
                    iov++;
                    n--;
                } else {
                    iov->iov_base = (uint8_t *)iov->iov_base + k;
                    iov->iov_len -= k;
                    k = 0;
                }
            }
        }
    }
    if (!err) {
        if (s->failing)
            dfb_info("cmdlog: %s: writes work again", s->path);
        s->failing = 0;
        *gen = __atomic_add_fetch(&s->wgen, 1, __ATOMIC_ACQ_REL);
        return 0;
    }
    if (ftruncate(s->fd, (off_t)at) != 0) {
        s->broken = 1;
        dfb_error("cmdlog: %s: a failed write could not be cut (%s): the command journal "
                  "accepts no more records until restart",
                  s->path, strerror(errno));
    }
    dfb_log(s->failing ? DFB_LOG_DEBUG : DFB_LOG_WARN,
            "cmdlog: %s: write failed: %s (the request is not made; further failures at debug)",
            s->path, strerror(err));
    s->failing = 1;
    errno = err;
    return -1;
}

/*  Makes the record of write generation gen durable: one fdatasync covers
    every record written before it began (group commit). Caller holds no
    lock. 0, or -1 with errno (EIO, or what fdatasync said): the record may
    or may not be on disk; it stays in the file (a begin found there after
    a restart is pending, which is safe: the request is looked for). */
static int
durable(dfb_cmdlog_t *s, uint64_t gen)
{
    int rc = 0, err = 0;
    pthread_mutex_lock(&s->smu);
    for (;;) {
        if (s->synced_gen >= gen)
            break;
        if (s->bad_gen >= gen) {
            rc = -1;
            err = err ? err : EIO;
            break;
        }
        uint64_t target = __atomic_load_n(&s->wgen, __ATOMIC_ACQUIRE);
        if (s->sync_delay_ms) {
            struct timespec ts = {0, (long)s->sync_delay_ms * 1000000L};
            nanosleep(&ts, NULL);
        }
        int r = fdatasync(s->fd);
        if (s->fail_next_sync) {
            r = -1;
            errno = s->fail_next_sync;
            s->fail_next_sync = 0;
        }
        s->syncs++;
        if (r == 0) {
            s->synced_gen = target;
        } else {
            err = errno;
            s->bad_gen = target;
            dfb_warn("cmdlog: %s: fdatasync failed: %s (the requests it covered are answered "
                     "as not journaled)",
                     s->path, strerror(err));
        }
    }
    pthread_mutex_unlock(&s->smu);
    if (rc != 0)
        errno = err;
    return rc;
}

/*  err = "<a>: <b>" (b NULL: "<a>"). */
static void
set_err(char *err, size_t errlen, const char *a, const char *b)
{
    if (err && errlen)
        snprintf(err, errlen, "%s%s%s", a, b ? ": " : "", b ? b : "");
}

/*  Reads a whole record [off, off+len) into *buf (grown as needed) and
    checks its framing and CRC. 0, or -1 (I/O error: errno; damage: EBADMSG). */
static int
read_record(int fd, uint64_t off, uint64_t len, uint8_t **buf, size_t *cap)
{
    if (len < REC_HEAD || len - REC_HEAD > MAX_PAYLOAD) {
        errno = EBADMSG;
        return -1;
    }
    if (*cap < len) {
        uint8_t *nb = realloc(*buf, (size_t)len);
        if (!nb)
            return -1;
        *buf = nb;
        *cap = (size_t)len;
    }
    if (pread_all(fd, *buf, (size_t)len, off) != 0)
        return -1;
    if (rd32(*buf) != len - REC_HEAD ||
        rd32(*buf + 4) != dfb_crc32c(0, *buf + REC_HEAD, (size_t)len - REC_HEAD)) {
        errno = EBADMSG;
        return -1;
    }
    return 0;
}

/* ---- compaction ---- */
typedef struct {
    int fd;
    uint64_t off; /* bytes in the file, buffered ones included */
    uint8_t *buf;
    size_t len, cap;
} wbuf_t;

static int
wb_flush(wbuf_t *w)
{
    uint64_t at = w->off - w->len;
    int rc = pwrite_all(w->fd, w->buf, w->len, at);
    w->len = 0;
    return rc;
}

static int
wb_put(wbuf_t *w, const void *p, size_t len)
{
    if (w->len + len > w->cap && wb_flush(w) != 0)
        return -1;
    if (len > w->cap) {
        int rc = pwrite_all(w->fd, p, len, w->off);
        w->off += len;
        return rc;
    }
    memcpy(w->buf + w->len, p, len);
    w->len += len;
    w->off += len;
    return 0;
}

/*  A begin record for e made from memory (its own one is unreadable): the
    op and stream, which only a reader of the file uses, are lost. */
static size_t
build_begin(uint8_t *rec, const uint8_t *key, size_t key_len, const uint8_t fp[32], int64_t ms,
            const char *op, size_t op_len, const char *stream, size_t stream_len)
{
    uint8_t *p = rec + REC_HEAD;
    p[0] = 'B';
    memcpy(p + 1, fp, 32);
    le64(p + 33, (uint64_t)ms);
    le16(p + 41, (uint16_t)key_len);
    p[43] = (uint8_t)op_len;
    le16(p + 44, (uint16_t)stream_len);
    memcpy(p + B_FIXED, key, key_len);
    memcpy(p + B_FIXED + key_len, op, op_len);
    memcpy(p + B_FIXED + key_len + op_len, stream, stream_len);
    size_t plen = B_FIXED + key_len + op_len + stream_len;
    le32(rec, (uint32_t)plen);
    le32(rec + 4, dfb_crc32c(0, p, plen));
    return REC_HEAD + plen;
}

/*  Rewrites the file with exactly the records of the live entries (caller
    holds wmu, not mu). 0 or -1 (the old file stays; logged). */
static int
compact(dfb_cmdlog_t *s)
{
    size_t n = s->n, i = 0;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", s->path);
    uint64_t *nb = malloc((n ? n : 1) * sizeof *nb), *nd = malloc((n ? n : 1) * sizeof *nd);
    wbuf_t w = {.fd = -1, .cap = 1u << 20};
    w.buf = malloc(w.cap);
    uint8_t *rb = NULL;
    size_t rcap = 0;
    const char *fail = NULL;
    int fail_errno = 0;
    if (!nb || !nd || !w.buf) {
        fail = "out of memory";
        goto out;
    }
    w.fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w.fd < 0) {
        fail = "open";
        goto out;
    }
    uint8_t hdr[HDR];
    memcpy(hdr, MAGIC, 8);
    le32(hdr + 8, VERSION);
    if (wb_put(&w, hdr, HDR) != 0)
        goto io;
    for (entry_t *e = s->head; e; e = e->next, i++) {
        nb[i] = w.off;
        if (read_record(s->fd, e->b_off, e->b_len, &rb, &rcap) == 0) {
            if (wb_put(&w, rb, e->b_len) != 0)
                goto io;
        } else {
            uint8_t rec[REC_HEAD + B_FIXED + DFB_CMDLOG_KEY_MAX];
            dfb_warn("cmdlog: %s: a begin record at offset %llu is unreadable (%s): rewritten "
                     "from memory",
                     s->path, (unsigned long long)e->b_off, strerror(errno));
            size_t len = build_begin(rec, e->key, e->key_len, e->fp, e->begin_ms, "", 0, "", 0);
            if (wb_put(&w, rec, len) != 0)
                goto io;
        }
        nd[i] = 0;
        if (e->d_len) {
            if (read_record(s->fd, e->d_off, e->d_len, &rb, &rcap) == 0) {
                nd[i] = w.off;
                if (wb_put(&w, rb, (size_t)e->d_len) != 0)
                    goto io;
            } else {
                dfb_warn("cmdlog: %s: a done record at offset %llu is unreadable (%s): that "
                         "request is pending again",
                         s->path, (unsigned long long)e->d_off, strerror(errno));
            }
        }
    }
    if (wb_flush(&w) != 0 || fdatasync(w.fd) != 0)
        goto io;
    int delay = atomic_load(&s->compact_delay_ms);
    if (delay > 0) {
        dfb_info("cmdlog: %s: compaction under way (test delay %d ms)", s->path, delay);
        struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    uint64_t before = s->end;
    if (flock(w.fd, LOCK_EX | LOCK_NB) != 0 || rename(tmp, s->path) != 0)
        goto io;
    if (fsync_dir(s->dir) != 0)
        dfb_warn("cmdlog: %s: directory fsync after compaction: %s", s->path, strerror(errno));
    pthread_mutex_lock(&s->smu); /* no fdatasync on the old descriptor from here */
    pthread_mutex_lock(&s->mu);
    i = 0;
    for (entry_t *e = s->head; e; e = e->next, i++) {
        e->b_off = nb[i];
        if (e->d_len && !nd[i]) {
            e->d_len = 0;
            if (e->state == DFB_CMDLOG_DONE)
                set_state(s, e, DFB_CMDLOG_PENDING);
        }
        e->d_off = nd[i];
    }
    int old = s->fd;
    s->fd = w.fd;
    w.fd = -1;
    s->end = w.off;
    s->live = w.off - HDR;
    s->compactions++;
    /* every record of the table is in the new file, which is durable */
    s->synced_gen = __atomic_load_n(&s->wgen, __ATOMIC_ACQUIRE);
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_unlock(&s->smu);
    close(old);
    dfb_info("cmdlog: %s: compacted: %zu request(s) kept, %llu -> %llu bytes", s->path, n,
             (unsigned long long)before, (unsigned long long)w.off);
    goto out;
io:
    fail = "write";
    fail_errno = errno;
out:
    if (fail) {
        if (!fail_errno)
            fail_errno = errno;
        dfb_warn("cmdlog: %s: compaction failed (%s: %s): the file stays as it is", s->path, fail,
                 strerror(fail_errno));
        if (w.fd >= 0)
            unlink(tmp);
    }
    if (w.fd >= 0)
        close(w.fd);
    free(nb);
    free(nd);
    free(w.buf);
    free(rb);
    return fail ? -1 : 0;
}

/* ---- expiry ---- */
static void
expire(dfb_cmdlog_t *s, int64_t now_ms)
{
    int64_t cutoff = now_ms - s->window_ms;
    for (entry_t *e = s->head, *next; e && e->begin_ms < cutoff; e = next) {
        next = e->next;
        if (e->state != DFB_CMDLOG_INFLIGHT)
            entry_unlink(s, e);
    }
}

/* ---- loading ---- */

/*  A free name <path>.damaged-<ms>[.N] into dst: earlier damaged files are
    never overwritten. */
static void
damaged_name(const char *path, char *dst, size_t cap)
{
    long long ms = (long long)dfb_wall_ms();
    snprintf(dst, cap, "%s.damaged-%lld", path, ms);
    for (int i = 1; i < 1000 && access(dst, F_OK) == 0; i++)
        snprintf(dst, cap, "%s.damaged-%lld.%d", path, ms, i);
}

/*  Moves a file that is not a command journal aside (never deletes it). */
static int
move_aside(const char *path, const char *why)
{
    char dst[4200];
    damaged_name(path, dst, sizeof dst);
    if (renameat2(AT_FDCWD, path, AT_FDCWD, dst, RENAME_NOREPLACE) != 0)
        return -1;
    dfb_warn("cmdlog: %s: %s: moved aside to %s, starting an empty command journal", path, why,
             dst);
    return 0;
}

static int
write_header(int fd)
{
    uint8_t hdr[HDR];
    memcpy(hdr, MAGIC, 8);
    le32(hdr + 8, VERSION);
    if (ftruncate(fd, 0) != 0 || pwrite_all(fd, hdr, HDR, 0) != 0 || fdatasync(fd) != 0)
        return -1;
    return 0;
}

/*  Applies one checked payload. 0, or -1 when it is malformed. */
static int
load_payload(dfb_cmdlog_t *s, const uint8_t *p, uint32_t len, uint64_t off, int64_t cutoff)
{
    if (p[0] == 'B') {
        if (len < B_FIXED)
            return -1;
        size_t kl = rd16(p + 41), ol = p[43], sl = rd16(p + 44);
        if (kl < 1 || kl > DFB_CMDLOG_KEY_MAX || sl > STREAM_MAX || B_FIXED + kl + ol + sl != len)
            return -1;
        int64_t ms = (int64_t)rd64(p + 33);
        const uint8_t *key = p + B_FIXED;
        if (ms < cutoff || tbl_get(s, key, kl, siphash(s->sip, key, kl)))
            return 0; /* expired, or a later begin of a known key: dead */
        entry_t *e = entry_new(s, key, kl, p + 1, ms);
        if (!e)
            return -2;
        e->state = DFB_CMDLOG_PENDING;
        e->b_off = off;
        e->b_len = REC_HEAD + len;
        if (entry_link(s, e) != 0) {
            free(e);
            return -2;
        }
        return 0;
    }
    if (p[0] == 'D') {
        if (len < D_FIXED)
            return -1;
        size_t kl = rd16(p + 1);
        if (kl < 1 || kl > DFB_CMDLOG_KEY_MAX || D_FIXED + kl > len ||
            len - D_FIXED - kl > DFB_CMDLOG_OUTCOME_MAX)
            return -1;
        const uint8_t *key = p + D_FIXED;
        entry_t *e = tbl_get(s, key, kl, siphash(s->sip, key, kl));
        if (!e)
            return 0; /* its begin expired: dead */
        s->live -= e->d_len;
        e->d_off = off;
        e->d_len = REC_HEAD + (uint64_t)len;
        s->live += e->d_len;
        set_state(s, e, DFB_CMDLOG_DONE);
        return 0;
    }
    return -1;
}

/*  Copies the bytes about to be cut to <path>.damaged-<ms> (best effort). */
static void
save_cut(const char *path, const uint8_t *p, size_t len)
{
    char dst[4200];
    damaged_name(path, dst, sizeof dst);
    int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || pwrite_all(fd, p, len, 0) != 0 || fdatasync(fd) != 0)
        dfb_warn("cmdlog: %s: could not save the damaged bytes to %s: %s", path, dst,
                 strerror(errno));
    else
        dfb_warn("cmdlog: %s: the %zu damaged bytes are saved in %s", path, len, dst);
    if (fd >= 0)
        close(fd);
}

/*  Loads s->fd (opened, locked). 0, or -1 with a message in err. */
static int
load(dfb_cmdlog_t *s, int64_t now_ms, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(s->fd, &st) != 0) {
        set_err(err, errlen, s->path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, errlen, s->path, "not a regular file");
        return -1;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < HDR) {
        if (size > 0) {
            uint8_t head[HDR], want[HDR];
            memcpy(want, MAGIC, 8);
            le32(want + 8, VERSION);
            if (pread_all(s->fd, head, (size_t)size, 0) == 0 && memcmp(head, want, size) == 0) {
                dfb_warn("cmdlog: %s: dropped %llu bytes: a torn file header", s->path,
                         (unsigned long long)size);
                s->dropped += size;
            } else {
                close(s->fd);
                s->fd = -1;
                if (move_aside(s->path, "not a command journal (short, no header)") != 0 ||
                    (s->fd = open(s->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0 ||
                    flock(s->fd, LOCK_EX | LOCK_NB) != 0) {
                    set_err(err, errlen, s->path, strerror(errno));
                    return -1;
                }
            }
        }
        if (write_header(s->fd) != 0) {
            set_err(err, errlen, s->path, strerror(errno));
            return -1;
        }
        s->end = HDR;
        return 0;
    }
    const uint8_t *m = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, s->fd, 0);
    if (m == MAP_FAILED) {
        set_err(err, errlen, s->path, strerror(errno));
        return -1;
    }
    madvise((void *)m, (size_t)size, MADV_SEQUENTIAL);
    if (memcmp(m, MAGIC, 8) != 0 || rd32(m + 8) != VERSION) {
        int bad_magic = memcmp(m, MAGIC, 8) != 0;
        munmap((void *)m, (size_t)size);
        close(s->fd);
        s->fd = -1;
        if (move_aside(s->path, bad_magic ? "not a command journal (bad magic)"
                                          : "a command journal of an unknown version") != 0 ||
            (s->fd = open(s->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0 ||
            flock(s->fd, LOCK_EX | LOCK_NB) != 0 || write_header(s->fd) != 0) {
            set_err(err, errlen, s->path, strerror(errno));
            return -1;
        }
        s->end = HDR;
        return 0;
    }
    int64_t cutoff = now_ms - s->window_ms;
    uint64_t off = HDR;
    const char *why = NULL;
    int torn = 0;
    while (off < size) {
        if (size - off < REC_HEAD) {
            why = "a torn record header at the end";
            torn = 1;
            break;
        }
        uint32_t len = rd32(m + off);
        if (len < 1 || len > MAX_PAYLOAD) {
            why = "an impossible record length";
            break;
        }
        if (size - off - REC_HEAD < len) {
            why = "a torn last record";
            torn = 1;
            break;
        }
        const uint8_t *p = m + off + REC_HEAD;
        if (rd32(m + off + 4) != dfb_crc32c(0, p, len)) {
            why = "a CRC mismatch";
            break;
        }
        int rc = load_payload(s, p, len, off, cutoff);
        if (rc == -2) {
            munmap((void *)m, (size_t)size);
            set_err(err, errlen, s->path, "out of memory while loading");
            return -1;
        }
        if (rc != 0) {
            why = "a malformed record";
            break;
        }
        off += REC_HEAD + (uint64_t)len;
    }
    if (why) {
        uint64_t drop = size - off;
        dfb_warn("cmdlog: %s: dropped %llu bytes from offset %llu: %s", s->path,
                 (unsigned long long)drop, (unsigned long long)off, why);
        if (!torn)
            save_cut(s->path, m + off, (size_t)drop);
        s->dropped += drop;
    }
    munmap((void *)m, (size_t)size);
    if (why && (ftruncate(s->fd, (off_t)off) != 0 || fdatasync(s->fd) != 0)) {
        set_err(err, errlen, s->path, strerror(errno));
        return -1;
    }
    s->end = off;
    uint64_t dead = s->end - HDR - s->live;
    if (dead > 0 && (dead >= COMPACT_MIN || dead >= s->live))
        compact(s); /* holds no lock: nobody else sees s yet */
    return 0;
}

dfb_cmdlog_t *
dfb_cmdlog_open_at(const char *dir, int64_t window_ms, int64_t wall_now_ms, char *err,
                   size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    dfb_cmdlog_t *s = calloc(1, sizeof *s);
    if (!s) {
        set_err(err, errlen, "out of memory", NULL);
        return NULL;
    }
    s->fd = -1;
    if (window_ms <= 0)
        window_ms = DFB_CMDLOG_WINDOW_MS;
    if (window_ms > INT64_MAX / 4)
        window_ms = INT64_MAX / 4;
    s->window_ms = window_ms;
    if (getrandom(s->sip, sizeof s->sip, GRND_NONBLOCK) != (ssize_t)sizeof s->sip) {
        s->sip[0] = (uint64_t)dfb_mono_ms() ^ (uint64_t)getpid() << 32;
        s->sip[1] = (uint64_t)(uintptr_t)s ^ (uint64_t)dfb_wall_ms();
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->wmu, NULL);
    pthread_mutex_init(&s->smu, NULL);
    if (!dir)
        return s;
    size_t dl = strlen(dir);
    s->dir = strdup(dir);
    s->path = malloc(dl + sizeof "/commands.log");
    if (!s->dir || !s->path) {
        set_err(err, errlen, "out of memory", NULL);
        dfb_cmdlog_close(&s);
        return NULL;
    }
    memcpy(s->path, dir, dl);
    memcpy(s->path + dl, "/commands.log", sizeof "/commands.log");
    s->fd = open(s->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->fd < 0) {
        set_err(err, errlen, s->path, strerror(errno));
        dfb_cmdlog_close(&s);
        return NULL;
    }
    if (flock(s->fd, LOCK_EX | LOCK_NB) != 0) {
        set_err(err, errlen, s->path,
                errno == EWOULDBLOCK ? "in use by another process" : strerror(errno));
        dfb_cmdlog_close(&s);
        return NULL;
    }
    if (load(s, wall_now_ms, err, errlen) != 0) {
        dfb_cmdlog_close(&s);
        return NULL;
    }
    return s;
}

dfb_cmdlog_t *
dfb_cmdlog_open(const char *dir, int64_t window_ms, char *err, size_t errlen)
{
    return dfb_cmdlog_open_at(dir, window_ms, dfb_wall_ms(), err, errlen);
}

void
dfb_cmdlog_close(dfb_cmdlog_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_cmdlog_t *s = *self_p;
    for (entry_t *e = s->head, *next; e; e = next) {
        next = e->next;
        free(e->outcome);
        free(e);
    }
    free(s->slots);
    if (s->fd >= 0)
        close(s->fd);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->wmu);
    pthread_mutex_destroy(&s->smu);
    free(s->path);
    free(s->dir);
    free(s);
    *self_p = NULL;
}

static int
key_ok(const void *key, size_t key_len)
{
    return key && key_len >= 1 && key_len <= DFB_CMDLOG_KEY_MAX;
}

/*  The outcome of DONE entry e into out (caller holds mu). 0, or -1 (the
    record is unreadable: logged). */
static int
read_outcome(dfb_cmdlog_t *s, entry_t *e, dfb_cmdlog_entry_t *out)
{
    if (!s->path) {
        out->outcome = malloc(e->outcome_len ? e->outcome_len : 1);
        if (!out->outcome)
            return -1;
        memcpy(out->outcome, e->outcome, e->outcome_len);
        out->outcome_len = e->outcome_len;
        return 0;
    }
    uint8_t *buf = NULL;
    size_t cap = 0;
    if (read_record(s->fd, e->d_off, e->d_len, &buf, &cap) != 0 || buf[REC_HEAD] != 'D' ||
        rd16(buf + REC_HEAD + 1) != e->key_len ||
        memcmp(buf + REC_HEAD + D_FIXED, e->key, e->key_len) != 0) {
        dfb_error("cmdlog: %s: the outcome at offset %llu cannot be read back (%s): the request "
                  "is pending again",
                  s->path, (unsigned long long)e->d_off,
                  errno == EBADMSG ? "damaged" : strerror(errno));
        free(buf);
        return -1;
    }
    size_t skip = REC_HEAD + D_FIXED + e->key_len, len = (size_t)e->d_len - skip;
    memmove(buf, buf + skip, len);
    out->outcome = buf;
    out->outcome_len = len;
    return 0;
}

dfb_cmdlog_state_t
dfb_cmdlog_find(dfb_cmdlog_t *s, const void *key, size_t key_len, const uint8_t fp[32],
                dfb_cmdlog_entry_t *out)
{
    dfb_cmdlog_entry_t dummy;
    if (!out)
        out = &dummy;
    memset(out, 0, sizeof *out);
    if (!s || !key_ok(key, key_len) || !fp)
        return DFB_CMDLOG_NEW;
    uint64_t h = siphash(s->sip, key, key_len);
    pthread_mutex_lock(&s->mu);
    entry_t *e = tbl_get(s, key, key_len, h);
    dfb_cmdlog_state_t st = DFB_CMDLOG_NEW;
    if (e) {
        out->begin_ms = e->begin_ms;
        st = memcmp(e->fp, fp, 32) != 0 ? DFB_CMDLOG_CONFLICT : (dfb_cmdlog_state_t)e->state;
        if (st == DFB_CMDLOG_DONE && read_outcome(s, e, out) != 0) {
            set_state(s, e, DFB_CMDLOG_PENDING);
            st = DFB_CMDLOG_PENDING;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

int
dfb_cmdlog_begin(dfb_cmdlog_t *s, const void *key, size_t key_len, const uint8_t fp[32],
                 const char *op, const char *stream, int64_t wall_ms)
{
    size_t ol = op ? strlen(op) : 0, sl = stream ? strlen(stream) : 0;
    if (!s || !key_ok(key, key_len) || !fp || ol < 1 || ol > OP_MAX || sl > STREAM_MAX) {
        errno = EINVAL;
        return -1;
    }
    uint64_t h = siphash(s->sip, key, key_len);
    pthread_mutex_lock(&s->wmu);
    pthread_mutex_lock(&s->mu);
    entry_t *e = tbl_get(s, key, key_len, h);
    int rc = 0, err = 0;
    if (e) {
        if (memcmp(e->fp, fp, 32) != 0 || e->state == DFB_CMDLOG_DONE)
            err = EEXIST;
        else if (e->state == DFB_CMDLOG_INFLIGHT)
            err = EBUSY;
        else
            set_state(s, e, DFB_CMDLOG_INFLIGHT);
        goto unlock;
    }
    e = entry_new(s, key, key_len, fp, wall_ms);
    if (!e) {
        err = ENOMEM;
        goto unlock;
    }
    e->state = DFB_CMDLOG_INFLIGHT;
    if (s->path) {
        e->b_off = s->end;
        e->b_len = (uint32_t)(REC_HEAD + B_FIXED + key_len + ol + sl);
    }
    if (entry_link(s, e) != 0) {
        free(e);
        err = ENOMEM;
        goto unlock;
    }
    if (!s->path)
        goto unlock;
    pthread_mutex_unlock(&s->mu);
    uint8_t rec[REC_HEAD + B_FIXED + DFB_CMDLOG_KEY_MAX + OP_MAX + STREAM_MAX];
    size_t len = build_begin(rec, key, key_len, fp, wall_ms, op, ol, stream ? stream : "", sl);
    struct iovec iov[1] = {{rec, len}};
    uint64_t gen = 0;
    rc = append(s, iov, 1, len, &gen);
    err = rc ? errno : 0;
    pthread_mutex_lock(&s->mu);
    if (rc != 0) {
        s->write_errors++;
        entry_unlink(s, e);
        goto unlock;
    }
    s->end += len;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_unlock(&s->wmu);
    if (durable(s, gen) == 0)
        return 0;
    err = errno;
    /* not durable: the key is new again (the record, if it reached the
       disk after all, makes it pending after a restart) */
    pthread_mutex_lock(&s->wmu);
    pthread_mutex_lock(&s->mu);
    s->write_errors++;
    e = tbl_get(s, key, key_len, h);
    if (e && e->state == DFB_CMDLOG_INFLIGHT)
        entry_unlink(s, e);
    rc = -1;
unlock:
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_unlock(&s->wmu);
    if (err && rc == 0)
        rc = -1;
    if (rc != 0)
        errno = err;
    return rc;
}

int
dfb_cmdlog_done(dfb_cmdlog_t *s, const void *key, size_t key_len, const uint8_t *outcome,
                size_t outcome_len)
{
    if (!s || !key_ok(key, key_len) || (!outcome && outcome_len)) {
        errno = EINVAL;
        return -1;
    }
    uint64_t h = siphash(s->sip, key, key_len);
    int err = 0;
    pthread_mutex_lock(&s->wmu);
    pthread_mutex_lock(&s->mu);
    entry_t *e = tbl_get(s, key, key_len, h);
    if (!e || e->state != DFB_CMDLOG_INFLIGHT) {
        err = EINVAL;
        goto unlock;
    }
    if (outcome_len > DFB_CMDLOG_OUTCOME_MAX) {
        err = EFBIG;
        set_state(s, e, DFB_CMDLOG_PENDING);
        goto unlock;
    }
    if (!s->path) {
        uint8_t *copy = malloc(outcome_len ? outcome_len : 1);
        if (!copy) {
            err = ENOMEM;
            set_state(s, e, DFB_CMDLOG_PENDING);
            goto unlock;
        }
        if (outcome_len)
            memcpy(copy, outcome, outcome_len);
        free(e->outcome);
        e->outcome = copy;
        e->outcome_len = outcome_len;
        set_state(s, e, DFB_CMDLOG_DONE);
        goto unlock;
    }
    pthread_mutex_unlock(&s->mu);
    uint8_t head[REC_HEAD + D_FIXED + DFB_CMDLOG_KEY_MAX];
    size_t plen = D_FIXED + key_len + outcome_len;
    head[REC_HEAD] = 'D';
    le16(head + REC_HEAD + 1, (uint16_t)key_len);
    memcpy(head + REC_HEAD + D_FIXED, key, key_len);
    uint32_t crc = dfb_crc32c(0, head + REC_HEAD, D_FIXED + key_len);
    if (outcome_len)
        crc = dfb_crc32c(crc, outcome, outcome_len);
    le32(head, (uint32_t)plen);
    le32(head + 4, crc);
    struct iovec iov[2] = {{head, REC_HEAD + D_FIXED + key_len}, {(void *)outcome, outcome_len}};
    uint64_t at = s->end, gen = 0;
    if (append(s, iov, outcome_len ? 2 : 1, REC_HEAD + plen, &gen) != 0) {
        err = errno;
        pthread_mutex_lock(&s->mu);
        s->write_errors++;
        set_state(s, e, DFB_CMDLOG_PENDING);
        goto unlock;
    }
    /* the entry points at its done record at once (still in flight), so a
       compaction before the fdatasync copies it */
    pthread_mutex_lock(&s->mu);
    s->end += REC_HEAD + plen;
    s->live -= e->d_len;
    e->d_off = at;
    e->d_len = REC_HEAD + plen;
    s->live += e->d_len;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_unlock(&s->wmu);
    if (durable(s, gen) != 0) {
        err = errno;
        pthread_mutex_lock(&s->wmu);
        pthread_mutex_lock(&s->mu);
        s->write_errors++;
        e = tbl_get(s, key, key_len, h);
        if (e && e->state == DFB_CMDLOG_INFLIGHT) {
            s->live -= e->d_len;
            e->d_len = e->d_off = 0;
            set_state(s, e, DFB_CMDLOG_PENDING);
        }
        goto unlock;
    }
    pthread_mutex_lock(&s->mu);
    e = tbl_get(s, key, key_len, h);
    if (e && e->state == DFB_CMDLOG_INFLIGHT)
        set_state(s, e, DFB_CMDLOG_DONE);
    pthread_mutex_unlock(&s->mu);
    return 0;
unlock:
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_unlock(&s->wmu);
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

void
dfb_cmdlog_release(dfb_cmdlog_t *s, const void *key, size_t key_len)
{
    if (!s || !key_ok(key, key_len))
        return;
    uint64_t h = siphash(s->sip, key, key_len);
    pthread_mutex_lock(&s->mu);
    entry_t *e = tbl_get(s, key, key_len, h);
    if (e && e->state == DFB_CMDLOG_INFLIGHT)
        set_state(s, e, DFB_CMDLOG_PENDING);
    pthread_mutex_unlock(&s->mu);
}

void
dfb_cmdlog_tick(dfb_cmdlog_t *s, int64_t wall_now_ms)
{
    if (!s || pthread_mutex_trylock(&s->wmu) != 0)
        return; /* a write is under way: the next tick does it */
    pthread_mutex_lock(&s->mu);
    expire(s, wall_now_ms);
    uint64_t dead = s->path ? s->end - HDR - s->live : 0;
    int due = dead > COMPACT_MIN && dead > s->live;
    pthread_mutex_unlock(&s->mu);
    if (due)
        compact(s);
    pthread_mutex_unlock(&s->wmu);
}

void
dfb_cmdlog_stats(dfb_cmdlog_t *s, dfb_cmdlog_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    out->entries = s->n;
    out->pending = s->n_pending;
    out->done = s->n_done;
    out->file_bytes = s->path ? s->end : 0;
    out->compactions = s->compactions;
    out->write_errors = s->write_errors;
    out->dropped_tail_bytes = s->dropped;
    pthread_mutex_unlock(&s->mu);
}

void
dfb_cmdlog_test_sync(dfb_cmdlog_t *s, int delay_ms, int fail_next_err)
{
    pthread_mutex_lock(&s->smu);
    s->sync_delay_ms = delay_ms;
    s->fail_next_sync = fail_next_err;
    pthread_mutex_unlock(&s->smu);
}

void
dfb_cmdlog_test_compact_delay(dfb_cmdlog_t *s, int delay_ms)
{
    atomic_store(&s->compact_delay_ms, delay_ms);
}

uint64_t
dfb_cmdlog_syncs(dfb_cmdlog_t *s)
{
    pthread_mutex_lock(&s->smu);
    uint64_t n = s->syncs;
    pthread_mutex_unlock(&s->smu);
    return n;
}

void
dfb_cmdlog_fail_next_write(dfb_cmdlog_t *s, int err)
{
    pthread_mutex_lock(&s->wmu);
    s->fail_next = err;
    pthread_mutex_unlock(&s->wmu);
}
