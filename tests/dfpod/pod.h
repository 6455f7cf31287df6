/* dfpod internals: the configuration and the four modules of the fake pod
 * (state, JWT checks, event generator, HTTP front end) and how they meet.
 * Nothing here is a public API of the project; only the dfpod program uses it. */
#ifndef DFPOD_POD_H
#define DFPOD_POD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef struct {
    char listen_host[64]; /* numeric address, without brackets */
    int listen_port;      /* 0 = pick a free one */
    bool ipv6;
    const char *port_file;
    const char *bot_username;
    int64_t bot_id;
    const char *public_key_path;
    int64_t hold_ms;
    int64_t visibility_ms;
    int64_t ttl_ms;
    int64_t token_ttl_ms; /* 0 = never */
    int max_feeds;
    int batch_max;
    double rate;
    long generate;
    uint64_t seed;
    bool verbose;
    bool no_history; /* free events once delivered and acknowledged everywhere */
    /* TLS and certificate authentication (pod_tls.c) */
    const char *tls_cert_path;      /* PEM server certificate: serve HTTPS (NULL = HTTP) */
    const char *tls_key_path;       /* its PEM key */
    const char *tls_client_ca_path; /* PEM CA: ask for client certificates (mutual TLS) */
    const char *agent_version;      /* GET /agent/v1/info "version" (default Agent-24.12.1) */
    bool skd; /* session tokens are JWTs with canUseSimplifiedKeyDelivery=true */
    bool no_echo_posts; /* --no-echo-posts: a post does not enqueue its MESSAGESENT event */
    int64_t list_lag_ms; /* --list-lag-ms: a message is listed this long after its create */
    int gen_kind;     /* pod_gen_kind_t of --generate, --rate and /admin/generate's default */
    size_t gen_bytes; /* MESSAGESENT size (--gen-bytes, default 1200) */
} pod_config_t;

/* realloc that exits the pod (status 2, one line) when out of memory; n = 0 is 1 byte. */
void *pod_xrealloc(void *p, size_t n);

/* Milliseconds on the monotonic clock (deadlines) and the wall clock (timestamps). */
int64_t pod_mono_ms(void);
int64_t pod_wall_ms(void);

/* ---- endpoints (names used by faults, counters and the call log) ---- */
typedef enum {
    POD_EP_AUTH,
    POD_EP_RELAY,
    POD_EP_SESSIONINFO,
    POD_EP_LIST,
    POD_EP_CREATE,
    POD_EP_DELETE,
    POD_EP_READ,
    POD_EP_V1CREATE,
    POD_EP_V1READ,
    POD_EP_DHREAD,      /* datahose: POST /agent/v5/events/read */
    POD_EP_SESSIONAUTH, /* POST /sessionauth/v1/authenticate (mutual TLS) */
    POD_EP_KEYAUTH,     /* POST /keyauth/v1/authenticate (mutual TLS) */
    POD_EP_AGENTINFO,   /* GET /agent/v1/info */
    /* outbound (pod_outbound.c): the calls a bot makes to act */
    POD_EP_MSGCREATE,   /* POST /agent/v4/stream/{sid}/message/create */
    POD_EP_MSGUPDATE,   /* POST /agent/v4/stream/{sid}/message/{mid}/update */
    POD_EP_MSGSUPPRESS, /* POST /pod/v1/admin/messagesuppression/{id}/suppress */
    POD_EP_MSGGET,      /* GET /agent/v1/message/{id} */
    POD_EP_MSGLIST,     /* GET /agent/v4/stream/{sid}/message */
    POD_EP_IMCREATE,    /* POST /pod/v1/im/create */
    POD_EP_ROOMADD,     /* POST /pod/v1/room/{id}/membership/add */
    POD_EP_ROOMREMOVE,  /* POST /pod/v1/room/{id}/membership/remove */
    POD_EP_STREAMINFO,  /* GET /pod/v2/streams/{sid}/info */
    POD_EP_USERS,       /* GET /pod/v3/users */
    POD_EP_UNKNOWN,     /* any other non-admin path */
    POD_EP_ANY,         /* faults only: matches every endpoint */
    POD_EP_COUNT
} pod_ep_t;

const char *pod_ep_name(pod_ep_t ep);
/* True for the outbound endpoints (pod_outbound.c), where faults honour "commit". */
bool pod_ep_outbound(pod_ep_t ep);
/* Returns the endpoint named NAME, or -1. */
int pod_ep_from_name(const char *name);

/* ---- faults ---- */
typedef enum {
    POD_FAULT_STATUS,
    POD_FAULT_DROP,
    POD_FAULT_TRUNCATE,
    POD_FAULT_SLOW,
    POD_FAULT_EXPIRE_TOKEN,
    POD_FAULT_EXPIRE_FEED,
    POD_FAULT_HUGE_HEADER, /* raw bytes: a 200 whose header is over 100 KB (curl's limit) */
    POD_FAULT_NOT_HTTP,    /* raw bytes: a reply that is not HTTP at all */
    POD_FAULT_ECHO,        /* status S whose body echoes the request: every header unredacted
                            * (tokens, default headers), then the request body */
    POD_FAULT_RETRY_AFTER, /* 429 with a Retry-After header */
    POD_FAULT_COUNT
} pod_fault_action_t;

/* The fault's name as in POST /admin/faults and the call log ("status", "drop" ...). */
const char *pod_fault_name(pod_fault_action_t action);

typedef struct {
    pod_fault_action_t action;
    int status;
    int64_t delay_ms;
    char *body; /* owned; NULL = a V2Error built from the status */
    bool commit;      /* outbound endpoints: make the call, then apply the fault */
    long retry_after; /* retry_after: the Retry-After header's seconds */
} pod_fault_t;

/* ---- state: tokens, feeds, queues, faults, counters, call log (one mutex) ---- */
typedef struct pod_state_t pod_state_t;

typedef enum { POD_TOKEN_SESSION, POD_TOKEN_KM } pod_token_kind_t;

enum {
    POD_OK = 0,
    POD_ENOFEED = -1,  /* unknown, deleted or expired feed */
    POD_EBADACK = -2,  /* ackId of an invalid format */
    POD_ETOOMANY = -3, /* --max-feeds live feeds */
    POD_EGONE = -4     /* the client closed its connection during the hold */
};

/* An ackId: bytes with a length (one set by POST /admin/next-ackid may hold NUL). */
typedef struct {
    char b[64];
    size_t len;
} pod_ackid_t;

/* A call as the log and the counters see it. Strings are borrowed. */
typedef struct {
    pod_ep_t ep;
    const char *method;
    const char *path;
    int status; /* 0 = no reply (drop) */
    const char *body;
    size_t body_len;
    const char *feed;   /* NULL if none */
    const char *ack_in; /* reads: ackId received (ack_in_len bytes), NULL if none */
    size_t ack_in_len;
    const char *ack_out; /* reads: ackId sent (ack_out_len bytes), NULL if none */
    size_t ack_out_len;
    long events;       /* reads: events sent, -1 if not a read */
    const char *fault; /* name of the fault applied, NULL if none */
    bool gone;         /* the client went away during a held read: no reply */
    int64_t wall_ms;
    json_t *headers;       /* request headers, secrets redacted (borrowed; NULL = none) */
    const char *client_cn; /* CN of a verified client certificate, NULL if none */
} pod_call_t;

pod_state_t *pod_state_new(const pod_config_t *cfg);
void pod_state_destroy(pod_state_t **self_p);

/* Wakes every held read and sleeper; they answer at once. Irreversible. */
void pod_state_shutdown(pod_state_t *self);
bool pod_state_stopping(pod_state_t *self);
/* Sleeps up to MS ms; returns early (false) when the pod shuts down. */
bool pod_state_sleep(pod_state_t *self, int64_t ms);

/* Issues a fresh random 32-hex token of KIND into OUT. */
void pod_state_token_issue(pod_state_t *self, pod_token_kind_t kind, char out[33]);
/* True if TOK is a live token of KIND. */
bool pod_state_token_valid(pod_state_t *self, pod_token_kind_t kind, const char *tok);
void pod_state_tokens_expire(pod_state_t *self);
/* Records VALUE, a token as handed to a client (with --skd the whole JWT), for
 * GET /admin/tokens; pod_state_tokens_json returns every one ever issued as a JSON array
 * (expired ones included), caller frees. */
void pod_state_token_record(pod_state_t *self, const char *value);
char *pod_state_tokens_json(pod_state_t *self);
void pod_state_count_auth(pod_state_t *self, bool ok);

/* Copies LEN bytes of RAW (one event's JSON text) into the store and every live feed. */
void pod_state_enqueue(pod_state_t *self, const char *raw, size_t len);
/* The same for N events at once, under one lock: a read never gets only some of them (a batch
 * takes all N, up to --batch-max). */
void pod_state_enqueue_many(pod_state_t *self, const char *const *raw, const size_t *len,
                            size_t n);
/* Every event enqueued so far as one JSON array of raw texts (with --no-history: only
 * those still held by a feed or the backlog). Caller frees. */
char *pod_state_events_json(pod_state_t *self, size_t *len);

/* Creates a feed (v2 ids are <32hex>_f, v1 ids 32 hex). POD_ETOOMANY when --max-feeds v2 feeds
 * are live. On success the id goes to ID_OUT. */
int pod_state_feed_create(pod_state_t *self, bool v1, char id_out[64]);
/* Live v2 feeds as a JSON array [{"id","type","createdAt"}]. Caller frees. */
char *pod_state_feeds_json(pod_state_t *self);
/* Deletes a live feed (of either version); POD_ENOFEED if not live. */
int pod_state_feed_delete(pod_state_t *self, const char *id);
/* Expires feed ID (or every feed if ID is NULL); returns how many expired. */
int pod_state_feed_expire(pod_state_t *self, const char *id);

/* Datahose (POST /agent/v5/events/read): the datahose feed keyed by (TAG, the set of
 * TYPES, a JSON array of strings), created on first use with an id <32hex>_p_<5hex>. It
 * receives only events enqueued after its creation whose "type" is in TYPES, never the
 * backlog, and does not count towards --max-feeds. Its id goes to ID_OUT; it is then read
 * with pod_state_read(..., v1 = false, ...) like a fanout feed (ack, redelivery, TTL). */
void pod_state_datahose_feed(pod_state_t *self, const char *tag, json_t *types, char id_out[64]);

/* Reads feed ID. CLIENT_FD (or -1) is the client's socket: a held read whose client has
 * closed ends with POD_EGONE without taking events. v2: ACK_IN (ACK_IN_LEN bytes, may be
 * NULL or empty) acknowledges the batch whose ackId has exactly those bytes; the answer is
 * {"events":[...],"ackId":"..."} and its ackId is copied to ACK_OUT. v1: the answer is
 * [...] or, when the hold ends with nothing, *BODY = NULL (204). Holds up to --hold-ms.
 * On success *BODY is malloc'd (caller frees) and *NEVENTS says how many events it holds.
 * Errors: POD_ENOFEED, POD_EBADACK. */
int pod_state_read(pod_state_t *self, const char *id, bool v1, const char *ack_in,
                   size_t ack_in_len, int client_fd, char **body, size_t *len, pod_ackid_t *ack_out,
                   long *nevents);
/* The ackId (LEN bytes, 1..60, any byte) of the next batch served with events, once.
 * Returns 0, or -1 for a bad length. */
int pod_state_set_next_ackid(pod_state_t *self, const char *ack, size_t len);

/* Queues faults from a JSON object or array. Returns 0, or -1 with a reason in WHY. */
int pod_state_faults_add(pod_state_t *self, json_t *spec, char *why, size_t whylen);
void pod_state_faults_clear(pod_state_t *self);
/* Takes the first queued fault matching EP (or "any"); true if one was taken. OUT->body is
 * the caller's to free. */
bool pod_state_fault_take(pod_state_t *self, pod_ep_t ep, pod_fault_t *out);

void pod_state_log_call(pod_state_t *self, const pod_call_t *call);
/* The counters and the call log as JSON texts. Caller frees. */
char *pod_state_counters_json(pod_state_t *self);
char *pod_state_calls_json(pod_state_t *self);
void pod_state_calls_clear(pod_state_t *self);

/* Known-stream lookup in the event store: the latest enqueued event (still held: see
 * --no-history) holding an object whose streamId is SID gives that object (a V4Stream:
 * streamType, members ...), copied (caller decrefs); NULL if none. A linear scan: only for
 * ids not yet known elsewhere. */
json_t *pod_state_find_stream(pod_state_t *self, const char *sid);

/* ---- outbound endpoints (pod_outbound.c): messages, streams, rooms, users ---- */
typedef struct pod_out_t pod_out_t;

typedef struct {
    int status; /* 0 = not handled */
    char *body; /* malloc'd, caller frees (NULL = empty) */
    size_t len;
} pod_out_result_t;

struct MHD_Connection;
typedef struct pod_gen_t pod_gen_t;

pod_out_t *pod_out_new(const pod_config_t *cfg, pod_state_t *st);
void pod_out_destroy(pod_out_t **self_p);
/* Makes the outbound call EP (path URL, query from C, body BODY/LEN): state change, echo
 * event, the answer in RES. Tokens were checked by the caller. */
void pod_out_handle(pod_out_t *self, struct MHD_Connection *c, pod_ep_t ep, const char *url,
                    const char *body, size_t len, pod_out_result_t *res);
/* The call log's "body" of a multipart request: {"parts":[{name,filename?,content_type?,
 * size,text?}]}, malloc'd; NULL if C's body is not multipart (log it as it is). */
char *pod_out_log_body(struct MHD_Connection *c, const char *body, size_t len);
/* Admin calls under /admin/ that belong to the outbound state (messages, rooms, users):
 * true if URL/METHOD is one of them, with the answer in RES. */
bool pod_out_admin(pod_out_t *self, const char *url, const char *method, const char *body,
                   size_t len, pod_out_result_t *res);
/* Adds messages_posted, messages_updated, ... to the counters object O. */
void pod_out_counters(pod_out_t *self, json_t *o);

/* ---- JWT (RS512) ---- */
typedef struct pod_jwt_t pod_jwt_t;

/* Loads a PEM public key (SPKI or PKCS#1). NULL on error, with a reason in ERR. */
pod_jwt_t *pod_jwt_new(const char *pem_path, const char *username, char *err, size_t errlen);
void pod_jwt_destroy(pod_jwt_t **self_p);
/* 0 if JWT is an RS512 token signed by the key, with sub = username and
 * now < exp <= now + 300 s; otherwise -1 and the reason in WHY. */
int pod_jwt_verify(pod_jwt_t *self, const char *jwt, int64_t now_s, char *why, size_t whylen);
/* base64url (no padding needed) to bytes; returns the length or -1. OUT holds >= 3*len/4+3. */
long pod_b64url_decode(const char *in, size_t len, unsigned char *out);

/* ---- event generator ---- */

pod_gen_t *pod_gen_new(uint64_t seed, int64_t bot_id, const char *bot_username);
void pod_gen_destroy(pod_gen_t **self_p);
int pod_gen_type_count(void);
const char *pod_gen_type_name(int index);
/* One realistic event of type INDEX (mod 17) as a malloc'd JSON text; NULL on allocation
 * failure. FROM_BOT makes the bot the initiator. Event ids are unique in the process. */
char *pod_gen_event(pod_gen_t *self, int index, bool from_bot, size_t *len);

/* Generates COUNT events (types cycling from the first, the bot initiating
 * floor(COUNT*BOT_RATIO) of them, spread evenly), enqueues them and copies the first event's
 * id to FIRST_ID. Returns how many were enqueued. */
long pod_gen_enqueue(pod_gen_t *self, pod_state_t *state, long count, double bot_ratio,
                     char first_id[64]);

/* The generator's users, for GET /pod/v3/users: the ids it puts in events (68719476738 + 2k,
 * k = 0..1000, and 349026222340000..349026222439999, the bot's id excepted) are known users
 * named after the people table (index id mod its size). pod_gen_user returns a UserV2 for
 * ID or NULL; pod_gen_user_by reports the canonical id of the person whose email
 * ("<login>@example.com", IS_EMAIL) or username (login) is KEY, or 0. */
json_t *pod_gen_user(int64_t id, int64_t bot_id);
int64_t pod_gen_user_by(const char *key, bool is_email);

/* Options of one generate call (POST /admin/generate, --generate, --rate; benchmarks). */
typedef enum { POD_GEN_MIX = 0, POD_GEN_MESSAGESENT = 1 } pod_gen_kind_t;
typedef struct {
    pod_gen_kind_t kind; /* MIX: the 17 types cycling; MESSAGESENT: one fixed-shape message */
    size_t bytes;        /* MESSAGESENT: target size of the event's JSON text (>= 600) */
    bool at_once;        /* build every event first, then enqueue them all under one lock */
    double rate;         /* > 0: build first, then release RATE events/s (paced every ms) */
    char (*ids)[64];     /* rate > 0 and not NULL: each event's id ... */
    int64_t *release_ns; /* ... and the CLOCK_MONOTONIC ns of its enqueue (COUNT entries) */
} pod_gen_opts_t;

/* One MESSAGESENT of about BYTES bytes (PresentationML, EntityJSON, 64-bit user ids, raw
 * UTF-8), unique id, as a malloc'd JSON text; NULL on allocation failure. */
char *pod_gen_message_sent(pod_gen_t *self, size_t bytes, size_t *len, char id_out[64]);
/* pod_gen_enqueue with options (OPTS NULL = the plain call). Returns how many were enqueued. */
long pod_gen_enqueue_opts(pod_gen_t *self, pod_state_t *state, long count, double bot_ratio,
                          const pod_gen_opts_t *opts, char first_id[64]);
/* CLOCK_MONOTONIC in nanoseconds (release times for latency benchmarks). */
int64_t pod_mono_ns(void);

/* ---- TLS (pod_tls.c): HTTPS material and client certificates ---- */
struct MHD_Connection;

/* Reads a whole PEM file (caller frees); NULL on error, logged. */
char *pod_tls_read_pem(const char *path);
/* The CN of the connection's client certificate if it verified against --tls-client-ca,
 * into OUT; false if there is none or it did not verify (WHY says which). */
bool pod_tls_client_cn(struct MHD_Connection *c, char *out, size_t outlen, char *why,
                       size_t whylen);

/* ---- HTTP front end ---- */
typedef struct pod_http_t pod_http_t;

/* Starts listening; NULL on error (logged). */
pod_http_t *pod_http_new(const pod_config_t *cfg, pod_state_t *state, pod_jwt_t *jwt,
                         pod_gen_t *gen, pod_out_t *out);
int pod_http_port(pod_http_t *self);
/* Stops the daemon (call pod_state_shutdown first so held reads let go). */
void pod_http_destroy(pod_http_t **self_p);

#endif
