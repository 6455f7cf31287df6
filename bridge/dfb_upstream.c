/*  dfb_upstream: per-call request counters and latency histograms for
    /metrics (see dfb_upstream.h). */
#include "dfb_upstream.h"

#include <stdio.h>
#include <time.h>

const double dfb_up_bounds_s[DFB_UP_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,  2.5,
                                                5,     10,   20,    30,   35,  45,   60,  120};

const double dfb_lag_bounds_s[DFB_LAG_BUCKETS] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                  2.5,  5,     10,   30,  60,   300, 3600};

static dfb_upstream_stats_t s_stats;

static const char *const s_names[DFB_UP_COUNT] = {
    [DFB_UP_LOGIN] = "login",
    [DFB_UP_KEYMANAGER] = "keymanager_auth",
    [DFB_UP_AGENT_INFO] = "agent_info",
    [DFB_UP_SESSION_INFO] = "session_info",
    [DFB_UP_LIST_FEEDS] = "list_feeds",
    [DFB_UP_CREATE_FEED] = "create_feed",
    [DFB_UP_DELETE_FEED] = "delete_feed",
    [DFB_UP_READ_FEED] = "read_feed",
    [DFB_UP_CREATE_FEED_V1] = "create_feed_v1",
    [DFB_UP_READ_FEED_V1] = "read_feed_v1",
    [DFB_UP_DATAHOSE_READ] = "datahose_read",
    [DFB_UP_MSG_CREATE] = "msg_create",
    [DFB_UP_MSG_UPDATE] = "msg_update",
    [DFB_UP_MSG_SUPPRESS] = "msg_suppress",
    [DFB_UP_MSG_GET] = "msg_get",
    [DFB_UP_MSG_LIST] = "msg_list",
    [DFB_UP_IM_CREATE] = "im_create",
    [DFB_UP_ROOM_ADD] = "room_add",
    [DFB_UP_ROOM_REMOVE] = "room_remove",
    [DFB_UP_STREAM_INFO] = "stream_info",
    [DFB_UP_USERS] = "users",
};

/* The transport classes' labels, by dfb_http_err_t. */
static const char *const s_errs[DFB_HTTP_ERR_COUNT] = {
    [DFB_HTTP_OK] = "other", /* unused: a status out of 100..599 goes to EOTHER */
    [DFB_HTTP_ECONNECT] = "connect",
    [DFB_HTTP_ETIMEOUT] = "timeout",
    [DFB_HTTP_ERESET] = "reset",
    [DFB_HTTP_ETRUNCATED] = "truncated",
    [DFB_HTTP_ETOOBIG] = "too_big",
    [DFB_HTTP_ETLS] = "tls",
    [DFB_HTTP_ESTOPPED] = "stopped",
    [DFB_HTTP_ECERT] = "cert",
    [DFB_HTTP_EBADREPLY] = "bad_reply",
    [DFB_HTTP_EOTHER] = "other",
};

dfb_upstream_stats_t *
dfb_upstream(void)
{
    return &s_stats;
}

int64_t
dfb_upstream_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
dfb_hist_observe(_Atomic uint64_t *buckets, const double *bounds, size_t n, double v)
{
    size_t i = 0;
    while (i < n && v > bounds[i])
        i++;
    buckets[i]++;
}

void
dfb_upstream_record(dfb_up_call_t call, dfb_http_err_t err, int status, int64_t elapsed_us)
{
    if ((unsigned)call >= DFB_UP_COUNT)
        return;
    size_t code;
    if (err == DFB_HTTP_OK && status >= 100 && status <= 599)
        code = (size_t)(status - 100);
    else if (err > DFB_HTTP_OK && err < DFB_HTTP_ERR_COUNT)
        code = DFB_UP_STATUS_CODES + (size_t)err;
    else
        code = DFB_UP_STATUS_CODES + DFB_HTTP_EOTHER;
    if (elapsed_us < 0)
        elapsed_us = 0;
    s_stats.requests[call][code]++;
    s_stats.sum_us[call] += (uint64_t)elapsed_us;
    dfb_hist_observe(s_stats.buckets[call], dfb_up_bounds_s, DFB_UP_BUCKETS,
                     (double)elapsed_us / 1e6);
}

void
dfb_upstream_retry(dfb_up_call_t call)
{
    if ((unsigned)call < DFB_UP_COUNT)
        s_stats.retries[call]++;
}

dfb_up_call_t
dfb_upstream_of(dfb_call_t call)
{
    switch (call) {
    case DFB_CALL_LIST:
        return DFB_UP_LIST_FEEDS;
    case DFB_CALL_CREATE:
        return DFB_UP_CREATE_FEED;
    case DFB_CALL_DELETE:
        return DFB_UP_DELETE_FEED;
    case DFB_CALL_READ:
        return DFB_UP_READ_FEED;
    case DFB_CALL_V1_CREATE:
        return DFB_UP_CREATE_FEED_V1;
    case DFB_CALL_V1_READ:
        return DFB_UP_READ_FEED_V1;
    case DFB_CALL_DATAHOSE:
        return DFB_UP_DATAHOSE_READ;
    default:
        return DFB_UP_LOGIN;
    }
}

const char *
dfb_upstream_call_name(dfb_up_call_t call)
{
    return (unsigned)call < DFB_UP_COUNT ? s_names[call] : "other";
}

const char *
dfb_upstream_code_name(size_t code, char *buf, size_t cap)
{
    if (code < DFB_UP_STATUS_CODES)
        snprintf(buf, cap, "%zu", code + 100);
    else if (code < DFB_UP_CODES)
        snprintf(buf, cap, "%s", s_errs[code - DFB_UP_STATUS_CODES]);
    else
        snprintf(buf, cap, "other");
    return buf;
}
