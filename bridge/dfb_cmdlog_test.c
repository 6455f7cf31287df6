/*  dfb_cmdlog's self-test (dfb_selftest cmdlog, ctest bridge_cmdlog) and a
    load benchmark (dfb_selftest cmdlog_bench [N], not a ctest). Scratch
    folders on /dev/shm when it exists (thousands of fdatasyncs). */
#define _GNU_SOURCE 1
#include "dfb_cmdlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "df_check.h"
#include "dfb_clock.h"
#include "dfb_crc32c.h"
#include "dfb_log.h"

#define T0 1764900000000LL /* a fixed wall clock */

static char s_dir[256];

static void
rm_dir_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    char p[600];
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
}

static const char *
fresh_dir(void)
{
    if (!s_dir[0]) {
        struct stat st;
        const char *base = stat("/dev/shm", &st) == 0 && access("/dev/shm", W_OK) == 0
                               ? "/dev/shm"
                               : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        snprintf(s_dir, sizeof s_dir, "%s/dfb_cmdlog.XXXXXX", base);
        if (!mkdtemp(s_dir)) {
            perror("mkdtemp");
            exit(1);
        }
    }
    rm_dir_files(s_dir);
    return s_dir;
}

static size_t
mkkey(uint8_t *k, const char *scope, int i)
{
    size_t sl = strlen(scope);
    memcpy(k, scope, sl);
    k[sl] = 0;
    int n = snprintf((char *)k + sl + 1, 64, "req-%d", i);
    return sl + 1 + (size_t)n;
}

static void
mkfp(uint8_t fp[32], int i)
{
    for (int b = 0; b < 32; b++)
        fp[b] = (uint8_t)(i * 31 + b);
}

/*  The outcome bytes of request i (len depends on i). */
static size_t
mkout(uint8_t *o, int i, size_t len)
{
    for (size_t b = 0; b < len; b++)
        o[b] = (uint8_t)(i ^ (int)(b * 7));
    return len;
}

static long long
file_size(const char *dir, const char *name)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

static int
count_damaged(const char *dir, long long *bytes)
{
    DIR *d = opendir(dir);
    int n = 0;
    *bytes = 0;
    char p[600];
    for (struct dirent *de; d && (de = readdir(d));)
        if (strncmp(de->d_name, "commands.log.damaged-", 21) == 0) {
            n++;
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            struct stat st;
            if (stat(p, &st) == 0)
                *bytes += st.st_size;
        }
    if (d)
        closedir(d);
    return n;
}

/*  find's state; when DONE the outcome must equal want[0..wlen). */
static dfb_cmdlog_state_t
find_check(dfb_cmdlog_t *c, const uint8_t *k, size_t kl, const uint8_t fp[32], const uint8_t *want,
           size_t wlen, int64_t *begin_ms)
{
    dfb_cmdlog_entry_t e;
    dfb_cmdlog_state_t st = dfb_cmdlog_find(c, k, kl, fp, &e);
    if (begin_ms)
        *begin_ms = e.begin_ms;
    if (st == DFB_CMDLOG_DONE) {
        CHECK(want != NULL);
        CHECK_EQ(e.outcome_len, wlen);
        CHECK(want && e.outcome && e.outcome_len == wlen && memcmp(e.outcome, want, wlen) == 0);
    } else {
        CHECK(e.outcome == NULL);
    }
    free(e.outcome);
    return st;
}

/* ---- round trip, conflict, release, reopen; the same on memory-only ---- */
static void
t_roundtrip(const char *dir)
{
    char err[256];
    dfb_cmdlog_t *c = dfb_cmdlog_open_at(dir, 0, T0, err, sizeof err);
    CHECK(c != NULL);
    if (!c)
        return;
    uint8_t k1[64], k2[64], k3[64], fp1[32], fp2[32], fp3[32], out1[300], other[32];
    size_t l1 = mkkey(k1, "alice", 1), l2 = mkkey(k2, "alice", 2), l3 = mkkey(k3, "", 1);
    mkfp(fp1, 1);
    mkfp(fp2, 2);
    mkfp(fp3, 3);
    mkfp(other, 99);
    size_t o1 = mkout(out1, 1, sizeof out1);
    int64_t ms = 0;

    CHECK_EQ(find_check(c, k1, l1, fp1, NULL, 0, &ms), DFB_CMDLOG_NEW);
    CHECK_EQ(ms, 0);
    CHECK_EQ(dfb_cmdlog_begin(c, k1, l1, fp1, "messages.send", "sid+/=", T0 + 1), 0);
    CHECK_EQ(find_check(c, k1, l1, fp1, NULL, 0, &ms), DFB_CMDLOG_INFLIGHT);
    CHECK_EQ(ms, T0 + 1);
    errno = 0;
    CHECK_EQ(dfb_cmdlog_begin(c, k1, l1, fp1, "messages.send", "sid", T0 + 2), -1);
    CHECK_EQ(errno, EBUSY);
    CHECK_EQ(dfb_cmdlog_done(c, k1, l1, out1, o1), 0);
    CHECK_EQ(find_check(c, k1, l1, fp1, out1, o1, &ms), DFB_CMDLOG_DONE);
    CHECK_EQ(ms, T0 + 1);
    errno = 0;
    CHECK_EQ(dfb_cmdlog_begin(c, k1, l1, fp1, "messages.send", "sid", T0 + 3), -1);
    CHECK_EQ(errno, EEXIST);
    errno = 0;
    CHECK_EQ(dfb_cmdlog_done(c, k1, l1, out1, 3), -1); /* not in flight: nothing changes */
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(find_check(c, k1, l1, fp1, out1, o1, NULL), DFB_CMDLOG_DONE);
    /* the same id in another scope is another key */
    uint8_t k1b[64];
    size_t l1b = mkkey(k1b, "bob", 1);
    CHECK_EQ(find_check(c, k1b, l1b, fp1, NULL, 0, NULL), DFB_CMDLOG_NEW);

    /* CONFLICT: the same key, another fingerprint */
    CHECK_EQ(find_check(c, k1, l1, other, NULL, 0, &ms), DFB_CMDLOG_CONFLICT);
    CHECK_EQ(ms, T0 + 1);
    errno = 0;
    CHECK_EQ(dfb_cmdlog_begin(c, k1, l1, other, "messages.send", "sid", T0 + 4), -1);
    CHECK_EQ(errno, EEXIST);

    /* release: INFLIGHT -> PENDING; begin again resumes without a record */
    CHECK_EQ(dfb_cmdlog_begin(c, k2, l2, fp2, "streams.info", NULL, T0 + 10), 0);
    dfb_cmdlog_release(c, k2, l2);
    CHECK_EQ(find_check(c, k2, l2, fp2, NULL, 0, &ms), DFB_CMDLOG_PENDING);
    dfb_cmdlog_stats_t st;
    dfb_cmdlog_stats(c, &st);
    uint64_t before = st.file_bytes;
    CHECK_EQ(dfb_cmdlog_begin(c, k2, l2, fp2, "streams.info", NULL, T0 + 20), 0);
    CHECK_EQ(find_check(c, k2, l2, fp2, NULL, 0, &ms), DFB_CMDLOG_INFLIGHT);
    CHECK_EQ(ms, T0 + 10);
    dfb_cmdlog_stats(c, &st);
    CHECK_EQ(st.file_bytes, before);
    /* k3: begun, left in flight at close; an empty outcome for another key */
    CHECK_EQ(dfb_cmdlog_begin(c, k3, l3, fp3, "messages.get", NULL, T0 + 30), 0);
    uint8_t k4[64], fp4[32];
    size_t l4 = mkkey(k4, "", 4);
    mkfp(fp4, 4);
    CHECK_EQ(dfb_cmdlog_begin(c, k4, l4, fp4, "users.lookup", NULL, T0 + 40), 0);
    CHECK_EQ(dfb_cmdlog_done(c, k4, l4, NULL, 0), 0);
    CHECK_EQ(find_check(c, k4, l4, fp4, (const uint8_t *)"", 0, NULL), DFB_CMDLOG_DONE);
    dfb_cmdlog_stats(c, &st);
    CHECK_EQ(st.entries, 4);
    CHECK_EQ(st.done, 2);
    CHECK_EQ(st.pending, 0);
    CHECK_EQ(st.write_errors, 0);
    if (dir)
        CHECK_EQ(file_size(dir, "commands.log"), (long long)st.file_bytes);
    else
        CHECK_EQ(st.file_bytes, 0);
    dfb_cmdlog_close(&c);
    CHECK(c == NULL);
    dfb_cmdlog_close(&c); /* NULL accepted */
    if (!dir)
        return;

    /* reopen: DONE byte for byte, INFLIGHT now PENDING, begin_ms kept */
    c = dfb_cmdlog_open_at(dir, 0, T0 + 1000, err, sizeof err);
    CHECK(c != NULL);
    if (!c)
        return;
    CHECK_EQ(find_check(c, k1, l1, fp1, out1, o1, &ms), DFB_CMDLOG_DONE);
    CHECK_EQ(ms, T0 + 1);
    CHECK_EQ(find_check(c, k1, l1, other, NULL, 0, NULL), DFB_CMDLOG_CONFLICT);
    CHECK_EQ(find_check(c, k2, l2, fp2, NULL, 0, &ms), DFB_CMDLOG_PENDING);
    CHECK_EQ(ms, T0 + 10);
    CHECK_EQ(find_check(c, k3, l3, fp3, NULL, 0, &ms), DFB_CMDLOG_PENDING);
    CHECK_EQ(ms, T0 + 30);
    CHECK_EQ(find_check(c, k4, l4, fp4, (const uint8_t *)"", 0, NULL), DFB_CMDLOG_DONE);
    dfb_cmdlog_stats(c, &st);
    CHECK_EQ(st.entries, 4);
    CHECK_EQ(st.done, 2);
    CHECK_EQ(st.pending, 2);
    CHECK_EQ(st.dropped_tail_bytes, 0);
    CHECK_EQ(st.compactions, 0);
    /* a resumed request: PENDING -> INFLIGHT -> DONE, begin_ms of the first begin */
    CHECK_EQ(dfb_cmdlog_begin(c, k3, l3, fp3, "messages.get", NULL, T0 + 2000), 0);
    CHECK_EQ(dfb_cmdlog_done(c, k3, l3, out1, 7), 0);
    dfb_cmdlog_close(&c);
    c = dfb_cmdlog_open_at(dir, 0, T0 + 3000, err, sizeof err);
    CHECK(c != NULL);
    CHECK_EQ(find_check(c, k3, l3, fp3, out1, 7, &ms), DFB_CMDLOG_DONE);
    CHECK_EQ(ms, T0 + 30);
    /* a second process cannot open the same journal */
    dfb_cmdlog_t *c2 = dfb_cmdlog_open_at(dir, 0, T0, err, sizeof err);
    CHECK(c2 == NULL);
    CHECK(strstr(err, "in use") != NULL);
    dfb_cmdlog_close(&c);
}

/* ---- a file of n done requests; the offset where its last record starts ---- */
static long long
make_file(const char *dir, int n, size_t outlen, uint8_t **bytes, size_t *len)
{
    char err[256];
    dfb_cmdlog_t *c = dfb_cmdlog_open_at(dir, 0, T0, err, sizeof err);
    CHECK(c != NULL);
    if (!c)
        return -1;
    uint8_t k[64], fp[32], out[4096];
    dfb_cmdlog_stats_t st;
    long long last = 0;
    for (int i = 0; i < n; i++) {
        size_t kl = mkkey(k, "s", i);
        mkfp(fp, i);
        CHECK_EQ(dfb_cmdlog_begin(c, k, kl, fp, "messages.send", "stream", T0 + i), 0);
        dfb_cmdlog_stats(c, &st);
        last = (long long)st.file_bytes;
        CHECK_EQ(dfb_cmdlog_done(c, k, kl, out, mkout(out, i, outlen)), 0);
    }
    dfb_cmdlog_stats(c, &st);
    *len = (size_t)st.file_bytes;
    dfb_cmdlog_close(&c);
    char p[600];
    snprintf(p, sizeof p, "%s/commands.log", dir);
    FILE *f = fopen(p, "rb");
    *bytes = malloc(*len);
    CHECK(f && *bytes && fread(*bytes, 1, *len, f) == *len);
    if (f)
        fclose(f);
    return last;
}

static void
put_file(const char *dir, const uint8_t *bytes, size_t len)
{
    rm_dir_files(dir);
    char p[600];
    snprintf(p, sizeof p, "%s/commands.log", dir);
    FILE *f = fopen(p, "wb");
    CHECK(f && fwrite(bytes, 1, len, f) == len);
    if (f)
        fclose(f);
}

/* ---- a torn last record, cut at every byte ---- */
static void
t_torn(const char *dir)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    const int n = 3;
    long long last_done = make_file(dir, n, 40, &bytes, &len);
    /* the last record is the done of request n-1; it starts after its begin */
    long long start = 0;
    {
        /* walk the records to find the start of the last one */
        size_t off = 12, prev = 12;
        while (off < len) {
            prev = off;
            off += 8 + (bytes[off] | bytes[off + 1] << 8 | bytes[off + 2] << 16 |
                        (size_t)bytes[off + 3] << 24);
        }
        CHECK_EQ(off, len);
        start = (long long)prev;
    }
    CHECK_EQ(start, last_done);
    uint8_t k[64], fp[32], out[64];
    int fails_before = df_check_failures;
    for (long long cut = start; cut < (long long)len; cut++) {
        put_file(dir, bytes, (size_t)cut);
        char err[256];
        dfb_cmdlog_t *c = dfb_cmdlog_open_at(dir, 0, T0 + 100, err, sizeof err);
        CHECK(c != NULL);
        if (!c)
            break;
        dfb_cmdlog_stats_t st;
        dfb_cmdlog_stats(c, &st);
        CHECK_EQ(st.dropped_tail_bytes, cut - start);
        CHECK_EQ(st.entries, n);
        CHECK_EQ(st.done, n - 1);
        CHECK_EQ(st.pending, 1);
        CHECK_EQ(st.file_bytes, start);
        CHECK_EQ(file_size(dir, "commands.log"), start);
        long long dmg;
        CHECK_EQ(count_damaged(dir, &dmg), 0); /* a torn tail is not set aside */
        for (int i = 0; i < n; i++) {
            size_t kl = mkkey(k, "s", i);
            mkfp(fp, i);
            CHECK_EQ(find_check(c, k, kl, fp, out, mkout(out, i, 40), NULL),
                     i < n - 1 ? DFB_CMDLOG_DONE : DFB_CMDLOG_PENDING);
        }
        dfb_cmdlog_close(&c);
        if (df_check_failures != fails_before) {
            fprintf(stderr, "  (cut at %lld of %zu)\n", cut, len);
            break;
        }
    }
    /* a torn file header: rewritten, nothing else lost (there was nothing) */
    for (size_t cut = 1; cut < 12; cut++) {
        put_file(dir, bytes, cut);
        char err[256];
        dfb_cmdlog_t *c = dfb_cmdlog_open_at(dir, 0, T0, err, sizeof err);
        CHECK(c != NULL);
        dfb_cmdlog_stats_t st;
        dfb_cmdlog_stats(c, &st);
        CHECK_EQ(st.entries, 0);
        CHECK_EQ(st.dropped_tail_bytes, cut);
        CHECK_EQ(file_size(dir, "commands.log"), 12);
        dfb_cmdlog_close(&c);
    }
    free(bytes);
}

/* ---- a bit flip in a middle record: cut from there, the rest set aside ---- */
static void
t_crc(const char *dir)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    const int n = 5;
    make_file(dir, n, 100, &bytes, &len);
    /* records: B0 D0 B1 D1 B2 ...: find the start of B2 (the 5th record) */
    size_t off = 12, rec_start[2 * 5 + 1];
    int r = 0;
    while (off < len && r < 2 * n) {
        rec_start[r++] = off;
        off += 8 + (bytes[off] | bytes[off + 1] << 8 | bytes[off + 2] << 16 |
                    (size_t)bytes[off + 3] << 24);
    }
    CHECK_EQ(r, 2 * n);
    size_t bad = rec_start[4];
    bytes[bad + 8 + 20] ^= 0x10; /* inside B2's fingerprint */
    put_file(dir, bytes, len);
    char err[256];
    dfb_cmdlog_t *c = dfb_cmdlog_open_at(dir, 0, T0 + 100, err, sizeof err);
    CHECK(c != NULL);
    if (c) {
        dfb_cmdlog_stats_t st;
        dfb_cmdlog_stats(c, &st);
        CHECK_EQ(st.dropped_tail_bytes, len - bad);
        CHECK_EQ(st.entries, 2);
        CHECK_EQ(st.done, 2);
        CHECK_EQ(file_size(dir, "commands.log"), (long long)bad);
        long long dmg = 0;
        CHECK_EQ(count_damaged(dir, &dmg), 1);
        CHECK_EQ(dmg, (long long)(len - bad));
        uint8_t k[64], fp[32], out[128];
        for (int i = 0; i < n; i++) {
            size_t kl = mkkey(k, "s", i);
            mkfp(fp, i);
            CHECK_EQ(find_check(c, k, kl, fp, out, mkout(out, i, 100), NULL),
                     i < 2 ? DFB_CMDLOG_DONE : DFB_CMDLOG_NEW);
        }
        dfb_cmdlog_close(&c);
    }
    /* not a command journal at all: moved aside, never deleted */
    const char junk[] = "this is not a command journal\n";
    put_file(dir, (const uint8_t *)junk, sizeof junk - 1);
    c = dfb_cmdlog_open_at(dir, 0, T0, err, sizeof err);
    CHECK(c != NULL);
    long long dmg = 0;
    CHECK_EQ(count_damaged(dir, &dmg), 1);
    CHECK_EQ(dmg, (long long)sizeof junk - 1);
    CHECK_EQ(file_size(dir, "commands.log"), 12);
    dfb_cmdlog_close(&c);
    free(bytes);
}

/* ---- window expiry (tick, and at load) and compaction ---- */
static void
t_window_compaction(const char *dir)
{
    char err[256];
    const int64_t W = 10000;
    dfb_cmdlog_t *c = dfb_cmdlog_open_at(dir, W, T0, err, sizeof err);
    CHECK(c != NULL);
    if (!c)
        return;
    uint8_t k[64], fp[32], out[1100];
    const int old = 1500, young = 10;
    for (int i = 0; i < old + young; i++) {
        size_t kl = mkkey(k, "w", i);
        mkfp(fp, i);
        int64_t ms = i < old ? T0 + i : T0 + 5000 + i;
        CHECK_EQ(dfb_cmdlog_begin(c, k, kl, fp, "messages.send", "S", ms), 0);
        CHECK_EQ(dfb_cmdlog_done(c, k, kl, out, mkout(out, i, 1000)), 0);
    }
    /* one old request still in flight: never forgotten */
    uint8_t kf[64], fpf[32];
    size_t lf = mkkey(kf, "w", 99999);
    mkfp(fpf, 99999);
    CHECK_EQ(dfb_cmdlog_begin(c, kf, lf, fpf, "messages.send", "S", T0), 0);
    dfb_cmdlog_stats_t st;
    dfb_cmdlog_stats(c, &st);
    uint64_t full = st.file_bytes;
    CHECK_EQ(st.entries, old + young + 1);
    CHECK_EQ(file_size(dir, "commands.log"), (long long)full);

    dfb_cmdlog_tick(c, T0 + W - 1); /* nothing is older than the window yet */
    dfb_cmdlog_stats(c, &st);
    CHECK_EQ(st.entries, old + young + 1);
    CHECK_EQ(st.compactions, 0);
    dfb_cmdlog_tick(c, T0 + W + 4000); /* the old ones (begin T0..T0+1499) expire */
    dfb_cmdlog_stats(c, &st);
    CHECK_EQ(st.entries, young + 1);
    CHECK_EQ(st.done, young);
    CHECK_EQ(st.compactions, 1);
    CHECK(st.file_bytes < full / 50);
    CHECK_EQ(file_size(dir, "commands.log"), (long long)st.file_bytes);
    CHECK_EQ(file_size(dir, "commands.log.tmp"), -1);
    /* exactly the live records: header + young × (begin + done) + the in-flight begin */
    size_t kl0 = mkkey(k, "w", old);
    size_t bl = 8 + 46 + kl0 + strlen("messages.send") + 1, dl = 8 + 3 + kl0 + 1000;
    size_t blf = 8 + 46 + lf + strlen("messages.send") + 1;
    CHECK_EQ(st.file_bytes, 12 + young * (bl + dl) + blf);
    for (int i = 0; i < old + young; i += 7) {
        size_t kl = mkkey(k, "w", i);
        mkfp(fp, i);
        CHECK_EQ(find_check(c, k, kl, fp, out, mkout(out, i, 1000), NULL),
                 i < old ? DFB_CMDLOG_NEW : DFB_CMDLOG_DONE);
    }
    for (int i = old; i < old + young; i++) { /* every young one, byte for byte */
        size_t kl = mkkey(k, "w", i);
        mkfp(fp, i);
        CHECK_EQ(find_check(c, k, kl, fp, out, mkout(out, i, 1000), NULL), DFB_CMDLOG_DONE);
    }
    CHECK_EQ(find_check(c, kf, lf, fpf, NULL, 0, NULL), DFB_CMDLOG_INFLIGHT);
    /* an expired key is NEW again and can be begun anew */
    size_t kl = mkkey(k, "w", 3);
    mkfp(fp, 12345);
    CHECK_EQ(dfb_cmdlog_begin(c, k, kl, fp, "messages.send", "S", T0 + W + 4000), 0);
    CHECK_EQ(dfb_cmdlog_done(c, k, kl, out, mkout(out, 3, 10)), 0);
    /* the compacted file appended to after the swap reloads exactly */
    dfb_cmdlog_close(&c);
    c = dfb_cmdlog_open_at(dir, W, T0 + W + 4000, err, sizeof err);
    CHECK(c != NULL);
    dfb_cmdlog_stats(c, &st);
    CHECK_EQ(st.entries, young + 1); /* the one in flight at close began before now - W */
    CHECK_EQ(st.done, young + 1);
    CHECK_EQ(st.pending, 0);
    CHECK_EQ(st.dropped_tail_bytes, 0);
    CHECK_EQ(st.compactions, 0);
    CHECK_EQ(find_check(c, k, kl, fp, out, mkout(out, 3, 10), NULL), DFB_CMDLOG_DONE);
    dfb_cmdlog_close(&c);
    /* expiry at load: everything begun before now - window is not loaded, and the file is compacted */
    c = dfb_cmdlog_open_at(dir, W, T0 + 5000 + old + W + 8, err, sizeof err);
    CHECK(c != NULL);
    dfb_cmdlog_stats(c, &st);
    CHECK_EQ(st.entries, young - 8 + 1); /* young i begun at T0+5000+i: 8 of them too old now */
    CHECK_EQ(st.done, young - 8 + 1);
    CHECK_EQ(st.compactions, 1);
    CHECK_EQ(file_size(dir, "commands.log"), (long long)st.file_bytes);
    dfb_cmdlog_close(&c);
}

/* ---- memory only ---- */
static void
t_memory(void)
{
    t_roundtrip(NULL);
    char err[64];
    dfb_cmdlog_t *c = dfb_cmdlog_open_at(NULL, 1000, T0, err, sizeof err);
    CHECK(c != NULL);
    uint8_t k[64], fp[32], out[64];
    size_t kl = mkkey(k, "", 1);
    mkfp(fp, 1);
    CHECK_EQ(dfb_cmdlog_begin(c, k, kl, fp, "rooms.addMember", "r", T0), 0);
    CHECK_EQ(dfb_cmdlog_done(c, k, kl, out, mkout(out, 1, 50)), 0);
    CHECK_EQ(find_check(c, k, kl, fp, out, 50, NULL), DFB_CMDLOG_DONE);
    dfb_cmdlog_tick(c, T0 + 1000);
    CHECK_EQ(find_check(c, k, kl, fp, out, 50, NULL), DFB_CMDLOG_DONE);
    dfb_cmdlog_tick(c, T0 + 1001);
    CHECK_EQ(find_check(c, k, kl, fp, NULL, 0, NULL), DFB_CMDLOG_NEW);
    dfb_cmdlog_stats_t st;
    dfb_cmdlog_stats(c, &st);
    CHECK_EQ(st.entries, 0);
    CHECK_EQ(st.file_bytes, 0);
    dfb_cmdlog_close(&c);
}

/* ---- a full disk (the test hook) and the limits ---- */
static void
t_disk_full(const char *dir)
{
    char err[256];
    dfb_cmdlog_t *c = dfb_cmdlog_open_at(dir, 0, T0, err, sizeof err);
    CHECK(c != NULL);
    if (!c)
        return;
    uint8_t k[64], fp[32], out[200];
    size_t kl = mkkey(k, "", 1);
    mkfp(fp, 1);
    dfb_cmdlog_stats_t st;
    dfb_cmdlog_stats(c, &st);
    uint64_t size0 = st.file_bytes;
    dfb_cmdlog_fail_next_write(c, ENOSPC);
    errno = 0;
    CHECK_EQ(dfb_cmdlog_begin(c, k, kl, fp, "messages.send", "S", T0), -1);
    CHECK_EQ(errno, ENOSPC);
    CHECK_EQ(find_check(c, k, kl, fp, NULL, 0, NULL), DFB_CMDLOG_NEW);
    dfb_cmdlog_stats(c, &st);
    CHECK_EQ(st.entries, 0);
    CHECK_EQ(st.write_errors, 1);
    CHECK_EQ(st.file_bytes, size0);
    CHECK_EQ(file_size(dir, "commands.log"), (long long)size0); /* the half record is cut */
    /* the next write works */
    CHECK_EQ(dfb_cmdlog_begin(c, k, kl, fp, "messages.send", "S", T0), 0);
    /* done on a full disk: PENDING, and a retry records it */
    dfb_cmdlog_fail_next_write(c, ENOSPC);
    errno = 0;
    CHECK_EQ(dfb_cmdlog_done(c, k, kl, out, mkout(out, 1, 200)), -1);
    CHECK_EQ(errno, ENOSPC);
    CHECK_EQ(find_check(c, k, kl, fp, NULL, 0, NULL), DFB_CMDLOG_PENDING);
    dfb_cmdlog_stats(c, &st);
    CHECK_EQ(file_size(dir, "commands.log"), (long long)st.file_bytes);
    CHECK_EQ(st.write_errors, 2);
    CHECK_EQ(dfb_cmdlog_begin(c, k, kl, fp, "messages.send", "S", T0 + 5), 0);
    CHECK_EQ(dfb_cmdlog_done(c, k, kl, out, 200), 0);
    /* over 64 MiB: EFBIG, the entry pending */
    uint8_t k2[64];
    size_t kl2 = mkkey(k2, "", 2);
    CHECK_EQ(dfb_cmdlog_begin(c, k2, kl2, fp, "messages.get", NULL, T0), 0);
    size_t big = DFB_CMDLOG_OUTCOME_MAX + 1;
    uint8_t *b = calloc(1, big);
    errno = 0;
    CHECK_EQ(dfb_cmdlog_done(c, k2, kl2, b, big), -1);
    CHECK_EQ(errno, EFBIG);
    CHECK_EQ(find_check(c, k2, kl2, fp, NULL, 0, NULL), DFB_CMDLOG_PENDING);
    free(b);
    /* bad arguments */
    uint8_t longkey[DFB_CMDLOG_KEY_MAX + 1];
    memset(longkey, 'x', sizeof longkey);
    errno = 0;
    CHECK_EQ(dfb_cmdlog_begin(c, longkey, sizeof longkey, fp, "op", NULL, T0), -1);
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(dfb_cmdlog_begin(c, longkey, DFB_CMDLOG_KEY_MAX, fp, "op", NULL, T0), 0);
    CHECK_EQ(dfb_cmdlog_begin(c, k, 0, fp, "op", NULL, T0), -1);
    CHECK_EQ(dfb_cmdlog_begin(c, k2, kl2 + 1, fp, "", NULL, T0), -1);
    dfb_cmdlog_close(&c);
    c = dfb_cmdlog_open_at(dir, 0, T0 + 10, err, sizeof err);
    CHECK(c != NULL);
    CHECK_EQ(find_check(c, k, kl, fp, out, 200, NULL), DFB_CMDLOG_DONE);
    CHECK_EQ(find_check(c, longkey, DFB_CMDLOG_KEY_MAX, fp, NULL, 0, NULL), DFB_CMDLOG_PENDING);
    dfb_cmdlog_stats(c, &st);
    CHECK_EQ(st.entries, 3);
    CHECK_EQ(st.dropped_tail_bytes, 0);
    dfb_cmdlog_close(&c);
    /* the directory does not exist: NULL and a message */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no/such/dir", dir);
    CHECK(dfb_cmdlog_open(missing, 0, err, sizeof err) == NULL);
    CHECK(strstr(err, "commands.log") != NULL);
}

/* ---- threads: 4 writers on distinct keys, one finder ---- */
#define TW 4
#define TN 150

typedef struct {
    dfb_cmdlog_t *c;
    int w;
    int stop;
} targ_t;

static void *
writer(void *arg)
{
    targ_t *a = arg;
    uint8_t k[64], fp[32], out[300];
    for (int i = 0; i < TN; i++) {
        int id = a->w * TN + i;
        size_t kl = mkkey(k, "t", id);
        mkfp(fp, id);
        if (dfb_cmdlog_begin(a->c, k, kl, fp, "messages.send", "S", T0 + id) != 0)
            return (void *)1;
        if (i % 5 == 4) { /* some released and resumed */
            dfb_cmdlog_release(a->c, k, kl);
            if (dfb_cmdlog_begin(a->c, k, kl, fp, "messages.send", "S", T0 + id) != 0)
                return (void *)1;
        }
        if (dfb_cmdlog_done(a->c, k, kl, out, mkout(out, id, 50 + (size_t)id % 250)) != 0)
            return (void *)1;
    }
    return NULL;
}

#define FEW 30

/*  FEW distinct requests of writer a->w, begun and done. */
static void *
writer_few(void *arg)
{
    targ_t *a = arg;
    uint8_t k[64], fp[32], out[64];
    for (int i = 0; i < FEW; i++) {
        int id = 1000 + a->w * FEW + i;
        size_t kl = mkkey(k, "g", id);
        mkfp(fp, id);
        if (dfb_cmdlog_begin(a->c, k, kl, fp, "messages.send", "S", T0 + id) != 0 ||
            dfb_cmdlog_done(a->c, k, kl, out, mkout(out, id, 64)) != 0)
            return (void *)1;
    }
    return NULL;
}

static void *
finder(void *arg)
{
    targ_t *a = arg;
    uint8_t k[64], fp[32], out[300];
    unsigned seed = 7;
    long bad = 0, rounds = 0;
    while (!__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE) || rounds < 100) {
        int id = (int)(rand_r(&seed) % (TW * TN));
        size_t kl = mkkey(k, "t", id);
        mkfp(fp, id);
        dfb_cmdlog_entry_t e;
        dfb_cmdlog_state_t st = dfb_cmdlog_find(a->c, k, kl, fp, &e);
        size_t ol = mkout(out, id, 50 + (size_t)id % 250);
        if (st == DFB_CMDLOG_DONE && (e.outcome_len != ol || memcmp(e.outcome, out, ol) != 0))
            bad++;
        if (st != DFB_CMDLOG_DONE && e.outcome)
            bad++;
        if (st != DFB_CMDLOG_NEW && e.begin_ms != T0 + id)
            bad++;
        free(e.outcome);
        dfb_cmdlog_tick(a->c, T0); /* nothing expires; tick runs beside the writers */
        rounds++;
    }
    return (void *)bad;
}

static void
t_threads(const char *dir)
{
    char err[256];
    dfb_cmdlog_t *c = dfb_cmdlog_open_at(dir, 0, T0, err, sizeof err);
    CHECK(c != NULL);
    if (!c)
        return;
    pthread_t tw[TW], tf;
    targ_t aw[TW], af = {c, 0, 0};
    CHECK_EQ(pthread_create(&tf, NULL, finder, &af), 0);
    for (int w = 0; w < TW; w++) {
        aw[w] = (targ_t){c, w, 0};
        CHECK_EQ(pthread_create(&tw[w], NULL, writer, &aw[w]), 0);
    }
    for (int w = 0; w < TW; w++) {
        void *rv;
        pthread_join(tw[w], &rv);
        CHECK(rv == NULL);
    }
    __atomic_store_n(&af.stop, 1, __ATOMIC_RELEASE);
    void *rv;
    pthread_join(tf, &rv);
    CHECK_EQ((long)rv, 0);
    dfb_cmdlog_stats_t st;
    dfb_cmdlog_stats(c, &st);
    CHECK_EQ(st.entries, TW * TN);
    CHECK_EQ(st.done, TW * TN);
    CHECK_EQ(st.write_errors, 0);
    dfb_cmdlog_close(&c);
    c = dfb_cmdlog_open_at(dir, 0, T0, err, sizeof err);
    CHECK(c != NULL);
    dfb_cmdlog_stats(c, &st);
    CHECK_EQ(st.entries, TW * TN);
    CHECK_EQ(st.done, TW * TN);
    CHECK_EQ(st.dropped_tail_bytes, 0);
    uint8_t k[64], fp[32], out[300];
    for (int id = 0; id < TW * TN; id++) {
        size_t kl = mkkey(k, "t", id);
        mkfp(fp, id);
        CHECK_EQ(find_check(c, k, kl, fp, out, mkout(out, id, 50 + (size_t)id % 250), NULL),
                 DFB_CMDLOG_DONE);
    }
    dfb_cmdlog_close(&c);
}

/* ---- compaction while 4 writers run (each fdatasync 1 ms, so they overlap) ---- */
static void *
ticker(void *arg)
{
    targ_t *a = arg;
    long n = 0;
    while (!__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE)) {
        dfb_cmdlog_tick(a->c, T0 + 5000);
        n++;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return (void *)n;
}

static void
t_compact_threads(const char *dir)
{
    char err[256];
    dfb_cmdlog_t *c = dfb_cmdlog_open_at(dir, 10000, T0, err, sizeof err);
    CHECK(c != NULL);
    if (!c)
        return;
    uint8_t k[64], fp[32], out[1100];
    for (int i = 0; i < 1500; i++) { /* expired at T0 + 5000: 1.6 MB dead */
        size_t kl = mkkey(k, "old", i);
        mkfp(fp, i);
        CHECK_EQ(dfb_cmdlog_begin(c, k, kl, fp, "messages.send", "S", T0 - 20000), 0);
        CHECK_EQ(dfb_cmdlog_done(c, k, kl, out, mkout(out, i, 1000)), 0);
    }
    dfb_cmdlog_test_sync(c, 1, 0);
    pthread_t tw[TW], tt;
    targ_t aw[TW], at = {c, 0, 0};
    for (int w = 0; w < TW; w++) {
        aw[w] = (targ_t){c, w, 0};
        CHECK_EQ(pthread_create(&tw[w], NULL, writer, &aw[w]), 0);
    }
    CHECK_EQ(pthread_create(&tt, NULL, ticker, &at), 0);
    for (int w = 0; w < TW; w++) {
        void *rv;
        pthread_join(tw[w], &rv);
        CHECK(rv == NULL);
    }
    __atomic_store_n(&at.stop, 1, __ATOMIC_RELEASE);
    pthread_join(tt, NULL);
    dfb_cmdlog_test_sync(c, 0, 0);
    dfb_cmdlog_stats_t st;
    dfb_cmdlog_stats(c, &st);
    CHECK_EQ(st.compactions, 1);
    CHECK_EQ(st.entries, TW * TN);
    CHECK_EQ(st.done, TW * TN);
    CHECK_EQ(st.write_errors, 0);
    CHECK_EQ(file_size(dir, "commands.log"), (long long)st.file_bytes);
    for (int id = 0; id < TW * TN; id++) {
        size_t kl = mkkey(k, "t", id);
        mkfp(fp, id);
        CHECK_EQ(find_check(c, k, kl, fp, out, mkout(out, id, 50 + (size_t)id % 250), NULL),
                 DFB_CMDLOG_DONE);
    }
    dfb_cmdlog_close(&c);
    c = dfb_cmdlog_open_at(dir, 10000, T0 + 5000, err, sizeof err);
    CHECK(c != NULL);
    dfb_cmdlog_stats(c, &st);
    CHECK_EQ(st.entries, TW * TN);
    CHECK_EQ(st.done, TW * TN);
    CHECK_EQ(st.dropped_tail_bytes, 0);
    CHECK_EQ(st.compactions, 0); /* nothing dead: the released/resumed ones wrote one begin */
    for (int id = 0; id < TW * TN; id++) {
        size_t kl = mkkey(k, "t", id);
        mkfp(fp, id);
        CHECK_EQ(find_check(c, k, kl, fp, out, mkout(out, id, 50 + (size_t)id % 250), NULL),
                 DFB_CMDLOG_DONE);
    }
    dfb_cmdlog_close(&c);
}

/* ---- kill -9 of a writer: every acknowledged record survives ---- */
static void
t_kill(const char *dir)
{
    int pfd[2];
    CHECK_EQ(pipe(pfd), 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        char err[256];
        dfb_cmdlog_t *c = dfb_cmdlog_open_at(dir, 0, T0, err, sizeof err);
        uint8_t k[64], fp[32], out[200];
        for (int i = 0; c && i < 1000000; i++) {
            size_t kl = mkkey(k, "kill", i);
            mkfp(fp, i);
            int ack = 2 * i;
            if (dfb_cmdlog_begin(c, k, kl, fp, "messages.send", "S", T0 + i) != 0 ||
                write(pfd[1], &ack, sizeof ack) != sizeof ack)
                _exit(1);
            ack = 2 * i + 1;
            if (dfb_cmdlog_done(c, k, kl, out, mkout(out, i, 20 + (size_t)i % 180)) != 0 ||
                write(pfd[1], &ack, sizeof ack) != sizeof ack)
                _exit(1);
        }
        _exit(0);
    }
    close(pfd[1]);
    int ack = -1, got = 0, last = -1;
    while (read(pfd[0], &ack, sizeof ack) == sizeof ack) {
        last = ack;
        if (++got == 500)
            kill(pid, SIGKILL); /* mid-stream: the child is writing */
    }
    close(pfd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK(last >= 499);
    char err[256];
    dfb_cmdlog_t *c = dfb_cmdlog_open_at(dir, 0, T0 + 10, err, sizeof err);
    CHECK(c != NULL);
    if (!c)
        return;
    uint8_t k[64], fp[32], out[200];
    int n_acked = last / 2 + 1; /* requests whose begin was acknowledged */
    for (int i = 0; i < n_acked + 2; i++) {
        size_t kl = mkkey(k, "kill", i);
        mkfp(fp, i);
        dfb_cmdlog_state_t st =
            find_check(c, k, kl, fp, out, mkout(out, i, 20 + (size_t)i % 180), NULL);
        if (2 * i + 1 <= last)
            CHECK_EQ(st, DFB_CMDLOG_DONE); /* done acknowledged */
        else if (2 * i <= last)
            CHECK(st == DFB_CMDLOG_PENDING || st == DFB_CMDLOG_DONE);
        else /* never acknowledged: at most its begin (or done) reached the file */
            CHECK(st == DFB_CMDLOG_NEW || st == DFB_CMDLOG_PENDING || st == DFB_CMDLOG_DONE);
    }
    dfb_cmdlog_stats_t st;
    dfb_cmdlog_stats(c, &st);
    CHECK(st.entries >= (uint64_t)n_acked && st.entries <= (uint64_t)n_acked + 1);
    dfb_cmdlog_close(&c);
}

/* ---- fdatasync failures, and group commit ---- */
static void
t_sync(const char *dir)
{
    char err[256];
    dfb_cmdlog_t *c = dfb_cmdlog_open_at(dir, 0, T0, err, sizeof err);
    CHECK(c != NULL);
    if (!c)
        return;
    uint8_t k[64], k2[64], fp[32], out[64];
    size_t kl = mkkey(k, "", 1), kl2 = mkkey(k2, "", 2);
    mkfp(fp, 1);
    dfb_cmdlog_stats_t st;
    dfb_cmdlog_stats(c, &st);
    uint64_t size0 = st.file_bytes;
    size_t bl = 8 + 46 + kl + 13 + 1;
    /* a begin whose fdatasync fails: the key stays new; its record stays in the file */
    dfb_cmdlog_test_sync(c, 0, EIO);
    errno = 0;
    CHECK_EQ(dfb_cmdlog_begin(c, k, kl, fp, "messages.send", "S", T0 + 1), -1);
    CHECK_EQ(errno, EIO);
    CHECK_EQ(find_check(c, k, kl, fp, NULL, 0, NULL), DFB_CMDLOG_NEW);
    dfb_cmdlog_stats(c, &st);
    CHECK_EQ(st.entries, 0);
    CHECK_EQ(st.write_errors, 1);
    CHECK_EQ(st.file_bytes, size0 + bl);
    /* the retry journals it again and works */
    CHECK_EQ(dfb_cmdlog_begin(c, k, kl, fp, "messages.send", "S", T0 + 2), 0);
    CHECK_EQ(dfb_cmdlog_done(c, k, kl, out, mkout(out, 1, 64)), 0);
    /* a done whose fdatasync fails: pending in memory */
    CHECK_EQ(dfb_cmdlog_begin(c, k2, kl2, fp, "messages.send", "S", T0 + 3), 0);
    dfb_cmdlog_test_sync(c, 0, EIO);
    errno = 0;
    CHECK_EQ(dfb_cmdlog_done(c, k2, kl2, out, mkout(out, 2, 30)), -1);
    CHECK_EQ(errno, EIO);
    CHECK_EQ(find_check(c, k2, kl2, fp, NULL, 0, NULL), DFB_CMDLOG_PENDING);
    dfb_cmdlog_stats(c, &st);
    CHECK_EQ(st.write_errors, 2);
    CHECK_EQ(st.pending, 1);
    CHECK_EQ(st.done, 1);
    dfb_cmdlog_close(&c);
    /* after a restart the records that did reach the file count: the first
       begin of k (its time), and k2's done (the channel replied it anyway) */
    c = dfb_cmdlog_open_at(dir, 0, T0 + 10, err, sizeof err);
    CHECK(c != NULL);
    int64_t ms = 0;
    CHECK_EQ(find_check(c, k, kl, fp, out, mkout(out, 1, 64), &ms), DFB_CMDLOG_DONE);
    CHECK_EQ(ms, T0 + 1);
    CHECK_EQ(find_check(c, k2, kl2, fp, out, mkout(out, 2, 30), NULL), DFB_CMDLOG_DONE);
    dfb_cmdlog_close(&c);

    /* group commit: 4 threads, every fdatasync 3 ms: far fewer syncs than records */
    rm_dir_files(dir);
    c = dfb_cmdlog_open_at(dir, 0, T0, err, sizeof err);
    CHECK(c != NULL);
    if (!c)
        return;
    dfb_cmdlog_test_sync(c, 3, 0);
    pthread_t tw[4];
    targ_t aw[4];
    for (int w = 0; w < 4; w++) {
        aw[w] = (targ_t){c, w, 0};
        CHECK_EQ(pthread_create(&tw[w], NULL, writer_few, &aw[w]), 0);
    }
    for (int w = 0; w < 4; w++) {
        void *rv;
        pthread_join(tw[w], &rv);
        CHECK(rv == NULL);
    }
    uint64_t syncs = dfb_cmdlog_syncs(c), records = 4 * FEW * 2;
    dfb_cmdlog_stats(c, &st);
    CHECK_EQ(st.done, 4 * FEW);
    CHECK(syncs >= 1 && syncs < records * 9 / 10); /* one per record without group commit */
    printf("  group commit: %llu fdatasyncs for %llu records (4 threads, 3 ms each)\n",
           (unsigned long long)syncs, (unsigned long long)records);
    dfb_cmdlog_close(&c);
}

int
dfb_cmdlog_test(int verbose)
{
    df_check_failures = 0;
    if (!verbose)
        dfb_log_set_level(DFB_LOG_ERROR);
    struct {
        const char *name;
        int needs_dir;
        void (*fn)(const char *);
    } steps[] = {
        {"roundtrip", 1, t_roundtrip},     {"torn", 1, t_torn},
        {"crc", 1, t_crc},                 {"window_compaction", 1, t_window_compaction},
        {"disk_full", 1, t_disk_full},     {"threads", 1, t_threads},
        {"sync", 1, t_sync},               {"compact_threads", 1, t_compact_threads},
        {"kill", 1, t_kill},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        int before = df_check_failures;
        steps[i].fn(fresh_dir());
        if (verbose)
            printf("  %s: %s\n", steps[i].name, df_check_failures == before ? "ok" : "FAILED");
    }
    int before = df_check_failures;
    t_memory();
    if (verbose)
        printf("  memory: %s\n", df_check_failures == before ? "ok" : "FAILED");
    rm_dir_files(s_dir);
    rmdir(s_dir);
    s_dir[0] = '\0';
    return DF_CHECK_RESULT();
}

/*  Writes n done requests (begin ~100 bytes, done ~400 bytes) spread over
    the last 23 h, then times dfb_cmdlog_open on that file. */
int
dfb_cmdlog_bench(int verbose)
{
    (void)verbose;
    const char *env = getenv("DFB_CMDLOG_BENCH_N");
    int n = env ? atoi(env) : 1000000;
    const char *dir = fresh_dir();
    char err[256];
    int64_t now = dfb_wall_ms();
    dfb_cmdlog_t *c = dfb_cmdlog_open(dir, 0, err, sizeof err);
    if (!c) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    uint8_t k[80], fp[32], out[400];
    int64_t t0 = dfb_mono_ms();
    for (int i = 0; i < n; i++) {
        size_t kl = mkkey(k, "worker-cert", i);
        mkfp(fp, i);
        int64_t ms = now - 23LL * 3600 * 1000 + (int64_t)i * (23LL * 3600 * 1000) / n;
        if (dfb_cmdlog_begin(c, k, kl, fp, "messages.send", "Gb2aDAsR_Kk6FNvwGvYuaH___o7zn4wNdA", ms) != 0 ||
            dfb_cmdlog_done(c, k, kl, out, mkout(out, i, sizeof out)) != 0) {
            fprintf(stderr, "write %d failed: %s\n", i, strerror(errno));
            return 1;
        }
    }
    int64_t t1 = dfb_mono_ms();
    dfb_cmdlog_stats_t st;
    dfb_cmdlog_stats(c, &st);
    dfb_cmdlog_close(&c);
    c = dfb_cmdlog_open(dir, 0, err, sizeof err);
    int64_t t2 = dfb_mono_ms();
    long rss_kb = -1;
    FILE *status = fopen("/proc/self/status", "r");
    char line[256];
    while (status && fgets(line, sizeof line, status))
        if (strncmp(line, "VmRSS:", 6) == 0)
            rss_kb = atol(line + 6);
    if (status)
        fclose(status);
    dfb_cmdlog_stats_t st2;
    dfb_cmdlog_stats(c, &st2);
    uint8_t kk[80];
    size_t kl = mkkey(kk, "worker-cert", n / 2);
    mkfp(fp, n / 2);
    dfb_cmdlog_entry_t e;
    int64_t t3 = dfb_mono_ms();
    dfb_cmdlog_state_t s = dfb_cmdlog_find(c, kk, kl, fp, &e);
    int64_t t4 = dfb_mono_ms();
    free(e.outcome);
    printf("cmdlog bench: %d requests, file %llu bytes; writing %lld ms; open (load) %lld ms: "
           "%llu entries, %llu done, RSS after the load %ld KiB; a find %lld ms (state %d)\n",
           n, (unsigned long long)st.file_bytes, (long long)(t1 - t0), (long long)(t2 - t1),
           (unsigned long long)st2.entries, (unsigned long long)st2.done, rss_kb, (long long)(t4 - t3),
           (int)s);
    dfb_cmdlog_close(&c);
    rm_dir_files(s_dir);
    rmdir(s_dir);
    s_dir[0] = '\0';
    return st2.entries == (uint64_t)n ? 0 : 1;
}
