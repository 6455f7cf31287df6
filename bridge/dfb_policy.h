/*  dfb_policy: the error table of the BDKs (reference symphony-datafeed.md
    §5), as data: for each upstream call and each response class (an HTTP
    status range or a transport error), what the bridge does next. One
    table, one lookup; the loop and the README both follow it. */
#ifndef DFB_POLICY_H
#define DFB_POLICY_H

#include "dfb_http.h"

/*  The upstream calls. */
typedef enum {
    DFB_CALL_AUTH,      /* /login and /relay authenticate, sessioninfo (global `retry`) */
    DFB_CALL_LIST,      /* GET /agent/v5/datafeeds */
    DFB_CALL_CREATE,    /* POST /agent/v5/datafeeds */
    DFB_CALL_DELETE,    /* DELETE /agent/v5/datafeeds/{id} (recreate only) */
    DFB_CALL_READ,      /* POST /agent/v5/datafeeds/{id}/read */
    DFB_CALL_V1_CREATE, /* POST /agent/v4/datafeed/create */
    DFB_CALL_V1_READ,   /* GET /agent/v4/datafeed/{id}/read */
    DFB_CALL_DATAHOSE,  /* POST /agent/v5/events/read */
    DFB_CALL_COUNT
} dfb_call_t;

/*  What to do with one response. */
typedef enum {
    DFB_ACT_OK,       /* success: use the body */
    DFB_ACT_RETRY,    /* wait the backoff, call again (counts an attempt) */
    DFB_ACT_REAUTH,   /* authenticate again, wait the backoff, call again */
    DFB_ACT_RECREATE, /* read only: the feed is gone; get another one, retry */
    DFB_ACT_IGNORE,   /* a failure that is fine here (delete: already gone) */
    DFB_ACT_FATAL,    /* the loop ends: exit status DFB_EXIT_FATAL */
    DFB_ACT_STOPPED   /* a stop was requested: exit 0 */
} dfb_action_t;

/*  One row: for call, a status in [lo, hi] (lo = hi = 0: any transport
    error of a retryable kind) gives act. The first matching row wins. */
typedef struct {
    dfb_call_t call;
    int lo, hi;
    dfb_action_t act;
    const char *why; /* for the README and the fatal log line; may be NULL */
} dfb_policy_row_t;

/*  The action for one response. err != DFB_HTTP_OK means no HTTP status
    was received: ESTOPPED gives DFB_ACT_STOPPED, EOTHER (bad URL, out of
    memory) and ECERT (the server's certificate does not verify: not
    transient) DFB_ACT_FATAL, every other transport error (refused, DNS,
    timeout, reset, truncated, too big, TLS handshake, a malformed reply)
    is looked up as status 0.
    A malformed body on a 2xx is retried by the caller, not here. */
dfb_action_t dfb_policy_action(dfb_call_t call, dfb_http_err_t err, int status);

/*  The row that decided (status, call), or NULL for the default (fatal). */
const dfb_policy_row_t *dfb_policy_row(dfb_call_t call, int status);

/*  "read datafeed", "create datafeed" ... (static). */
const char *dfb_policy_call_name(dfb_call_t call);

/*  "retry", "re-authenticate, retry" ... (static). */
const char *dfb_policy_action_name(dfb_action_t act);

/*  Self-test; returns 0 when all checks pass. */
int dfb_policy_test(int verbose);

#endif
