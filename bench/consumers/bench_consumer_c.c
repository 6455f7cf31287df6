/*  bench_consumer_c: libdfconsumer's rate with one no-op listener that accepts every event,
    the C line of bench_consumers.py. Same command line and output as the Python and Node bench
    consumers: --endpoint EP --count N, then one JSON line
    {"lang":"c","events":N,"seconds":S,"rate":R} once N events were handled, S measured from
    the first callback to the N-th, R = (N - 1) / S (as the Python and Node ones). The loop
    has the library's defaults (4 workers, concurrent order) unless --workers W. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dfconsumer.h"
#include "dfc_tsan.h" /* libzmq under ThreadSanitizer (empty otherwise) */

static dfc_loop_t *the_loop;
static uint64_t want;
static atomic_uint_fast64_t handled;
static atomic_int started;
static struct timespec t_first, t_last;

static double
since(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static bool
accept_all(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *initiator, int64_t bot_id)
{
    return true;
}

/*  The listener does nothing; counting is the benchmark's own bookkeeping. */
static void
count_one(void)
{
    if (!atomic_exchange(&started, 1))
        clock_gettime(CLOCK_MONOTONIC, &t_first);
    if (atomic_fetch_add(&handled, 1) + 1 == want) {
        clock_gettime(CLOCK_MONOTONIC, &t_last);
        dfc_loop_stop(the_loop);
    }
}

static void
on_message_sent(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
                const dfc_message_sent_t *p)
{
    count_one();
}

static void
on_unknown(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i)
{
    count_one();
}

int
main(int argc, char **argv)
{
    const char *endpoint = NULL;
    dfc_config_t cfg = {0};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--endpoint"))
            endpoint = argv[i + 1];
        else if (!strcmp(argv[i], "--count"))
            want = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--workers"))
            cfg.workers = atoi(argv[i + 1]);
    }
    if (!endpoint || want == 0 || argc % 2 == 0) {
        fprintf(stderr, "usage: bench_consumer_c --endpoint EP --count N [--workers W]\n");
        return 2;
    }
    dfc_log_set_level(DFC_LOG_WARN);
    the_loop = dfc_loop_new(&cfg);
    if (!the_loop)
        return 1;
    dfc_listener_t l = {.name = "bench",
                        .is_accepting_event = accept_all,
                        .on_message_sent = on_message_sent,
                        .on_unknown = on_unknown};
    if (dfc_loop_connect(the_loop, endpoint) != DFC_OK ||
        dfc_loop_subscribe(the_loop, &l) != DFC_OK) {
        dfc_loop_destroy(&the_loop);
        return 1;
    }
    int rc = dfc_loop_start(the_loop);
    dfc_stats_t st;
    dfc_loop_stats(the_loop, &st);
    dfc_loop_destroy(&the_loop);
    if (rc != DFC_OK || atomic_load(&handled) < want) {
        fprintf(stderr, "bench_consumer_c: stopped after %" PRIu64 " of %" PRIu64 " events\n",
                (uint64_t)atomic_load(&handled), want);
        return 1;
    }
    if (st.gaps || st.lost || st.duplicates)
        fprintf(stderr, "bench_consumer_c: gaps %" PRIu64 ", lost %" PRIu64 ", duplicates %" PRIu64
                "\n", st.gaps, st.lost, st.duplicates);
    double s = since(&t_first, &t_last);
    printf("{\"lang\":\"c\",\"events\":%" PRIu64 ",\"seconds\":%.6f,\"rate\":%.0f}\n",
           (uint64_t)atomic_load(&handled), s, s > 0 ? (double)(want - 1) / s : 0.0);
    return 0;
}
