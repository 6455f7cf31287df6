/*  Fuzz target bridge_cmdlog: the command journal's loader
    (bridge/dfb_cmdlog.c) on a commands.log made from the input, in a
    fresh scratch folder on tmpfs.

    Input: byte 0 = flags, the rest = the file. flags bit 0: the rest is
    the raw file; else it is a list of payloads
      u16 length (LE) | payload
    written after a valid file header as records (u32 length | u32
    CRC-32C | payload) so the CRCs are right and the fuzzer reaches the
    payload parser; a last payload cut short by the input is written torn
    (its full length declared). Bits 2-3 choose the window (24 h, 1 s,
    100 s, 1 ms) against a fixed wall clock.

    Checked beyond "no crash, no leak": after the load every entry is
    pending or done; a request begun and done on top of what was loaded is
    found DONE byte for byte after a reopen, which loads exactly one more
    entry than the first open and drops nothing (the first open cut and
    compacted the file). */
#include "fuzz_util.h"

#include "dfb_cmdlog.h"
#include "dfb_crc32c.h"
#include "dfb_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1764900000000LL

static void
put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/*  The file the input describes, into a malloc'd buffer (*len bytes). */
static uint8_t *
make_file(const uint8_t *data, size_t size, size_t *len)
{
    uint8_t flags = data[0];
    data++;
    size--;
    /* framing adds at most 6 bytes per 2-byte length prefix */
    uint8_t *f = malloc(12 + size * 4 + 16);
    if (!f)
        return NULL;
    if (flags & 1) {
        memcpy(f, data, size);
        *len = size;
        return f;
    }
    memcpy(f, "DFBCMD1\n", 8);
    put32(f + 8, 1);
    size_t o = 12, i = 0;
    while (i + 2 <= size) {
        size_t pl = (size_t)(data[i] | data[i + 1] << 8);
        i += 2;
        size_t have = size - i < pl ? size - i : pl;
        put32(f + o, (uint32_t)pl);
        put32(f + o + 4, dfb_crc32c(0, data + i, have));
        memcpy(f + o + 8, data + i, have);
        o += 8 + have;
        i += have;
    }
    *len = o;
    return f;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    dfb_log_set_level(getenv("DF_FUZZ_LOG") ? DFB_LOG_DEBUG : DFB_LOG_ERROR);
    if (size < 1)
        return 0;
    static const int64_t windows[4] = {0, 1000, 100000, 1};
    int64_t window = windows[(data[0] >> 2) & 3];
    const char *base = fuzz_scratch();
    if (!base)
        return 0;
    char dir[300], path[400];
    snprintf(dir, sizeof dir, "%s/c.XXXXXX", base);
    if (!mkdtemp(dir))
        return 0;
    snprintf(path, sizeof path, "%s/commands.log", dir);
    size_t flen = 0;
    uint8_t *file = make_file(data, size, &flen);
    FILE *fp = file ? fopen(path, "wb") : NULL;
    if (!fp || fwrite(file, 1, flen, fp) != flen) {
        if (fp)
            fclose(fp);
        free(file);
        fuzz_rmtree(dir);
        return 0;
    }
    fclose(fp);
    free(file);

    char err[256];
    dfb_cmdlog_t *c = dfb_cmdlog_open_at(dir, window, NOW, err, sizeof err);
    if (!c)
        abort(); /* only an unopenable file may fail, and this one opens */
    dfb_cmdlog_stats_t s1, s2;
    dfb_cmdlog_stats(c, &s1);
    if (s1.entries != s1.pending + s1.done || s1.entries > size / 20 + 1)
        abort();
    static const uint8_t key[] = "fuzz\0probe-key";
    uint8_t fpr[32], out[100];
    memset(fpr, 0xA5, sizeof fpr);
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (uint8_t)(i * 13);
    dfb_cmdlog_entry_t e;
    dfb_cmdlog_state_t st = dfb_cmdlog_find(c, key, sizeof key - 1, fpr, &e);
    free(e.outcome);
    int added = 0;
    if (st == DFB_CMDLOG_NEW) {
        if (dfb_cmdlog_begin(c, key, sizeof key - 1, fpr, "messages.send", "sid", NOW) != 0 ||
            dfb_cmdlog_done(c, key, sizeof key - 1, out, sizeof out) != 0)
            abort();
        added = 1;
    }
    dfb_cmdlog_close(&c);
    c = dfb_cmdlog_open_at(dir, window, NOW, err, sizeof err);
    if (!c)
        abort();
    dfb_cmdlog_stats(c, &s2);
    if (s2.entries != s1.entries + (uint64_t)added || s2.dropped_tail_bytes != 0)
        abort();
    if (added) {
        st = dfb_cmdlog_find(c, key, sizeof key - 1, fpr, &e);
        if (st != DFB_CMDLOG_DONE || e.outcome_len != sizeof out ||
            memcmp(e.outcome, out, sizeof out) != 0)
            abort();
        free(e.outcome);
        if (s2.done != s1.done + 1)
            abort();
    }
    dfb_cmdlog_close(&c);
    fuzz_rmtree(dir);
    return 0;
}
