/*  dfc_replay: the one replay client (schemas/CONTRACT.md section 9), used by
    the loop's gap filler and by dftail: the DEALER socket setup, the request
    encoder, and the end-marker reader with its consistency checks. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zmq.h>

#include "dfc_internal.h"

size_t
dfc_mp_str(unsigned char *p, const char *s, size_t n)
{
    if (n < 32) {
        p[0] = (unsigned char)(0xa0 | n);
        memcpy(p + 1, s, n);
        return n + 1;
    }
    p[0] = 0xd9;
    p[1] = (unsigned char)n; /* callers keep strings < 256 bytes */
    memcpy(p + 2, s, n);
    return n + 2;
}

static size_t
put_str(unsigned char *p, const char *s)
{
    return dfc_mp_str(p, s, strlen(s));
}

static size_t
put_uint(unsigned char *p, uint64_t v)
{
    p[0] = 0xcf;
    for (int i = 0; i < 8; i++)
        p[1 + i] = (unsigned char)(v >> (56 - 8 * i));
    return 9;
}

size_t
dfc_replay_request(void *buf, size_t size, uint64_t req, const char *epoch, size_t epoch_len,
                   uint64_t from_gseq, unsigned limit, const char *const *topics, size_t ntopics)
{
    /* {"v":1, "req":req, ["epoch":epoch,] "from_gseq":n, "limit":limit,
        ["topics":[...]]} */
    size_t el = epoch ? epoch_len : 0, need = 80 + el + 8;
    for (size_t i = 0; i < ntopics; i++) {
        if (strlen(topics[i]) > 255)
            return 0;
        need += strlen(topics[i]) + 2;
    }
    if (el > 255 || ntopics > 15 || size < need)
        return 0;
    unsigned char *p = buf;
    size_t pos = 0;
    p[pos++] = (unsigned char)(0x80 | (4 + (el ? 1 : 0) + (ntopics ? 1 : 0)));
    pos += put_str(p + pos, "v");
    p[pos++] = 1;
    pos += put_str(p + pos, "req");
    pos += put_uint(p + pos, req);
    if (el) {
        pos += put_str(p + pos, "epoch");
        pos += dfc_mp_str(p + pos, epoch, el);
    }
    pos += put_str(p + pos, "from_gseq");
    pos += put_uint(p + pos, from_gseq);
    pos += put_str(p + pos, "limit");
    pos += put_uint(p + pos, limit);
    if (ntopics) {
        pos += put_str(p + pos, "topics");
        p[pos++] = (unsigned char)(0x90 | ntopics);
        for (size_t i = 0; i < ntopics; i++)
            pos += put_str(p + pos, topics[i]);
    }
    return pos;
}

int
dfc_replay_rcvhwm(size_t max_frame)
{
    size_t per = (max_frame ? max_frame : (size_t)16 << 20) + DFC_MAX_TOPIC;
    size_t n = DFC_REPLAY_QUEUE_BYTES / per;
    return n < 4 ? 4 : n > 256 ? 256 : (int)n;
}

/*  Splits "transport://host:port" (the host after a ';' source address,
    brackets kept) into its parts; false when it has no "://". */
static bool
split_ep(const char *ep, const char **tr, size_t *trl, const char **host, size_t *hl,
         const char **port)
{
    const char *sep = strstr(ep, "://");
    if (!sep)
        return false;
    *tr = ep;
    *trl = (size_t)(sep - ep);
    const char *h = sep + 3, *semi = strchr(h, ';');
    if (semi)
        h = semi + 1;
    const char *colon = strrchr(h, ':');
    if (!colon || (strchr(h, ']') && colon < strchr(h, ']')))
        colon = h + strlen(h);
    *host = h;
    *hl = (size_t)(colon - h);
    *port = colon;
    return true;
}

static bool
wildcard_host(const char *h, size_t n)
{
    static const char *const w[] = {"*", "0.0.0.0", "::", "[::]", "[*]"};
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
        if (strlen(w[i]) == n && memcmp(w[i], h, n) == 0)
            return true;
    return false;
}

int
dfc_replay_advert(const char *pub, const char *adv, bool any_host, char *out, size_t size)
{
    const char *ptr, *pho, *ppo, *atr, *aho, *apo;
    size_t ptl, phl, atl, ahl;
    if (any_host) {
        if (strlen(adv) >= size)
            return -1;
        strcpy(out, adv);
        return 0;
    }
    if (!split_ep(pub, &ptr, &ptl, &pho, &phl, &ppo) ||
        !split_ep(adv, &atr, &atl, &aho, &ahl, &apo) || ptl != atl || memcmp(ptr, atr, ptl) != 0)
        return -1; /* another transport (or not an endpoint) */
    (void)ppo;
    if (atl == 3 && memcmp(atr, "tcp", 3) == 0) {
        if (strchr(adv + 6, ';'))
            return -1; /* a source address of its own choosing */
        bool wild = wildcard_host(aho, ahl);
        if (!wild && (ahl != phl || strncasecmp(aho, pho, phl) != 0))
            return -1;
        /* tcp://<the bridge endpoint's host><the advertised :port> */
        int n = snprintf(out, size, "tcp://%.*s%s", (int)phl, pho, apo);
        return n < 0 || (size_t)n >= size ? -1 : 0;
    }
    if ((atl == 3 && memcmp(atr, "ipc", 3) == 0) || (atl == 6 && memcmp(atr, "inproc", 6) == 0)) {
        if (strlen(adv) >= size)
            return -1;
        strcpy(out, adv); /* this machine / this process, like the bridge's */
        return 0;
    }
    return -1;
}

void *
dfc_replay_open(void *zctx, const char *endpoint, size_t max_frame, const dfc_curve_t *curve,
                void **mon)
{
    void *d = zmq_socket(zctx, ZMQ_DEALER);
    /* a DEALER never drops what it receives: at the HWM libzmq stops reading
       the connection, so a peer that sends more than asked is held back by
       TCP instead of filling our memory */
    int linger = 0, hwm = dfc_replay_rcvhwm(max_frame);
    int64_t maxsize = max_frame ? (int64_t)max_frame + DFC_MAX_TOPIC : -1;
    if (mon)
        *mon = NULL;
    if (!d || zmq_setsockopt(d, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(d, ZMQ_RCVHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(d, ZMQ_MAXMSGSIZE, &maxsize, sizeof maxsize) ||
        dfc_curve_apply(curve, d)) {
        int err = errno;
        dfc_log(DFC_LOG_ERROR, "replay %s: %s", endpoint, zmq_strerror(err));
        if (d)
            zmq_close(d);
        errno = err;
        return NULL;
    }
    /* before connecting: a refusal of the first handshake must not be missed */
    if (mon && curve && curve->on &&
        !(*mon = dfc_monitor_open(zctx, d, DFC_HS_EVENTS | ZMQ_EVENT_CONNECT_RETRIED)))
        dfc_log(DFC_LOG_WARN, "replay %s: no socket monitor: a refused handshake is not retried",
                endpoint);
    if (zmq_connect(d, endpoint)) {
        int err = errno;
        dfc_log(DFC_LOG_ERROR, "replay %s: %s", endpoint, zmq_strerror(err));
        if (mon)
            dfc_monitor_close(d, mon);
        zmq_close(d);
        errno = err;
        return NULL;
    }
    return d;
}

static void
copy_str(const dfc_value_t *v, char *out, size_t size)
{
    size_t n = 0;
    const char *s = dfc_value_type(v) == DFC_STR ? dfc_value_str(v, &n) : NULL;
    if (n >= size)
        n = size - 1;
    if (s)
        memcpy(out, s, n);
    out[n] = '\0';
}

int
dfc_replay_end_parse(const void *body, size_t len, dfc_replay_end_t *end)
{
    memset(end, 0, sizeof *end);
    dfc_doc_t *doc = NULL;
    if (dfc_doc_parse(body, len, &doc) != DFC_OK)
        return DFC_EINVAL;
    const dfc_value_t *root = dfc_doc_root(doc);
    int rc = DFC_OK;
    char status[16];
    copy_str(dfc_value_find(root, "status"), status, sizeof status);
    end->ok = strcmp(status, "ok") == 0;
    copy_str(dfc_value_find(root, "code"), end->code, sizeof end->code);
    copy_str(dfc_value_find(root, "error"), end->error, sizeof end->error);
    end->more = dfc_value_bool(dfc_value_find(root, "more"));
    end->has_req = dfc_value_uint64(dfc_value_find(root, "req"), &end->req) == 0;
    end->has_head = dfc_value_uint64(dfc_value_find(root, "head_gseq"), &end->head_gseq) == 0;
    dfc_value_uint64(dfc_value_find(root, "count"), &end->count);
    dfc_value_uint64(dfc_value_find(root, "last_gseq"), &end->last_gseq);
    dfc_value_uint64(dfc_value_find(root, "oldest_gseq"), &end->oldest_gseq);
    end->has_lost = dfc_value_uint64(dfc_value_find(root, "lost_from"), &end->lost_from) == 0 &&
                    dfc_value_uint64(dfc_value_find(root, "lost_to"), &end->lost_to) == 0;
    if (dfc_value_type(root) != DFC_MAP)
        rc = DFC_EINVAL;
    /* numbers that cannot be right (dfconsumer.h, DFC_SEQ_MAX) */
    if (end->last_gseq > DFC_SEQ_MAX || end->head_gseq > DFC_SEQ_MAX ||
        end->oldest_gseq > DFC_SEQ_MAX || (end->has_head && end->last_gseq > end->head_gseq))
        end->impossible = true;
    if (end->has_lost && (end->lost_from > end->lost_to || end->lost_to > DFC_SEQ_MAX ||
                          (end->has_head && end->lost_to > end->head_gseq)))
        end->impossible = true;
    dfc_doc_destroy(&doc);
    return rc;
}
