/*  Fuzz target bridge_json: the bridge's JSON tape (dfb_json.c, over yajl)
    and the transcoder (dfb_transcode.c), as the loop uses them on a pod
    response. Checked beyond "no crash": every container's count is its
    number of children, every transcoded value is exactly one complete
    msgpack object, and a text the strict mode accepts is accepted by the
    replacing mode with no replacement and the same bytes. */
#include "fuzz_util.h"

#include "dfb_json.h"
#include "dfb_mpack.h"
#include "dfb_transcode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static dfb_json_t *s_json; /* reused, as the loop reuses its tape */
static dfb_buf_t s_buf, s_strict;

/*  One whole msgpack object, nothing after it. */
static void
check_one_object(const dfb_buf_t *b)
{
    dfb_mpack_reader_t rd = {b->data, b->data + b->len};
    if (dfb_mpack_skip(&rd, DFB_JSON_MAX_DEPTH + 8) != 0 || rd.p != rd.end)
        abort();
}

/*  Walks the tape from the root with first/next (no recursion: an explicit
    count of tokens), checking counts, accessors and the transcoder on
    every container's elements. */
static void
walk(const dfb_json_t *j)
{
    uint32_t n = dfb_json_size(j);
    if (n == 0)
        abort();
    for (dfb_json_ref_t r = 0; r < n; r++) {
        dfb_json_type_t t = dfb_json_type(j, r);
        size_t len = 0;
        switch (t) {
        case DFB_JSON_STRING:
            if (!dfb_json_string(j, r, &len))
                abort();
            break;
        case DFB_JSON_INT:
            (void)dfb_json_int(j, r);
            break;
        case DFB_JSON_UINT:
            if (dfb_json_uint(j, r) <= (uint64_t)INT64_MAX)
                abort();
            break;
        case DFB_JSON_DOUBLE:
            (void)dfb_json_double(j, r);
            break;
        case DFB_JSON_ARRAY:
        case DFB_JSON_OBJECT: {
            uint32_t count = dfb_json_count(j, r), seen = 0;
            for (dfb_json_ref_t c = dfb_json_first(j, r); c != DFB_JSON_NONE; c = dfb_json_next(j, c)) {
                if (c <= r || c >= n)
                    abort();
                seen++;
            }
            if (seen != (t == DFB_JSON_OBJECT ? 2 * count : count))
                abort();
            break;
        }
        default:
            break;
        }
    }
}

/*  What the loop does with a read body: each event of "events" (or of the
    root array, v1) becomes a topic and a frame 2. */
static void
transcode_all(const dfb_json_t *j, dfb_buf_t *out)
{
    dfb_buf_reset(out);
    if (dfb_transcode_value(j, 0, out) != 0)
        abort();
    check_one_object(out);
    dfb_json_ref_t events = dfb_json_type(j, 0) == DFB_JSON_ARRAY ? 0 : dfb_json_get(j, 0, "events");
    if (events == DFB_JSON_NONE || dfb_json_type(j, events) != DFB_JSON_ARRAY)
        return;
    dfb_envelope_t env = {.seq = 1, .gseq = 1, .epoch = "fuzz", .ts = 1, .bot = -1};
    for (dfb_json_ref_t e = dfb_json_first(j, events); e != DFB_JSON_NONE; e = dfb_json_next(j, e)) {
        size_t tl = 0;
        const char *topic = dfb_transcode_topic(j, e, &tl);
        if (!topic || tl == 0 || topic[0] == '_')
            abort();
        dfb_buf_t one = {0};
        if (dfb_transcode_message(&env, j, e, &one) != 0)
            abort();
        check_one_object(&one);
        dfb_buf_free(&one);
        env.seq++;
        env.gseq++;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    if (!s_json && !(s_json = dfb_json_new()))
        abort();
    dfb_json_set_options(s_json, 0);
    int strict_ok = dfb_json_parse(s_json, (const char *)data, size) == 0;
    if (strict_ok) {
        walk(s_json);
        transcode_all(s_json, &s_strict);
    } else if (dfb_json_size(s_json) != 0 || dfb_json_error(s_json)[0] == '\0') {
        abort(); /* a failed parse leaves an empty tape and a reason */
    }
    dfb_json_set_options(s_json, DFB_JSON_REPLACE_INVALID);
    if (dfb_json_parse(s_json, (const char *)data, size) == 0) {
        walk(s_json);
        transcode_all(s_json, &s_buf);
        if (strict_ok && (dfb_json_replacements(s_json) != 0 || s_buf.len != s_strict.len ||
                          memcmp(s_buf.data, s_strict.data, s_buf.len) != 0))
            abort(); /* strict and replacing modes disagree on valid text */
    } else if (strict_ok) {
        abort();
    }
    return 0;
}
