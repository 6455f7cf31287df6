/*  dfb_replay: the replay endpoint (schemas/CONTRACT.md, "Replay"). A ROUTER
    socket serves requests "from gseq N [topics T...]" or "topic T from seq
    N" with the journaled messages, byte for byte as published, then an
    `_end` marker. It runs inside the publisher actor thread: each call does
    a bounded amount of work so heartbeats and publishing never wait behind
    a long answer. ZMQ_ROUTER_MANDATORY is set and sends never block: a
    client that does not read is served later, and abandoned (counted) after
    DFB_REPLAY_STALL_MS without progress. */
#ifndef DFB_REPLAY_H
#define DFB_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "dfb_journal.h"
#include "dfb_transcode.h"

#define DFB_REPLAY_TOPIC_END "_end"
#define DFB_REPLAY_MAX_LIMIT 1000    /* messages per answer */
#define DFB_REPLAY_MAX_ACTIVE 256    /* requests served at once; more get code "busy" */
#define DFB_REPLAY_MAX_TOPICS 64     /* entries of a "topics" filter */
#define DFB_REPLAY_MAX_REQUEST 65536 /* bytes of a request frame */
#define DFB_REPLAY_STALL_MS 30000    /* a client that reads nothing for this long is dropped */

typedef struct dfb_replay dfb_replay_t;

typedef struct {
    uint64_t requests;  /* requests received (well-formed or not) */
    uint64_t messages;  /* messages sent in answers */
    uint64_t errors;    /* answers with status "error" */
    uint64_t abandoned; /* requests given up: client gone or stalled */
} dfb_replay_stats_t;

/*  Creates the ROUTER socket in ctx (ZMQ_ROUTER_MANDATORY, TCP keepalive,
    ZMTP heartbeats every zmtp_ms when > 0) and binds endpoint; journal is
    borrowed. The socket may
    then move to another thread (after a memory barrier such as
    pthread_create) that alone uses the object. NULL on error, message in
    err naming bridge.replay. */
dfb_replay_t *dfb_replay_new(void *ctx, const char *endpoint, dfb_journal_t *journal, int zmtp_ms,
                             char *err, size_t errlen);

/*  Closes the socket and abandons the requests; NULLs *self_p; accepts NULL. */
void dfb_replay_destroy(dfb_replay_t **self_p);

/*  The socket to poll for ZMQ_POLLIN. */
void *dfb_replay_socket(dfb_replay_t *self);

/*  The endpoint actually bound (borrowed). */
const char *dfb_replay_endpoint(const dfb_replay_t *self);

/*  Receives every request waiting on the socket (non-blocking). epoch is the
    bridge's current epoch. */
void dfb_replay_receive(dfb_replay_t *self, const char *epoch, int64_t now_ms);

/*  Serves pending requests a bounded step. Returns the milliseconds the
    caller may wait before calling again: 0 when work remains, a short
    retry delay when every request waits for a slow client, -1 when idle. */
int dfb_replay_work(dfb_replay_t *self, const char *epoch, int64_t now_ms);

void dfb_replay_stats(const dfb_replay_t *self, dfb_replay_stats_t *stats);

/*  The fields of an end marker (schemas/CONTRACT.md, "Replay"). */
typedef struct {
    uint64_t req, count, last_gseq, last_seq, head_gseq, oldest_gseq;
    int by_topic; /* a topic request: last_seq is sent */
    int more;
    const char *epoch;
    const char *code; /* NULL: status "ok"; else status "error" with code and error */
    const char *error;
} dfb_replay_end_t;

/*  Appends the msgpack body of an end marker. 0, or -1 when out of memory. */
int dfb_replay_end_encode(dfb_buf_t *b, const dfb_replay_end_t *e);

#endif
