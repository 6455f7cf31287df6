/*  Fuzz target bridge_journal: the journal's recovery and readers
    (bridge/dfb_journal_recover.c, dfb_journal_reader.c, dfb_journal_format.c)
    on segment files made from the input, in a scratch folder on tmpfs:
    open (recover), read everything from gseq 1 (touching every byte of
    every record), scan the tail as the dedupe window's rebuild does, seek
    every topic, append one record and read it back.

    Input: byte 0 = flags, the rest = up to 4 segments separated by "SEG!".
    flags bit 0: write journal/EPOCH ("fuzz-epoch\n"); bit 1: segments are
    raw file bytes; else each segment is a list of payloads
      u16 length (LE) | payload
    written as records (u32 length | u32 CRC-32C | payload) so the CRCs
    are right and the fuzzer reaches the payload parsers; a last payload
    cut short by the input is written torn (its full length declared).
    A segment is named after the first gseq of a readable header payload,
    else 1, 1001, 2001, 3001.

    Checked beyond "no crash": the record appended after recovery is read
    back byte for byte at the gseq it was given. */
#include "fuzz_util.h"

#include "dfb_journal.h"
#include "dfb_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SEGS 4

/*  Touches every byte a record points to (ASan sees a record that points
    outside its buffer). */
static uint32_t
touch(const dfb_journal_rec_t *rec)
{
    uint32_t h = dfb_crc32c(0, rec->topic, rec->topic_len);
    h = dfb_crc32c(h, rec->type, rec->type_len);
    h = dfb_crc32c(h, rec->id, rec->id_len);
    return dfb_crc32c(h, rec->body, rec->body_len);
}

static void
scan_one(void *arg, const dfb_journal_rec_t *rec)
{
    *(uint32_t *)arg ^= touch(rec);
}

static void
put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t
get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void
write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (len && fwrite(data, 1, len, f) != len)
        abort();
    fclose(f);
}

/*  The first gseq named by a header payload, or 0. */
static uint64_t
header_first(const uint8_t *p, size_t len)
{
    if (len < 6 || p[0] != 'H')
        return 0;
    uint32_t el = (uint32_t)p[2] | (uint32_t)p[3] << 8 | (uint32_t)p[4] << 16 | (uint32_t)p[5] << 24;
    if (el >= 64 || 6 + (size_t)el + 8 > len)
        return 0;
    uint64_t first = get64(p + 6 + el);
    return first >= 1 && first < 1000000000000000ull ? first : 0;
}

/*  Segment chunk -> file bytes (framed mode). Returns a malloc'ed buffer. */
static uint8_t *
frame(const uint8_t *p, size_t len, size_t *out_len, uint64_t *first)
{
    uint8_t *out = malloc(len / 2 * 8 + len + 16);
    if (!out)
        abort();
    size_t o = 0;
    int n = 0;
    while (len >= 2) {
        size_t pl = (size_t)p[0] | (size_t)p[1] << 8;
        p += 2;
        len -= 2;
        size_t have = pl <= len ? pl : len;
        if (n++ == 0)
            *first = header_first(p, have);
        put32(out + o, (uint32_t)pl);
        put32(out + o + 4, dfb_crc32c(0, p, have));
        memcpy(out + o + 8, p, have);
        o += 8 + have;
        p += have;
        len -= have;
    }
    *out_len = o;
    return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    dfb_log_set_level(getenv("DF_FUZZ_LOG") ? DFB_LOG_DEBUG : DFB_LOG_ERROR);
    if (size < 1)
        return 0;
    const char *scratch = fuzz_scratch();
    if (!scratch)
        abort();
    char dir[400], jdir[420], path[500];
    snprintf(dir, sizeof dir, "%s/state", scratch);
    snprintf(jdir, sizeof jdir, "%s/journal", dir);
    fuzz_rmtree(dir);
    if (mkdir(dir, 0700) != 0 || mkdir(jdir, 0700) != 0)
        abort();
    uint8_t flags = data[0];
    if (flags & 1) {
        snprintf(path, sizeof path, "%s/EPOCH", jdir);
        write_file(path, "fuzz-epoch\n", 11);
    }
    const uint8_t *p = data + 1, *end = data + size;
    for (int i = 0; i < MAX_SEGS && p <= end; i++) {
        const uint8_t *stop = end;
        for (const uint8_t *q = p; q + 4 <= end; q++)
            if (memcmp(q, "SEG!", 4) == 0) {
                stop = q;
                break;
            }
        uint64_t first = 0;
        size_t flen;
        uint8_t *bytes;
        if (flags & 2) {
            flen = (size_t)(stop - p);
            bytes = malloc(flen + 1);
            if (!bytes)
                abort();
            memcpy(bytes, p, flen);
            if (flen > 8)
                first = header_first(bytes + 8, flen - 8);
        } else {
            bytes = frame(p, (size_t)(stop - p), &flen, &first);
        }
        snprintf(path, sizeof path, "%s/%020llu.dfj", jdir,
                 (unsigned long long)(first ? first : 1 + 1000ull * (unsigned)i));
        write_file(path, bytes, flen);
        free(bytes);
        if (stop == end)
            break;
        p = stop + 4;
    }

    dfb_journal_opts_t opts = {.dir = dir,
                               .segment_bytes = 1 << 20,
                               .max_bytes = 0,
                               .max_age_ms = 0,
                               .fsync = DFB_FSYNC_NEVER,
                               .fsync_ms = 1000};
    char err[256];
    int64_t now = 1700000000000;
    dfb_journal_t *j = dfb_journal_open(&opts, "fuzz-new-epoch", now, err, sizeof err);
    if (!j) {
        fuzz_rmtree(dir);
        return 0;
    }
    dfb_journal_reader_t *r = dfb_journal_reader_new(j);
    int seek = r ? dfb_journal_reader_seek_gseq(r, 1) : -99, nread = 0, ncorrupt = 0;
    if (seek >= 0) {
        dfb_journal_rec_t rec;
        for (int i = 0; i < 20000; i++) {
            int rc = dfb_journal_reader_next(r, &rec);
            if (rc == 0 || rc == DFB_JOURNAL_READER_GONE || rc == DFB_JOURNAL_EIO ||
                rc == DFB_JOURNAL_NOMEM)
                break;
            if (rc == 1)
                (void)touch(&rec);
            nread += rc == 1;
            ncorrupt += rc == DFB_JOURNAL_CORRUPT;
        }
    }
    if (getenv("DF_FUZZ_LOG"))
        fprintf(stderr, "fuzz: epoch %s, last gseq %llu, seek %d, %d records read, %d corrupt\n",
                dfb_journal_epoch(j), (unsigned long long)dfb_journal_last_gseq(j), seek, nread,
                ncorrupt);
    /* the dedupe window's rebuild at start reads the tail */
    uint32_t h = 0;
    dfb_journal_scan_tail(j, 1000, 0, scan_one, &h);
    /* every topic the headers know, from its seq 1 */
    size_t cursor = 0;
    const dfb_topic_t *t;
    for (int k = 0; k < 4 && r && (t = dfb_topics_next(dfb_journal_topics(j), &cursor)) != NULL;
         k++) {
        if (dfb_journal_reader_seek_topic(r, t->topic, t->len, 1) < 0)
            continue;
        dfb_journal_rec_t rec;
        for (int i = 0, rc; i < 300 && (rc = dfb_journal_reader_next(r, &rec)) != 0; i++)
            if (rc == 1)
                (void)touch(&rec);
    }
    /* the writer after recovery: the next gseq is readable back */
    uint64_t g = dfb_journal_last_gseq(j) + 1;
    static const uint8_t body[] = {0x81, 0xa1, 'v', 0x01};
    dfb_journal_rec_t rec = {.gseq = g,
                             .seq = 1,
                             .topic = "FUZZ",
                             .topic_len = 4,
                             .type = "FUZZ",
                             .type_len = 4,
                             .id = "id",
                             .id_len = 2,
                             .body = body,
                             .body_len = sizeof body};
    if (g < (1ull << 62) && dfb_journal_append(j, &rec, now) == 0 && r &&
        dfb_journal_reader_seek_gseq(r, g) == 0) {
        dfb_journal_rec_t back;
        int rc = dfb_journal_reader_next(r, &back);
        if (rc != 1 || back.gseq != g || back.body_len != sizeof body ||
            memcmp(back.body, body, sizeof body) != 0 || back.topic_len != 4 ||
            memcmp(back.topic, "FUZZ", 4) != 0)
            abort();
    }
    dfb_journal_reader_destroy(&r);
    dfb_journal_destroy(&j);
    fuzz_rmtree(dir);
    return 0;
}
