/*  Internals shared by the files of libdfconsumer and by dftail: the frame
    rule and envelope check, event construction and release, JSON helpers,
    the dedupe window and checkpoint file, and the replay client. Not
    installed, not part of the public API. */
#ifndef DFC_INTERNAL_H
#define DFC_INTERNAL_H

#include <stdatomic.h>

#include "dfconsumer.h"

#define DFC_WIRE_VERSION 1

/*  The library's clocks in ms (dfc_loop.c): monotonic for timeouts and
    intervals, wall time (since the Unix epoch) for what is stored. */
typedef struct dfc_blocks dfc_blocks_t; /* dfc_alloc.c */
int64_t dfc_mono_ms(void);
uint64_t dfc_wall_ms(void);
#define DFC_MAX_TOPIC 255

/*  A NUL-terminated string value or NULL (for struct fields). */
const char *dfc_value_cstr(const dfc_value_t *v);
/*  dfc_value_find with the key's length known (no strlen per lookup). */
const dfc_value_t *dfc_value_find_n(const dfc_value_t *v, const char *key, size_t klen);
#define DFC_FIND(v, lit) dfc_value_find_n((v), lit, sizeof(lit) - 1)
/*  Looks up nkeys keys in one pass over a map: out[j] = the value of the
    first pair whose key is keys[j] (NULL when absent or not a map). keys
    is an array of structs, stride bytes apart, each starting with a
    dfc_key_t (so a table of field descriptors can be passed as it is). */
typedef struct {
    const char *s;
    size_t len;
} dfc_key_t;
void dfc_value_lookup(const dfc_value_t *map, const void *keys, size_t stride, size_t nkeys,
                      const dfc_value_t **out);
/*  dfc_doc_parse into one block: head zeroed bytes for the caller (an
    event), then the document, its nodes and its strings. On success
    *block is the block (free() it; never dfc_doc_destroy *out), *out the
    document inside it. */
int dfc_doc_parse_in(const void *buf, size_t len, size_t head, void **block, dfc_doc_t **out);
/*  The same, the block from blocks when it fits (*pooled then true: give it
    back with dfc_blocks_put, not free). blocks may be NULL. */
int dfc_doc_parse_pooled(dfc_blocks_t *blocks, const void *buf, size_t len, size_t head,
                         void **block, bool *pooled, dfc_doc_t **out);
/*  JSON for a double (see dfc_value_to_json) into out (>= 32 bytes). */
void dfc_json_double(char *out, size_t size, double d);
/*  JSON string literal, snprintf-style like dfc_value_to_json. */
size_t dfc_json_string(const char *s, size_t len, char *buf, size_t size);

/*  Why a message was refused; indexes the per-reason counters. */
typedef enum {
    DFC_MSG_OK = 0,
    DFC_MSG_BAD_FRAMES,
    DFC_MSG_OVERSIZE,
    DFC_MSG_BAD_MSGPACK,
    DFC_MSG_NOT_MAP,
    DFC_MSG_BAD_VERSION,
    DFC_MSG_BAD_ENVELOPE,
    DFC_MSG_BAD_EVENT,
    DFC_MSG_NOMEM
} dfc_msg_status_t;
const char *dfc_msg_status_str(dfc_msg_status_t st);

typedef struct {
    const dfc_value_t *root, *event;
    uint64_t v, seq, gseq, ts;
    int64_t bot;
    const char *epoch; /* NUL-terminated for convenience; may hold NULs: use epoch_len */
    size_t epoch_len;
} dfc_envelope_t;

/*  The frame rule, one for the library and dftail: a message is exactly 2
    frames and its topic (frame 1) is 1..DFC_MAX_TOPIC bytes. Returns
    DFC_MSG_OK or DFC_MSG_BAD_FRAMES. */
dfc_msg_status_t dfc_frames_check(size_t nparts, size_t topic_len);

/*  Checks the frame-2 map of contract v1: v (uint, <= 1), seq, gseq, ts
    (uint), bot (int64), epoch (str), event (map); unknown keys ignored. */
dfc_msg_status_t dfc_envelope_check(const dfc_value_t *root, dfc_envelope_t *env);

/*  Builds an event from the two frames (decoded once, payload structs
    filled from the type table). On success returns an event with one
    reference; on refusal NULL and *st says why. */
dfc_event_t *dfc_event_new(const void *topic, size_t topic_len, const void *body, size_t body_len,
                           size_t max_frame, dfc_msg_status_t *st);
/*  The same, its memory taken from blocks (one thread calls this per
    blocks: the loop's receiver) and given back there by the last unref,
    from any thread: no malloc per event once warm. blocks must outlive the
    event. NULL blocks: malloc, as dfc_event_new. */
dfc_event_t *dfc_event_new_in(dfc_blocks_t *blocks, const void *topic, size_t topic_len,
                              const void *body, size_t body_len, size_t max_frame,
                              dfc_msg_status_t *st);
void dfc_event_ref(dfc_event_t *ev);
/*  Drops a reference; the last one frees the event. */
void dfc_event_unref(dfc_event_t *ev);
/*  True when the topic is one of the 17 types. */
bool dfc_event_is_known(const dfc_event_t *ev);
/*  True when listener l has a callback for this event (on_unknown for
    unknown topics). */
bool dfc_event_has_callback(const dfc_event_t *ev, const dfc_listener_t *l);
/*  Calls l's callback for this event (which must exist). */
void dfc_event_dispatch(const dfc_event_t *ev, const dfc_listener_t *l);
const dfc_initiator_t *dfc_event_initiator(const dfc_event_t *ev);
/*  The same strings as the public getters, with their length in *len (0
    when absent): ids, types, epochs and topics may hold NUL bytes, and are
    compared as bytes with lengths everywhere inside the library. */
const char *dfc_event_id_n(const dfc_event_t *ev, size_t *len);
const char *dfc_event_type_n(const dfc_event_t *ev, size_t *len);
const char *dfc_event_epoch_n(const dfc_event_t *ev, size_t *len);
const char *dfc_event_topic_n(const dfc_event_t *ev, size_t *len);
/*  The message's size as received: topic + envelope bytes (what the held
    events' byte bound counts; the decoded form takes more). */
size_t dfc_event_wire_size(const dfc_event_t *ev);

/* ------------------------------------------- delivery (dfc_delivery.c) */

/*  The dedupe window: remembers the last `window` (id, type) keys. */
typedef struct dfc_dedupe dfc_dedupe_t;
dfc_dedupe_t *dfc_dedupe_new(size_t window);
void dfc_dedupe_destroy(dfc_dedupe_t **d_p);
/*  True when the key is in the window (nothing changes then); otherwise
    remembers it, forgetting the oldest when full, and returns false. A NULL
    id is never a duplicate. */
bool dfc_dedupe_seen(dfc_dedupe_t *d, const char *id, size_t idlen, const char *type, size_t tlen);

/*  Checkpoint entries: per bridge epoch the watermark gseq (everything up
    to it handled) and the gseqs above it handled already (ascending), so
    that a restart neither loses nor repeats an event that finished. */
#define DFC_EPOCH_MAX DFC_EPOCH_BYTES
#define DFC_CKPT_MAX 16
#define DFC_CKPT_DONE_MAX 65536
typedef struct {
    char epoch[DFC_EPOCH_MAX];
    uint64_t gseq;
    uint64_t *done; /* malloc'ed by dfc_ckpt_load */
    size_t ndone;
} dfc_ckpt_entry_t;
/*  Reads up to max entries (the newest when there are more). A missing file
    is DFC_OK with *n = 0; a malformed one DFC_EINVAL (entries read so far
    kept). Free the done arrays with dfc_ckpt_entries_free. */
int dfc_ckpt_load(const char *path, dfc_ckpt_entry_t *out, size_t max, size_t *n);
/*  The largest file a writer produces: 16 epochs x (an e line + 65536 d
    lines of up to 20 digits) is about 24 MB. The loader reads at most this
    much: beyond, the file is malformed (entries read before kept). */
#define DFC_CKPT_FILE_MAX ((size_t)32 << 20)
void dfc_ckpt_entries_free(dfc_ckpt_entry_t *e, size_t n);
/*  Writes path atomically (temp file, fsync, rename, fsync of the folder).
    Returns DFC_OK, DFC_ENOMEM, DFC_EINVAL (path too long) or DFC_EIO: a
    failed step is logged at `level` with the file and errno (kept in errno
    on return); the previous file is never touched before the rename. */
int dfc_ckpt_save(const char *path, const dfc_ckpt_entry_t *e, size_t n, dfc_log_level_t level);

/*  realloc for the loop's growth paths; dfc_alloc_fail_next(n) makes the
    next n calls fail (tests only). */
void *dfc_realloc(void *p, size_t n);

/*  A recycling pool of fixed-size blocks (DFC_BLOCK_SIZE) for events: one
    thread takes (dfc_blocks_get), any thread gives back (dfc_blocks_put).
    Given-back blocks are pushed on a lock-free stack; the taker empties the
    whole stack at once when its own list runs out (no ABA: only it
    removes). At most max free blocks are kept; beyond, they are freed. */
#define DFC_BLOCK_SIZE 8192
dfc_blocks_t *dfc_blocks_new(size_t max);
void dfc_blocks_destroy(dfc_blocks_t **blocks_p);
/*  A block of DFC_BLOCK_SIZE bytes, or NULL when out of memory. */
void *dfc_blocks_get(dfc_blocks_t *b);
void dfc_blocks_put(dfc_blocks_t *b, void *block);
/*  The taker's scratch buffer of at least n bytes (kept, grown as needed),
    NULL when out of memory. Decoding uses it for messages up to
    DFC_SCRATCH_MAX bytes (larger ones are decoded in two passes). */
#define DFC_SCRATCH_MAX 65536
void *dfc_blocks_scratch(dfc_blocks_t *b, size_t n);
/*  True while the receiver waits for room in a full job queue (tests: the
    state to wait for before acting on back-pressure). */
bool dfc_loop_receiver_waits(dfc_loop_t *loop);
void dfc_alloc_fail_next(int n);

/* ---------------------------------------------- replay client (dfc_replay.c) */

/*  Encodes a replay request by gseq (issue-4 protocol) into buf; returns
    its length, 0 when buf is too small, epoch or a topic is longer than 255
    bytes, or there are more than 15 topics. epoch NULL or epoch_len 0 -> no
    epoch key (the epoch is bytes: it may hold NULs); ntopics 0 -> no topics
    key (all topics). */
/*  Writes s (n < 256 bytes: callers check) as a msgpack str (fixstr or
    str8) at p; returns the bytes written (n + 1 or n + 2). */
size_t dfc_mp_str(unsigned char *p, const char *s, size_t n);

size_t dfc_replay_request(void *buf, size_t size, uint64_t req, const char *epoch, size_t epoch_len,
                          uint64_t from_gseq, unsigned limit, const char *const *topics,
                          size_t ntopics);

/* ----------------------------------------- CURVE (dfc_curve.c, dfc_monitor.c) */

/*  The client side of CURVE: the bridge's public key and this consumer's
    pair, binary. The secret stays until dfc_curve_wipe (explicit_bzero). */
typedef struct {
    bool on; /* false: plain sockets */
    uint8_t server[32], public_key[32], secret[32];
} dfc_curve_t;
/*  Loads server_key (40 Z85 characters, or the path of the bridge's public
    certificate: an existing file wins) and cert (this consumer's secret
    certificate file). Both NULL or "": c->on false, DFC_OK. Otherwise
    DFC_OK, or DFC_EINVAL with a one-line reason in err naming the option
    and the file (never key material); c is wiped then. */
int dfc_curve_load(dfc_curve_t *c, const char *server_key, const char *cert, char *err,
                   size_t errlen);
/*  Makes sock a CURVE client (before connect); nothing when c is NULL or off.
    0, or -1 with errno. */
int dfc_curve_apply(const dfc_curve_t *c, void *sock);
void dfc_curve_wipe(dfc_curve_t *c);

/*  A failed handshake: connected again after 250 ms, doubling to 2 s (reset by
    a success); logged at once, then at most every 10 s per socket. */
#define DFC_HS_BACKOFF_FIRST_MS 250
#define DFC_HS_BACKOFF_MAX_MS 2000
#define DFC_HS_LOG_EVERY_MS 10000
typedef struct {
    uint64_t failed;    /* failures since the last success */
    uint64_t unlogged;  /* failures not logged since the last line */
    int64_t backoff_ms; /* the last wait; 0 = no failure */
    int64_t retry_at;   /* connect again then (monotonic ms); 0 = nothing pending */
    int64_t logged_at;
    bool logged;
} dfc_hs_t;
typedef enum { DFC_HS_NONE, DFC_HS_OK, DFC_HS_FAILED } dfc_hs_result_t;
/*  Applies a monitor event to h: DFC_HS_FAILED (the caller counts it in
    auth_failures; h->retry_at is set), DFC_HS_OK (a success: h reset), or
    DFC_HS_NONE (not a handshake event). `what` names the socket in the log. */
dfc_hs_result_t dfc_hs_event(dfc_hs_t *h, uint16_t id, const char *what, int64_t now);
/*  A socket monitor of sock for events (ZMQ_EVENT_*), read through the PAIR
    returned (NULL on error: then none). Set it before connecting. */
void *dfc_monitor_open(void *zctx, void *sock, int events);
void dfc_monitor_close(void *sock, void **mon_p);
/*  One event from a monitor without waiting: 1 (id, endpoint in ep), or 0. */
int dfc_monitor_next(void *mon, uint16_t *id, char *ep, size_t size);

/*  A DEALER connected to a replay endpoint (linger 0; frames above
    max_frame + 255 refused, 0 = no limit; a receive HWM of
    dfc_replay_rcvhwm(max_frame) messages: a peer that sends more than the
    reader takes is held back by TCP, not queued in memory), a CURVE client
    when curve is on; then, if mon is not NULL,
    *mon gets a monitor of its handshakes (DFC_HS_EVENTS | CONNECT_RETRIED)
    set before it connects (NULL if it could not be opened). NULL on error
    (logged, errno set). */
void *dfc_replay_open(void *zctx, const char *endpoint, size_t max_frame, const dfc_curve_t *curve,
                      void **mon);
/*  The replay DEALER's ZMQ_RCVHWM: DFC_REPLAY_QUEUE_BYTES / max_frame,
    within 4..256 messages (max_frame 0 counts as 16 MiB), so that libzmq
    queues at most about max(64 MiB, 4 x max_frame) for it. */
#define DFC_REPLAY_QUEUE_BYTES ((size_t)64 << 20)
int dfc_replay_rcvhwm(size_t max_frame);
/*  The rule for a replay endpoint a heartbeat names (adv) on the bridge
    connected as pub (dfc_config_t.replay_any_host): over tcp the host must
    be pub's (compared without case; a wildcard host "*", "0.0.0.0", "::" or
    "[::]" is replaced by pub's host), ipc and inproc ones need a pub of the
    same transport; any_host takes adv as it is. Writes the endpoint to use
    into out and returns 0, or -1 when refused (or out is too small). */
int dfc_replay_advert(const char *pub, const char *adv, bool any_host, char *out, size_t size);

/*  An end marker ("_end"), read. */
typedef struct {
    bool ok;   /* status "ok" */
    bool more; /* the limit cut the answer: ask again */
    bool has_req, has_head;
    bool impossible; /* a number cannot be right (a gseq above DFC_SEQ_MAX, or last_gseq
                        above head_gseq): the marker must not be acted on */
    uint64_t req, count, last_gseq, head_gseq, oldest_gseq;
    bool has_lost; /* code "damaged": lost_from..lost_to cannot be read */
    uint64_t lost_from, lost_to;
    char code[32];   /* errors: "gone", "damaged", "epoch", "bad_request", "busy", "io_error",
                        "internal" ("" when absent) */
    char error[256]; /* errors: the reason, cut to fit */
} dfc_replay_end_t;
/*  Reads an end marker. Returns DFC_OK (check end->impossible), or
    DFC_EINVAL when it is not msgpack or not a map. *end is filled as far as
    it could be read. */
int dfc_replay_end_parse(const void *body, size_t len, dfc_replay_end_t *end);

/*  The thread-local listener context, set by workers around a callback (the
    strings are borrowed until dfc_context_clear). */
#define DFC_CONTEXT_MAX 256
void dfc_context_set(const char *worker, const char *event_id, const char *listener_id);
void dfc_context_clear(void);
/*  Counts one command-channel call in the current job and, when buf is not
    NULL, writes the job's default id "<event id>/<listener id>/<n>" into it.
    Returns 1 when written, 0 outside a job (or buf NULL), -1 when the job has
    no event id or the id does not fit size bytes. */
int dfc_context_call_id(char *buf, size_t size);

/*  Reads one whole multipart message from s (the first frame without
    waiting). Returns 1 when one was read: the caller owns parts[0..1] and
    must close both; nparts and total tell the frame count and size (frames
    beyond the second are only counted). Returns 0 when none was waiting (or
    a signal came first), -1 on a socket error with errno set; parts are
    closed then. Needs <zmq.h>. */
#ifdef ZMQ_VERSION
#define DFC_HS_EVENTS                                                                              \
    (ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |                             \
     ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
int dfc_msg_read(void *s, zmq_msg_t parts[2], size_t *nparts, size_t *total);
/*  Whether frame m is exactly name (ZeroMQ matches topics by prefix). */
bool dfc_msg_is(const zmq_msg_t *m, const char *name);
#endif

#endif
