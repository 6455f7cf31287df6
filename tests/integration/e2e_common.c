/*  Shared parts of the end-to-end tests: the recording listeners, the
    subscription sync and the comparison with what the pod served. */
#include "e2e_common.h"

#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void
e2e_sink_init(e2e_sink_t *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
}

void
e2e_sink_free(e2e_sink_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->recs[i].topic);
        free(s->recs[i].event_json);
        free(s->recs[i].context);
    }
    free(s->recs);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cond);
}

static char *
value_json(const dfc_value_t *v)
{
    char small[512];
    size_t need = dfc_value_to_json(v, small, sizeof small);
    char *out = malloc(need + 1);
    if (!out)
        return NULL;
    if (need < sizeof small)
        memcpy(out, small, need + 1);
    else
        dfc_value_to_json(v, out, need + 1);
    return out;
}

static void
record(e2e_sink_t *s, const dfc_event_t *ev)
{
    const char *topic = dfc_event_topic(ev);
    if (strcmp(topic, "PROBE") == 0) {
        pthread_mutex_lock(&s->mu);
        s->probes++;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    e2e_rec_t r = {.gseq = dfc_event_gseq(ev),
                   .seq = dfc_event_seq(ev),
                   .topic = strdup(topic),
                   .event_json = value_json(dfc_event_value(ev)),
                   .context = strdup(dfc_listener_context())};
    pthread_mutex_lock(&s->mu);
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        e2e_rec_t *p = realloc(s->recs, cap * sizeof *p);
        if (p) {
            s->recs = p;
            s->cap = cap;
        }
    }
    if (s->n < s->cap)
        s->recs[s->n++] = r;
    s->bot = dfc_event_bot(ev);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

/*  A named field must equal what the generic accessor finds at its path. */
static void
check_str(e2e_sink_t *s, int type_ix, const dfc_event_t *ev, const char *named, const char *path)
{
    const dfc_value_t *v = dfc_value_get(dfc_event_value(ev), path);
    const char *generic = dfc_value_type(v) == DFC_STR ? dfc_value_str(v, NULL) : NULL;
    bool same = (!named && !generic) || (named && generic && strcmp(named, generic) == 0);
    pthread_mutex_lock(&s->mu);
    if (!same)
        s->field_mismatch++;
    else if (named) {
        s->field_checks++;
        s->typed_seen[type_ix]++;
    }
    pthread_mutex_unlock(&s->mu);
    if (!same)
        fprintf(stderr, "named field mismatch at %s: %s vs %s\n", path, named ? named : "(null)",
                generic ? generic : "(null)");
}

static void
check_initiator(e2e_sink_t *s, const dfc_event_t *ev, const dfc_initiator_t *in)
{
    const dfc_value_t *v = dfc_value_get(dfc_event_value(ev), "initiator.user.userId");
    int64_t id = 0;
    bool has = dfc_value_int64(v, &id) == 0;
    if (has != in->user.has_user_id || (has && id != in->user.user_id)) {
        pthread_mutex_lock(&s->mu);
        s->field_mismatch++;
        pthread_mutex_unlock(&s->mu);
        fprintf(stderr, "initiator mismatch in event %s\n", dfc_event_id(ev));
    }
}

#define E2E_CB(fn, T, IX, EXPR, PATH)                                                              \
    static void fn(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *in, const T *p)        \
    {                                                                                              \
        e2e_sink_t *s = ctx;                                                                       \
        record(s, ev);                                                                             \
        check_initiator(s, ev, in);                                                                \
        check_str(s, IX, ev, EXPR, PATH);                                                          \
    }

E2E_CB(cb_message_sent, dfc_message_sent_t, 0, p->message.message_id,
       "payload.messageSent.message.messageId")
E2E_CB(cb_shared_post, dfc_shared_post_t, 1, p->shared_message.message_id,
       "payload.sharedPost.sharedMessage.messageId")
E2E_CB(cb_im_created, dfc_instant_message_created_t, 2, p->stream.stream_id,
       "payload.instantMessageCreated.stream.streamId")
E2E_CB(cb_room_created, dfc_room_created_t, 3, p->room_properties.name,
       "payload.roomCreated.roomProperties.name")
E2E_CB(cb_room_updated, dfc_room_updated_t, 4, p->room_properties.name,
       "payload.roomUpdated.newRoomProperties.name")
E2E_CB(cb_room_deactivated, dfc_room_deactivated_t, 5, p->stream.stream_id,
       "payload.roomDeactivated.stream.streamId")
E2E_CB(cb_room_reactivated, dfc_room_reactivated_t, 6, p->stream.stream_id,
       "payload.roomReactivated.stream.streamId")
E2E_CB(cb_requested_join, dfc_user_requested_to_join_room_t, 7, p->stream.stream_id,
       "payload.userRequestedToJoinRoom.stream.streamId")
E2E_CB(cb_joined, dfc_user_joined_room_t, 8, p->affected_user.username,
       "payload.userJoinedRoom.affectedUser.username")
E2E_CB(cb_left, dfc_user_left_room_t, 9, p->affected_user.username,
       "payload.userLeftRoom.affectedUser.username")
E2E_CB(cb_promoted, dfc_room_member_promoted_to_owner_t, 10, p->affected_user.username,
       "payload.roomMemberPromotedToOwner.affectedUser.username")
E2E_CB(cb_demoted, dfc_room_member_demoted_from_owner_t, 11, p->affected_user.username,
       "payload.roomMemberDemotedFromOwner.affectedUser.username")
E2E_CB(cb_conn_requested, dfc_connection_requested_t, 12, p->to_user.username,
       "payload.connectionRequested.toUser.username")
E2E_CB(cb_conn_accepted, dfc_connection_accepted_t, 13, p->from_user.username,
       "payload.connectionAccepted.fromUser.username")
E2E_CB(cb_suppressed, dfc_message_suppressed_t, 14, p->message_id,
       "payload.messageSuppressed.messageId")
E2E_CB(cb_elements, dfc_symphony_elements_action_t, 15, p->form_id,
       "payload.symphonyElementsAction.formId")
E2E_CB(cb_generic, dfc_generic_system_event_t, 16, p->source_system,
       "payload.genericSystemEvent.sourceSystem")

static void
cb_unknown(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *in)
{
    record(ctx, ev);
}

static bool
accept_all(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *in, int64_t bot)
{
    return true;
}

#define E2E_COUNT_CB(fn, T)                                                                        \
    static void fn(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *in, const T *p)        \
    {                                                                                              \
        e2e_sink_t *s = ctx;                                                                       \
        pthread_mutex_lock(&s->mu);                                                                \
        s->default_count++;                                                                        \
        pthread_mutex_unlock(&s->mu);                                                              \
    }
E2E_COUNT_CB(n_message_sent, dfc_message_sent_t)
E2E_COUNT_CB(n_shared_post, dfc_shared_post_t)
E2E_COUNT_CB(n_im_created, dfc_instant_message_created_t)
E2E_COUNT_CB(n_room_created, dfc_room_created_t)
E2E_COUNT_CB(n_room_updated, dfc_room_updated_t)
E2E_COUNT_CB(n_room_deactivated, dfc_room_deactivated_t)
E2E_COUNT_CB(n_room_reactivated, dfc_room_reactivated_t)
E2E_COUNT_CB(n_requested_join, dfc_user_requested_to_join_room_t)
E2E_COUNT_CB(n_joined, dfc_user_joined_room_t)
E2E_COUNT_CB(n_left, dfc_user_left_room_t)
E2E_COUNT_CB(n_promoted, dfc_room_member_promoted_to_owner_t)
E2E_COUNT_CB(n_demoted, dfc_room_member_demoted_from_owner_t)
E2E_COUNT_CB(n_conn_requested, dfc_connection_requested_t)
E2E_COUNT_CB(n_conn_accepted, dfc_connection_accepted_t)
E2E_COUNT_CB(n_suppressed, dfc_message_suppressed_t)
E2E_COUNT_CB(n_elements, dfc_symphony_elements_action_t)
E2E_COUNT_CB(n_generic, dfc_generic_system_event_t)

void
e2e_listeners(e2e_sink_t *s, dfc_listener_t *all, dfc_listener_t *dflt)
{
    *all = (dfc_listener_t){
        .name = "recorder",
        .ctx = s,
        .is_accepting_event = accept_all,
        .on_message_sent = cb_message_sent,
        .on_shared_post = cb_shared_post,
        .on_instant_message_created = cb_im_created,
        .on_room_created = cb_room_created,
        .on_room_updated = cb_room_updated,
        .on_room_deactivated = cb_room_deactivated,
        .on_room_reactivated = cb_room_reactivated,
        .on_user_requested_to_join_room = cb_requested_join,
        .on_user_joined_room = cb_joined,
        .on_user_left_room = cb_left,
        .on_room_member_promoted_to_owner = cb_promoted,
        .on_room_member_demoted_from_owner = cb_demoted,
        .on_connection_requested = cb_conn_requested,
        .on_connection_accepted = cb_conn_accepted,
        .on_message_suppressed = cb_suppressed,
        .on_symphony_elements_action = cb_elements,
        .on_generic_system_event = cb_generic,
        .on_unknown = cb_unknown,
    };
    *dflt = (dfc_listener_t){
        .name = "default-filter",
        .ctx = s,
        .on_message_sent = n_message_sent,
        .on_shared_post = n_shared_post,
        .on_instant_message_created = n_im_created,
        .on_room_created = n_room_created,
        .on_room_updated = n_room_updated,
        .on_room_deactivated = n_room_deactivated,
        .on_room_reactivated = n_room_reactivated,
        .on_user_requested_to_join_room = n_requested_join,
        .on_user_joined_room = n_joined,
        .on_user_left_room = n_left,
        .on_room_member_promoted_to_owner = n_promoted,
        .on_room_member_demoted_from_owner = n_demoted,
        .on_connection_requested = n_conn_requested,
        .on_connection_accepted = n_conn_accepted,
        .on_message_suppressed = n_suppressed,
        .on_symphony_elements_action = n_elements,
        .on_generic_system_event = n_generic,
    };
}

static void
deadline_ts(struct timespec *ts, int timeout_ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

bool
e2e_wait_events(e2e_sink_t *s, size_t n, int timeout_ms)
{
    struct timespec ts;
    deadline_ts(&ts, timeout_ms);
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    while (s->n < n && rc == 0)
        rc = pthread_cond_timedwait(&s->cond, &s->mu, &ts);
    bool ok = s->n >= n;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

size_t
e2e_sink_count(e2e_sink_t *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

bool
e2e_wait_progress(e2e_sink_t *s, size_t n, int idle_ms)
{
    struct timespec ts;
    deadline_ts(&ts, idle_ms);
    pthread_mutex_lock(&s->mu);
    size_t last = s->n;
    while (s->n < n) {
        if (pthread_cond_timedwait(&s->cond, &s->mu, &ts) != 0 && s->n == last)
            break; /* idle_ms without a new event */
        if (s->n != last) {
            last = s->n;
            deadline_ts(&ts, idle_ms);
        }
    }
    bool ok = s->n >= n;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

bool
e2e_sync(h_env_t *env, e2e_sink_t *s, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    for (int i = 1; h_now_ms() < deadline; i++) {
        char body[160];
        snprintf(body, sizeof body,
                 "[{\"id\":\"probe-%d\",\"timestamp\":%d,\"type\":\"PROBE\",\"payload\":{}}]", i,
                 i);
        if (h_admin(env, "POST", "/admin/events", body, NULL) != 200)
            return false;
        /*  Each probe is given 300 ms to come through: it was either dropped
            by PUB before our subscription arrived, or it arrives. */
        struct timespec ts;
        deadline_ts(&ts, 300);
        pthread_mutex_lock(&s->mu);
        int rc = 0;
        while (s->probes == 0 && rc == 0)
            rc = pthread_cond_timedwait(&s->cond, &s->mu, &ts);
        bool seen = s->probes > 0;
        pthread_mutex_unlock(&s->mu);
        if (seen)
            return true;
    }
    return false;
}

static void *
consumer_main(void *arg)
{
    e2e_consumer_t *c = arg;
    c->rc = dfc_loop_start(c->loop);
    return NULL;
}

int
e2e_consumer_start(e2e_consumer_t *c, const char *endpoint, e2e_sink_t *s, dfc_listener_t *all,
                   dfc_listener_t *dflt)
{
    dfc_config_t cfg = {.workers = 4, .rcvhwm = 100000};
    c->loop = dfc_loop_new(&cfg);
    if (!c->loop || dfc_loop_connect(c->loop, endpoint) != DFC_OK ||
        dfc_loop_subscribe(c->loop, all) != DFC_OK ||
        (dflt && dfc_loop_subscribe(c->loop, dflt) != DFC_OK))
        return -1;
    return pthread_create(&c->thread, NULL, consumer_main, c) == 0 ? 0 : -1;
}

void
e2e_consumer_stop(e2e_consumer_t *c)
{
    if (!c->loop)
        return;
    dfc_loop_stop(c->loop);
    pthread_join(c->thread, NULL);
    dfc_loop_destroy(&c->loop);
}

bool
e2e_json_equal(const json_t *a, const json_t *b, char *where, size_t where_len)
{
    if (json_typeof(a) != json_typeof(b)) {
        snprintf(where, where_len, "type %d vs %d", json_typeof(a), json_typeof(b));
        return false;
    }
    switch (json_typeof(a)) {
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b)) {
            snprintf(where, where_len, "object sizes %zu vs %zu", json_object_size(a),
                     json_object_size(b));
            return false;
        }
        /*  jansson iterates objects in insertion order: compare pairwise so
            that key order is part of equality. */
        void *ia = json_object_iter((json_t *)a);
        void *ib = json_object_iter((json_t *)b);
        while (ia && ib) {
            const char *ka = json_object_iter_key(ia);
            const char *kb = json_object_iter_key(ib);
            if (strcmp(ka, kb) != 0) {
                snprintf(where, where_len, "key order: %s vs %s", ka, kb);
                return false;
            }
            if (!e2e_json_equal(json_object_iter_value(ia), json_object_iter_value(ib), where,
                                where_len)) {
                size_t l = strlen(where);
                snprintf(where + l, where_len - l, " <- .%s", ka);
                return false;
            }
            ia = json_object_iter_next((json_t *)a, ia);
            ib = json_object_iter_next((json_t *)b, ib);
        }
        return true;
    }
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b)) {
            snprintf(where, where_len, "array sizes differ");
            return false;
        }
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!e2e_json_equal(json_array_get(a, i), json_array_get(b, i), where, where_len)) {
                size_t l = strlen(where);
                snprintf(where + l, where_len - l, " <- [%zu]", i);
                return false;
            }
        return true;
    case JSON_STRING:
        if (json_string_length(a) != json_string_length(b) ||
            memcmp(json_string_value(a), json_string_value(b), json_string_length(a))) {
            snprintf(where, where_len, "strings differ");
            return false;
        }
        return true;
    case JSON_INTEGER:
        if (json_integer_value(a) != json_integer_value(b)) {
            snprintf(where, where_len, "integers %lld vs %lld", (long long)json_integer_value(a),
                     (long long)json_integer_value(b));
            return false;
        }
        return true;
    case JSON_REAL: {
        double x = json_real_value(a), y = json_real_value(b);
        if (memcmp(&x, &y, sizeof x) != 0) {
            snprintf(where, where_len, "reals %.17g vs %.17g", x, y);
            return false;
        }
        return true;
    }
    default:
        return true;
    }
}

static int
by_gseq(const void *a, const void *b)
{
    const e2e_rec_t *x = a, *y = b;
    return x->gseq < y->gseq ? -1 : x->gseq > y->gseq;
}

/*  The served event with this id that was not matched yet, or NULL. */
static json_t *
take_by_id(json_t *expected, bool *used, const char *id)
{
    size_t i;
    json_t *e;
    json_array_foreach(expected, i, e)
    {
        const char *eid = json_string_value(json_object_get(e, "id"));
        if (!used[i] && eid && id && strcmp(eid, id) == 0) {
            used[i] = true;
            return e;
        }
    }
    return NULL;
}

long
e2e_compare(h_env_t *env, e2e_sink_t *s, size_t from, size_t rec_from, bool ordered)
{
    json_t *served = h_admin_json(env, "/admin/events");
    H_CHECK(served && json_is_array(served), "GET /admin/events");
    if (!served)
        return -1;
    /*  The pod's log without the probes, from `from` on. */
    json_t *expected = json_array();
    size_t i;
    json_t *e;
    size_t k = 0;
    json_array_foreach(served, i, e)
    {
        const char *type = json_string_value(json_object_get(e, "type"));
        if (type && strcmp(type, "PROBE") == 0)
            continue;
        if (k++ >= from)
            json_array_append(expected, e);
    }
    pthread_mutex_lock(&s->mu);
    size_t n = s->n - rec_from;
    e2e_rec_t *recs = s->recs + rec_from;
    qsort(recs, n, sizeof *recs, by_gseq);
    H_CHECK(n == json_array_size(expected), "received %zu events, pod served %zu", n,
            json_array_size(expected));
    long compared = 0;
    bool *used = calloc(json_array_size(expected) + 1, sizeof *used);
    for (size_t j = 0; j < n && j < json_array_size(expected); j++) {
        if (j > 0)
            H_CHECK(recs[j].gseq == recs[j - 1].gseq + 1, "gseq %llu after %llu (gap or duplicate)",
                    (unsigned long long)recs[j].gseq, (unsigned long long)recs[j - 1].gseq);
        json_error_t err;
        json_t *got = json_loads(recs[j].event_json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        H_CHECK(got != NULL, "event %zu: consumer JSON does not parse: %s", j, err.text);
        json_t *want =
            ordered ? json_array_get(expected, j)
                    : take_by_id(expected, used, json_string_value(json_object_get(got, "id")));
        H_CHECK(want != NULL, "event %zu (gseq %llu) was not served, or came twice", j,
                (unsigned long long)recs[j].gseq);
        char where[512] = "";
        if (got && want) {
            bool eq = e2e_json_equal(want, got, where, sizeof where);
            H_CHECK(eq, "event %zu (gseq %llu) differs from what the pod served: %s", j,
                    (unsigned long long)recs[j].gseq, where);
            compared += eq;
        }
        const char *type = json_string_value(json_object_get(want, "type"));
        const char *topic = type && *type ? type : "UNKNOWN";
        H_CHECK(strcmp(recs[j].topic, topic) == 0, "event %zu topic %s, want %s", j, recs[j].topic,
                topic);
        json_decref(got);
    }
    free(used);
    pthread_mutex_unlock(&s->mu);
    json_decref(expected);
    json_decref(served);
    return compared;
}

static int
by_topic_seq(const void *a, const void *b)
{
    const e2e_rec_t *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);
    if (c)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void
e2e_check_seq(e2e_sink_t *s)
{
    pthread_mutex_lock(&s->mu);
    e2e_rec_t *copy = malloc(s->n * sizeof *copy);
    memcpy(copy, s->recs, s->n * sizeof *copy);
    size_t n = s->n;
    pthread_mutex_unlock(&s->mu);
    qsort(copy, n, sizeof *copy, by_topic_seq);
    uint64_t expect = 1;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(copy[i].topic, copy[i - 1].topic) != 0)
            expect = 1;
        H_CHECK(copy[i].seq == expect, "topic %s: seq %llu where %llu was due", copy[i].topic,
                (unsigned long long)copy[i].seq, (unsigned long long)expect);
        expect = copy[i].seq + 1;
    }
    free(copy);
}
