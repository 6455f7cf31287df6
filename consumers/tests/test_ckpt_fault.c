/*  consumer_ckpt_fault: the checkpoint under disk faults, run with the
    dffault LD_PRELOAD shim (tests/faults/dffault.c; DFFAULT_CTL names the
    control file). For write ENOSPC, fsync EIO and rename EIO: the save
    fails, is counted and logged, the previous checkpoint file stays
    byte-identical and loadable, and once the fault clears the next save
    succeeds with the new watermark. */
#define _GNU_SOURCE
#include <sys/stat.h>
#include <unistd.h>

#include "fakebridge.h"

#include "dfc_internal.h"

#define WAIT_MS 20000

static atomic_int handled;

static void
on_msg(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i, const dfc_message_sent_t *p)
{
    (void)ctx, (void)ev, (void)i, (void)p;
    atomic_fetch_add(&handled, 1);
}

typedef struct {
    dfc_loop_t *loop;
    int rc;
} run_t;

static void *
run(void *arg)
{
    run_t *r = arg;
    r->rc = dfc_loop_start(r->loop);
    return NULL;
}

static uint64_t
stat_of(dfc_loop_t *loop, size_t off)
{
    dfc_stats_t st;
    dfc_loop_stats(loop, &st);
    uint64_t v;
    memcpy(&v, (char *)&st + off, sizeof v);
    return v;
}

/*  Polls a counter (the counter is the signal) until it reaches want. */
static bool
wait_stat(dfc_loop_t *loop, size_t off, uint64_t want)
{
    int64_t end = tu_now_ms() + WAIT_MS;
    while (tu_now_ms() < end) {
        if (stat_of(loop, off) >= want)
            return true;
        usleep(2000);
    }
    fprintf(stderr, "  counter at offset %zu is %llu, want %llu\n", off,
            (unsigned long long)stat_of(loop, off), (unsigned long long)want);
    return false;
}
#define WAIT_STAT(loop, f, n) wait_stat(loop, offsetof(dfc_stats_t, f), n)
#define STAT(loop, f) stat_of(loop, offsetof(dfc_stats_t, f))

static bool
wait_handled(int n)
{
    int64_t end = tu_now_ms() + WAIT_MS;
    while (tu_now_ms() < end && atomic_load(&handled) < n)
        usleep(2000);
    return atomic_load(&handled) >= n;
}

static void
read_file(const char *path, char *buf, size_t size)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/*  Rewrites the control file; the shim sees the change (mtime or size). A
    fresh name each time makes the change visible even within one second. */
static void
set_faults(const char *ctl, const char *rules)
{
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.new", ctl);
    FILE *f = fopen(tmp, "w");
    fputs(rules, f);
    fclose(f);
    rename(tmp, ctl);
}

/*  The watermark the file records for epoch ep-cf, or 0. */
static uint64_t
file_gseq(const char *path)
{
    dfc_ckpt_entry_t e[DFC_CKPT_MAX];
    size_t n = 0;
    uint64_t g = 0;
    if (dfc_ckpt_load(path, e, DFC_CKPT_MAX, &n) == DFC_OK && n == 1 &&
        strcmp(e[0].epoch, "ep-cf") == 0)
        g = e[0].gseq;
    dfc_ckpt_entries_free(e, n);
    return g;
}

int
main(void)
{
    const char *ctl = getenv("DFFAULT_CTL");
    if (!ctl || !getenv("LD_PRELOAD")) {
        fprintf(stderr, "consumer_ckpt_fault: run with LD_PRELOAD=libdffault.so DFFAULT_CTL=...\n");
        return 2;
    }
    dfc_log_set_level(DFC_LOG_ERROR);
    char dir[] = "/tmp/dfc-ckptfault-XXXXXX";
    if (!mkdtemp(dir))
        return 2;
    char path[512];
    snprintf(path, sizeof path, "%s/cf.ckpt", dir);
    set_faults(ctl, "");

    void *zctx = zmq_ctx_new();
    fb_t fb;
    fb_init(&fb, zctx, "inproc://cf-pub", "inproc://cf-rep", "ep-cf", 0);
    dfc_loop_t *loop = dfc_loop_new(&(dfc_config_t){
        .workers = 1, .zmq_ctx = zctx, .checkpoint_dir = dir, .name = "cf", .checkpoint_ms = 20});
    CHECK(loop != NULL);
    dfc_listener_t l = {.name = "cf", .on_message_sent = on_msg};
    dfc_loop_subscribe(loop, &l);
    dfc_loop_connect_replay(loop, fb.pub_ep, fb.rep_ep);
    run_t r = {loop, 0};
    pthread_t th;
    pthread_create(&th, NULL, run, &r);
    CHECK(tu_wait_subscription(fb.xpub, WAIT_MS) == 0);

    /* a good checkpoint first */
    int sent = 0;
    for (; sent < 5; sent++)
        fb_message(&fb, "s1", NULL, true);
    CHECK(wait_handled(sent));
    int64_t end = tu_now_ms() + WAIT_MS;
    while (file_gseq(path) != 5 && tu_now_ms() < end)
        usleep(2000);
    CHECK_EQ(file_gseq(path), 5);

    const char *rules[] = {"write ENOSPC cf.ckpt\n", "fsync EIO cf.ckpt\n", "rename EIO cf.ckpt\n"};
    for (int k = 0; k < 3; k++) {
        char before[4096], after[4096];
        read_file(path, before, sizeof before);
        uint64_t g0 = file_gseq(path);
        uint64_t errors = STAT(loop, checkpoint_errors);
        set_faults(ctl, rules[k]);
        fb_message(&fb, "s1", NULL, true); /* the watermark moves: a save is due */
        sent++;
        CHECK(wait_handled(sent));
        /* two failed attempts, so the first was not a leftover of the last phase */
        CHECK(WAIT_STAT(loop, checkpoint_errors, errors + 2));
        read_file(path, after, sizeof after);
        CHECK_STR(after, before); /* byte for byte */
        CHECK_EQ(file_gseq(path), g0);
        struct stat sb;
        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        CHECK(stat(tmp, &sb) != 0); /* no temp file left behind */
        /* the fault clears: the next period's save succeeds */
        uint64_t saves = STAT(loop, checkpoints);
        set_faults(ctl, "");
        CHECK(WAIT_STAT(loop, checkpoints, saves + 1));
        CHECK_EQ(file_gseq(path), (uint64_t)sent);
    }
    dfc_loop_stop(loop);
    pthread_join(th, NULL);
    CHECK_EQ(r.rc, DFC_OK);
    dfc_stats_t st;
    dfc_loop_stats(loop, &st);
    CHECK(st.checkpoint_errors >= 6);
    CHECK_EQ(st.completed, 8);
    CHECK_EQ(file_gseq(path), 8);
    dfc_loop_destroy(&loop);
    fb_fini(&fb);
    zmq_ctx_term(zctx);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return df_check_report("consumer_ckpt_fault");
}
