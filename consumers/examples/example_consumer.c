/*  example_consumer: a bot-style worker on libdfconsumer. Two listeners:
    "printer" logs a one-line summary of every event type, "mentions" reacts
    to MESSAGESENT only. Each line carries its context (worker/event/listener).
    --metrics ADDR serves the loop's counters on http://ADDR/metrics
    (Prometheus text, dfc_stats_prometheus) with libmicrohttpd. */
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "dfconsumer.h"
#include "metrics_http.h"

static dfc_loop_t *the_loop;

static void
on_signal(int sig)
{
    (void)sig;
    dfc_loop_stop(the_loop); /* async-signal-safe */
}

static const char *
who(const dfc_initiator_t *i)
{
    return i->user.display_name ? i->user.display_name : i->user.username ? i->user.username : "?";
}

static const char *
s(const char *str)
{
    return str ? str : "-";
}

/*  The /metrics page: a snapshot of the counters (dfc_loop_stats is
    thread-safe) with the --metrics-label labels. */
static const char **metric_labels; /* name, value, ..., NULL */

static size_t
render_metrics(void *ctx, char *buf, size_t size)
{
    dfc_stats_t st;
    dfc_loop_stats(ctx, &st);
    return dfc_stats_prometheus(&st, metric_labels, buf, size);
}

/* ------------------------------------------------------------- printer */

static void
p_message_sent(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
               const dfc_message_sent_t *p)
{
    dfc_log(DFC_LOG_INFO, "MESSAGESENT by %s (%lld) in %s [%s]: %zu bytes of PresentationML",
            who(i), (long long)i->user.user_id, s(p->message.stream.stream_id),
            s(p->message.stream.stream_type), p->message.message ? strlen(p->message.message) : 0);
}
static void
p_shared_post(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
              const dfc_shared_post_t *p)
{
    dfc_log(DFC_LOG_INFO, "SHAREDPOST by %s: %s shares %s", who(i), s(p->message.message_id),
            s(p->shared_message.message_id));
}
#define STREAM_PRINTER(fn, T, label)                                                               \
    static void fn(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i, const T *p)         \
    {                                                                                              \
        dfc_log(DFC_LOG_INFO, label " by %s: stream %s (%s)", who(i), s(p->stream.stream_id),      \
                s(p->stream.stream_type));                                                         \
    }
STREAM_PRINTER(p_im_created, dfc_instant_message_created_t, "INSTANTMESSAGECREATED")
STREAM_PRINTER(p_room_deactivated, dfc_room_deactivated_t, "ROOMDEACTIVATED")
STREAM_PRINTER(p_room_reactivated, dfc_room_reactivated_t, "ROOMREACTIVATED")

static void
p_room_created(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
               const dfc_room_created_t *p)
{
    dfc_log(DFC_LOG_INFO, "%s by %s: room \"%s\" (%s)", dfc_event_topic(ev), who(i),
            s(p->room_properties.name), s(p->stream.stream_id));
}
static void
p_join_request(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
               const dfc_user_requested_to_join_room_t *p)
{
    dfc_log(DFC_LOG_INFO, "USERREQUESTEDTOJOINROOM by %s: %zu user(s) for %s", who(i),
            dfc_value_size(p->affected_users), s(p->stream.stream_id));
}
static void
p_member(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i, const dfc_room_member_t *p)
{
    dfc_log(DFC_LOG_INFO, "%s by %s: user %s (%lld) in %s", dfc_event_topic(ev), who(i),
            s(p->affected_user.display_name), (long long)p->affected_user.user_id,
            s(p->stream.stream_id));
}
static void
p_conn_requested(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
                 const dfc_connection_requested_t *p)
{
    dfc_log(DFC_LOG_INFO, "CONNECTIONREQUESTED by %s to %lld", who(i),
            (long long)p->to_user.user_id);
}
static void
p_conn_accepted(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
                const dfc_connection_accepted_t *p)
{
    dfc_log(DFC_LOG_INFO, "CONNECTIONACCEPTED by %s from %lld", who(i),
            (long long)p->from_user.user_id);
}
static void
p_suppressed(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
             const dfc_message_suppressed_t *p)
{
    dfc_log(DFC_LOG_INFO, "MESSAGESUPPRESSED by %s: %s", who(i), s(p->message_id));
}
static void
p_elements(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
           const dfc_symphony_elements_action_t *p)
{
    char values[512];
    dfc_value_to_json(p->form_values, values, sizeof values);
    dfc_log(DFC_LOG_INFO, "SYMPHONYELEMENTSACTION by %s: form %s values %s", who(i), s(p->form_id),
            values);
}
static void
p_generic(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
          const dfc_generic_system_event_t *p)
{
    dfc_log(DFC_LOG_INFO, "GENERICSYSTEMEVENT by %s: %s/%s", who(i), s(p->source_system),
            s(p->event_subtype));
}
static void
p_unknown(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i)
{
    dfc_log(DFC_LOG_INFO, "unknown event type %s (seq %llu)", dfc_event_topic(ev),
            (unsigned long long)dfc_event_seq(ev));
}

/* ------------------------------------------------------------ mentions */

/*  Reacts to mentions: they are in the message's EntityJSON `data` (a string)
    as com.symphony.user.mention entities whose value is the user id. A real
    bot would parse it; counting is enough for the demo. */
static void
m_message_sent(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
               const dfc_message_sent_t *p)
{
    int mentions = 0;
    for (const char *d = p->message.data; d && (d = strstr(d, "com.symphony.user.mention")); d++)
        mentions++;
    char bot[32];
    snprintf(bot, sizeof bot, "\"%lld\"", (long long)dfc_event_bot(ev));
    bool me = mentions > 0 && strstr(p->message.data, bot) != NULL;
    dfc_log(DFC_LOG_INFO, "%d user mention(s) from %s%s", mentions, who(i),
            me ? ": the bot is mentioned, a real bot would reply here" : "");
}

int
main(int argc, char **argv)
{
    dfc_config_t cfg = {.workers = 4};
    dfc_log_set_stream(stdout);
    the_loop = dfc_loop_new(&cfg);
    if (!the_loop)
        return 1;
    int nend = 0, nlabels = 0;
    const char *metrics = NULL;
    metric_labels = calloc((size_t)argc * 2 + 1, sizeof *metric_labels);
    for (int a = 1; a < argc && metric_labels; a++) {
        char *eq;
        if ((!strcmp(argv[a], "--endpoint") || !strcmp(argv[a], "-e")) && a + 1 < argc) {
            dfc_loop_connect(the_loop, argv[++a]);
            nend++;
        } else if (!strcmp(argv[a], "--verbose")) {
            dfc_log_set_level(DFC_LOG_DEBUG);
        } else if (!strcmp(argv[a], "--metrics") && a + 1 < argc) {
            metrics = argv[++a];
        } else if (!strcmp(argv[a], "--metrics-label") && a + 1 < argc &&
                   (eq = strchr(argv[a + 1], '=')) != NULL) {
            *eq = '\0'; /* NAME=VALUE */
            metric_labels[nlabels++] = argv[++a];
            metric_labels[nlabels++] = eq + 1;
        } else {
            fprintf(
                stderr,
                "usage: example_consumer [--endpoint E]... [--verbose]\n"
                "                        [--metrics HOST:PORT [--metrics-label NAME=VALUE]...]\n");
            dfc_loop_destroy(&the_loop);
            free(metric_labels);
            return 2;
        }
    }
    dfc_stats_t zero = {0};
    if (!metric_labels || (nlabels && dfc_stats_prometheus(&zero, metric_labels, NULL, 0) == 0)) {
        fprintf(stderr,
                "example_consumer: invalid --metrics-label (a name is [a-zA-Z_][a-zA-Z0-9_]*, "
                "once; a value is UTF-8)\n");
        dfc_loop_destroy(&the_loop);
        free(metric_labels);
        return 2;
    }
    metrics_http_t *http = NULL;
    if (metrics) {
        char err[512];
        http = metrics_http_new(metrics, render_metrics, the_loop, err, sizeof err);
        if (!http) {
            fprintf(stderr, "example_consumer: %s\n", err);
            dfc_loop_destroy(&the_loop);
            free(metric_labels);
            return 2;
        }
        /* the port chosen for :0 is in this line (tests read it) */
        dfc_log(DFC_LOG_INFO, "metrics on port %d: GET /metrics", metrics_http_port(http));
    }
    if (nend == 0)
        dfc_loop_connect(the_loop, "tcp://127.0.0.1:5556");

    dfc_listener_t printer = {
        .name = "printer",
        .on_message_sent = p_message_sent,
        .on_shared_post = p_shared_post,
        .on_instant_message_created = p_im_created,
        .on_room_created = p_room_created,
        .on_room_updated = p_room_created,
        .on_room_deactivated = p_room_deactivated,
        .on_room_reactivated = p_room_reactivated,
        .on_user_requested_to_join_room = p_join_request,
        .on_user_joined_room = p_member,
        .on_user_left_room = p_member,
        .on_room_member_promoted_to_owner = p_member,
        .on_room_member_demoted_from_owner = p_member,
        .on_connection_requested = p_conn_requested,
        .on_connection_accepted = p_conn_accepted,
        .on_message_suppressed = p_suppressed,
        .on_symphony_elements_action = p_elements,
        .on_generic_system_event = p_generic,
        .on_unknown = p_unknown,
    };
    dfc_listener_t mentions = {.name = "mentions", .on_message_sent = m_message_sent};
    dfc_loop_subscribe(the_loop, &printer);
    dfc_loop_subscribe(the_loop, &mentions);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    dfc_log(DFC_LOG_INFO, "example consumer started (4 workers)");
    int rc = dfc_loop_start(the_loop);
    dfc_stats_t st;
    char info[1024];
    dfc_loop_stats(the_loop, &st);
    /* the demo's smoke test reads this first line */
    dfc_log(DFC_LOG_INFO,
            "stopped: received %llu, jobs %llu, filtered %llu, malformed %llu, gaps %llu",
            (unsigned long long)st.received, (unsigned long long)st.dispatched,
            (unsigned long long)st.filtered, (unsigned long long)st.dropped_malformed,
            (unsigned long long)st.gaps);
    dfc_stats_format(&st, info, sizeof info);
    dfc_log(DFC_LOG_INFO, "counters:\n%s", info);
    metrics_http_destroy(&http); /* before the loop its render reads */
    dfc_loop_destroy(&the_loop);
    free(metric_labels);
    return rc == DFC_OK ? 0 : 1;
}
