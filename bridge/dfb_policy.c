/*  dfb_policy: the error table (see dfb_policy.h). Rows follow the
    reference's §5: network errors, 5xx and 429 are retried everywhere, a
    401 re-authenticates (except on authentication itself, where it is
    fatal), a 400 recreates a datafeed (v2 and v1 read) but is fatal for the
    datahose, and anything not listed ends the loop. */
#include "dfb_policy.h"

#include <stdio.h>
#include <string.h>

#define NET 0, 0 /* any retryable transport error */

static const dfb_policy_row_t s_rows[] = {
    /* authentication (and sessioninfo) use the global `retry` */
    {DFB_CALL_AUTH, NET, DFB_ACT_RETRY, NULL},
    {DFB_CALL_AUTH, 200, 299, DFB_ACT_OK, NULL},
    {DFB_CALL_AUTH, 401, 401, DFB_ACT_FATAL, "authentication refused: wrong key or username"},
    {DFB_CALL_AUTH, 429, 429, DFB_ACT_RETRY, NULL},
    {DFB_CALL_AUTH, 500, 599, DFB_ACT_RETRY, NULL},

    {DFB_CALL_LIST, NET, DFB_ACT_RETRY, NULL},
    {DFB_CALL_LIST, 200, 299, DFB_ACT_OK, NULL},
    {DFB_CALL_LIST, 401, 401, DFB_ACT_REAUTH, NULL},
    {DFB_CALL_LIST, 429, 429, DFB_ACT_RETRY, NULL},
    {DFB_CALL_LIST, 500, 599, DFB_ACT_RETRY, NULL},

    {DFB_CALL_CREATE, NET, DFB_ACT_RETRY, NULL},
    {DFB_CALL_CREATE, 200, 299, DFB_ACT_OK, NULL},
    /* A load balancer's 400 on create is transient (Java BDK PR #746). */
    {DFB_CALL_CREATE, 400, 400, DFB_ACT_RETRY, NULL},
    {DFB_CALL_CREATE, 401, 401, DFB_ACT_REAUTH, NULL},
    {DFB_CALL_CREATE, 403, 403, DFB_ACT_FATAL,
     "20 datafeeds already exist for this account: delete unused ones"},
    {DFB_CALL_CREATE, 429, 429, DFB_ACT_RETRY, NULL},
    {DFB_CALL_CREATE, 500, 599, DFB_ACT_RETRY, NULL},

    {DFB_CALL_DELETE, NET, DFB_ACT_RETRY, NULL},
    {DFB_CALL_DELETE, 200, 299, DFB_ACT_OK, NULL},
    /* The feed is already gone: what we wanted (Java BDK ignores 4xx). */
    {DFB_CALL_DELETE, 400, 400, DFB_ACT_IGNORE, NULL},
    {DFB_CALL_DELETE, 401, 401, DFB_ACT_REAUTH, NULL},
    {DFB_CALL_DELETE, 404, 404, DFB_ACT_IGNORE, NULL},
    {DFB_CALL_DELETE, 429, 429, DFB_ACT_RETRY, NULL},
    {DFB_CALL_DELETE, 500, 599, DFB_ACT_RETRY, NULL},

    {DFB_CALL_READ, NET, DFB_ACT_RETRY, NULL},
    {DFB_CALL_READ, 200, 299, DFB_ACT_OK, NULL},
    {DFB_CALL_READ, 400, 400, DFB_ACT_RECREATE, NULL},
    {DFB_CALL_READ, 401, 401, DFB_ACT_REAUTH, NULL},
    {DFB_CALL_READ, 403, 403, DFB_ACT_FATAL, "forbidden: too many datafeeds, or not entitled"},
    {DFB_CALL_READ, 404, 404, DFB_ACT_FATAL, "not found: wrong agent URL or context?"},
    {DFB_CALL_READ, 429, 429, DFB_ACT_RETRY, NULL},
    {DFB_CALL_READ, 500, 599, DFB_ACT_RETRY, NULL},

    {DFB_CALL_V1_CREATE, NET, DFB_ACT_RETRY, NULL},
    {DFB_CALL_V1_CREATE, 200, 299, DFB_ACT_OK, NULL},
    {DFB_CALL_V1_CREATE, 401, 401, DFB_ACT_REAUTH, NULL},
    {DFB_CALL_V1_CREATE, 429, 429, DFB_ACT_RETRY, NULL},
    /* 503 is also "too many datafeeds" in v1; the BDKs retry it as a 5xx. */
    {DFB_CALL_V1_CREATE, 500, 599, DFB_ACT_RETRY, NULL},

    {DFB_CALL_V1_READ, NET, DFB_ACT_RETRY, NULL},
    {DFB_CALL_V1_READ, 200, 299, DFB_ACT_OK, NULL}, /* 204: the hold ended empty */
    {DFB_CALL_V1_READ, 400, 400, DFB_ACT_RECREATE, NULL},
    {DFB_CALL_V1_READ, 401, 401, DFB_ACT_REAUTH, NULL},
    {DFB_CALL_V1_READ, 403, 403, DFB_ACT_FATAL, "forbidden"},
    {DFB_CALL_V1_READ, 404, 404, DFB_ACT_FATAL, "not found: wrong agent URL or context?"},
    {DFB_CALL_V1_READ, 429, 429, DFB_ACT_RETRY, NULL},
    {DFB_CALL_V1_READ, 500, 599, DFB_ACT_RETRY, NULL},

    {DFB_CALL_DATAHOSE, NET, DFB_ACT_RETRY, NULL},
    {DFB_CALL_DATAHOSE, 200, 299, DFB_ACT_OK, NULL},
    /* No feed to recreate: a 400 is a bad tag/eventTypes/ackId, not recovered. */
    {DFB_CALL_DATAHOSE, 400, 400, DFB_ACT_FATAL,
     "bad request: check datahose.tag and datahose.eventTypes"},
    {DFB_CALL_DATAHOSE, 401, 401, DFB_ACT_REAUTH, NULL},
    {DFB_CALL_DATAHOSE, 403, 403, DFB_ACT_FATAL, "forbidden: not entitled to the datahose"},
    {DFB_CALL_DATAHOSE, 404, 404, DFB_ACT_FATAL, "not found: datahose needs Agent 22.5 or later"},
    {DFB_CALL_DATAHOSE, 429, 429, DFB_ACT_RETRY, NULL},
    {DFB_CALL_DATAHOSE, 500, 599, DFB_ACT_RETRY, NULL},
};

static const char *const s_call_names[DFB_CALL_COUNT] = {
    "authenticate",  "list datafeeds",     "create datafeed",  "delete datafeed",
    "read datafeed", "create v1 datafeed", "read v1 datafeed", "read datahose",
};

const char *
dfb_policy_call_name(dfb_call_t call)
{
    return call >= 0 && call < DFB_CALL_COUNT ? s_call_names[call] : "?";
}

const char *
dfb_policy_action_name(dfb_action_t act)
{
    switch (act) {
    case DFB_ACT_OK:
        return "ok";
    case DFB_ACT_RETRY:
        return "retry";
    case DFB_ACT_REAUTH:
        return "re-authenticate, retry";
    case DFB_ACT_RECREATE:
        return "new feed, retry";
    case DFB_ACT_IGNORE:
        return "ignore";
    case DFB_ACT_FATAL:
        return "fatal";
    case DFB_ACT_STOPPED:
        return "stopped";
    }
    return "?";
}

const dfb_policy_row_t *
dfb_policy_row(dfb_call_t call, int status)
{
    for (size_t i = 0; i < sizeof s_rows / sizeof s_rows[0]; i++)
        if (s_rows[i].call == call && status >= s_rows[i].lo && status <= s_rows[i].hi)
            return &s_rows[i];
    return NULL;
}

/*  What each transport error class means before any row is looked at. A
    class missing here is UNSET, which dfb_policy_action treats as fatal and
    the self-test reports. */
typedef enum { T_UNSET = 0, T_STATUS, T_NET, T_STOPPED, T_FATAL } transport_kind_t;
static const transport_kind_t s_transport[DFB_HTTP_ERR_COUNT] = {
    [DFB_HTTP_OK] = T_STATUS, /* an HTTP status: looked up as itself */
    [DFB_HTTP_ECONNECT] = T_NET,
    [DFB_HTTP_ETIMEOUT] = T_NET,
    [DFB_HTTP_ERESET] = T_NET,
    [DFB_HTTP_ETRUNCATED] = T_NET,
    [DFB_HTTP_ETOOBIG] = T_NET,
    [DFB_HTTP_ETLS] = T_NET,
    [DFB_HTTP_ESTOPPED] = T_STOPPED,
    /* a certificate that does not verify will not start to */
    [DFB_HTTP_ECERT] = T_FATAL,
    /* a proxy or load balancer glitching: the next call may get a real answer */
    [DFB_HTTP_EBADREPLY] = T_NET,
    /* bad URL or out of memory before sending: retrying cannot help */
    [DFB_HTTP_EOTHER] = T_FATAL,
};

dfb_action_t
dfb_policy_action(dfb_call_t call, dfb_http_err_t err, int status)
{
    transport_kind_t kind = err >= 0 && err < DFB_HTTP_ERR_COUNT ? s_transport[err] : T_UNSET;
    const dfb_policy_row_t *row = NULL;
    switch (kind) {
    case T_STOPPED:
        return DFB_ACT_STOPPED;
    case T_UNSET:
    case T_FATAL:
        return DFB_ACT_FATAL;
    case T_NET:
        row = dfb_policy_row(call, 0);
        break;
    case T_STATUS:
        row = status == 0 ? NULL : dfb_policy_row(call, status); /* 0 is not an HTTP status */
        break;
    }
    return row ? row->act : DFB_ACT_FATAL;
}

/* ---- self-test ------------------------------------------------------------ */

int
dfb_policy_test(int verbose)
{
    int fails = 0;
    enum {
        R = DFB_ACT_RETRY,
        A = DFB_ACT_REAUTH,
        C = DFB_ACT_RECREATE,
        I = DFB_ACT_IGNORE,
        F = DFB_ACT_FATAL,
        K = DFB_ACT_OK,
        S = DFB_ACT_STOPPED
    };
    /* Expected action per call (columns) for each response (rows): the
       reference's §5 table, written out independently of s_rows. */
    static const struct {
        dfb_http_err_t err;
        int status;
        int want[DFB_CALL_COUNT]; /* auth list create delete read v1c v1r hose */
    } cases[] = {
        {DFB_HTTP_OK, 200, {K, K, K, K, K, K, K, K}},
        {DFB_HTTP_OK, 201, {K, K, K, K, K, K, K, K}},
        {DFB_HTTP_OK, 204, {K, K, K, K, K, K, K, K}},
        {DFB_HTTP_OK, 400, {F, F, R, I, C, F, C, F}},
        {DFB_HTTP_OK, 401, {F, A, A, A, A, A, A, A}},
        {DFB_HTTP_OK, 403, {F, F, F, F, F, F, F, F}},
        {DFB_HTTP_OK, 404, {F, F, F, I, F, F, F, F}},
        {DFB_HTTP_OK, 405, {F, F, F, F, F, F, F, F}},
        {DFB_HTTP_OK, 409, {F, F, F, F, F, F, F, F}},
        {DFB_HTTP_OK, 429, {R, R, R, R, R, R, R, R}},
        {DFB_HTTP_OK, 500, {R, R, R, R, R, R, R, R}},
        {DFB_HTTP_OK, 502, {R, R, R, R, R, R, R, R}},
        {DFB_HTTP_OK, 503, {R, R, R, R, R, R, R, R}},
        {DFB_HTTP_OK, 504, {R, R, R, R, R, R, R, R}},
        {DFB_HTTP_OK, 599, {R, R, R, R, R, R, R, R}},
        {DFB_HTTP_OK, 301, {F, F, F, F, F, F, F, F}},
        {DFB_HTTP_OK, 100, {F, F, F, F, F, F, F, F}},
        {DFB_HTTP_OK, 0, {F, F, F, F, F, F, F, F}},
        {DFB_HTTP_ECONNECT, 0, {R, R, R, R, R, R, R, R}},
        {DFB_HTTP_ETIMEOUT, 0, {R, R, R, R, R, R, R, R}},
        {DFB_HTTP_ERESET, 0, {R, R, R, R, R, R, R, R}},
        {DFB_HTTP_ETRUNCATED, 0, {R, R, R, R, R, R, R, R}},
        {DFB_HTTP_ETOOBIG, 0, {R, R, R, R, R, R, R, R}},
        {DFB_HTTP_ETLS, 0, {R, R, R, R, R, R, R, R}},
        {DFB_HTTP_ECERT, 0, {F, F, F, F, F, F, F, F}},
        {DFB_HTTP_EBADREPLY, 0, {R, R, R, R, R, R, R, R}},
        {DFB_HTTP_ESTOPPED, 0, {S, S, S, S, S, S, S, S}},
        {DFB_HTTP_EOTHER, 0, {F, F, F, F, F, F, F, F}},
    };
    int checked = 0;
    for (int e = 0; e < DFB_HTTP_ERR_COUNT; e++) {
        if (s_transport[e] == T_UNSET) {
            printf("FAIL transport class %s has no entry in s_transport\n",
                   dfb_http_strerror((dfb_http_err_t)e));
            fails++;
        }
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int call = 0; call < DFB_CALL_COUNT; call++) {
            dfb_action_t got = dfb_policy_action((dfb_call_t)call, cases[i].err, cases[i].status);
            checked++;
            if ((int)got != cases[i].want[call]) {
                printf("FAIL %s, %s %d: %s, want %s\n", dfb_policy_call_name((dfb_call_t)call),
                       dfb_http_strerror(cases[i].err), cases[i].status,
                       dfb_policy_action_name(got),
                       dfb_policy_action_name((dfb_action_t)cases[i].want[call]));
                fails++;
            }
        }
    }
    /* The 20-feed message is on the create 403 row. */
    const dfb_policy_row_t *row = dfb_policy_row(DFB_CALL_CREATE, 403);
    if (!row || !row->why || !strstr(row->why, "20 datafeeds already exist")) {
        printf("FAIL create 403 row has no 20-feed message\n");
        fails++;
    }
    if (verbose)
        printf("  %d (call, response) pairs checked\n", checked);
    return fails;
}
