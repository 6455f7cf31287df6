/*  dfb_metrics: the bridge's HTTP endpoint for operators (README "Metrics
    and health"): /metrics in the Prometheus text format, /healthz and
    /readyz. libmicrohttpd serves it on its own internal thread; every value
    is read live with atomic loads (dfb_info's sources, dfb_upstream, the
    loop's health fields), so the loop and the publisher never wait for it. */
#ifndef DFB_METRICS_H
#define DFB_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "dfb_info.h"

typedef struct dfb_metrics dfb_metrics_t;

typedef struct {
    const char *address;        /* bridge.metrics (dfb_metrics_parse_address) */
    int64_t max_read_age_ms;    /* bridge.health.maxReadAgeMillis */
    dfb_info_sources_t src;     /* borrowed; must outlive the server */
} dfb_metrics_opts_t;

/*  Parses an address: IPv4:PORT, [IPv6]:PORT, :PORT (= 0.0.0.0:PORT); the
    host must be a literal address. On success returns 0 and, when given,
    fills host (the literal, without brackets) and *port; -1 otherwise. */
int dfb_metrics_parse_address(const char *s, char *host, size_t hostlen, int *port);

/*  Starts the server (its thread included) and logs the bound address
    ("metrics: ... on http://HOST:PORT", the real port when 0 was asked).
    NULL with a message in err when it cannot listen. */
dfb_metrics_t *dfb_metrics_new(const dfb_metrics_opts_t *o, char *err, size_t errlen);

/*  Stops the server (waits for its thread), NULLs *self_p; accepts NULL. */
void dfb_metrics_destroy(dfb_metrics_t **self_p);

/*  The bound port (0 when NULL). */
int dfb_metrics_port(const dfb_metrics_t *self);

/*  Appends the whole /metrics text for src to b (now: monotonic and wall
    ms, start_mono_ms: when the server started, for health). 0, or -1 when
    out of memory. */
int dfb_metrics_render(const dfb_info_sources_t *src, int64_t max_read_age_ms,
                       int64_t start_mono_ms, dfb_buf_t *b);

/*  The health verdicts, with a short reason in why: 1 healthy / ready, 0
    not. */
int dfb_metrics_healthy(const dfb_info_sources_t *src, int64_t max_read_age_ms,
                        int64_t start_mono_ms, char *why, size_t cap);
int dfb_metrics_ready(const dfb_info_sources_t *src, char *why, size_t cap);

/*  Self-test: the exposition's names, escaping and the info table's
    coverage; returns 0 when all checks pass. */
int dfb_metrics_test(int verbose);

#endif
