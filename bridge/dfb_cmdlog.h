/*  dfb_cmdlog: the command channel's record of requests (schemas/CONTRACT.md
    "Commands", D3): which (scope, id) keys were begun, with what fingerprint,
    and the outcome recorded for each, durable in <stateDir>/commands.log
    (or in memory only) for a window of time. No sockets, no HTTP. */
#ifndef DFB_CMDLOG_H
#define DFB_CMDLOG_H

#include <stddef.h>
#include <stdint.h>

typedef struct dfb_cmdlog dfb_cmdlog_t;

typedef enum {
    DFB_CMDLOG_NEW = 0,  /* unknown key (or forgotten: older than the window) */
    DFB_CMDLOG_CONFLICT, /* known key, another fingerprint */
    DFB_CMDLOG_INFLIGHT, /* begun in this run and not finished */
    DFB_CMDLOG_PENDING,  /* begun, no outcome, not in flight: an earlier run was killed mid-call, or the
                            last attempt ended unavailable/unknown_outcome (dfb_cmdlog_release) */
    DFB_CMDLOG_DONE      /* outcome recorded */
} dfb_cmdlog_state_t;

typedef struct {
    int64_t begin_ms;  /* wall-clock ms of the FIRST begin record of this key (kept across runs/resumes) */
    uint8_t *outcome;  /* DONE: malloc'd copy of the outcome bytes (caller frees); else NULL */
    size_t outcome_len;
} dfb_cmdlog_entry_t;

#define DFB_CMDLOG_WINDOW_MS 86400000LL          /* default window: 24 h */
#define DFB_CMDLOG_KEY_MAX 512                   /* key bytes */
#define DFB_CMDLOG_OUTCOME_MAX (64u * 1024 * 1024) /* outcome bytes */

/*  Opens <dir>/commands.log (created 0600 in the existing dir, locked with
    flock against a second process), loads every record younger than
    window_ms (0 = default 86400000), cuts a damaged tail (one warn line
    saying how many bytes were dropped and why; never fatal; bytes after a
    damaged record in the middle are first copied aside to
    commands.log.damaged-<ms>) and compacts when dead records (expired,
    superseded, failed) make at least 1 MiB or as much as the live ones.
    dir NULL = memory only. NULL with a message in err only when the file
    cannot be opened/created/locked. */
dfb_cmdlog_t *dfb_cmdlog_open(const char *dir, int64_t window_ms, char *err, size_t errlen);
/*  The same with the wall clock of the load given (tests, fuzzing). */
dfb_cmdlog_t *dfb_cmdlog_open_at(const char *dir, int64_t window_ms, int64_t wall_now_ms, char *err,
                                 size_t errlen);
void dfb_cmdlog_close(dfb_cmdlog_t **self_p); /* accepts NULL; NULLs *self_p */

/*  key: opaque bytes (the caller passes scope "\0" id), 1..512 bytes; fp:
    32 bytes. Fills e for every state (begin_ms for INFLIGHT/PENDING/DONE,
    outcome for DONE; zeros otherwise). A DONE outcome that can no longer be
    read back (I/O error, CRC) turns the entry PENDING, which is returned.
    Thread-safe (internal mutex). */
dfb_cmdlog_state_t dfb_cmdlog_find(dfb_cmdlog_t *self, const void *key, size_t key_len,
                                   const uint8_t fp[32], dfb_cmdlog_entry_t *e);

/*  NEW -> INFLIGHT: appends a begin record {key, fp, op, stream, wall_ms}
    and makes it durable (write + fdatasync) before returning. PENDING ->
    INFLIGHT: no record (the first begin stays), begin_ms unchanged.
    0, or -1 with errno (disk full, I/O error: the caller answers
    unavailable and makes no call; the entry stays as it was; EBUSY when
    INFLIGHT, EEXIST when DONE or another fingerprint, EINVAL for bad
    arguments). Thread-safe; the fdatasync is not done under the lock that
    dfb_cmdlog_find takes, and concurrent callers share one (group commit).
    A failed fdatasync may leave the record in the file: after a restart
    that key is then PENDING (looked for, never blindly re-sent).
    op: 1..255 bytes; stream: NULL or 0..1024 bytes. */
int dfb_cmdlog_begin(dfb_cmdlog_t *self, const void *key, size_t key_len, const uint8_t fp[32],
                     const char *op, const char *stream, int64_t wall_ms);

/*  INFLIGHT -> DONE: appends {key, outcome bytes} durably. 0 or -1 (errno;
    the entry then stays PENDING so a retry with the same id looks for the
    mark instead of trusting memory; EFBIG over 64 MiB; EINVAL when the key
    is not INFLIGHT, and then nothing changes). */
int dfb_cmdlog_done(dfb_cmdlog_t *self, const void *key, size_t key_len, const uint8_t *outcome,
                    size_t outcome_len);

/*  INFLIGHT -> PENDING (memory only: the last attempt ended without a
    definite outcome). Other states: nothing. */
void dfb_cmdlog_release(dfb_cmdlog_t *self, const void *key, size_t key_len);

/*  Periodic work (dfb_cmd's keeper thread calls it about once a second):
    forgets entries older than the window (begin_ms < wall_now - window;
    INFLIGHT ones are never forgotten) and compacts the file when the dead
    bytes exceed both 1 MiB and the live bytes (rewrite to
    commands.log.tmp, fdatasync, rename, fsync the dir). Never waits for a
    begin/done's write: when one is under way the work is left to the next
    tick. The compaction itself runs on the caller's thread; find is not
    held up by it (mu is taken only to switch to the new file), begin and
    done wait for it. Each compaction logs one info line. */
void dfb_cmdlog_tick(dfb_cmdlog_t *self, int64_t wall_now_ms);

typedef struct {
    uint64_t entries, pending, done, file_bytes, compactions, write_errors, dropped_tail_bytes;
} dfb_cmdlog_stats_t;
void dfb_cmdlog_stats(dfb_cmdlog_t *self, dfb_cmdlog_stats_t *out);

/*  Test hook: the next record write fails with errno err (after writing
    half the record, so the cleanup of a partial write is exercised).
    0 = no failure. */
void dfb_cmdlog_fail_next_write(dfb_cmdlog_t *self, int err);

/*  Test hooks: every fdatasync of commands.log waits delay_ms first; the
    next one fails with errno fail_next_err (0: none). And the number of
    fdatasyncs made (group commit makes fewer than records). */
void dfb_cmdlog_test_sync(dfb_cmdlog_t *self, int delay_ms, int fail_next_err);
uint64_t dfb_cmdlog_syncs(dfb_cmdlog_t *self);

/*  Test hook: a compaction waits delay_ms (logged at info) before it
    renames its new file into place, holding the write lock, as a slow disk
    would (dfbridge: env DFB_TEST_COMPACT_DELAY_MS). */
void dfb_cmdlog_test_compact_delay(dfb_cmdlog_t *self, int delay_ms);

int dfb_cmdlog_test(int verbose); /* self-test */
/*  Writes DFB_CMDLOG_BENCH_N (default 1 000 000) requests over 23 h and
    times loading them (dfb_selftest cmdlog_bench; not a ctest). */
int dfb_cmdlog_bench(int verbose);

#endif
