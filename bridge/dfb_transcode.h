/*  dfb_transcode: tape values -> msgpack, and the wire contract's envelope
    (schemas/CONTRACT.md). Output goes to a caller-owned dfb_buf_t that is
    reused from message to message, so the hot path allocates nothing once
    the buffer has grown to the largest message. */
#ifndef DFB_TRANSCODE_H
#define DFB_TRANSCODE_H

#include <stddef.h>
#include <stdint.h>

#include "dfb_json.h"

/*  A growable byte buffer. Zero-initialise it (or call dfb_buf_init);
    dfb_buf_reset() empties it and keeps the memory; dfb_buf_free() frees. */
typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} dfb_buf_t;

void dfb_buf_init (dfb_buf_t *buf);
void dfb_buf_reset (dfb_buf_t *buf);
void dfb_buf_free (dfb_buf_t *buf);
/*  Makes room for n more bytes after len. 0, or -1 (buf unchanged). */
int dfb_buf_reserve (dfb_buf_t *buf, size_t n);
/*  Appends n bytes. 0, or -1 when out of memory (buf unchanged). */
int dfb_buf_put (dfb_buf_t *buf, const void *data, size_t n);

/*  The envelope fields of one published message (contract v1). */
typedef struct {
    uint64_t seq;      /* per-topic counter, 1, 2, 3 ... */
    uint64_t gseq;     /* counter over all topics */
    const char *epoch; /* names the life of the counters; borrowed */
    uint64_t ts;       /* publish time, ms since the Unix epoch */
    int64_t bot;       /* the bot's user id (sessioninfo "id") */
} dfb_envelope_t;

#define DFB_WIRE_VERSION 1
#define DFB_TOPIC_UNKNOWN "UNKNOWN"
/*  Longest topic: an event whose type is longer is published under
    DFB_TOPIC_UNKNOWN (its body keeps the real type). The consumers drop
    longer topics, and every topic rides in each heartbeat. */
#define DFB_TOPIC_MAX_LEN 255 /* = DFB_TOPICS_MAX_LEN */

/*  Appends the msgpack encoding of the JSON value at ref (contract v1
    conversion: object -> map with str keys in document order, array ->
    array, string -> str, integer -> the smallest msgpack int that holds it
    exactly, other number -> float64, true/false/null -> bool/nil).
    Returns 0, or -1 on allocation failure or when ref is not a value of
    the tape (buf then may hold a partial value: reset it). */
int dfb_transcode_value (const dfb_json_t *json, dfb_json_ref_t ref, dfb_buf_t *buf);

/*  Appends one whole frame-2 body: the envelope map with "event" set to the
    value at event_ref. Same errors as dfb_transcode_value. */
int dfb_transcode_message (const dfb_envelope_t *env, const dfb_json_t *json,
                           dfb_json_ref_t event_ref, dfb_buf_t *buf);

/*  Longest string an event stub keeps (dfb_transcode_stub). */
#define DFB_STUB_MAX_STR 1024

/*  Appends the frame-2 body of an event too large to publish: the envelope
    with the key "too_large" (the size of the full body, bytes) before
    "event", and "event" a map of the event's "id", "messageId",
    "timestamp", "initiator": {"user": {"userId"}} and "type" (each when
    present and a string of at most
    DFB_STUB_MAX_STR bytes or an integer), nothing else. Same errors as
    dfb_transcode_value. */
int dfb_transcode_stub (const dfb_envelope_t *env, const dfb_json_t *json,
                        dfb_json_ref_t event_ref, uint64_t too_large, dfb_buf_t *buf);

/*  The topic (frame 1) of the event at ref: its "type" string, or
    DFB_TOPIC_UNKNOWN when the event is not an object, has no "type", or the
    type is not a non-empty string, starts with '_' (reserved for the
    bridge's own topics) or is longer than DFB_TOPIC_MAX_LEN bytes. With duplicate "type" keys the first counts.
    Borrowed; *len set. */
const char *dfb_transcode_topic (const dfb_json_t *json, dfb_json_ref_t ref, size_t *len);

/*  Self-test; returns 0 when all checks pass. */
int dfb_transcode_test (int verbose);

#endif
