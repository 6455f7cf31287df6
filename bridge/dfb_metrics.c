/*  dfb_metrics: /metrics, /healthz and /readyz over libmicrohttpd (see
    dfb_metrics.h). The exposition is built from tables: the named families
    of the issue, then one family per row of the info table that no named
    family already shows, so a counter added to dfb_info appears here too
    (the self-test fails until the row is mapped). */
#include "dfb_metrics.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "dfb_clock.h"
#include "dfb_log.h"

#ifndef DF_VERSION
#define DF_VERSION "unknown"
#endif

struct dfb_metrics {
    struct MHD_Daemon *d;
    dfb_info_sources_t src;
    int64_t max_read_age_ms;
    int64_t start_ms; /* monotonic: the start-up grace of /healthz */
    int port;
};

/* ---- the info table's rows as metrics -------------------------------------- */

/*  For each info row: its metric name, or NULL when a named family below
    shows the same value (the comment says which). Counters end in _total;
    ms rows are exported in seconds (scale). */
typedef struct {
    const char *row;
    const char *metric;
    int ms_to_s;
} row_map_t;

static const row_map_t s_rows[] = {
    {"reads", "dfbridge_reads_total", 0},
    {"events", NULL, 0},  /* dfbridge_events_received_total */
    {"retries", NULL, 0}, /* sum of dfbridge_retries_total over the datafeed calls */
    {"reauths", NULL, 0}, /* dfbridge_reauthentications_total */
    {"recreates", "dfbridge_feed_recreates_total", 0},
    {"feeds_created", NULL, 0}, /* dfbridge_feeds_created_total */
    {"unacked_batches", "dfbridge_unacked_batches_total", 0},
    {"malformed", "dfbridge_malformed_bodies_total", 0},
    {"replaced", "dfbridge_utf8_replacements_total", 0},
    {"batches_over_limit", "dfbridge_batches_over_limit_total", 0},
    {"last_read_age_ms", "dfbridge_last_read_age_seconds", 1},
    {"published", NULL, 0}, /* sum of dfbridge_events_published_total without _hb */
    {"encode_errors", "dfbridge_encode_errors_total", 0},
    {"send_errors", "dfbridge_send_errors_total", 0},
    {"pipe_errors", "dfbridge_pipe_errors_total", 0},
    {"pipe_drops", "dfbridge_pipe_drops_total", 0},
    {"topics", "dfbridge_topics", 0},
    {"topics_overflow", "dfbridge_topics_overflow_total", 0},
    {"topics_too_long", "dfbridge_topics_too_long_total", 0},
    {"events_too_large", "dfbridge_events_too_large_total", 0},
    {"deduped", NULL, 0},    /* dfbridge_dedupe_dropped_total */
    {"heartbeats", NULL, 0}, /* dfbridge_events_published_total{topic="_hb"} */
    {"journal_errors", "dfbridge_journal_errors_total", 0},
    {"journal_failing", "dfbridge_journal_failing", 0},
    {"journaled", "dfbridge_journal_appended_total", 0},
    {"journal_fsyncs", "dfbridge_journal_fsyncs_total", 0},
    {"journal_segments", "dfbridge_journal_segments", 0},
    {"journal_bytes", NULL, 0}, /* dfbridge_journal_bytes */
    {"journal_segments_deleted", "dfbridge_journal_segments_deleted_total", 0},
    {"journal_truncated_bytes", "dfbridge_journal_truncated_bytes_total", 0},
    {"journal_read_errors", "dfbridge_journal_read_errors_total", 0},
    {"journal_oldest_gseq", NULL, 0}, /* dfbridge_journal_oldest_gseq */
    {"journal_head_gseq", "dfbridge_journal_head_gseq", 0},
    {"replay_requests", "dfbridge_replay_requests_received_total", 0},
    {"replay_messages", "dfbridge_replay_messages_total", 0},
    {"replay_errors", NULL, 0},    /* dfbridge_replay_requests_total{result="error"} */
    {"replay_abandoned", NULL, 0}, /* dfbridge_replay_requests_total{result="abandoned"} */
    {"info_requests", NULL, 0},    /* dfbridge_replay_requests_total{result="info"} */
    {"replay_bytes_held", "dfbridge_replay_held_bytes", 0},
    {"replay_paused", "dfbridge_replay_paused_total", 0},
    {"replay_scan_cut", "dfbridge_replay_scan_cut_total", 0},
    {"replay_skipped", "dfbridge_replay_skipped_total", 0},
    {"replay_segments_skipped", "dfbridge_replay_segments_skipped_total", 0},
    {"connections", "dfbridge_connections", 0},
    {"connections_refused", "dfbridge_connections_refused_total", 0},
    {"dead_threads", "dfbridge_dead_threads_total", 0},
    {"auth_allowed", "dfbridge_curve_allowed_total", 0},
    {"auth_denied", "dfbridge_curve_denied_total", 0},
    {"auth_clients", "dfbridge_curve_clients", 0},
    {"auth_bad_files", "dfbridge_curve_bad_files", 0},
    {"auth_reloads", "dfbridge_curve_reloads_total", 0},
    {"auth_rebinds", "dfbridge_curve_rebinds_total", 0},
    {"commands_received", "dfbridge_commands_received_total", 0},
    {"commands_ok", NULL, 0}, /* dfbridge_commands_total{result="ok"} */
    {"commands_errors_bad_request", NULL, 0}, /* dfbridge_commands_total{result="<code>"} */
    {"commands_errors_not_allowed", NULL, 0},
    {"commands_errors_rejected", NULL, 0},
    {"commands_errors_unavailable", NULL, 0},
    {"commands_errors_unknown_outcome", NULL, 0},
    {"commands_errors_busy", NULL, 0},
    {"commands_replayed", "dfbridge_commands_replayed_total", 0},
    {"commands_found", "dfbridge_commands_found_total", 0},
    {"commands_denied", "dfbridge_commands_denied_total", 0},
    {"commands_queued", "dfbridge_commands_queued", 0},
    {"commands_inflight", "dfbridge_commands_inflight", 0},
    {"commands_dropped_replies", "dfbridge_commands_dropped_replies_total", 0},
    {"commands_log_entries", "dfbridge_commands_log_entries", 0},
    {"commands_log_bytes", "dfbridge_commands_log_bytes", 0},
    {"commands_log_compactions", "dfbridge_commands_log_compactions_total", 0},
    {"commands_log_write_errors", "dfbridge_commands_log_write_errors_total", 0},
};
#define NROWS (sizeof s_rows / sizeof s_rows[0])

static const row_map_t *
row_map(const char *row)
{
    for (size_t i = 0; i < NROWS; i++)
        if (strcmp(s_rows[i].row, row) == 0)
            return &s_rows[i];
    return NULL;
}

/* ---- the text format ---------------------------------------------------- */

static int put(dfb_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
put(dfb_buf_t *b, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    return dfb_buf_put(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/*  A label value escaped per the text format (\\, \", \n) into out. */
static const char *
esc_label(const char *v, char *out, size_t cap)
{
    size_t o = 0;
    for (; *v && o + 3 < cap; v++) {
        if (*v == '\\' || *v == '"') {
            out[o++] = '\\';
            out[o++] = *v;
        } else if (*v == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else
            out[o++] = *v;
    }
    out[o] = '\0';
    return out;
}

/*  HELP (its text escaped: \\ and \n) and TYPE of one family. */
static int
family(dfb_buf_t *b, const char *name, const char *type, const char *help)
{
    char h[512];
    size_t o = 0;
    for (; *help && o + 3 < sizeof h; help++) {
        if (*help == '\\' || *help == '\n') {
            h[o++] = '\\';
            h[o++] = *help == '\n' ? 'n' : '\\';
        } else
            h[o++] = *help;
    }
    h[o] = '\0';
    return put(b, "# HELP %s %s\n# TYPE %s %s\n", name, h, name, type);
}

/*  A histogram family's samples: buckets (n + 1 cells, not cumulative),
    labels "" or `call="x",` (with the trailing comma). */
static int
histogram(dfb_buf_t *b, const char *name, const char *labels, const _Atomic uint64_t *buckets,
          const double *bounds, size_t n, double sum)
{
    uint64_t cum = 0;
    int rc = 0;
    for (size_t i = 0; i <= n; i++) {
        cum += buckets[i];
        if (i < n)
            rc |= put(b, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, bounds[i],
                      (unsigned long long)cum);
        else
            rc |= put(b, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cum);
    }
    size_t ll = strlen(labels);
    char plain[128];
    snprintf(plain, sizeof plain, "%.*s", ll ? (int)ll - 1 : 0, labels); /* no trailing comma */
    if (ll)
        rc |= put(b, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, plain, sum, name, plain,
                  (unsigned long long)cum);
    else
        rc |= put(b, "%s_sum %.6f\n%s_count %llu\n", name, sum, name, (unsigned long long)cum);
    return rc;
}

static uint64_t
value_of(const uint64_t *values, const char *row)
{
    for (size_t i = 0; i < dfb_info_nrows; i++)
        if (strcmp(dfb_info_rows[i].name, row) == 0)
            return values[i];
    return 0;
}

static const char *
exit_reason(uint64_t code)
{
    static const char *const why[] = {"stopped by a signal",    "fatal upstream status",
                                      "bad configuration",      "retries exhausted",
                                      "authentication refused", "internal error"};
    return code < sizeof why / sizeof why[0] ? why[code] : "unknown";
}

int
dfb_metrics_healthy(const dfb_info_sources_t *src, int64_t max_read_age_ms, int64_t start_mono_ms,
                    char *why, size_t cap)
{
    const dfb_loop_stats_t *l = src->loop;
    uint64_t state = l ? l->state : 0;
    long long last = l ? l->last_read_ms : 0;
    int64_t now = dfb_mono_ms();
    double limit = (double)max_read_age_ms / 1000.0;
    if (state == 2) {
        uint64_t code = l->exit_code;
        snprintf(why, cap, "loop stopped: %s (exit status %llu)", exit_reason(code),
                 (unsigned long long)code);
        return 0;
    }
    if (last <= 0) {
        double since = (double)(now - start_mono_ms) / 1000.0;
        if (now - start_mono_ms <= max_read_age_ms) {
            snprintf(why, cap,
                     "starting: no successful read yet (%.1f s since start, limit %.1f s)", since,
                     limit);
            return 1;
        }
        snprintf(why, cap, "no successful read since the start %.1f s ago (limit %.1f s)", since,
                 limit);
        return 0;
    }
    double age = (double)(now - last) / 1000.0;
    if (now - last > max_read_age_ms) {
        snprintf(why, cap, "no successful read for %.1f s (limit %.1f s)", age, limit);
        return 0;
    }
    snprintf(why, cap, "ok: last successful read %.1f s ago (limit %.1f s)", age, limit);
    return 1;
}

int
dfb_metrics_ready(const dfb_info_sources_t *src, char *why, size_t cap)
{
    const dfb_loop_stats_t *l = src->loop;
    uint64_t state = l ? l->state : 0;
    if (state == 2) {
        snprintf(why, cap, "not ready: loop stopped: %s", exit_reason(l->exit_code));
        return 0;
    }
    if (state == 0 || !l->ready) {
        snprintf(why, cap, "not ready: authenticating or obtaining a feed");
        return 0;
    }
    snprintf(why, cap, "ready: authenticated, feed obtained");
    return 1;
}

int
dfb_metrics_render(const dfb_info_sources_t *src, int64_t max_read_age_ms, int64_t start_mono_ms,
                   dfb_buf_t *b)
{
    int64_t mono = dfb_mono_ms(), wall = dfb_wall_ms();
    uint64_t values[128];
    if (dfb_info_nrows > sizeof values / sizeof values[0])
        return -1;
    dfb_info_values(src, mono, values);
    const dfb_loop_stats_t *l = src->loop;
    const dfb_pub_counters_t *c = src->pub;
    const dfb_upstream_stats_t *u = dfb_upstream();
    char e[128], code[16];
    int rc = 0;

    rc |= family(b, "dfbridge_build_info", "gauge", "the bridge's version (value 1)");
    rc |= put(b, "dfbridge_build_info{version=\"%s\"} 1\n", esc_label(DF_VERSION, e, sizeof e));
    char why[256];
    rc |= family(b, "dfbridge_healthy", "gauge", "1 while /healthz answers 200");
    rc |= put(b, "dfbridge_healthy %d\n",
              dfb_metrics_healthy(src, max_read_age_ms, start_mono_ms, why, sizeof why));
    rc |= family(b, "dfbridge_ready", "gauge", "1 while /readyz answers 200");
    rc |= put(b, "dfbridge_ready %d\n", dfb_metrics_ready(src, why, sizeof why));

    rc |= family(b, "dfbridge_events_received_total", "counter",
                 "events received from the pod (datafeed or datahose reads)");
    rc |= put(b, "dfbridge_events_received_total %llu\n",
              (unsigned long long)value_of(values, "events"));
    rc |= family(b, "dfbridge_events_published_total", "counter",
                 "messages published on the PUB socket, by topic: the 17 event types, unknown "
                 "(any other topic) and _hb (heartbeats)");
    for (size_t i = 0; i <= DFB_EVENT_TYPES; i++)
        rc |= put(b, "dfbridge_events_published_total{topic=\"%s\"} %llu\n",
                  i < DFB_EVENT_TYPES ? dfb_event_types[i] : "unknown",
                  (unsigned long long)(c ? c->published_by_type[i] : 0));
    rc |= put(b, "dfbridge_events_published_total{topic=\"_hb\"} %llu\n",
              (unsigned long long)value_of(values, "heartbeats"));
    rc |= family(b, "dfbridge_dedupe_dropped_total", "counter",
                 "redelivered events not published again (same id and type)");
    rc |= put(b, "dfbridge_dedupe_dropped_total %llu\n",
              (unsigned long long)value_of(values, "deduped"));

    rc |= family(b, "dfbridge_upstream_requests_total", "counter",
                 "HTTP requests to the pod, agent and key manager, by call and code (HTTP status "
                 "or transport error class)");
    for (size_t k = 0; k < DFB_UP_COUNT; k++)
        for (size_t j = 0; j < DFB_UP_CODES; j++) {
            uint64_t n = u->requests[k][j];
            if (n)
                rc |= put(b, "dfbridge_upstream_requests_total{call=\"%s\",code=\"%s\"} %llu\n",
                          dfb_upstream_call_name((dfb_up_call_t)k),
                          dfb_upstream_code_name(j, code, sizeof code), (unsigned long long)n);
        }
    rc |= family(b, "dfbridge_upstream_request_duration_seconds", "histogram",
                 "duration of the HTTP requests to the pod, agent and key manager, by call");
    for (size_t k = 0; k < DFB_UP_COUNT; k++) {
        uint64_t any = 0;
        for (size_t i = 0; i <= DFB_UP_BUCKETS; i++)
            any += u->buckets[k][i];
        if (!any)
            continue;
        char labels[64];
        snprintf(labels, sizeof labels, "call=\"%s\",", dfb_upstream_call_name((dfb_up_call_t)k));
        rc |= histogram(b, "dfbridge_upstream_request_duration_seconds", labels, u->buckets[k],
                        dfb_up_bounds_s, DFB_UP_BUCKETS, (double)u->sum_us[k] / 1e6);
    }
    rc |= family(b, "dfbridge_retries_total", "counter",
                 "failed upstream calls followed by a backoff, by call");
    for (size_t k = 0; k < DFB_UP_COUNT; k++)
        rc |= put(b, "dfbridge_retries_total{call=\"%s\"} %llu\n",
                  dfb_upstream_call_name((dfb_up_call_t)k), (unsigned long long)u->retries[k]);
    rc |=
        family(b, "dfbridge_reauthentications_total", "counter", "re-authentications after a 401");
    rc |= put(b, "dfbridge_reauthentications_total %llu\n",
              (unsigned long long)value_of(values, "reauths"));
    rc |= family(b, "dfbridge_feeds_created_total", "counter", "datafeeds this process created");
    rc |= put(b, "dfbridge_feeds_created_total %llu\n",
              (unsigned long long)value_of(values, "feeds_created"));
    rc |= family(b, "dfbridge_last_read_timestamp_seconds", "gauge",
                 "unix time of the last successful datafeed read (0: none yet)");
    long long last = l ? l->last_read_ms : 0;
    rc |= put(b, "dfbridge_last_read_timestamp_seconds %.3f\n",
              last > 0 ? (double)(wall - (mono - last)) / 1000.0 : 0.0);
    rc |= family(b, "dfbridge_publish_lag_seconds", "histogram",
                 "Symphony event timestamp to publish (events with a timestamp)");
    if (c)
        rc |= histogram(b, "dfbridge_publish_lag_seconds", "", c->lag_buckets, dfb_lag_bounds_s,
                        DFB_LAG_BUCKETS, (double)c->lag_sum_ms / 1000.0);
    rc |= family(b, "dfbridge_journal_bytes", "gauge", "bytes in the journal segments");
    rc |= put(b, "dfbridge_journal_bytes %llu\n",
              (unsigned long long)value_of(values, "journal_bytes"));
    rc |= family(b, "dfbridge_journal_oldest_gseq", "gauge",
                 "oldest gseq the journal retains (replay reaches back to it)");
    rc |= put(b, "dfbridge_journal_oldest_gseq %llu\n",
              (unsigned long long)value_of(values, "journal_oldest_gseq"));
    rc |= family(b, "dfbridge_replay_requests_total", "counter",
                 "replay requests finished, by result: ok, error (status error), abandoned "
                 "(client gone or stalled), info (info requests)");
    rc |= put(b,
              "dfbridge_replay_requests_total{result=\"ok\"} %llu\n"
              "dfbridge_replay_requests_total{result=\"error\"} %llu\n"
              "dfbridge_replay_requests_total{result=\"abandoned\"} %llu\n"
              "dfbridge_replay_requests_total{result=\"info\"} %llu\n",
              (unsigned long long)(c ? c->replay_ok : 0),
              (unsigned long long)value_of(values, "replay_errors"),
              (unsigned long long)value_of(values, "replay_abandoned"),
              (unsigned long long)value_of(values, "info_requests"));
    rc |= family(b, "dfbridge_subscribers", "gauge",
                 "connections on the PUB socket now (socket monitor; needs bridge.stateDir)");
    rc |= put(b, "dfbridge_subscribers %llu\n", (unsigned long long)(c ? c->subscribers : 0));

    rc |= family(b, "dfbridge_commands_total", "counter",
                 "command replies, by result: ok or the error code (bad_request, not_allowed, "
                 "rejected, unavailable, unknown_outcome, busy)");
    {
        static const char *const results[] = {"ok",          "bad_request",     "not_allowed",
                                               "rejected",    "unavailable",     "unknown_outcome",
                                               "busy"};
        static const char *const rows[] = {"commands_ok",
                                           "commands_errors_bad_request",
                                           "commands_errors_not_allowed",
                                           "commands_errors_rejected",
                                           "commands_errors_unavailable",
                                           "commands_errors_unknown_outcome",
                                           "commands_errors_busy"};
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
            rc |= put(b, "dfbridge_commands_total{result=\"%s\"} %llu\n", results[i],
                      (unsigned long long)value_of(values, rows[i]));
    }
    rc |= family(b, "dfbridge_commands_seconds", "histogram",
                 "command requests from receipt to reply (bridge.commands)");
    if (c)
        rc |= histogram(b, "dfbridge_commands_seconds", "", c->commands_seconds, dfb_up_bounds_s,
                        DFB_UP_BUCKETS, (double)c->commands_seconds_sum_us / 1e6);

    /* The rest of the info table. */
    for (size_t i = 0; i < dfb_info_nrows; i++) {
        const row_map_t *m = row_map(dfb_info_rows[i].name);
        if (!m || !m->metric)
            continue;
        /* the one ms row: its sentence says milliseconds, the metric is in seconds */
        rc |= family(b, m->metric, dfb_info_rows[i].kind == DFB_INFO_COUNTER ? "counter" : "gauge",
                     m->ms_to_s ? "seconds since the last successful read (0: none yet)"
                                : dfb_info_rows[i].help);
        if (m->ms_to_s)
            rc |= put(b, "%s %.3f\n", m->metric, (double)values[i] / 1000.0);
        else
            rc |= put(b, "%s %llu\n", m->metric, (unsigned long long)values[i]);
    }
    return rc ? -1 : 0;
}

/* ---- the address ---------------------------------------------------------- */

int
dfb_metrics_parse_address(const char *s, char *host, size_t hostlen, int *port)
{
    char h[64];
    const char *colon;
    if (!s || !*s)
        return -1;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof h)
            return -1;
        memcpy(h, s + 1, (size_t)(close - s - 1));
        h[close - s - 1] = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, h, &a6) != 1)
            return -1;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof h)
            return -1;
        memcpy(h, s, (size_t)(colon - s));
        h[colon - s] = '\0';
        if (!*h)
            snprintf(h, sizeof h, "0.0.0.0");
        struct in_addr a4;
        if (inet_pton(AF_INET, h, &a4) != 1)
            return -1;
    }
    const char *p = colon + 1;
    if (!*p || strlen(p) > 5 || strspn(p, "0123456789") != strlen(p))
        return -1;
    int v = atoi(p);
    if (v > 65535)
        return -1;
    if (host) {
        if (strlen(h) >= hostlen)
            return -1;
        snprintf(host, hostlen, "%s", h);
    }
    if (port)
        *port = v;
    return 0;
}

/* ---- the server ---------------------------------------------------------- */

static enum MHD_Result
reply(struct MHD_Connection *conn, unsigned status, const char *type, const void *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    (void)con_cls;
    dfb_metrics_t *self = cls;
    static const char text[] = "text/plain; charset=utf-8";
    *upload_data_size = 0; /* a body is never read */
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char m[] = "method not allowed: GET or HEAD\n";
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, text, m, sizeof m - 1);
    }
    char why[300];
    if (strcmp(url, "/metrics") == 0) {
        dfb_buf_t b;
        dfb_buf_init(&b);
        if (dfb_metrics_render(&self->src, self->max_read_age_ms, self->start_ms, &b) != 0) {
            dfb_buf_free(&b);
            static const char m[] = "out of memory\n";
            return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, text, m, sizeof m - 1);
        }
        enum MHD_Result ret =
            reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
        dfb_buf_free(&b);
        return ret;
    }
    int ok;
    if (strcmp(url, "/healthz") == 0)
        ok = dfb_metrics_healthy(&self->src, self->max_read_age_ms, self->start_ms, why,
                                 sizeof why - 1);
    else if (strcmp(url, "/readyz") == 0)
        ok = dfb_metrics_ready(&self->src, why, sizeof why - 1);
    else {
        static const char m[] = "not found: /metrics, /healthz or /readyz\n";
        return reply(conn, MHD_HTTP_NOT_FOUND, text, m, sizeof m - 1);
    }
    strcat(why, "\n");
    return reply(conn, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, text, why, strlen(why));
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    dfb_warn("metrics: %s", line);
}

dfb_metrics_t *
dfb_metrics_new(const dfb_metrics_opts_t *o, char *err, size_t errlen)
{
    char host[64];
    int port = 0;
    if (dfb_metrics_parse_address(o->address, host, sizeof host, &port) != 0) {
        snprintf(err, errlen, "config: bridge.metrics: not an address: '%s'", o->address);
        return NULL;
    }
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    const struct sockaddr *sa;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    int loopback;
    if (strchr(host, ':')) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, host, &a6.sin6_addr);
        sa = (const struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
        loopback = IN6_IS_ADDR_LOOPBACK(&a6.sin6_addr);
    } else {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, host, &a4.sin_addr);
        sa = (const struct sockaddr *)&a4;
        loopback = (ntohl(a4.sin_addr.s_addr) >> 24) == 127;
    }
    dfb_metrics_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "metrics: out of memory");
        return NULL;
    }
    self->src = o->src;
    self->max_read_age_ms = o->max_read_age_ms;
    self->start_ms = dfb_mono_ms();
    /* A few scrapers at most: a small connection cap and a short timeout
       keep a slow or hostile client from holding the thread's sockets. */
    self->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, self,
                               MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, /* first */
                               MHD_OPTION_SOCK_ADDR, sa, MHD_OPTION_CONNECTION_LIMIT, 16u,
                               MHD_OPTION_PER_IP_CONNECTION_LIMIT, 8u,
                               MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!self->d) {
        snprintf(err, errlen,
                 "bridge.metrics: cannot listen on %s (in use, or not an address "
                 "of this host)",
                 o->address);
        free(self);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(self->d, MHD_DAEMON_INFO_BIND_PORT);
    self->port = di ? di->port : port;
    dfb_info("metrics: /metrics, /healthz and /readyz on http://%s%s%s:%d",
             strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", self->port);
    if (!loopback)
        dfb_warn("metrics: %s is not a loopback address: /metrics, /healthz and /readyz are plain "
                 "HTTP without authentication, readable by anyone who reaches the port (counters "
                 "only, no secrets)",
                 o->address);
    return self;
}

void
dfb_metrics_destroy(dfb_metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_metrics_t *self = *self_p;
    if (self->d)
        MHD_stop_daemon(self->d);
    free(self);
    *self_p = NULL;
}

int
dfb_metrics_port(const dfb_metrics_t *self)
{
    return self ? self->port : 0;
}

/* ---- self-test ------------------------------------------------------------ */

static int
name_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_' || (i && s[i] >= '0' && s[i] <= '9')))
            return 0;
    return n > 9 && strncmp(s, "dfbridge_", 9) == 0;
}

int
dfb_metrics_test(int verbose)
{
    int fails = 0;
    /* Every row of the info table is mapped (a new counter needs a line here). */
    for (size_t i = 0; i < dfb_info_nrows; i++)
        if (!row_map(dfb_info_rows[i].name)) {
            printf("FAIL info row %s has no metric (s_rows in dfb_metrics.c)\n",
                   dfb_info_rows[i].name);
            fails++;
        }
    /* Escaping. */
    char e[64];
    if (strcmp(esc_label("a\"b\\c\nd", e, sizeof e), "a\\\"b\\\\c\\nd") != 0) {
        printf("FAIL label escape: %s\n", e);
        fails++;
    }
    /* Addresses. */
    const char *good[] = {"127.0.0.1:9464", "[::1]:9464", ":9464", "0.0.0.0:0", "[::]:1"};
    const char *bad[] = {"",          "9464",     "localhost:9464", "127.0.0.1:", "127.0.0.1:65536",
                         "[::1]9464", "::1:9464", "127.0.0.1:-1",   "1.2.3.4:12a"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (dfb_metrics_parse_address(good[i], NULL, 0, NULL) != 0) {
            printf("FAIL address %s refused\n", good[i]);
            fails++;
        }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (dfb_metrics_parse_address(bad[i], NULL, 0, NULL) == 0) {
            printf("FAIL address '%s' accepted\n", bad[i]);
            fails++;
        }
    /* A render: every sample's family has HELP and TYPE before it, names
       are dfbridge_*, no family twice. */
    dfb_loop_stats_t ls;
    dfb_pub_counters_t pc;
    memset(&ls, 0, sizeof ls);
    memset(&pc, 0, sizeof pc);
    pc.published_by_type[0] = 3;
    pc.lag_buckets[2] = 1;
    dfb_upstream_record(DFB_UP_READ_FEED, DFB_HTTP_OK, 200, 31000000);
    dfb_info_sources_t src = {.loop = &ls, .pub = &pc, .journal = NULL};
    dfb_buf_t b;
    dfb_buf_init(&b);
    if (dfb_metrics_render(&src, 75000, dfb_mono_ms(), &b) != 0 || dfb_buf_put(&b, "", 1) != 0) {
        printf("FAIL render\n");
        dfb_buf_free(&b);
        return fails + 1;
    }
    char typed[128][96];
    size_t ntyped = 0;
    for (char *line = (char *)b.data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (strncmp(line, "# HELP ", 7) == 0)
            continue;
        if (strncmp(line, "# TYPE ", 7) == 0) {
            const char *n = line + 7;
            size_t len = strcspn(n, " ");
            for (size_t i = 0; i < ntyped; i++)
                if (strlen(typed[i]) == len && strncmp(typed[i], n, len) == 0) {
                    printf("FAIL family %.*s twice\n", (int)len, n);
                    fails++;
                }
            if (!name_ok(n, len) || ntyped == 128) {
                printf("FAIL family name %s\n", n);
                fails++;
            } else
                snprintf(typed[ntyped++], sizeof typed[0], "%.*s", (int)len, n);
            continue;
        }
        size_t len = strcspn(line, "{ ");
        int known = 0;
        for (size_t i = 0; i < ntyped && !known; i++) {
            size_t tl = strlen(typed[i]);
            known = strncmp(line, typed[i], tl) == 0 &&
                    (len == tl || (len > tl && (strcmp(line + tl, "_bucket") == 0 ||
                                                strncmp(line + tl, "_bucket{", 8) == 0 ||
                                                strncmp(line + tl, "_sum", 4) == 0 ||
                                                strncmp(line + tl, "_count", 6) == 0)));
        }
        if (!known) {
            printf("FAIL sample without HELP/TYPE: %s\n", line);
            fails++;
        }
        if (verbose && strstr(line, "read_feed"))
            printf("  %s\n", line);
    }
    const char *want[] = {"dfbridge_events_published_total{topic=\"MESSAGESENT\"} 3\n",
                          "dfbridge_publish_lag_seconds_bucket{le=\"0.05\"} 1\n",
                          "dfbridge_upstream_request_duration_seconds_bucket{call=\"read_feed\","
                          "le=\"30\"} 0\n",
                          "dfbridge_upstream_request_duration_seconds_bucket{call=\"read_feed\","
                          "le=\"35\"} 1\n"};
    dfb_buf_reset(&b);
    dfb_metrics_render(&src, 75000, dfb_mono_ms(), &b);
    dfb_buf_put(&b, "", 1);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr((const char *)b.data, want[i])) {
            printf("FAIL no line %s", want[i]);
            fails++;
        }
    dfb_buf_free(&b);
    if (verbose)
        printf("  %zu families\n", ntyped);
    /* Health and readiness, state by state. */
    struct {
        uint64_t state, ready, exit_code;
        long long read_ago_ms; /* -1: no read yet */
        int64_t started_ago_ms;
        int healthy, is_ready;
        const char *why; /* the start of the /healthz body */
    } hc[] = {
        {0, 0, 0, -1, 10, 1, 0, "starting: no successful read yet"},
        {1, 0, 0, -1, 10, 1, 0, "starting: no successful read yet"},
        {1, 0, 0, -1, 80000, 0, 0, "no successful read since the start 80."},
        {1, 1, 0, 1000, 80000, 1, 1, "ok: last successful read 1."},
        {1, 1, 0, 81000, 200000, 0, 1, "no successful read for 81.0 s (limit 75.0 s)"},
        {2, 0, 3, 10, 200000, 0, 0, "loop stopped: retries exhausted (exit status 3)"},
        {2, 0, 0, 10, 200000, 0, 0, "loop stopped: stopped by a signal (exit status 0)"},
    };
    for (size_t i = 0; i < sizeof hc / sizeof hc[0]; i++) {
        int64_t now = dfb_mono_ms();
        memset(&ls, 0, sizeof ls);
        ls.state = hc[i].state;
        ls.ready = hc[i].ready;
        ls.exit_code = hc[i].exit_code;
        ls.last_read_ms = hc[i].read_ago_ms < 0 ? 0 : now - hc[i].read_ago_ms;
        char why[256];
        int h = dfb_metrics_healthy(&src, 75000, now - hc[i].started_ago_ms, why, sizeof why);
        if (verbose)
            printf("  health %zu: %d %s\n", i, h, why);
        if (h != hc[i].healthy || strncmp(why, hc[i].why, strlen(hc[i].why)) != 0) {
            printf("FAIL health case %zu: %d '%s', want %d '%s...'\n", i, h, why, hc[i].healthy,
                   hc[i].why);
            fails++;
        }
        if (dfb_metrics_ready(&src, why, sizeof why) != hc[i].is_ready) {
            printf("FAIL ready case %zu: %s\n", i, why);
            fails++;
        }
    }
    return fails;
}
