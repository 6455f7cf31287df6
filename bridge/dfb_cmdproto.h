/*  dfb_cmdproto: the command channel's wire protocol (schemas/CONTRACT.md
    "Commands"): one request frame parsed and validated completely, the
    outcome of a request as the journal keeps it, and the reply built from
    it. No sockets, no HTTP: the channel (dfb_cmd) and the executors
    (dfb_outbound) call it. */
#ifndef DFB_CMDPROTO_H
#define DFB_CMDPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "dfb_mpack.h"
#include "dfb_transcode.h"

typedef enum {
    DFB_OP_SEND,
    DFB_OP_UPDATE,
    DFB_OP_SUPPRESS,
    DFB_OP_GET,
    DFB_OP_CREATE_IM,
    DFB_OP_ADD_MEMBER,
    DFB_OP_REMOVE_MEMBER,
    DFB_OP_STREAM_INFO,
    DFB_OP_USERS,
    DFB_OP_COUNT
} dfb_op_t;

const char *dfb_op_name(dfb_op_t op);            /* "messages.send" ... ("?" out of range) */
int dfb_op_from_name(const char *s, size_t len); /* -1 if unknown */
int dfb_op_posts(dfb_op_t op); /* 1 for send/update: per-stream rate, mark, lookup */

#define DFB_CMD_MAX_ID 128
/*  Longest stream or message id accepted (before the URL-safe conversion). */
#define DFB_CMD_MAX_SID 255
/*  Most values in users.lookup / streams.createIm. */
#define DFB_CMD_MAX_VALUES 100

typedef struct {
    char id[DFB_CMD_MAX_ID + 1];
    size_t id_len; /* copied, NUL-terminated (ids have no NUL: control chars refused) */
    int has_id;    /* the id could be read (for a bad_request reply's echo) */
    dfb_op_t op;
    char stream[256]; /* the URL-safe stream id of ops that have one ("" otherwise) */
    uint8_t fp[32];   /* SHA-256 over op name, a 0 byte, then the args' msgpack bytes as received */
    uint8_t *frame;
    size_t frame_len; /* owned copy of the request frame */
    const uint8_t *args;
    size_t args_len; /* into frame */
} dfb_cmd_req_t;

/*  Parses and validates one request frame completely (every arg of the op
    type-checked, unknown args refused, limits). 0 = valid (req filled, frame
    copied); -1 = bad_request: why says what ("args.stream_id: expected a
    string"), req->has_id/id set if the id could be read. A frame over
    max_bytes is refused without parsing. Never reads out of bounds on
    hostile input; depth and sizes bounded. req need not be initialised. */
int dfb_cmd_req_parse(const void *frame, size_t frame_len, size_t max_bytes, dfb_cmd_req_t *req,
                      char *why, size_t whylen);
void dfb_cmd_req_free(dfb_cmd_req_t *req); /* frees frame; accepts a zeroed req */

/*  The validated arguments of a request, as views into its frame (ADDED for
    dfb_outbound; filled by dfb_cmd_args_read, which runs the same checks as
    dfb_cmd_req_parse). Strings are not NUL-terminated. */
typedef struct {
    const char *s;
    size_t len;
} dfb_cmd_str_t;

typedef enum { DFB_CMD_DATA_NONE = 0, DFB_CMD_DATA_STR, DFB_CMD_DATA_MAP } dfb_cmd_data_kind_t;

typedef struct {
    dfb_cmd_str_t stream_id;  /* as sent (convert with dfb_cmd_urlsafe_id) */
    dfb_cmd_str_t message_id; /* as sent */
    dfb_cmd_str_t message;    /* the MessageML, not yet wrapped (map form resolved) */
    dfb_cmd_data_kind_t data_kind;
    dfb_cmd_str_t data_str;  /* DATA_STR: a JSON object text */
    const uint8_t *data_map; /* DATA_MAP: msgpack bytes of the map */
    size_t data_map_len;
    int has_version;
    dfb_cmd_str_t version;
    const uint8_t *attachments; /* msgpack array of {name, content, content_type?, preview?} */
    size_t attachments_len;
    uint32_t nattachments;
    int npreviews;           /* 0 or nattachments */
    int silent;              /* -1 unset (update: default true) */
    const uint8_t *user_ids; /* msgpack array of ints (or NULL) */
    size_t user_ids_len;
    uint32_t nuser_ids;
    int has_user_id;
    int64_t user_id;     /* the single int `user_id` */
    const uint8_t *strs; /* users.lookup emails/usernames: msgpack array of str */
    size_t strs_len;
    uint32_t nstrs;
    int lookup_by; /* users.lookup: 'u' uid, 'e' email, 'n' username */
    int local;     /* -1 unset */
    int active;    /* -1 unset */
} dfb_cmd_args_t;

/*  Reads (and checks) the args of a parsed request. 0, or -1 with why. */
int dfb_cmd_args_read(const dfb_cmd_req_t *req, dfb_cmd_args_t *a, char *why, size_t whylen);

/*  The URL-safe form of a stream or message id (the Java BDK's
    IdUtil.toUrlSafeIdIfNeeded): '+' -> '-', '/' -> '_', padding '=' dropped,
    only when one of them occurs. out gets at most outlen - 1 bytes + NUL. */
void dfb_cmd_urlsafe_id(const char *id, size_t len, char *out, size_t outlen);

/*  The message text as sent to Symphony: wrapped in <messageML>...</messageML>
    unless it starts with "<messageML>" or ends with "</messageML>" (the
    Python BDK's rule). Appends to out; 0 or -1 (memory). */
int dfb_cmd_message_text(const dfb_cmd_str_t *m, dfb_buf_t *out);

/*  The `data` part as sent: the client's EntityJSON (a JSON object text,
    kept byte for byte, or a msgpack map converted to JSON) with the mark
    entity "dfbridge.request" appended; no data: the mark alone. mark is the
    32-hex id of dfb_cmd_mark. Appends to out; 0 or -1 (memory or an
    unconvertible map: cannot happen after a successful parse). */
int dfb_cmd_data_json(const dfb_cmd_args_t *a, const char *mark, dfb_buf_t *out);

/*  JSON text of one msgpack value (maps with str keys, arrays, str, ints
    exact, floats, bool, nil; no bin/ext, no NaN/Inf): appended to out (NULL
    = validate only). 0, or -1 with why. */
int dfb_cmd_mpack_to_json(dfb_mpack_reader_t *r, dfb_buf_t *out, int depth, char *why,
                          size_t whylen);

/*  Appends s as a JSON string (quoted, escaped; s must be valid UTF-8). */
int dfb_cmd_json_str(dfb_buf_t *out, const char *s, size_t len);

typedef struct {
    int ok;
    dfb_buf_t result;       /* ok: msgpack of the result (nil for 204) */
    const char *code;       /* not ok: "bad_request" ... (static) */
    int status;             /* rejected: HTTP status; else 0 */
    char message[512];      /* not ok: human-readable */
    int64_t retry_after_ms; /* busy: > 0 */
    int found;              /* settled by finding the mark */
    int definite;           /* 1: record it (ok, rejected); 0: unavailable/unknown_outcome/busy:
                               do not record (dfb_cmdlog_release) */
    int attempts;           /* Symphony calls made (creates + lookups) */
} dfb_cmd_outcome_t;

/*  The error codes (D1), as static strings. */
#define DFB_CMD_BAD_REQUEST "bad_request"
#define DFB_CMD_NOT_ALLOWED "not_allowed"
#define DFB_CMD_REJECTED "rejected"
#define DFB_CMD_UNAVAILABLE "unavailable"
#define DFB_CMD_UNKNOWN_OUTCOME "unknown_outcome"
#define DFB_CMD_BUSY "busy"

void dfb_cmd_outcome_init(dfb_cmd_outcome_t *o);
void dfb_cmd_outcome_free(dfb_cmd_outcome_t *o);
/*  Makes o a failure: code (one of the DFB_CMD_* strings: static), status
    (rejected), message formatted. definite = 1 for rejected and bad_request,
    else 0. */
void dfb_cmd_outcome_error(dfb_cmd_outcome_t *o, const char *code, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/*  The journal's form of an outcome: msgpack map {ok, result | error{code,
    message[,status][,retry_after_ms]}, found}. 0 or -1 (memory). */
int dfb_cmd_outcome_encode(dfb_buf_t *out, const dfb_cmd_outcome_t *o);
/*  A reply (D1) from a journaled outcome map: {v,id,ok,result|error,replayed,
    found}. Appends to out; 0 or -1 (bad outcome bytes, memory). */
int dfb_cmd_reply_from_outcome(dfb_buf_t *out, const char *id, size_t id_len,
                               const uint8_t *outcome, size_t outcome_len, int replayed);
/*  A reply for an error decided before any call (bad_request, not_allowed,
    busy, unavailable): status written for rejected, retry_after_ms for
    busy. Appends to out; 0 or -1 (memory). */
int dfb_cmd_reply_error(dfb_buf_t *out, const char *id, size_t id_len, const char *code,
                        const char *message, int status, int64_t retry_after_ms);

/*  The mark id (D3): 32 lowercase hex + NUL of SHA-256("dfbridge-mark\0"
    scope "\0" id), first 16 bytes. */
void dfb_cmd_mark(const char *scope, size_t scope_len, const char *id, size_t id_len, char out[33]);

/*  Self-test (dfb_selftest cmdproto); 0 when all checks pass. */
int dfb_cmdproto_test(int verbose);

#endif
