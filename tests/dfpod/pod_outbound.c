/* dfpod outbound endpoints: the calls a bot makes to act (post, update, suppress, get and
 * list messages, IMs, room membership, stream info, user lookup), with the state they
 * change (streams, messages, users) kept in memory and recorded for tests (/admin/messages).
 * Its own mutex; it may take pod_state's (enqueue, stream lookup) while holding it, never
 * the other way round. */
#include "pod.h"
#include "pod_msgbody.h"

#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define LIST_LIMIT_DEFAULT 50
#define LIST_LIMIT_MAX 500
#define IM_MAX_OTHERS 99
#define USERS_MAX 100

typedef struct {
    char id[64];
    char type[8]; /* ROOM, IM, MIM, POST */
    char *name;   /* rooms: the name, or NULL */
    int64_t *members;
    size_t nmembers, capmembers;
    int64_t created, last_ts;
} stream_t;

typedef struct {
    char id[40];
    size_t stream; /* index in streams */
    int64_t ts;
    int64_t listed_ms; /* pod_mono_ms from which the stream's list shows it (--list-lag-ms) */
    json_t *v4;     /* the V4Message as answered */
    json_t *record; /* the GET /admin/messages entry */
    bool suppressed;
} msg_t;

struct pod_out_t {
    pthread_mutex_t mu;
    const pod_config_t *cfg;
    pod_state_t *st;
    stream_t *streams;
    size_t nstreams, capstreams;
    msg_t *msgs;
    size_t nmsgs, capmsgs;
    json_t *users; /* POST /admin/users: UserV2 objects */
    uint64_t seq, event_seq;
    uint64_t posted, updated, suppressed, ims_created, rooms_created, members_added,
        members_removed;
};

/* ---- answers ---- */

static void
out_json(pod_out_result_t *res, int status, json_t *o)
{
    res->status = status;
    res->body = o ? json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    res->len = res->body ? strlen(res->body) : 0;
    json_decref(o);
}

static void out_error(pod_out_result_t *res, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
out_error(pod_out_result_t *res, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *m = json_string(msg);
    if (!m)
        m = json_string("(message not UTF-8)");
    out_json(res, code, json_pack("{s:i,s:o}", "code", code, "message", m));
}

/* ---- ids ---- */

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* A Symphony-like URL-safe id: base64url of 25 random bytes, no padding (34 chars). */
static void
new_id(char out[40])
{
    unsigned char b[27] = {0};
    if (RAND_bytes(b, 25) != 1) {
        for (int i = 0; i < 25; i++)
            b[i] = (unsigned char)rand();
    }
    size_t o = 0;
    for (size_t i = 0; i < 25; i += 3) {
        unsigned v = (unsigned)b[i] << 16 | (unsigned)b[i + 1] << 8 | b[i + 2];
        out[o++] = B64URL[(v >> 18) & 63];
        out[o++] = B64URL[(v >> 12) & 63];
        if (i + 1 < 25)
            out[o++] = B64URL[(v >> 6) & 63];
        if (i + 2 < 25)
            out[o++] = B64URL[v & 63];
    }
    out[o] = '\0'; /* 34 */
}

/* A session UUID derived from the session token: fixed per token. */
static void
session_uuid(const char *token, char out[37])
{
    unsigned char h[SHA256_DIGEST_LENGTH];
    const char *t = token ? token : "";
    SHA256((const unsigned char *)t, strlen(t), h);
    h[6] = (unsigned char)((h[6] & 0x0f) | 0x40);
    h[8] = (unsigned char)((h[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", h[0],
             h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12], h[13],
             h[14], h[15]);
}

static void
sha256_hex(const char *data, size_t len, char out[65])
{
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)data, len, h);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* ---- state ---- */

pod_out_t *
pod_out_new(const pod_config_t *cfg, pod_state_t *st)
{
    pod_out_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init(&self->mu, NULL);
    self->cfg = cfg;
    self->st = st;
    self->users = json_array();
    return self;
}

static void
msgs_free_locked(pod_out_t *self)
{
    for (size_t i = 0; i < self->nmsgs; i++) {
        json_decref(self->msgs[i].v4);
        json_decref(self->msgs[i].record);
    }
    self->nmsgs = 0;
}

void
pod_out_destroy(pod_out_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pod_out_t *self = *self_p;
    msgs_free_locked(self);
    free(self->msgs);
    for (size_t i = 0; i < self->nstreams; i++) {
        free(self->streams[i].name);
        free(self->streams[i].members);
    }
    free(self->streams);
    json_decref(self->users);
    pthread_mutex_destroy(&self->mu);
    free(self);
    *self_p = NULL;
}

static bool
is_member(const stream_t *s, int64_t uid)
{
    for (size_t i = 0; i < s->nmembers; i++)
        if (s->members[i] == uid)
            return true;
    return false;
}

static void
add_member(stream_t *s, int64_t uid)
{
    if (is_member(s, uid))
        return;
    if (s->nmembers == s->capmembers) {
        s->capmembers = s->capmembers ? s->capmembers * 2 : 8;
        s->members = pod_xrealloc(s->members, s->capmembers * sizeof *s->members);
    }
    s->members[s->nmembers++] = uid;
}

static size_t
stream_add_locked(pod_out_t *self, const char *id, const char *type)
{
    if (self->nstreams == self->capstreams) {
        self->capstreams = self->capstreams ? self->capstreams * 2 : 16;
        self->streams = pod_xrealloc(self->streams, self->capstreams * sizeof *self->streams);
    }
    stream_t *s = &self->streams[self->nstreams];
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "%s", id);
    snprintf(s->type, sizeof s->type, "%s", type);
    s->created = pod_wall_ms();
    add_member(s, self->cfg->bot_id); /* the bot is in every stream it knows */
    return self->nstreams++;
}

/* The stream SID: known here, or seen in an enqueued event (then registered). -1 if
 * unknown. */
static long
stream_find_locked(pod_out_t *self, const char *sid)
{
    for (size_t i = 0; i < self->nstreams; i++)
        if (strcmp(self->streams[i].id, sid) == 0)
            return (long)i;
    if (strlen(sid) >= sizeof self->streams[0].id)
        return -1;
    json_t *o = pod_state_find_stream(self->st, sid);
    if (!o)
        return -1;
    const char *type = json_string_value(json_object_get(o, "streamType"));
    if (!type ||
        (strcmp(type, "ROOM") && strcmp(type, "IM") && strcmp(type, "MIM") && strcmp(type, "POST")))
        type = "ROOM";
    size_t si = stream_add_locked(self, sid, type);
    /* an IM/MIM event lists its members (V4Users) */
    json_t *members = json_object_get(o, "members");
    for (size_t i = 0; i < json_array_size(members); i++) {
        json_t *u = json_array_get(members, i);
        json_t *id = json_is_integer(u) ? u : json_object_get(u, "userId");
        if (json_is_integer(id))
            add_member(&self->streams[si], (int64_t)json_integer_value(id));
    }
    json_decref(o);
    return (long)si;
}

static long
msg_find_locked(pod_out_t *self, const char *id)
{
    for (size_t i = 0; i < self->nmsgs; i++)
        if (strcmp(self->msgs[i].id, id) == 0)
            return (long)i;
    return -1;
}

static json_t *
bot_user(const pod_config_t *cfg)
{
    return json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "id", (json_int_t)cfg->bot_id,
                     "emailAddress", "bot@example.com", "firstName", "My", "lastName", "Bot",
                     "displayName", "My Bot", "username", cfg->bot_username, "company", "dfpod",
                     "accountType", "SYSTEM");
}

/* The user ID as a UserV2 (new reference), or NULL if unknown. */
static json_t *
user_by_id_locked(pod_out_t *self, int64_t id)
{
    if (id == self->cfg->bot_id)
        return bot_user(self->cfg);
    for (size_t i = json_array_size(self->users); i-- > 0;) {
        json_t *u = json_array_get(self->users, i);
        if (json_integer_value(json_object_get(u, "id")) == id)
            return json_deep_copy(u);
    }
    return pod_gen_user(id, self->cfg->bot_id);
}

static json_t *
user_by_key_locked(pod_out_t *self, const char *key, bool is_email)
{
    const char *field = is_email ? "emailAddress" : "username";
    if (strcmp(key, is_email ? "bot@example.com" : self->cfg->bot_username) == 0)
        return bot_user(self->cfg);
    for (size_t i = json_array_size(self->users); i-- > 0;) {
        json_t *u = json_array_get(self->users, i);
        const char *v = json_string_value(json_object_get(u, field));
        if (v && strcmp(v, key) == 0)
            return json_deep_copy(u);
    }
    int64_t id = pod_gen_user_by(key, is_email);
    return id ? pod_gen_user(id, self->cfg->bot_id) : NULL;
}

/* V4User of the bot, as in V4Message.user and V4Event.initiator.user. */
static json_t *
bot_v4user(const pod_config_t *cfg)
{
    return json_pack("{s:I,s:s,s:s,s:s,s:s,s:s}", "userId", (json_int_t)cfg->bot_id, "firstName",
                     "My", "lastName", "Bot", "displayName", "My Bot", "email", "bot@example.com",
                     "username", cfg->bot_username);
}

/* Enqueues the MESSAGESENT event of V4 (what the agent does for a bot's own post). */
static void
echo_locked(pod_out_t *self, json_t *v4, const char *mid, int64_t ts)
{
    if (self->cfg->no_echo_posts)
        return;
    unsigned char r[6];
    char eid[64];
    if (RAND_bytes(r, sizeof r) != 1)
        memset(r, 7, sizeof r);
    int o = 0;
    for (int i = 0; i < 6; i++)
        eid[o++] = B64URL[r[i] & 63];
    snprintf(eid + o, sizeof eid - (size_t)o, ":out%" PRIu64, ++self->event_seq);
    json_t *ev = json_pack("{s:s,s:s,s:I,s:s,s:{s:o},s:{s:{s:O}}}", "id", eid, "messageId", mid,
                           "timestamp", (json_int_t)ts, "type", "MESSAGESENT", "initiator", "user",
                           bot_v4user(self->cfg), "payload", "messageSent", "message", v4);
    char *s = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    if (s)
        pod_state_enqueue(self->st, s, strlen(s));
    free(s);
}

/* ---- path helpers ---- */

/* Copies the segment of URL between PREFIX and the next '/' (or the end) into OUT; returns
 * the rest of URL after it, or NULL. */
static const char *
segment(const char *url, const char *prefix, char *out, size_t outlen)
{
    size_t pl = strlen(prefix);
    if (strncmp(url, prefix, pl) != 0)
        return NULL;
    const char *p = url + pl;
    size_t n = strcspn(p, "/");
    if (n == 0 || n >= outlen)
        return NULL;
    memcpy(out, p, n);
    out[n] = '\0';
    return p + n;
}

static bool
parse_i64(const char *s, int64_t *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s)
        return false;
    *out = (int64_t)v;
    return true;
}

static const char *
query(struct MHD_Connection *c, const char *key)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, key);
}

/* ---- messages: create and update ---- */

static bool
all_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)s[i]))
            return false;
    return true;
}

static bool
utf8_ok(const char *s)
{
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

static json_t *
stringn_or(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    return j ? j : json_string("");
}

static void
do_post(pod_out_t *self, struct MHD_Connection *c, bool update, const char *url, const char *body,
        size_t len, pod_out_result_t *res)
{
    char sid[128], mid[128] = "";
    const char *rest = segment(url, "/agent/v4/stream/", sid, sizeof sid);
    if (update && rest)
        rest = segment(rest, "/message/", mid, sizeof mid);
    if (!rest) {
        out_error(res, 404, "Not found");
        return;
    }
    char bnd[80];
    if (!pod_mp_boundary(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type"), bnd,
                     sizeof bnd)) {
        out_error(res, 400, "Content-Type must be multipart/form-data with a boundary");
        return;
    }
    part_t *parts = NULL;
    size_t n = 0;
    char why[256];
    if (pod_mp_parse(body ? body : "", len, bnd, &parts, &n, why, sizeof why) != 0) {
        out_error(res, 400, "Malformed multipart body: %s", why);
        return;
    }
    const part_t *message = NULL, *data = NULL, *version = NULL, *silent = NULL;
    size_t natt = 0, nprev = 0;
    for (size_t i = 0; i < n; i++) {
        const part_t *p = &parts[i];
        if (!strcmp(p->name, "message") && !message)
            message = p;
        else if (!strcmp(p->name, "data") && !data)
            data = p;
        else if (!strcmp(p->name, "version") && !version)
            version = p;
        else if (!strcmp(p->name, "silent") && !silent)
            silent = p;
        else if (!strcmp(p->name, "attachment"))
            natt++;
        else if (!strcmp(p->name, "preview"))
            nprev++;
        /* anything else (sids, ...) is tolerated and ignored */
    }
    json_t *jmsg = message ? json_stringn(message->data, message->len) : NULL;
    json_t *jdata = data ? json_stringn(data->data, data->len) : json_string("");
    json_t *jver = version ? json_stringn(version->data, version->len) : json_string("");
    size_t in_s = 0, in_e = 0;
    bool pml = false;
    int silent_v = -1;
    if (!message || all_space(message->data, message->len)) {
        out_error(res, 400, "Error parsing message: the message cannot be null or empty");
        goto done;
    }
    if (!jmsg) {
        out_error(res, 400, "Invalid messageML: not UTF-8");
        goto done;
    }
    if (pod_xml_check(message->data, message->len, &in_s, &in_e, &pml, why, sizeof why) != 0) {
        out_error(res, 400, "Invalid messageML: %s", why);
        goto done;
    }
    if (!jdata || !jver) {
        out_error(res, 400, "%s is not UTF-8", !jdata ? "data" : "version");
        goto done;
    }
    if (data && !all_space(data->data, data->len)) {
        json_error_t je;
        json_t *d = json_loadb(data->data, data->len, 0, &je);
        bool obj = json_is_object(d);
        json_decref(d);
        if (!obj) {
            out_error(res, 400, "Invalid EntityJSON: %s", d ? "not a JSON object" : je.text);
            goto done;
        }
    }
    if (silent && update) {
        static const char *const t[] = {"true", "True", "TRUE"}, *const f[] = {"false", "False",
                                                                               "FALSE"};
        for (int i = 0; i < 3; i++) {
            if (silent->len == strlen(t[i]) && !memcmp(silent->data, t[i], silent->len))
                silent_v = 1;
            if (silent->len == strlen(f[i]) && !memcmp(silent->data, f[i], silent->len))
                silent_v = 0;
        }
        if (silent_v < 0) {
            out_error(res, 400, "silent must be true or false");
            goto done;
        }
    }
    if (nprev != 0 && nprev != natt) {
        out_error(res, 400, "previews must be given for all attachments or none (%zu for %zu)",
                  nprev, natt);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if ((!strcmp(parts[i].name, "attachment") || !strcmp(parts[i].name, "preview")) &&
            (!parts[i].has_filename || !parts[i].filename[0] || !utf8_ok(parts[i].filename))) {
            out_error(res, 400, "an %s part needs a UTF-8 filename", parts[i].name);
            goto done;
        }
    }

    /* The PresentationML: the root's inner content in the PresentationML div. */
    char *pres;
    if (pml) {
        pres = strndup(message->data, message->len);
    } else {
        static const char open[] = "<div data-format=\"PresentationML\" data-version=\"2.0\">";
        size_t inner = in_e - in_s;
        pres = pod_xrealloc(NULL, sizeof open + inner + 7);
        memcpy(pres, open, sizeof open - 1);
        memcpy(pres + sizeof open - 1, message->data + in_s, inner);
        memcpy(pres + sizeof open - 1 + inner, "</div>", 7);
    }
    char uuid[37];
    session_uuid(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "sessionToken"), uuid);

    pthread_mutex_lock(&self->mu);
    long si = stream_find_locked(self, sid);
    long old = -1;
    if (si < 0) {
        pthread_mutex_unlock(&self->mu);
        free(pres);
        out_error(res, 400, "Stream %s not found", sid);
        goto done;
    }
    if (update) {
        old = msg_find_locked(self, mid);
        if (old < 0 || self->msgs[old].stream != (size_t)si) {
            pthread_mutex_unlock(&self->mu);
            free(pres);
            out_error(res, 400, "Message not found");
            goto done;
        }
    }
    stream_t *s = &self->streams[si];
    int64_t ts = pod_wall_ms();
    if (ts <= s->last_ts)
        ts = s->last_ts + 1; /* strictly increasing per stream */
    s->last_ts = ts;
    char id[40];
    new_id(id);

    json_t *atts = json_array(), *ratts = json_array(), *rprev = json_array();
    size_t ai = 0;
    for (size_t i = 0; i < n; i++) {
        const part_t *p = &parts[i];
        bool att = !strcmp(p->name, "attachment");
        if (!att && strcmp(p->name, "preview"))
            continue;
        char hex[65];
        sha256_hex(p->data, p->len, hex);
        json_t *ct = p->ctype[0] ? json_string(p->ctype) : json_null();
        json_array_append_new(att ? ratts : rprev,
                              json_pack("{s:s,s:I,s:o,s:s}", "name", p->filename, "size",
                                        (json_int_t)p->len, "content_type", ct ? ct : json_null(),
                                        "sha256", hex));
        if (att) {
            char aid[96];
            snprintf(aid, sizeof aid, "internal_%s_%zu", id, ai++);
            json_array_append_new(atts,
                                  json_pack("{s:s,s:s,s:I,s:[]}", "id", aid, "name", p->filename,
                                            "size", (json_int_t)p->len, "images"));
        }
    }
    json_t *v4 = json_object();
    json_object_set_new(v4, "messageId", json_string(id));
    json_object_set_new(v4, "timestamp", json_integer((json_int_t)ts));
    json_object_set_new(v4, "message", stringn_or(pres, strlen(pres)));
    json_object_set(v4, "data", jdata);
    json_object_set(v4, "attachments", atts);
    json_object_set_new(v4, "user", bot_v4user(self->cfg));
    json_object_set_new(v4, "stream",
                        json_pack("{s:s,s:s}", "streamId", s->id, "streamType", s->type));
    json_object_set_new(v4, "externalRecipients", json_false());
    json_object_set_new(v4, "userAgent", json_string("dfpod-1.0"));
    json_object_set_new(v4, "originalFormat", json_string("com.symphony.messageml.v2"));
    json_object_set_new(v4, "sid", json_string(uuid));
    json_t *rec =
        json_pack("{s:I,s:s,s:s,s:s,s:I,s:O,s:s,s:O,s:O,s:o,s:o}", "seq", (json_int_t)++self->seq,
                  "op", update ? "update" : "create", "streamId", s->id, "messageId", id,
                  "timestamp", (json_int_t)ts, "message", jmsg, "presentationML", pres, "data",
                  jdata, "version", jver, "attachments", ratts, "previews", rprev);
    if (update) {
        msg_t *o = &self->msgs[old];
        json_t *ov4 = o->v4;
        json_t *iid = json_object_get(ov4, "initialMessageId"),
               *its = json_object_get(ov4, "initialTimestamp");
        json_object_set_new(v4, "replacing", json_string(o->id));
        json_object_set_new(v4, "initialMessageId", iid ? json_incref(iid) : json_string(o->id));
        json_object_set_new(v4, "initialTimestamp",
                            its ? json_incref(its) : json_integer((json_int_t)o->ts));
        json_object_set_new(v4, "silent", json_boolean(silent_v != 0));
        json_object_set_new(ov4, "replacedBy", json_string(id));
        json_object_set_new(o->record, "replacedBy", json_string(id));
        json_object_set_new(rec, "replacing", json_string(o->id));
        json_object_set_new(rec, "silent", json_boolean(silent_v != 0));
        self->updated++;
    } else {
        self->posted++;
    }
    json_decref(atts);
    if (self->nmsgs == self->capmsgs) {
        self->capmsgs = self->capmsgs ? self->capmsgs * 2 : 64;
        self->msgs = pod_xrealloc(self->msgs, self->capmsgs * sizeof *self->msgs);
    }
    msg_t *m = &self->msgs[self->nmsgs++];
    memset(m, 0, sizeof *m);
    snprintf(m->id, sizeof m->id, "%s", id);
    m->stream = (size_t)si;
    m->ts = ts;
    m->listed_ms = pod_mono_ms() + self->cfg->list_lag_ms;
    m->v4 = v4;
    m->record = rec;
    out_json(res, 200, json_incref(v4));
    echo_locked(self, v4, id, ts);
    pthread_mutex_unlock(&self->mu);
    free(pres);
done:
    json_decref(jmsg);
    json_decref(jdata);
    json_decref(jver);
    free(parts);
}

/* ---- messages: list, get, suppress ---- */

static void
do_list(pod_out_t *self, struct MHD_Connection *c, const char *url, pod_out_result_t *res)
{
    char sid[128];
    const char *rest = segment(url, "/agent/v4/stream/", sid, sizeof sid);
    if (!rest || strcmp(rest, "/message") != 0) {
        out_error(res, 404, "Not found");
        return;
    }
    int64_t since, until = INT64_MAX, skip = 0, limit = LIST_LIMIT_DEFAULT;
    const char *qs = query(c, "since"), *qu = query(c, "until"), *qk = query(c, "skip"),
               *ql = query(c, "limit");
    if (!parse_i64(qs, &since)) {
        out_error(res, 400, "since is required: an epoch timestamp in milliseconds");
        return;
    }
    if ((qu && !parse_i64(qu, &until)) || (qk && (!parse_i64(qk, &skip) || skip < 0)) ||
        (ql && (!parse_i64(ql, &limit) || limit < 1))) {
        out_error(res, 400, "until, skip and limit must be integers (skip >= 0, limit >= 1)");
        return;
    }
    if (limit > LIST_LIMIT_MAX) {
        out_error(res, 400, "limit must be at most %d", LIST_LIMIT_MAX);
        return;
    }
    pthread_mutex_lock(&self->mu);
    long si = stream_find_locked(self, sid);
    if (si < 0) {
        pthread_mutex_unlock(&self->mu);
        out_error(res, 400, "Stream %s not found", sid);
        return;
    }
    json_t *arr = json_array();
    int64_t seen = 0, now = pod_mono_ms();
    for (size_t i = 0; i < self->nmsgs && (int64_t)json_array_size(arr) < limit; i++) {
        const msg_t *m = &self->msgs[i];
        if (m->stream != (size_t)si || m->ts < since || m->ts >= until || now < m->listed_ms)
            continue;
        if (seen++ < skip)
            continue;
        json_array_append(arr, m->v4);
    }
    if (json_array_size(arr) == 0) {
        json_decref(arr);
        res->status = 204;
    } else {
        out_json(res, 200, arr);
    }
    pthread_mutex_unlock(&self->mu);
}

static void
do_get(pod_out_t *self, const char *url, pod_out_result_t *res)
{
    char mid[128];
    const char *rest = segment(url, "/agent/v1/message/", mid, sizeof mid);
    if (!rest || *rest) {
        out_error(res, 404, "Not found");
        return;
    }
    pthread_mutex_lock(&self->mu);
    long i = msg_find_locked(self, mid);
    if (i < 0)
        res->status = 204;
    else
        out_json(res, 200, json_incref(self->msgs[i].v4));
    pthread_mutex_unlock(&self->mu);
}

static void
do_suppress(pod_out_t *self, const char *url, pod_out_result_t *res)
{
    char mid[128];
    const char *rest = segment(url, "/pod/v1/admin/messagesuppression/", mid, sizeof mid);
    if (!rest || strcmp(rest, "/suppress") != 0) {
        out_error(res, 404, "Not found");
        return;
    }
    pthread_mutex_lock(&self->mu);
    long i = msg_find_locked(self, mid);
    if (i < 0) {
        pthread_mutex_unlock(&self->mu);
        out_error(res, 400, "Message not found");
        return;
    }
    msg_t *m = &self->msgs[i];
    int64_t date = 0; /* a repeat answers 0, as Symphony */
    if (!m->suppressed) {
        m->suppressed = true;
        date = pod_wall_ms();
        json_object_set_new(m->record, "suppressed", json_true());
        self->suppressed++;
    }
    out_json(res, 200,
             json_pack("{s:s,s:b,s:I}", "messageId", m->id, "suppressed", 1, "suppressionDate",
                       (json_int_t)date));
    pthread_mutex_unlock(&self->mu);
}

/* ---- streams ---- */

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void
do_imcreate(pod_out_t *self, const char *body, size_t len, pod_out_result_t *res)
{
    json_t *j = json_loadb(body ? body : "", len, 0, NULL);
    if (!json_is_array(j) || json_array_size(j) == 0) {
        json_decref(j);
        out_error(res, 400, "body must be a non-empty JSON array of user ids");
        return;
    }
    size_t n = json_array_size(j);
    int64_t *set = pod_xrealloc(NULL, (n + 1) * sizeof *set);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(j, i);
        if (!json_is_integer(v)) {
            json_decref(j);
            free(set);
            out_error(res, 400, "body must be a JSON array of user ids (integers)");
            return;
        }
        set[k++] = (int64_t)json_integer_value(v);
    }
    json_decref(j);
    set[k++] = self->cfg->bot_id; /* the caller is implicit */
    qsort(set, k, sizeof *set, cmp_i64);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (u == 0 || set[u - 1] != set[i])
            set[u++] = set[i];
    if (u < 2 || u - 1 > IM_MAX_OTHERS) {
        free(set);
        out_error(res, 400, "an IM or MIM has 1 to %d users besides the caller", IM_MAX_OTHERS);
        return;
    }
    pthread_mutex_lock(&self->mu);
    for (size_t i = 0; i < u; i++) {
        json_t *user = user_by_id_locked(self, set[i]);
        if (!user) {
            pthread_mutex_unlock(&self->mu);
            out_error(res, 400, "User %" PRId64 " not found", set[i]);
            free(set);
            return;
        }
        json_decref(user);
    }
    long found = -1;
    for (size_t i = 0; i < self->nstreams && found < 0; i++) {
        stream_t *s = &self->streams[i];
        if ((strcmp(s->type, "IM") && strcmp(s->type, "MIM")) || s->nmembers != u)
            continue;
        size_t hit = 0;
        for (size_t m = 0; m < u; m++)
            hit += is_member(s, set[m]);
        if (hit == u)
            found = (long)i;
    }
    if (found < 0) {
        char id[40];
        new_id(id);
        found = (long)stream_add_locked(self, id, u == 2 ? "IM" : "MIM");
        for (size_t i = 0; i < u; i++)
            add_member(&self->streams[found], set[i]);
        self->ims_created++;
    }
    out_json(res, 200, json_pack("{s:s}", "id", self->streams[found].id));
    pthread_mutex_unlock(&self->mu);
    free(set);
}

static void
do_membership(pod_out_t *self, const char *url, bool add, const char *body, size_t len,
              pod_out_result_t *res)
{
    char sid[128];
    const char *rest = segment(url, "/pod/v1/room/", sid, sizeof sid);
    if (!rest || strcmp(rest, add ? "/membership/add" : "/membership/remove") != 0) {
        out_error(res, 404, "Not found");
        return;
    }
    json_t *j = json_loadb(body ? body : "", len, 0, NULL);
    json_t *id = json_object_get(j, "id");
    if (!json_is_integer(id)) {
        json_decref(j);
        out_error(res, 400, "body must be {\"id\": <user id>}");
        return;
    }
    int64_t uid = (int64_t)json_integer_value(id);
    json_decref(j);
    pthread_mutex_lock(&self->mu);
    long si = stream_find_locked(self, sid);
    json_t *user = si >= 0 ? user_by_id_locked(self, uid) : NULL;
    if (si < 0) {
        out_error(res, 400, "Stream %s not found", sid);
    } else if (strcmp(self->streams[si].type, "ROOM") != 0 &&
               strcmp(self->streams[si].type, "POST") != 0) {
        out_error(res, 400, "Stream %s is not a room", sid);
    } else if (!user) {
        out_error(res, 400, "User %" PRId64 " not found", uid);
    } else {
        stream_t *s = &self->streams[si];
        if (add) {
            if (!is_member(s, uid))
                self->members_added++;
            add_member(s, uid);
        } else {
            for (size_t i = 0; i < s->nmembers; i++) {
                if (s->members[i] == uid) {
                    s->members[i] = s->members[--s->nmembers];
                    self->members_removed++;
                    break;
                }
            }
        }
        out_json(res, 200,
                 json_pack("{s:s,s:s}", "format", "TEXT", "message",
                           add ? "Member added" : "Member removed"));
    }
    json_decref(user);
    pthread_mutex_unlock(&self->mu);
}

static void
do_streaminfo(pod_out_t *self, const char *url, pod_out_result_t *res)
{
    char sid[128];
    const char *rest = segment(url, "/pod/v2/streams/", sid, sizeof sid);
    if (!rest || strcmp(rest, "/info") != 0) {
        out_error(res, 404, "Not found");
        return;
    }
    pthread_mutex_lock(&self->mu);
    long si = stream_find_locked(self, sid);
    if (si < 0) {
        pthread_mutex_unlock(&self->mu);
        out_error(res, 400, "Stream %s not found", sid);
        return;
    }
    stream_t *s = &self->streams[si];
    bool im = !strcmp(s->type, "IM") || !strcmp(s->type, "MIM");
    json_t *members = json_array();
    if (im) {
        int64_t *sorted = pod_xrealloc(NULL, s->nmembers * sizeof *sorted);
        memcpy(sorted, s->members, s->nmembers * sizeof *sorted);
        qsort(sorted, s->nmembers, sizeof *sorted, cmp_i64);
        for (size_t i = 0; i < s->nmembers; i++)
            json_array_append_new(members, json_integer((json_int_t)sorted[i]));
        free(sorted);
    }
    json_t *o = json_pack("{s:s,s:b,s:s,s:b,s:I,s:{s:s},s:{s:o}}", "id", s->id, "crossPod", 0,
                          "origin", "INTERNAL", "active", 1, "lastMessageDate",
                          (json_int_t)(s->last_ts ? s->last_ts : s->created), "streamType", "type",
                          s->type, "streamAttributes", "members", members);
    if (!im)
        json_object_set_new(o, "roomAttributes",
                            json_pack("{s:s,s:[]}", "name", s->name ? s->name : s->id, "groups"));
    pthread_mutex_unlock(&self->mu);
    out_json(res, 200, o);
}

/* ---- users ---- */

static int
bool_arg(const char *v)
{
    if (!v)
        return -1;
    if (!strcmp(v, "true"))
        return 1;
    if (!strcmp(v, "false"))
        return 0;
    return -2;
}

static void
do_users(pod_out_t *self, struct MHD_Connection *c, pod_out_result_t *res)
{
    const char *uid = query(c, "uid"), *email = query(c, "email"), *username = query(c, "username");
    int given = (uid != NULL) + (email != NULL) + (username != NULL);
    int local = bool_arg(query(c, "local")), active = bool_arg(query(c, "active"));
    if (given != 1) {
        out_error(res, 400, "exactly one of uid, email and username is required");
        return;
    }
    if (local == -2 || active == -2) {
        out_error(res, 400, "local and active must be true or false");
        return;
    }
    const char *list = uid ? uid : email ? email : username;
    const char *kind = uid ? "id" : email ? "email" : "username";
    /* split on commas, trimming spaces */
    char *copy = strdup(list);
    char *vals[USERS_MAX + 1];
    size_t n = 0;
    bool too_many = false;
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        size_t tl = strlen(t);
        while (tl && t[tl - 1] == ' ')
            t[--tl] = '\0';
        if (!*t)
            continue;
        if (n == USERS_MAX) {
            too_many = true;
            break;
        }
        vals[n++] = t;
    }
    if (n == 0 || too_many) {
        free(copy);
        out_error(res, 400, "%s must hold 1 to %d comma-separated values", kind, USERS_MAX);
        return;
    }
    json_t *users = json_array(), *errors = json_array();
    pthread_mutex_lock(&self->mu);
    for (size_t i = 0; i < n; i++) {
        json_t *u = NULL;
        int64_t id;
        if (uid)
            u = parse_i64(vals[i], &id) ? user_by_id_locked(self, id) : NULL;
        else
            u = user_by_key_locked(self, vals[i], email != NULL);
        if (u && active >= 0) {
            json_t *a = json_object_get(u, "active");
            bool is_active = !a || json_is_true(a);
            if (is_active != (active == 1)) {
                json_decref(u);
                continue; /* filtered out, not an error */
            }
        }
        if (!u) {
            json_t *v = json_string(vals[i]);
            json_array_append_new(errors, json_pack("{s:s,s:o}", "error", "invalid.format", kind,
                                                    v ? v : json_string("?")));
            continue;
        }
        bool dup = false;
        for (size_t k = 0; k < json_array_size(users); k++)
            dup |= json_equal(json_object_get(json_array_get(users, k), "id"),
                              json_object_get(u, "id"));
        if (dup)
            json_decref(u);
        else
            json_array_append_new(users, u);
    }
    pthread_mutex_unlock(&self->mu);
    free(copy);
    (void)local; /* every user is local to this pod */
    if (json_array_size(users) == 0) {
        json_decref(users);
        json_decref(errors);
        res->status = 204;
        return;
    }
    out_json(res, 200, json_pack("{s:o,s:o}", "users", users, "errors", errors));
}

void
pod_out_handle(pod_out_t *self, struct MHD_Connection *c, pod_ep_t ep, const char *url,
               const char *body, size_t len, pod_out_result_t *res)
{
    memset(res, 0, sizeof *res);
    switch (ep) {
    case POD_EP_MSGCREATE:
    case POD_EP_MSGUPDATE:
        do_post(self, c, ep == POD_EP_MSGUPDATE, url, body, len, res);
        break;
    case POD_EP_MSGLIST:
        do_list(self, c, url, res);
        break;
    case POD_EP_MSGGET:
        do_get(self, url, res);
        break;
    case POD_EP_MSGSUPPRESS:
        do_suppress(self, url, res);
        break;
    case POD_EP_IMCREATE:
        do_imcreate(self, body, len, res);
        break;
    case POD_EP_ROOMADD:
    case POD_EP_ROOMREMOVE:
        do_membership(self, url, ep == POD_EP_ROOMADD, body, len, res);
        break;
    case POD_EP_STREAMINFO:
        do_streaminfo(self, url, res);
        break;
    case POD_EP_USERS:
        do_users(self, c, res);
        break;
    default:
        out_error(res, 404, "Not found");
        break;
    }
}

/* ---- admin ---- */

static void
admin_rooms(pod_out_t *self, const char *body, size_t len, pod_out_result_t *res)
{
    json_t *j = len ? json_loadb(body, len, 0, NULL) : json_object();
    json_t *name = json_object_get(j, "name"), *members = json_object_get(j, "members");
    bool ok = json_is_object(j) && (!name || json_is_string(name)) &&
              (!members || json_is_array(members));
    for (size_t i = 0; ok && i < json_array_size(members); i++)
        ok = json_is_integer(json_array_get(members, i));
    if (!ok) {
        json_decref(j);
        out_error(res, 400, "body must be {\"name\"?: string, \"members\"?: [user ids]}");
        return;
    }
    pthread_mutex_lock(&self->mu);
    for (size_t i = 0; i < json_array_size(members); i++) {
        int64_t uid = (int64_t)json_integer_value(json_array_get(members, i));
        json_t *u = user_by_id_locked(self, uid);
        if (!u) {
            pthread_mutex_unlock(&self->mu);
            json_decref(j);
            out_error(res, 400, "User %" PRId64 " not found", uid);
            return;
        }
        json_decref(u);
    }
    char id[40];
    new_id(id);
    size_t si = stream_add_locked(self, id, "ROOM");
    stream_t *s = &self->streams[si];
    if (name)
        s->name = strdup(json_string_value(name));
    for (size_t i = 0; i < json_array_size(members); i++)
        add_member(s, (int64_t)json_integer_value(json_array_get(members, i)));
    self->rooms_created++;
    out_json(res, 200, json_pack("{s:s}", "id", id));
    pthread_mutex_unlock(&self->mu);
    json_decref(j);
}

static void
admin_users(pod_out_t *self, const char *body, size_t len, pod_out_result_t *res)
{
    json_t *j = json_loadb(body ? body : "", len, 0, NULL);
    bool ok = json_is_array(j);
    for (size_t i = 0; ok && i < json_array_size(j); i++) {
        json_t *u = json_array_get(j, i);
        ok = json_is_object(u) && json_is_integer(json_object_get(u, "id"));
    }
    if (!ok) {
        json_decref(j);
        out_error(res, 400, "body must be a JSON array of UserV2 objects with an integer id");
        return;
    }
    pthread_mutex_lock(&self->mu);
    json_array_extend(self->users, j);
    pthread_mutex_unlock(&self->mu);
    out_json(res, 200, json_pack("{s:I}", "added", (json_int_t)json_array_size(j)));
    json_decref(j);
}

bool
pod_out_admin(pod_out_t *self, const char *url, const char *method, const char *body, size_t len,
              pod_out_result_t *res)
{
    memset(res, 0, sizeof *res);
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST"),
         del = !strcmp(method, "DELETE");
    if (!strcmp(url, "/admin/messages") && get) {
        json_t *arr = json_array();
        pthread_mutex_lock(&self->mu);
        for (size_t i = 0; i < self->nmsgs; i++)
            json_array_append(arr, self->msgs[i].record);
        out_json(res, 200, arr);
        pthread_mutex_unlock(&self->mu);
    } else if (!strcmp(url, "/admin/messages") && del) {
        pthread_mutex_lock(&self->mu);
        size_t n = self->nmsgs;
        msgs_free_locked(self);
        pthread_mutex_unlock(&self->mu);
        out_json(res, 200, json_pack("{s:I}", "deleted", (json_int_t)n));
    } else if (!strcmp(url, "/admin/rooms") && post) {
        admin_rooms(self, body, len, res);
    } else if (!strcmp(url, "/admin/users") && post) {
        admin_users(self, body, len, res);
    } else {
        return false;
    }
    return true;
}

void
pod_out_counters(pod_out_t *self, json_t *o)
{
    pthread_mutex_lock(&self->mu);
#define SETI(name, v) json_object_set_new(o, name, json_integer((json_int_t)(v)))
    SETI("messages_posted", self->posted);
    SETI("messages_updated", self->updated);
    SETI("messages_suppressed", self->suppressed);
    SETI("ims_created", self->ims_created);
    SETI("rooms_created", self->rooms_created);
    SETI("members_added", self->members_added);
    SETI("members_removed", self->members_removed);
#undef SETI
    pthread_mutex_unlock(&self->mu);
}
