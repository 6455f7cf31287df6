/*  dfc_metrics: the loop's counters in the Prometheus text format (version
    0.0.4), one metric per dfc_stats_t field. The names, types and HELP texts
    are those of consumers/metrics.json, which the Python and Node packages
    print too (consumers/tests/metrics_check.py checks all three). No HTTP
    here: the tools serve it (consumers/examples/metrics_http.c). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dfc_loop_priv.h"
#include "dfconsumer.h"

typedef struct {
    size_t off;       /* of the uint64_t field in dfc_stats_t */
    const char *name; /* dfconsumer_<field>[_total] */
    bool counter;     /* else a gauge */
    bool ms;          /* a value in milliseconds, exported in seconds */
    const char *help;
} metric_t;

static const metric_t metrics[] = {
    {offsetof(dfc_stats_t, listeners), "dfconsumer_listeners", false, false,
     "Listeners subscribed now."},
    {offsetof(dfc_stats_t, connects), "dfconsumer_connects_total", true, false,
     "TCP/IPC connections made to bridges (socket monitor)."},
    {offsetof(dfc_stats_t, disconnects), "dfconsumer_disconnects_total", true, false,
     "Connections lost: peer gone, or it sent a message above max_frame."},
    {offsetof(dfc_stats_t, received), "dfconsumer_received_total", true, false,
     "Messages read from the SUB sockets."},
    {offsetof(dfc_stats_t, dispatched), "dfconsumer_dispatched_total", true, false,
     "Jobs queued, one per event and accepting listener."},
    {offsetof(dfc_stats_t, completed), "dfconsumer_completed_total", true, false,
     "Jobs whose callback returned."},
    {offsetof(dfc_stats_t, skipped), "dfconsumer_skipped_total", true, false,
     "Queued jobs not run because their listener was unsubscribed."},
    {offsetof(dfc_stats_t, dropped_at_stop), "dfconsumer_dropped_at_stop_total", true, false,
     "Event and listener pairs not queued because stop came while the queue was full."},
    {offsetof(dfc_stats_t, filtered), "dfconsumer_filtered_total", true, false,
     "Event and listener pairs refused by is_accepting_event."},
    {offsetof(dfc_stats_t, dropped_malformed), "dfconsumer_dropped_malformed_total", true, false,
     "Malformed messages dropped (the sum of the per-reason counters)."},
    {offsetof(dfc_stats_t, bad_frames), "dfconsumer_bad_frames_total", true, false,
     "Messages dropped: frame count not 2, or topic empty or above 255 bytes."},
    {offsetof(dfc_stats_t, oversize), "dfconsumer_oversize_total", true, false,
     "Messages dropped: body larger than max_frame."},
    {offsetof(dfc_stats_t, bad_msgpack), "dfconsumer_bad_msgpack_total", true, false,
     "Messages dropped: body not decodable msgpack."},
    {offsetof(dfc_stats_t, not_map), "dfconsumer_not_map_total", true, false,
     "Messages dropped: body not a map."},
    {offsetof(dfc_stats_t, bad_version), "dfconsumer_bad_version_total", true, false,
     "Messages dropped: v missing, not an integer, or above 1."},
    {offsetof(dfc_stats_t, bad_envelope), "dfconsumer_bad_envelope_total", true, false,
     "Messages dropped: envelope fields of the wrong type or numbers that cannot be right."},
    {offsetof(dfc_stats_t, bad_event), "dfconsumer_bad_event_total", true, false,
     "Messages dropped: event missing or not a map."},
    {offsetof(dfc_stats_t, unknown_type), "dfconsumer_unknown_type_total", true, false,
     "Valid messages whose topic is not one of the 17 event types."},
    {offsetof(dfc_stats_t, reserved), "dfconsumer_reserved_total", true, false,
     "Messages on reserved underscore topics (the bridge's own), ignored."},
    {offsetof(dfc_stats_t, gaps), "dfconsumer_gaps_total", true, false,
     "Messages missing in seq per epoch and topic."},
    {offsetof(dfc_stats_t, heartbeats), "dfconsumer_heartbeats_total", true, false,
     "Heartbeats (_hb) read."},
    {offsetof(dfc_stats_t, replayed), "dfconsumer_replayed_total", true, false,
     "Events taken in order from a replay endpoint."},
    {offsetof(dfc_stats_t, gaps_filled), "dfconsumer_gaps_filled_total", true, false,
     "Replayed events that filled a detected gap."},
    {offsetof(dfc_stats_t, lost), "dfconsumer_lost_total", true, false,
     "Missing messages that replay could not give."},
    {offsetof(dfc_stats_t, duplicates), "dfconsumer_duplicates_total", true, false,
     "Events dropped as already seen or already handled."},
    {offsetof(dfc_stats_t, not_mine), "dfconsumer_not_mine_total", true, false,
     "Events left to other members of the consumer group."},
    {offsetof(dfc_stats_t, reconnects), "dfconsumer_reconnects_total", true, false,
     "SUB sockets recreated by the staleness timer."},
    {offsetof(dfc_stats_t, auth_failures), "dfconsumer_auth_failures_total", true, false,
     "CURVE handshakes that failed on a bridge socket."},
    {offsetof(dfc_stats_t, replay_requests), "dfconsumer_replay_requests_total", true, false,
     "Requests sent to replay endpoints."},
    {offsetof(dfc_stats_t, replay_errors), "dfconsumer_replay_errors_total", true, false,
     "Replay error answers and timeouts."},
    {offsetof(dfc_stats_t, checkpoints), "dfconsumer_checkpoints_total", true, false,
     "Checkpoint files written."},
    {offsetof(dfc_stats_t, lag_ms), "dfconsumer_lag_seconds", false, true,
     "Now minus the envelope ts of the last event delivered, in seconds."},
    {offsetof(dfc_stats_t, replay_stalls), "dfconsumer_replay_stalls_total", true, false,
     "Gap fills given up after three answers without progress."},
    {offsetof(dfc_stats_t, held_dropped), "dfconsumer_held_dropped_total", true, false,
     "Live messages not held during a fill (max_held reached): replay brings them."},
    {offsetof(dfc_stats_t, alloc_failures), "dfconsumer_alloc_failures_total", true, false,
     "Allocations that failed (the loop goes on)."},
    {offsetof(dfc_stats_t, checkpoint_errors), "dfconsumer_checkpoint_errors_total", true, false,
     "Checkpoint saves that failed (retried; the previous file stays intact)."},
    {offsetof(dfc_stats_t, queue_waits), "dfconsumer_queue_waits_total", true, false,
     "Times the receiver found a job queue full and waited (back-pressure)."},
    {offsetof(dfc_stats_t, replay_unexpected), "dfconsumer_replay_unexpected_total", true, false,
     "Messages from a replay endpoint that answer nothing asked, dropped."},
    {offsetof(dfc_stats_t, replay_refused), "dfconsumer_replay_refused_total", true, false,
     "Heartbeats naming a replay endpoint the replay_any_host rule refuses."},
};

/* one metric per counter: a field added to DFC_STATS_FIELDS must get a row here */
#define X(f) +1
_Static_assert(sizeof metrics / sizeof metrics[0] == 0 DFC_STATS_FIELDS(X),
               "consumers/metrics.json and dfc_stats_t disagree");
#undef X

/*  An snprintf-style writer: counts everything, writes what fits. */
typedef struct {
    char *buf;
    size_t size, pos;
} out_t;

static void
put(out_t *o, const char *s, size_t n)
{
    if (o->buf && o->pos < o->size) {
        size_t room = o->size - 1 - o->pos;
        memcpy(o->buf + o->pos, s, n < room ? n : room);
    }
    o->pos += n;
}

static void
puts_(out_t *o, const char *s)
{
    put(o, s, strlen(s));
}

static bool
label_name_ok(const char *s)
{
    /* [a-zA-Z_][a-zA-Z0-9_]*, and not "__..." (reserved by Prometheus) */
    if (!s || !*s || (s[0] == '_' && s[1] == '_'))
        return false;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

/*  Well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF). */
static bool
utf8_ok(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s;
        size_t n;
        unsigned cp;
        if (c < 0x80) {
            s++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1, cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2, cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3, cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t i = 1; i <= n; i++) {
            if ((s[i] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i] & 0x3F);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return false;
        s += n + 1;
    }
    return true;
}

/*  {name="value",...} with \\, \" and \n escaped; "" when there are none. */
static void
put_labels(out_t *o, const char *const *labels)
{
    if (!labels || !labels[0])
        return;
    puts_(o, "{");
    for (size_t i = 0; labels[i]; i += 2) {
        if (i)
            puts_(o, ",");
        puts_(o, labels[i]);
        puts_(o, "=\"");
        for (const char *v = labels[i + 1]; *v; v++) {
            if (*v == '\\')
                puts_(o, "\\\\");
            else if (*v == '"')
                puts_(o, "\\\"");
            else if (*v == '\n')
                puts_(o, "\\n");
            else
                put(o, v, 1);
        }
        puts_(o, "\"");
    }
    puts_(o, "}");
}

size_t
dfc_stats_prometheus(const dfc_stats_t *st, const char *const *labels, char *buf, size_t size)
{
    out_t o = {buf, size, 0};
    if (buf && size)
        buf[0] = '\0';
    if (!st)
        return 0;
    for (size_t i = 0; labels && labels[i]; i += 2) {
        if (!label_name_ok(labels[i]) || !labels[i + 1] ||
            !utf8_ok((const unsigned char *)labels[i + 1]))
            return 0;
        for (size_t j = 0; j < i; j += 2)
            if (strcmp(labels[i], labels[j]) == 0)
                return 0;
    }
    for (size_t i = 0; i < sizeof metrics / sizeof metrics[0]; i++) {
        const metric_t *m = &metrics[i];
        uint64_t v;
        memcpy(&v, (const char *)st + m->off, sizeof v);
        char num[48];
        if (m->ms)
            snprintf(num, sizeof num, " %llu.%03u\n", (unsigned long long)(v / 1000),
                     (unsigned)(v % 1000));
        else
            snprintf(num, sizeof num, " %llu\n", (unsigned long long)v);
        puts_(&o, "# HELP ");
        puts_(&o, m->name);
        puts_(&o, " ");
        puts_(&o, m->help);
        puts_(&o, "\n# TYPE ");
        puts_(&o, m->name);
        puts_(&o, m->counter ? " counter\n" : " gauge\n");
        puts_(&o, m->name);
        put_labels(&o, labels);
        puts_(&o, num);
    }
    if (buf && size)
        buf[o.pos < size ? o.pos : size - 1] = '\0';
    return o.pos;
}
