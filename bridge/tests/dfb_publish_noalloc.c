/*  dfb_publish_noalloc: the publishing path allocates nothing per event
    once warm (issue 11 §2.4), and a batch costs the loop thread one
    journal writev and two pipe sends (the batch, the $SYNC), whatever its
    length (§2.2, §2.3). malloc, calloc and realloc of the bridge's
    own code are counted (linked with -Wl,--wrap; libzmq's and libc's own
    allocations are not ours and not counted) while dfb_publish_event and
    dfb_publish_flush run: journal staging, dedupe keys, topic lookups,
    the actor's batches and its publishing, the heartbeat. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zmq.h>

#include "df_check.h"
#include "dfb_json.h"
#include "dfb_publish.h"

static _Atomic unsigned long s_allocs;
/* The calling thread's writev and zmq_send calls (the actor's are its own). */
static _Thread_local unsigned long s_writev, s_zsend;

ssize_t __real_writev(int fd, const struct iovec *iov, int n);
int __real_zmq_send(void *s, const void *buf, size_t len, int flags);

ssize_t
__wrap_writev(int fd, const struct iovec *iov, int n)
{
    s_writev++;
    return __real_writev(fd, iov, n);
}

int
__wrap_zmq_send(void *s, const void *buf, size_t len, int flags)
{
    s_zsend++;
    return __real_zmq_send(s, buf, len, flags);
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);

void *
__wrap_malloc(size_t n)
{
    atomic_fetch_add(&s_allocs, 1);
    return __real_malloc(n);
}

void *
__wrap_calloc(size_t k, size_t n)
{
    atomic_fetch_add(&s_allocs, 1);
    return __real_calloc(k, n);
}

void *
__wrap_realloc(void *p, size_t n)
{
    atomic_fetch_add(&s_allocs, 1);
    return __real_realloc(p, n);
}

static const char *TOPICS[] = {"MESSAGESENT", "ROOMCREATED", "USERJOINEDROOM",
                               "INSTANTMESSAGECREATED"};

/*  Publishes one batch of n events (ids ev-<first+i>, the topics in turn,
    a ~1 KB text) and flushes it; returns the allocations counted inside
    the publish calls. */
static unsigned long
batch(dfb_publish_t *p, dfb_json_t *json, int first, int n)
{
    static char text[2048];
    unsigned long inside = 0;
    for (int i = 0; i < n; i++) {
        int k = first + i;
        snprintf(text, sizeof text,
                 "{\"id\":\"ev-%d\",\"type\":\"%s\",\"timestamp\":1764000000000,"
                 "\"payload\":{\"n\":%d,\"text\":\"%0900d\"}}",
                 k, TOPICS[k % 4], k, k);
        CHECK(dfb_json_parse(json, text, strlen(text)) == 0);
        unsigned long a = atomic_load(&s_allocs);
        CHECK(dfb_publish_event(p, json, 0) == 0);
        inside += atomic_load(&s_allocs) - a;
    }
    unsigned long a = atomic_load(&s_allocs);
    CHECK(dfb_publish_flush(p) == 0);
    return inside + atomic_load(&s_allocs) - a;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: dfb_publish_noalloc SCRATCH_DIR\n");
        return 2;
    }
    char dir[1024], err[256];
    snprintf(dir, sizeof dir, "%s/noalloc-%d", argv[1], (int)getpid());
    dfb_publish_opts_t o = {
        .endpoint = "tcp://127.0.0.1:*",
        .sndhwm = 100000,
        .state_dir = dir,
        .journal = {.segment_bytes = 64u << 20, .fsync = DFB_FSYNC_INTERVAL, .fsync_ms = 10},
        .replay = "tcp://127.0.0.1:*",
        .heartbeat_ms = 5,
        .dedupe_window = 1000,
        .dedupe_ms = 3600000};
    dfb_publish_t *p = dfb_publish_new_opts(&o, err, sizeof err);
    if (!p) {
        printf("FAIL %s\n", err);
        return 1;
    }
    /* A subscriber, so the PUB really sends. */
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(sub, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    CHECK(zmq_connect(sub, dfb_publish_endpoint(p)) == 0);
    dfb_json_t *json = dfb_json_new();
    /* Warm: every topic seen, the buffers at their size, the dedupe ring
       past its window (1000 keys) so it recycles. */
    int id = 1;
    for (int r = 0; r < 15; r++, id += 100)
        batch(p, json, id, 100);
    unsigned long warm = 0, events = 0;
    s_writev = s_zsend = 0;
    for (int r = 0; r < 30; r++, id += 100) {
        warm += batch(p, json, id, 100);
        events += 100;
    }
    printf("loop thread: %lu writev, %lu zmq_send for 30 batches of 100 events\n", s_writev,
           s_zsend);
    CHECK_EQ(s_writev, 30);
    CHECK_EQ(s_zsend, 60);
    dfb_publish_stats_t st;
    dfb_publish_stats(p, &st);
    printf("allocations in publish_event/flush: %lu over %lu warm events (%lu journaled, %lu "
           "published)\n",
           warm, events, (unsigned long)st.journaled, (unsigned long)st.published);
    CHECK_EQ(warm, 0);
    CHECK_EQ(st.journaled, 4500);
    CHECK_EQ(st.published, 4500);
    /* The counter works: an event of a new topic allocates its slot. */
    unsigned long a = atomic_load(&s_allocs);
    const char *fresh = "{\"id\":\"x\",\"type\":\"NEWTOPIC\"}";
    CHECK(dfb_json_parse(json, fresh, strlen(fresh)) == 0);
    CHECK(dfb_publish_event(p, json, 0) == 0);
    CHECK(atomic_load(&s_allocs) > a);
    dfb_json_destroy(&json);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    dfb_publish_destroy(&p);
    printf("%s\n", df_check_failures ? "FAILED" : "OK");
    return df_check_failures ? 1 : 0;
}
