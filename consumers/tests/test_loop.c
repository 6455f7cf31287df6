/*  consumer_loop: the dispatch loop end to end over inproc (shared ZeroMQ
    context, the test publishes from an XPUB and waits for the subscription):
    all 17 types with their named fields, the log context, the accept filter,
    concurrency across events and listeners, subscribe/unsubscribe while
    running, stop/start semantics, hostile messages and gap counting. */
#define _GNU_SOURCE /* pthread_timedjoin_np */
#include <signal.h>
#include <stdarg.h>
#include <unistd.h>

#include "testutil.h"

#include "dfc_internal.h"

/* summaries are built in fixed buffers sized for the test data; a
   truncation would show up as a mismatch, not go unnoticed */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#define BOT 68719476738LL
#define WAIT_MS 10000

/* ------------------------------------------------------------ fixture */

typedef struct {
    void *zctx, *xpub;
    dfc_loop_t *loop;
    pthread_t th;
    int start_rc;
    bool started;
    msgpack_sbuffer sb;
} fx_t;

static void
fx_init(fx_t *f, const char *ep, dfc_config_t cfg)
{
    memset(f, 0, sizeof *f);
    f->zctx = zmq_ctx_new();
    f->xpub = zmq_socket(f->zctx, ZMQ_XPUB);
    int linger = 0;
    zmq_setsockopt(f->xpub, ZMQ_LINGER, &linger, sizeof linger);
    /* a restarted loop's SUB subscribes again: report every subscription */
    int verbose = 1;
    zmq_setsockopt(f->xpub, ZMQ_XPUB_VERBOSE, &verbose, sizeof verbose);
    CHECK(zmq_bind(f->xpub, ep) == 0);
    char bound[256]; /* tcp://127.0.0.1:* becomes the real port */
    size_t blen = sizeof bound;
    zmq_getsockopt(f->xpub, ZMQ_LAST_ENDPOINT, bound, &blen);
    cfg.zmq_ctx = f->zctx;
    f->loop = dfc_loop_new(&cfg);
    CHECK(f->loop != NULL);
    CHECK_EQ(dfc_loop_connect(f->loop, bound), DFC_OK);
    msgpack_sbuffer_init(&f->sb);
}

static void *
fx_thread(void *arg)
{
    fx_t *f = arg;
    f->start_rc = dfc_loop_start(f->loop);
    return NULL;
}

static void
fx_start(fx_t *f)
{
    CHECK(pthread_create(&f->th, NULL, fx_thread, f) == 0);
    f->started = true;
    CHECK(tu_wait_subscription(f->xpub, WAIT_MS) == 0);
}

/*  Stops and joins; returns how long start took to return, in ms. */
static int64_t
fx_stop(fx_t *f)
{
    int64_t t0 = tu_now_ms();
    dfc_loop_stop(f->loop);
    if (f->started)
        pthread_join(f->th, NULL);
    f->started = false;
    CHECK_EQ(f->start_rc, DFC_OK);
    return tu_now_ms() - t0;
}

static void
fx_fini(fx_t *f)
{
    if (f->started)
        fx_stop(f);
    dfc_loop_destroy(&f->loop);
    CHECK(f->loop == NULL);
    zmq_close(f->xpub);
    zmq_ctx_term(f->zctx);
    msgpack_sbuffer_destroy(&f->sb);
}

static void
fx_pub(fx_t *f, const char *topic, uint64_t seq, const char *json)
{
    tu_envelope(&f->sb, seq, seq, "epoch-A", BOT, json);
    CHECK(tu_send2(f->xpub, topic, f->sb.data, f->sb.size) == 0);
}

/* ----------------------------------------------------------- recorder */

typedef struct {
    char listener[16], topic[32], id[16], summary[768], context[DFC_CONTEXT_MAX];
} rec_t;

static pthread_mutex_t rmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rcond = PTHREAD_COND_INITIALIZER;
static rec_t recs[256];
static int nrecs;

static void
recs_reset(void)
{
    pthread_mutex_lock(&rmu);
    nrecs = 0;
    pthread_mutex_unlock(&rmu);
}

static void record(const char *listener, const dfc_event_t *ev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
record(const char *listener, const dfc_event_t *ev, const char *fmt, ...)
{
    pthread_mutex_lock(&rmu);
    if (nrecs < (int)(sizeof recs / sizeof recs[0])) {
        rec_t *r = &recs[nrecs++];
        snprintf(r->listener, sizeof r->listener, "%s", listener);
        snprintf(r->topic, sizeof r->topic, "%s", dfc_event_topic(ev));
        snprintf(r->id, sizeof r->id, "%s", dfc_event_id(ev) ? dfc_event_id(ev) : "None");
        snprintf(r->context, sizeof r->context, "%s", dfc_listener_context());
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->summary, sizeof r->summary, fmt, ap);
        va_end(ap);
    }
    pthread_cond_broadcast(&rcond);
    pthread_mutex_unlock(&rmu);
}

static int
count_recs(const char *listener)
{
    int n = 0;
    pthread_mutex_lock(&rmu);
    for (int i = 0; i < nrecs; i++)
        n += !listener || !strcmp(recs[i].listener, listener);
    pthread_mutex_unlock(&rmu);
    return n;
}

/*  Waits (bounded) until `listener` has at least n records. */
static bool
wait_recs(const char *listener, int n)
{
    struct timespec dl = tu_deadline(WAIT_MS);
    pthread_mutex_lock(&rmu);
    for (;;) {
        int have = 0;
        for (int i = 0; i < nrecs; i++)
            have += !listener || !strcmp(recs[i].listener, listener);
        if (have >= n)
            break;
        if (pthread_cond_timedwait(&rcond, &rmu, &dl) != 0) {
            pthread_mutex_unlock(&rmu);
            fprintf(stderr, "timeout waiting for %d records of %s (have %d)\n", n,
                    listener ? listener : "any", have);
            return false;
        }
    }
    pthread_mutex_unlock(&rmu);
    return true;
}

static const rec_t *
find_rec(const char *listener, const char *id)
{
    for (int i = 0; i < nrecs; i++)
        if (!strcmp(recs[i].listener, listener) && !strcmp(recs[i].id, id))
            return &recs[i];
    return NULL;
}

/* ---------------------------------------------- typed-field summaries */

typedef struct {
    char b[256];
} str_t;

static const char *
n(const char *s)
{
    return s ? s : "(null)";
}

static str_t
su(const dfc_user_t *u)
{
    str_t s;
    snprintf(s.b, sizeof s.b, "%lld:%s:%s:%s:%s:%s", (long long)u->user_id, n(u->username),
             n(u->display_name), n(u->first_name), n(u->last_name), n(u->email));
    return s;
}

static str_t
ss(const dfc_stream_t *st)
{
    str_t s;
    snprintf(s.b, sizeof s.b, "%s:%s:%s:%d:%d", n(st->stream_id), n(st->stream_type),
             n(st->room_name), st->external, st->cross_pod);
    return s;
}

static void
sm(char *out, size_t size, const dfc_message_t *m)
{
    snprintf(out, size, "%s@%lld[%s][%s] by %s in %s", n(m->message_id), (long long)m->timestamp,
             n(m->message), n(m->data), su(&m->user).b, ss(&m->stream).b);
}

static str_t
sj(const dfc_value_t *v)
{
    str_t s;
    dfc_value_to_json(v, s.b, sizeof s.b);
    return s;
}

#define L(ctx) ((const char *)(ctx))

static void
c_message_sent(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
               const dfc_message_sent_t *p)
{
    char m[300];
    sm(m, sizeof m, &p->message);
    record(L(ctx), ev, "init=%s %s att=%zu", su(&i->user).b, m,
           dfc_value_size(p->message.attachments));
}
static void
c_shared_post(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
              const dfc_shared_post_t *p)
{
    char m1[300], m2[300];
    sm(m1, sizeof m1, &p->message);
    sm(m2, sizeof m2, &p->shared_message);
    record(L(ctx), ev, "init=%s %s shares %s", su(&i->user).b, m1, m2);
}
static void
c_stream(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i, const dfc_stream_event_t *p)
{
    record(L(ctx), ev, "init=%s %s", su(&i->user).b, ss(&p->stream).b);
}
static void
c_room(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i, const dfc_room_created_t *p)
{
    const dfc_room_properties_t *r = &p->room_properties;
    record(L(ctx), ev, "init=%s %s props=%s|%s|%s|%lld|pub=%d|ro=%d|inv=%d|kw=%zu", su(&i->user).b,
           ss(&p->stream).b, n(r->name), n(r->description), su(&r->creator_user).b,
           (long long)r->created_date, r->is_public, r->read_only, r->members_can_invite,
           dfc_value_size(r->keywords));
}
static void
c_join_req(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
           const dfc_user_requested_to_join_room_t *p)
{
    record(L(ctx), ev, "init=%s %s users=%s", su(&i->user).b, ss(&p->stream).b,
           sj(p->affected_users).b);
}
static void
c_member(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i, const dfc_room_member_t *p)
{
    record(L(ctx), ev, "init=%s %s affected=%s", su(&i->user).b, ss(&p->stream).b,
           su(&p->affected_user).b);
}
static void
c_conn_req(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
           const dfc_connection_requested_t *p)
{
    record(L(ctx), ev, "init=%s to=%s", su(&i->user).b, su(&p->to_user).b);
}
static void
c_conn_acc(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
           const dfc_connection_accepted_t *p)
{
    record(L(ctx), ev, "init=%s from=%s", su(&i->user).b, su(&p->from_user).b);
}
static void
c_suppressed(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
             const dfc_message_suppressed_t *p)
{
    record(L(ctx), ev, "init=%s msg=%s %s", su(&i->user).b, n(p->message_id), ss(&p->stream).b);
}
static void
c_elements(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
           const dfc_symphony_elements_action_t *p)
{
    record(L(ctx), ev, "init=%s %s form=%s/%s values=%s", su(&i->user).b, ss(&p->stream).b,
           n(p->form_message_id), n(p->form_id), sj(p->form_values).b);
}
static void
c_generic(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
          const dfc_generic_system_event_t *p)
{
    record(L(ctx), ev, "init=%s %s at=%lld %s/%s params=%s", su(&i->user).b, ss(&p->stream).b,
           (long long)p->event_timestamp, n(p->source_system), n(p->event_subtype),
           sj(p->parameters).b);
}
static void
c_unknown(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i)
{
    record(L(ctx), ev, "unknown init=%s type=%s", su(&i->user).b, n(dfc_event_type(ev)));
}

static dfc_listener_t
all_callbacks(const char *name, void *ctx)
{
    dfc_listener_t l = {
        .name = name,
        .ctx = ctx,
        .on_message_sent = c_message_sent,
        .on_shared_post = c_shared_post,
        .on_instant_message_created = c_stream,
        .on_room_created = c_room,
        .on_room_updated = c_room,
        .on_room_deactivated = c_stream,
        .on_room_reactivated = c_stream,
        .on_user_requested_to_join_room = c_join_req,
        .on_user_joined_room = c_member,
        .on_user_left_room = c_member,
        .on_room_member_promoted_to_owner = c_member,
        .on_room_member_demoted_from_owner = c_member,
        .on_connection_requested = c_conn_req,
        .on_connection_accepted = c_conn_acc,
        .on_message_suppressed = c_suppressed,
        .on_symphony_elements_action = c_elements,
        .on_generic_system_event = c_generic,
        .on_unknown = c_unknown,
    };
    return l;
}

/* ------------------------------------------------------- the 17 types */

#define INIT                                                                                       \
    "\"initiator\":{\"user\":{\"userId\":9007199254740993,\"username\":\"big\","                   \
    "\"displayName\":\"Big Id\",\"firstName\":\"Bi\",\"lastName\":\"Gid\","                        \
    "\"email\":\"big@example.com\"}}"
#define ISUM "init=9007199254740993:big:Big Id:Bi:Gid:big@example.com"
#define U2 "{\"userId\":68719476737,\"username\":\"jane.doe\",\"displayName\":\"Jane Doe\"}"
#define U2SUM "68719476737:jane.doe:Jane Doe:(null):(null):(null)"
#define STRM                                                                                       \
    "{\"streamId\":\"S1\",\"streamType\":\"ROOM\",\"roomName\":\"Room 1\","                        \
    "\"external\":true,\"crossPod\":false}"
#define SSUM "S1:ROOM:Room 1:1:0"
#define MSG(id)                                                                                    \
    "{\"messageId\":\"" id "\",\"timestamp\":1700000000001,\"message\":\"<p>hi</p>\","             \
    "\"data\":\"{}\",\"attachments\":[{\"id\":\"a1\"}],\"user\":" U2 ",\"stream\":" STRM "}"
#define MSUM(id) id "@1700000000001[<p>hi</p>][{}] by " U2SUM " in " SSUM
#define PROPS                                                                                      \
    "{\"name\":\"Room 1\",\"description\":\"d\",\"creatorUser\":" U2 ","                           \
    "\"createdDate\":1700000001000,\"public\":true,\"readOnly\":false,"                            \
    "\"membersCanInvite\":true,\"keywords\":[{\"key\":\"k\",\"value\":\"v\"}]}"
#define PSUM "props=Room 1|d|" U2SUM "|1700000001000|pub=1|ro=0|inv=1|kw=1"

static const struct {
    const char *type, *payload, *summary;
} types[17] = {
    {"MESSAGESENT", "{\"messageSent\":{\"message\":" MSG("M1") "}}", ISUM " " MSUM("M1") " att=1"},
    {"SHAREDPOST", "{\"sharedPost\":{\"message\":" MSG("M2") ",\"sharedMessage\":" MSG("M3") "}}",
     ISUM " " MSUM("M2") " shares " MSUM("M3")},
    {"INSTANTMESSAGECREATED", "{\"instantMessageCreated\":{\"stream\":" STRM "}}", ISUM " " SSUM},
    {"ROOMCREATED", "{\"roomCreated\":{\"stream\":" STRM ",\"roomProperties\":" PROPS "}}",
     ISUM " " SSUM " " PSUM},
    {"ROOMUPDATED", "{\"roomUpdated\":{\"stream\":" STRM ",\"newRoomProperties\":" PROPS "}}",
     ISUM " " SSUM " " PSUM},
    {"ROOMDEACTIVATED", "{\"roomDeactivated\":{\"stream\":" STRM "}}", ISUM " " SSUM},
    {"ROOMREACTIVATED", "{\"roomReactivated\":{\"stream\":" STRM "}}", ISUM " " SSUM},
    {"USERREQUESTEDTOJOINROOM",
     "{\"userRequestedToJoinRoom\":{\"stream\":" STRM ",\"affectedUsers\":[" U2 "]}}",
     ISUM " " SSUM " users=[" U2 "]"},
    {"USERJOINEDROOM", "{\"userJoinedRoom\":{\"stream\":" STRM ",\"affectedUser\":" U2 "}}",
     ISUM " " SSUM " affected=" U2SUM},
    {"USERLEFTROOM", "{\"userLeftRoom\":{\"stream\":" STRM ",\"affectedUser\":" U2 "}}",
     ISUM " " SSUM " affected=" U2SUM},
    {"ROOMMEMBERPROMOTEDTOOWNER",
     "{\"roomMemberPromotedToOwner\":{\"stream\":" STRM ",\"affectedUser\":" U2 "}}",
     ISUM " " SSUM " affected=" U2SUM},
    {"ROOMMEMBERDEMOTEDFROMOWNER",
     "{\"roomMemberDemotedFromOwner\":{\"stream\":" STRM ",\"affectedUser\":" U2 "}}",
     ISUM " " SSUM " affected=" U2SUM},
    {"CONNECTIONREQUESTED", "{\"connectionRequested\":{\"toUser\":" U2 "}}", ISUM " to=" U2SUM},
    {"CONNECTIONACCEPTED", "{\"connectionAccepted\":{\"fromUser\":" U2 "}}", ISUM " from=" U2SUM},
    {"MESSAGESUPPRESSED", "{\"messageSuppressed\":{\"messageId\":\"M9\",\"stream\":" STRM "}}",
     ISUM " msg=M9 " SSUM},
    {"SYMPHONYELEMENTSACTION",
     "{\"symphonyElementsAction\":{\"stream\":" STRM ",\"formMessageId\":\"FM\",\"formId\":"
     "\"form_id\",\"formValues\":{\"action\":\"submit\",\"n\":-3}}}",
     ISUM " " SSUM " form=FM/form_id values={\"action\":\"submit\",\"n\":-3}"},
    {"GENERICSYSTEMEVENT",
     "{\"genericSystemEvent\":{\"stream\":" STRM ",\"eventTimestamp\":1700000009999,"
     "\"sourceSystem\":\"sys\",\"eventSubtype\":\"sub\",\"parameters\":{\"x\":1.5}}}",
     ISUM " " SSUM " at=1700000009999 sys/sub params={\"x\":1.5}"},
};

static void
event_json(char *out, size_t size, const char *id, const char *type, const char *payload)
{
    snprintf(out, size,
             "{\"id\":\"%s\",\"timestamp\":1700000000000,\"type\":\"%s\"," INIT ",\"payload\":%s}",
             id, type, payload);
}

/*  Checks "worker-K/<id>/<listener>" with 1 <= K <= workers. */
static void
check_context(const char *ctx, const char *id, const char *listener, int workers)
{
    char want_tail[128];
    snprintf(want_tail, sizeof want_tail, "/%s/%s", id, listener);
    int k = 0, used = 0;
    if (sscanf(ctx, "worker-%d%n", &k, &used) != 1 || k < 1 || k > workers ||
        strcmp(ctx + used, want_tail) != 0) {
        fprintf(stderr, "bad context '%s' (want worker-K%s)\n", ctx, want_tail);
        failures++;
    }
}

static void
test_all_types(void)
{
    fx_t f;
    fx_init(&f, "inproc://all", (dfc_config_t){.workers = 4});
    recs_reset();
    dfc_listener_t a = all_callbacks("alpha", "alpha");
    dfc_listener_t b = all_callbacks(NULL, "L2"); /* unnamed: id from subscribe order */
    CHECK_EQ(dfc_loop_subscribe(f.loop, &a), DFC_OK);
    CHECK_EQ(dfc_loop_subscribe(f.loop, &b), DFC_OK);
    fx_start(&f);
    CHECK_STR(dfc_listener_context(), "main");

    char json[4096], id[16];
    int nev = 0;
    for (int round = 0; round < 2; round++) {
        for (int t = 0; t < 17; t++) {
            snprintf(id, sizeof id, "e%d", nev);
            event_json(json, sizeof json, id, types[t].type, types[t].payload);
            fx_pub(&f, types[t].type, (uint64_t)round + 1, json);
            nev++;
        }
    }
    /* an unknown future type and the bridge's UNKNOWN topic */
    fx_pub(&f, "FUTURETYPE", 1,
           "{\"id\":\"e34\",\"type\":\"FUTURETYPE\"," INIT ",\"payload\":{\"futureType\":{}}}");
    fx_pub(&f, "UNKNOWN", 1, "{\"id\":\"e35\"," INIT "}");
    CHECK(wait_recs("alpha", 36));
    CHECK(wait_recs("L2", 36));
    CHECK_EQ(fx_stop(&f) < TU_PROMPT_MS, 1);

    pthread_mutex_lock(&rmu);
    CHECK_EQ(nrecs, 72);
    for (int e = 0; e < 36; e++) {
        snprintf(id, sizeof id, "e%d", e);
        for (int l = 0; l < 2; l++) {
            const char *ln = l ? "L2" : "alpha";
            int seen = 0;
            for (int i = 0; i < nrecs; i++)
                seen += !strcmp(recs[i].listener, ln) && !strcmp(recs[i].id, id);
            CHECK_EQ(seen, 1); /* exactly once per listener */
            const rec_t *r = find_rec(ln, id);
            if (!r)
                continue;
            if (e < 34) {
                if (strcmp(r->summary, types[e % 17].summary) != 0) {
                    fprintf(stderr, "%s %s (%s):\n  got:  %s\n  want: %s\n", ln, id, r->topic,
                            r->summary, types[e % 17].summary);
                    failures++;
                }
                CHECK_STR(r->topic, types[e % 17].type);
            } else {
                CHECK_STR(r->summary,
                          e == 34
                              ? "unknown init=9007199254740993:big:Big Id:Bi:Gid:big@example.com "
                                "type=FUTURETYPE"
                              : "unknown init=9007199254740993:big:Big Id:Bi:Gid:big@example.com "
                                "type=(null)");
            }
            check_context(r->context, id, ln, 4);
        }
    }
    pthread_mutex_unlock(&rmu);

    dfc_stats_t st;
    dfc_loop_stats(f.loop, &st);
    CHECK_EQ(st.received, 36);
    CHECK_EQ(st.dispatched, 72);
    CHECK_EQ(st.completed, 72);
    CHECK_EQ(st.filtered, 0);
    CHECK_EQ(st.unknown_type, 2);
    CHECK_EQ(st.dropped_malformed, 0);
    CHECK_EQ(st.gaps, 0);
    fx_fini(&f);
}

/* ------------------------------------------------------------- filter */

static atomic_int filter_calls;

static bool
accept_all(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i, int64_t bot)
{
    CHECK_EQ(bot, BOT);
    CHECK_STR(dfc_listener_context(), "main"); /* runs on the receiver */
    atomic_fetch_add(&filter_calls, 1);
    return true;
}

static void
test_filter(void)
{
    fx_t f;
    fx_init(&f, "inproc://filter", (dfc_config_t){0});
    recs_reset();
    atomic_store(&filter_calls, 0);
    dfc_listener_t d = {.name = "dflt", .ctx = "dflt", .on_message_sent = c_message_sent};
    dfc_listener_t c = {.name = "custom",
                        .ctx = "custom",
                        .on_message_sent = c_message_sent,
                        .is_accepting_event = accept_all};
    dfc_loop_subscribe(f.loop, &d);
    dfc_loop_subscribe(f.loop, &c);
    fx_start(&f);
    const char *inits[] = {
        "\"initiator\":{\"user\":{\"userId\":68719476738,\"username\":\"my-bot\"}},", /* bot */
        "",                                                                           /* none */
        "\"initiator\":{\"user\":{\"username\":\"no-id\"}},",                         /* no id */
        "\"initiator\":{},",                                                          /* no user */
        "\"initiator\":{\"user\":{\"userId\":\"123\"}},",                             /* str id */
        "\"initiator\":{\"user\":{\"userId\":68719476739,\"username\":\"my-bot\"}},", /* ok */
    };
    char json[1024];
    for (int i = 0; i < 6; i++) {
        snprintf(json, sizeof json,
                 "{\"id\":\"f%d\",\"type\":\"MESSAGESENT\",%s\"payload\":{\"messageSent\":{}}}", i,
                 inits[i]);
        fx_pub(&f, "MESSAGESENT", (uint64_t)i + 1, json);
    }
    /* an event without id: the context says None, like Python */
    fx_pub(&f, "MESSAGESENT", 7, "{\"type\":\"MESSAGESENT\"," INIT "}");
    CHECK(wait_recs("custom", 7));
    CHECK(wait_recs("dflt", 2));
    fx_stop(&f);
    CHECK_EQ(count_recs("dflt"), 2);
    CHECK(find_rec("dflt", "f5") != NULL); /* the bot's username with another id is accepted */
    CHECK_EQ(count_recs("custom"), 7);
    CHECK_EQ(atomic_load(&filter_calls), 7); /* once per event */
    const rec_t *r = find_rec("dflt", "None");
    CHECK(r != NULL);
    if (r)
        check_context(r->context, "None", "dflt", 4);
    dfc_stats_t st;
    dfc_loop_stats(f.loop, &st);
    CHECK_EQ(st.filtered, 5);
    CHECK_EQ(st.dispatched, 9);
    fx_fini(&f);
}

/* -------------------------------------------------------- concurrency */

/*  The BDK's test_events_concurrency_within_same_read_df_chunk: the first
    handler blocks until another one has run. With sequential dispatch this
    would time out (bounded). */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int b_ran, second_ran;
    int a_ok, a_timeout, first_ok, first_timeout;
} conc_t;

static conc_t conc = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0};

static int
conc_wait(int *flag)
{
    struct timespec dl = tu_deadline(5000);
    while (!*flag)
        if (pthread_cond_timedwait(&conc.cond, &conc.mu, &dl) != 0)
            return -1;
    return 0;
}

static void
conc_a(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i, const dfc_message_sent_t *p)
{
    pthread_mutex_lock(&conc.mu);
    if (strcmp(dfc_event_id(ev), "x1") == 0) {
        /* across listeners: wait for B's callback for this same event */
        if (conc_wait(&conc.b_ran) == 0)
            conc.a_ok = 1;
        else
            conc.a_timeout = 1;
    }
    pthread_mutex_unlock(&conc.mu);
    record("A", ev, "a");
}

static void
conc_b(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i, const dfc_message_sent_t *p)
{
    pthread_mutex_lock(&conc.mu);
    if (strcmp(dfc_event_id(ev), "x1") == 0)
        conc.b_ran = 1;
    pthread_cond_broadcast(&conc.cond);
    pthread_mutex_unlock(&conc.mu);
    record("B", ev, "b");
}

static void
conc_c(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i, const dfc_room_created_t *p)
{
    pthread_mutex_lock(&conc.mu);
    if (strcmp(dfc_event_id(ev), "first") == 0) {
        /* across events: wait for this listener's callback for the next event */
        if (conc_wait(&conc.second_ran) == 0)
            conc.first_ok = 1;
        else
            conc.first_timeout = 1;
    } else {
        conc.second_ran = 1;
        pthread_cond_broadcast(&conc.cond);
    }
    pthread_mutex_unlock(&conc.mu);
    record("C", ev, "c");
}

static void
test_concurrency(void)
{
    fx_t f;
    fx_init(&f, "inproc://conc", (dfc_config_t){.workers = 4});
    recs_reset();
    dfc_listener_t a = {.name = "A", .on_message_sent = conc_a};
    dfc_listener_t b = {.name = "B", .on_message_sent = conc_b};
    dfc_listener_t c = {.name = "C", .on_room_created = conc_c};
    dfc_loop_subscribe(f.loop, &a);
    dfc_loop_subscribe(f.loop, &b);
    dfc_loop_subscribe(f.loop, &c);
    fx_start(&f);
    fx_pub(&f, "MESSAGESENT", 1, "{\"id\":\"x1\",\"type\":\"MESSAGESENT\"," INIT "}");
    fx_pub(&f, "ROOMCREATED", 1, "{\"id\":\"first\",\"type\":\"ROOMCREATED\"," INIT "}");
    fx_pub(&f, "ROOMCREATED", 2, "{\"id\":\"second\",\"type\":\"ROOMCREATED\"," INIT "}");
    CHECK(wait_recs("A", 1));
    CHECK(wait_recs("C", 2));
    fx_stop(&f);
    CHECK_EQ(conc.a_ok, 1);
    CHECK_EQ(conc.a_timeout, 0);
    CHECK_EQ(conc.first_ok, 1);
    CHECK_EQ(conc.first_timeout, 0);
    fx_fini(&f);
}

/* ----------------------------------------- subscribe / unsubscribe live */

static fx_t *live;
static dfc_listener_t live_self, live_late, live_block;
static atomic_int self_unsub_rc = 99, late_sub_rc = 99, inner_start_rc = 99;

static void
self_unsub(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i, const dfc_message_sent_t *p)
{
    /* from its own callback: must return at once, not wait for itself */
    atomic_store(&self_unsub_rc, dfc_loop_unsubscribe(live->loop, &live_self));
    /* subscribing from a callback is allowed too; start is refused */
    atomic_store(&late_sub_rc, dfc_loop_subscribe(live->loop, &live_late));
    atomic_store(&inner_start_rc, dfc_loop_start(live->loop));
    record("self", ev, "self");
}

static pthread_mutex_t bmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t bcond = PTHREAD_COND_INITIALIZER;
static int block_entered, block_release, unsub_returned;

static void
blocker(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i, const dfc_room_created_t *p)
{
    pthread_mutex_lock(&bmu);
    block_entered = 1;
    pthread_cond_broadcast(&bcond);
    struct timespec dl = tu_deadline(WAIT_MS);
    while (!block_release && pthread_cond_timedwait(&bcond, &bmu, &dl) == 0)
        ;
    pthread_mutex_unlock(&bmu);
    record("block", ev, "block");
}

static void *
unsub_thread(void *arg)
{
    int rc = dfc_loop_unsubscribe(live->loop, &live_block);
    pthread_mutex_lock(&bmu);
    unsub_returned = rc == DFC_OK ? 1 : -1;
    pthread_cond_broadcast(&bcond);
    pthread_mutex_unlock(&bmu);
    return NULL;
}

static void
test_subscribe_live(void)
{
    fx_t f;
    fx_init(&f, "inproc://live", (dfc_config_t){0});
    live = &f;
    recs_reset();
    dfc_listener_t a = {.name = "a", .ctx = "a", .on_message_sent = c_message_sent};
    dfc_listener_t b = {.name = "b", .ctx = "b", .on_message_sent = c_message_sent};
    live_self = (dfc_listener_t){.name = "self", .on_message_sent = self_unsub};
    live_late = (dfc_listener_t){.name = "late", .ctx = "late", .on_message_sent = c_message_sent};
    live_block = (dfc_listener_t){.name = "block", .on_room_created = blocker};
    dfc_loop_subscribe(f.loop, &a);
    fx_start(&f);
    CHECK_EQ(dfc_loop_start(f.loop), DFC_EALREADY); /* double start */

    fx_pub(&f, "MESSAGESENT", 1, "{\"id\":\"s1\",\"type\":\"MESSAGESENT\"," INIT "}");
    CHECK(wait_recs("a", 1));
    CHECK_EQ(dfc_loop_subscribe(f.loop, &b), DFC_OK); /* while running */
    fx_pub(&f, "MESSAGESENT", 2, "{\"id\":\"s2\",\"type\":\"MESSAGESENT\"," INIT "}");
    CHECK(wait_recs("a", 2));
    CHECK(wait_recs("b", 1));
    CHECK_EQ(dfc_loop_unsubscribe(f.loop, &a), DFC_OK);
    CHECK_EQ(dfc_loop_unsubscribe(f.loop, &a), DFC_ENOTFOUND);
    fx_pub(&f, "MESSAGESENT", 3, "{\"id\":\"s3\",\"type\":\"MESSAGESENT\"," INIT "}");
    CHECK(wait_recs("b", 2));
    CHECK_EQ(count_recs("a"), 2);
    CHECK(find_rec("b", "s1") == NULL && find_rec("b", "s3") != NULL);

    /* self-unsubscribe from inside the callback */
    dfc_loop_subscribe(f.loop, &live_self);
    fx_pub(&f, "MESSAGESENT", 4, "{\"id\":\"s4\",\"type\":\"MESSAGESENT\"," INIT "}");
    CHECK(wait_recs("self", 1));
    CHECK_EQ(atomic_load(&self_unsub_rc), DFC_OK);
    CHECK_EQ(atomic_load(&late_sub_rc), DFC_OK);
    CHECK_EQ(atomic_load(&inner_start_rc), DFC_EALREADY);
    fx_pub(&f, "MESSAGESENT", 5, "{\"id\":\"s5\",\"type\":\"MESSAGESENT\"," INIT "}");
    fx_pub(&f, "MESSAGESENT", 6, "{\"id\":\"s6\",\"type\":\"MESSAGESENT\"," INIT "}");
    CHECK(wait_recs("b", 5));
    CHECK(wait_recs("late", 2));
    CHECK_EQ(count_recs("self"), 1);
    CHECK(find_rec("late", "s4") == NULL); /* subscribed during s4: not replayed */

    /* unsubscribe waits for the listener's running job */
    dfc_loop_subscribe(f.loop, &live_block);
    fx_pub(&f, "ROOMCREATED", 1, "{\"id\":\"r1\",\"type\":\"ROOMCREATED\"," INIT "}");
    pthread_mutex_lock(&bmu);
    struct timespec dl = tu_deadline(WAIT_MS);
    while (!block_entered && pthread_cond_timedwait(&bcond, &bmu, &dl) == 0)
        ;
    CHECK_EQ(block_entered, 1);
    pthread_mutex_unlock(&bmu);
    pthread_t th;
    pthread_create(&th, NULL, unsub_thread, NULL);
    pthread_mutex_lock(&bmu);
    /* a negative check: give unsubscribe 300 ms to (wrongly) return */
    dl = tu_deadline(300);
    while (!unsub_returned && pthread_cond_timedwait(&bcond, &bmu, &dl) == 0)
        ;
    CHECK_EQ(unsub_returned, 0);
    block_release = 1;
    pthread_cond_broadcast(&bcond);
    dl = tu_deadline(WAIT_MS);
    while (!unsub_returned && pthread_cond_timedwait(&bcond, &bmu, &dl) == 0)
        ;
    CHECK_EQ(unsub_returned, 1);
    pthread_mutex_unlock(&bmu);
    pthread_join(th, NULL);
    CHECK_EQ(count_recs("block"), 1);
    fx_fini(&f);
}

/* ------------------------------ unsubscribe while its filter runs (A1) */

/*  The filter of listener "uaf" owns a malloc'ed ctx that the test frees as
    soon as unsubscribe returns: the filter must never run after that. */
typedef struct {
    atomic_int calls;
} uaf_ctx_t;

static pthread_mutex_t umu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ucond = PTHREAD_COND_INITIALIZER;
static int uaf_entered, uaf_calling, uaf_freed;
static atomic_int uaf_done, uaf_after, uaf_early;

static bool
uaf_filter(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i, int64_t bot)
{
    (void)ev, (void)i, (void)bot;
    if (atomic_load(&uaf_done))
        atomic_fetch_add(&uaf_after, 1); /* entered after unsubscribe returned */
    uaf_ctx_t *c = ctx;
    if (atomic_fetch_add(&c->calls, 1) == 0) {
        pthread_mutex_lock(&umu);
        uaf_entered = 1;
        pthread_cond_broadcast(&ucond);
        struct timespec dl = tu_deadline(WAIT_MS);
        while (!uaf_calling && pthread_cond_timedwait(&ucond, &umu, &dl) == 0)
            ;
        /* a negative check: give unsubscribe 300 ms to (wrongly) return
           while we are still inside the filter */
        dl = tu_deadline(300);
        while (!atomic_load(&uaf_done) && pthread_cond_timedwait(&ucond, &umu, &dl) == 0)
            ;
        if (atomic_load(&uaf_done)) {
            atomic_fetch_add(&uaf_early, 1);
            /* make the broken case deterministic: read ctx after the free */
            dl = tu_deadline(WAIT_MS);
            while (!uaf_freed && pthread_cond_timedwait(&ucond, &umu, &dl) == 0)
                ;
        }
        pthread_mutex_unlock(&umu);
    }
    return atomic_load(&c->calls) < 0; /* reads ctx again: a use after free under ASan */
}

static void
test_unsubscribe_filter(void)
{
    fx_t f;
    fx_init(&f, "inproc://uaf", (dfc_config_t){.workers = 2, .dedupe_window = -1});
    recs_reset();
    uaf_ctx_t *ctx = calloc(1, sizeof *ctx);
    dfc_listener_t u = {.name = "uaf",
                        .ctx = ctx,
                        .is_accepting_event = uaf_filter,
                        .on_message_sent = c_message_sent};
    dfc_listener_t w = {.name = "w", .ctx = "w", .on_message_sent = c_message_sent};
    dfc_loop_subscribe(f.loop, &u);
    dfc_loop_subscribe(f.loop, &w);
    fx_start(&f);
    for (int k = 1; k <= 50; k++)
        fx_pub(&f, "MESSAGESENT", (uint64_t)k, "{\"id\":\"u\",\"type\":\"MESSAGESENT\"," INIT "}");
    pthread_mutex_lock(&umu);
    struct timespec dl = tu_deadline(WAIT_MS);
    while (!uaf_entered && pthread_cond_timedwait(&ucond, &umu, &dl) == 0)
        ;
    CHECK_EQ(uaf_entered, 1);
    uaf_calling = 1;
    pthread_cond_broadcast(&ucond);
    pthread_mutex_unlock(&umu);
    CHECK_EQ(dfc_loop_unsubscribe(f.loop, &u), DFC_OK);
    pthread_mutex_lock(&umu);
    atomic_store(&uaf_done, 1);
    pthread_cond_broadcast(&ucond);
    pthread_mutex_unlock(&umu);
    free(ctx);
    pthread_mutex_lock(&umu);
    uaf_freed = 1;
    pthread_cond_broadcast(&ucond);
    pthread_mutex_unlock(&umu);
    for (int k = 51; k <= 100; k++)
        fx_pub(&f, "MESSAGESENT", (uint64_t)k, "{\"id\":\"u\",\"type\":\"MESSAGESENT\"," INIT "}");
    CHECK(wait_recs("w", 100)); /* every event went past the filter's place */
    fx_stop(&f);
    CHECK_EQ(atomic_load(&uaf_early), 0);
    CHECK_EQ(atomic_load(&uaf_after), 0);
    CHECK_EQ(count_recs("uaf"), 0); /* it refused the one event it saw */
    fx_fini(&f);
}

/* ------------------------------------------------------ stop and start */

static dfc_loop_t *sig_loop;

static void
on_usr1(int sig)
{
    dfc_loop_stop(sig_loop);
}

static void
test_stop(void)
{
    fx_t f;
    fx_init(&f, "inproc://stop", (dfc_config_t){.workers = 2});
    recs_reset();
    dfc_listener_t a = {.name = "a", .ctx = "a", .on_message_sent = c_message_sent};
    dfc_loop_subscribe(f.loop, &a);

    /* sticky stop: a stop before start makes start return at once */
    dfc_loop_stop(f.loop);
    int64_t t0 = tu_now_ms();
    CHECK_EQ(dfc_loop_start(f.loop), DFC_OK);
    CHECK(tu_now_ms() - t0 < TU_PROMPT_MS);

    /* stop from another thread */
    fx_start(&f);
    fx_pub(&f, "MESSAGESENT", 1, "{\"id\":\"t1\",\"type\":\"MESSAGESENT\"," INIT "}");
    CHECK(wait_recs("a", 1));
    int64_t took = fx_stop(&f);
    CHECK(took < TU_PROMPT_MS);

    /* restart, then stop from a signal handler */
    sig_loop = f.loop;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    fx_start(&f);
    fx_pub(&f, "MESSAGESENT", 2, "{\"id\":\"t2\",\"type\":\"MESSAGESENT\"," INIT "}");
    CHECK(wait_recs("a", 2));
    t0 = tu_now_ms();
    pthread_kill(f.th, SIGUSR1);
    pthread_join(f.th, NULL);
    f.started = false;
    CHECK(tu_now_ms() - t0 < TU_PROMPT_MS);
    CHECK_EQ(f.start_rc, DFC_OK);

    /* start returns only after the in-flight job finished */
    dfc_listener_t blk = {.name = "block", .on_room_created = blocker};
    dfc_loop_subscribe(f.loop, &blk);
    block_entered = block_release = 0;
    fx_start(&f);
    fx_pub(&f, "ROOMCREATED", 1, "{\"id\":\"t3\",\"type\":\"ROOMCREATED\"," INIT "}");
    pthread_mutex_lock(&bmu);
    struct timespec dl = tu_deadline(WAIT_MS);
    while (!block_entered && pthread_cond_timedwait(&bcond, &bmu, &dl) == 0)
        ;
    pthread_mutex_unlock(&bmu);
    CHECK_EQ(block_entered, 1);
    dfc_loop_stop(f.loop);
    struct timespec wait300 = tu_deadline(300);
    CHECK(pthread_timedjoin_np(f.th, NULL, &wait300) != 0); /* still waiting for the job */
    pthread_mutex_lock(&bmu);
    block_release = 1;
    pthread_cond_broadcast(&bcond);
    pthread_mutex_unlock(&bmu);
    pthread_join(f.th, NULL);
    f.started = false;
    CHECK_EQ(count_recs("block"), 1);
    dfc_stats_t st;
    dfc_loop_stats(f.loop, &st);
    CHECK_EQ(st.completed, st.dispatched);
    signal(SIGUSR1, SIG_DFL);
    fx_fini(&f);
}

/* ------------------------------------------------------- back-pressure */

static pthread_mutex_t gmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gcond = PTHREAD_COND_INITIALIZER;
static int gate_open;
static dfc_listener_t gated_l;
static fx_t *gated_fx;

/*  Blocks on event "b1" until the gate opens (bounded); records every call. */
static void
gated(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i, const dfc_message_sent_t *p)
{
    if (strcmp(dfc_event_id(ev), "b1") == 0) {
        pthread_mutex_lock(&gmu);
        struct timespec dl = tu_deadline(WAIT_MS);
        while (!gate_open && pthread_cond_timedwait(&gcond, &gmu, &dl) == 0)
            ;
        pthread_mutex_unlock(&gmu);
    }
    record("gated", ev, "g");
}

static void
open_gate(void)
{
    pthread_mutex_lock(&gmu);
    gate_open = 1;
    pthread_cond_broadcast(&gcond);
    pthread_mutex_unlock(&gmu);
}

/*  Waits (bounded) until the counter at offset equals n. Polls: nothing
    signals "the receiver is blocked on a full queue". */
static bool
wait_stat(dfc_loop_t *loop, size_t offset, uint64_t n)
{
    dfc_stats_t st;
    int64_t end = tu_now_ms() + WAIT_MS; /* a deadline, not a count of sleeps */
    while (tu_now_ms() < end) {
        dfc_loop_stats(loop, &st);
        if (*(uint64_t *)((char *)&st + offset) == n)
            return true;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    return false;
}
#define wait_received(loop, n) wait_stat(loop, offsetof(dfc_stats_t, received), n)

static void *
unsub_gated(void *arg)
{
    CHECK_EQ(dfc_loop_unsubscribe(gated_fx->loop, &gated_l), DFC_OK);
    return NULL;
}

static void
test_backpressure(void)
{
    char json[256];
    for (int variant = 0; variant < 2; variant++) {
        fx_t f;
        /* one worker, a queue of two: one job runs, two wait, the receiver
           then blocks and the rest stays in the SUB socket */
        fx_init(&f, variant ? "inproc://bp1" : "inproc://bp0",
                (dfc_config_t){.workers = 1, .queue_size = 2});
        recs_reset();
        gate_open = 0;
        gated_l = (dfc_listener_t){.name = "gated", .on_message_sent = gated};
        gated_fx = &f;

        dfc_loop_subscribe(f.loop, &gated_l);
        fx_start(&f);
        for (int i = 1; i <= 10; i++) {
            snprintf(json, sizeof json, "{\"id\":\"b%d\"," INIT "}", i);
            fx_pub(&f, "MESSAGESENT", (uint64_t)i, json);
        }
        CHECK(wait_received(f.loop, 4));
        dfc_stats_t st;
        /* the signal that b4's job waits for room, not just that b4 was read
           (its filter and the listener check are then behind it) */
        int64_t end = tu_now_ms() + WAIT_MS;
        while (!dfc_loop_receiver_waits(f.loop) && tu_now_ms() < end)
            usleep(1000);
        CHECK(dfc_loop_receiver_waits(f.loop));
        dfc_loop_stats(f.loop, &st);
        CHECK(st.queue_waits >= 1);
        CHECK_EQ(st.received, 4); /* bounded: the other 6 wait in ZeroMQ */
        CHECK_EQ(st.dispatched, 3);
        if (variant == 0) {
            /* stop while the receiver waits for room: it gives up at once */
            dfc_loop_stop(f.loop);
            open_gate();
            pthread_join(f.th, NULL);
            f.started = false;
            dfc_loop_stats(f.loop, &st);
            CHECK_EQ(st.dispatched, 3);
            CHECK_EQ(st.completed, 3);
            CHECK_EQ(st.dropped_at_stop, 1);
            CHECK_EQ(count_recs("gated"), 3);
        } else {
            /* unsubscribe while b1 runs and b2, b3 are queued (and b4 waits
               for room): it returns once b1 is done, b2..b4 are skipped,
               b5..b10 are received and go nowhere */
            pthread_t th;
            pthread_create(&th, NULL, unsub_gated, NULL);
            CHECK(wait_stat(f.loop, offsetof(dfc_stats_t, listeners), 0));
            open_gate();
            pthread_join(th, NULL);
            CHECK(wait_received(f.loop, 10));
            fx_stop(&f);
            dfc_loop_stats(f.loop, &st);
            CHECK_EQ(st.completed, 1);
            CHECK_EQ(st.skipped, 3);
            CHECK_EQ(st.dispatched, 4);
            CHECK_EQ(count_recs("gated"), 1);
        }
        fx_fini(&f);
    }
}

/* ------------------------------------------------------------ hostile */

static void
test_hostile(void)
{
    fx_t f;
    fx_init(&f, "inproc://hostile", (dfc_config_t){.max_frame = 16384});
    recs_reset();
    dfc_listener_t a = {.name = "a", .ctx = "a", .on_message_sent = c_message_sent};
    dfc_loop_subscribe(f.loop, &a);
    fx_start(&f);

    static uint8_t deep[10001], dfs[64];
    memset(deep, 0x91, 10000);
    deep[10000] = 0xc0;
    memset(dfs, 0xdf, sizeof dfs);
    struct {
        const void *p;
        size_t n;
    } bodies[] = {
        {"\xdd\xff\xff\xff\xff", 5},
        {dfs, sizeof dfs},
        {"\xdb\x00\x00\x10\x00"
         "abc",
         8},
        {deep, sizeof deep},
        {"\x81\x01\x02", 3},
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        CHECK(tu_send2(f.xpub, "MESSAGESENT", bodies[i].p, bodies[i].n) == 0);
    /* 1 frame, 3 frames, a topic longer than any type */
    zmq_send(f.xpub, "MESSAGESENT", 11, 0);
    zmq_send(f.xpub, "MESSAGESENT", 11, ZMQ_SNDMORE);
    zmq_send(f.xpub, "\x80", 1, ZMQ_SNDMORE);
    zmq_send(f.xpub, "x", 1, 0);
    char topic[300];
    memset(topic, 'T', sizeof topic - 1);
    topic[sizeof topic - 1] = '\0';
    tu_envelope(&f.sb, 1, 1, "e", BOT, "{}");
    tu_send2(f.xpub, topic, f.sb.data, f.sb.size);
    tu_send2(f.xpub, "", f.sb.data, f.sb.size); /* empty topic */

    /* oversize: a valid message above max_frame */
    static char big[20001], json[20100];
    memset(big, 'x', 20000);
    big[20000] = '\0';
    snprintf(json, sizeof json, "{\"id\":\"big\",\"pad\":\"%s\"}", big);
    tu_envelope(&f.sb, 1, 1, "e", BOT, json);
    tu_send2(f.xpub, "MESSAGESENT", f.sb.data, f.sb.size);

    /* envelope problems: v=2, not a map, seq as str, event as str */
    msgpack_packer pk;
    msgpack_packer_init(&pk, &f.sb, msgpack_sbuffer_write);
    msgpack_sbuffer_clear(&f.sb);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_uint64(&pk, 2);
    msgpack_pack_str_with_body(&pk, "event", 5);
    msgpack_pack_map(&pk, 0);
    tu_send2(f.xpub, "MESSAGESENT", f.sb.data, f.sb.size);
    tu_send2(f.xpub, "MESSAGESENT", "\x92\x01\x02", 3);
    /* a full envelope with seq as a str, then with event as a str */
    const char *keys[] = {"v", "seq", "gseq", "epoch", "ts", "bot", "event"};
    for (int variant = 0; variant < 2; variant++) {
        msgpack_sbuffer_clear(&f.sb);
        msgpack_pack_map(&pk, 7);
        for (int k = 0; k < 7; k++) {
            msgpack_pack_str_with_body(&pk, keys[k], strlen(keys[k]));
            if (k == 3)
                msgpack_pack_str_with_body(&pk, "e", 1);
            else if (k == 1 && variant == 0)
                msgpack_pack_str_with_body(&pk, "1", 1);
            else if (k == 6 && variant == 1)
                msgpack_pack_str_with_body(&pk, "{}", 2);
            else if (k == 6)
                msgpack_pack_map(&pk, 0);
            else
                msgpack_pack_uint64(&pk, 1);
        }
        tu_send2(f.xpub, "MESSAGESENT", f.sb.data, f.sb.size);
    }

    /* a reserved "_" topic (bridge's own): ignored, whatever its body */
    tu_send2(f.xpub, "_heartbeat", "\xc1", 1);

    /* the probe: once it arrives, everything before it was handled */
    fx_pub(&f, "MESSAGESENT", 1, "{\"id\":\"probe\",\"type\":\"MESSAGESENT\"," INIT "}");
    CHECK(wait_recs("a", 1));
    CHECK(find_rec("a", "probe") != NULL);
    fx_stop(&f);
    dfc_stats_t st;
    dfc_loop_stats(f.loop, &st);
    CHECK_EQ(st.received, 16);
    CHECK_EQ(st.reserved, 1);
    CHECK_EQ(st.bad_msgpack, 5);
    CHECK_EQ(st.bad_frames, 4);
    CHECK_EQ(st.oversize, 1);
    CHECK_EQ(st.bad_version, 1);
    CHECK_EQ(st.not_map, 1);
    CHECK_EQ(st.bad_envelope, 1);
    CHECK_EQ(st.bad_event, 1);
    CHECK_EQ(st.dropped_malformed, 14);
    CHECK_EQ(st.dispatched, 1);
    CHECK_EQ(count_recs("a"), 1);
    fx_fini(&f);
}

/* ------------------------------------------------ tcp and ZMQ_MAXMSGSIZE */

/*  Over tcp libzmq enforces max_frame itself: the peer is disconnected, the
    SUB reconnects, and the socket monitor makes that visible. */
static void
test_tcp_oversize(void)
{
    fx_t f;
    fx_init(&f, "tcp://127.0.0.1:*", (dfc_config_t){.max_frame = 1024});
    recs_reset();
    dfc_listener_t a = {.name = "a", .ctx = "a", .on_message_sent = c_message_sent};
    dfc_loop_subscribe(f.loop, &a);
    fx_start(&f);
    CHECK(wait_stat(f.loop, offsetof(dfc_stats_t, connects), 1));
    fx_pub(&f, "MESSAGESENT", 1, "{\"id\":\"before\",\"type\":\"MESSAGESENT\"," INIT "}");
    CHECK(wait_recs("a", 1));
    static char big[4001], json[4100];
    memset(big, 'x', 4000);
    big[4000] = '\0';
    snprintf(json, sizeof json, "{\"id\":\"big\",\"pad\":\"%s\"}", big);
    fx_pub(&f, "MESSAGESENT", 2, json);
    /* the SUB comes back and subscribes again */
    CHECK(tu_wait_subscription(f.xpub, WAIT_MS) == 0);
    fx_pub(&f, "MESSAGESENT", 3, "{\"id\":\"after\",\"type\":\"MESSAGESENT\"," INIT "}");
    CHECK(wait_recs("a", 2));
    CHECK(find_rec("a", "after") != NULL);
    CHECK(wait_stat(f.loop, offsetof(dfc_stats_t, connects), 2));
    fx_stop(&f);
    dfc_stats_t st;
    dfc_loop_stats(f.loop, &st);
    CHECK_EQ(st.received, 2); /* the big one never reached us */
    CHECK_EQ(st.disconnects, 1);
    CHECK_EQ(st.connects, 2);
    CHECK_EQ(st.gaps, 1); /* and seq shows it */
    fx_fini(&f);
}

/* ------------------------------------- two bridges, connect while running */

static void
test_two_bridges(void)
{
    fx_t f; /* bridge 1: connected before start */
    fx_init(&f, "inproc://bridge1", (dfc_config_t){0});
    recs_reset();
    dfc_listener_t a = {.name = "a", .ctx = "a", .on_message_sent = c_message_sent};
    dfc_loop_subscribe(f.loop, &a);
    fx_start(&f);
    /* bridge 2: a second publisher with its own epoch, connected while running */
    void *x2 = zmq_socket(f.zctx, ZMQ_XPUB);
    int linger = 0;
    zmq_setsockopt(x2, ZMQ_LINGER, &linger, sizeof linger);
    CHECK(zmq_bind(x2, "inproc://bridge2") == 0);
    CHECK_EQ(dfc_loop_connect(f.loop, "inproc://bridge2"), DFC_OK);
    CHECK(tu_wait_subscription(x2, WAIT_MS) == 0);
    char json[256];
    for (int i = 1; i <= 3; i++) {
        snprintf(json, sizeof json, "{\"id\":\"one%d\"," INIT "}", i);
        tu_envelope(&f.sb, (uint64_t)i, (uint64_t)i, "epoch-1", BOT, json);
        tu_send2(f.xpub, "MESSAGESENT", f.sb.data, f.sb.size);
        snprintf(json, sizeof json, "{\"id\":\"two%d\"," INIT "}", i);
        /* its counters are elsewhere: a per-topic-only count would see gaps */
        tu_envelope(&f.sb, (uint64_t)i + 9, (uint64_t)i + 9, "epoch-2", BOT, json);
        tu_send2(x2, "MESSAGESENT", f.sb.data, f.sb.size);
    }
    CHECK(wait_recs("a", 6));
    fx_stop(&f);
    CHECK(find_rec("a", "one3") && find_rec("a", "two3"));
    dfc_stats_t st;
    dfc_loop_stats(f.loop, &st);
    CHECK_EQ(st.received, 6);
    CHECK_EQ(st.gaps, 0); /* seq is tracked per (epoch, topic): no false gaps */
    zmq_close(x2);
    fx_fini(&f);
}

/* --------------------------------------------------------------- gaps */

static void
test_gaps(void)
{
    fx_t f;
    /* one event id for eight distinct messages: with the dedupe window on
       (the default) seven would be taken for redeliveries */
    fx_init(&f, "inproc://gaps", (dfc_config_t){.dedupe_window = -1});
    recs_reset();
    dfc_listener_t u = {
        .name = "u", .ctx = "u", .on_unknown = c_unknown, .is_accepting_event = accept_all};
    dfc_loop_subscribe(f.loop, &u);
    fx_start(&f);
    struct {
        const char *topic, *epoch;
        uint64_t seq;
    } msgs[] = {{"X", "a", 1}, {"X", "a", 2}, {"X", "a", 5},  /* 3 and 4 missing */
                {"X", "b", 1},                                /* new epoch: baseline */
                {"Y", "a", 3},                                /* first on Y: baseline */
                {"Y", "a", 4}, {"X", "a", 6}, {"X", "a", 6}}; /* duplicate: no gap */
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
        tu_envelope(&f.sb, msgs[i].seq, i + 1, msgs[i].epoch, BOT, "{\"id\":\"g\"}");
        tu_send2(f.xpub, msgs[i].topic, f.sb.data, f.sb.size);
    }
    CHECK(wait_recs("u", 8));
    fx_stop(&f);
    dfc_stats_t st;
    dfc_loop_stats(f.loop, &st);
    CHECK_EQ(st.gaps, 2);
    CHECK_EQ(st.unknown_type, 8);
    char info[1024];
    size_t need = dfc_stats_format(&st, info, sizeof info);
    CHECK_EQ(need, strlen(info));
    const char *head = "listeners:1\nconnects:0\ndisconnects:0\nreceived:8\n";
    CHECK(strncmp(info, head, strlen(head)) == 0);
    CHECK(strstr(info, "\nunknown_type:8\nreserved:0\ngaps:2\n") != NULL);
    CHECK_EQ(dfc_stats_format(&st, NULL, 0), need);
    fx_fini(&f);
}

/* ------------------------------------- bytes with lengths (A4) */

/*  Ids, epochs and topics that differ only after a NUL byte are different:
    none of them may be taken for a duplicate or for the same gap key. */
static void
test_nul_bytes(void)
{
    fx_t f;
    fx_init(&f, "inproc://nul", (dfc_config_t){0});
    recs_reset();
    dfc_listener_t u = {.name = "n",
                        .ctx = "n",
                        .on_message_sent = c_message_sent,
                        .on_unknown = c_unknown,
                        .is_accepting_event = accept_all};
    dfc_loop_subscribe(f.loop, &u);
    fx_start(&f);
    /* four ids that differ after a NUL, then a real duplicate of the first */
    const char *ids[] = {"k\\u00001", "k\\u00002", "k\\u00003", "k\\u00004", "k\\u00001"};
    for (int i = 0; i < 5; i++) {
        char json[256];
        snprintf(json, sizeof json, "{\"id\":\"%s\",\"type\":\"MESSAGESENT\"," INIT "}", ids[i]);
        tu_envelope(&f.sb, (uint64_t)i + 1, (uint64_t)i + 1, "ep", BOT, json);
        CHECK(tu_send2(f.xpub, "MESSAGESENT", f.sb.data, f.sb.size) == 0);
    }
    /* epochs "e\0a" then "e\0b": a new epoch (a baseline), not a gap of 4 */
    tu_envelope_n(&f.sb, 1, 1, "e\0a", 3, BOT, "{\"id\":\"x1\",\"type\":\"T\"}");
    CHECK(tu_send2(f.xpub, "T", f.sb.data, f.sb.size) == 0);
    tu_envelope_n(&f.sb, 6, 6, "e\0b", 3, BOT, "{\"id\":\"x2\",\"type\":\"T\"}");
    CHECK(tu_send2(f.xpub, "T", f.sb.data, f.sb.size) == 0);
    /* topics "Z\0a" then "Z\0b" (unknown types): two topics, not a gap of 2 */
    tu_envelope(&f.sb, 1, 7, "ep", BOT, "{\"id\":\"z1\",\"type\":\"Z\"}");
    CHECK(tu_send2n(f.xpub, "Z\0a", 3, f.sb.data, f.sb.size) == 0);
    tu_envelope(&f.sb, 4, 8, "ep", BOT, "{\"id\":\"z2\",\"type\":\"Z\"}");
    CHECK(tu_send2n(f.xpub, "Z\0b", 3, f.sb.data, f.sb.size) == 0);
    CHECK(wait_recs("n", 8));
    fx_stop(&f);
    dfc_stats_t st;
    dfc_loop_stats(f.loop, &st);
    CHECK_EQ(st.received, 9);
    CHECK_EQ(st.duplicates, 1);
    CHECK_EQ(st.completed, 8);
    CHECK_EQ(st.gaps, 0);
    CHECK_EQ(count_recs("n"), 8);
    fx_fini(&f);
}

/* ------------------------- configuration and out-of-memory paths (A6) */

static void
test_config_errors(void)
{
    char *logbuf = NULL;
    size_t loglen = 0;
    FILE *mem = open_memstream(&logbuf, &loglen);
    dfc_log_set_stream(mem);
    dfc_loop_t *l = dfc_loop_new(&(dfc_config_t){.checkpoint_dir = "/tmp"});
    CHECK(l == NULL);
    l = dfc_loop_new(&(dfc_config_t){.checkpoint_dir = "/tmp", .name = ""});
    CHECK(l == NULL);
    dfc_log_set_stream(NULL);
    fclose(mem);
    CHECK(logbuf && strstr(logbuf, "invalid argument: checkpoint_dir needs a name") != NULL);
    CHECK(logbuf && strstr(logbuf, "out of memory") == NULL);
    free(logbuf);
}

/*  The receiver cannot grow its link table: one error line, one counter,
    and the link is opened on the next timer tick. */
static void
test_connect_oom(void)
{
    fx_t f;
    fx_init(&f, "inproc://oom", (dfc_config_t){0});
    recs_reset();
    dfc_listener_t a = {.name = "a", .ctx = "a", .on_message_sent = c_message_sent};
    dfc_loop_subscribe(f.loop, &a);
    /* two failures: the first connect at start and the one that the wake
       byte of dfc_loop_connect triggers; only the timer's retry is left */
    dfc_alloc_fail_next(2);
    fx_start(&f); /* waits for the subscription: the link was opened after all */
    dfc_alloc_fail_next(0);
    fx_pub(&f, "MESSAGESENT", 1, "{\"id\":\"o1\",\"type\":\"MESSAGESENT\"," INIT "}");
    CHECK(wait_recs("a", 1));
    fx_stop(&f);
    dfc_stats_t st;
    dfc_loop_stats(f.loop, &st);
    CHECK_EQ(st.alloc_failures, 2);
    CHECK_EQ(st.received, 1);
    fx_fini(&f);
}

int
main(void)
{
    dfc_log_set_level(DFC_LOG_ERROR);
    CHECK_STR(dfc_strerror(DFC_EALREADY), "the loop is already started");
    test_all_types();
    test_filter();
    test_concurrency();
    test_subscribe_live();
    test_unsubscribe_filter();
    test_stop();
    test_backpressure();
    test_hostile();
    test_tcp_oversize();
    test_two_bridges();
    test_gaps();
    test_nul_bytes();
    test_config_errors();
    test_connect_oom();
    return df_check_report("consumer_loop");
}
