/*  client_replier: the C worker of client_e2e.py. A dfc_loop listener that
    answers every MESSAGESENT it accepts with "<messageML>re <messageId>
    </messageML>" in the same stream through dfc_client with the DEFAULT id
    (so an event handled twice asks twice with the same id), printing one
    JSON line per answer; it stops after --expect answers.
    client_replier --endpoint PUB --replay R --commands C --expect N */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dfc_tsan.h"
#include "dfconsumer.h"

static dfc_client_t *client;
static dfc_loop_t *loop;
static _Atomic int answered, expect;
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static void
on_message_sent(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *who,
                const dfc_message_sent_t *p)
{
    (void)ctx;
    (void)who;
    const char *sid = p->message.stream.stream_id, *mid = p->message.message_id;
    char text[256];
    snprintf(text, sizeof text, "<messageML>re %s</messageML>", mid ? mid : "?");
    dfc_reply_t *r = NULL;
    int rc = dfc_client_send_message(client, sid ? sid : "", text, NULL, &r);
    const dfc_value_t *res = dfc_reply_result(r);
    const char *code = dfc_reply_error_code(r), *posted = NULL;
    posted = dfc_value_str(dfc_value_get(res, "messageId"), NULL);
    char line[1024];
    snprintf(line, sizeof line,
             "{\"event\":\"%s\",\"source\":\"%s\",\"stream\":\"%s\",\"rc\":%d,\"id\":\"%s\","
             "\"ok\":%s,\"replayed\":%s,\"found\":%s,\"code\":\"%s\",\"posted\":\"%s\"}\n",
             dfc_event_id(ev) ? dfc_event_id(ev) : "", mid ? mid : "", sid ? sid : "", rc,
             r ? dfc_reply_id(r) : "", dfc_reply_ok(r) ? "true" : "false",
             dfc_reply_replayed(r) ? "true" : "false", dfc_reply_found(r) ? "true" : "false",
             code ? code : "", posted ? posted : "");
    dfc_reply_destroy(&r);
    pthread_mutex_lock(&out_mu);
    fputs(line, stdout);
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
    if (atomic_fetch_add(&answered, 1) + 1 == atomic_load(&expect))
        dfc_loop_stop(loop);
}

int
main(int argc, char **argv)
{
    const char *pub = NULL, *replay = NULL, *commands = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--endpoint"))
            pub = argv[i + 1];
        else if (!strcmp(argv[i], "--replay"))
            replay = argv[i + 1];
        else if (!strcmp(argv[i], "--commands"))
            commands = argv[i + 1];
        else if (!strcmp(argv[i], "--expect"))
            atomic_store(&expect, atoi(argv[i + 1]));
    }
    if (!pub || !replay || !commands || atomic_load(&expect) <= 0) {
        fprintf(stderr,
                "usage: client_replier --endpoint PUB --replay R --commands C --expect N\n");
        return 2;
    }
    client = dfc_client_new(&(dfc_client_config_t){.endpoint = commands, .timeout_ms = 5000});
    /* from gseq 1: every journaled event, so a second run handles the same events again */
    loop = dfc_loop_new(&(dfc_config_t){.workers = 4, .from_gseq = 1});
    if (!client || !loop)
        return 2;
    dfc_loop_connect_replay(loop, pub, replay);
    dfc_listener_t l = {.name = "replier", .on_message_sent = on_message_sent};
    dfc_loop_subscribe(loop, &l);
    printf("{\"ready\":true}\n");
    fflush(stdout);
    int rc = dfc_loop_start(loop);
    dfc_client_stats_t st;
    dfc_client_stats(client, &st);
    fprintf(stderr,
            "client_replier: %d answered; client calls %llu sent %llu resent %llu "
            "unmatched %llu timeouts %llu\n",
            atomic_load(&answered), (unsigned long long)st.calls, (unsigned long long)st.sent,
            (unsigned long long)st.resent, (unsigned long long)st.unmatched,
            (unsigned long long)st.timeouts);
    dfc_loop_destroy(&loop);
    dfc_client_destroy(&client);
    return rc == DFC_OK ? 0 : 1;
}
