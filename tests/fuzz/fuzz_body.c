/*  Fuzz target bridge_body: the datafeed loop's handling of pod responses
    (bridge/dfb_loop.c, compiled into this file so its static accept_* and
    publish functions run unchanged), v2, v1 and datahose. The input is a
    script of responses that a fake dfb_http serves in order; dfb_auth and
    dfb_publish are fakes too (publish transcodes the event as the real one
    does before the journal). The loop runs until the script ends (the
    fake returns DFB_HTTP_ESTOPPED) or it gives up (maxAttempts 3, backoff
    0 ms: no sleeping).

    Input: byte 0 = mode (% 3: v2, v1, datahose), then responses:
      u8 kind | u16 length (little-endian) | body
    kind % 12 picks the status (200, 204, 400, 401, 403, 404, 429, 500,
    503) or a transport error (timeout, reset, too big).

    Checked beyond "no crash": every request body the loop sends is valid
    JSON (strict UTF-8), and a read's "ackId" is the one of the last batch
    it accepted and published, byte for byte. */
#include "fuzz_util.h"

#include "../../bridge/dfb_loop.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- the script ------------------------------------------------------------- */

/*  The replacements (-Wl,--wrap=NAME makes the loop's calls of NAME land
    on __wrap_NAME). */
dfb_http_err_t __wrap_dfb_http_request(dfb_http_t *self, const char *method, const char *url,
                                       const char *body, size_t body_len, int *status);
const char *__wrap_dfb_http_body(const dfb_http_t *self, size_t *len);
dfb_auth_rc_t __wrap_dfb_auth_login(dfb_auth_t *self, dfb_http_t *http, int stop_fd);
dfb_auth_rc_t __wrap_dfb_auth_refresh(dfb_auth_t *self, dfb_http_t *http, int stop_fd);
dfb_auth_rc_t __wrap_dfb_auth_refresh_shared(dfb_auth_t *self, dfb_http_t *http, int stop_fd,
                                             uint64_t *gen);
dfb_auth_rc_t __wrap_dfb_auth_session_info(dfb_auth_t *self, dfb_http_t *http, int stop_fd,
                                           int64_t *bot_id);
int __wrap_dfb_publish_event(dfb_publish_t *self, const dfb_json_t *json, dfb_json_ref_t event_ref);
int __wrap_dfb_publish_flush(dfb_publish_t *self);
void __wrap_dfb_publish_set_bot(dfb_publish_t *self, int64_t bot_id);

static const uint8_t *s_p, *s_end;
static char *s_body; /* the current response's body, NUL-terminated */
static size_t s_body_len;
static dfb_json_t *s_check;    /* strict tape for the request bodies */
static dfb_buf_t s_frame;      /* fake publish output */
static char *s_ack;            /* ackId of the last published batch */
static size_t s_ack_len;
static int s_read_pending;     /* the last response served was a 200 to a read */
static int s_batch_ok;         /* ...and every event of it was published */
static char *s_pending_ack;    /* its ackId */
static size_t s_pending_ack_len;

static const int k_status[] = {200, 200, 200, 204, 400, 401, 403, 404, 429, 500, 503, 0};

dfb_http_err_t
__wrap_dfb_http_request(dfb_http_t *self, const char *method, const char *url, const char *body,
                 size_t body_len, int *status)
{
    (void)self;
    (void)method;
    /* The previous read's batch was published whole: its ackId goes out now. */
    if (s_read_pending && s_batch_ok && s_pending_ack) {
        free(s_ack);
        s_ack = s_pending_ack;
        s_ack_len = s_pending_ack_len;
        s_pending_ack = NULL;
    }
    free(s_pending_ack);
    s_pending_ack = NULL;
    s_read_pending = 0;
    int is_read = strstr(url, "/read") != NULL && body && body_len > 0;
    if (strstr(url, "/datafeeds") && !strstr(url, "/read")) {
        /* list/delete/create: a feed obtained starts with an empty ackId */
        free(s_ack);
        s_ack = strdup("");
        s_ack_len = 0;
    }
    if (body && body_len > 0) {
        if (dfb_json_parse(s_check, body, body_len) != 0)
            abort(); /* the loop sent invalid JSON */
        if (is_read) {
            dfb_json_ref_t a = dfb_json_get(s_check, 0, "ackId");
            size_t al = 0;
            const char *ack = a == DFB_JSON_NONE ? NULL : dfb_json_string(s_check, a, &al);
            if (!ack)
                abort();
            if (s_ack && (al != s_ack_len || memcmp(ack, s_ack, al) != 0))
                abort(); /* not the ackId of the last published batch */
        }
    }
    if (s_end - s_p < 3)
        return DFB_HTTP_ESTOPPED; /* the script is over: stop */
    uint8_t kind = s_p[0];
    size_t len = (size_t)s_p[1] | (size_t)s_p[2] << 8;
    s_p += 3;
    if (len > (size_t)(s_end - s_p))
        len = (size_t)(s_end - s_p);
    free(s_body);
    s_body = malloc(len + 1);
    if (!s_body)
        abort();
    memcpy(s_body, s_p, len);
    s_body[len] = '\0';
    s_body_len = len;
    s_p += len;
    switch (kind % 15) {
    case 12:
        return DFB_HTTP_ETIMEOUT;
    case 13:
        return DFB_HTTP_ERESET;
    case 14:
        return DFB_HTTP_ETOOBIG;
    default:
        break;
    }
    *status = k_status[kind % 12] ? k_status[kind % 12] : 502;
    if (*status == 200 && is_read) {
        /* remember its ackId, as the loop should adopt it */
        dfb_json_set_options(s_check, DFB_JSON_REPLACE_INVALID);
        if (dfb_json_parse(s_check, s_body, s_body_len) == 0 &&
            dfb_json_type(s_check, 0) == DFB_JSON_OBJECT) {
            dfb_json_ref_t a = dfb_json_get(s_check, 0, "ackId");
            size_t al = 0;
            const char *ack = a == DFB_JSON_NONE ? NULL : dfb_json_string(s_check, a, &al);
            dfb_json_ref_t ev = dfb_json_get(s_check, 0, "events");
            int ev_ok = ev == DFB_JSON_NONE || dfb_json_type(s_check, ev) == DFB_JSON_ARRAY ||
                        dfb_json_type(s_check, ev) == DFB_JSON_NULL;
            if (ack && ev_ok && (s_pending_ack = malloc(al + 1)) != NULL) {
                memcpy(s_pending_ack, ack, al);
                s_pending_ack_len = al;
                s_read_pending = 1;
                s_batch_ok = 1;
            }
        }
        dfb_json_set_options(s_check, 0);
    }
    return DFB_HTTP_OK;
}

const char *
__wrap_dfb_http_body(const dfb_http_t *self, size_t *len)
{
    (void)self;
    *len = s_body ? s_body_len : 0;
    return s_body ? s_body : "";
}

/* ---- auth and publish fakes ------------------------------------------------- */

dfb_auth_rc_t
__wrap_dfb_auth_login(dfb_auth_t *self, dfb_http_t *http, int stop_fd)
{
    (void)self;
    (void)http;
    (void)stop_fd;
    return DFB_AUTH_OK;
}

dfb_auth_rc_t
__wrap_dfb_auth_refresh(dfb_auth_t *self, dfb_http_t *http, int stop_fd)
{
    (void)self;
    (void)http;
    (void)stop_fd;
    return DFB_AUTH_OK;
}

/*  The loop logs in and re-authenticates through the shared session. */
dfb_auth_rc_t
__wrap_dfb_auth_refresh_shared(dfb_auth_t *self, dfb_http_t *http, int stop_fd, uint64_t *gen)
{
    (void)self;
    (void)http;
    (void)stop_fd;
    ++*gen;
    return DFB_AUTH_OK;
}

dfb_auth_rc_t
__wrap_dfb_auth_session_info(dfb_auth_t *self, dfb_http_t *http, int stop_fd, int64_t *bot_id)
{
    (void)self;
    (void)http;
    (void)stop_fd;
    *bot_id = 12345;
    return DFB_AUTH_OK;
}

static uint64_t s_gseq;

int
__wrap_dfb_publish_event(dfb_publish_t *self, const dfb_json_t *json, dfb_json_ref_t event_ref)
{
    (void)self;
    size_t tl = 0;
    const char *topic = dfb_transcode_topic(json, event_ref, &tl);
    if (!topic || tl == 0)
        abort();
    s_gseq++;
    dfb_envelope_t env = {.seq = s_gseq, .gseq = s_gseq, .epoch = "fuzz", .ts = 1, .bot = 12345};
    dfb_buf_reset(&s_frame);
    if (dfb_transcode_message(&env, json, event_ref, &s_frame) != 0)
        abort();
    return 0;
}

int
__wrap_dfb_publish_flush(dfb_publish_t *self)
{
    (void)self;
    return 0;
}

void
__wrap_dfb_publish_set_bot(dfb_publish_t *self, int64_t bot_id)
{
    (void)self;
    (void)bot_id;
}

/* ---- the run ----------------------------------------------------------------- */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    dfb_log_set_level(getenv("DF_FUZZ_LOG") ? DFB_LOG_DEBUG : DFB_LOG_ERROR);
    if (size < 1)
        return 0;
    const char *dir = fuzz_scratch();
    if (!dir)
        abort();
    if (!s_check && !(s_check = dfb_json_new()))
        abort();
    char idfile[512];
    snprintf(idfile, sizeof idfile, "%s/datafeed.id", dir);
    unlink(idfile); /* v1: every input starts without a feed */

    static char host[] = "pod.fuzz", scheme[] = "https", context[] = "", tag[] = "fuzz-tag",
                hose_tag[] = "datahose-fuzz", t1[] = "MESSAGESENT", t2[] = "ROOMCREATED";
    static char *types[] = {t1, t2, NULL};
    dfb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.agent.scheme = scheme;
    cfg.agent.host = host;
    cfg.agent.port = 443;
    cfg.agent.context = context;
    dfb_retry_cfg_t retry = {3, 0, 2.0, 0};
    cfg.datafeed_retry = cfg.datahose_retry = cfg.retry = retry;
    cfg.datafeed_include_invisible = -1;
    cfg.datafeed_id_file_path = idfile;
    cfg.datahose_tag = hose_tag;
    cfg.datahose_event_types = types;
    cfg.datahose_event_types_n = 2;
    switch (data[0] % 3) {
    case 0:
        cfg.datafeed_version = DFB_DATAFEED_V2;
        cfg.datafeed_tag = (data[0] & 0x10) ? tag : NULL;
        break;
    case 1:
        cfg.datafeed_version = DFB_DATAFEED_V1;
        break;
    default:
        cfg.datafeed_version = DFB_DATAFEED_V2;
        cfg.source = DFB_SOURCE_DATAHOSE;
        break;
    }
    s_p = data + 1;
    s_end = data + size;
    s_gseq = 0;
    s_read_pending = s_batch_ok = 0;
    free(s_ack);
    s_ack = NULL;
    s_ack_len = 0;

    /* a real HTTP client (never used to connect) for whatever else of
       dfb_http the loop calls; non-NULL handles the replacements never
       look at for auth and publish */
    static dfb_http_t *http;
    if (!http && !(http = dfb_http_new(1000, 1000, 1 << 20, -1)))
        abort();
    static char fake;
    dfb_loop_t *loop = dfb_loop_new(&cfg, (dfb_auth_t *)&fake, http, (dfb_publish_t *)&fake, -1);
    if (!loop)
        abort();
    (void)dfb_loop_run(loop);
    dfb_loop_destroy(&loop);

    free(s_body);
    s_body = NULL;
    free(s_pending_ack);
    s_pending_ack = NULL;
    free(s_ack);
    s_ack = NULL;
    unlink(idfile);
    return 0;
}
