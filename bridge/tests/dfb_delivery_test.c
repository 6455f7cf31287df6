/*  dfb_delivery_test: unit tests of the delivery guarantees (journal, dedupe
    window, replay endpoint, heartbeat) run in-process, one ctest per name:
      dfb_delivery_test NAME SCRATCH_DIR
    The end-to-end tests (real dfbridge + dfpod, kill -9) are in
    tests/integration/delivery_test.py. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include <msgpack.h>

#include "df_check.h"
#include "dfb_clock.h"
#include "dfb_config.h"
#include "dfb_dedupe.h"
#include "dfb_journal.h"
#include "dfb_journal_priv.h" /* journal_reader_index checks the sparse index */
#include "dfb_mpack.h"
#include "dfb_publish.h"
#include "dfb_replay.h"
#include "dfb_golden.h"

static char s_dir[512];

/* ---- helpers -------------------------------------------------------------- */

static void
rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    char path[1024];
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
            rm_rf(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/*  A fresh state dir for one scenario. */
static const char *
fresh(const char *name)
{
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", s_dir, name);
    rm_rf(path);
    mkdir(s_dir, 0755);
    return path;
}

static dfb_journal_opts_t
opts(const char *dir, uint64_t seg, uint64_t max, int64_t age, dfb_fsync_t fs)
{
    return (dfb_journal_opts_t){.dir = dir,
                                .segment_bytes = seg,
                                .max_bytes = max,
                                .max_age_ms = age,
                                .fsync = fs,
                                .fsync_ms = 1000};
}

static const char *const TOPICS[3] = {"MESSAGESENT", "ROOMCREATED", "USERJOINEDROOM"};

/*  Record i (gseq i+first): topic i%3, seq per topic, a body that encodes
    gseq so read-back is checked byte for byte. */
typedef struct {
    char body[200];
    char id[32];
    dfb_journal_rec_t rec;
} mk_t;

static void
mk(mk_t *m, uint64_t gseq, uint64_t seq, int topic, size_t body_len)
{
    snprintf(m->id, sizeof m->id, "id-%" PRIu64, gseq);
    for (size_t k = 0; k < sizeof m->body; k++)
        m->body[k] = (char)('a' + (gseq + k) % 26);
    m->rec = (dfb_journal_rec_t){.gseq = gseq,
                                 .seq = seq,
                                 .topic = TOPICS[topic],
                                 .topic_len = strlen(TOPICS[topic]),
                                 .type = TOPICS[topic],
                                 .type_len = strlen(TOPICS[topic]),
                                 .id = m->id,
                                 .id_len = strlen(m->id),
                                 .body = (const uint8_t *)m->body,
                                 .body_len = body_len};
}

/*  Appends n records from gseq first; seqs[] tracks per-topic seq. */
static int
append_n(dfb_journal_t *j, uint64_t first, int n, uint64_t seqs[3], int64_t now)
{
    for (int i = 0; i < n; i++) {
        uint64_t g = first + (uint64_t)i;
        int t = (int)(g % 3);
        mk_t m;
        mk(&m, g, ++seqs[t], t, 50 + g % 100);
        if (dfb_journal_append(j, &m.rec, now) != 0)
            return -1;
    }
    return 0;
}

/*  Reads from gseq from to the head, checking every record. Returns the
    count, or -1 on a mismatch / error. */
static long
read_check(dfb_journal_t *j, uint64_t from, uint64_t expect_first)
{
    dfb_journal_reader_t *r = dfb_journal_reader_new(j);
    long n = 0;
    if (dfb_journal_reader_seek_gseq(r, from) != 0) {
        dfb_journal_reader_destroy(&r);
        return -1;
    }
    dfb_journal_rec_t rec;
    int rc;
    uint64_t want = expect_first;
    while ((rc = dfb_journal_reader_next(r, &rec)) == 1) {
        mk_t m;
        mk(&m, want, 0, (int)(want % 3), 50 + want % 100);
        if (rec.gseq != want || rec.body_len != m.rec.body_len ||
            memcmp(rec.body, m.body, rec.body_len) != 0 || rec.topic_len != m.rec.topic_len ||
            memcmp(rec.topic, m.rec.topic, rec.topic_len) != 0 || rec.id_len != m.rec.id_len ||
            memcmp(rec.id, m.id, rec.id_len) != 0) {
            printf("  mismatch at gseq %" PRIu64 " (got %" PRIu64 ")\n", want, rec.gseq);
            n = -1;
            break;
        }
        want++;
        n++;
    }
    if (rc < 0)
        n = -1;
    dfb_journal_reader_destroy(&r);
    return n;
}

/*  The segment files' first gseqs, sorted; the count. */
static int
seg_firsts(const char *state, uint64_t *firsts, int max)
{
    char path[700];
    snprintf(path, sizeof path, "%s/journal", state);
    DIR *d = opendir(path);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (strlen(e->d_name) == 24 && strcmp(e->d_name + 20, ".dfj") == 0 && n < max)
            firsts[n++] = strtoull(e->d_name, NULL, 10);
    if (d)
        closedir(d);
    for (int a = 0; a < n; a++) /* a handful: insertion sort */
        for (int b = a; b > 0 && firsts[b] < firsts[b - 1]; b--) {
            uint64_t t = firsts[b];
            firsts[b] = firsts[b - 1];
            firsts[b - 1] = t;
        }
    return n;
}

static void
seg_file(const char *state, uint64_t first, char *out, size_t cap)
{
    snprintf(out, cap, "%s/journal/%020" PRIu64 ".dfj", state, first);
}

static int
count_segments(const char *state)
{
    static uint64_t firsts[1 << 14];
    return seg_firsts(state, firsts, 1 << 14);
}

/*  Path of the newest segment file. */
static void
last_segment(const char *state, char *out, size_t cap)
{
    uint64_t firsts[4096];
    int n = seg_firsts(state, firsts, 4096);
    if (n > 0)
        seg_file(state, firsts[n - 1], out, cap);
    else
        snprintf(out, cap, "%s/journal/", state);
}

static const char *read_ranges(dfb_journal_t *j, uint64_t from, char *out, size_t cap);

/* ---- journal tests -------------------------------------------------------- */

static void
test_append_read(void)
{
    const char *dir = fresh("append");
    char err[256];
    dfb_journal_opts_t o = opts(dir, 1 << 20, 0, 0, DFB_FSYNC_NEVER);
    dfb_journal_t *j = dfb_journal_open(&o, "EPOCH-A", dfb_wall_ms(), err, sizeof err);
    CHECK(j);
    if (!j)
        return;
    dfb_journal_stats_t st;
    dfb_journal_stats(j, &st);
    CHECK(st.new_epoch == 1 && st.head_gseq == 0 && st.oldest_gseq == 1);
    CHECK(strcmp(dfb_journal_epoch(j), "EPOCH-A") == 0);
    uint64_t seqs[3] = {0, 0, 0};
    CHECK(append_n(j, 1, 1000, seqs, dfb_wall_ms()) == 0);
    CHECK(read_check(j, 1, 1) == 1000);
    CHECK(read_check(j, 0, 1) == 1000); /* 0 counts as 1 */
    CHECK(read_check(j, 777, 777) == 224);
    CHECK(read_check(j, 1000, 1000) == 1);
    CHECK(read_check(j, 1001, 1001) == 0);
    /* Out of order or duplicate gseq is refused. */
    mk_t m;
    mk(&m, 1000, 1, 0, 10);
    CHECK(dfb_journal_append(j, &m.rec, dfb_wall_ms()) == -1);
    /* Topic seek: ROOMCREATED (topic 1) seq 100 is gseq 1 + 3*99 + 0 = 298 ... exactly the
       records of that topic from its seq 100 on, read through the reader. */
    dfb_journal_reader_t *r = dfb_journal_reader_new(j);
    CHECK(dfb_journal_reader_seek_topic(r, "ROOMCREATED", 11, 100) == 0);
    dfb_journal_rec_t rec;
    uint64_t want = 100, got = 0;
    while (dfb_journal_reader_next(r, &rec) == 1)
        if (rec.topic_len == 11 && memcmp(rec.topic, "ROOMCREATED", 11) == 0 && rec.seq >= 100) {
            CHECK(rec.seq == want && rec.gseq % 3 == 1);
            want++;
            got++;
        }
    CHECK(got == seqs[1] - 99);
    dfb_journal_reader_destroy(&r);
    dfb_journal_stats(j, &st);
    CHECK(st.appended == 1000 && st.head_gseq == 1000 && st.append_errors == 1);
    dfb_journal_destroy(&j);
    CHECK(!j);
}

static void
test_segments(void)
{
    const char *dir = fresh("segments");
    char err[256];
    dfb_journal_opts_t o = opts(dir, 8192, 0, 0, DFB_FSYNC_NEVER);
    dfb_journal_t *j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
    uint64_t seqs[3] = {0, 0, 0};
    CHECK(append_n(j, 1, 2000, seqs, dfb_wall_ms()) == 0);
    dfb_journal_stats_t st;
    dfb_journal_stats(j, &st);
    int files = count_segments(dir);
    printf("  2000 records in %d segments, %" PRIu64 " bytes\n", files, st.bytes);
    CHECK(files > 20 && (uint64_t)files == st.segments);
    /* No segment exceeds segmentBytes by more than one record. */
    char path[700];
    snprintf(path, sizeof path, "%s/journal", dir);
    DIR *d = opendir(path);
    uint64_t total = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strstr(e->d_name, ".dfj"))
            continue;
        char f[1024];
        struct stat sb;
        snprintf(f, sizeof f, "%s/%s", path, e->d_name);
        stat(f, &sb);
        CHECK(sb.st_size < 8192 + 400);
        total += (uint64_t)sb.st_size;
    }
    if (d)
        closedir(d);
    CHECK(total == st.bytes);
    /* Reading crosses every segment boundary in order, from anywhere. */
    CHECK(read_check(j, 1, 1) == 2000);
    CHECK(read_check(j, 1234, 1234) == 767);
    dfb_journal_destroy(&j);
}

/*  A filtered reader (issue 9: replay scans): gseqs read with topics, the
    segments skipped, PASSED counted. */
static long
read_filtered(dfb_journal_t *j, uint64_t from, char *const *topics, const size_t *lens, uint32_t n,
              uint64_t *got, long max, uint64_t *skipped, long *passed)
{
    dfb_journal_reader_t *r = dfb_journal_reader_new(j);
    long k = 0;
    *passed = 0;
    if (!r || dfb_journal_reader_filter(r, topics, lens, n) != 0 ||
        dfb_journal_reader_seek_gseq(r, from) != 0) {
        dfb_journal_reader_destroy(&r);
        return -1;
    }
    dfb_journal_rec_t rec;
    for (int rc; (rc = dfb_journal_reader_next(r, &rec)) != 0;) {
        if (rc == DFB_JOURNAL_PASSED) {
            (*passed)++;
            continue;
        }
        if (rc != 1) {
            k = -1;
            break;
        }
        /* The reader returns other topics' records only when it cannot
           step over them; the caller filters. */
        int match = 0;
        for (uint32_t i = 0; i < n; i++)
            match |= rec.topic_len == lens[i] && memcmp(rec.topic, topics[i], lens[i]) == 0;
        mk_t m;
        mk(&m, rec.gseq, 0, 0, 40);
        if (match && k < max) {
            if (rec.body_len != 40 || memcmp(rec.body, m.body, 40) != 0) {
                k = -1;
                break;
            }
            got[k++] = rec.gseq;
        }
    }
    *skipped = dfb_journal_reader_skipped(r);
    dfb_journal_reader_destroy(&r);
    return k;
}

static void
test_reader_filter(void)
{
    const char *dir = fresh("filter");
    char err[256];
    dfb_journal_opts_t o = opts(dir, 8192, 0, 0, DFB_FSYNC_NEVER);
    dfb_journal_t *j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
    CHECK(j != NULL);
    if (!j)
        return;
    /* 3000 records: MESSAGESENT, with RARE at 500 and 2500 and MID every
       10th in 1000..1100. */
    uint64_t s_ms = 0, s_rare = 0, s_mid = 0;
    for (uint64_t g = 1; g <= 3000; g++) {
        mk_t m;
        mk(&m, g, 0, 0, 40);
        const char *t = g == 500 || g == 2500                   ? "RARE"
                        : g >= 1000 && g <= 1100 && g % 10 == 0 ? "MID"
                                                                : "MESSAGESENT";
        m.rec.topic = m.rec.type = t;
        m.rec.topic_len = m.rec.type_len = strlen(t);
        m.rec.seq = !strcmp(t, "RARE") ? ++s_rare : !strcmp(t, "MID") ? ++s_mid : ++s_ms;
        CHECK(dfb_journal_append(j, &m.rec, dfb_wall_ms()) == 0);
    }
    dfb_journal_stats_t st;
    dfb_journal_stats(j, &st);
    printf("  3000 records in %" PRIu64 " segments\n", st.segments);
    CHECK(st.segments > 30);
    char *rare[] = {"RARE"}, *both[] = {"MID", "RARE"}, *none[] = {"NOSUCH"};
    size_t lr[] = {4}, lb[] = {3, 4}, ln[] = {6};
    uint64_t got[64], skipped;
    long passed;
    long n = read_filtered(j, 1, rare, lr, 1, got, 64, &skipped, &passed);
    printf("  RARE from 1: %ld records, %" PRIu64 " segments skipped, %ld PASSED\n", n, skipped,
           passed);
    CHECK_EQ(n, 2);
    CHECK(n == 2 && got[0] == 500 && got[1] == 2500);
    /* Every closed segment but the two holding RARE (and the one the seek
       lands in) is skipped unread. */
    CHECK(skipped + 4 >= st.segments);
    CHECK(passed > 0);
    n = read_filtered(j, 1, both, lb, 2, got, 64, &skipped, &passed);
    CHECK_EQ(n, 13);
    int order = n == 13 && got[0] == 500 && got[12] == 2500;
    for (int i = 1; order && i < 12; i++)
        order = got[i] == 1000 + 10 * (uint64_t)(i - 1);
    CHECK(order);
    n = read_filtered(j, 1200, rare, lr, 1, got, 64, &skipped, &passed);
    CHECK(n == 1 && got[0] == 2500);
    n = read_filtered(j, 2501, rare, lr, 1, got, 64, &skipped, &passed);
    CHECK_EQ(n, 0);
    n = read_filtered(j, 1, none, ln, 1, got, 64, &skipped, &passed);
    CHECK_EQ(n, 0);
    CHECK(skipped + 2 >= st.segments);
    /* Unfiltered, every record is still there. */
    CHECK(dfb_journal_has_topic(j, "RARE", 4) && dfb_journal_has_topic(j, "MID", 3) &&
          !dfb_journal_has_topic(j, "NOSUCH", 6));
    dfb_journal_destroy(&j);
}

/*  Writes 6000 records into segments of 256 KiB and reopens the journal: its
    closed segments, of an earlier run, have no sparse index yet. */
static dfb_journal_t *
index_journal(const char *dir)
{
    char err[256];
    dfb_journal_opts_t o = opts(dir, 256 << 10, 0, 0, DFB_FSYNC_NEVER);
    dfb_journal_t *j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
    uint64_t seqs[3] = {0, 0, 0};
    CHECK(j && append_n(j, 1, 6000, seqs, dfb_wall_ms()) == 0);
    dfb_journal_destroy(&j);
    j = dfb_journal_open(&o, "E2", dfb_wall_ms(), err, sizeof err);
    CHECK(j && dfb_journal_last_gseq(j) == 6000);
    CHECK(j && j->nsegs >= 4 && !j->segs[0].indexed && !j->segs[1].indexed);
    return j;
}

/*  Offset of the record of gseq g in the segment starting at first (the
    framing walked by hand). */
static uint64_t
record_off(const char *dir, uint64_t first, uint64_t g)
{
    char seg[1024];
    seg_file(dir, first, seg, sizeof seg);
    int fd = open(seg, O_RDONLY);
    uint64_t off = 0;
    unsigned char h[8];
    for (uint64_t i = 0; i < g - first + 1; i++) { /* header + the records before g */
        CHECK(pread(fd, h, 8, (off_t)off) == 8);
        off += 8 + (h[0] | h[1] << 8 | h[2] << 16 | (uint64_t)h[3] << 24);
    }
    close(fd);
    return off;
}

static void
test_reader_index(void)
{
    /* A seek into a closed segment of an earlier run builds its index: one
       mark every INDEX_EVERY records, each at its record; reads are exact. */
    const char *dir = fresh("index");
    dfb_journal_t *j = index_journal(dir);
    if (!j)
        return;
    uint64_t s1 = j->segs[1].first_gseq, s2 = j->segs[2].first_gseq;
    printf("  segments from 1, %" PRIu64 ", %" PRIu64 " (%zu)\n", s1, s2, j->nsegs);
    CHECK(read_check(j, 1000, 1000) == 5001);
    CHECK(j->segs[0].indexed && !j->segs[1].indexed);
    CHECK_EQ((long)j->segs[0].nmarks, (long)((s1 - 1 + INDEX_EVERY - 1) / INDEX_EVERY));
    for (size_t k = 0; k < j->segs[0].nmarks; k++) {
        CHECK(j->segs[0].marks[k].gseq == 1 + k * INDEX_EVERY);
        CHECK(j->segs[0].marks[k].off == record_off(dir, 1, 1 + k * INDEX_EVERY));
    }
    CHECK(read_check(j, s1 + 300, s1 + 300) == (long)(6001 - s1 - 300));
    CHECK(j->segs[1].indexed);
    CHECK(read_check(j, s1, s1) == (long)(6001 - s1));
    CHECK(read_check(j, s2 - 1, s2 - 1) == (long)(6001 - s2 + 1));
    CHECK(read_check(j, 1, 1) == 6000);
    /* A bad CRC in segment 2 (index already built or not): seeks past it
       read on untouched, a read across it reports it and what follows in
       its segment. */
    uint64_t s3 = j->segs[3].first_gseq, bad = s2 + 600;
    char seg[1024], want[128], got[128];
    seg_file(dir, s2, seg, sizeof seg);
    int fd = open(seg, O_RDWR);
    unsigned char b;
    uint64_t off = record_off(dir, s2, bad);
    CHECK(pread(fd, &b, 1, (off_t)off + 60) == 1);
    b ^= 0x20;
    CHECK(pwrite(fd, &b, 1, (off_t)off + 60) == 1);
    close(fd);
    /* bad is s2 + 600: a seek from s2 + 800 starts at the mark s2 + 768
       and never reads it; one from s2 + 700 starts at s2 + 512 and does. */
    snprintf(want, sizeof want, "%" PRIu64 "-6000", s2 + 800);
    CHECK_STR(read_ranges(j, s2 + 800, got, sizeof got), want);
    snprintf(want, sizeof want, "!%" PRIu64 "-%" PRIu64 " %" PRIu64 "-6000", s2 + 700, s3 - 1, s3);
    CHECK_STR(read_ranges(j, s2 + 700, got, sizeof got), want);
    snprintf(want, sizeof want, "%" PRIu64 "-%" PRIu64 " !%" PRIu64 "-%" PRIu64 " %" PRIu64 "-6000",
             s2 + 1, bad - 1, bad, s3 - 1, s3);
    CHECK_STR(read_ranges(j, s2 + 1, got, sizeof got), want);
    dfb_journal_destroy(&j);

    /* A length that does not chain: the index stops before it, so a seek
       past it meets it and reports the rest of its segment, as a scan from
       the start did. */
    dir = fresh("index2");
    j = index_journal(dir);
    if (!j)
        return;
    s1 = j->segs[1].first_gseq;
    s2 = j->segs[2].first_gseq;
    bad = s1 + 600;
    seg_file(dir, s1, seg, sizeof seg);
    fd = open(seg, O_RDWR);
    off = record_off(dir, s1, bad);
    unsigned char huge[4] = {0xff, 0xff, 0xff, 0x7f};
    CHECK(pwrite(fd, huge, 4, (off_t)off) == 4);
    close(fd);
    snprintf(want, sizeof want, "!%" PRIu64 "-%" PRIu64 " %" PRIu64 "-6000", bad + 100, s2 - 1, s2);
    CHECK_STR(read_ranges(j, bad + 100, got, sizeof got), want);
    CHECK(j->segs[1].indexed);
    CHECK_EQ((long)j->segs[1].nmarks, (long)((bad - s1 + INDEX_EVERY - 1) / INDEX_EVERY));
    snprintf(want, sizeof want, "%" PRIu64 "-%" PRIu64 " !%" PRIu64 "-%" PRIu64 " %" PRIu64 "-6000",
             s1 + 10, bad - 1, bad, s2 - 1, s2);
    CHECK_STR(read_ranges(j, s1 + 10, got, sizeof got), want);
    dfb_journal_destroy(&j);
}

/*  Reads with r to the head, checking each record against mk from gseq
    want on. The count, or -1 on a mismatch or error. */
static long
read_on(dfb_journal_reader_t *r, uint64_t want)
{
    dfb_journal_rec_t rec;
    long n = 0;
    int rc;
    while ((rc = dfb_journal_reader_next(r, &rec)) == 1) {
        mk_t m;
        mk(&m, want, 0, (int)(want % 3), 50 + want % 100);
        if (rec.gseq != want || rec.body_len != m.rec.body_len ||
            memcmp(rec.body, m.body, rec.body_len) != 0 || rec.id_len != m.rec.id_len ||
            memcmp(rec.id, m.id, rec.id_len) != 0)
            return -1;
        want++;
        n++;
    }
    return rc == 0 ? n : -1;
}

static void
test_reader_pos(void)
{
    /* A position taken from one reader starts another exactly there; a
       position of another gseq, or of a segment retention deleted, is a
       plain seek. */
    const char *dir = fresh("pos");
    char err[256];
    dfb_journal_opts_t o = opts(dir, 4096, 0, 0, DFB_FSYNC_NEVER);
    dfb_journal_t *j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
    uint64_t seqs[3] = {0, 0, 0};
    CHECK(j && append_n(j, 1, 2000, seqs, dfb_wall_ms()) == 0);
    if (!j)
        return;
    dfb_journal_reader_t *a = dfb_journal_reader_new(j), *b = dfb_journal_reader_new(j);
    dfb_journal_rec_t rec;
    dfb_journal_pos_t p, p5;
    CHECK(dfb_journal_reader_seek_gseq(a, 1) == 0);
    while (dfb_journal_reader_next(a, &rec) == 1 && rec.gseq < 777)
        if (rec.gseq == 5)
            dfb_journal_reader_pos(a, &p5);
    dfb_journal_reader_pos(a, &p);
    CHECK(p.gseq == 777 && p.first > 1 && p.off > 0 && p5.gseq == 5 && p5.first == 1);
    CHECK(dfb_journal_reader_seek_pos(b, 777, &p) == 0);
    CHECK_EQ(read_on(b, 777), 1224);
    CHECK(dfb_journal_reader_seek_pos(b, 778, &p) == 0); /* another gseq: a seek */
    CHECK_EQ(read_on(b, 778), 1223);
    CHECK(dfb_journal_reader_seek_pos(b, 5, &p5) == 0);
    CHECK_EQ(read_on(b, 5), 1996);
    /* It starts at the record itself, not at the segment's start or a
       mark: with record first + 1 damaged, a seek to first + 3 meets it
       (segments of 4 KiB have one mark, at their start), a start at the
       position of first + 3 does not. */
    uint64_t g = p.first + 3;
    dfb_journal_reader_destroy(&a);
    CHECK(dfb_journal_reader_seek_gseq(a = dfb_journal_reader_new(j), g) == 0);
    CHECK(dfb_journal_reader_next(a, &rec) == 1 && rec.gseq == g);
    dfb_journal_reader_pos(a, &p);
    dfb_journal_reader_destroy(&a);
    char seg[1024];
    seg_file(dir, p.first, seg, sizeof seg);
    int fd = open(seg, O_RDWR);
    unsigned char c;
    uint64_t off = record_off(dir, p.first, p.first + 1);
    CHECK(pread(fd, &c, 1, (off_t)off + 60) == 1);
    c ^= 0x20;
    CHECK(pwrite(fd, &c, 1, (off_t)off + 60) == 1);
    close(fd);
    CHECK(dfb_journal_reader_seek_pos(b, g, &p) == 0);
    CHECK_EQ(read_on(b, g), (long)(2001 - g));
    CHECK(dfb_journal_reader_seek_gseq(b, g) == 0);
    CHECK_EQ(read_on(b, g), -1);
    dfb_journal_reader_destroy(&a);
    dfb_journal_reader_destroy(&b);
    dfb_journal_destroy(&j);
    /* Segment 1 deleted by retention (the next open keeps 64 KiB): GONE. */
    o = opts(dir, 4096, 64 << 10, 0, DFB_FSYNC_NEVER);
    j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
    CHECK(j && append_n(j, 2001, 100, seqs, dfb_wall_ms()) == 0);
    if (!j)
        return;
    b = dfb_journal_reader_new(j);
    dfb_journal_stats_t st;
    dfb_journal_stats(j, &st);
    CHECK(st.oldest_gseq > 5);
    CHECK_EQ(dfb_journal_reader_seek_pos(b, 5, &p5), DFB_JOURNAL_GONE);
    dfb_journal_reader_destroy(&b);
    dfb_journal_destroy(&j);
}

static void
test_retention_size(void)
{
    const char *dir = fresh("retsize");
    char err[256];
    dfb_journal_opts_t o = opts(dir, 8192, 65536, 0, DFB_FSYNC_NEVER);
    dfb_journal_t *j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
    uint64_t seqs[3] = {0, 0, 0};
    CHECK(append_n(j, 1, 3000, seqs, dfb_wall_ms()) == 0);
    dfb_journal_stats_t st;
    dfb_journal_stats(j, &st);
    printf("  size retention: %" PRIu64 " segments, %" PRIu64 " bytes, oldest gseq %" PRIu64
           ", deleted %" PRIu64 "\n",
           st.segments, st.bytes, st.oldest_gseq, st.segments_deleted);
    CHECK(st.bytes <= 65536 && st.bytes > 65536 - 8192 - 400);
    CHECK(st.segments_deleted > 0 && (uint64_t)count_segments(dir) == st.segments);
    CHECK(st.oldest_gseq > 1 && st.head_gseq == 3000);
    /* Everything from the oldest retained on is there; older is gone. */
    CHECK(read_check(j, st.oldest_gseq, st.oldest_gseq) == (long)(3001 - st.oldest_gseq));
    dfb_journal_reader_t *r = dfb_journal_reader_new(j);
    CHECK(dfb_journal_reader_seek_gseq(r, st.oldest_gseq - 1) == DFB_JOURNAL_GONE);
    CHECK(dfb_journal_reader_seek_gseq(r, 1) == DFB_JOURNAL_GONE);
    /* Topic seq 1 of MESSAGESENT is gone too; its latest seq is not. */
    CHECK(dfb_journal_reader_seek_topic(r, "MESSAGESENT", 11, 1) == DFB_JOURNAL_GONE);
    CHECK(dfb_journal_reader_seek_topic(r, "MESSAGESENT", 11, seqs[0]) == 0);
    dfb_journal_reader_destroy(&r);
    dfb_journal_destroy(&j);
}

static void
test_retention_age(void)
{
    const char *dir = fresh("retage");
    char err[256];
    int64_t t0 = dfb_wall_ms();
    dfb_journal_opts_t o = opts(dir, 8192, 0, 60000, DFB_FSYNC_NEVER);
    dfb_journal_t *j = dfb_journal_open(&o, "E", t0, err, sizeof err);
    uint64_t seqs[3] = {0, 0, 0};
    CHECK(append_n(j, 1, 500, seqs, t0) == 0);
    dfb_journal_stats_t st;
    dfb_journal_stats(j, &st);
    uint64_t segs = st.segments;
    CHECK(segs > 3);
    dfb_journal_tick(j, t0 + 59000); /* not old enough */
    dfb_journal_drain(j);            /* the tick's work runs on the sync thread */
    dfb_journal_stats(j, &st);
    CHECK(st.segments == segs && st.segments_deleted == 0);
    dfb_journal_tick(j, t0 + 61000); /* all but the active segment */
    dfb_journal_drain(j);            /* the tick's work runs on the sync thread */
    dfb_journal_stats(j, &st);
    CHECK(st.segments == 1 && st.segments_deleted == segs - 1 && count_segments(dir) == 1);
    CHECK(st.oldest_gseq > 1 &&
          read_check(j, st.oldest_gseq, st.oldest_gseq) == (long)(501 - st.oldest_gseq));
    dfb_journal_destroy(&j);
    /* A restart after that keeps the counters (the active segment's header
       has every topic's seq). */
    j = dfb_journal_open(&o, "OTHER", t0, err, sizeof err);
    CHECK(j && strcmp(dfb_journal_epoch(j), "E") == 0 && dfb_journal_last_gseq(j) == 500);
    for (int t = 0; j && t < 3; t++) {
        dfb_topic_t *tp =
            dfb_topics_get((dfb_topics_t *)dfb_journal_topics(j), TOPICS[t], strlen(TOPICS[t]), 0);
        CHECK(tp && tp->seq == seqs[t]);
    }
    dfb_journal_destroy(&j);
}

static void
test_read_during_retention(void)
{
    /* A reader inside the oldest segment keeps reading it after retention
       deletes the file, then moves on to the next one: no hole, no error. */
    const char *dir = fresh("readret");
    char err[256];
    int64_t t0 = dfb_wall_ms();
    dfb_journal_opts_t o = opts(dir, 4096, 0, 60000, DFB_FSYNC_NEVER);
    dfb_journal_t *j = dfb_journal_open(&o, "E", t0, err, sizeof err);
    uint64_t seqs[3] = {0, 0, 0};
    CHECK(append_n(j, 1, 35, seqs, t0) == 0); /* segment 1 full, the second started */
    dfb_journal_stats_t st;
    dfb_journal_stats(j, &st);
    CHECK(st.segments == 2);
    dfb_journal_reader_t *r = dfb_journal_reader_new(j);
    CHECK(dfb_journal_reader_seek_gseq(r, 1) == 0);
    dfb_journal_rec_t rec;
    CHECK(dfb_journal_reader_next(r, &rec) == 1 && rec.gseq == 1);
    CHECK(append_n(j, 36, 5, seqs, t0 + 61000) == 0); /* the second stays young */
    dfb_journal_tick(j, t0 + 61000);
    dfb_journal_drain(j); /* the tick's work runs on the sync thread */
    dfb_journal_stats(j, &st);
    CHECK(st.segments == 1 && st.segments_deleted == 1);
    uint64_t want = 2;
    int rc;
    while ((rc = dfb_journal_reader_next(r, &rec)) == 1 && rec.gseq == want)
        want++;
    CHECK(rc == 0 && want == 41);
    dfb_journal_reader_destroy(&r);

    /* A reader that falls behind several deleted segments: an explicit
       "gone", never a silent jump. */
    r = dfb_journal_reader_new(j);
    dfb_journal_stats(j, &st);
    CHECK(dfb_journal_reader_seek_gseq(r, st.oldest_gseq) == 0);
    CHECK(dfb_journal_reader_next(r, &rec) == 1 && rec.gseq == st.oldest_gseq);
    CHECK(append_n(j, 41, 200, seqs, t0 + 130000) == 0);
    dfb_journal_tick(j, t0 + 200000);
    dfb_journal_drain(j); /* the tick's work runs on the sync thread */
    want = rec.gseq + 1;
    while ((rc = dfb_journal_reader_next(r, &rec)) == 1 && rec.gseq == want)
        want++;
    if (rc != DFB_JOURNAL_READER_GONE)
        printf("  rc %d want %" PRIu64 " got %" PRIu64 "\n", rc, want, rec.gseq);
    CHECK(rc == DFB_JOURNAL_READER_GONE);
    dfb_journal_reader_destroy(&r);
    dfb_journal_destroy(&j);
}

static void
test_torn_tail(void)
{
    const char *dir = fresh("torn");
    char err[256], seg[1024];
    dfb_journal_opts_t o = opts(dir, 1 << 20, 0, 0, DFB_FSYNC_NEVER);
    dfb_journal_t *j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
    uint64_t seqs[3] = {0, 0, 0};
    CHECK(append_n(j, 1, 100, seqs, dfb_wall_ms()) == 0);
    dfb_journal_destroy(&j);
    /* kill -9 in the middle of a write: the last record is cut short. */
    last_segment(dir, seg, sizeof seg);
    struct stat sb;
    stat(seg, &sb);
    CHECK(truncate(seg, sb.st_size - 7) == 0);
    j = dfb_journal_open(&o, "NEW", dfb_wall_ms(), err, sizeof err);
    CHECK(j);
    if (!j)
        return;
    dfb_journal_stats_t st;
    dfb_journal_stats(j, &st);
    printf("  torn tail: cut %" PRIu64 " bytes, %" PRIu64 " records recovered\n",
           st.truncated_bytes, st.recovered_records);
    CHECK(strcmp(dfb_journal_epoch(j), "E") == 0 && st.new_epoch == 0);
    CHECK(dfb_journal_last_gseq(j) == 99 && st.recovered_records == 99);
    CHECK(st.truncated_bytes > 0 && st.truncated_bytes < 300);
    stat(seg, &sb);
    CHECK((uint64_t)sb.st_size == st.bytes);
    /* gseq 100 is appended again (the torn one never left the bridge). */
    seqs[100 % 3]--;
    CHECK(append_n(j, 100, 1, seqs, dfb_wall_ms()) == 0);
    CHECK(read_check(j, 1, 1) == 100);
    dfb_journal_destroy(&j);

    /* A header cut short (crash right after a roll): the file is dropped
       and the previous segment continues. */
    o.segment_bytes = 4096;
    j = dfb_journal_open(&o, "E2", dfb_wall_ms(), err, sizeof err);
    CHECK(append_n(j, 101, 100, seqs, dfb_wall_ms()) == 0);
    uint64_t last = dfb_journal_last_gseq(j);
    dfb_journal_destroy(&j);
    char extra[1024];
    snprintf(extra, sizeof extra, "%s/journal/%020" PRIu64 ".dfj", dir, last + 1);
    int fd = open(extra, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0 && write(fd, "\x40\x00\x00\x00\x01\x02", 6) == 6);
    close(fd);
    j = dfb_journal_open(&o, "NEW", dfb_wall_ms(), err, sizeof err);
    CHECK(j && strcmp(dfb_journal_epoch(j), "E") == 0 && dfb_journal_last_gseq(j) == last);
    CHECK(access(extra, F_OK) != 0);
    CHECK(read_check(j, 1, 1) == 200);
    dfb_journal_destroy(&j);
}

/*  Staged writes (dfb_journal_stage / commit): nothing staged is visible
    to readers or counted until written; a commit writes every staged
    record; the staging caps write early; rolls during staging keep every
    record; a reopened journal continues after the last one. */
static uint64_t
appended(dfb_journal_t *j)
{
    dfb_journal_stats_t st;
    dfb_journal_stats(j, &st);
    return st.appended;
}

static int
stage_n(dfb_journal_t *j, uint64_t first, int n, uint64_t seqs[3])
{
    for (int i = 0; i < n; i++) {
        uint64_t g = first + (uint64_t)i;
        int t = (int)(g % 3);
        mk_t m;
        mk(&m, g, ++seqs[t], t, 50 + g % 100);
        if (dfb_journal_stage(j, &m.rec, dfb_wall_ms()) != 0)
            return -1;
    }
    return 0;
}

static void
test_stage(void)
{
    char err[256], dir2[1100];
    const char *dir = fresh("stage");
    snprintf(dir2, sizeof dir2, "%s-caps", dir);
    uint64_t seqs[3] = {0, 0, 0};
    /* Small segments: the staging crosses rolls. */
    dfb_journal_opts_t o = opts(dir, 4096, 0, 0, DFB_FSYNC_NEVER);
    dfb_journal_t *j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
    CHECK(j);
    if (!j)
        return;
    CHECK(stage_n(j, 1, 10, seqs) == 0);
    CHECK_EQ(appended(j), 0);
    CHECK_EQ(dfb_journal_last_gseq(j), 10);
    mk_t m;
    mk(&m, 10, 99, 1, 60); /* out of order: refused, nothing changes */
    CHECK(dfb_journal_stage(j, &m.rec, dfb_wall_ms()) == -1);
    CHECK_EQ(dfb_journal_commit(j, dfb_wall_ms()), 0);
    CHECK_EQ(appended(j), 10);
    CHECK_EQ(read_check(j, 1, 1), 10);
    CHECK(stage_n(j, 11, 500, seqs) == 0); /* ~20 records a segment: many rolls */
    CHECK(appended(j) > 10 && appended(j) < 510);
    CHECK_EQ(dfb_journal_flush(j), 0); /* commits first */
    CHECK_EQ(appended(j), 510);
    CHECK_EQ(read_check(j, 1, 1), 510);
    CHECK_EQ(dfb_journal_commit(j, dfb_wall_ms()), 0); /* nothing staged: a no-op */
    dfb_journal_destroy(&j);
    j = dfb_journal_open(&o, "X", dfb_wall_ms(), err, sizeof err);
    CHECK(j && strcmp(dfb_journal_epoch(j), "E") == 0);
    if (j) {
        CHECK_EQ(dfb_journal_last_gseq(j), 510);
        CHECK_EQ(read_check(j, 1, 1), 510);
        dfb_journal_destroy(&j);
    }
    /* The caps: past DFB_JOURNAL_STAGE_MAX records the staged ones are
       written before the next is staged. */
    dfb_journal_opts_t o2 = opts(dir2, 1u << 30, 0, 0, DFB_FSYNC_NEVER);
    j = dfb_journal_open(&o2, "E2", dfb_wall_ms(), err, sizeof err);
    CHECK(j);
    if (!j)
        return;
    uint64_t s2[3] = {0, 0, 0};
    CHECK(stage_n(j, 1, DFB_JOURNAL_STAGE_MAX, s2) == 0);
    CHECK_EQ(appended(j), 0);
    CHECK(stage_n(j, DFB_JOURNAL_STAGE_MAX + 1, 76, s2) == 0);
    CHECK_EQ(appended(j), DFB_JOURNAL_STAGE_MAX);
    CHECK_EQ(read_check(j, 1, 1), DFB_JOURNAL_STAGE_MAX);
    CHECK_EQ(dfb_journal_commit(j, dfb_wall_ms()), 0);
    CHECK_EQ(read_check(j, 1, 1), DFB_JOURNAL_STAGE_MAX + 76);
    dfb_journal_destroy(&j);
}

static void
test_crc(void)
{
    const char *dir = fresh("crc");
    char err[256], seg[1024];
    dfb_journal_opts_t o = opts(dir, 1 << 20, 0, 0, DFB_FSYNC_NEVER);
    dfb_journal_t *j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
    uint64_t seqs[3] = {0, 0, 0};
    CHECK(append_n(j, 1, 50, seqs, dfb_wall_ms()) == 0);
    dfb_journal_destroy(&j);
    /* Flip one byte in the body of record 31 (bit rot, a bad sector). */
    last_segment(dir, seg, sizeof seg);
    j = dfb_journal_open(&o, "X", dfb_wall_ms(), err, sizeof err);
    dfb_journal_reader_t *r = dfb_journal_reader_new(j);
    CHECK(dfb_journal_reader_seek_gseq(r, 1) == 0);
    dfb_journal_rec_t rec;
    for (int i = 0; i < 31; i++)
        CHECK(dfb_journal_reader_next(r, &rec) == 1);
    CHECK(rec.gseq == 31);
    dfb_journal_reader_destroy(&r);
    dfb_journal_destroy(&j);
    /* The offset of record 31: scan the framing by hand. */
    int fd = open(seg, O_RDWR);
    uint64_t off = 0;
    unsigned char h[8];
    for (int i = 0; i < 31; i++) { /* header + 30 records */
        CHECK(pread(fd, h, 8, (off_t)off) == 8);
        off += 8 + (h[0] | h[1] << 8 | h[2] << 16 | (uint64_t)h[3] << 24);
    }
    unsigned char b;
    CHECK(pread(fd, &b, 1, (off_t)off + 60) == 1);
    b ^= 0x20;
    CHECK(pwrite(fd, &b, 1, (off_t)off + 60) == 1);
    close(fd);
    j = dfb_journal_open(&o, "X", dfb_wall_ms(), err, sizeof err);
    dfb_journal_stats_t st;
    dfb_journal_stats(j, &st);
    /* Never renumber: gseq 31..50 may have been published; they are lost, not reused. */
    CHECK(dfb_journal_last_gseq(j) == 50 && st.recovered_records == 30);
    struct stat sb;
    stat(seg, &sb);
    CHECK((uint64_t)sb.st_size == off && st.truncated_bytes > 0);
    /* 1..30 read back, then the lost 31..50 are reported, never skipped silently. */
    char got[128];
    CHECK_STR(read_ranges(j, 1, got, sizeof got), "1-30 !31-50");
    dfb_journal_destroy(&j);

    /* Corruption in an older (closed) segment: a reader reports an error
       (never wrong bytes) and the journal counts it. */
    dir = fresh("crc2");
    o = opts(dir, 4096, 0, 0, DFB_FSYNC_NEVER);
    j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
    memset(seqs, 0, sizeof seqs);
    CHECK(append_n(j, 1, 200, seqs, dfb_wall_ms()) == 0);
    char first[1024];
    snprintf(first, sizeof first, "%s/journal/%020d.dfj", dir, 1);
    fd = open(first, O_RDWR);
    CHECK(pread(fd, &b, 1, 200) == 1);
    b ^= 1;
    CHECK(pwrite(fd, &b, 1, 200) == 1);
    close(fd);
    CHECK(read_check(j, 1, 1) == -1);
    dfb_journal_stats(j, &st);
    CHECK(st.read_errors == 1);
    dfb_journal_destroy(&j);
}

static void
test_restart(void)
{
    const char *dir = fresh("restart");
    char err[256];
    dfb_journal_opts_t o = opts(dir, 4096, 0, 0, DFB_FSYNC_INTERVAL);
    dfb_journal_t *j = dfb_journal_open(&o, "EPOCH-1", dfb_wall_ms(), err, sizeof err);
    uint64_t seqs[3] = {0, 0, 0};
    CHECK(append_n(j, 1, 300, seqs, dfb_wall_ms()) == 0);
    dfb_journal_destroy(&j);
    j = dfb_journal_open(&o, "EPOCH-2", dfb_wall_ms(), err, sizeof err);
    CHECK(j);
    if (!j)
        return;
    dfb_journal_stats_t st;
    dfb_journal_stats(j, &st);
    CHECK(strcmp(dfb_journal_epoch(j), "EPOCH-1") == 0 && st.new_epoch == 0);
    CHECK(dfb_journal_last_gseq(j) == 300 && st.head_gseq == 300 && st.oldest_gseq == 1);
    for (int t = 0; t < 3; t++) {
        dfb_topic_t *tp =
            dfb_topics_get((dfb_topics_t *)dfb_journal_topics(j), TOPICS[t], strlen(TOPICS[t]), 0);
        CHECK(tp && tp->seq == seqs[t] && seqs[t] == 100);
    }
    CHECK(append_n(j, 301, 30, seqs, dfb_wall_ms()) == 0);
    CHECK(read_check(j, 1, 1) == 330);
    /* The same folder cannot be opened twice (a second bridge). */
    dfb_journal_t *k = dfb_journal_open(&o, "EPOCH-3", dfb_wall_ms(), err, sizeof err);
    CHECK(!k && strstr(err, "in use"));
    dfb_journal_destroy(&j);
    /* A lost journal: a new epoch from gseq 1. */
    rm_rf(dir);
    j = dfb_journal_open(&o, "EPOCH-4", dfb_wall_ms(), err, sizeof err);
    dfb_journal_stats(j, &st);
    CHECK(j && st.new_epoch == 1 && strcmp(dfb_journal_epoch(j), "EPOCH-4") == 0 &&
          dfb_journal_last_gseq(j) == 0);
    dfb_journal_destroy(&j);
}

static void
test_fsync(void)
{
    char err[256];
    uint64_t seqs[3];
    struct {
        dfb_fsync_t mode;
        int flush;
        uint64_t want;
    } cases[] = {
        {DFB_FSYNC_ALWAYS, 0, 100}, /* no batch end known: every append */
        {DFB_FSYNC_ALWAYS, 1, 10},  /* once per batch of 10 */
        {DFB_FSYNC_NEVER, 1, 0},
    };
    for (int c = 0; c < 3; c++) {
        const char *dir = fresh("fsync");
        dfb_journal_opts_t o = opts(dir, 1 << 20, 0, 0, cases[c].mode);
        dfb_journal_t *j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
        memset(seqs, 0, sizeof seqs);
        for (int b = 0; b < 10; b++) {
            if (cases[c].flush && b == 0)
                CHECK(dfb_journal_flush(j) == 0); /* announces batches; nothing dirty */
            CHECK(append_n(j, 1 + (uint64_t)b * 10, 10, seqs, dfb_wall_ms()) == 0);
            if (cases[c].flush)
                CHECK(dfb_journal_flush(j) == 0);
        }
        dfb_journal_stats_t st;
        dfb_journal_stats(j, &st);
        printf("  fsync mode %d flush %d: %" PRIu64 " fdatasync\n", (int)cases[c].mode,
               cases[c].flush, st.fsyncs);
        CHECK(st.fsyncs == cases[c].want);
        dfb_journal_destroy(&j);
    }
    /* interval 1000 ms, clock driven by the test: appends at t0 .. t0+4999 */
    const char *dir = fresh("fsync");
    dfb_journal_opts_t o = opts(dir, 1 << 20, 0, 0, DFB_FSYNC_INTERVAL);
    int64_t t0 = dfb_wall_ms();
    dfb_journal_t *j = dfb_journal_open(&o, "E", t0, err, sizeof err);
    memset(seqs, 0, sizeof seqs);
    for (int i = 0; i < 50; i++) {
        CHECK(append_n(j, 1 + (uint64_t)i, 1, seqs, t0 + i * 100) == 0);
        dfb_journal_drain(j); /* a due sync is posted to the sync thread */
    }
    dfb_journal_stats_t st;
    dfb_journal_stats(j, &st);
    CHECK(st.fsyncs == 4); /* at t0+1000, 2000, 3000, 4000 */
    dfb_journal_tick(j, t0 + 4950);
    dfb_journal_drain(j); /* the tick's work runs on the sync thread */
    dfb_journal_stats(j, &st);
    CHECK(st.fsyncs == 4); /* not due */
    dfb_journal_tick(j, t0 + 5000);
    dfb_journal_drain(j); /* the tick's work runs on the sync thread */
    dfb_journal_stats(j, &st);
    CHECK(st.fsyncs == 5); /* the idle tail is synced by the timer */
    dfb_journal_tick(j, t0 + 9000);
    dfb_journal_drain(j); /* the tick's work runs on the sync thread */
    dfb_journal_stats(j, &st);
    CHECK(st.fsyncs == 5); /* nothing new */
    dfb_journal_destroy(&j);
}

static void
collect(void *arg, const dfb_journal_rec_t *rec)
{
    dfb_dedupe_add(arg, rec->id, rec->id_len, rec->type, rec->type_len, rec->ts);
}

static void
test_dedupe(void)
{
    CHECK(dfb_dedupe_test(1) == 0);
    /* Rebuilt from the journal after a restart: the last N keys. */
    const char *dir = fresh("dedupe");
    char err[256];
    dfb_journal_opts_t o = opts(dir, 4096, 0, 0, DFB_FSYNC_NEVER);
    dfb_journal_t *j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
    uint64_t seqs[3] = {0, 0, 0};
    CHECK(append_n(j, 1, 500, seqs, dfb_wall_ms()) == 0);
    dfb_dedupe_t *d = dfb_dedupe_new(200, 0);
    dfb_journal_scan_tail(j, 200, INT64_MIN, collect, d);
    CHECK(dfb_dedupe_count(d) == 200);
    char id[32];
    int seen = 0;
    for (int g = 1; g <= 500; g++) {
        snprintf(id, sizeof id, "id-%d", g);
        int s = dfb_dedupe_seen(d, id, strlen(id), TOPICS[g % 3], strlen(TOPICS[g % 3]), 0);
        CHECK(s == (g > 300));
        seen += s;
    }
    CHECK(seen == 200);
    dfb_dedupe_destroy(&d);
    dfb_journal_destroy(&j);
}

/* ---- replay and heartbeat, in-process -------------------------------------- */

typedef struct {
    char topic[64];
    uint8_t body[4096];
    size_t body_len;
} msg_t;

/*  Receives a two-frame message within timeout_ms. 0 or -1. */
static int
recv2(void *s, msg_t *m, int timeout_ms)
{
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return -1;
    int n = zmq_recv(s, m->topic, sizeof m->topic - 1, 0);
    if (n < 0)
        return -1;
    m->topic[n < (int)sizeof m->topic ? n : (int)sizeof m->topic - 1] = '\0';
    int more = 0;
    size_t ms = sizeof more;
    zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ms);
    if (!more)
        return -1;
    n = zmq_recv(s, m->body, sizeof m->body, 0);
    if (n < 0)
        return -1;
    m->body_len = (size_t)n;
    return 0;
}

static const msgpack_object *
get(const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, kv->key.via.str.size) == 0)
            return &kv->val;
    }
    return NULL;
}

static uint64_t
u64(const msgpack_object *o)
{
    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? o->via.u64 : UINT64_MAX;
}

static int
str_eq(const msgpack_object *o, const char *s)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

/*  The end marker of an answer. */
typedef struct {
    uint64_t req, count, last_gseq, last_seq, head, oldest;
    int ok, more, has_last_seq;
    char code[32], epoch[64];
    uint32_t keys;
} end_t;

static int
decode_end(const msg_t *m, end_t *e)
{
    memset(e, 0, sizeof *e);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int rc = -1;
    if (strcmp(m->topic, "_end") == 0 &&
        msgpack_unpack_next(&up, (const char *)m->body, m->body_len, &off) ==
            MSGPACK_UNPACK_SUCCESS &&
        off == m->body_len && up.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object *o = &up.data;
        e->keys = o->via.map.size;
        e->req = u64(get(o, "req"));
        e->count = u64(get(o, "count"));
        e->last_gseq = u64(get(o, "last_gseq"));
        e->has_last_seq = get(o, "last_seq") != NULL;
        e->last_seq = u64(get(o, "last_seq"));
        e->head = u64(get(o, "head_gseq"));
        e->oldest = u64(get(o, "oldest_gseq"));
        e->ok = str_eq(get(o, "status"), "ok");
        const msgpack_object *more = get(o, "more");
        e->more = more && more->type == MSGPACK_OBJECT_BOOLEAN && more->via.boolean;
        const msgpack_object *c = get(o, "code");
        if (c && c->type == MSGPACK_OBJECT_STR && c->via.str.size < sizeof e->code)
            memcpy(e->code, c->via.str.ptr, c->via.str.size);
        const msgpack_object *ep = get(o, "epoch");
        if (ep && ep->type == MSGPACK_OBJECT_STR && ep->via.str.size < sizeof e->epoch)
            memcpy(e->epoch, ep->via.str.ptr, ep->via.str.size);
        rc = u64(get(o, "v")) == 1 && get(o, "error") == NULL ? 0 : (e->code[0] ? 0 : -1);
    }
    msgpack_unpacked_destroy(&up);
    return rc;
}

/*  gseq and seq of an envelope. */
static void
envelope(const msg_t *m, uint64_t *gseq, uint64_t *seq)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    *gseq = *seq = UINT64_MAX;
    if (msgpack_unpack_next(&up, (const char *)m->body, m->body_len, &off) ==
        MSGPACK_UNPACK_SUCCESS) {
        *gseq = u64(get(&up.data, "gseq"));
        *seq = u64(get(&up.data, "seq"));
    }
    msgpack_unpacked_destroy(&up);
}

/*  Sends a request built by the caller (a msgpack buffer) and collects the
    answer: messages into out (up to cap), the end marker into e. Returns
    the number of messages, or -1 on a timeout. */
static long
ask(void *dealer, const dfb_buf_t *req, msg_t *out, size_t cap, end_t *e)
{
    if (zmq_send(dealer, req->data, req->len, 0) < 0)
        return -1;
    long n = 0;
    msg_t m;
    for (;;) {
        if (recv2(dealer, &m, 5000) != 0)
            return -1;
        if (strcmp(m.topic, "_end") == 0)
            return decode_end(&m, e) == 0 ? n : -1;
        if ((size_t)n < cap)
            out[n] = m;
        n++;
    }
}

/*  A request map from key/value pairs: "k=u:123", "k=s:text", "k=a:T1,T2". */
static void
build(dfb_buf_t *b, int n, const char *const *kv)
{
    b->len = 0;
    dfb_mpack_map(b, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        const char *eq = strchr(kv[i], '=');
        dfb_mpack_str(b, kv[i], (size_t)(eq - kv[i]));
        const char *val = eq + 3;
        if (eq[1] == 'u')
            dfb_mpack_uint(b, strtoull(val, NULL, 10));
        else if (eq[1] == 's')
            dfb_mpack_cstr(b, val);
        else {
            uint32_t cnt = *val ? 1 : 0;
            for (const char *p = val; *p; p++)
                cnt += *p == ',';
            dfb_mpack_array(b, cnt);
            while (*val) {
                const char *c = strchr(val, ',');
                size_t l = c ? (size_t)(c - val) : strlen(val);
                dfb_mpack_str(b, val, l);
                val += l + (c ? 1 : 0);
            }
        }
    }
}

#define REQ(b, ...)                                                                                \
    do {                                                                                           \
        const char *const kv_[] = {__VA_ARGS__};                                                   \
        build(b, (int)(sizeof kv_ / sizeof kv_[0]), kv_);                                          \
    } while (0)

static dfb_publish_t *
start_pub(const char *dir, int hb_ms, uint64_t max_bytes)
{
    char err[256];
    dfb_publish_opts_t o = {.endpoint = "tcp://127.0.0.1:*",
                            .sndhwm = 100000,
                            .state_dir = dir,
                            .journal = {.segment_bytes = 16384,
                                        .max_bytes = max_bytes,
                                        .fsync = DFB_FSYNC_NEVER,
                                        .fsync_ms = 1000},
                            .replay = "tcp://127.0.0.1:*",
                            .heartbeat_ms = hb_ms,
                            .dedupe_window = 1000,
                            .dedupe_ms = 3600000};
    dfb_publish_t *p = dfb_publish_new_opts(&o, err, sizeof err);
    if (!p)
        printf("  publish: %s\n", err);
    return p;
}

/*  Publishes n events cycling through the 3 topics, ids ev-<first+i>. */
static void
publish_n(dfb_publish_t *p, int first, int n)
{
    dfb_json_t *json = dfb_json_new();
    char text[256];
    for (int i = 0; i < n; i++) {
        int k = first + i;
        snprintf(text, sizeof text, "{\"id\":\"ev-%d\",\"type\":\"%s\",\"payload\":{\"n\":%d}}", k,
                 TOPICS[k % 3], k);
        CHECK(dfb_json_parse(json, text, strlen(text)) == 0);
        CHECK(dfb_publish_event(p, json, 0) == 0);
    }
    CHECK(dfb_publish_flush(p) == 0);
    dfb_json_destroy(&json);
}

static void *
dealer_for(void *ctx, dfb_publish_t *p)
{
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    CHECK(zmq_connect(d, dfb_publish_replay_endpoint(p)) == 0);
    return d;
}

static void
test_replay(void)
{
    const char *dir = fresh("replay");
    dfb_publish_t *p = start_pub(dir, 0, 0);
    CHECK(p);
    if (!p)
        return;
    void *ctx = zmq_ctx_new();
    /* A subscriber records the published bytes to compare with replay. */
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(sub, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    zmq_connect(sub, dfb_publish_endpoint(p));
    void *dealer = dealer_for(ctx, p);
    msg_t *ans = calloc(1100, sizeof(msg_t));
    static msg_t pubd[2600];
    dfb_buf_t b;
    dfb_buf_init(&b);
    end_t e;
    /* Slow joiner: a replay request is the sync point; the SUB is joined
       when a probe event published after it arrives. */
    int joined = 0;
    msg_t m;
    for (int i = 0; i < 100 && !joined; i++) {
        publish_n(p, 100000 + i, 1);
        joined = recv2(sub, &m, 50) == 0;
    }
    CHECK(joined);
    while (recv2(sub, &m, 100) == 0)
        ;
    dfb_publish_stats_t st;
    dfb_publish_stats(p, &st);
    uint64_t base = st.journaled; /* probes */
    publish_n(p, 1, 2500);
    for (int i = 0; i < 2500; i++)
        CHECK(recv2(sub, &pubd[i], 5000) == 0);
    const char *ep = dfb_publish_epoch(p);
    char eps[80];
    snprintf(eps, sizeof eps, "epoch=s:%s", ep);

    /* 1. by gseq, limit and more: 1000 per answer, then the rest. */
    REQ(&b, "v=u:1", "req=u:7", "from_gseq=u:1");
    long n = ask(dealer, &b, ans, 1100, &e);
    CHECK(n == 1000 && e.ok && e.req == 7 && e.count == 1000 && e.more);
    CHECK(e.last_gseq == 1000 && e.head == base + 2500 && e.oldest == 1 && !e.has_last_seq);
    CHECK(strcmp(e.epoch, ep) == 0 && e.keys == 9);
    uint64_t g, s;
    envelope(&ans[0], &g, &s);
    CHECK(g == 1);
    /* the bytes are the published bytes */
    char gs[40];
    snprintf(gs, sizeof gs, "from_gseq=u:%" PRIu64, base + 1);
    REQ(&b, "v=u:1", "req=u:8", eps, gs, "limit=u:5000");
    n = ask(dealer, &b, ans, 1100, &e);
    CHECK(n == 1000 && e.count == 1000 && e.more && e.last_gseq == base + 1000);
    int same = 0;
    for (long i = 0; i < n && i < 1000; i++)
        same += ans[i].body_len == pubd[i].body_len &&
                memcmp(ans[i].body, pubd[i].body, ans[i].body_len) == 0 &&
                strcmp(ans[i].topic, pubd[i].topic) == 0;
    CHECK(same == 1000);
    snprintf(gs, sizeof gs, "from_gseq=u:%" PRIu64, base + 2001);
    REQ(&b, "v=u:1", "req=u:9", gs);
    n = ask(dealer, &b, ans, 1100, &e);
    CHECK(n == 500 && e.count == 500 && !e.more && e.last_gseq == base + 2500);
    /* exactly at the limit: more is false when nothing follows */
    snprintf(gs, sizeof gs, "from_gseq=u:%" PRIu64, base + 2491);
    REQ(&b, "v=u:1", "req=u:10", gs, "limit=u:10");
    n = ask(dealer, &b, ans, 1100, &e);
    CHECK(n == 10 && !e.more && e.last_gseq == base + 2500);
    /* beyond the head: nothing, last_gseq = from - 1 */
    snprintf(gs, sizeof gs, "from_gseq=u:%" PRIu64, base + 2501);
    REQ(&b, "v=u:1", "req=u:11", gs);
    n = ask(dealer, &b, ans, 1100, &e);
    CHECK(n == 0 && e.ok && e.count == 0 && e.last_gseq == base + 2500 && !e.more);

    /* 2. topics filter: only ROOMCREATED and USERJOINEDROOM from base+1 */
    snprintf(gs, sizeof gs, "from_gseq=u:%" PRIu64, base + 1);
    REQ(&b, "v=u:1", "req=u:12", gs, "topics=a:ROOMCREATED,USERJOINEDROOM", "limit=u:100");
    n = ask(dealer, &b, ans, 1100, &e);
    CHECK(n == 100 && e.more);
    int wrong = 0;
    uint64_t prev = 0;
    for (long i = 0; i < n && i < 100; i++) {
        envelope(&ans[i], &g, &s);
        wrong += strcmp(ans[i].topic, "MESSAGESENT") == 0 || g <= prev;
        prev = g;
    }
    CHECK(wrong == 0);

    /* 3. by topic seq: ROOMCREATED from seq 10 (events 1..2500 give each
       topic 833 or 834; probes were ROOMCREATED/... too) */
    uint64_t rc_seq = dfb_publish_topic_seq(p, "ROOMCREATED", 11);
    REQ(&b, "v=u:1", "req=u:13", "topic=s:ROOMCREATED", "from_seq=u:10", "limit=u:1000");
    n = ask(dealer, &b, ans, 1100, &e);
    CHECK(n == (long)(rc_seq - 9) && e.ok && !e.more && e.has_last_seq && e.last_seq == rc_seq);
    int seq_ok = 1;
    for (long i = 0; i < n && i < 1000; i++) {
        envelope(&ans[i], &g, &s);
        seq_ok &= s == 10 + (uint64_t)i && strcmp(ans[i].topic, "ROOMCREATED") == 0;
    }
    CHECK(seq_ok);
    REQ(&b, "v=u:1", "req=u:14", "topic=s:ROOMCREATED", "from_seq=u:1", "limit=u:3");
    n = ask(dealer, &b, ans, 1100, &e);
    CHECK(n == 3 && e.more && e.last_seq == 3);
    /* a topic never published: nothing */
    REQ(&b, "v=u:1", "req=u:15", "topic=s:NOPE", "from_seq=u:1");
    n = ask(dealer, &b, ans, 1100, &e);
    CHECK(n == 0 && e.ok && e.last_seq == 0 && e.last_gseq == 0);

    /* 4. errors: wrong epoch, bad requests. */
    REQ(&b, "v=u:1", "req=u:16", "epoch=s:19700101T000000Z-00000000", "from_gseq=u:1");
    n = ask(dealer, &b, ans, 1100, &e);
    CHECK(n == 0 && !e.ok && strcmp(e.code, "epoch") == 0 && e.req == 16 &&
          strcmp(e.epoch, ep) == 0 && e.keys == 11);
    const char *const bad[][4] = {
        {"v=u:2", "req=u:17", "from_gseq=u:1", NULL},        /* version */
        {"req=u:17", "from_gseq=u:1", NULL, NULL},           /* no v */
        {"v=u:1", "req=u:17", NULL, NULL},                   /* no position */
        {"v=u:1", "req=u:17", "from_gseq=u:1", "topic=s:X"}, /* both */
        {"v=u:1", "req=u:17", "topic=s:ROOMCREATED", NULL},  /* no from_seq */
        {"v=u:1", "req=u:17", "from_gseq=s:1", NULL},        /* wrong type */
        {"v=u:1", "req=u:17", "from_gseq=u:1", "limit=u:0"}, /* limit 0 */
        {"v=u:1", "req=u:17", "topic=s:A", "topics=a:A"},    /* mixed */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int k = 0;
        while (k < 4 && bad[i][k])
            k++;
        build(&b, k, bad[i]);
        n = ask(dealer, &b, ans, 1100, &e);
        CHECK(n == 0 && !e.ok && strcmp(e.code, "bad_request") == 0);
    }
    /* not msgpack at all, and two frames */
    zmq_send(dealer, "hello", 5, 0);
    CHECK(recv2(dealer, &m, 5000) == 0 && decode_end(&m, &e) == 0 &&
          strcmp(e.code, "bad_request") == 0 && e.req == 0);
    zmq_send(dealer, "a", 1, ZMQ_SNDMORE);
    zmq_send(dealer, "b", 1, 0);
    CHECK(recv2(dealer, &m, 5000) == 0 && decode_end(&m, &e) == 0 &&
          strcmp(e.code, "bad_request") == 0);
    /* unknown keys are ignored */
    REQ(&b, "v=u:1", "req=u:18", "from_gseq=u:1", "limit=u:1", "future=a:x,y");
    n = ask(dealer, &b, ans, 1100, &e);
    CHECK(n == 1 && e.ok && e.more);

    dfb_publish_stats(p, &st);
    printf("  replay: requests %" PRIu64 ", messages %" PRIu64 ", errors %" PRIu64 "\n",
           st.replay_requests, st.replay_messages, st.replay_errors);
    CHECK(st.replay_requests == 21 && st.replay_errors == 11);
    CHECK(st.replay_messages == 1000 + 1000 + 500 + 10 + 100 + (rc_seq - 9) + 3 + 1);
    dfb_buf_free(&b);
    free(ans);
    zmq_close(dealer);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    dfb_publish_destroy(&p);
}

static void
test_replay_gone(void)
{
    /* Retention 64 KiB with 16 KiB segments: the oldest are deleted. */
    const char *dir = fresh("gone");
    dfb_publish_t *p = start_pub(dir, 0, 65536);
    CHECK(p);
    if (!p)
        return;
    publish_n(p, 1, 3000);
    void *ctx = zmq_ctx_new();
    void *dealer = dealer_for(ctx, p);
    dfb_buf_t b;
    dfb_buf_init(&b);
    end_t e;
    msg_t *ans = calloc(1100, sizeof(msg_t));
    REQ(&b, "v=u:1", "req=u:1", "from_gseq=u:1");
    long n = ask(dealer, &b, ans, 1100, &e);
    CHECK(n == 0 && !e.ok && strcmp(e.code, "gone") == 0 && e.oldest > 1 && e.head == 3000 &&
          e.last_gseq == 0);
    printf("  gone: oldest retained gseq %" PRIu64 "\n", e.oldest);
    /* Asking again from oldest_gseq works. */
    char gs[40];
    snprintf(gs, sizeof gs, "from_gseq=u:%" PRIu64, e.oldest);
    uint64_t oldest = e.oldest;
    REQ(&b, "v=u:1", "req=u:2", gs, "limit=u:1");
    n = ask(dealer, &b, ans, 1100, &e);
    uint64_t g, s;
    envelope(&ans[0], &g, &s);
    CHECK(n == 1 && e.ok && g == oldest);
    REQ(&b, "v=u:1", "req=u:3", "topic=s:MESSAGESENT", "from_seq=u:1");
    n = ask(dealer, &b, ans, 1100, &e);
    CHECK(n == 0 && !e.ok && strcmp(e.code, "gone") == 0 && e.has_last_seq);
    dfb_buf_free(&b);
    free(ans);
    zmq_close(dealer);
    zmq_ctx_term(ctx);
    dfb_publish_destroy(&p);
}

static void
test_dedupe_publish(void)
{
    const char *dir = fresh("dedupe_pub");
    dfb_publish_t *p = start_pub(dir, 0, 0);
    CHECK(p);
    if (!p)
        return;
    publish_n(p, 1, 30);
    publish_n(p, 21, 20); /* 21..30 again: only 31..40 are new */
    dfb_json_t *json = dfb_json_new();
    /* Same id, another type: not a duplicate. No id: never a duplicate. */
    const char *a = "{\"id\":\"ev-1\",\"type\":\"USERJOINEDROOM\"}";
    const char *noid = "{\"type\":\"MESSAGESENT\"}";
    dfb_json_parse(json, a, strlen(a));
    CHECK(dfb_publish_event(p, json, 0) == 0);
    dfb_json_parse(json, noid, strlen(noid));
    CHECK(dfb_publish_event(p, json, 0) == 0);
    CHECK(dfb_publish_event(p, json, 0) == 0);
    dfb_publish_stats_t st;
    dfb_publish_stats(p, &st);
    CHECK(st.deduped == 10 && st.journaled == 43 && st.published == 43);
    dfb_publish_destroy(&p);
    /* After a restart the window is rebuilt from the journal: the same
       events delivered again by Symphony are still not published twice. */
    p = start_pub(dir, 0, 0);
    publish_n(p, 35, 10); /* 35..40 old, 41..44 new */
    dfb_publish_stats(p, &st);
    CHECK(st.deduped == 6 && st.journaled == 4);
    /* MESSAGESENT: ev-3..ev-30 (10), ev-33, 36, 39, ev-42, and the 2 without id */
    CHECK(dfb_publish_topic_seq(p, "MESSAGESENT", 11) == 10 + 3 + 1 + 2);
    dfb_json_destroy(&json);
    dfb_publish_destroy(&p);
}

static void
test_heartbeat(void)
{
    const char *dir = fresh("hb");
    dfb_publish_t *p = start_pub(dir, 100, 0);
    CHECK(p);
    if (!p)
        return;
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "_hb", 3);
    zmq_connect(sub, dfb_publish_endpoint(p));
    msg_t m;
    /* No event yet: gseq 0, seqs empty. */
    CHECK(recv2(sub, &m, 3000) == 0 && strcmp(m.topic, "_hb") == 0);
    publish_n(p, 1, 7); /* MESSAGESENT 2 (ev-3, ev-6), ROOMCREATED 3, USERJOINEDROOM 2 */
    int64_t t_first = 0, t_last = 0;
    int beats = 0, exact = 0;
    /* Heartbeats after the events carry exactly gseq 7 and the seqs. */
    for (int i = 0; i < 12; i++) {
        if (recv2(sub, &m, 3000) != 0)
            break;
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        size_t off = 0;
        if (msgpack_unpack_next(&up, (const char *)m.body, m.body_len, &off) ==
            MSGPACK_UNPACK_SUCCESS) {
            const msgpack_object *o = &up.data;
            const msgpack_object *seqs = get(o, "seqs");
            int64_t ts = (int64_t)u64(get(o, "ts"));
            if (u64(get(o, "gseq")) == 7 && seqs && seqs->type == MSGPACK_OBJECT_MAP &&
                seqs->via.map.size == 3 && u64(get(seqs, "MESSAGESENT")) == 2 &&
                u64(get(seqs, "ROOMCREATED")) == 3 && u64(get(seqs, "USERJOINEDROOM")) == 2 &&
                u64(get(o, "v")) == 1 && str_eq(get(o, "epoch"), dfb_publish_epoch(p)) &&
                u64(get(o, "interval")) == 100 &&
                str_eq(get(o, "replay"), dfb_publish_replay_endpoint(p)) && o->via.map.size == 7)
                exact++;
            if (!t_first)
                t_first = ts;
            t_last = ts;
            beats++;
        }
        msgpack_unpacked_destroy(&up);
    }
    printf("  heartbeat: %d beats in %lld ms, %d exact\n", beats, (long long)(t_last - t_first),
           exact);
    CHECK(beats == 12 && exact >= 11); /* the first may predate the events */
    /* 11 intervals of 100 ms: a loaded machine may stretch them, never shrink. */
    CHECK(t_last - t_first >= 1000 && t_last - t_first < 3000);
    dfb_publish_stats_t st;
    dfb_publish_stats(p, &st);
    CHECK(st.heartbeats >= 13 && st.published == 7); /* heartbeats are not events */
    zmq_close(sub);
    zmq_ctx_term(ctx);
    dfb_publish_destroy(&p);
}

/* ---- golden vectors of the bridge's own messages -------------------------- */

static dfb_json_t *
load_vectors(char **text)
{
    dfb_json_t *json = dfb_golden_load(DF_SOURCE_DIR "/schemas/golden/vectors.json", text);
    CHECK(json);
    return json;
}

static void
test_golden_heartbeat(void)
{
    char *text;
    dfb_json_t *json = load_vectors(&text);
    if (!json) {
        free(text);
        return;
    }
    dfb_buf_t b;
    dfb_buf_init(&b);
    dfb_topics_t *seqs = dfb_topics_new();
    dfb_topics_get(seqs, "UNKNOWN", 7, 1); /* seq 0: not listed */
    CHECK(dfb_heartbeat_encode(&b, "20261127T075500Z-3fa2c1d9", 0, seqs, 1764230100123ULL, 1000,
                               "tcp://bridge.example:5557") == 0);
    CHECK(dfb_golden_same_hex(
        &b, dfb_golden_vector(json, "bridge_messages", "heartbeat_idle", "msgpack_hex")));
    b.len = 0;
    dfb_topics_get(seqs, "MESSAGESENT", 11, 1)->seq = 65536;
    CHECK(dfb_heartbeat_encode(&b, "20261127T075500Z-3fa2c1d9", 4294967296ULL, seqs,
                               1764230100123ULL, 250, "") == 0);
    CHECK(dfb_golden_same_hex(
        &b, dfb_golden_vector(json, "bridge_messages", "heartbeat_one_topic", "msgpack_hex")));
    /* The contract's FNV-1a 64 (partition keys) is the bridge's. */
    const char *keys[][2] = {{"room_event", "aBcD1234efGH5678ijKL___oZxZ4O1dA"},
                             {"no_stream_uses_id", "c0nn3ct"},
                             {"nothing", ""},
                             {"non_ascii", "\xe6\xb5\x81-\xc3\xbc"}};
    for (int i = 0; i < 4; i++) {
        const char *want = dfb_golden_vector(json, "keys", keys[i][0], "fnv1a64");
        char got[32];
        snprintf(got, sizeof got, "%" PRIu64, dfb_fnv1a64(keys[i][1], strlen(keys[i][1])));
        CHECK(want && strcmp(want, got) == 0);
    }
    dfb_topics_destroy(&seqs);
    dfb_buf_free(&b);
    dfb_json_destroy(&json);
    free(text);
}

static void
test_golden_end(void)
{
    char *text;
    dfb_json_t *json = load_vectors(&text);
    if (!json) {
        free(text);
        return;
    }
    dfb_buf_t b;
    dfb_buf_init(&b);
    const char *ep = "20261127T075500Z-3fa2c1d9";
    struct {
        const char *name;
        dfb_replay_end_t e;
    } cases[] = {
        {"end_gseq_ok_more",
         {.req = 7,
          .count = 1000,
          .last_gseq = 1000,
          .more = 1,
          .head_gseq = 2500,
          .oldest_gseq = 1,
          .epoch = ep}},
        {"end_topic_ok_empty",
         {.req = 8,
          .last_seq = 9,
          .by_topic = 1,
          .head_gseq = 2500,
          .oldest_gseq = 1,
          .epoch = ep}},
        {"end_error_gone",
         {.req = 9,
          .head_gseq = 3000,
          .oldest_gseq = 2658,
          .epoch = ep,
          .code = "gone",
          .error = "from_gseq is older than the journal's retention"}},
    };
    for (int i = 0; i < 3; i++) {
        b.len = 0;
        CHECK(dfb_replay_end_encode(&b, &cases[i].e) == 0);
        int ok = dfb_golden_same_hex(
            &b, dfb_golden_vector(json, "bridge_messages", cases[i].name, "msgpack_hex"));
        if (!ok)
            printf("  %s differs\n", cases[i].name);
        CHECK(ok);
    }
    dfb_buf_free(&b);
    dfb_json_destroy(&json);
    free(text);
}

/* ---- configuration keys --------------------------------------------------- */

static dfb_config_t *
load_cfg(const char *bridge_yaml, char *err, size_t errlen)
{
    char path[700];
    snprintf(path, sizeof path, "%s/cfg.yaml", s_dir);
    mkdir(s_dir, 0755);
    FILE *f = fopen(path, "w");
    if (!f)
        return NULL;
    fprintf(f,
            "host: pod.example\nbot:\n  username: b\n  privateKey:\n    path: /k.pem\n"
            "bridge:\n%s",
            bridge_yaml);
    fclose(f);
    return dfb_config_load(path, err, errlen);
}

static void
test_config(void)
{
    char err[512];
    dfb_config_t *c = load_cfg("  logLevel: info\n", err, sizeof err);
    CHECK(c && !c->state_dir && !c->replay && !c->replay_advertise && c->heartbeat_ms == 1000);
    CHECK(c && c->zmtp_heartbeat_ms == 0 && c->dedupe_window == 100000 && c->dedupe_ms == 3600000);
    CHECK(c && c->journal_segment_bytes == 64LL << 20 && c->journal_max_bytes == 1LL << 30 &&
          c->journal_max_age_ms == 604800000LL && c->journal_fsync == DFB_FSYNC_INTERVAL &&
          c->journal_fsync_ms == 1000);
    dfb_config_destroy(&c);
    c = load_cfg("  stateDir: /var/lib/x\n  replay: tcp://*:5557\n  replayAdvertise: "
                 "tcp://h:5557\n  heartbeatMillis: 0\n  zmtpHeartbeatMillis: 2000\n"
                 "  dedupeWindow: 0\n  dedupeMillis: 5\n  journal:\n    segmentBytes: 4096\n"
                 "    maxBytes: 0\n    maxAgeMillis: 0\n    fsync: always\n"
                 "    fsyncMillis: 7\n",
                 err, sizeof err);
    CHECK(c && strcmp(c->state_dir, "/var/lib/x") == 0 && strcmp(c->replay, "tcp://*:5557") == 0 &&
          strcmp(c->replay_advertise, "tcp://h:5557") == 0 && c->heartbeat_ms == 0 &&
          c->zmtp_heartbeat_ms == 2000 && c->dedupe_window == 0 && c->dedupe_ms == 5 &&
          c->journal_segment_bytes == 4096 && c->journal_max_bytes == 0 &&
          c->journal_max_age_ms == 0 && c->journal_fsync == DFB_FSYNC_ALWAYS &&
          c->journal_fsync_ms == 7);
    dfb_config_destroy(&c);
    struct {
        const char *yaml, *want;
    } bad[] = {
        {"  replay: tcp://*:5557\n", "bridge.replay: needs bridge.stateDir"},
        {"  stateDir: x\n  journal:\n    fsync: sometimes\n", "bridge.journal.fsync"},
        {"  stateDir: \"\"\n", "bridge.stateDir"},
        {"  replay: localhost\n", "bridge.replay"},
        {"  heartbeatMillis: -1\n", "bridge.heartbeatMillis"},
        {"  dedupeWindow: 20000000\n", "bridge.dedupeWindow"},
        {"  journal:\n    segmentBytes: 10\n", "bridge.journal.segmentBytes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        c = load_cfg(bad[i].yaml, err, sizeof err);
        int ok = !c && strstr(err, bad[i].want) != NULL;
        if (!ok)
            printf("  case %zu: '%s'\n", i, err);
        CHECK(ok);
        dfb_config_destroy(&c);
    }
}

/* ---- journal recovery: every corruption we could think of ----------------- */

/*  What a reader from gseq `from` returns up to the head, as text: runs of
    records checked byte for byte ("1-30"), lost ranges ("!31-50"), "GONE",
    "ERR<rc>". Bounded. */
static const char *
read_ranges(dfb_journal_t *j, uint64_t from, char *out, size_t cap)
{
    out[0] = '\0';
    size_t len = 0;
    dfb_journal_reader_t *r = dfb_journal_reader_new(j);
    int rc = r ? dfb_journal_reader_seek_gseq(r, from) : -1;
    if (rc != 0) {
        snprintf(out, cap, "SEEK%d", rc);
        dfb_journal_reader_destroy(&r);
        return out;
    }
    uint64_t run_a = 0, run_b = 0;
    dfb_journal_rec_t rec;
#define FLUSH_RUN()                                                                                \
    do {                                                                                           \
        if (run_a)                                                                                 \
            len += (size_t)snprintf(out + len, cap - len, "%s%" PRIu64 "-%" PRIu64,                \
                                    len ? " " : "", run_a, run_b);                                 \
        run_a = 0;                                                                                 \
    } while (0)
    for (int n = 0; n < 1000000 && len < cap - 64; n++) {
        rc = dfb_journal_reader_next(r, &rec);
        if (rc == 0)
            break;
        if (rc == 1) {
            mk_t m;
            mk(&m, rec.gseq, 0, (int)(rec.gseq % 3), 50 + rec.gseq % 100);
            if (rec.body_len != m.rec.body_len || memcmp(rec.body, m.body, rec.body_len) != 0 ||
                rec.id_len != m.rec.id_len || memcmp(rec.id, m.id, rec.id_len) != 0 ||
                rec.topic_len != m.rec.topic_len ||
                memcmp(rec.topic, m.rec.topic, rec.topic_len) != 0) {
                FLUSH_RUN();
                len += (size_t)snprintf(out + len, cap - len, " BAD%" PRIu64, rec.gseq);
                break;
            }
            if (run_a && rec.gseq == run_b + 1)
                run_b = rec.gseq;
            else {
                FLUSH_RUN();
                run_a = run_b = rec.gseq;
            }
            continue;
        }
        FLUSH_RUN();
        if (rc == DFB_JOURNAL_CORRUPT) {
            uint64_t a, b;
            dfb_journal_reader_lost(r, &a, &b);
            len += (size_t)snprintf(out + len, cap - len, "%s!%" PRIu64 "-%" PRIu64, len ? " " : "",
                                    a, b);
            continue;
        }
        len += (size_t)snprintf(out + len, cap - len, "%s%s%d", len ? " " : "",
                                rc == DFB_JOURNAL_READER_GONE ? "GONE" : "ERR", rc);
        break;
    }
    FLUSH_RUN();
#undef FLUSH_RUN
    dfb_journal_reader_destroy(&r);
    return out;
}

/*  Offset of record k of a segment file (0 = its header). */
static uint64_t
rec_off(const char *path, int k)
{
    int fd = open(path, O_RDONLY);
    uint64_t off = 0;
    unsigned char h[8];
    for (int i = 0; i < k && pread(fd, h, 8, (off_t)off) == 8; i++)
        off += 8 + (h[0] | h[1] << 8 | h[2] << 16 | (uint64_t)h[3] << 24);
    close(fd);
    return off;
}

/*  gseq of record k (k >= 1) of a segment file. */
static uint64_t
rec_gseq(const char *path, int k)
{
    int fd = open(path, O_RDONLY);
    unsigned char g[8];
    uint64_t v = 0;
    if (pread(fd, g, 8, (off_t)rec_off(path, k) + 9) == 8)
        for (int i = 7; i >= 0; i--)
            v = v << 8 | g[i];
    close(fd);
    return v;
}

static void
flip_byte(const char *path, uint64_t off)
{
    int fd = open(path, O_RDWR);
    unsigned char b = 0;
    CHECK(pread(fd, &b, 1, (off_t)off) == 1);
    b ^= 0x20;
    CHECK(pwrite(fd, &b, 1, (off_t)off) == 1);
    close(fd);
}

static void
put_le(const char *path, uint64_t off, uint64_t v, int n)
{
    unsigned char b[8];
    for (int i = 0; i < n; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    int fd = open(path, O_RDWR);
    CHECK(pwrite(fd, b, (size_t)n, (off_t)off) == n);
    close(fd);
}

/*  Rewrites the payload byte at payload offset at of record k with v and
    recomputes its CRC: a record that is well framed but wrong inside. */
static void
rewrite_payload(const char *path, int k, size_t at, const void *v, size_t n)
{
    uint64_t off = rec_off(path, k);
    int fd = open(path, O_RDWR);
    unsigned char h[8], buf[4096];
    CHECK(pread(fd, h, 8, (off_t)off) == 8);
    uint32_t len = h[0] | h[1] << 8 | h[2] << 16 | (uint32_t)h[3] << 24;
    CHECK(len <= sizeof buf && pread(fd, buf, len, (off_t)off + 8) == (ssize_t)len);
    memcpy(buf + at, v, n);
    uint32_t crc = dfb_crc32c(0, buf, len);
    close(fd);
    put_le(path, off + 4, crc, 4);
    fd = open(path, O_RDWR);
    CHECK(pwrite(fd, buf, len, (off_t)off + 8) == (ssize_t)len);
    close(fd);
}

static void
write_file(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0 && write(fd, data, n) == (ssize_t)n);
    close(fd);
}

/*  Size of the file in journal/damaged whose name contains what (-1: none). */
static long long
damaged_size(const char *state, const char *what)
{
    char path[700], f[1024];
    snprintf(path, sizeof path, "%s/journal/damaged", state);
    DIR *d = opendir(path);
    long long size = -1;
    for (struct dirent *e; d && (e = readdir(d));) {
        struct stat sb;
        snprintf(f, sizeof f, "%s/%s", path, e->d_name);
        if (strstr(e->d_name, what) && stat(f, &sb) == 0)
            size = (long long)sb.st_size;
    }
    if (d)
        closedir(d);
    return size;
}

/*  1 when journal/damaged holds a file whose name contains what. */
static int
damaged_has(const char *state, const char *what)
{
    return damaged_size(state, what) >= 0;
}

typedef struct {
    const char *state;
    uint64_t f[64]; /* segment firsts before the damage */
    int n;
    uint64_t seqs[3];
} scen_t;

typedef struct {
    const char *epoch; /* after the first open */
    uint64_t last;
    char ranges[256];  /* read_ranges(1) */
    const char *aside; /* a substring of a file in damaged/, or NULL for none */
    int damaged;       /* damaged_files */
    int exact_topics;  /* topic seqs == those written (else >=) */
    int new_epoch;
    const char *keep; /* a stray file in journal/ that must still be there */
} want_t;

#define SCEN_N 200 /* records per scenario, in ~10 segments of 4 KiB */

/*  Each case damages a journal of SCEN_N records and says what recovery
    must give back. */
static void
c_hdr_newest(scen_t *s, want_t *w)
{
    char p[1024];
    seg_file(s->state, s->f[s->n - 1], p, sizeof p);
    flip_byte(p, 8 + 3); /* inside the epoch */
    *w = (want_t){"E", SCEN_N, "1-200", ".dfj.header", 1, 1, 0, NULL};
}

static void
c_hdr_middle(scen_t *s, want_t *w)
{
    char p[1024];
    seg_file(s->state, s->f[4], p, sizeof p);
    flip_byte(p, 8 + 12); /* first gseq */
    *w = (want_t){"E", SCEN_N, "1-200", ".dfj.header", 1, 1, 0, NULL};
}

static void
c_hdr_oldest(scen_t *s, want_t *w)
{
    char p[1024];
    seg_file(s->state, s->f[0], p, sizeof p);
    flip_byte(p, 8 + 25); /* its topic count (gseq 1: no topic yet) */
    *w = (want_t){"E", SCEN_N, "1-200", ".dfj.header", 1, 1, 0, NULL};
}

static void
c_hdr_len_absurd(scen_t *s, want_t *w)
{
    char p[1024];
    seg_file(s->state, s->f[2], p, sizeof p);
    put_le(p, 0, 0xfffffff0u, 4); /* the header's own length */
    *w = (want_t){"E", SCEN_N, "1-200", ".dfj.header", 1, 1, 0, NULL};
}

static void
c_hdr_truncated_newest(scen_t *s, want_t *w)
{
    char p[1024];
    seg_file(s->state, s->f[s->n - 1], p, sizeof p);
    CHECK(truncate(p, 10) == 0); /* a crash during the roll: no record */
    uint64_t last = s->f[s->n - 1] - 1;
    *w = (want_t){"E", last, "", ".dfj.unreadable", 1, 0, 0, NULL};
    snprintf(w->ranges, sizeof w->ranges, "1-%" PRIu64, last);
}

static void
c_zero_newest(scen_t *s, want_t *w)
{
    char p[1024];
    seg_file(s->state, s->f[s->n - 1], p, sizeof p);
    CHECK(truncate(p, 0) == 0);
    uint64_t last = s->f[s->n - 1] - 1;
    *w = (want_t){"E", last, "", ".dfj.empty", 1, 0, 0, NULL};
    snprintf(w->ranges, sizeof w->ranges, "1-%" PRIu64, last);
}

static void
c_zero_middle(scen_t *s, want_t *w)
{
    char p[1024];
    seg_file(s->state, s->f[4], p, sizeof p);
    CHECK(truncate(p, 0) == 0);
    *w = (want_t){"E", SCEN_N, "", ".dfj.empty", 1, 1, 0, NULL};
    snprintf(w->ranges, sizeof w->ranges, "1-%" PRIu64 " !%" PRIu64 "-%" PRIu64 " %" PRIu64 "-200",
             s->f[4] - 1, s->f[4], s->f[5] - 1, s->f[5]);
}

static void
c_garbage_newest(scen_t *s, want_t *w)
{
    char p[1024], junk[3000];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 7919 % 251);
    seg_file(s->state, s->f[s->n - 1], p, sizeof p);
    write_file(p, junk, sizeof junk);
    /* At most 3000/49 records may have been there: those gseqs stay used. */
    uint64_t a = s->f[s->n - 1], last = a - 1 + 3000 / 49;
    *w = (want_t){"E", last, "", ".dfj.unreadable", 1, 0, 0, NULL};
    snprintf(w->ranges, sizeof w->ranges, "1-%" PRIu64 " !%" PRIu64 "-%" PRIu64, a - 1, a, last);
}

static void
c_garbage_middle(scen_t *s, want_t *w)
{
    char p[1024], junk[2000];
    memset(junk, 0xa5, sizeof junk);
    seg_file(s->state, s->f[3], p, sizeof p);
    write_file(p, junk, sizeof junk);
    *w = (want_t){"E", SCEN_N, "", ".dfj.unreadable", 1, 1, 0, NULL};
    snprintf(w->ranges, sizeof w->ranges, "1-%" PRIu64 " !%" PRIu64 "-%" PRIu64 " %" PRIu64 "-200",
             s->f[3] - 1, s->f[3], s->f[4] - 1, s->f[4]);
}

/*  The newest segment loses its tail from record 5 on, and the epoch goes
    on after gseq 200 (every later record was found in the cut bytes). */
static void
want_tail_cut(scen_t *s, want_t *w)
{
    char p[1024];
    seg_file(s->state, s->f[s->n - 1], p, sizeof p);
    uint64_t g = s->f[s->n - 1] + 4;
    *w = (want_t){"E", SCEN_N, "", ".tail", 1, 1, 0, NULL};
    snprintf(w->ranges, sizeof w->ranges, "1-%" PRIu64 " !%" PRIu64 "-200", g - 1, g);
}

static void
c_len_absurd(scen_t *s, want_t *w)
{
    char p[1024];
    seg_file(s->state, s->f[s->n - 1], p, sizeof p);
    put_le(p, rec_off(p, 5), 0x7fffffffu, 4);
    want_tail_cut(s, w);
}

static void
c_len_past_eof(scen_t *s, want_t *w)
{
    char p[1024];
    seg_file(s->state, s->f[s->n - 1], p, sizeof p);
    put_le(p, rec_off(p, 5), 100000, 4);
    want_tail_cut(s, w);
}

static void
c_crc_newest(scen_t *s, want_t *w)
{
    char p[1024];
    seg_file(s->state, s->f[s->n - 1], p, sizeof p);
    flip_byte(p, rec_off(p, 5) + 60);
    want_tail_cut(s, w);
}

static void
c_malformed(scen_t *s, want_t *w)
{
    char p[1024];
    seg_file(s->state, s->f[s->n - 1], p, sizeof p);
    rewrite_payload(p, 5, 0, "X", 1); /* valid CRC, not an event */
    want_tail_cut(s, w);
}

static void
c_backwards(scen_t *s, want_t *w)
{
    char p[1024];
    seg_file(s->state, s->f[s->n - 1], p, sizeof p);
    uint8_t one[8] = {1};
    rewrite_payload(p, 5, 1, one, 8); /* gseq 1 inside the newest segment */
    want_tail_cut(s, w);
}

static void
c_crc_last_record(scen_t *s, want_t *w)
{
    /* The very last record: it may have been published, so its gseq (and
       a seq of its unknown topic, for every topic) stays used. */
    char p[1024];
    seg_file(s->state, s->f[s->n - 1], p, sizeof p);
    int k = (int)(SCEN_N - s->f[s->n - 1] + 1);
    CHECK(rec_gseq(p, k) == SCEN_N);
    flip_byte(p, rec_off(p, k) + 50);
    *w = (want_t){"E", SCEN_N, "1-199 !200-200", ".tail", 1, 0, 0, NULL};
}

static void
c_crc_older(scen_t *s, want_t *w)
{
    /* Open reads only headers of older segments: the reader reports the
       rest of that segment lost and goes on. */
    char p[1024];
    seg_file(s->state, s->f[3], p, sizeof p);
    flip_byte(p, rec_off(p, 5) + 60);
    uint64_t g = s->f[3] + 4;
    *w = (want_t){"E", SCEN_N, "", NULL, 0, 1, 0, NULL};
    snprintf(w->ranges, sizeof w->ranges, "1-%" PRIu64 " !%" PRIu64 "-%" PRIu64 " %" PRIu64 "-200",
             g - 1, g, s->f[4] - 1, s->f[4]);
}

static void
c_len_older(scen_t *s, want_t *w)
{
    /* The first record of the oldest segment claims 512 MiB: beyond the
       file, but the file is closed, so it is corrupt, not "more to come". */
    char p[1024];
    seg_file(s->state, s->f[0], p, sizeof p);
    flip_byte(p, rec_off(p, 1) + 3);
    *w = (want_t){"E", SCEN_N, "", NULL, 0, 1, 0, NULL};
    snprintf(w->ranges, sizeof w->ranges, "!1-%" PRIu64 " %" PRIu64 "-200", s->f[1] - 1, s->f[1]);
}

static void
c_misnamed(scen_t *s, want_t *w)
{
    char p[1024], q[1024];
    seg_file(s->state, s->f[4], p, sizeof p);
    seg_file(s->state, s->f[4] + 1, q, sizeof q);
    CHECK(rename(p, q) == 0);
    *w = (want_t){"E", SCEN_N, "", ".dfj.misnamed", 1, 1, 0, NULL};
    snprintf(w->ranges, sizeof w->ranges, "1-%" PRIu64 " !%" PRIu64 "-%" PRIu64 " %" PRIu64 "-200",
             s->f[4] - 1, s->f[4], s->f[5] - 1, s->f[5]);
}

static void
c_gap(scen_t *s, want_t *w)
{
    char p[1024];
    seg_file(s->state, s->f[5], p, sizeof p);
    CHECK(unlink(p) == 0); /* an operator's rm */
    *w = (want_t){"E", SCEN_N, "", NULL, 0, 1, 0, NULL};
    snprintf(w->ranges, sizeof w->ranges, "1-%" PRIu64 " !%" PRIu64 "-%" PRIu64 " %" PRIu64 "-200",
             s->f[5] - 1, s->f[5], s->f[6] - 1, s->f[6]);
}

static void
c_strays(scen_t *s, want_t *w)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/journal/notes.txt", s->state);
    write_file(p, "hello", 5);
    snprintf(p, sizeof p, "%s/journal/00000000000000000001.dfj.bak", s->state);
    write_file(p, "x", 1);
    snprintf(p, sizeof p, "%s/journal/0000000000000000000x.dfj", s->state);
    write_file(p, "y", 1);
    snprintf(p, sizeof p, "%s/journal/sub", s->state);
    CHECK(mkdir(p, 0755) == 0);
    *w = (want_t){"E", SCEN_N, "1-200", NULL, 0, 1, 0, NULL};
    w->keep = "notes.txt"; /* left alone, like the others */
}

static void
c_empty_at_end(scen_t *s, want_t *w)
{
    char p[1024];
    seg_file(s->state, SCEN_N + 1, p, sizeof p);
    write_file(p, "", 0);
    *w = (want_t){"E", SCEN_N, "1-200", ".dfj.empty", 1, 1, 0, NULL};
}

static void
c_no_epoch_file(scen_t *s, want_t *w)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/journal/EPOCH", s->state);
    CHECK(unlink(p) == 0); /* a journal written before EPOCH existed */
    *w = (want_t){"E", SCEN_N, "1-200", NULL, 0, 1, 0, NULL};
}

static void
c_epoch_file_damaged(scen_t *s, want_t *w)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/journal/EPOCH", s->state);
    write_file(p, "Z\n", 2); /* a valid-looking epoch that no segment has */
    *w = (want_t){"E", SCEN_N, "1-200", NULL, 0, 1, 0, NULL};
}

static void
c_foreign(scen_t *s, want_t *w)
{
    char p[1024];
    seg_file(s->state, s->f[s->n - 1], p, sizeof p);
    rewrite_payload(p, 0, 6, "F", 1); /* epoch "F", a valid header */
    uint64_t last = s->f[s->n - 1] - 1;
    *w = (want_t){"E", last, "", ".dfj.foreign-epoch", 1, 0, 0, NULL};
    snprintf(w->ranges, sizeof w->ranges, "1-%" PRIu64, last);
}

typedef struct {
    const char *name;
    void (*damage)(scen_t *s, want_t *w);
} recovery_case_t;

static const recovery_case_t s_recovery_cases[] = {
    {"header byte flipped, newest segment", c_hdr_newest},
    {"header byte flipped, middle segment", c_hdr_middle},
    {"header byte flipped, oldest segment", c_hdr_oldest},
    {"header length absurd", c_hdr_len_absurd},
    {"header truncated, newest segment", c_hdr_truncated_newest},
    {"zero-length newest segment", c_zero_newest},
    {"zero-length middle segment", c_zero_middle},
    {"newest segment only garbage", c_garbage_newest},
    {"middle segment only garbage", c_garbage_middle},
    {"record length > MAX_PAYLOAD mid newest", c_len_absurd},
    {"record length past EOF mid newest", c_len_past_eof},
    {"CRC mismatch mid newest", c_crc_newest},
    {"valid CRC, malformed payload", c_malformed},
    {"gseq going backwards in a segment", c_backwards},
    {"CRC mismatch in the last record", c_crc_last_record},
    {"CRC mismatch mid older segment", c_crc_older},
    {"record length past EOF, oldest segment", c_len_older},
    {"file name disagrees with its header", c_misnamed},
    {"a gap between segments", c_gap},
    {"stray files in the folder", c_strays},
    {"empty segment at the end after a crash", c_empty_at_end},
    {"no EPOCH file", c_no_epoch_file},
    {"EPOCH file names another epoch", c_epoch_file_damaged},
    {"a header of another epoch", c_foreign},
};

/*  Appends n records after the journal's last gseq with the journal's
    own next topic seqs. */
static int
append_more(dfb_journal_t *j, int n)
{
    uint64_t seqs[3];
    for (int t = 0; t < 3; t++) {
        dfb_topic_t *tp =
            dfb_topics_get((dfb_topics_t *)dfb_journal_topics(j), TOPICS[t], strlen(TOPICS[t]), 0);
        seqs[t] = tp ? tp->seq : 0;
    }
    return append_n(j, dfb_journal_last_gseq(j) + 1, n, seqs, dfb_wall_ms());
}

/*  ranges extended by the n records appended after last: the last run
    grows when it ends at last, else a new run starts. */
static void
extend_ranges(char *ranges, size_t cap, uint64_t last, int n)
{
    size_t rl = strlen(ranges);
    const char *sp = strrchr(ranges, ' ');
    const char *tok = sp ? sp + 1 : ranges;
    const char *dash = strrchr(tok, '-');
    if (rl && tok[0] != '!' && dash && strtoull(dash + 1, NULL, 10) == last)
        snprintf(ranges + (dash - ranges), cap - (size_t)(dash - ranges), "-%" PRIu64,
                 last + (uint64_t)n);
    else
        snprintf(ranges + rl, cap - rl, "%s%" PRIu64 "-%" PRIu64, rl ? " " : "", last + 1,
                 last + (uint64_t)n);
}

static void
test_recovery(void)
{
    char err[256], got[512];
    for (size_t c = 0; c < sizeof s_recovery_cases / sizeof s_recovery_cases[0]; c++) {
        const recovery_case_t *rc = &s_recovery_cases[c];
        int before = df_check_failures;
        char name[32];
        snprintf(name, sizeof name, "recovery%zu", c);
        scen_t s = {.state = fresh(name)};
        dfb_journal_opts_t o = opts(s.state, 4096, 0, 0, DFB_FSYNC_NEVER);
        dfb_journal_t *j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
        CHECK(j && append_n(j, 1, SCEN_N, s.seqs, dfb_wall_ms()) == 0);
        dfb_journal_destroy(&j);
        s.n = seg_firsts(s.state, s.f, 64);
        CHECK(s.n >= 8);
        want_t w;
        rc->damage(&s, &w);

        /* First open: the repair. */
        j = dfb_journal_open(&o, "NEW", dfb_wall_ms(), err, sizeof err);
        CHECK(j);
        if (!j) {
            printf("  %s: open: %s\n", rc->name, err);
            continue;
        }
        dfb_journal_stats_t st;
        dfb_journal_stats(j, &st);
        CHECK_STR(dfb_journal_epoch(j), w.epoch);
        CHECK_EQ(st.new_epoch, w.new_epoch);
        CHECK_EQ(dfb_journal_last_gseq(j), w.last);
        CHECK_STR(read_ranges(j, 1, got, sizeof got), w.ranges);
        CHECK_EQ(st.damaged_files, w.damaged);
        char ep[700], text[16] = "";
        snprintf(ep, sizeof ep, "%s/journal/EPOCH", s.state);
        int efd = open(ep, O_RDONLY);
        CHECK(efd >= 0 && read(efd, text, sizeof text - 1) > 0);
        if (efd >= 0)
            close(efd);
        CHECK(text[0] == w.epoch[0] && text[1] == '\n');
        if (w.keep) {
            char kp[1024];
            snprintf(kp, sizeof kp, "%s/journal/%s", s.state, w.keep);
            CHECK(access(kp, F_OK) == 0);
        }
        if (w.aside)
            CHECK(damaged_has(s.state, w.aside));
        else
            CHECK(!damaged_has(s.state, ".dfj"));
        if (w.aside && strcmp(w.aside, ".tail") == 0) {
            /* The cut bytes, exactly, are kept. */
            CHECK(st.truncated_bytes > 0);
            CHECK_EQ(damaged_size(s.state, ".tail"), st.truncated_bytes);
            CHECK_EQ(st.damaged_bytes, st.truncated_bytes);
        }
        /* Never renumber: no topic seq goes back. */
        for (int t = 0; t < 3; t++) {
            dfb_topic_t *tp = dfb_topics_get((dfb_topics_t *)dfb_journal_topics(j), TOPICS[t],
                                             strlen(TOPICS[t]), 0);
            uint64_t seq = tp ? tp->seq : 0;
            if (w.exact_topics)
                CHECK_EQ(seq, s.seqs[t]);
            else if (w.last >= SCEN_N)
                CHECK(seq >= s.seqs[t]);
        }
        /* It goes on right after the last gseq. */
        CHECK(append_more(j, 5) == 0);
        extend_ranges(w.ranges, sizeof w.ranges, w.last, 5);
        CHECK_STR(read_ranges(j, 1, got, sizeof got), w.ranges);
        dfb_journal_destroy(&j);

        /* Second open: nothing left to repair, the same journal. */
        j = dfb_journal_open(&o, "NEWER", dfb_wall_ms(), err, sizeof err);
        CHECK(j);
        if (j) {
            dfb_journal_stats(j, &st);
            CHECK_STR(dfb_journal_epoch(j), w.epoch);
            CHECK_EQ(dfb_journal_last_gseq(j), w.last + 5);
            CHECK_EQ(st.damaged_files, 0);
            CHECK_EQ(st.truncated_bytes, 0);
            CHECK_STR(read_ranges(j, 1, got, sizeof got), w.ranges);
            dfb_journal_destroy(&j);
        }
        printf("  %-42s %s\n", rc->name, df_check_failures == before ? "ok" : "FAILED");
    }
}

/*  When nothing can be continued without risking a reused number, a new
    epoch starts and the old files are kept aside. */
static void
test_recovery_new_epoch(void)
{
    char err[256], got[512], p[1024];
    /* The only segment left by retention (first gseq > 1) has an
       unreadable header: the seqs of topics absent from it are unknown. */
    const char *dir = fresh("newepoch");
    int64_t t0 = dfb_wall_ms();
    dfb_journal_opts_t o = opts(dir, 4096, 0, 60000, DFB_FSYNC_NEVER);
    dfb_journal_t *j = dfb_journal_open(&o, "E", t0, err, sizeof err);
    uint64_t seqs[3] = {0, 0, 0};
    CHECK(j && append_n(j, 1, 200, seqs, t0) == 0);
    dfb_journal_tick(j, t0 + 61000);
    dfb_journal_drain(j);
    dfb_journal_destroy(&j);
    uint64_t f[64];
    CHECK(seg_firsts(dir, f, 64) == 1 && f[0] > 1);
    seg_file(dir, f[0], p, sizeof p);
    flip_byte(p, 8 + 3);
    j = dfb_journal_open(&o, "NEW", dfb_wall_ms(), err, sizeof err);
    CHECK(j);
    if (!j)
        return;
    dfb_journal_stats_t st;
    dfb_journal_stats(j, &st);
    CHECK_STR(dfb_journal_epoch(j), "NEW");
    CHECK_EQ(st.new_epoch, 1);
    CHECK_EQ(dfb_journal_last_gseq(j), 0);
    CHECK(damaged_has(dir, ".dfj.old-epoch"));
    CHECK(append_n(j, 1, 3, (uint64_t[3]){0, 0, 0}, dfb_wall_ms()) == 0);
    CHECK_STR(read_ranges(j, 1, got, sizeof got), "1-3");
    dfb_journal_destroy(&j);
    /* The new epoch is the one that continues (EPOCH was rewritten). */
    j = dfb_journal_open(&o, "NEWER", dfb_wall_ms(), err, sizeof err);
    CHECK(j && strcmp(dfb_journal_epoch(j), "NEW") == 0 && dfb_journal_last_gseq(j) == 3);
    dfb_journal_destroy(&j);

    /* No EPOCH file and the only header unreadable, first gseq 1: the
       records are readable but no epoch is. */
    dir = fresh("newepoch2");
    o = opts(dir, 1 << 20, 0, 0, DFB_FSYNC_NEVER);
    j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
    memset(seqs, 0, sizeof seqs);
    CHECK(j && append_n(j, 1, 20, seqs, dfb_wall_ms()) == 0);
    dfb_journal_destroy(&j);
    snprintf(p, sizeof p, "%s/journal/EPOCH", dir);
    CHECK(unlink(p) == 0);
    seg_file(dir, 1, p, sizeof p);
    flip_byte(p, 8 + 3);
    j = dfb_journal_open(&o, "NEW", dfb_wall_ms(), err, sizeof err);
    CHECK(j && strcmp(dfb_journal_epoch(j), "NEW") == 0 && dfb_journal_last_gseq(j) == 0);
    CHECK(damaged_has(dir, "00000000000000000001.dfj.old-epoch"));
    dfb_journal_destroy(&j);

    /* With EPOCH, the same damage is repaired: gseq 1 means every topic
       started at 0. */
    dir = fresh("newepoch3");
    j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
    memset(seqs, 0, sizeof seqs);
    CHECK(j && append_n(j, 1, 20, seqs, dfb_wall_ms()) == 0);
    dfb_journal_destroy(&j);
    seg_file(dir, 1, p, sizeof p);
    flip_byte(p, 8 + 3);
    j = dfb_journal_open(&o, "NEW", dfb_wall_ms(), err, sizeof err);
    CHECK(j && strcmp(dfb_journal_epoch(j), "E") == 0 && dfb_journal_last_gseq(j) == 20);
    if (j)
        CHECK_STR(read_ranges(j, 1, got, sizeof got), "1-20");
    dfb_journal_destroy(&j);
}

/*  The issue's report: 5 000 events in several segments, one byte flipped
    in the newest header. Before: "is unreadable: the journal is reset (new
    epoch)" and every segment deleted. */
static void
test_recovery_issue(void)
{
    char err[256], got[512], p[1024];
    const char *dir = fresh("issue");
    dfb_journal_opts_t o = opts(dir, 160 << 10, 0, 0, DFB_FSYNC_NEVER);
    dfb_journal_t *j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
    uint64_t seqs[3] = {0, 0, 0};
    CHECK(j && append_n(j, 1, 5000, seqs, dfb_wall_ms()) == 0);
    dfb_journal_destroy(&j);
    uint64_t f[64];
    int n = seg_firsts(dir, f, 64);
    printf("  5000 events in %d segments\n", n);
    CHECK(n == 6);
    seg_file(dir, f[n - 1], p, sizeof p);
    flip_byte(p, 8 + 3);
    j = dfb_journal_open(&o, "NEW", dfb_wall_ms(), err, sizeof err);
    CHECK(j);
    if (!j)
        return;
    dfb_journal_stats_t st;
    dfb_journal_stats(j, &st);
    CHECK_STR(dfb_journal_epoch(j), "E");
    CHECK_EQ(st.new_epoch, 0);
    CHECK_EQ(dfb_journal_last_gseq(j), 5000);
    CHECK_EQ(st.segments, 6);
    CHECK_EQ(st.damaged_files, 1);
    CHECK_STR(read_ranges(j, 1, got, sizeof got), "1-5000");
    dfb_journal_destroy(&j);
}

/* ---- journal under disk faults (the dffault shim) -------------------------- */

/*  The fault tests run in a copy of this program with the dffault shim
    preloaded (DFFAULT_LIB, set by ctest) and a control file in the scratch
    folder. Returns 0 in that copy; otherwise it does not return (exec), or
    returns -1 when the shim is not available. */
static int
fault_exec(char **argv)
{
    if (getenv("DFFAULT_CTL"))
        return 0;
    const char *lib = getenv("DFFAULT_LIB");
    if (!lib || access(lib, R_OK) != 0) {
        printf("FAIL: DFFAULT_LIB (the dffault shim) is not set or not readable\n");
        return -1;
    }
    char ctl[700];
    mkdir(s_dir, 0755);
    snprintf(ctl, sizeof ctl, "%s/dffault.ctl", s_dir);
    setenv("DFFAULT_CTL", ctl, 1);
    setenv("LD_PRELOAD", lib, 1);
    fflush(stdout);
    execv("/proc/self/exe", argv);
    printf("FAIL: exec: %s\n", strerror(errno));
    return -1;
}

/*  Replaces the shim's rules (a new file renamed over the old one, so the
    shim sees the change however close together two calls are). */
static void
fault_set(const char *rules)
{
    char ctl[700], tmp[720];
    snprintf(ctl, sizeof ctl, "%s", getenv("DFFAULT_CTL"));
    snprintf(tmp, sizeof tmp, "%s.tmp", ctl);
    FILE *f = fopen(tmp, "w");
    CHECK(f && fputs(rules, f) >= 0);
    if (f)
        fclose(f);
    CHECK(rename(tmp, ctl) == 0);
}

/*  Size of the newest segment file. */
static uint64_t
newest_size(const char *state)
{
    char p[1024];
    struct stat sb;
    last_segment(state, p, sizeof p);
    return stat(p, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/*  Total size of the segment files. */
static uint64_t
segments_bytes(const char *state)
{
    uint64_t f[256], total = 0;
    int n = seg_firsts(state, f, 256);
    for (int i = 0; i < n; i++) {
        char p[1024];
        struct stat sb;
        seg_file(state, f[i], p, sizeof p);
        if (stat(p, &sb) == 0)
            total += (uint64_t)sb.st_size;
    }
    return total;
}

/*  Appends one record (gseq g) with the next seq of its topic. */
static int
append_one(dfb_journal_t *j, uint64_t g, uint64_t seqs[3])
{
    int t = (int)(g % 3);
    mk_t m;
    mk(&m, g, seqs[t] + 1, t, 50 + g % 100);
    int rc = dfb_journal_append(j, &m.rec, dfb_wall_ms());
    if (rc == 0)
        seqs[t]++;
    return rc;
}

/*  Appends until the next append must roll (the active segment is full).
    Returns the next gseq. */
static uint64_t
fill_segment(dfb_journal_t *j, const char *state, uint64_t g, uint64_t seg_bytes, uint64_t seqs[3])
{
    for (int n = 0; n < 1000 && newest_size(state) < seg_bytes; n++)
        CHECK(append_one(j, g++, seqs) == 0);
    return g;
}

/*  Issue 7, item 2: the roll's fdatasync of the old segment is not
    ignored: the record that would roll is refused, and flush fails while
    the old data is not durable. */
static void
test_sync_roll(void)
{
    char err[256], got[256];
    const char *dir = fresh("syncroll");
    dfb_journal_opts_t o = opts(dir, 4096, 0, 0, DFB_FSYNC_ALWAYS);
    dfb_journal_t *j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
    CHECK(j);
    if (!j)
        return;
    uint64_t seqs[3] = {0, 0, 0};
    CHECK(dfb_journal_flush(j) == 0); /* batches from now on */
    uint64_t g = fill_segment(j, dir, 1, 4096, seqs);
    dfb_journal_stats_t st;
    dfb_journal_stats(j, &st);
    CHECK_EQ(st.segments, 1);
    /* One EIO on the old segment, exactly at the roll. */
    fault_set("fdatasync EIO 00000000000000000001.dfj 1\n");
    CHECK_EQ(append_one(j, g, seqs), -1);
    dfb_journal_stats(j, &st);
    CHECK_EQ(st.sync_errors, 1);
    CHECK_EQ(st.segments, 1); /* no roll */
    CHECK_EQ(st.sync_failing, 1);
    /* The flush covers the old data again: it syncs, so it may succeed. */
    CHECK_EQ(dfb_journal_flush(j), 0);
    dfb_journal_stats(j, &st);
    CHECK_EQ(st.sync_failing, 0);
    /* Persistent (the new segment's header sync fails too): refused, and
       flush fails (sticky) until the disk heals. */
    fault_set("fdatasync EIO /journal/\n");
    CHECK_EQ(append_one(j, g, seqs), -1);
    CHECK_EQ(dfb_journal_flush(j), -1);
    CHECK_EQ(dfb_journal_flush(j), -1);
    dfb_journal_stats(j, &st);
    CHECK_EQ(st.sync_errors, 4);
    fault_set("");
    CHECK_EQ(dfb_journal_flush(j), 0);
    CHECK_EQ(append_one(j, g, seqs), 0); /* the same gseq: nothing was kept */
    CHECK_EQ(dfb_journal_flush(j), 0);
    dfb_journal_stats(j, &st);
    CHECK_EQ(st.segments, 2);
    CHECK_EQ(st.head_gseq, g);
    char want[64];
    snprintf(want, sizeof want, "1-%" PRIu64, g);
    CHECK_STR(read_ranges(j, 1, got, sizeof got), want);

    /* The directory fsync after creating the new segment fails: same. */
    g = fill_segment(j, dir, g + 1, 4096, seqs);
    fault_set("fsync EIO /journal 1\n");
    CHECK_EQ(append_one(j, g, seqs), -1);
    dfb_journal_stats(j, &st);
    CHECK_EQ(st.sync_errors, 5);
    CHECK_EQ(st.segments, 2);
    CHECK_EQ(count_segments(dir), 2); /* the half-made segment is gone */
    CHECK_EQ(append_one(j, g, seqs), 0);
    CHECK_EQ(dfb_journal_flush(j), 0);
    snprintf(want, sizeof want, "1-%" PRIu64, g);
    CHECK_STR(read_ranges(j, 1, got, sizeof got), want);
    dfb_journal_destroy(&j);
}

/*  Issue 7, item 4: ENOSPC and EIO on every write path; appends fail
    without leaving a partial record, flush fails until a sync succeeds,
    and the journal resumes by itself. */
static void
test_disk_faults(void)
{
    char err[256], got[256], want[64];
    const char *dir = fresh("faults");
    dfb_journal_opts_t o = opts(dir, 4096, 0, 60000, DFB_FSYNC_ALWAYS);
    int64_t t0 = dfb_wall_ms();
    /* A new epoch whose EPOCH file cannot be written does not start. */
    fault_set("rename EIO /journal/EPOCH 1\n");
    dfb_journal_t *j = dfb_journal_open(&o, "E", t0, err, sizeof err);
    CHECK(!j && strstr(err, "cannot write EPOCH"));
    CHECK_EQ(count_segments(dir), 0);
    j = dfb_journal_open(&o, "E", t0, err, sizeof err);
    CHECK(j);
    if (!j)
        return;
    uint64_t seqs[3] = {0, 0, 0}, g = 1;
    dfb_journal_stats_t st;

    /* fdatasync EIO while `always` has no batches yet: every append syncs,
       so the record is refused and cut. */
    CHECK_EQ(append_one(j, g++, seqs), 0);
    fault_set("fdatasync EIO /journal/ 2\n");
    CHECK_EQ(append_one(j, g, seqs), -1);
    CHECK_EQ(append_one(j, g, seqs), -1);
    CHECK_EQ(append_one(j, g++, seqs), 0);
    dfb_journal_stats(j, &st);
    CHECK_EQ(st.sync_errors, 2);
    CHECK_EQ(st.append_errors, 2);
    CHECK_EQ(newest_size(dir), st.bytes);
    CHECK_EQ(dfb_journal_flush(j), 0); /* batches from now on */

    /* writev ENOSPC three times, then the disk has room again. */
    fault_set("writev ENOSPC /journal/ 3\n");
    for (int k = 0; k < 3; k++)
        CHECK_EQ(append_one(j, g, seqs), -1);
    CHECK_EQ(append_one(j, g++, seqs), 0);
    /* writev EIO until removed. */
    fault_set("writev EIO /journal/\n");
    for (int k = 0; k < 5; k++)
        CHECK_EQ(append_one(j, g, seqs), -1);
    fault_set("");
    CHECK_EQ(append_one(j, g++, seqs), 0);
    dfb_journal_stats(j, &st);
    CHECK_EQ(st.append_errors, 2 + 3 + 5);
    CHECK_EQ(newest_size(dir), st.bytes);

    /* A short write, then ENOSPC, and the cut back fails once: the partial
       record is cut before anything else is appended. */
    fault_set(
        "writev SHORT:20 /journal/ 1\nwritev ENOSPC /journal/ 1\nftruncate EIO /journal/ 1\n");
    CHECK_EQ(append_one(j, g, seqs), -1);
    CHECK_EQ(newest_size(dir), st.bytes + 20); /* the partial record is still there */
    CHECK_EQ(append_one(j, g++, seqs), 0);     /* cut, then appended */
    dfb_journal_stats(j, &st);
    CHECK_EQ(newest_size(dir), st.bytes);

    /* fdatasync EIO at flush: the batch stays unacknowledged (sticky),
       appends still work, and the first good sync clears it. */
    CHECK_EQ(append_one(j, g++, seqs), 0);
    fault_set("fdatasync EIO /journal/\n");
    CHECK_EQ(dfb_journal_flush(j), -1);
    CHECK_EQ(append_one(j, g++, seqs), 0);
    CHECK_EQ(dfb_journal_flush(j), -1);
    dfb_journal_stats(j, &st);
    CHECK_EQ(st.sync_errors, 4);
    CHECK_EQ(st.sync_failing, 1);
    fault_set("");
    CHECK_EQ(dfb_journal_flush(j), 0);
    dfb_journal_stats(j, &st);
    CHECK_EQ(st.sync_failing, 0);

    /* The new segment cannot be created (open ENOSPC, then EIO). */
    g = fill_segment(j, dir, g, 4096, seqs);
    CHECK_EQ(dfb_journal_flush(j), 0);
    dfb_journal_stats(j, &st);
    uint64_t segs = st.segments;
    fault_set("open ENOSPC .dfj 1\nopen EIO .dfj 1\n");
    CHECK_EQ(append_one(j, g, seqs), -1);
    CHECK_EQ(append_one(j, g, seqs), -1);
    CHECK_EQ(append_one(j, g++, seqs), 0);
    CHECK_EQ(dfb_journal_flush(j), 0);
    dfb_journal_stats(j, &st);
    CHECK_EQ(st.segments, segs + 1);
    /* The new segment's header fails to write: removed again, retried. */
    g = fill_segment(j, dir, g, 4096, seqs);
    CHECK_EQ(dfb_journal_flush(j), 0);
    fault_set("write ENOSPC .dfj 1\n");
    CHECK_EQ(append_one(j, g, seqs), -1);
    CHECK_EQ(count_segments(dir), (int)segs + 1);
    CHECK_EQ(append_one(j, g++, seqs), 0);
    CHECK_EQ(dfb_journal_flush(j), 0);

    /* Retention cannot delete (unlink EIO): counted, kept, retried. */
    dfb_journal_stats(j, &st);
    segs = st.segments;
    CHECK(segs >= 3);
    fault_set("unlink EIO .dfj\n");
    dfb_journal_tick(j, t0 + 61000);
    dfb_journal_drain(j);
    dfb_journal_stats(j, &st);
    CHECK_EQ(st.delete_errors, 1);
    CHECK_EQ(st.segments, segs);
    CHECK_EQ(st.segments_deleted, 0);
    CHECK_EQ(st.oldest_gseq, 1);
    CHECK_STR(read_ranges(j, 1, got, sizeof got),
              (snprintf(want, sizeof want, "1-%" PRIu64, g - 1), want));
    fault_set("");
    CHECK(append_one(j, g++, seqs) == 0); /* the active segment stays young */
    dfb_journal_tick(j, t0 + 61000);
    dfb_journal_drain(j);
    dfb_journal_stats(j, &st);
    CHECK_EQ(st.delete_errors, 1);
    CHECK_EQ(st.segments, 1);
    CHECK_EQ(st.segments_deleted, segs - 1);
    CHECK_EQ(count_segments(dir), 1);

    /* `interval`: a failed background sync fails the next flush. */
    dfb_journal_destroy(&j);
    o = opts(dir, 4096, 0, 0, DFB_FSYNC_INTERVAL);
    j = dfb_journal_open(&o, "X", t0, err, sizeof err);
    CHECK(j && dfb_journal_last_gseq(j) == g - 1);
    if (!j)
        return;
    CHECK_EQ(append_one(j, g++, seqs), 0);
    dfb_journal_drain(j); /* a sync the append posted is done before the fault */
    fault_set("fdatasync EIO /journal/ 1\n");
    dfb_journal_tick(j, dfb_wall_ms() + 5000);
    dfb_journal_drain(j);
    dfb_journal_stats(j, &st);
    CHECK_EQ(st.sync_errors, 1);
    CHECK_EQ(dfb_journal_flush(j), 0); /* its own sync succeeds: covered */
    fault_set("fdatasync EIO /journal/\n");
    CHECK_EQ(append_one(j, g++, seqs), 0);
    dfb_journal_tick(j, dfb_wall_ms() + 10000);
    dfb_journal_drain(j);
    CHECK_EQ(dfb_journal_flush(j), -1);
    fault_set("");
    CHECK_EQ(dfb_journal_flush(j), 0);
    dfb_journal_stats(j, &st);
    uint64_t oldest = st.oldest_gseq;
    snprintf(want, sizeof want, "%" PRIu64 "-%" PRIu64, oldest, g - 1);
    CHECK_STR(read_ranges(j, oldest, got, sizeof got), want);
    dfb_journal_destroy(&j);
}

typedef struct {
    dfb_journal_t *j;
    int rc;
} flusher_t;

static void *
flusher(void *arg)
{
    flusher_t *f = arg;
    f->rc = dfb_journal_flush(f->j);
    return NULL;
}

/*  Waits (bounded) until the journal has a disk operation in flight. */
static int
wait_busy(dfb_journal_t *j)
{
    dfb_journal_stats_t st;
    for (int n = 0; n < 4000; n++) {
        dfb_journal_stats(j, &st);
        if (st.disk_busy_since_ms)
            return 1;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/*  tick, stats and a reader's seek + next while the disk is slow: each
    within 100 ms (the disk takes 800). */
static void
check_no_wait(dfb_journal_t *j, const char *what)
{
    dfb_journal_stats_t st;
    dfb_journal_rec_t rec;
    int64_t t = dfb_mono_ms();
    dfb_journal_tick(j, dfb_wall_ms());
    int64_t tick_ms = dfb_mono_ms() - t;
    t = dfb_mono_ms();
    dfb_journal_stats(j, &st);
    int64_t stats_ms = dfb_mono_ms() - t;
    dfb_journal_reader_t *r = dfb_journal_reader_new(j);
    t = dfb_mono_ms();
    int rc1 = dfb_journal_reader_seek_gseq(r, st.oldest_gseq);
    int rc2 = dfb_journal_reader_next(r, &rec);
    int64_t read_ms = dfb_mono_ms() - t;
    dfb_journal_reader_destroy(&r);
    printf("  %s: tick %" PRId64 " ms, stats %" PRId64 " ms, seek+next %" PRId64 " ms\n", what,
           tick_ms, stats_ms, read_ms);
    CHECK(st.disk_busy_since_ms != 0); /* still in flight: the measure means something */
    CHECK(tick_ms < 100);
    CHECK(stats_ms < 100);
    CHECK(read_ms < 100 && rc1 == 0 && rc2 == 1);
}

/*  Issue 7, item 3: the publisher actor (tick, readers, stats) never waits
    on the disk: not on the writer's fdatasync, not on the interval sync,
    not on retention's unlink. */
static void
test_no_stall(void)
{
    char err[256];
    const char *dir = fresh("nostall");
    int64_t t0 = dfb_wall_ms();
    dfb_journal_opts_t o = opts(dir, 4096, 0, 0, DFB_FSYNC_ALWAYS);
    dfb_journal_t *j = dfb_journal_open(&o, "E", t0, err, sizeof err);
    CHECK(j);
    if (!j)
        return;
    uint64_t seqs[3] = {0, 0, 0};
    CHECK(dfb_journal_flush(j) == 0);
    CHECK(append_n(j, 1, 100, seqs, t0) == 0);
    /* The writer's flush on its thread, the disk slow. */
    fault_set("fdatasync DELAY:800 /journal/\n");
    flusher_t f = {j, -9};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, flusher, &f) == 0);
    CHECK(wait_busy(j));
    check_no_wait(j, "writer's fdatasync");
    pthread_join(th, NULL);
    CHECK_EQ(f.rc, 0);
    dfb_journal_destroy(&j);

    /* The interval sync and retention run on the journal's sync thread. */
    fault_set("");
    o = opts(dir, 4096, 0, 60000, DFB_FSYNC_INTERVAL);
    j = dfb_journal_open(&o, "E", t0, err, sizeof err);
    CHECK(j && append_n(j, 101, 10, seqs, t0) == 0);
    fault_set("fdatasync DELAY:800 /journal/\n");
    dfb_journal_tick(j, t0 + 2000);
    CHECK(wait_busy(j));
    check_no_wait(j, "interval fdatasync");
    dfb_journal_drain(j);
    dfb_journal_stats_t st;
    dfb_journal_stats(j, &st);
    CHECK_EQ(st.fsyncs, 1);
    uint64_t segs = st.segments;
    CHECK(segs > 3);
    fault_set("unlink DELAY:800 /journal/\n");
    dfb_journal_tick(j, t0 + 61000);
    CHECK(wait_busy(j));
    check_no_wait(j, "retention unlink");
    dfb_journal_drain(j);
    dfb_journal_stats(j, &st);
    CHECK_EQ(st.segments, 1);
    CHECK_EQ(st.segments_deleted, segs - 1);
    fault_set("");
    dfb_journal_destroy(&j);

    /* Issue 11 (latency): a commit that finds the `interval` sync due only
       posts it to the sync thread; the writer (the loop thread, with every
       event behind it) does not wait for the disk. One big segment: no roll. */
    o = opts(fresh("nostall-commit"), 1 << 20, 0, 0, DFB_FSYNC_INTERVAL);
    j = dfb_journal_open(&o, "E", t0, err, sizeof err);
    CHECK(j);
    if (!j)
        return;
    memset(seqs, 0, sizeof seqs);
    CHECK(append_n(j, 1, 10, seqs, t0) == 0); /* not due yet */
    dfb_journal_drain(j);
    dfb_journal_stats(j, &st);
    uint64_t before = st.fsyncs;
    fault_set("fdatasync DELAY:800 /journal/\n");
    int64_t t = dfb_mono_ms();
    CHECK(append_n(j, 11, 1, seqs, t0 + 5000) == 0); /* due: 5 s after the last sync */
    int64_t commit_ms = dfb_mono_ms() - t;
    CHECK(wait_busy(j)); /* the sync runs, on the sync thread */
    printf("  interval sync due at a commit: the commit took %" PRId64 " ms (the disk 800)\n",
           commit_ms);
    CHECK(commit_ms < 100);
    dfb_journal_drain(j);
    dfb_journal_stats(j, &st);
    CHECK_EQ(st.fsyncs, before + 1);
    CHECK_EQ(st.sync_failing, 0);
    fault_set("");
    dfb_journal_destroy(&j);
}

/*  Issue 7, item 4: a real full file system. A 4 MiB tmpfs in a private
    mount namespace (root: CI runs as root), filled by another file; the
    journal fails cleanly and resumes once space is freed. */
static void
test_disk_full(void)
{
    if (geteuid() != 0) {
        printf("FAIL: journal_disk_full needs root (a tmpfs mount in a private namespace)\n");
        df_check_failures++;
        return;
    }
    const char *mnt = fresh("diskfull");
    CHECK(mkdir(mnt, 0755) == 0);
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0);
    if (n <= 0)
        return;
    self[n] = '\0';
    pid_t pid = fork();
    if (pid == 0) {
        execlp(
            "unshare", "unshare", "-m", "--propagation", "private", "sh", "-c",
            "mount -t tmpfs -o size=4m tmpfs \"$1\" && exec \"$2\" journal_disk_full_inner \"$1\"",
            "sh", mnt, self, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/*  Inside the namespace: s_dir is on the tmpfs. */
static void
test_disk_full_inner(void)
{
    char err[256], got[256], want[64], fill[1024];
    const char *dir = fresh("state");
    dfb_journal_opts_t o = opts(dir, 1 << 20, 0, 0, DFB_FSYNC_ALWAYS);
    dfb_journal_t *j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
    CHECK(j);
    if (!j)
        return;
    uint64_t seqs[3] = {0, 0, 0}, g = 1;
    CHECK(dfb_journal_flush(j) == 0);
    for (; g <= 100; g++)
        CHECK(append_one(j, g, seqs) == 0);
    CHECK(dfb_journal_flush(j) == 0);
    /* Fill the file system. */
    snprintf(fill, sizeof fill, "%s/filler", s_dir);
    int fd = open(fill, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    static char block[65536];
    memset(block, 'f', sizeof block);
    uint64_t filled = 0;
    for (int k = 0; k < 200; k++) {
        ssize_t w = write(fd, block, sizeof block);
        if (w <= 0)
            break;
        filled += (uint64_t)w;
    }
    close(fd);
    printf("  filler: %" PRIu64 " bytes\n", filled);
    /* Append until the disk refuses. */
    int failed = 0;
    for (int k = 0; k < 100000 && !failed; k++) {
        if (append_one(j, g, seqs) == 0)
            g++;
        else
            failed = 1;
    }
    CHECK(failed);
    CHECK_EQ(errno, ENOSPC);
    dfb_journal_stats_t st;
    dfb_journal_stats(j, &st);
    CHECK_EQ(segments_bytes(dir), st.bytes); /* nothing torn */
    CHECK_EQ(append_one(j, g, seqs), -1);    /* still full */
    printf("  full at gseq %" PRIu64 " (%" PRIu64 " append errors)\n", g, st.append_errors);
    /* Free space: the same gseq goes in, and more. */
    CHECK(unlink(fill) == 0);
    for (int k = 0; k < 10; k++)
        CHECK(append_one(j, g++, seqs) == 0);
    CHECK(dfb_journal_flush(j) == 0);
    snprintf(want, sizeof want, "1-%" PRIu64, g - 1);
    CHECK_STR(read_ranges(j, 1, got, sizeof got), want);
    dfb_journal_destroy(&j);
    /* And a restart finds nothing to cut. */
    j = dfb_journal_open(&o, "NEW", dfb_wall_ms(), err, sizeof err);
    CHECK(j);
    if (!j)
        return;
    dfb_journal_stats(j, &st);
    CHECK_EQ(dfb_journal_last_gseq(j), g - 1);
    CHECK_EQ(st.truncated_bytes, 0);
    CHECK_EQ(st.damaged_files, 0);
    CHECK_STR(read_ranges(j, 1, got, sizeof got), want);
    dfb_journal_destroy(&j);
}

/*  The journal's threads together (for ThreadSanitizer): a writer with
    rolls, flushes and retention; the actor's side (tick, stats, a reader
    that follows the head) on this thread; the sync thread behind tick. */
typedef struct {
    dfb_journal_t *j;
    uint64_t n;
    int rc;
} writer_t;

static void *
writer_main(void *arg)
{
    writer_t *w = arg;
    uint64_t seqs[3] = {0, 0, 0};
    for (uint64_t g = 1; g <= w->n && w->rc == 0; g++) {
        if (append_one(w->j, g, seqs) != 0)
            w->rc = -1;
        if (g % 50 == 0 && dfb_journal_flush(w->j) != 0)
            w->rc = -2;
    }
    return NULL;
}

static void
test_threads(void)
{
    char err[256];
    const char *dir = fresh("threads");
    dfb_journal_opts_t o = opts(dir, 8192, 256 << 10, 0, DFB_FSYNC_INTERVAL);
    o.fsync_ms = 1;
    dfb_journal_t *j = dfb_journal_open(&o, "E", dfb_wall_ms(), err, sizeof err);
    CHECK(j);
    if (!j)
        return;
    writer_t w = {j, 20000, 0};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, writer_main, &w) == 0);
    dfb_journal_reader_t *r = dfb_journal_reader_new(j);
    CHECK(dfb_journal_reader_seek_gseq(r, 1) == 0);
    uint64_t next = 1, read = 0, gone = 0;
    int64_t deadline = dfb_mono_ms() + 15000;
    dfb_journal_rec_t rec;
    dfb_journal_stats_t st;
    while (next <= w.n && dfb_mono_ms() < deadline) {
        dfb_journal_tick(j, dfb_wall_ms());
        dfb_journal_stats(j, &st);
        int rc = dfb_journal_reader_next(r, &rec);
        if (rc == 1) {
            mk_t m;
            mk(&m, rec.gseq, 0, (int)(rec.gseq % 3), 50 + rec.gseq % 100);
            CHECK(rec.gseq == next);
            CHECK(rec.body_len == m.rec.body_len && memcmp(rec.body, m.body, rec.body_len) == 0);
            next = rec.gseq + 1;
            read++;
        } else if (rc == DFB_JOURNAL_READER_GONE || rc == DFB_JOURNAL_GONE) {
            /* Retention overtook the reader: start again at the oldest.
               Retention runs on the journal's sync thread: the oldest may
               move on again between the stats and the seek (a loaded
               machine), and the seek then says GONE: look again. */
            gone++;
            int src;
            do {
                dfb_journal_stats(j, &st);
                next = st.oldest_gseq;
                src = dfb_journal_reader_seek_gseq(r, next);
            } while (src == DFB_JOURNAL_GONE && dfb_mono_ms() < deadline);
            if (src != 0)
                printf("  seek: %d at gseq %" PRIu64 "\n", src, next);
            CHECK(src == 0);
            if (src != 0)
                break;
        } else if (rc == 0) {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        } else {
            printf("  reader: %d at gseq %" PRIu64 "\n", rc, next);
            CHECK(rc >= 0);
            break;
        }
    }
    pthread_join(th, NULL);
    dfb_journal_drain(j);
    dfb_journal_stats(j, &st);
    printf("  read %" PRIu64 " records, %" PRIu64 " re-seeks; %" PRIu64
           " segments deleted, %" PRIu64 " fsyncs\n",
           read, gone, st.segments_deleted, st.fsyncs);
    CHECK_EQ(w.rc, 0);
    CHECK_EQ(next, w.n + 1);
    CHECK_EQ(st.head_gseq, w.n);
    CHECK(st.segments_deleted > 0);
    CHECK(st.bytes <= (256 << 10) + 8192);
    dfb_journal_reader_destroy(&r);
    dfb_journal_destroy(&j);
}

/* ---- runner --------------------------------------------------------------- */

typedef struct {
    const char *name;
    void (*fn)(void);
    int shim; /* 1: runs with the dffault shim preloaded (fault_exec); 2: needs root; not in "all"
               */
} test_t;

static const test_t s_tests[] = {
    {"journal_append_read", test_append_read, 0},
    {"journal_segments", test_segments, 0},
    {"journal_reader_filter", test_reader_filter, 0},
    {"journal_reader_index", test_reader_index, 0},
    {"journal_reader_pos", test_reader_pos, 0},
    {"journal_retention_size", test_retention_size, 0},
    {"journal_retention_age", test_retention_age, 0},
    {"journal_read_during_retention", test_read_during_retention, 0},
    {"journal_torn_tail", test_torn_tail, 0},
    {"journal_crc", test_crc, 0},
    {"journal_stage", test_stage, 0},
    {"journal_restart", test_restart, 0},
    {"journal_fsync", test_fsync, 0},
    {"journal_dedupe", test_dedupe, 0},
    {"journal_dedupe_publish", test_dedupe_publish, 0},
    {"replay_requests", test_replay, 0},
    {"replay_gone", test_replay_gone, 0},
    {"heartbeat_content", test_heartbeat, 0},
    {"heartbeat_golden", test_golden_heartbeat, 0},
    {"replay_golden", test_golden_end, 0},
    {"journal_config", test_config, 0},
    {"journal_recovery", test_recovery, 0},
    {"journal_recovery_new_epoch", test_recovery_new_epoch, 0},
    {"journal_recovery_issue", test_recovery_issue, 0},
    {"journal_threads", test_threads, 0},
    {"journal_sync_roll", test_sync_roll, 1},
    {"journal_disk_faults", test_disk_faults, 1},
    {"journal_no_stall", test_no_stall, 1},
    {"journal_disk_full", test_disk_full, 2},
    {"journal_disk_full_inner", test_disk_full_inner, 2},
};

int
main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: dfb_delivery_test NAME|all SCRATCH_DIR\n");
        return 2;
    }
    snprintf(s_dir, sizeof s_dir, "%s/%s-%d", argv[2], argv[1], (int)getpid());
    int ran = 0;
    for (size_t i = 0; i < sizeof s_tests / sizeof s_tests[0]; i++) {
        if (strcmp(argv[1], "all") != 0 && strcmp(argv[1], s_tests[i].name) != 0)
            continue;
        if (s_tests[i].shim && strcmp(argv[1], "all") == 0)
            continue;
        if (s_tests[i].shim == 1 && fault_exec(argv) != 0)
            return 1;
        int before = df_check_failures;
        printf("* %s\n", s_tests[i].name);
        s_tests[i].fn();
        printf("  %s: %s\n", s_tests[i].name, df_check_failures == before ? "OK" : "FAILED");
        ran++;
    }
    rm_rf(s_dir);
    if (!ran) {
        fprintf(stderr, "no test named %s\n", argv[1]);
        return 2;
    }
    return DF_CHECK_RESULT();
}
