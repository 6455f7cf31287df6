/*  dfb_journal: the bridge's append-only journal of published messages, in
    <stateDir>/journal. Every event is appended (its exact frame-1 and
    frame-2 bytes) before it is published and before its batch is
    acknowledged upstream; the replay endpoint reads it back. Segment files
    of bounded size, retention by total size and by age, a configurable
    fsync policy, and records framed with a length and a CRC-32C so that a
    torn tail (kill -9, power loss) is detected and cut at the next open.
    Each segment starts with a header record carrying the epoch, its first
    gseq and every topic's seq before it, so that a restart continues the
    same epoch and counters even after retention deleted older segments.
    The file EPOCH (written atomically when the epoch is created) keeps the
    epoch derivable when every header is damaged.

    Recovery at open. A damaged file never costs the intact ones, nothing
    is deleted, and no gseq or topic seq that consumers may have seen is
    given again to other bytes (never renumber):
    - a segment whose header is unreadable but whose records are readable
      gets its header rebuilt (epoch from EPOCH, first gseq from its name,
      topic seqs from the previous segment's header advanced by its
      records, or all 0 for gseq 1, or from the next header lowered by this
      file's records); the original is kept as damaged/<name>.header;
    - a segment with no readable header nor record (empty, truncated
      header, garbage), a header naming another first gseq (misnamed) or
      another epoch (foreign) is moved to damaged/<name>.<reason>; the
      gseqs it may have held (at most one record per 49 bytes) stay used;
    - in the newest segment a torn last record (cut short by the end of the
      file: never acknowledged, never published) is cut; any other bad
      record (CRC, absurd length, malformed payload, gseq going backwards)
      cuts the tail there, the cut bytes are copied to
      damaged/<name>.<offset>.tail, and the epoch continues after the
      highest gseq still found in them (or after the bad record's);
    - numbering continues after every gseq that may have been used; when
      that is beyond the newest record a new segment starts there, so the
      hole lies between segments and readers report it, and every topic's
      seq skips as many (the lost records' topics are unknown);
    - an EPOCH file naming an epoch no readable header has is the damaged
      one: the headers' epoch is kept and EPOCH rewritten;
    - bad records in older segments are left to the readers (reported as
      DFB_JOURNAL_CORRUPT with the lost range, the reader continues with
      the next segment): open reads only headers and the newest segment;
    - when nothing can be continued safely (no epoch can be read, or the
      only readable segment's topic seqs cannot be derived) a new epoch
      starts and every old segment is moved to damaged/, with one error.
    Each repair logs one error line naming the file and what was lost and
    counts damaged_files / damaged_bytes. Stray files are left alone.

    Durability: a failed fdatasync/fsync (roll, append, flush, interval,
    directory) is sticky: dfb_journal_flush fails until a sync that began
    after it succeeds. (On Linux a retried fdatasync after a real EIO may
    succeed without the lost pages: the error is counted and logged, but a
    retry that succeeds is trusted.)

    Writes: a batch's records are staged (encoded with their CRC into one
    bounded buffer) and written with one writev (dfb_journal_stage, then
    dfb_journal_commit); dfb_journal_append is the one-record form.

    Threads: one writer thread (open, append, stage, commit, flush, scan_tail, the
    recovered state); any number of readers, stats and tick() on other
    threads. An internal mutex guards the segment list and the counters and
    is never held across disk I/O, so tick, stats and readers never wait on
    the disk. A sync thread owned by the journal does the `interval`
    fdatasync of an idle tail and retention's deletes when tick() asks; the
    writer syncs (`always`, a due `interval`, before a roll) on its own
    thread. */
#ifndef DFB_JOURNAL_H
#define DFB_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dfb_crc32c.h"
#include "dfb_topics.h"

/*  Returned by the seek functions when the position asked for is older
    than the oldest record retained. */
#define DFB_JOURNAL_GONE 1

/*  Errors of the seek and reader functions (all negative: `< 0` is an
    error). DFB_JOURNAL_EIO is -1, an I/O error (errno kept). */
#define DFB_JOURNAL_EIO (-1)
/*  (DFB_JOURNAL_READER_GONE is -2, below.) Records that cannot be read
    (corrupt, or a hole recovery left): dfb_journal_reader_lost() gives the
    gseq range; the next call continues after it. */
#define DFB_JOURNAL_CORRUPT (-3)
#define DFB_JOURNAL_NOMEM (-4)

typedef enum {
    DFB_FSYNC_ALWAYS,   /* fdatasync before the batch is acknowledged (dfb_journal_flush) */
    DFB_FSYNC_INTERVAL, /* fdatasync at most every fsync_ms (append and tick) */
    DFB_FSYNC_NEVER     /* the kernel writes back when it likes */
} dfb_fsync_t;

typedef struct {
    const char *dir;        /* bridge.stateDir; the journal lives in dir/journal */
    uint64_t segment_bytes; /* a segment is closed once it reaches this size */
    uint64_t max_bytes;     /* retention: total size (whole segments; 0 = no limit) */
    int64_t max_age_ms;     /* retention: segments whose last write is older (0 = none) */
    dfb_fsync_t fsync;
    int64_t fsync_ms; /* DFB_FSYNC_INTERVAL period */
} dfb_journal_opts_t;

/*  One record. On append the pointers are borrowed; from a reader they
    point into the reader's buffer and stay valid until its next call. */
typedef struct {
    uint64_t gseq, seq;
    int64_t ts; /* journal time (ms since the Unix epoch), set by append */
    const char *topic;
    size_t topic_len;
    const char *type; /* the event's raw "type" ("" when not a string): dedupe key */
    size_t type_len;
    const char *id; /* the event's "id" ("" when none): dedupe key */
    size_t id_len;
    const uint8_t *body; /* frame 2, exactly as published */
    size_t body_len;
} dfb_journal_rec_t;

typedef struct {
    uint64_t appended;          /* records appended since open */
    uint64_t append_errors;     /* appends that failed (nothing was kept) */
    uint64_t fsyncs;            /* fdatasync calls */
    uint64_t segments;          /* segment files now */
    uint64_t bytes;             /* their total size */
    uint64_t segments_deleted;  /* removed by retention */
    uint64_t recovered_records; /* records found in the last segment at open */
    uint64_t truncated_bytes;   /* torn or corrupt tail cut at open */
    uint64_t read_errors;       /* corrupt records, holes and I/O errors met by readers */
    uint64_t oldest_gseq;       /* oldest retained (head + 1 when none) */
    uint64_t head_gseq;         /* newest appended (0 when none in this epoch) */
    int new_epoch;              /* 1 when open started a new epoch */
    uint64_t damaged_files;     /* repaired or moved to damaged/ at open */
    uint64_t damaged_bytes;     /* bytes set aside (moved, copied before a cut) at open */
    uint64_t sync_errors;       /* failed fdatasync/fsync (roll, append, flush, interval) */
    uint64_t delete_errors;     /* retention deletes that failed (retried) */
    int sync_failing;           /* a sync failed and none has covered its data since */
    int64_t disk_busy_since_ms; /* wall ms when the sync or delete in flight began; 0 = none */
} dfb_journal_stats_t;

typedef struct dfb_journal dfb_journal_t;
typedef struct dfb_journal_reader dfb_journal_reader_t;

/*  Opens (creating the folders) or recovers the journal in opts->dir
    (the rules above): the epoch, last gseq and per-topic seqs continue; a
    missing journal, or one that cannot be continued, starts a new epoch,
    new_epoch. The folder is locked (flock): a second bridge on the same
    stateDir is refused. Starts the sync thread. Returns NULL on error
    (an I/O error during repair included) with a message in err. */
dfb_journal_t *dfb_journal_open(const dfb_journal_opts_t *opts, const char *new_epoch,
                                int64_t now_ms, char *err, size_t errlen);

/*  Flushes per the policy, closes, NULLs *self_p; accepts NULL. Readers
    must be destroyed first. */
void dfb_journal_destroy(dfb_journal_t **self_p);

/*  The epoch (borrowed). */
const char *dfb_journal_epoch(const dfb_journal_t *self);

/*  The last gseq appended (recovered at open). Writer thread. */
uint64_t dfb_journal_last_gseq(const dfb_journal_t *self);

/*  1 when topic has been journaled in this epoch (it is in the topic table
    recovered at open or was appended since), else 0: a filter naming only
    unknown topics matches nothing. Any thread. Topics beyond the table's
    caps (dfb_topics.h) are not known. */
int dfb_journal_has_topic(dfb_journal_t *self, const char *topic, size_t len);

/*  Every topic's last seq (recovered at open, updated by append). Borrowed;
    writer thread only. */
const dfb_topics_t *dfb_journal_topics(const dfb_journal_t *self);

/*  Appends rec (gseq must exceed the last one) stamped with now_ms, rolling
    to a new segment first when the active one is full (the old one is
    synced first unless fsync is `never`), and fdatasyncs per the policy.
    Returns 0 once the record is in the file, or -1 on an I/O error
    (logged, counted; the file is cut back so no partial record stays, and
    the same gseq may be appended again). A failed sync of the roll, or of
    `always` before batches are announced, fails the append too. */
int dfb_journal_append(dfb_journal_t *self, const dfb_journal_rec_t *rec, int64_t now_ms);

/*  Most records and bytes staged (dfb_journal_stage) before they are
    written without waiting for dfb_journal_commit: memory stays bounded
    whatever the size of a batch. */
#define DFB_JOURNAL_STAGE_MAX 1024
#define DFB_JOURNAL_STAGE_BYTES (4u << 20)

/*  The batch form of dfb_journal_append: encodes rec (CRC included) into a
    staging buffer; dfb_journal_commit writes everything staged with one
    writev. A record staged is not in the file (readers cannot see it)
    until a commit (or an append, a flush, a roll or the staging caps above
    write it). Returns 0, or -1 when rec is refused or when writing the
    records staged before it failed (rec is then not staged: stage it
    again after a successful commit). Writer thread. */
int dfb_journal_stage(dfb_journal_t *self, const dfb_journal_rec_t *rec, int64_t now_ms);

/*  Writes every staged record (one writev; fdatasync too for `always`
    before batches are announced). 0 (also when nothing is staged), or -1
    on an I/O error (logged, counted; the file is cut back and the records
    stay staged: commit again). Writer thread. */
int dfb_journal_commit(dfb_journal_t *self, int64_t now_ms);

/*  The end of a batch, before its acknowledgement: commits what is staged
    (-1 if that fails), then fdatasync when the
    policy is `always` and something was appended, or when any sync failed
    since the last successful one (any policy but `never`). Returns -1 while
    a sync has failed and no later sync has covered its data (sticky: the
    batch must stay unacknowledged), else 0. Writer thread. */
int dfb_journal_flush(dfb_journal_t *self);

/*  Periodic work, from any thread: asks the sync thread for the `interval`
    fdatasync when due and retention (segments beyond max_bytes or older
    than max_age_ms, never the active one). Never waits on the disk. */
void dfb_journal_tick(dfb_journal_t *self, int64_t now_ms);

/*  Waits until the work asked by every tick() before this call is done
    (tests, and anyone who needs retention's effect now). */
void dfb_journal_drain(dfb_journal_t *self);

/*  Calls fn for the last `max` records (oldest first, all segments) not
    older than since_ms: used to rebuild the dedupe window at start. */
void dfb_journal_scan_tail(dfb_journal_t *self, size_t max, int64_t since_ms,
                           void (*fn)(void *arg, const dfb_journal_rec_t *rec), void *arg);

void dfb_journal_stats(dfb_journal_t *self, dfb_journal_stats_t *stats);

/*  A reader: a position in the journal. NULL when out of memory. */
dfb_journal_reader_t *dfb_journal_reader_new(dfb_journal_t *journal);
void dfb_journal_reader_destroy(dfb_journal_reader_t **self_p);

/*  Positions the reader before the first record with gseq >= from (0 counts
    as 1). Returns 0, DFB_JOURNAL_GONE when from is older than the oldest
    record retained, or DFB_JOURNAL_EIO. */
int dfb_journal_reader_seek_gseq(dfb_journal_reader_t *self, uint64_t from);

/*  Where a record starts in the journal: its gseq, segment and offset. */
typedef struct {
    uint64_t gseq, first, off;
} dfb_journal_pos_t;

/*  The position of the last record dfb_journal_reader_next returned. */
void dfb_journal_reader_pos(const dfb_journal_reader_t *self, dfb_journal_pos_t *pos);

/*  dfb_journal_reader_seek_gseq(from) that starts at pos (from
    dfb_journal_reader_pos of any reader of this journal) when pos->gseq is
    from and its segment is still listed, without a lookup or a scan: a
    late joiner asking again where its last answer stopped. Same returns. */
int dfb_journal_reader_seek_pos(dfb_journal_reader_t *self, uint64_t from,
                                const dfb_journal_pos_t *pos);

/*  Positions the reader at the start of the segment that holds seq from of
    topic (or later: records before it are for the caller to skip). Returns
    0, DFB_JOURNAL_GONE when seq from of topic is older than the oldest
    segment, DFB_JOURNAL_EIO or DFB_JOURNAL_NOMEM. */
int dfb_journal_reader_seek_topic(dfb_journal_reader_t *self, const char *topic, size_t len,
                                  uint64_t from);

/*  Reads the next record into *rec. Returns 1, 0 at the head (nothing more
    for now: call again later), DFB_JOURNAL_READER_GONE when retention
    deleted the records that follow while the reader was behind (never a
    silent hole), DFB_JOURNAL_CORRUPT when records cannot be read (a bad
    record: the rest of its closed segment, or up to the head in the active
    one; or a hole left by recovery) with the range in
    dfb_journal_reader_lost() and the next call continuing after it,
    DFB_JOURNAL_EIO or DFB_JOURNAL_NOMEM (the same call may be retried).
    Errors are logged and counted (read_errors). */
#define DFB_JOURNAL_READER_GONE (-2)
/*  With a filter (dfb_journal_reader_filter) it may also return
    DFB_JOURNAL_PASSED: records of other topics were stepped over (their
    heads read, not their bodies) and none is returned yet; call again. */
#define DFB_JOURNAL_PASSED 2
int dfb_journal_reader_next(dfb_journal_reader_t *self, dfb_journal_rec_t *rec);

/*  Sets a topic filter (borrowed: topics and lens must outlive the reader;
    n = 0 removes it): the reader then skips whole closed segments that
    hold no record of these topics (their headers' seqs tell), reading
    only the others; in those it reads only the head (fixed part and
    topic) of a record of another topic and steps over it unreturned (not
    CRC-checked, since never returned); what it returns still needs the
    caller's own filter (from_gseq, from_seq). 0 or DFB_JOURNAL_NOMEM. */
int dfb_journal_reader_filter(dfb_journal_reader_t *self, char *const *topics, const size_t *lens,
                              uint32_t n);

/*  gseq of the last record read or stepped over (0: none yet). */
uint64_t dfb_journal_reader_last(const dfb_journal_reader_t *self);

/*  Bytes of the records the filter stepped over since the last call. */
uint64_t dfb_journal_reader_take_passed(dfb_journal_reader_t *self);

/*  Segments skipped by the filter so far. */
uint64_t dfb_journal_reader_skipped(const dfb_journal_reader_t *self);

/*  The gseq range [*from, *to] that the last DFB_JOURNAL_CORRUPT skipped. */
void dfb_journal_reader_lost(const dfb_journal_reader_t *self, uint64_t *from, uint64_t *to);

/*  Self-tests (run by dfb_delivery_test): unit tests of the journal.
    Each returns 0 when all checks pass. dir is a scratch folder. */
int dfb_journal_test(const char *which, const char *dir, int verbose);

#endif
