/*  dfb_publish: the ZeroMQ PUB side of the bridge. Owns the socket and the
    wire contract's counters: gseq over all topics, seq per topic, the epoch
    string chosen at start and the publish timestamp. One thread only: the
    thread that calls dfb_publish_new is the only one that may use it. */
#ifndef DFB_PUBLISH_H
#define DFB_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#include "dfb_json.h"

/*  Most distinct topics with their own seq counter. An event whose type
    would be topic number 4097 is published under DFB_TOPIC_UNKNOWN instead
    (its body, with the real "type", is unchanged), and counted in
    topics_overflow: a hostile pod inventing types cannot grow memory. */
#define DFB_PUBLISH_MAX_TOPICS 4096

/*  ZMQ_LINGER at close: unsent messages get 1 s to leave at shutdown, then
    are dropped, so a SIGTERM never hangs on a dead subscriber. */
#define DFB_PUBLISH_LINGER_MS 1000

typedef struct dfb_publish dfb_publish_t;

/*  Counters for an INFO-like view. */
typedef struct {
    uint64_t published;       /* events handed to zmq_send (both frames) */
    uint64_t encode_errors;   /* events not published: msgpack encoding failed */
    uint64_t send_errors;     /* events not published: zmq_send failed */
    uint64_t topics_overflow; /* events re-topiced to UNKNOWN by the topic cap */
    uint32_t topics;          /* distinct topics seen */
} dfb_publish_stats_t;

/*  Creates the socket (ZMQ_SNDHWM = sndhwm before bind, TCP keepalive with a
    60 s idle, linger as above) and binds endpoint. Returns NULL on error
    with a message in err. */
dfb_publish_t *dfb_publish_new(const char *endpoint, int sndhwm, char *err, size_t errlen);

/*  Closes the socket (lingering up to DFB_PUBLISH_LINGER_MS) and the
    context, NULLs *self_p; accepts NULL. */
void dfb_publish_destroy(dfb_publish_t **self_p);

/*  The endpoint actually bound (port 0 / "*" resolved), borrowed. */
const char *dfb_publish_endpoint(const dfb_publish_t *self);

/*  The epoch, e.g. "20261127T075500Z-3fa2c1d9", borrowed. */
const char *dfb_publish_epoch(const dfb_publish_t *self);

/*  Sets the bot id put in every envelope (sessioninfo id). */
void dfb_publish_set_bot(dfb_publish_t *self, int64_t bot_id);

/*  Publishes the event at event_ref of json: frame 1 the topic, frame 2 the
    msgpack envelope. Returns 0, or -1 when the event could not be encoded
    or sent (counted). seq and gseq are consumed either way, so an event the
    bridge lost shows downstream as a gap, like a high-water-mark drop. A PUB socket
    at its high-water mark drops silently and still returns 0: that is what
    the seq counters make visible downstream. */
int dfb_publish_event(dfb_publish_t *self, const dfb_json_t *json, dfb_json_ref_t event_ref);

/*  Copies the counters into *stats. */
void dfb_publish_stats(const dfb_publish_t *self, dfb_publish_stats_t *stats);

/*  seq last used for topic (0 if never published). */
uint64_t dfb_publish_topic_seq(const dfb_publish_t *self, const char *topic, size_t len);

/*  Self-test; returns 0 when all checks pass. */
int dfb_publish_test(int verbose);

#endif
