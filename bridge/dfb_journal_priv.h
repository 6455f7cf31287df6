/*  dfb_journal_priv: what the journal's source files share, not part of
    dfb_journal.h: the on-disk format, the structs, and the helpers the
    writer, recovery and readers all use. File layout, all integers little-endian:

      epoch    <dir>/journal/EPOCH: "<epoch>\n", written atomically (tmp,
               fdatasync, rename, directory fsync) when the epoch is created
      segment  <dir>/journal/<first gseq, 20 digits>.dfj
      record   u32 payload length | u32 CRC-32C of the payload | payload
      header   'H' u8 version=1 | u32 len + epoch | u64 first gseq | u64 created ms |
               u32 topic count | (u32 len + topic | u64 seq before this segment)*
      event    'E' u64 gseq | u64 seq | u64 ts ms | u32 topic len | u32 type len |
               u32 id len | u32 body len | topic | type | id | body
      damaged  <dir>/journal/damaged/<name>.<reason>: what recovery set aside */
#ifndef DFB_JOURNAL_PRIV_H
#define DFB_JOURNAL_PRIV_H

#include "dfb_journal.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "dfb_transcode.h"

#define REC_HEAD 8
#define EVENT_FIXED (1 + 8 + 8 + 8 + 4 * 4)
#define MIN_RECORD (REC_HEAD + EVENT_FIXED) /* the smallest event record on disk */
#define MAX_PAYLOAD ((uint32_t)1 << 30)
#define INDEX_EVERY 256 /* sparse index: one (gseq, offset) per this many records */

/* jr_read_record results besides the public codes: a whole record, or one cut short */
#define RR_OK 1
#define RR_SHORT 0

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

/*  The mutex `mu` guards the segment list, the counters and the sync
    generations and is never held across disk I/O. */
struct dfb_journal {
    dfb_journal_opts_t opts;
    char *jdir;
    char epoch[64];
    int lock_fd;
    int spare_fd; /* /dev/null, held so a segment can be opened at EMFILE (writer) */
    int fd;       /* active segment: the writer's; the sync thread dups it under mu */
    pthread_mutex_t mu;
    seg_t *segs; /* oldest first; the last is active */
    size_t nsegs, capsegs;
    dfb_topics_t *topics; /* writer */
    uint64_t last_gseq;   /* writer */
    int batch_mode;       /* writer */
    int need_cut;         /* writer: a partial record past cut_to could not be cut yet */
    int append_failing;   /* writer: the last append failed (its next failures log at debug) */
    uint64_t cut_to;
    /* Durability, under mu: appends bump gen_written; a sync that began at
       generation g and succeeded makes gen_synced >= g. A failed sync makes
       sync_bad sticky until a sync that began at bad_gen or later succeeds. */
    uint64_t gen_written, gen_synced, bad_gen;
    int sync_bad, busy;
    int64_t last_sync_ms;
    dfb_journal_stats_t st;
    /* The sync thread: tick() only posts a request (bg_req) under mu. */
    pthread_t bg;
    int bg_started, bg_stop;
    pthread_cond_t bg_cv, idle_cv;
    uint64_t bg_req, bg_done;
    int64_t bg_now;
    int sync_posted; /* mu: the writer posted an `interval` sync not yet served */
    /* One retention at a time (writer after a roll, sync thread after a
       tick); held across unlink, never taken by readers, stats or tick. */
    pthread_mutex_t ret_mu;
    int del_failing; /* ret_mu */
    dfb_buf_t hbuf;  /* writer */
    /* Staged records (dfb_journal_stage), written by one writev at commit:
       their bytes, and each one's gseq and offset in pend. Writer. */
    dfb_buf_t pend;
    struct {
        uint64_t gseq, off;
    } pmeta[DFB_JOURNAL_STAGE_MAX];
    size_t npend;
    uint64_t pend_prev_seq; /* the topic's seq before the last staged record */
};

/* ---- little-endian integers ----------------------------------------------- */

static inline void
le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void
le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t
rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t
rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static inline int64_t
mtime_ms(const struct stat *sb)
{
    return (int64_t)sb->st_mtim.tv_sec * 1000 + sb->st_mtim.tv_nsec / 1000000;
}

/* ---- shared helpers (dfb_journal_format.c) -------------------------------- */

void jr_seg_path(const dfb_journal_t *j, uint64_t first, char *out, size_t cap);
ssize_t jr_pread_full(int fd, void *buf, size_t n, uint64_t off);
int jr_read_record(int fd, uint64_t off, uint64_t limit, dfb_buf_t *buf);
int jr_parse_event(const uint8_t *p, size_t len, dfb_journal_rec_t *rec);
int jr_parse_header(const uint8_t *p, size_t len, char *epoch, uint64_t *first,
                    dfb_topics_t *topics);
void jr_seg_count(seg_t *s, uint64_t gseq, uint64_t off);
int jr_fsync_dir(const char *dir);
int jr_write_all(int fd, const void *data, size_t len);
int jr_build_header(dfb_buf_t *b, const char *epoch, uint64_t first, int64_t now_ms,
                    const dfb_topics_t *topics);

/* ---- the writer (dfb_journal.c), used by recovery ------------------------- */

seg_t *jr_push_seg(dfb_journal_t *j, uint64_t first);
int jr_new_segment(dfb_journal_t *j, uint64_t first, int64_t now_ms);

/* ---- recovery (dfb_journal_recover.c) ------------------------------------- */

/*  Recovers the journal folder of a new j (jdir and LOCK taken): continues
    its epoch, or starts new_epoch with the old segments moved aside. On
    success j's segments, active fd, epoch, last gseq and topics are set;
    on error -1 with the reason in err (j is left for dfb_journal_destroy). */
int jr_recover(dfb_journal_t *j, const char *new_epoch, int64_t now_ms, char *err, size_t errlen);

#endif
