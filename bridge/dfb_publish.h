/*  dfb_publish: the sequencer of the bridge's publishing side. Gives every
    event its seq (per topic) and gseq (over all topics) in the current
    epoch, drops Symphony's redeliveries (dedupe window), appends each
    message to the journal (when bridge.stateDir is set) and hands it to the
    publisher actor (dfb_actor: the PUB socket and the `_hb` timer); the
    replay thread (dfb_replay) serves the journal back. The sequencer is
    the one owner of the seq counters: the journal's are only read at open,
    the actor keeps the published watermark for its heartbeats.

    The API is for one thread only (the thread that called _new, normally
    the datafeed loop's).

    For the loop: call dfb_publish_event for each event of a batch, then
    dfb_publish_flush, and only then acknowledge the batch upstream (send its
    ackId). dfb_publish_event encodes the event and stages it (journal
    record and PUB frames); dfb_publish_flush appends the batch to the
    journal with one writev, then hands it to the actor as one unit (one
    pipe message), then makes it durable per bridge.journal.fsync
    (`always`: fdatasync) and waits until the actor has published it. So
    an event is in the journal before any subscriber can see it. A batch
    longer than DFB_PUBLISH_BATCH_MAX events or DFB_PUBLISH_BATCH_BYTES is
    written and handed over in parts as it grows (memory stays bounded).
    Events published and not flushed go out at dfb_publish_stats or
    dfb_publish_destroy.

    A failing journal (disk full, EIO) is retried with a backoff inside
    dfb_publish_event / dfb_publish_flush, so the batch is not acknowledged
    meanwhile; it is logged once when it starts failing and once when it
    recovers. */
#ifndef DFB_PUBLISH_H
#define DFB_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#include "dfb_heartbeat.h"
#include "dfb_info.h"
#include "dfb_journal.h"
#include "dfb_json.h"
#include "dfb_topics.h"
#include "dfb_transcode.h"
#include "dfb_fdguard.h"
#include "dfb_zsock.h"

/*  Most distinct topics with their own seq counter. An event whose type
    would be topic number 4097 is published under DFB_TOPIC_UNKNOWN instead
    (its body, with the real "type", is unchanged), and counted in
    topics_overflow: a hostile pod inventing types cannot grow memory. */
#define DFB_PUBLISH_MAX_TOPICS DFB_TOPICS_MAX

/*  ZMQ_LINGER at close: unsent messages get 1 s to leave at shutdown, then
    are dropped, so a SIGTERM never hangs on a dead subscriber. */
#define DFB_PUBLISH_LINGER_MS 1000

/*  A batch is handed to the actor early past this many events or bytes. */
#define DFB_PUBLISH_BATCH_MAX 1024
#define DFB_PUBLISH_BATCH_BYTES (4u << 20)

typedef struct dfb_publish dfb_publish_t;

typedef struct {
    const char *endpoint;         /* bridge.publish */
    int sndhwm;                   /* bridge.sndhwm */
    const char *state_dir;        /* bridge.stateDir; NULL or "" = no journal, no replay */
    dfb_journal_opts_t journal;   /* bridge.journal.* (dir is taken from state_dir) */
    const char *replay;           /* bridge.replay; NULL or "" = off; needs state_dir */
    const char *replay_advertise; /* bridge.replayAdvertise; NULL = the bound replay endpoint */
    int heartbeat_ms;             /* bridge.heartbeatMillis; 0 = off */
    int zmtp_heartbeat_ms;        /* bridge.zmtpHeartbeatMillis: ZMTP PING interval; 0 = off */
    size_t dedupe_window;         /* bridge.dedupeWindow: keys kept; 0 = off */
    int64_t dedupe_ms;            /* bridge.dedupeMillis: their age limit; 0 = none */
    /* CURVE (README "Security"): the bridge's secret key (32 bytes, copied)
       and bridge.curve.clientsDir; both NULL = plain sockets. With them the
       ZAP handler (dfb_zap) starts before the PUB and ROUTER bind, both
       sockets are CURVE servers, and a removed client key re-binds them. */
    const uint8_t *curve_secret;
    const char *curve_clients_dir;
    uint64_t max_event_bytes;     /* bridge.maxEventBytes: bigger bodies become stubs; 0 = none */
    uint64_t max_connections;     /* bridge.maxConnections per socket (0: a quarter of the fds) */
    uint64_t replay_max_bytes;    /* bridge.replayMaxBytes (0: the default) */
    uint64_t replay_client_bytes; /* bridge.replayClientBytes (0: the default) */
    /* bridge.commands (dfb_cmd): its ROUTER is bound here, with the CURVE of
       PUB and replay and watched by the connection guard before any thread
       uses it; dfb_publish_take_commands hands it to the command thread.
       NULL or "" = none. */
    const char *commands;
    int64_t commands_maxmsgsize; /* ZMQ_MAXMSGSIZE of that ROUTER */
} dfb_publish_opts_t;

/*  A snapshot of the counters (the live ones: dfb_publish_counters). */
typedef struct {
    uint64_t published;        /* messages handed to the PUB socket (both frames) */
    uint64_t encode_errors;    /* events not published: msgpack encoding failed */
    uint64_t send_errors;      /* events not published: zmq_send failed */
    uint64_t topics_overflow;  /* events re-topiced to UNKNOWN by the topic cap */
    uint32_t topics;           /* distinct topics seen */
    uint64_t journaled;        /* events appended to the journal */
    uint64_t journal_errors;   /* failed appends (retried until they succeed or a stop) */
    uint64_t deduped;          /* events not published again: same (id, type) in the window */
    uint64_t heartbeats;       /* `_hb` messages sent */
    uint64_t replay_requests;  /* replay requests received */
    uint64_t replay_messages;  /* messages sent in replay answers */
    uint64_t replay_errors;    /* replay answers with status "error" */
    uint64_t replay_abandoned; /* replay requests given up (client gone or stalled) */
    uint64_t pipe_drops;       /* events lost inside the actor pipe (counted, replay has them) */
} dfb_publish_stats_t;

/*  Creates the PUB socket (dfb_zsock: ZMQ_SNDHWM = sndhwm, TCP keepalive,
    ZMTP heartbeats when asked, linger as above) and binds it; opens or
    recovers the journal (the epoch and counters continue from it); starts
    the replay thread (binding bridge.replay when set) and the actor.
    Returns NULL on error with a message in err (a bind error names its
    key). The environment variable DFB_TEST_ACTOR_FAIL_AFTER=N (tests only)
    makes the actor thread stop as on an error after N messages. */
dfb_publish_t *dfb_publish_new_opts(const dfb_publish_opts_t *opts, char *err, size_t errlen);

/*  The simple form: no journal, no replay, no heartbeat, no dedupe. */
dfb_publish_t *dfb_publish_new(const char *endpoint, int sndhwm, char *err, size_t errlen);

/*  Publishes what was handed over, stops the actor, closes the sockets
    (lingering up to DFB_PUBLISH_LINGER_MS) and the journal, NULLs *self_p;
    accepts NULL. */
void dfb_publish_destroy(dfb_publish_t **self_p);

/*  The endpoint actually bound (port 0 / "*" resolved), borrowed. */
const char *dfb_publish_endpoint(const dfb_publish_t *self);

/*  The replay endpoint bound ("" when replay is off), borrowed. */
const char *dfb_publish_replay_endpoint(const dfb_publish_t *self);

/*  The epoch, e.g. "20261127T075500Z-3fa2c1d9", borrowed. With a journal it
    is the journal's: it survives restarts. */
const char *dfb_publish_epoch(const dfb_publish_t *self);

/*  Sets the bot id put in every envelope (sessioninfo id). */
void dfb_publish_set_bot(dfb_publish_t *self, int64_t bot_id);

/*  Publishes the event at event_ref of json: frame 1 the topic, frame 2 the
    msgpack envelope. An event whose (id, type) was published within the
    dedupe window is skipped (counted in deduped) and returns 0. Otherwise
    the event gets the next seq and gseq, is staged for the journal (an
    I/O error is retried with a backoff until it succeeds or a stop is
    requested: the event must be journaled before its batch is
    acknowledged), and is added to the batch the actor gets at flush (see
    above), which it publishes in order. Returns 0, or -1 when the event
    could not be encoded (counted; no seq is consumed, so it leaves no hole
    in the journal) or a stop interrupted a failing journal. A PUB socket
    at its high-water mark drops silently: subscribers see a seq gap and
    fill it from replay. */
int dfb_publish_event(dfb_publish_t *self, const dfb_json_t *json, dfb_json_ref_t event_ref);

/*  End of a batch, before its ackId is sent: appends the batch to the
    journal (one writev, retried as above), hands it to the actor, makes it
    durable per bridge.journal.fsync and waits until the actor has handed
    every event of the batch to the PUB socket (a round trip through its
    pipe). Returns 0, or -1 on an fdatasync error (logged), a stop during a
    failing journal, or when the actor is dead (it logged why): the batch
    must not be acknowledged. */
int dfb_publish_flush(dfb_publish_t *self);

/*  Copies the counters into *stats, after handing over what was
    published and not flushed yet (journal first) and after the actor has
    published everything handed to it (unless it is dead: then at once). */
void dfb_publish_stats(dfb_publish_t *self, dfb_publish_stats_t *stats);

/*  seq last used for topic (0 if never published). */
uint64_t dfb_publish_topic_seq(const dfb_publish_t *self, const char *topic, size_t len);

/*  The live counters (borrowed, atomics, readable from any thread). */
const dfb_pub_counters_t *dfb_publish_counters(const dfb_publish_t *self);

/*  The command ROUTER bound at bridge.commands (ownership moves to the
    caller: dfb_cmd) and its options for a CURVE re-bind (*zo: endpoint =
    the bound one and the curve secret, both borrowed from self), or NULL
    when none or already taken. */
void *dfb_publish_take_commands(dfb_publish_t *self, dfb_zsock_opts_t *zo);

/*  The ZeroMQ context, the live counters (written by the command thread
    too) and the connection guard (NULL without bridge.stateDir), borrowed:
    for dfb_cmd. */
void *dfb_publish_ctx(dfb_publish_t *self);
dfb_pub_counters_t *dfb_publish_counters_rw(dfb_publish_t *self);
dfb_fdguard_t *dfb_publish_guard(dfb_publish_t *self);

/*  The journal (borrowed; NULL without bridge.stateDir), for the INFO view. */
dfb_journal_t *dfb_publish_journal(dfb_publish_t *self);

/*  Lets the replay thread's info answers include the loop's counters. */
void dfb_publish_set_loop(dfb_publish_t *self, const dfb_loop_stats_t *loop);

/*  1 once an internal thread (actor or replay) has stopped on an error:
    the daemon must exit DFB_EXIT_INTERNAL. The error line is logged. */
int dfb_publish_failed(const dfb_publish_t *self);

/*  Self-test; returns 0 when all checks pass. */
int dfb_publish_test(int verbose);

#endif
