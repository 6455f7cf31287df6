/*  dfb_replay: the replay endpoint (schemas/CONTRACT.md, "Replay") on its
    own thread. A ROUTER socket serves requests "from gseq N [topics T...]"
    or "topic T from seq N" with the journaled messages, byte for byte as
    published, then an `_end` marker, and `info` requests with the live
    counters (dfb_info). The thread owns the ROUTER and every journal read,
    and runs the journal's periodic work (dfb_journal_tick): the disk waits
    happen here, never on the publisher actor's thread. Each request gets a
    bounded amount of work per turn; ZMQ_ROUTER_MANDATORY is set and sends
    never block: a client that does not read is served later, and abandoned
    (counted) after DFB_REPLAY_STALL_MS without progress.

    Bounded against hostile clients: the work per turn is bounded in time
    and bytes read and goes round robin, each request a slice of it; a
    topics filter naming no topic the journal has seen is answered at once,
    a filtered answer skips the segments without its topics and reads only
    the heads of other topics' records, and ends after DFB_REPLAY_SCAN_BYTES
    of journal; a new request from a client cancels its
    old one; the bytes of answers queued in the ROUTER and not yet written
    to the network are counted exactly (zero-copy messages whose free
    function subtracts them) and a client's answer pauses while its own
    bytes exceed client_bytes or everyone's exceed max_bytes (a client
    holding nothing may still send one message at a time into a headroom
    of max_bytes / 4: the total stays under 1.25 x max_bytes). */
#ifndef DFB_REPLAY_H
#define DFB_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "dfb_fdguard.h"
#include "dfb_info.h"
#include "dfb_journal.h"
#include "dfb_transcode.h"

#define DFB_REPLAY_TOPIC_END "_end"
#define DFB_REPLAY_TOPIC_INFO "_info"
#define DFB_REPLAY_MAX_LIMIT 1000    /* messages per answer */
#define DFB_REPLAY_MAX_ACTIVE 256    /* requests served at once; more get code "busy" */
#define DFB_REPLAY_MAX_TOPICS 64     /* entries of a "topics" filter */
#define DFB_REPLAY_MAX_REQUEST 65536 /* bytes of a request frame */
#define DFB_REPLAY_STALL_MS 30000    /* a client that reads nothing for this long is dropped */
/*  Work per turn of the replay thread, over all requests in turn (round
    robin: the next turn starts with the next request): at most this long
    and this many journal bytes read, then the thread polls its pipe and
    the ROUTER again. */
#define DFB_REPLAY_TURN_MS 10
#define DFB_REPLAY_TURN_BYTES (8u << 20)
/*  A filtered answer (topics) ends after reading this many journal bytes
    with `more` and last_gseq = the last gseq read, so one request never
    scans the whole journal for a rare topic while its client may be gone:
    the client asks again from last_gseq + 1. */
#define DFB_REPLAY_SCAN_BYTES (64u << 20)
#define DFB_REPLAY_MAX_BYTES_DEFAULT (256ull << 20)
#define DFB_REPLAY_CLIENT_BYTES_DEFAULT (16ull << 20)

typedef struct dfb_replay dfb_replay_t;

typedef struct {
    const char *endpoint;         /* bridge.replay; NULL or "" = no ROUTER (the thread ticks) */
    int zmtp_ms;                  /* ZMTP heartbeats on the ROUTER; 0 = off */
    dfb_journal_t *journal;       /* borrowed; required */
    const char *epoch;            /* copied */
    dfb_pub_counters_t *counters; /* borrowed: the replay_* counters; the info view reads all */
    /* CURVE server secret key (32 bytes, borrowed, must outlive the thread);
       NULL = plain. With it, a change of counters->auth_rebinds (dfb_zap
       removed a key) makes the thread close the ROUTER (every connection
       goes, requests in progress are abandoned and counted) and bind it
       again, retrying every 100 ms until it works. */
    const uint8_t *curve_secret;
    uint64_t max_bytes;    /* bridge.replayMaxBytes: answer bytes held in the ROUTER, all clients */
    uint64_t client_bytes; /* bridge.replayClientBytes: the same, per client (0: defaults) */
    void *pub;             /* the PUB socket, not yet used by another thread: its
                              connections are capped too (dfb_fdguard); NULL = not */
    uint64_t max_connections; /* bridge.maxConnections per socket (0: dfb_fdguard default) */
    void *commands;           /* the command ROUTER (bridge.commands), not yet used by another
                                 thread: capped too; NULL = none */
} dfb_replay_opts_t;

/*  Binds the ROUTER (ZMQ_ROUTER_MANDATORY, TCP keepalive, ZMTP heartbeats
    when asked) and starts the thread. NULL on error, message in err (a
    bind error names bridge.replay). */
dfb_replay_t *dfb_replay_new(void *ctx, const dfb_replay_opts_t *opts, char *err, size_t errlen);

/*  Stops the thread, closes the socket, abandons the requests; NULLs
 *self_p; accepts NULL. The journal must outlive this call. */
void dfb_replay_destroy(dfb_replay_t **self_p);

/*  The connection guard of the PUB and the ROUTER (dfb_fdguard; NULL when
    none), for the publisher actor's dfb_fdguard_rewatch after a re-bind.
    Borrowed: lives as long as self. */
dfb_fdguard_t *dfb_replay_guard(dfb_replay_t *self);

/*  The endpoint actually bound ("" when no ROUTER), borrowed. */
const char *dfb_replay_endpoint(const dfb_replay_t *self);

/*  Lets info answers include the datafeed loop's counters (borrowed; they
    must outlive the replay thread). Any thread. */
void dfb_replay_set_loop(dfb_replay_t *self, const dfb_loop_stats_t *loop);

/*  The fields of an end marker (schemas/CONTRACT.md, "Replay"). */
typedef struct {
    uint64_t req, count, last_gseq, last_seq, head_gseq, oldest_gseq;
    int by_topic; /* a topic request: last_seq is sent */
    int more;
    const char *epoch;
    const char *code; /* NULL: status "ok"; else status "error" with code and error */
    const char *error;
    uint64_t lost_from, lost_to; /* code "damaged" only: the gseqs that cannot be read */
} dfb_replay_end_t;

/*  Appends the msgpack body of an end marker. 0, or -1 when out of memory. */
int dfb_replay_end_encode(dfb_buf_t *b, const dfb_replay_end_t *e);

#endif
