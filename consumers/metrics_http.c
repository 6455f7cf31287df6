/*  metrics_http: GET /metrics for the tools on libmicrohttpd (see the
    header). The library itself has no HTTP server and no such dependency. */
#include "metrics_http.h"

#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

struct metrics_http {
    struct MHD_Daemon *d;
    metrics_http_render_fn *render;
    void *ctx;
    int port;
};

static const char NOT_FOUND[] = "not found: try GET /metrics\n";

static enum MHD_Result
reply(struct MHD_Connection *c, unsigned status, char *body, size_t len, const char *ctype,
      enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
           const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)version;
    (void)upload;
    metrics_http_t *self = cls;
    static int first;
    if (*con_cls == NULL) { /* headers only: answer on the next call */
        *con_cls = &first;
        return MHD_YES;
    }
    *upload_size = 0; /* a body is read and ignored */
    if (strcmp(method, "GET") != 0 || strcmp(url, "/metrics") != 0)
        return reply(c, MHD_HTTP_NOT_FOUND, (char *)NOT_FOUND, sizeof NOT_FOUND - 1, "text/plain",
                     MHD_RESPMEM_PERSISTENT);
    /* the counters move meanwhile: size, render, and again if it grew */
    size_t need = self->render(self->ctx, NULL, 0);
    for (int tries = 0; tries < 4; tries++) {
        char *buf = malloc(need + 256);
        if (!buf)
            break;
        size_t n = self->render(self->ctx, buf, need + 256);
        if (n < need + 256)
            return reply(c, MHD_HTTP_OK, buf, n, "text/plain; version=0.0.4; charset=utf-8",
                         MHD_RESPMEM_MUST_FREE);
        free(buf);
        need = n;
    }
    return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, (char *)"out of memory\n", 14, "text/plain",
                 MHD_RESPMEM_PERSISTENT);
}

/*  "host:port" / "[v6]:port" -> host and port strings in the caller's buffers. */
static int
split_addr(const char *addr, char *host, size_t hsize, const char **port)
{
    const char *colon;
    size_t hlen;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':')
            return -1;
        hlen = (size_t)(close - addr - 1);
        memcpy(host, addr + 1, hlen < hsize ? hlen : 0);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || memchr(addr, ':', (size_t)(colon - addr)))
            return -1;
        hlen = (size_t)(colon - addr);
        memcpy(host, addr, hlen < hsize ? hlen : 0);
    }
    if (hlen == 0 || hlen >= hsize)
        return -1;
    host[hlen] = '\0';
    *port = colon + 1;
    char *end;
    long p = strtol(*port, &end, 10);
    if (!**port || *end || p < 0 || p > 65535)
        return -1;
    return 0;
}

metrics_http_t *
metrics_http_new(const char *addr, metrics_http_render_fn *render, void *ctx, char *err,
                 size_t errsize)
{
    char host[256];
    const char *port;
    if (!addr || !render || split_addr(addr, host, sizeof host, &port) != 0) {
        snprintf(err, errsize, "metrics address %s: host:port or [v6]:port",
                 addr ? addr : "(null)");
        return NULL;
    }
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0) {
        snprintf(err, errsize, "metrics address %s: %s", addr, gai_strerror(gai));
        return NULL;
    }
    metrics_http_t *self = calloc(1, sizeof *self);
    if (!self) {
        freeaddrinfo(ai);
        snprintf(err, errsize, "out of memory");
        return NULL;
    }
    self->render = render;
    self->ctx = ctx;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    self->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, self, MHD_OPTION_SOCK_ADDR,
                               ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, 16u,
                               MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!self->d) {
        snprintf(err, errsize,
                 "metrics address %s: cannot listen (in use, or not an address "
                 "of this machine)",
                 addr);
        free(self);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(self->d, MHD_DAEMON_INFO_BIND_PORT);
    self->port = info ? (int)info->port : -1;
    return self;
}

int
metrics_http_port(const metrics_http_t *self)
{
    return self ? self->port : -1;
}

void
metrics_http_destroy(metrics_http_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    MHD_stop_daemon((*self_p)->d);
    free(*self_p);
    *self_p = NULL;
}
