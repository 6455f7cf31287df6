/*  dfb_transcode: JSON tape -> msgpack with canonical smallest encodings,
    the frame-2 envelope and the topic of an event (schemas/CONTRACT.md).
    The tape is in document order, so one forward pass over token indices
    emits every value with its exact container size. */
#include "dfb_transcode.h"

#include "dfb_json_tape.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
dfb_buf_init(dfb_buf_t *buf)
{
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
}

void
dfb_buf_reset(dfb_buf_t *buf)
{
    buf->len = 0;
}

void
dfb_buf_free(dfb_buf_t *buf)
{
    free(buf->data);
    dfb_buf_init(buf);
}

int
dfb_buf_reserve(dfb_buf_t *buf, size_t n)
{
    if (buf->cap - buf->len >= n)
        return 0;
    if (n > SIZE_MAX / 2 - buf->len)
        return -1;
    size_t cap = buf->cap ? buf->cap : 256;
    while (cap - buf->len < n)
        cap *= 2;
    uint8_t *d = realloc(buf->data, cap);
    if (!d)
        return -1;
    buf->data = d;
    buf->cap = cap;
    return 0;
}

int
dfb_buf_put(dfb_buf_t *buf, const void *data, size_t n)
{
    if (dfb_buf_reserve(buf, n) != 0)
        return -1;
    if (n)
        memcpy(buf->data + buf->len, data, n);
    buf->len += n;
    return 0;
}

/*  The room check every emit makes: inline, so the common case (room
    enough) is one comparison; growing stays out of line. */
static inline int
reserve(dfb_buf_t *buf, size_t n)
{
    return buf->cap - buf->len >= n ? 0 : dfb_buf_reserve(buf, n);
}

/* Big-endian stores; callers reserved the room. */
static inline uint8_t *
put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

static inline uint8_t *
put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

static inline uint8_t *
put64(uint8_t *p, uint64_t v)
{
    p = put32(p, (uint32_t)(v >> 32));
    return put32(p, (uint32_t)v);
}

static inline int
emit_uint(dfb_buf_t *buf, uint64_t v)
{
    if (reserve(buf, 9))
        return -1;
    uint8_t *p = buf->data + buf->len;
    if (v < 128)
        *p++ = (uint8_t)v;
    else if (v <= UINT8_MAX) {
        *p++ = 0xcc;
        *p++ = (uint8_t)v;
    } else if (v <= UINT16_MAX) {
        *p++ = 0xcd;
        p = put16(p, (uint16_t)v);
    } else if (v <= UINT32_MAX) {
        *p++ = 0xce;
        p = put32(p, (uint32_t)v);
    } else {
        *p++ = 0xcf;
        p = put64(p, v);
    }
    buf->len = (size_t)(p - buf->data);
    return 0;
}

/*  Non-negative values take the unsigned forms, as msgpack-python does. */
static inline int
emit_int(dfb_buf_t *buf, int64_t v)
{
    if (v >= 0)
        return emit_uint(buf, (uint64_t)v);
    if (reserve(buf, 9))
        return -1;
    uint8_t *p = buf->data + buf->len;
    if (v >= -32)
        *p++ = (uint8_t)(int8_t)v; /* negative fixint 0xe0..0xff */
    else if (v >= INT8_MIN) {
        *p++ = 0xd0;
        *p++ = (uint8_t)(int8_t)v;
    } else if (v >= INT16_MIN) {
        *p++ = 0xd1;
        p = put16(p, (uint16_t)(int16_t)v);
    } else if (v >= INT32_MIN) {
        *p++ = 0xd2;
        p = put32(p, (uint32_t)(int32_t)v);
    } else {
        *p++ = 0xd3;
        p = put64(p, (uint64_t)v);
    }
    buf->len = (size_t)(p - buf->data);
    return 0;
}

static inline int
emit_double(dfb_buf_t *buf, double d)
{
    if (reserve(buf, 9))
        return -1;
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    uint8_t *p = buf->data + buf->len;
    *p++ = 0xcb;
    put64(p, bits);
    buf->len += 9;
    return 0;
}

/*  memcpy for the short strings (keys, ids) that most values are, without
    a call: fixed-size loads that overlap inside [s, s + len) only. */
static inline void
copy_small(uint8_t *d, const char *s, size_t len)
{
    if (len >= 8 && len <= 16) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + len - 8, 8);
        memcpy(d, &a, 8);
        memcpy(d + len - 8, &b, 8);
    } else if (len >= 4 && len < 8) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + len - 4, 4);
        memcpy(d, &a, 4);
        memcpy(d + len - 4, &b, 4);
    } else if (len > 16) {
        memcpy(d, s, len);
    } else {
        for (size_t i = 0; i < len; i++)
            d[i] = (uint8_t)s[i];
    }
}

static inline int
emit_str(dfb_buf_t *buf, const char *s, size_t len)
{
    if (len > UINT32_MAX || reserve(buf, 5 + len))
        return -1;
    uint8_t *p = buf->data + buf->len;
    if (len < 32)
        *p++ = (uint8_t)(0xa0 | len);
    else if (len <= UINT8_MAX) {
        *p++ = 0xd9;
        *p++ = (uint8_t)len;
    } else if (len <= UINT16_MAX) {
        *p++ = 0xda;
        p = put16(p, (uint16_t)len);
    } else {
        *p++ = 0xdb;
        p = put32(p, (uint32_t)len);
    }
    copy_small(p, s, len);
    buf->len = (size_t)(p - buf->data) + len;
    return 0;
}

/*  fix / 16 / 32 header; fix_base is 0x90 (array) or 0x80 (map). */
static inline int
emit_container(dfb_buf_t *buf, uint32_t n, uint8_t fix_base, uint8_t tag16)
{
    if (reserve(buf, 5))
        return -1;
    uint8_t *p = buf->data + buf->len;
    if (n < 16)
        *p++ = (uint8_t)(fix_base | n);
    else if (n <= UINT16_MAX) {
        *p++ = tag16;
        p = put16(p, (uint16_t)n);
    } else {
        *p++ = (uint8_t)(tag16 + 1);
        p = put32(p, n);
    }
    buf->len = (size_t)(p - buf->data);
    return 0;
}

static inline int
emit_byte(dfb_buf_t *buf, uint8_t b)
{
    if (reserve(buf, 1))
        return -1;
    buf->data[buf->len++] = b;
    return 0;
}

int
dfb_transcode_value(const dfb_json_t *json, dfb_json_ref_t ref, dfb_buf_t *buf)
{
    /* Values still to emit in the subtree; each container adds its
       children. Tokens are consecutive in document order. The walk reads
       the tape directly (dfb_json_tape.h): this loop runs for every value
       of every event. */
    dfb_json_tape_t tape;
    dfb_json_tape(json, &tape);
    uint32_t size = tape.ntoks;
    if (ref >= size)
        return -1;
    uint64_t remaining = 1;
    for (dfb_json_ref_t r = ref; remaining > 0; r++, remaining--) {
        if (r >= size)
            return -1; /* cannot happen with a tape from dfb_json_parse */
        const dfb_tok_t *t = &tape.toks[r];
        int rc = 0;
        switch ((dfb_json_type_t)t->type) {
        case DFB_JSON_NULL:
            rc = emit_byte(buf, 0xc0);
            break;
        case DFB_JSON_FALSE:
            rc = emit_byte(buf, 0xc2);
            break;
        case DFB_JSON_TRUE:
            rc = emit_byte(buf, 0xc3);
            break;
        case DFB_JSON_INT:
            rc = emit_int(buf, t->v.i);
            break;
        case DFB_JSON_UINT:
            rc = emit_uint(buf, t->v.u);
            break;
        case DFB_JSON_DOUBLE:
            rc = emit_double(buf, t->v.d);
            break;
        case DFB_JSON_STRING:
            rc = emit_str(buf, tape.strs + t->v.s.off, t->v.s.len);
            break;
        case DFB_JSON_ARRAY:
            rc = emit_container(buf, t->count, 0x90, 0xdc);
            remaining += t->count;
            break;
        case DFB_JSON_OBJECT:
            rc = emit_container(buf, t->count, 0x80, 0xde);
            remaining += 2 * (uint64_t)t->count;
            break;
        default:
            return -1;
        }
        if (rc)
            return -1;
    }
    return 0;
}

int
dfb_transcode_message(const dfb_envelope_t *env, const dfb_json_t *json, dfb_json_ref_t event_ref,
                      dfb_buf_t *buf)
{
    const char *epoch = env->epoch ? env->epoch : "";
    /* Key order is part of the contract: v, seq, gseq, epoch, ts, bot, event. */
    if (emit_container(buf, 7, 0x80, 0xde) || emit_str(buf, "v", 1) ||
        emit_uint(buf, DFB_WIRE_VERSION) || emit_str(buf, "seq", 3) || emit_uint(buf, env->seq) ||
        emit_str(buf, "gseq", 4) || emit_uint(buf, env->gseq) || emit_str(buf, "epoch", 5) ||
        emit_str(buf, epoch, strlen(epoch)) || emit_str(buf, "ts", 2) || emit_uint(buf, env->ts) ||
        emit_str(buf, "bot", 3) || emit_int(buf, env->bot) || emit_str(buf, "event", 5))
        return -1;
    return dfb_transcode_value(json, event_ref, buf);
}

int
dfb_transcode_stub(const dfb_envelope_t *env, const dfb_json_t *json, dfb_json_ref_t event_ref,
                   uint64_t too_large, dfb_buf_t *buf)
{
    static const char *const keep[] = {"id", "messageId", "timestamp", "type"};
    dfb_json_ref_t vals[4];
    uint32_t n = 0;
    for (size_t i = 0; i < 4; i++) {
        dfb_json_ref_t v = dfb_json_get(json, event_ref, keep[i]);
        dfb_json_type_t t = v == DFB_JSON_NONE ? DFB_JSON_NULL : dfb_json_type(json, v);
        size_t len = 0;
        if (t == DFB_JSON_STRING)
            dfb_json_string(json, v, &len);
        int ok = (t == DFB_JSON_STRING && len <= DFB_STUB_MAX_STR) || t == DFB_JSON_INT ||
                 t == DFB_JSON_UINT;
        vals[i] = ok ? v : DFB_JSON_NONE;
        n += ok;
    }
    /* The initiator's user id only, so consumers' self filter (and the
       BDKs' "no initiator user" filter) treat the stub as the event. */
    dfb_json_ref_t user = dfb_json_get(json, event_ref, "initiator");
    user = user == DFB_JSON_NONE ? user : dfb_json_get(json, user, "user");
    dfb_json_ref_t uid = user == DFB_JSON_NONE ? user : dfb_json_get(json, user, "userId");
    if (uid != DFB_JSON_NONE && dfb_json_type(json, uid) != DFB_JSON_INT &&
        dfb_json_type(json, uid) != DFB_JSON_UINT)
        uid = DFB_JSON_NONE;
    n += uid != DFB_JSON_NONE;
    const char *epoch = env->epoch ? env->epoch : "";
    if (emit_container(buf, 8, 0x80, 0xde) || emit_str(buf, "v", 1) ||
        emit_uint(buf, DFB_WIRE_VERSION) || emit_str(buf, "seq", 3) || emit_uint(buf, env->seq) ||
        emit_str(buf, "gseq", 4) || emit_uint(buf, env->gseq) || emit_str(buf, "epoch", 5) ||
        emit_str(buf, epoch, strlen(epoch)) || emit_str(buf, "ts", 2) || emit_uint(buf, env->ts) ||
        emit_str(buf, "bot", 3) || emit_int(buf, env->bot) || emit_str(buf, "too_large", 9) ||
        emit_uint(buf, too_large) || emit_str(buf, "event", 5) ||
        emit_container(buf, n, 0x80, 0xde))
        return -1;
    for (size_t i = 0; i < 4; i++) {
        if (vals[i] != DFB_JSON_NONE &&
            (emit_str(buf, keep[i], strlen(keep[i])) || dfb_transcode_value(json, vals[i], buf)))
            return -1;
        if (i == 2 && uid != DFB_JSON_NONE && /* after timestamp, as Symphony orders them */
            (emit_str(buf, "initiator", 9) || emit_container(buf, 1, 0x80, 0xde) ||
             emit_str(buf, "user", 4) || emit_container(buf, 1, 0x80, 0xde) ||
             emit_str(buf, "userId", 6) || dfb_transcode_value(json, uid, buf)))
            return -1;
    }
    return 0;
}

const char *
dfb_transcode_topic(const dfb_json_t *json, dfb_json_ref_t ref, size_t *len)
{
    dfb_json_ref_t t = dfb_json_get(json, ref, "type");
    size_t n = 0;
    const char *s = t == DFB_JSON_NONE ? NULL : dfb_json_string(json, t, &n);
    /* Topics starting with '_' are reserved for the bridge's own messages;
       an event can never claim one. */
    if (!s || n == 0 || s[0] == '_' || n > DFB_TOPIC_MAX_LEN) {
        s = DFB_TOPIC_UNKNOWN;
        n = sizeof DFB_TOPIC_UNKNOWN - 1;
    }
    if (len)
        *len = n;
    return s;
}

/* ---------------------------------------------------------------- self-test */

/* The project's one CHECK macro set (tests/include/df_check.h). */
#include "df_check.h"

/*  Transcodes `json` and compares with the expected bytes. */
static void
expect(dfb_json_t *j, dfb_buf_t *buf, const char *json, const char *want, size_t want_len)
{
    dfb_buf_reset(buf);
    if (dfb_json_parse(j, json, strlen(json)) != 0 || dfb_transcode_value(j, 0, buf) != 0 ||
        buf->len != want_len || memcmp(buf->data, want, want_len) != 0) {
        fprintf(stderr, "transcode %s: wrong output (%zu bytes)\n", json, buf->len);
        df_check_failures++;
    }
}

int
dfb_transcode_test(int verbose)
{
    df_check_failures = 0;
    dfb_json_t *j = dfb_json_new();
    dfb_buf_t buf;
    dfb_buf_init(&buf);
    CHECK(j);
    if (!j)
        return 1;

    /* Boundaries of every integer form (expected bytes by the msgpack spec). */
    expect(j, &buf, "127", "\x7f", 1);
    expect(j, &buf, "128", "\xcc\x80", 2);
    expect(j, &buf, "256", "\xcd\x01\x00", 3);
    expect(j, &buf, "65536", "\xce\x00\x01\x00\x00", 5);
    expect(j, &buf, "4294967296", "\xcf\x00\x00\x00\x01\x00\x00\x00\x00", 9);
    expect(j, &buf, "-32", "\xe0", 1);
    expect(j, &buf, "-33", "\xd0\xdf", 2);
    expect(j, &buf, "-129", "\xd1\xff\x7f", 3);
    expect(j, &buf, "-32769", "\xd2\xff\xff\x7f\xff", 5);
    expect(j, &buf, "-2147483649", "\xd3\xff\xff\xff\xff\x7f\xff\xff\xff", 9);
    expect(j, &buf, "18446744073709551615", "\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9);
    /* Floats are always float64, even integral ones. */
    expect(j, &buf, "1.0", "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", 9);
    expect(j, &buf, "-0.0", "\xcb\x80\x00\x00\x00\x00\x00\x00\x00", 9);
    /* Containers, literals, key order, duplicates, NUL in strings. */
    expect(j, &buf, "[true,false,null]", "\x93\xc3\xc2\xc0", 4);
    expect(j, &buf, "{\"b\":1,\"a\":2,\"b\":3}", "\x83\xa1\x62\x01\xa1\x61\x02\xa1\x62\x03", 10);
    expect(j, &buf, "\"a\\u0000b\"", "\xa3\x61\x00\x62", 4);
    expect(j, &buf, "{\"a\":{\"b\":[]},\"c\":{}}", "\x82\xa1\x61\x81\xa1\x62\x90\xa1\x63\x80", 10);

    /* Strings of every length around the copy's sizes (0..40 bytes, str8
       from 32): header and each byte in place. */
    for (size_t n = 0; n <= 40; n++) {
        char text[64], want_s[64];
        size_t w = 0;
        text[0] = '"';
        for (size_t i = 0; i < n; i++)
            text[1 + i] = (char)('A' + (i * 7 + n) % 26);
        text[1 + n] = '"';
        if (n < 32)
            want_s[w++] = (char)(0xa0 | n);
        else {
            want_s[w++] = (char)0xd9;
            want_s[w++] = (char)n;
        }
        memcpy(want_s + w, text + 1, n);
        CHECK(dfb_json_parse(j, text, n + 2) == 0);
        dfb_buf_reset(&buf);
        CHECK(dfb_transcode_value(j, 0, &buf) == 0);
        CHECK(buf.len == w + n && memcmp(buf.data, want_s, w + n) == 0);
    }

    /* A value inside a bigger document: only its subtree is emitted. */
    const char *doc = "{\"x\":[1,{\"y\":2}],\"z\":3}";
    CHECK(dfb_json_parse(j, doc, strlen(doc)) == 0);
    dfb_buf_reset(&buf);
    CHECK(dfb_transcode_value(j, dfb_json_get(j, 0, "x"), &buf) == 0);
    CHECK(buf.len == 6 && memcmp(buf.data, "\x92\x01\x81\xa1\x79\x02", 6) == 0);

    /* Refs outside the tape are refused, also after a failed parse. */
    CHECK(dfb_transcode_value(j, DFB_JSON_NONE, &buf) == -1);
    CHECK(dfb_json_parse(j, "[", 1) == -1);
    CHECK(dfb_transcode_value(j, 0, &buf) == -1);

    /* Envelope: fixed keys in order; NULL epoch is an empty string. */
    const char *ev = "{\"type\":\"ROOMCREATED\"}";
    CHECK(dfb_json_parse(j, ev, strlen(ev)) == 0);
    dfb_envelope_t env = {.seq = 1, .gseq = 300, .epoch = NULL, .ts = 5, .bot = -2};
    dfb_buf_reset(&buf);
    CHECK(dfb_transcode_message(&env, j, 0, &buf) == 0);
    const char want[] = "\x87\xa1v\x01\xa3seq\x01\xa4gseq\xcd\x01\x2c\xa5"
                        "epoch\xa0\xa2ts\x05\xa3"
                        "bot\xfe\xa5"
                        "event\x81\xa4type\xabROOMCREATED";
    CHECK(buf.len == sizeof want - 1 && memcmp(buf.data, want, sizeof want - 1) == 0);
    /* Appends: a second message follows the first in the same buffer. */
    size_t first = buf.len;
    CHECK(dfb_transcode_message(&env, j, 0, &buf) == 0);
    CHECK(buf.len == 2 * first && memcmp(buf.data + first, want, first) == 0);

    /* Topics. */
    struct {
        const char *json;
        const char *topic;
    } topics[] = {
        {"{\"type\":\"MESSAGESENT\"}", "MESSAGESENT"},
        {"{\"type\":\"SOMETHINGNEW\"}", "SOMETHINGNEW"},
        {"{\"id\":1}", "UNKNOWN"},
        {"{\"type\":null}", "UNKNOWN"},
        {"{\"type\":7}", "UNKNOWN"},
        {"{\"type\":\"\"}", "UNKNOWN"},
        {"{\"type\":\"_status\"}", "UNKNOWN"},
        {"{\"type\":\"A\",\"type\":\"B\"}", "A"},
        {"[\"MESSAGESENT\"]", "UNKNOWN"},
    };
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++) {
        size_t len = 0;
        CHECK(dfb_json_parse(j, topics[i].json, strlen(topics[i].json)) == 0);
        const char *t = dfb_transcode_topic(j, 0, &len);
        CHECK(len == strlen(topics[i].topic) && memcmp(t, topics[i].topic, len) == 0);
    }

    dfb_buf_free(&buf);
    CHECK(buf.data == NULL && buf.len == 0 && buf.cap == 0);
    dfb_json_destroy(&j);
    if (verbose)
        fprintf(stderr, "dfb_transcode_test: %d failure(s)\n", df_check_failures);
    return df_check_failures ? 1 : 0;
}
