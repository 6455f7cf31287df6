/*  libdfconsumer: receive the dfbridge wire contract (v1: topic frame + msgpack
    envelope) over ZeroMQ SUB and dispatch each event to listeners on a worker
    pool, the C counterpart of the Symphony BDK's DatafeedLoop and
    RealTimeEventListener. All public names start with dfc_. */
#ifndef DFCONSUMER_H
#define DFCONSUMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/*  Return codes. Every fallible function returns DFC_OK (0) or one of these. */
enum {
    DFC_OK = 0,
    DFC_EINVAL = -1,    /* bad argument */
    DFC_ENOMEM = -2,    /* allocation failed */
    DFC_EALREADY = -3,  /* the loop is already started */
    DFC_EZMQ = -4,      /* a ZeroMQ call failed (see the log) */
    DFC_ENOTFOUND = -5, /* no such listener */
    DFC_EIO = -6,       /* a file operation failed (see the log) */
    DFC_ETIMEOUT = -7,  /* command channel: no reply after every attempt */
    DFC_ECANCELED = -8  /* command channel: the client was destroyed first */
};
const char *dfc_strerror(int rc);

/* ------------------------------------------------------------------------ */
/*  Read-only values: a decoded msgpack document, hiding msgpack itself.     */
/* ------------------------------------------------------------------------ */

typedef enum {
    DFC_NIL,
    DFC_BOOL,
    DFC_INT,    /* a negative integer (msgpack's signed forms) */
    DFC_UINT,   /* a non-negative integer */
    DFC_DOUBLE, /* float64 (float32 is widened) */
    DFC_STR,
    DFC_BIN,
    DFC_EXT,
    DFC_ARRAY,
    DFC_MAP
} dfc_type_t;

typedef struct dfc_value dfc_value_t; /* opaque, owned by its document */
typedef struct dfc_doc dfc_doc_t;     /* opaque, owns its values */

/*  Decodes one msgpack object that must fill buf exactly. The decoder is our
    own and bounded: every declared length is checked against the bytes left
    before anything is allocated, at most DFC_MAX_DEPTH containers nest, map keys
    must be strings. The document copies what it needs: buf may be freed
    afterwards. On success *out owns the document (free with dfc_doc_destroy).
    Returns DFC_OK, DFC_EINVAL for malformed input, DFC_ENOMEM. */
/*  The bridge accepts JSON nested up to 512 deep; the envelope adds one. */
#define DFC_MAX_DEPTH 520
int dfc_doc_parse(const void *buf, size_t len, dfc_doc_t **out);
void dfc_doc_destroy(dfc_doc_t **doc_p);
const dfc_value_t *dfc_doc_root(const dfc_doc_t *doc);

/*  Accessors. All accept NULL and then return the neutral answer (DFC_NIL,
    0, NULL, false). Strings are NOT guaranteed free of embedded NULs: use
    the length; they are NUL-terminated for convenience. */
dfc_type_t dfc_value_type(const dfc_value_t *v);
bool dfc_value_bool(const dfc_value_t *v);
/*  Integer reads succeed (return 0) only when the value is an integer that
    fits the target type exactly; otherwise -1 and *out is left alone. */
int dfc_value_int64(const dfc_value_t *v, int64_t *out);
int dfc_value_uint64(const dfc_value_t *v, uint64_t *out);
/*  Any number as a double (integers converted); 0.0 for anything else. */
double dfc_value_double(const dfc_value_t *v);
/*  STR and BIN: the bytes and their length; NULL for other types. For EXT
    the data, with the ext type in *ext_type if given. */
const char *dfc_value_str(const dfc_value_t *v, size_t *len);
const void *dfc_value_bin(const dfc_value_t *v, size_t *len, int8_t *ext_type);
/*  ARRAY and MAP: number of elements / pairs (0 otherwise). */
size_t dfc_value_size(const dfc_value_t *v);
const dfc_value_t *dfc_value_at(const dfc_value_t *v, size_t i);      /* array item  */
const dfc_value_t *dfc_value_key_at(const dfc_value_t *v, size_t i);  /* map key i   */
const dfc_value_t *dfc_value_item_at(const dfc_value_t *v, size_t i); /* map value i */
/*  Map lookup by exact key (first match). */
const dfc_value_t *dfc_value_find(const dfc_value_t *v, const char *key);
/*  Path lookup: dot-separated map keys; a segment that is all digits indexes
    an array ("payload.messageSent.message.attachments.0.name"). NULL when any
    step is missing. */
const dfc_value_t *dfc_value_get(const dfc_value_t *v, const char *path);
/*  Writes v as one line of JSON, snprintf-style: at most size-1 bytes plus a
    NUL, and returns the full length it needed (call again with a bigger
    buffer if that is >= size). Integers exact; doubles with %.17g and a
    ".0" added when that would otherwise read back as an integer (so -0.0
    stays "-0.0"); NaN and infinities as null; strings JSON-escaped with
    control characters as \u00XX (\u0000 kept), valid UTF-8 passed through,
    invalid bytes as \ufffd; BIN as a base64 string; EXT as null. */
size_t dfc_value_to_json(const dfc_value_t *v, char *buf, size_t size);

/* ------------------------------------------------------------------------ */
/*  The event model: named structs for the V4 model's fields.                */
/*  Every string is borrowed from the event (valid during the callback) and  */
/*  NULL when absent or not a string; integers are 0 and booleans false when */
/*  absent. `raw` is the value the struct was read from (NULL when absent):  */
/*  use it with the dfc_value_* API for any field not named here.            */
/* ------------------------------------------------------------------------ */

typedef struct {
    int64_t user_id; /* 0 when absent: check has_user_id */
    bool has_user_id;
    const char *username, *display_name, *first_name, *last_name, *email;
    const dfc_value_t *raw;
} dfc_user_t;

typedef struct {
    dfc_user_t user;
    const dfc_value_t *raw;
} dfc_initiator_t;

typedef struct {
    const char *stream_id, *stream_type, *room_name;
    bool external, cross_pod;
    const dfc_value_t *members;              /* array of V4User, generic */
    const dfc_value_t *recipient_tenant_ids; /* array of int, generic */
    const dfc_value_t *raw;
} dfc_stream_t;

typedef struct {
    const char *message_id, *parent_message_id;
    int64_t timestamp;
    const char *message;               /* PresentationML */
    const char *data;                  /* EntityJSON, a string, unparsed */
    const dfc_value_t *attachments;    /* array of V4AttachmentInfo, generic */
    const dfc_value_t *shared_message; /* a nested V4Message, generic */
    dfc_user_t user;
    dfc_stream_t stream;
    bool external_recipients, silent;
    const char *user_agent, *original_format, *disclaimer, *sid;
    const char *replacing, *replaced_by, *initial_message_id, *diagnostic;
    int64_t initial_timestamp;
    const dfc_value_t *raw;
} dfc_message_t;

typedef struct {
    const char *name, *description;
    dfc_user_t creator_user;
    int64_t created_date;
    bool external, cross_pod, is_public, copy_protected, read_only, discoverable,
        members_can_invite, can_view_history;
    const dfc_value_t *keywords; /* array of {key, value}, generic */
    const dfc_value_t *raw;
} dfc_room_properties_t;

/*  The 17 payloads. */
typedef struct {
    dfc_message_t message;
    const dfc_value_t *raw;
} dfc_message_sent_t;
typedef struct {
    dfc_message_t message, shared_message;
    const dfc_value_t *raw;
} dfc_shared_post_t;
typedef struct {
    dfc_stream_t stream;
    const dfc_value_t *raw;
} dfc_stream_event_t;
typedef dfc_stream_event_t dfc_instant_message_created_t;
typedef dfc_stream_event_t dfc_room_deactivated_t;
typedef dfc_stream_event_t dfc_room_reactivated_t;
typedef struct {
    dfc_stream_t stream;
    dfc_room_properties_t room_properties; /* "newRoomProperties" for ROOMUPDATED */
    const dfc_value_t *raw;
} dfc_room_created_t;
typedef dfc_room_created_t dfc_room_updated_t;
typedef struct {
    dfc_stream_t stream;
    dfc_user_t affected_user;
    const dfc_value_t *raw;
} dfc_room_member_t;
typedef dfc_room_member_t dfc_user_joined_room_t;
typedef dfc_room_member_t dfc_user_left_room_t;
typedef dfc_room_member_t dfc_room_member_promoted_to_owner_t;
typedef dfc_room_member_t dfc_room_member_demoted_from_owner_t;
typedef struct {
    dfc_stream_t stream;
    const dfc_value_t *affected_users; /* array of V4User, generic */
    const dfc_value_t *raw;
} dfc_user_requested_to_join_room_t;
typedef struct {
    dfc_user_t to_user;
    const dfc_value_t *raw;
} dfc_connection_requested_t;
typedef struct {
    dfc_user_t from_user;
    const dfc_value_t *raw;
} dfc_connection_accepted_t;
typedef struct {
    const char *message_id;
    dfc_stream_t stream;
    const dfc_value_t *raw;
} dfc_message_suppressed_t;
typedef struct {
    dfc_stream_t stream;
    const char *form_message_id, *form_id;
    const dfc_value_t *form_values; /* map, generic */
    const dfc_value_t *raw;
} dfc_symphony_elements_action_t;
typedef struct {
    dfc_stream_t stream;
    int64_t event_timestamp;
    const char *source_system, *event_subtype;
    const dfc_value_t *parameters; /* map, generic */
    const dfc_value_t *raw;
} dfc_generic_system_event_t;

/*  One received message: envelope + event. Opaque; shared by the jobs of all
    listeners and freed after the last one: never keep it past a callback. */
typedef struct dfc_event dfc_event_t;

const char *dfc_event_topic(const dfc_event_t *ev); /* frame 1 */
const char *dfc_event_type(const dfc_event_t *ev);  /* event.type or NULL */
const char *dfc_event_id(const dfc_event_t *ev);    /* event.id or NULL */
int64_t dfc_event_timestamp(const dfc_event_t *ev); /* event.timestamp or 0 */
uint64_t dfc_event_seq(const dfc_event_t *ev);
uint64_t dfc_event_gseq(const dfc_event_t *ev);
const char *dfc_event_epoch(const dfc_event_t *ev);
uint64_t dfc_event_ts(const dfc_event_t *ev);
int64_t dfc_event_bot(const dfc_event_t *ev);                 /* envelope "bot" */
const dfc_value_t *dfc_event_value(const dfc_event_t *ev);    /* the "event" map */
const dfc_value_t *dfc_event_envelope(const dfc_event_t *ev); /* the whole frame-2 map */

/* ------------------------------------------------------------------------ */
/*  Listeners.                                                               */
/* ------------------------------------------------------------------------ */

/*  Each callback gets the listener's ctx, the event, its initiator (never
    NULL; fields absent when the event has none) and the typed payload
    (never NULL; fields absent when the payload key is missing). Callbacks
    run on worker threads, concurrently across events and across listeners:
    they must be thread-safe. All are optional. */
#define DFC_CALLBACK(name, payload_t)                                                              \
    void (*name)(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *initiator,               \
                 const payload_t *payload)

typedef struct {
    const char *name; /* listener id in the log context; NULL -> "L<n>" (copied) */
    void *ctx;        /* passed to every callback */
    /*  Called on the receiver thread once per event before anything is queued
        for this listener (so keep it quick: it delays every later message).
        NULL -> dfc_default_is_accepting. */
    bool (*is_accepting_event)(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *initiator,
                               int64_t bot_id);
    DFC_CALLBACK(on_message_sent, dfc_message_sent_t);
    DFC_CALLBACK(on_shared_post, dfc_shared_post_t);
    DFC_CALLBACK(on_instant_message_created, dfc_instant_message_created_t);
    DFC_CALLBACK(on_room_created, dfc_room_created_t);
    DFC_CALLBACK(on_room_updated, dfc_room_updated_t);
    DFC_CALLBACK(on_room_deactivated, dfc_room_deactivated_t);
    DFC_CALLBACK(on_room_reactivated, dfc_room_reactivated_t);
    DFC_CALLBACK(on_user_requested_to_join_room, dfc_user_requested_to_join_room_t);
    DFC_CALLBACK(on_user_joined_room, dfc_user_joined_room_t);
    DFC_CALLBACK(on_user_left_room, dfc_user_left_room_t);
    DFC_CALLBACK(on_room_member_promoted_to_owner, dfc_room_member_promoted_to_owner_t);
    DFC_CALLBACK(on_room_member_demoted_from_owner, dfc_room_member_demoted_from_owner_t);
    DFC_CALLBACK(on_connection_requested, dfc_connection_requested_t);
    DFC_CALLBACK(on_connection_accepted, dfc_connection_accepted_t);
    DFC_CALLBACK(on_message_suppressed, dfc_message_suppressed_t);
    DFC_CALLBACK(on_symphony_elements_action, dfc_symphony_elements_action_t);
    DFC_CALLBACK(on_generic_system_event, dfc_generic_system_event_t);
    /*  Any topic that is not one of the 17 types (including "UNKNOWN"). */
    void (*on_unknown)(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *initiator);
} dfc_listener_t;

/*  The BDK rule: accept only when initiator.user.userId exists and differs
    from bot_id (the envelope's "bot"). */
bool dfc_default_is_accepting(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *initiator,
                              int64_t bot_id);

/* ------------------------------------------------------------------------ */
/*  The loop.                                                                */
/* ------------------------------------------------------------------------ */

/*  Dispatch order. CONCURRENT is the BDK's: one job per (event, listener) on
    a shared queue, any worker. STREAM routes every job of an event to one
    worker chosen by a hash of the event's partition key (its streamId), so
    the events of one stream are handled one after the other, in order, and
    an event's listeners run in subscription order; different streams still
    run concurrently. */
typedef enum { DFC_ORDER_CONCURRENT = 0, DFC_ORDER_STREAM = 1 } dfc_order_t;

typedef struct {
    int workers;       /* worker threads; 0 -> 4 */
    int rcvhwm;        /* SUB receive high-water mark; 0 -> 1000 */
    size_t max_frame;  /* bigger messages are dropped; 0 -> 16 MiB */
    size_t queue_size; /* bounded job queue (per worker in STREAM order); when full the
                          receiver waits; 0 -> 1024 */
    void *zmq_ctx;     /* borrowed ZeroMQ context (e.g. for inproc); NULL -> own */

    /* ---- delivery guarantees (see consumers/README.md "Delivery") ---- */
    dfc_order_t ordering;
    /*  A durable checkpoint: the file <checkpoint_dir>/<name>.ckpt keeps, per
        bridge epoch, the gseq below which every event was handled by every
        listener. A restarted loop with the same name replays from there
        before live messages. NULL -> no checkpoint. In a group the name is
        always "<group>-<member>-of-<members>" (name is not used); outside a
        group a checkpoint_dir without a name (NULL or "") is invalid:
        dfc_loop_new logs "invalid argument: ..." and returns NULL. */
    const char *checkpoint_dir;
    const char *name;
    int checkpoint_ms; /* how often the checkpoint is written when it moved; 0 -> 1000.
                          It is also written when start returns. */
    /*  Consumer group without a broker: handle only the events whose
        partition (dfc_partition of the partition key, modulo members) is
        member (0-based). members <= 1 -> no group. */
    const char *group;
    int member, members;
    /*  First start without a checkpoint: replay each bridge's current epoch
        from this gseq before live messages (1 = everything retained).
        0 -> live only. */
    uint64_t from_gseq;
    int stale_ms;          /* no message and no heartbeat for this long -> new SUB socket;
                              0 -> 3 x the heartbeat's interval (off until one is seen);
                              < 0 -> off */
    int replay_timeout_ms; /* no answer from the replay endpoint -> retry (3 times), then
                              the missing messages are counted lost; 0 -> 5000 */
    int dedupe_window;     /* (event id, type) keys remembered; 0 -> 65536; < 0 -> off */
    size_t max_held;       /* live messages held while a gap is filled; more are
                              dropped and fetched by replay; 0 -> 10000 */
    size_t max_held_bytes; /* ...and at most this many bytes of them (topic + envelope as
                              received); more are dropped and fetched by replay the same
                              way; 0 -> 64 MiB */
    /*  A replay endpoint learnt from a heartbeat is used only when none was
        configured (dfc_loop_connect_replay) and, over tcp, only when its host
        is the bridge endpoint's host (a wildcard host such as 0.0.0.0 is read
        as that host); ipc and inproc ones only for a bridge of the same
        transport. Any other is refused (replay_refused): a forged heartbeat
        must not send the loop to another machine. true -> any endpoint a
        heartbeat names is used (the pre-issue-9 behaviour). */
    bool replay_any_host;

    /* ---- CURVE (see consumers/README.md "CURVE") ---- */
    /*  With both set, every socket the loop opens to a bridge (SUB and replay
        DEALER) is a CURVE client. server_key: the bridge's public key, 40 Z85
        characters, or the path of its public certificate (.key; an existing
        file wins); cert: the path of this consumer's secret certificate
        (.key_secret), in the format of czmq's zcert and pyzmq's
        zmq.auth.create_certificates. Read by dfc_loop_new (the strings are not
        kept; the secret is wiped by dfc_loop_destroy). One without the other,
        a file that cannot be read or is not a certificate, a secret
        certificate as server_key or a public one as cert: dfc_loop_new logs
        "invalid argument: <option>: <why>" and returns NULL. NULL -> plain. */
    const char *server_key;
    const char *cert;
} dfc_config_t;

typedef struct dfc_loop dfc_loop_t;

typedef struct {
    uint64_t listeners;         /* subscribed now */
    uint64_t connects;          /* TCP/IPC connections made (socket monitor) */
    uint64_t disconnects;       /* ...lost: peer gone, or it sent a message > max_frame */
    uint64_t received;          /* messages read from the SUB socket(s) */
    uint64_t dispatched;        /* jobs queued (one per event and accepting listener) */
    uint64_t completed;         /* jobs whose callback returned */
    uint64_t skipped;           /* queued jobs not run: their listener was unsubscribed */
    uint64_t dropped_at_stop;   /* (event, listener) pairs not queued: stop came while the
                                   queue was full. After start returns,
                                   dispatched == completed + skipped. */
    uint64_t filtered;          /* (event, listener) pairs refused by is_accepting_event */
    uint64_t dropped_malformed; /* sum of the per-reason counters below */
    uint64_t bad_frames;        /* frame count != 2, topic empty or > 255 bytes */
    uint64_t oversize;          /* body larger than max_frame */
    uint64_t bad_msgpack;       /* not decodable (bounded decoder refused it) */
    uint64_t not_map;           /* body is not a map */
    uint64_t bad_version;       /* v missing, not an integer, or > 1 */
    uint64_t bad_envelope;      /* seq/gseq/epoch/ts/bot of the wrong type, an epoch of
                                   DFC_EPOCH_BYTES or more, or a seq/gseq that cannot be
                                   right (see DFC_SEQ_MAX): in a live or replayed message,
                                   a heartbeat, a replay end marker, or a heartbeat's
                                   gseq that replay does not confirm */
    uint64_t bad_event;         /* event missing or not a map */
    uint64_t unknown_type;      /* valid messages whose topic is not one of the 17 */
    uint64_t reserved;          /* "_" topics (bridge's own messages): ignored, not decoded */
    uint64_t gaps;              /* messages missing in seq per (epoch, topic), from live
                                   messages and heartbeats; a new epoch is a baseline */
    uint64_t heartbeats;        /* "_hb" messages read (also counted in reserved) */
    uint64_t replayed;          /* events taken in order from a replay endpoint (those a
                                   checkpoint recorded as handled included: they are then
                                   skipped, not handed out again) */
    uint64_t gaps_filled;       /* ...of which filled a detected gap */
    uint64_t lost;              /* missing messages that replay could not give (gone,
                                   damaged, other epoch, no endpoint, no answer);
                                   gseqs recorded as handled by a checkpoint are not
                                   counted */
    uint64_t duplicates;        /* events dropped: (id, type) seen, or gseq already handled */
    uint64_t not_mine;          /* events left to other members of the group */
    uint64_t reconnects;        /* SUB sockets recreated by the staleness timer */
    uint64_t auth_failures;     /* CURVE handshakes that failed on a bridge's SUB or replay
                                   socket: refused by its ZAP handler (key not allowed:
                                   connected again with a backoff), or failed (a wrong
                                   server_key: libzmq retries) */
    uint64_t replay_requests;   /* requests sent to replay endpoints */
    uint64_t replay_errors;     /* error answers and timeouts */
    uint64_t checkpoints;       /* checkpoint files written (see checkpoint_errors) */
    uint64_t lag_ms;            /* now - envelope ts of the last event delivered */
    uint64_t replay_stalls;     /* fills given up: 3 answers in a row asked for
                                   more ("more", or "gone" with a newer oldest_gseq) without
                                   delivering an event; what they missed counts in lost */
    uint64_t held_dropped;      /* live messages not held during a fill because max_held
                                   was reached (or memory ran out): replay brings them */
    uint64_t alloc_failures;    /* allocations that failed; each has a log line and the
                                   loop goes on (a bridge not opened yet is retried) */
    uint64_t checkpoint_errors; /* checkpoint saves that failed (disk full, I/O error): the
                                   previous file stays intact, the save is retried every
                                   checkpoint_ms; the first failure and the recovery are
                                   logged */
    uint64_t queue_waits;       /* times the receiver found a job queue full and waited for
                                   room (back-pressure: the SUB socket then fills up) */
    uint64_t replay_unexpected; /* messages from a replay endpoint that answer nothing asked:
                                   no request in flight, an end marker of another req,
                                   more messages than the request's limit, another epoch,
                                   a gseq not above the last one taken or far beyond
                                   anything known; dropped unread */
    uint64_t replay_refused;    /* heartbeats naming a replay endpoint the rule of
                                   replay_any_host refuses (the endpoint is not used) */
} dfc_stats_t;

/*  Numbers that cannot be right (consumers/README.md): such a message is
    dropped and counted in bad_envelope, and never moves a watermark.
    - Any seq or gseq above DFC_SEQ_MAX (2^53 - 1: the largest integer every
      port, JavaScript included, holds exactly; a bridge numbering a million
      events a second needs 285 years to get there), in a live or replayed
      message, a heartbeat (its gseq or any of its seqs) or an end marker.
    - A live message whose gseq is more than DFC_GSEQ_AHEAD above the
      highest gseq the link knows in that epoch (announced by a heartbeat,
      received, or handled), or whose seq is more than DFC_GSEQ_AHEAD above
      the last seq known for its topic, once a heartbeat of that epoch was
      accepted.
    - An end marker whose last_gseq exceeds its own head_gseq.
    - A heartbeat's gseq above both the head_gseq that replay then reports
      and every gseq received: the fill stops at the confirmed head (one
      bad_envelope, nothing counted lost). Without any answer from replay a
      fill counts as lost at most DFC_GSEQ_AHEAD beyond what was received. */
#define DFC_SEQ_MAX ((UINT64_C(1) << 53) - 1)
#define DFC_GSEQ_AHEAD (UINT64_C(1) << 20)
/*  Epochs are at most this many bytes minus one (longer ones: bad_envelope). */
#define DFC_EPOCH_BYTES 128

/*  Creates a loop; cfg may be NULL for defaults. NULL on error (logged). */
dfc_loop_t *dfc_loop_new(const dfc_config_t *cfg);
/*  Frees the loop and nulls *loop_p; accepts NULL. It stops nothing: call
    dfc_loop_stop and let dfc_loop_start return first. On a running loop it
    logs an error and leaves *loop_p alone (nothing freed). */
void dfc_loop_destroy(dfc_loop_t **loop_p);
/*  Adds a bridge endpoint ("tcp://127.0.0.1:5556"). Allowed before or during
    start (the receiver thread creates the socket). Returns DFC_OK or
    DFC_EINVAL/DFC_ENOMEM; a bad endpoint is reported by the log when the
    receiver connects it. Give tcp endpoints by numeric address: after a
    disconnect (libzmq 4.3 does not reconnect a peer it dropped for a
    message above max_frame) the loop reconnects endpoints it recognises in
    the monitor's report, which uses the numeric form. */
int dfc_loop_connect(dfc_loop_t *loop, const char *endpoint);
/*  dfc_loop_connect with the bridge's replay endpoint ("tcp://127.0.0.1:5557"),
    used to fill gaps and to resume from a checkpoint. replay_endpoint NULL
    or "" -> learnt from the bridge's heartbeats. Each bridge gets its own
    SUB socket (one socket cannot tell its peers' epochs apart), so an HA
    pair is two calls; events seen from both are handled once (dedupe). */
int dfc_loop_connect_replay(dfc_loop_t *loop, const char *endpoint, const char *replay_endpoint);
/*  Adds a listener at any time, also from inside a callback. The struct is
    copied; `listener` is only the key for unsubscribe. Events already
    received are not replayed to it. */
int dfc_loop_subscribe(dfc_loop_t *loop, const dfc_listener_t *listener);
/*  Removes a listener: no new job starts for it (queued ones are skipped),
    and the call returns only when none of its callbacks, its
    is_accepting_event included, is running any more; none is entered after
    it returned, so its ctx may be freed then. EXCEPT when called from one
    of that listener's own callbacks (or its filter), where it returns at
    once (waiting would wait for itself). Calling it from a
    callback of listener A for listener B waits for B, so B must not be
    waiting for A. Returns DFC_ENOTFOUND when not subscribed. */
int dfc_loop_unsubscribe(dfc_loop_t *loop, const dfc_listener_t *listener);
/*  Runs the receiver on the calling thread until dfc_loop_stop. Returns
    after every job already queued has run and the workers are joined.
    DFC_EALREADY if the loop is running (also from a callback). The loop can
    be started again after it returned. */
int dfc_loop_start(dfc_loop_t *loop);
/*  Asks start to return. Thread-safe and async-signal-safe (an atomic flag
    and a write to a pipe). Sticky: a stop before start makes the next start
    return at once; start consumes it. */
void dfc_loop_stop(dfc_loop_t *loop);
/*  Copies the counters (thread-safe). */
void dfc_loop_stats(dfc_loop_t *loop, dfc_stats_t *out);
/*  Formats the counters Redis-INFO style, one "name:value\n" line each, in
    the struct's order; snprintf-style (returns the length it needed). */
size_t dfc_stats_format(const dfc_stats_t *st, char *buf, size_t size);
/*  Formats the counters in the Prometheus text format (0.0.4): for each field
    a "# HELP", a "# TYPE" and a sample line, in the struct's order, named as
    consumers/metrics.json lists them (the Python and Node packages print the
    same): dfconsumer_<field>_total for counters, dfconsumer_<field> for the
    gauges listeners, and dfconsumer_lag_seconds (lag_ms / 1000). labels:
    NULL, or constant labels added to every sample as name, value pairs
    ending with a NULL name: {"worker", "w1", NULL}; values are escaped.
    snprintf-style (returns the length it needed; buf may be NULL when size
    is 0). Returns 0 (and writes "") when a label name is not
    [a-zA-Z_][a-zA-Z0-9_]* or starts with "__", a name repeats, a value is
    NULL or not UTF-8. Serving it over HTTP is the worker's business: dftail
    --metrics and the example consumer show one way (consumers/README.md). */
size_t dfc_stats_prometheus(const dfc_stats_t *st, const char *const *labels, char *buf,
                            size_t size);

/*  The partition key of an event (schemas/CONTRACT.md): the first string at
    payload.<key>.stream.streamId, then payload.<key>.message.stream.streamId
    (<key> the single key of payload), else the event id, else "". Borrowed
    from the event; *len gets its length when len is not NULL. */
const char *dfc_event_partition_key(const dfc_event_t *ev, size_t *len);
/*  FNV-1a 64 over the bytes (offset basis 14695981039346656037, prime
    1099511628211), and that modulo n (0 when n is 0): the member of a group
    of n that handles key. */
uint64_t dfc_fnv1a64(const void *data, size_t len);
uint32_t dfc_partition(const char *key, size_t len, uint32_t n);

/* ------------------------------------------------------------------------ */
/*  Logging context: the counterpart of the BDK's event_listener_context.   */
/* ------------------------------------------------------------------------ */

/*  "worker-K/<event id>/<listener id>" inside a job ("None" when the event
    has no id), "main" anywhere else. Thread-local, valid until the next
    call on that thread. */
const char *dfc_listener_context(void);

typedef enum { DFC_LOG_DEBUG, DFC_LOG_INFO, DFC_LOG_WARN, DFC_LOG_ERROR } dfc_log_level_t;
/*  Writes "<UTC time> <LEVEL> <context> - <message>\n" to the log stream
    (stderr unless dfc_log_set_stream) when level >= the set level (INFO). */
void dfc_log(dfc_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dfc_log_set_level(dfc_log_level_t level);
void dfc_log_set_stream(FILE *stream);

/* ------------------------------------------------------------------------ */
/*  Command channel: ask the bridge to make a Symphony call with its session */
/*  (schemas/CONTRACT.md "Commands", consumers/README.md "Command channel"). */
/* ------------------------------------------------------------------------ */

/*  A client owns one DEALER connected to the bridge's `bridge.commands`
    ROUTER, on its own I/O thread. It is thread-safe: any number of threads
    (listener jobs of a loop's worker pool among them) call it at once; each
    call is handed to the I/O thread and its reply matched by id. */
typedef struct dfc_client dfc_client_t;

typedef struct {
    const char *endpoint; /* bridge.commands, e.g. "tcp://127.0.0.1:5558" (required) */
    void *zmq_ctx;        /* borrowed ZeroMQ context; NULL -> own */
    int timeout_ms;       /* per attempt; 0 -> 10000 */
    int attempts;         /* sends of the same request (same id) before DFC_ETIMEOUT; 0 -> 3.
                             A call returns within attempts x timeout_ms. */
    size_t max_reply;     /* bigger replies make libzmq drop the connection (the call then
                             times out); 0 -> 64 MiB */
    /*  CURVE, as dfc_config_t's fields of the same names: the bridge's public
        key (40 Z85 characters or its .key file) and this client's secret
        certificate file (.key_secret); both or neither. */
    const char *server_key;
    const char *cert;
} dfc_client_config_t;

/*  Creates a client (its I/O thread connects at once; requests wait in the
    socket's queue until the bridge is there). NULL on error, logged, with
    errno set (EINVAL for a bad config, ENOMEM, or ZeroMQ's). */
dfc_client_t *dfc_client_new(const dfc_client_config_t *cfg);
/*  Fails every call still waiting with DFC_ECANCELED (sync callers return,
    async callbacks run with a NULL reply), stops the I/O thread, waits until
    no thread is inside a dfc_client_call* function and frees the client;
    nulls *c_p, accepts NULL. Calls made while it runs get DFC_ECANCELED;
    none may be made once it returned (the pointer is gone). Not from an
    async callback (logged, nothing done). */
void dfc_client_destroy(dfc_client_t **c_p);

/*  The bridge's reply: the decoded reply map and its fields. Owned by the
    caller, freed with dfc_reply_destroy. */
typedef struct dfc_reply dfc_reply_t;

/*  Synchronous call. args: the operation's arguments, the bytes of one
    msgpack map (dfc_args_* below builds them); NULL/0 -> {}. id: the
    idempotency key (1..128 bytes of UTF-8, no control characters); NULL ->
    the default id:
    - inside a listener job (a dfc_loop_t callback on a worker thread):
      "<event id>/<listener id>/<n>", n = 1, 2, ... counting the client calls
      (of any client, with or without an explicit id) made in that job: an
      event handled again (redelivered, replayed after a worker crash, another
      member of the group) produces the same ids, so the bridge answers with
      the recorded outcome instead of calling Symphony twice. A job whose
      event has no id, or whose composed id would be longer than 128 bytes
      or hold a control character, gets a random id as outside a job;
    - elsewhere: a random UUIDv4 per call.
    After timeout_ms without a reply the SAME request (same id) is sent
    again, up to `attempts` sends; a `busy` reply is retried after its
    retry_after_ms when that is within the call's budget (attempts x
    timeout_ms), else returned. Returns DFC_OK with *out = the reply (ok or
    an error reply: check dfc_reply_ok), or DFC_EINVAL (bad op, id or args;
    also when called from an async callback, which would deadlock),
    DFC_ENOMEM, DFC_ETIMEOUT, DFC_ECANCELED (*out NULL then). */
int dfc_client_call(dfc_client_t *c, const char *op, const char *id, const void *args,
                    size_t args_len, dfc_reply_t **out);
/*  The reply callback of an async call: rc as dfc_client_call's, reply NULL
    unless rc is DFC_OK; the callee owns the reply (dfc_reply_destroy). It
    runs on the client's I/O thread: it must not block (no dfc_client_call,
    no dfc_client_destroy; dfc_client_call_async is fine), every other reply
    waits for it. */
typedef void (*dfc_reply_fn)(void *arg, int rc, dfc_reply_t *reply);
/*  Asynchronous call: as dfc_client_call, fn is called exactly once when it
    returns DFC_OK; on any other return fn is never called. */
int dfc_client_call_async(dfc_client_t *c, const char *op, const char *id, const void *args,
                          size_t args_len, dfc_reply_fn fn, void *arg);
/*  messages.send with a MessageML string (a bare text is wrapped in
    <messageML> by the bridge) and optional EntityJSON (JSON text of an
    object, or NULL); the default id. */
int dfc_client_send_message(dfc_client_t *c, const char *stream_id, const char *message,
                            const char *data_json, dfc_reply_t **out);

typedef struct {
    uint64_t calls;        /* calls accepted (sync + async) */
    uint64_t sent;         /* request frames sent (resends included) */
    uint64_t resent;       /* ...of which after a timeout */
    uint64_t busy_retries; /* ...of which after a busy reply */
    uint64_t replies;      /* reply frames received */
    uint64_t unmatched;    /* replies whose id matches no waiting call (late duplicates of
                              a resent request): dropped */
    uint64_t bad_replies;  /* frames that are not a reply map (v, id, ok): dropped */
    uint64_t timeouts;     /* calls that ended DFC_ETIMEOUT */
    uint64_t canceled;     /* calls that ended DFC_ECANCELED */
} dfc_client_stats_t;
void dfc_client_stats(dfc_client_t *c, dfc_client_stats_t *out);

bool dfc_reply_ok(const dfc_reply_t *r);
/*  The whole reply map (v, id, ok, result|error, replayed, found). */
const dfc_value_t *dfc_reply_value(const dfc_reply_t *r);
/*  `result` (the Symphony answer; a DFC_NIL value for a 204), NULL if error. */
const dfc_value_t *dfc_reply_result(const dfc_reply_t *r);
const char *dfc_reply_error_code(const dfc_reply_t *r); /* NULL if ok */
const char *dfc_reply_error_message(const dfc_reply_t *r);
int dfc_reply_status(const dfc_reply_t *r);             /* rejected: HTTP status, else 0 */
int64_t dfc_reply_retry_after_ms(const dfc_reply_t *r); /* busy: the hint, else 0 */
bool dfc_reply_replayed(const dfc_reply_t *r);
bool dfc_reply_found(const dfc_reply_t *r);
const char *dfc_reply_id(const dfc_reply_t *r);
void dfc_reply_destroy(dfc_reply_t **r_p);

/*  A tiny msgpack writer for args: a map at the root, nested maps and
    arrays. Inside a map every value needs its key; inside an array key must
    be NULL. Errors are sticky: the first one (bad nesting, bad JSON, no
    memory) makes dfc_args_data return NULL. Integers and map/array/str/bin
    headers in msgpack's smallest form (the bytes python msgpack writes). */
typedef struct dfc_args dfc_args_t;
dfc_args_t *dfc_args_new(void); /* NULL when out of memory */
void dfc_args_destroy(dfc_args_t **a_p);
int dfc_args_str(dfc_args_t *a, const char *key, const char *value);
int dfc_args_strn(dfc_args_t *a, const char *key, const char *value, size_t len);
int dfc_args_int(dfc_args_t *a, const char *key, int64_t value);
int dfc_args_bool(dfc_args_t *a, const char *key, bool value);
int dfc_args_nil(dfc_args_t *a, const char *key);
int dfc_args_bin(dfc_args_t *a, const char *key, const void *data, size_t len);
int dfc_args_map_begin(dfc_args_t *a, const char *key);
int dfc_args_array_begin(dfc_args_t *a, const char *key);
int dfc_args_end(dfc_args_t *a); /* closes the innermost open map or array */
/*  Any JSON value, converted (objects -> maps keeping key order, integers
    exact within int64/uint64, other numbers float64). DFC_EINVAL when json
    is not one whole JSON value (nesting depth at most 512). */
int dfc_args_json(dfc_args_t *a, const char *key, const char *json);
/*  The finished map (every nested container closed), borrowed until the next
    change or destroy; NULL after an error or with containers open. */
const void *dfc_args_data(dfc_args_t *a, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
