/*  dfb_upstream: what /metrics says about the calls to the pod, agent and
    key manager: requests per (call, code), a latency histogram per call,
    retries per call. Process-wide: the loop's thread and the command
    executors write, every field is an atomic (increments are atomic
    read-modify-writes), so the metrics thread reads them live without a
    lock. Also the histogram helper the
    publisher uses for the publish lag. */
#ifndef DFB_UPSTREAM_H
#define DFB_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "dfb_http.h"
#include "dfb_policy.h"

/*  The calls, as /metrics labels them (`call`) and the log lines name them
    (their `call` field, dfb_upstream_call_name): a fixed set. */
typedef enum {
    DFB_UP_LOGIN,          /* session authentication: /login/pubkey or /sessionauth */
    DFB_UP_KEYMANAGER,     /* key manager authentication: /relay/pubkey or /keyauth */
    DFB_UP_AGENT_INFO,     /* GET /agent/v1/info (simplified key delivery check) */
    DFB_UP_SESSION_INFO,   /* GET /pod/v2/sessioninfo */
    DFB_UP_LIST_FEEDS,     /* GET /agent/v5/datafeeds */
    DFB_UP_CREATE_FEED,    /* POST /agent/v5/datafeeds */
    DFB_UP_DELETE_FEED,    /* DELETE /agent/v5/datafeeds/{id} */
    DFB_UP_READ_FEED,      /* POST /agent/v5/datafeeds/{id}/read */
    DFB_UP_CREATE_FEED_V1, /* POST /agent/v4/datafeed/create */
    DFB_UP_READ_FEED_V1,   /* GET /agent/v4/datafeed/{id}/read */
    DFB_UP_DATAHOSE_READ,  /* POST /agent/v5/events/read */
    /* The command channel's calls (issue 12, dfb_outbound; several executor threads) */
    DFB_UP_MSG_CREATE,     /* POST /agent/v4/stream/{sid}/message/create */
    DFB_UP_MSG_UPDATE,     /* POST /agent/v4/stream/{sid}/message/{mid}/update */
    DFB_UP_MSG_SUPPRESS,   /* POST /pod/v1/admin/messagesuppression/{id}/suppress */
    DFB_UP_MSG_GET,        /* GET /agent/v1/message/{id} */
    DFB_UP_MSG_LIST,       /* GET /agent/v4/stream/{sid}/message (the mark lookup) */
    DFB_UP_IM_CREATE,      /* POST /pod/v1/im/create */
    DFB_UP_ROOM_ADD,       /* POST /pod/v1/room/{id}/membership/add */
    DFB_UP_ROOM_REMOVE,    /* POST /pod/v1/room/{id}/membership/remove */
    DFB_UP_STREAM_INFO,    /* GET /pod/v2/streams/{sid}/info */
    DFB_UP_USERS,          /* GET /pod/v3/users */
    DFB_UP_COUNT
} dfb_up_call_t;

/*  Codes: an HTTP status 100..599 (index status - 100), then one per
    transport error class (index 500 + dfb_http_err_t; a status outside
    100..599 counts as "other"). */
#define DFB_UP_STATUS_CODES 500
#define DFB_UP_CODES (DFB_UP_STATUS_CODES + DFB_HTTP_ERR_COUNT)

/*  Latency buckets (upper bounds, seconds; +Inf follows): reads hold up to
    ~30 s, so the buckets go past it. */
#define DFB_UP_BUCKETS 17
extern const double dfb_up_bounds_s[DFB_UP_BUCKETS];

/*  Publish lag buckets (seconds): redeliveries and backlogs are minutes old. */
#define DFB_LAG_BUCKETS 14
extern const double dfb_lag_bounds_s[DFB_LAG_BUCKETS];

typedef struct {
    _Atomic uint64_t requests[DFB_UP_COUNT][DFB_UP_CODES];
    /* per bucket, not cumulative; [DFB_UP_BUCKETS] is over the last bound */
    _Atomic uint64_t buckets[DFB_UP_COUNT][DFB_UP_BUCKETS + 1];
    _Atomic uint64_t sum_us[DFB_UP_COUNT];
    _Atomic uint64_t retries[DFB_UP_COUNT];
} dfb_upstream_stats_t;

/*  The process's stats (static storage, zero at start). */
dfb_upstream_stats_t *dfb_upstream(void);

/*  Counts one request of call: its outcome (err, and status when err is
    DFB_HTTP_OK) and how long it took. */
void dfb_upstream_record(dfb_up_call_t call, dfb_http_err_t err, int status, int64_t elapsed_us);

/*  Counts one retry of call (a backoff waited before calling again). */
void dfb_upstream_retry(dfb_up_call_t call);

/*  The label of a loop call (dfb_policy's; DFB_CALL_AUTH gives LOGIN). */
dfb_up_call_t dfb_upstream_of(dfb_call_t call);

/*  "login", "read_feed" ... (static). */
const char *dfb_upstream_call_name(dfb_up_call_t call);

/*  The `code` label of a code index: "200", "timeout" ... into buf (at
    least 16 bytes); returns buf. */
const char *dfb_upstream_code_name(size_t code, char *buf, size_t cap);

/*  Adds one observation v to a histogram: buckets has n + 1 cells (the
    last for v over bounds[n - 1]), not cumulative. */
void dfb_hist_observe(_Atomic uint64_t *buckets, const double *bounds, size_t n, double v);

/*  Monotonic microseconds, for elapsed times. */
int64_t dfb_upstream_now_us(void);

#endif
