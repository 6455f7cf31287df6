/*  bench_consumer_c: libdfconsumer's rate with one no-op listener that accepts every event,
    the C line of bench_consumers.py. Same command line and output as the Python and Node bench
    consumers: --endpoint EP --count N, then one JSON line
    {"lang":"c","events":N,"seconds":S,"rate":R} once N events were handled, S measured from
    the first callback to the N-th, R = (N - 1) / S (as the Python and Node ones). The loop
    has the library's defaults (4 workers, concurrent order) unless --workers W. The C line
    adds "cpu_us": the process's CPU time (all threads) from the first callback to the N-th,
    per event, and its exactness: "missing" and "repeated" gseqs of 1..N (one byte per gseq),
    the library's "gaps", "lost", "duplicates"; it exits 1 unless all are 0. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dfconsumer.h"
#include "dfc_tsan.h" /* libzmq under ThreadSanitizer (empty otherwise) */

static dfc_loop_t *the_loop;
static uint64_t want;
static atomic_uint_fast64_t handled;
static atomic_int started;
static struct timespec t_first, t_last, cpu_first, cpu_last;
static atomic_uchar *seen; /* gseq 1..want */
static atomic_uint_fast64_t out_of_range, repeated;

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
count_one(const dfc_event_t *ev)
{
    if (!atomic_exchange(&started, 1)) {
        clock_gettime(CLOCK_MONOTONIC, &t_first);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu_first);
    }
    uint64_t g = dfc_event_gseq(ev);
    if (g == 0 || g > want)
        atomic_fetch_add(&out_of_range, 1);
    else if (atomic_exchange(&seen[g - 1], 1))
        atomic_fetch_add(&repeated, 1);
    if (atomic_fetch_add(&handled, 1) + 1 == want) {
        clock_gettime(CLOCK_MONOTONIC, &t_last);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu_last);
        dfc_loop_stop(the_loop);
    }
}

static void
on_message_sent(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,
                const dfc_message_sent_t *p)
{
    count_one(ev);
}

static void
on_unknown(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i)
{
    count_one(ev);
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
    seen = calloc(want, 1);
    if (!seen)
        return 1;
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
    uint64_t missing = 0;
    for (uint64_t g = 0; g < want; g++)
        missing += !atomic_load(&seen[g]);
    free(seen);
    bool exact = missing == 0 && atomic_load(&out_of_range) == 0 &&
                 atomic_load(&repeated) == 0 && st.gaps == 0 && st.lost == 0 &&
                 st.duplicates == 0;
    if (!exact)
        fprintf(stderr, "bench_consumer_c: not exact: missing %" PRIu64 ", out of range %" PRIu64
                ", repeated %" PRIu64 ", gaps %" PRIu64 ", lost %" PRIu64 ", duplicates %" PRIu64
                "\n", missing, (uint64_t)atomic_load(&out_of_range),
                (uint64_t)atomic_load(&repeated), st.gaps, st.lost, st.duplicates);
    double s = since(&t_first, &t_last), cpu = since(&cpu_first, &cpu_last);
    printf("{\"lang\":\"c\",\"events\":%" PRIu64 ",\"seconds\":%.6f,\"rate\":%.0f,"
           "\"cpu_us\":%.3f,\"workers\":%d,\"missing\":%" PRIu64 ",\"repeated\":%" PRIu64
           ",\"gaps\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"duplicates\":%" PRIu64 "}\n",
           (uint64_t)atomic_load(&handled), s, s > 0 ? (double)(want - 1) / s : 0.0,
           want > 1 ? cpu * 1e6 / (double)(want - 1) : 0.0, cfg.workers ? cfg.workers : 4,
           missing, (uint64_t)atomic_load(&repeated), st.gaps, st.lost, st.duplicates);
    return exact ? 0 : 1;
}
