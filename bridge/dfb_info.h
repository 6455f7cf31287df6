/*  dfb_info: the bridge's INFO view. Every live counter is a row of one
    table (name, help text, where its value lives), so the replay socket's
    `info` request, the exit log and a future /metrics walk the same list.
    Each counter has one writer (the thread named beside it) and is an
    atomic: readers on other threads never take a lock the writer holds. */
#ifndef DFB_INFO_H
#define DFB_INFO_H

#include <stddef.h>
#include <stdint.h>

#include "dfb_journal.h"
#include "dfb_loop_counters.h"
#include "dfb_topics.h"
#include "dfb_transcode.h"
#include "dfb_upstream.h"

typedef _Atomic uint64_t dfb_counter_t;

/*  The publishing side's counters (dfb_publish, dfb_actor, dfb_replay). */
typedef struct {
    /* the sequencer: the datafeed loop's thread */
    dfb_counter_t encode_errors;   /* events not published: msgpack encoding failed */
    dfb_counter_t topics_overflow; /* events re-topiced to UNKNOWN by the topic cap */
    dfb_counter_t topics;          /* distinct topics seen */
    dfb_counter_t deduped;         /* events not published again: same (id, type) */
    dfb_counter_t journal_errors;  /* failed journal appends (each retried) */
    dfb_counter_t journal_failing; /* 1 while appends fail: batches are not acknowledged */
    dfb_counter_t pipe_errors;     /* events journaled but not handed to the actor */
    /* the sequencer's limits on hostile input (issue 9) */
    dfb_counter_t topics_too_long;  /* events re-topiced to UNKNOWN: type over 255 bytes */
    dfb_counter_t events_too_large; /* events published as a stub (bridge.maxEventBytes) */
    /* the publisher actor */
    dfb_counter_t published;   /* messages handed to the PUB socket */
    dfb_counter_t send_errors; /* events not published: zmq_send failed */
    dfb_counter_t pipe_drops;  /* events lost inside the actor pipe (a frame unreadable) */
    dfb_counter_t heartbeats;  /* `_hb` messages sent */
    /* the replay thread */
    dfb_counter_t replay_requests;  /* requests received (well-formed or not) */
    dfb_counter_t replay_messages;  /* messages sent in answers */
    dfb_counter_t replay_errors;    /* answers with status "error" */
    dfb_counter_t replay_abandoned; /* requests given up: client gone or stalled */
    dfb_counter_t info_requests;    /* `info` requests answered */
    /* the replay thread's limits on hostile input (issue 9) */
    dfb_counter_t replay_bytes_held;       /* answer bytes in the ROUTER, not yet written out */
    dfb_counter_t replay_paused;           /* times an answer paused on a replay byte cap */
    dfb_counter_t replay_scan_cut;         /* filtered answers ended by the scan budget (more) */
    dfb_counter_t replay_skipped;          /* filtered answers at once: no such topic journaled */
    dfb_counter_t replay_segments_skipped; /* segments a filtered answer skipped unread */
    dfb_counter_t connections;             /* live TCP connections on the PUB and the ROUTER */
    dfb_counter_t connections_refused;     /* closed at once: over bridge.maxConnections */
    /* any internal thread */
    dfb_counter_t dead_threads; /* internal threads that stopped on an error: exit 5 */
    /* the ZAP thread (dfb_zap; CURVE only, else all 0) */
    dfb_counter_t auth_allowed;   /* CURVE handshakes allowed (key in the allow-list) */
    dfb_counter_t auth_denied;    /* CURVE handshakes denied */
    dfb_counter_t auth_clients;   /* keys in the allow-list now */
    dfb_counter_t auth_bad_files; /* *.key files skipped at the last reload (broken) */
    dfb_counter_t auth_reloads;   /* allow-list (re)loads, the first included */
    dfb_counter_t auth_rebinds;   /* reloads that removed a key: PUB and replay re-bound */
    /* the command channel's thread (dfb_cmd, issue 12); every reply counts once in
       commands_ok or one commands_errors_* (whether or not it could be delivered) */
    dfb_counter_t commands_received;             /* request messages read from the ROUTER */
    dfb_counter_t commands_ok;                   /* replies with ok: true */
    dfb_counter_t commands_errors_bad_request;   /* replies with error.code bad_request */
    dfb_counter_t commands_errors_not_allowed;   /* ... not_allowed */
    dfb_counter_t commands_errors_rejected;      /* ... rejected */
    dfb_counter_t commands_errors_unavailable;   /* ... unavailable */
    dfb_counter_t commands_errors_unknown_outcome; /* ... unknown_outcome */
    dfb_counter_t commands_errors_busy;          /* ... busy */
    dfb_counter_t commands_replayed;             /* replies of a recorded outcome (no call) */
    dfb_counter_t commands_found;                /* replies settled by finding the mark */
    dfb_counter_t commands_denied;               /* requests refused by bridge.commandsAllow */
    dfb_counter_t commands_queued;               /* gauge: requests waiting for an executor */
    dfb_counter_t commands_inflight;             /* gauge: requests with an executor */
    dfb_counter_t commands_dropped_replies;      /* replies not delivered (client gone, pipe
                                                    full) and messages with no request frame */
    /* the command journal (dfb_cmd's keeper thread, from dfb_cmdlog_stats) */
    dfb_counter_t commands_log_entries;      /* gauge: requests in the table */
    dfb_counter_t commands_log_bytes;        /* gauge: commands.log's size */
    dfb_counter_t commands_log_compactions;  /* rewrites without the dead records */
    dfb_counter_t commands_log_write_errors; /* failed record writes and fdatasyncs */
    /* /metrics only (dfb_metrics), not rows of the table below */
    dfb_counter_t commands_seconds[DFB_UP_BUCKETS + 1]; /* dfb_cmd: receive -> reply */
    dfb_counter_t commands_seconds_sum_us;
    dfb_counter_t published_by_type[DFB_EVENT_TYPES + 1]; /* the actor; [DFB_EVENT_TYPES]: other */
    dfb_counter_t lag_buckets[DFB_LAG_BUCKETS + 1];       /* the sequencer: event ts -> publish */
    dfb_counter_t lag_sum_ms;
    dfb_counter_t replay_ok;   /* the replay thread: answers ended with status ok */
    dfb_counter_t subscribers; /* the replay thread (fdguard): live connections on the PUB */
} dfb_pub_counters_t;

/*  Where a row's value lives. */
typedef enum {
    DFB_INFO_LOOP,     /* a _Atomic uint64_t in dfb_loop_stats_t */
    DFB_INFO_LOOP_AGE, /* ms since the monotonic time in dfb_loop_stats_t (0: never) */
    DFB_INFO_PUB,      /* a dfb_counter_t in dfb_pub_counters_t */
    DFB_INFO_JOURNAL   /* a uint64_t in dfb_journal_stats_t */
} dfb_info_src_t;

/*  What a value means over time (for /metrics: counter or gauge). */
typedef enum {
    DFB_INFO_COUNTER, /* only grows while the bridge runs */
    DFB_INFO_GAUGE    /* goes up and down */
} dfb_info_kind_t;

typedef struct {
    const char *name; /* snake_case, stable: part of the contract (info reply) */
    const char *help;
    dfb_info_kind_t kind;
    dfb_info_src_t src;
    size_t off; /* offset of the field in its struct */
} dfb_info_row_t;

/*  The table, in the order of the info reply. */
extern const dfb_info_row_t dfb_info_rows[];
extern const size_t dfb_info_nrows;

/*  What the rows point into; each borrowed and may be NULL (its rows then
    read 0). journal stats are read once per walk. */
typedef struct {
    const dfb_loop_stats_t *loop;
    const dfb_pub_counters_t *pub;
    dfb_journal_t *journal;
} dfb_info_sources_t;

/*  Fills values[dfb_info_nrows] from src (atomic loads). now_mono_ms is
    for the age rows. */
void dfb_info_values(const dfb_info_sources_t *src, int64_t now_mono_ms, uint64_t *values);

/*  Appends the msgpack body of an info reply (schemas/CONTRACT.md, "Replay",
    `info`): v, req, epoch, ts, counters (a map name -> value in the table's
    order). names and values have n entries. 0, or -1 when out of memory. */
int dfb_info_encode(dfb_buf_t *b, uint64_t req, const char *epoch, uint64_t ts,
                    const char *const *names, const uint64_t *values, size_t n);

/*  Writes "name value, name value, ..." for the whole table into out
    (truncated to cap, always terminated): the one-line dump of the log. */
void dfb_info_line(const uint64_t *values, char *out, size_t cap);

#endif
