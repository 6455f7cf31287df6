/*  metrics_http: a tiny GET /metrics server on libmicrohttpd for the tools
    (dftail --metrics, the example consumer's --metrics), not part of
    libdfconsumer: a worker serves dfc_stats_prometheus's text however it
    serves HTTP already. One thread (libmicrohttpd's), loopback by default. */
#ifndef METRICS_HTTP_H
#define METRICS_HTTP_H

#include <stddef.h>

/*  Writes the page snprintf-style (returns the length it needs; buf may be
    NULL when size is 0). Called on the server's thread: it must be
    thread-safe with what the program does meanwhile (atomics,
    dfc_loop_stats). */
typedef size_t(metrics_http_render_fn)(void *ctx, char *buf, size_t size);

typedef struct metrics_http metrics_http_t;

/*  Serves GET /metrics on addr ("127.0.0.1:9465", "[::1]:0", "localhost:9465";
    port 0 = any free one) with render(ctx); every other path or method
    answers 404. NULL on error with the reason in err. */
metrics_http_t *metrics_http_new(const char *addr, metrics_http_render_fn *render, void *ctx,
                                 char *err, size_t errsize);
/*  The bound port (the one chosen for port 0). */
int metrics_http_port(const metrics_http_t *self);
/*  Stops the server (joins its thread) and nulls *self_p; accepts NULL. */
void metrics_http_destroy(metrics_http_t **self_p);

#endif
