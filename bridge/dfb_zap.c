/*  dfb_zap: ZAP handler and allow-list (see dfb_zap.h). The thread owns the
    REP socket and the list; nothing here is shared but the counters. */
#include "dfb_zap.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#include "dfb_clock.h"
#include "dfb_log.h"
#include "dfb_stop.h"
#include "dfz_cert.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define MAX_FRAMES 8       /* a CURVE request has 7 */
#define LOG_EVERY_MS 1000  /* denials: at most one line per second */
#define NAME_MAX_LEN 64    /* of a client's name (its file name without .key) in the log */
#define SIG_NO_DIR 1       /* signature of a missing or unreadable clientsDir */

typedef struct {
    uint8_t key[DFZ_KEY_BYTES];
    char name[NAME_MAX_LEN];
} client_t;

struct dfb_zap {
    void *ctx;
    void *pipe; /* owner's end: $TERM */
    pthread_t thread;
    int started;
    /* the thread's own */
    void *tpipe;
    void *sock; /* REP at ZAP_ENDPOINT */
    char dir[4096];
    client_t *list; /* sorted by key */
    size_t n;
    uint64_t sig; /* of the folder when the list was read; 0 = never */
    int64_t last_log;
    uint64_t suppressed; /* denials not logged since last_log */
    dfb_pub_counters_t *c;
};

static void *zap_main(void *arg);

static int
cmp_client(const void *a, const void *b)
{
    return memcmp(((const client_t *)a)->key, ((const client_t *)b)->key, DFZ_KEY_BYTES);
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const client_t *
find(const dfb_zap_t *self, const uint8_t *key)
{
    client_t k;
    memcpy(k.key, key, DFZ_KEY_BYTES);
    return self->n ? bsearch(&k, self->list, self->n, sizeof k, cmp_client) : NULL;
}

static uint64_t
fnv(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int
is_cert_name(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 4 && strcmp(name + n - 4, ".key") == 0;
}

/*  The sorted *.key names of the folder (caller frees each and the array)
    and a signature of their names and metadata. -1 when the folder cannot
    be read (errno set). */
static int
scan(const char *dir, char ***names_out, size_t *n_out, uint64_t *sig, int *capped)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    char **names = NULL;
    size_t n = 0, cap = 0;
    *capped = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_cert_name(e->d_name))
            continue;
        if (n == DFB_ZAP_MAX_FILES) {
            *capped = 1;
            break;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nn = realloc(names, nc * sizeof *nn);
            if (!nn)
                break;
            names = nn;
            cap = nc;
        }
        if (!(names[n] = strdup(e->d_name)))
            break;
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        char path[4400];
        struct stat st;
        h = fnv(h, names[i], strlen(names[i]) + 1);
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (stat(path, &st) == 0) {
            int64_t meta[6] = {(int64_t)st.st_size,     (int64_t)st.st_mtim.tv_sec,
                               (int64_t)st.st_mtim.tv_nsec, (int64_t)st.st_ctim.tv_sec,
                               (int64_t)st.st_ctim.tv_nsec, (int64_t)st.st_ino};
            h = fnv(h, meta, sizeof meta);
        }
    }
    *sig = h < 2 ? h + 2 : h; /* never 0 (never read) or SIG_NO_DIR */
    *names_out = names;
    *n_out = n;
    return 0;
}

/*  Re-reads the folder when its signature changed: the new list replaces
    the old; a removed key bumps auth_rebinds (the sockets re-bind). */
static void
reload(dfb_zap_t *self, int force)
{
    char **names = NULL;
    size_t nn = 0;
    uint64_t sig = 0;
    int capped = 0;
    if (scan(self->dir, &names, &nn, &sig, &capped) != 0) {
        if (self->sig != SIG_NO_DIR)
            dfb_warn("auth: bridge.curve.clientsDir %s: %s: nobody is allowed in until it can be "
                     "read again",
                     self->dir, strerror(errno));
        sig = SIG_NO_DIR;
    }
    if (sig == self->sig && !force) {
        for (size_t i = 0; i < nn; i++)
            free(names[i]);
        free(names);
        return;
    }
    if (capped)
        dfb_warn("auth: bridge.curve.clientsDir %s holds more than %d certificates: the rest "
                 "are ignored",
                 self->dir, DFB_ZAP_MAX_FILES);
    client_t *list = nn ? calloc(nn, sizeof *list) : NULL;
    size_t n = 0, bad = 0;
    if (nn && !list) {
        dfb_warn("auth: out of memory reading bridge.curve.clientsDir: the allow-list is kept");
        goto out;
    }
    for (size_t i = 0; i < nn; i++) {
        char path[4400], err[512];
        dfz_cert_t cert;
        snprintf(path, sizeof path, "%s/%s", self->dir, names[i]);
        if (dfz_cert_load(path, &cert, err, sizeof err) != 0) {
            dfb_warn("auth: bridge.curve.clientsDir: %s: skipped", err);
            bad++;
            continue;
        }
        if (cert.has_secret)
            dfb_warn("auth: bridge.curve.clientsDir: %s holds a secret key: only the public "
                     "certificate belongs there (its public key is used)",
                     path);
        memcpy(list[n].key, cert.public_key, DFZ_KEY_BYTES);
        dfz_cert_wipe(&cert);
        size_t l = strlen(names[i]) - 4; /* without .key */
        if (l >= NAME_MAX_LEN)
            l = NAME_MAX_LEN - 1;
        memcpy(list[n].name, names[i], l);
        list[n].name[l] = '\0';
        n++;
    }
    if (n)
        qsort(list, n, sizeof *list, cmp_client);
    size_t u = 0; /* the same key in two files counts once */
    for (size_t i = 0; i < n; i++)
        if (!u || memcmp(list[u - 1].key, list[i].key, DFZ_KEY_BYTES) != 0)
            list[u++] = list[i];
    n = u;
    size_t added = 0, removed = 0;
    for (size_t i = 0; i < n; i++) {
        client_t *k = &list[i];
        if (!(self->n && bsearch(k, self->list, self->n, sizeof *k, cmp_client)))
            added++;
    }
    for (size_t i = 0; i < self->n; i++)
        if (!(n && bsearch(&self->list[i], list, n, sizeof *list, cmp_client)))
            removed++;
    free(self->list);
    self->list = list;
    self->n = n;
    self->sig = sig;
    self->c->auth_clients = n;
    self->c->auth_bad_files = bad;
    self->c->auth_reloads++;
    dfb_info("auth: allow-list from %s: %zu client key(s) (%zu added, %zu removed, %zu broken "
             "file(s) skipped)",
             self->dir, n, added, removed, bad);
    if (removed) {
        /* The signal the actor and the replay thread watch. */
        self->c->auth_rebinds++;
        dfb_info("auth: %zu key(s) removed: the PUB and replay sockets re-bind to cut their "
                 "connections",
                 removed);
    }
out:
    for (size_t i = 0; i < nn; i++)
        free(names[i]);
    free(names);
}

dfb_zap_t *
dfb_zap_new(void *ctx, const char *clients_dir, dfb_pub_counters_t *counters, char *err,
            size_t errlen)
{
    dfb_zap_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "auth: out of memory");
        return NULL;
    }
    self->ctx = ctx;
    self->c = counters;
    self->last_log = -LOG_EVERY_MS;
    snprintf(self->dir, sizeof self->dir, "%s", clients_dir);
    char name[64];
    snprintf(name, sizeof name, "inproc://dfb-zap-%p", (void *)self);
    self->sock = zmq_socket(ctx, ZMQ_REP);
    self->pipe = zmq_socket(ctx, ZMQ_PAIR);
    self->tpipe = zmq_socket(ctx, ZMQ_PAIR);
    int zero = 0;
    if (!self->sock || !self->pipe || !self->tpipe ||
        zmq_setsockopt(self->sock, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(self->pipe, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(self->tpipe, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_bind(self->tpipe, name) != 0 || zmq_connect(self->pipe, name) != 0) {
        snprintf(err, errlen, "auth: cannot create the ZAP sockets: %s", zmq_strerror(errno));
        dfb_zap_destroy(&self);
        return NULL;
    }
    if (zmq_bind(self->sock, ZAP_ENDPOINT) != 0) {
        snprintf(err, errlen, "auth: cannot bind the ZAP handler %s: %s", ZAP_ENDPOINT,
                 zmq_strerror(errno));
        dfb_zap_destroy(&self);
        return NULL;
    }
    reload(self, 1);
    if (pthread_create(&self->thread, NULL, zap_main, self) != 0) {
        snprintf(err, errlen, "auth: cannot start the ZAP thread");
        dfb_zap_destroy(&self);
        return NULL;
    }
    self->started = 1;
    return self;
}

void
dfb_zap_destroy(dfb_zap_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_zap_t *self = *self_p;
    if (self->started) {
        zmq_send(self->pipe, "$TERM", 5, 0);
        pthread_join(self->thread, NULL);
    }
    if (self->pipe)
        zmq_close(self->pipe);
    if (self->tpipe)
        zmq_close(self->tpipe);
    if (self->sock)
        zmq_close(self->sock);
    if (self->list)
        explicit_bzero(self->list, self->n * sizeof *self->list);
    free(self->list);
    free(self);
    *self_p = NULL;
}

/* ---- requests --------------------------------------------------------------- */

static void
flush_suppressed(dfb_zap_t *self, int64_t now)
{
    if (self->suppressed && now - self->last_log >= LOG_EVERY_MS) {
        dfb_warn("auth: %" PRIu64 " more denial(s) in the last second, not logged one by one",
                 self->suppressed);
        self->suppressed = 0;
        self->last_log = now;
    }
}

/*  Copies a frame as printable text (for the log): at most cap-1 bytes,
    anything but printable ASCII becomes '?'. */
static void
printable(const zmq_msg_t *m, char *out, size_t cap)
{
    size_t n = zmq_msg_size((zmq_msg_t *)m);
    const uint8_t *p = zmq_msg_data((zmq_msg_t *)m);
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    out[n] = '\0';
}

static int
frame_is(zmq_msg_t *m, const char *s)
{
    return zmq_msg_size(m) == strlen(s) && memcmp(zmq_msg_data(m), s, strlen(s)) == 0;
}

/*  Answers one request (RFC 27): 200 when the CURVE key is allowed, else
    400. Returns -1 when the socket failed. */
static int
handle(dfb_zap_t *self)
{
    zmq_msg_t f[MAX_FRAMES];
    int nf = 0, more;
    zmq_msg_init(&f[0]);
    if (zmq_msg_recv(&f[0], self->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&f[0]);
        return errno == EAGAIN || errno == EINTR ? 1 : -1;
    }
    nf = 1;
    more = zmq_msg_more(&f[0]);
    while (more) { /* a message arrives whole: these never wait */
        zmq_msg_t scratch; /* frames beyond MAX_FRAMES are read and dropped */
        zmq_msg_t *m = nf < MAX_FRAMES ? &f[nf] : &scratch;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, self->sock, 0) < 0) {
            zmq_msg_close(m);
            for (int i = 0; i < nf; i++)
                zmq_msg_close(&f[i]);
            return -1;
        }
        more = zmq_msg_more(m);
        if (m == &scratch)
            zmq_msg_close(m);
        else
            nf++;
    }
    const char *code = "400", *text = "not in the allow-list";
    const char *user = "";
    char addr[64] = "?", mech[16] = "?", fp[DFZ_FP_LEN + 1] = "-";
    int bad_request = nf < 6 || !frame_is(&f[0], "1.0");
    if (!bad_request) {
        printable(&f[3], addr, sizeof addr);
        printable(&f[5], mech, sizeof mech);
    }
    if (bad_request) {
        code = "500";
        text = "malformed ZAP request";
    } else if (!frame_is(&f[5], "CURVE") || nf != 7 || zmq_msg_size(&f[6]) != DFZ_KEY_BYTES) {
        text = "only CURVE clients are allowed";
    } else {
        const uint8_t *key = zmq_msg_data(&f[6]);
        dfz_cert_fingerprint(key, fp);
        const client_t *cl = find(self, key);
        if (cl) {
            code = "200";
            text = "OK";
            user = cl->name;
        }
    }
    int64_t now = dfb_mono_ms();
    if (code[0] == '2') {
        self->c->auth_allowed++;
        dfb_debug("auth: allowed %s from %s (key %s)", user, addr, fp);
    } else {
        self->c->auth_denied++;
        if (now - self->last_log >= LOG_EVERY_MS) {
            flush_suppressed(self, now);
            dfb_logkv(DFB_LOG_WARN,
                      DFB_FIELDS(dfb_ls("client", fp), dfb_ls("address", addr),
                                 dfb_ls("mechanism", mech)),
                      "auth: denied a %s client from %s, key %s: %s", mech, addr, fp,
                     code[0] == '5' ? "malformed ZAP request"
                                    : "not in bridge.curve.clientsDir");
            self->last_log = now;
        } else
            self->suppressed++;
    }
    /* The reply: version, request id, status code and text, user id, metadata. */
    const char *reqid = nf >= 2 ? zmq_msg_data(&f[1]) : "";
    size_t reqid_len = nf >= 2 ? zmq_msg_size(&f[1]) : 0;
    int rc = zmq_send(self->sock, "1.0", 3, ZMQ_SNDMORE) < 0 ||
                     zmq_send(self->sock, reqid, reqid_len, ZMQ_SNDMORE) < 0 ||
                     zmq_send(self->sock, code, 3, ZMQ_SNDMORE) < 0 ||
                     zmq_send(self->sock, text, strlen(text), ZMQ_SNDMORE) < 0 ||
                     zmq_send(self->sock, user, strlen(user), ZMQ_SNDMORE) < 0 ||
                     zmq_send(self->sock, "", 0, 0) < 0
                 ? -1
                 : 0;
    for (int i = 0; i < nf; i++)
        zmq_msg_close(&f[i]);
    return rc;
}

/* ---- the thread --------------------------------------------------------------- */

static const char *
run(dfb_zap_t *self)
{
    int64_t next_scan = dfb_mono_ms() + DFB_ZAP_SCAN_MS;
    for (;;) {
        zmq_pollitem_t items[2] = {{self->tpipe, 0, ZMQ_POLLIN, 0}, {self->sock, 0, ZMQ_POLLIN, 0}};
        int64_t timeout = next_scan - dfb_mono_ms();
        if (timeout < 0)
            timeout = 0;
        if (zmq_poll(items, 2, (long)timeout) < 0 && errno != EINTR)
            return zmq_strerror(errno);
        if (items[0].revents & ZMQ_POLLIN)
            return NULL; /* $TERM, the only command */
        if (items[1].revents & ZMQ_POLLIN)
            for (int k = 0; k < 1000; k++) { /* bounded: the scan must not starve */
                int rc = handle(self);
                if (rc == 1)
                    break;
                if (rc < 0)
                    return zmq_strerror(errno);
            }
        int64_t now = dfb_mono_ms();
        if (now >= next_scan) {
            reload(self, 0);
            flush_suppressed(self, now);
            next_scan = now + DFB_ZAP_SCAN_MS;
        }
    }
}

static void *
zap_main(void *arg)
{
    dfb_zap_t *self = arg;
    const char *why = run(self);
    if (why) {
        self->c->dead_threads++;
        dfb_error("auth: the ZAP thread stopped: %s; new CURVE handshakes wait, the bridge exits "
                  "(status 5)",
                  why);
        dfb_stop_request();
    }
    return NULL;
}
