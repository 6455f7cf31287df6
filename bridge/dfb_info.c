/*  dfb_info: the table of live counters and its two renderings, the msgpack
    `info` reply and the one-line log dump (see dfb_info.h). Adding a counter
    is one row here. */
#include "dfb_info.h"

#include <stdio.h>
#include <string.h>

#include "dfb_mpack.h"

#define LOOP(f) DFB_INFO_COUNTER, DFB_INFO_LOOP, offsetof(dfb_loop_stats_t, f)
#define PUB(f) DFB_INFO_COUNTER, DFB_INFO_PUB, offsetof(dfb_pub_counters_t, f)
#define JOURNAL(f) DFB_INFO_COUNTER, DFB_INFO_JOURNAL, offsetof(dfb_journal_stats_t, f)
#define PUB_GAUGE(f) DFB_INFO_GAUGE, DFB_INFO_PUB, offsetof(dfb_pub_counters_t, f)
#define JOURNAL_GAUGE(f) DFB_INFO_GAUGE, DFB_INFO_JOURNAL, offsetof(dfb_journal_stats_t, f)

const dfb_info_row_t dfb_info_rows[] = {
    {"reads", "successful datafeed reads", LOOP(reads)},
    {"events", "events received from the datafeed", LOOP(events)},
    {"retries", "failed datafeed calls that were retried (read errors)", LOOP(retries)},
    {"reauths", "re-authentications after a 401", LOOP(reauths)},
    {"recreates", "feeds replaced after a 400 on read", LOOP(recreates)},
    {"feeds_created", "feeds this process created", LOOP(created)},
    {"unacked_batches", "batches not acknowledged because a publish or flush failed",
     LOOP(unacked)},
    {"malformed", "datafeed bodies that were not the expected JSON", LOOP(malformed)},
    {"replaced", "invalid UTF-8 sequences replaced by U+FFFD", LOOP(replaced)},
    {"batches_over_limit", "batches over bridge.maxBatchEvents, published in chunks",
     LOOP(over_batch)},
    {"last_read_age_ms", "milliseconds since the last successful read (0: none yet)",
     DFB_INFO_GAUGE, DFB_INFO_LOOP_AGE, offsetof(dfb_loop_stats_t, last_read_ms)},
    {"published", "messages handed to the PUB socket", PUB(published)},
    {"encode_errors", "events not published: msgpack encoding failed", PUB(encode_errors)},
    {"send_errors", "events not published: zmq_send failed", PUB(send_errors)},
    {"pipe_errors", "events journaled but not handed to the publisher thread", PUB(pipe_errors)},
    {"pipe_drops", "events lost inside the publisher pipe (unreadable frame)", PUB(pipe_drops)},
    {"topics", "distinct topics seen", PUB_GAUGE(topics)},
    {"topics_overflow", "events published under UNKNOWN by the topic cap", PUB(topics_overflow)},
    {"topics_too_long", "events published under UNKNOWN: type longer than 255 bytes",
     PUB(topics_too_long)},
    {"events_too_large", "events over bridge.maxEventBytes, published as a stub with too_large",
     PUB(events_too_large)},
    {"deduped", "redelivered events not published again", PUB(deduped)},
    {"heartbeats", "_hb messages sent", PUB(heartbeats)},
    {"journal_errors", "failed journal appends (each retried)", PUB(journal_errors)},
    {"journal_failing", "1 while journal appends fail (batches are not acknowledged)",
     PUB_GAUGE(journal_failing)},
    {"journaled", "events appended to the journal since start", JOURNAL(appended)},
    {"journal_fsyncs", "fdatasync calls on the journal", JOURNAL(fsyncs)},
    {"journal_segments", "journal segment files", JOURNAL_GAUGE(segments)},
    {"journal_bytes", "bytes in the journal segments", JOURNAL_GAUGE(bytes)},
    {"journal_segments_deleted", "segments removed by retention", JOURNAL(segments_deleted)},
    {"journal_truncated_bytes", "torn or corrupt tail bytes cut at open", JOURNAL(truncated_bytes)},
    {"journal_read_errors", "corrupt records met by journal readers", JOURNAL(read_errors)},
    {"journal_oldest_gseq", "oldest gseq retained", JOURNAL_GAUGE(oldest_gseq)},
    {"journal_head_gseq", "newest gseq appended", JOURNAL_GAUGE(head_gseq)},
    {"replay_requests", "replay requests received", PUB(replay_requests)},
    {"replay_messages", "messages sent in replay answers", PUB(replay_messages)},
    {"replay_errors", "replay answers with status error", PUB(replay_errors)},
    {"replay_abandoned", "replay requests given up (client gone or stalled)",
     PUB(replay_abandoned)},
    {"info_requests", "info requests answered", PUB(info_requests)},
    {"replay_bytes_held", "replay answer bytes queued in the ROUTER, not yet written out",
     PUB_GAUGE(replay_bytes_held)},
    {"replay_paused", "times a replay answer paused on replayClientBytes or replayMaxBytes",
     PUB(replay_paused)},
    {"replay_scan_cut", "filtered replay answers ended by the scan budget (more: true)",
     PUB(replay_scan_cut)},
    {"replay_skipped", "filtered replay answers given at once: no such topic in the journal",
     PUB(replay_skipped)},
    {"replay_segments_skipped", "journal segments filtered replay answers skipped unread",
     PUB(replay_segments_skipped)},
    {"connections", "live TCP connections on the PUB, replay and command sockets", PUB_GAUGE(connections)},
    {"connections_refused", "connections closed at once: over bridge.maxConnections",
     PUB(connections_refused)},
    {"dead_threads", "internal threads stopped on an error (the bridge exits 5)",
     PUB(dead_threads)},
    {"auth_allowed", "CURVE handshakes allowed (key in bridge.curve.clientsDir)",
     PUB(auth_allowed)},
    {"auth_denied", "CURVE handshakes denied (key not in bridge.curve.clientsDir)",
     PUB(auth_denied)},
    {"auth_clients", "public keys in the CURVE allow-list now", PUB_GAUGE(auth_clients)},
    {"auth_bad_files", "certificates in clientsDir skipped at the last reload (broken)",
     PUB_GAUGE(auth_bad_files)},
    {"auth_reloads", "CURVE allow-list loads (start and every change of clientsDir)",
     PUB(auth_reloads)},
    {"auth_rebinds", "allow-list changes that removed a key: PUB and replay re-bound",
     PUB(auth_rebinds)},
    {"commands_received", "command requests received (bridge.commands)", PUB(commands_received)},
    {"commands_ok", "command replies with ok: true", PUB(commands_ok)},
    {"commands_errors_bad_request", "command replies with error bad_request",
     PUB(commands_errors_bad_request)},
    {"commands_errors_not_allowed", "command replies with error not_allowed",
     PUB(commands_errors_not_allowed)},
    {"commands_errors_rejected", "command replies with error rejected (Symphony 4xx)",
     PUB(commands_errors_rejected)},
    {"commands_errors_unavailable", "command replies with error unavailable",
     PUB(commands_errors_unavailable)},
    {"commands_errors_unknown_outcome", "command replies with error unknown_outcome",
     PUB(commands_errors_unknown_outcome)},
    {"commands_errors_busy", "command replies with error busy (queue full)",
     PUB(commands_errors_busy)},
    {"commands_replayed", "command replies of a recorded outcome (same id again, no call)",
     PUB(commands_replayed)},
    {"commands_found", "command replies settled by finding the message's mark (no second post)",
     PUB(commands_found)},
    {"commands_denied", "command requests refused by bridge.commandsAllow", PUB(commands_denied)},
    {"commands_queued", "command requests waiting for a rate limit or an executor",
     PUB_GAUGE(commands_queued)},
    {"commands_inflight", "command requests being executed", PUB_GAUGE(commands_inflight)},
    {"commands_dropped_replies", "command replies not delivered (client gone or not reading)",
     PUB(commands_dropped_replies)},
    {"commands_log_entries", "requests the command journal holds (in the window, or waiting for an outcome)",
     PUB_GAUGE(commands_log_entries)},
    {"commands_log_bytes", "size of the command journal file (commands.log) in bytes",
     PUB_GAUGE(commands_log_bytes)},
    {"commands_log_compactions", "rewrites of the command journal without its dead records",
     PUB(commands_log_compactions)},
    {"commands_log_write_errors", "failed writes or fdatasyncs of the command journal (each reported to its request)",
     PUB(commands_log_write_errors)},
};
const size_t dfb_info_nrows = sizeof dfb_info_rows / sizeof dfb_info_rows[0];

void
dfb_info_values(const dfb_info_sources_t *src, int64_t now_mono_ms, uint64_t *values)
{
    dfb_journal_stats_t js;
    memset(&js, 0, sizeof js);
    if (src->journal)
        dfb_journal_stats(src->journal, &js);
    for (size_t i = 0; i < dfb_info_nrows; i++) {
        const dfb_info_row_t *r = &dfb_info_rows[i];
        uint64_t v = 0;
        switch (r->src) {
        case DFB_INFO_LOOP:
            if (src->loop)
                v = *(const _Atomic uint64_t *)((const char *)src->loop + r->off);
            break;
        case DFB_INFO_LOOP_AGE:
            if (src->loop) {
                long long t = *(const _Atomic long long *)((const char *)src->loop + r->off);
                v = t > 0 && now_mono_ms >= t ? (uint64_t)(now_mono_ms - t) : 0;
            }
            break;
        case DFB_INFO_PUB:
            if (src->pub)
                v = *(const dfb_counter_t *)((const char *)src->pub + r->off);
            break;
        case DFB_INFO_JOURNAL:
            memcpy(&v, (const char *)&js + r->off, sizeof v);
            break;
        }
        values[i] = v;
    }
}

int
dfb_info_encode(dfb_buf_t *b, uint64_t req, const char *epoch, uint64_t ts,
                const char *const *names, const uint64_t *values, size_t n)
{
    int rc = dfb_mpack_map(b, 5);
    rc |= dfb_mpack_cstr(b, "v") | dfb_mpack_uint(b, 1);
    rc |= dfb_mpack_cstr(b, "req") | dfb_mpack_uint(b, req);
    rc |= dfb_mpack_cstr(b, "epoch") | dfb_mpack_cstr(b, epoch);
    rc |= dfb_mpack_cstr(b, "ts") | dfb_mpack_uint(b, ts);
    rc |= dfb_mpack_cstr(b, "counters") | dfb_mpack_map(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        rc |= dfb_mpack_cstr(b, names[i]) | dfb_mpack_uint(b, values[i]);
    return rc ? -1 : 0;
}

void
dfb_info_line(const uint64_t *values, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < dfb_info_nrows && len < cap; i++) {
        int n = snprintf(out + len, cap - len, "%s%s %llu", i ? ", " : "", dfb_info_rows[i].name,
                         (unsigned long long)values[i]);
        if (n < 0)
            break;
        len += (size_t)n;
    }
}
