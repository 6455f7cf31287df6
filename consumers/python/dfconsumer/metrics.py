"""dfconsumer.metrics: the loop's counters in the Prometheus text format (0.0.4), with the
names, types and HELP texts of consumers/metrics.json (the C library's dfc_stats_prometheus
and the Node package print the same bytes; consumers/tests/metrics_check.py checks it), and
an optional /metrics endpoint on the standard library's http.server, in a daemon thread."""

import http.server
import re
import socket
import threading

# (dfc_stats_t field, metric name, type, HELP), in the struct's order.
METRICS = (
    ("listeners", "dfconsumer_listeners", "gauge",
     "Listeners subscribed now."),
    ("connects", "dfconsumer_connects_total", "counter",
     "TCP/IPC connections made to bridges (socket monitor)."),
    ("disconnects", "dfconsumer_disconnects_total", "counter",
     "Connections lost: peer gone, or it sent a message above max_frame."),
    ("received", "dfconsumer_received_total", "counter",
     "Messages read from the SUB sockets."),
    ("dispatched", "dfconsumer_dispatched_total", "counter",
     "Jobs queued, one per event and accepting listener."),
    ("completed", "dfconsumer_completed_total", "counter",
     "Jobs whose callback returned."),
    ("skipped", "dfconsumer_skipped_total", "counter",
     "Queued jobs not run because their listener was unsubscribed."),
    ("dropped_at_stop", "dfconsumer_dropped_at_stop_total", "counter",
     "Event and listener pairs not queued because stop came while the queue was full."),
    ("filtered", "dfconsumer_filtered_total", "counter",
     "Event and listener pairs refused by is_accepting_event."),
    ("dropped_malformed", "dfconsumer_dropped_malformed_total", "counter",
     "Malformed messages dropped (the sum of the per-reason counters)."),
    ("bad_frames", "dfconsumer_bad_frames_total", "counter",
     "Messages dropped: frame count not 2, or topic empty or above 255 bytes."),
    ("oversize", "dfconsumer_oversize_total", "counter",
     "Messages dropped: body larger than max_frame."),
    ("bad_msgpack", "dfconsumer_bad_msgpack_total", "counter",
     "Messages dropped: body not decodable msgpack."),
    ("not_map", "dfconsumer_not_map_total", "counter",
     "Messages dropped: body not a map."),
    ("bad_version", "dfconsumer_bad_version_total", "counter",
     "Messages dropped: v missing, not an integer, or above 1."),
    ("bad_envelope", "dfconsumer_bad_envelope_total", "counter",
     "Messages dropped: envelope fields of the wrong type or numbers that cannot be right."),
    ("bad_event", "dfconsumer_bad_event_total", "counter",
     "Messages dropped: event missing or not a map."),
    ("unknown_type", "dfconsumer_unknown_type_total", "counter",
     "Valid messages whose topic is not one of the 17 event types."),
    ("reserved", "dfconsumer_reserved_total", "counter",
     "Messages on reserved underscore topics (the bridge's own), ignored."),
    ("gaps", "dfconsumer_gaps_total", "counter",
     "Messages missing in seq per epoch and topic."),
    ("heartbeats", "dfconsumer_heartbeats_total", "counter",
     "Heartbeats (_hb) read."),
    ("replayed", "dfconsumer_replayed_total", "counter",
     "Events taken in order from a replay endpoint."),
    ("gaps_filled", "dfconsumer_gaps_filled_total", "counter",
     "Replayed events that filled a detected gap."),
    ("lost", "dfconsumer_lost_total", "counter",
     "Missing messages that replay could not give."),
    ("duplicates", "dfconsumer_duplicates_total", "counter",
     "Events dropped as already seen or already handled."),
    ("not_mine", "dfconsumer_not_mine_total", "counter",
     "Events left to other members of the consumer group."),
    ("reconnects", "dfconsumer_reconnects_total", "counter",
     "SUB sockets recreated by the staleness timer."),
    ("auth_failures", "dfconsumer_auth_failures_total", "counter",
     "CURVE handshakes that failed on a bridge socket."),
    ("replay_requests", "dfconsumer_replay_requests_total", "counter",
     "Requests sent to replay endpoints."),
    ("replay_errors", "dfconsumer_replay_errors_total", "counter",
     "Replay error answers and timeouts."),
    ("checkpoints", "dfconsumer_checkpoints_total", "counter",
     "Checkpoint files written."),
    ("lag_ms", "dfconsumer_lag_seconds", "gauge",
     "Now minus the envelope ts of the last event delivered, in seconds."),
    ("replay_stalls", "dfconsumer_replay_stalls_total", "counter",
     "Gap fills given up after three answers without progress."),
    ("held_dropped", "dfconsumer_held_dropped_total", "counter",
     "Live messages not held during a fill (max_held reached): replay brings them."),
    ("alloc_failures", "dfconsumer_alloc_failures_total", "counter",
     "Allocations that failed (the loop goes on)."),
    ("checkpoint_errors", "dfconsumer_checkpoint_errors_total", "counter",
     "Checkpoint saves that failed (retried; the previous file stays intact)."),
    ("queue_waits", "dfconsumer_queue_waits_total", "counter",
     "Times the receiver found a job queue full and waited (back-pressure)."),
    ("replay_unexpected", "dfconsumer_replay_unexpected_total", "counter",
     "Messages from a replay endpoint that answer nothing asked, dropped."),
    ("replay_refused", "dfconsumer_replay_refused_total", "counter",
     "Heartbeats naming a replay endpoint the replay_any_host rule refuses."),
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


def labels_text(labels):
    """'{a="x",b="y"}' for a dict (or pairs) of constant labels; '' for none. ValueError
    for a name that is not [a-zA-Z_][a-zA-Z0-9_]* or starts with '__', a repeated name,
    or a value that is not a str."""
    if not labels:
        return ""
    pairs = list(labels.items()) if isinstance(labels, dict) else list(labels)
    seen = set()
    out = []
    for name, value in pairs:
        if (not isinstance(name, str) or not _LABEL_NAME.match(name) or name.startswith("__")
                or name in seen):
            raise ValueError("metrics label name %r: [a-zA-Z_][a-zA-Z0-9_]*, not __..., "
                             "once" % (name,))
        if not isinstance(value, str):
            raise ValueError("metrics label %s: the value must be a str" % name)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("metrics label %s: the value is not valid Unicode" % name) from None
        seen.add(name)
        v = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        out.append('%s="%s"' % (name, v))
    return "{" + ",".join(out) + "}"


def prometheus_text(stats, labels=None):
    """The counters (a dict with dfc_stats_t's names, as DatafeedLoop.stats() returns) as
    Prometheus text: per metric a HELP, a TYPE and a sample line; lag_ms in seconds."""
    lab = labels_text(labels)
    out = []
    for field, name, kind, help_ in METRICS:
        v = int(stats.get(field, 0))
        value = "%d.%03d" % divmod(v, 1000) if field == "lag_ms" else "%d" % v
        out.append("# HELP %s %s\n# TYPE %s %s\n%s%s %s\n" % (name, help_, name, kind, name, lab,
                                                            value))
    return "".join(out)


def parse_address(addr):
    """'host:port' or '[v6]:port' -> (host, port); port 0 = any free port."""
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", addr or "")
    if not m:
        raise ValueError("metrics address %r: host:port or [v6]:port" % (addr,))
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise ValueError("metrics address %r: port above 65535" % (addr,))
    return host, port


class _Server6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """GET /metrics -> 200 and the text; any other path -> 404. Runs in a daemon thread
    until close(). `address` is the bound (host, port) (port 0 resolved)."""

    def __init__(self, loop, addr, labels=None):
        labels_text(labels)  # refuse bad labels now, not at the first scrape
        host, port = parse_address(addr)
        server_self = self
        self.loop = loop
        self.labels = labels

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.split("?", 1)[0] != "/metrics":
                    body, code, ctype = b"not found: try /metrics\n", 404, "text/plain"
                else:
                    body = server_self.text().encode("utf-8")
                    code, ctype = 200, CONTENT_TYPE
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):
                pass  # a scrape every few seconds is not worth a log line

        cls = _Server6 if ":" in host else http.server.ThreadingHTTPServer
        self.httpd = cls((host, port), Handler)
        self.httpd.daemon_threads = True
        self.address = self.httpd.server_address[:2]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={
            "poll_interval": 0.2}, name="dfconsumer-metrics", daemon=True)
        self.thread.start()

    @property
    def url(self):
        host, port = self.address
        return "http://%s:%d/metrics" % ("[%s]" % host if ":" in host else host, port)

    def text(self):
        return prometheus_text(self.loop.stats(), self.labels)

    def close(self):
        """Stops serving and closes the socket (idempotent)."""
        if self.httpd is None:
            return
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
        self.httpd = None


def serve_metrics(loop, addr, labels=None):
    """Serves loop's counters on http://addr/metrics until the returned server's close()."""
    return MetricsServer(loop, addr, labels)
