/*  dfb_transcode: JSON tape -> msgpack with canonical smallest encodings,
    the frame-2 envelope and the topic of an event (schemas/CONTRACT.md).
    The tape is in document order, so one forward pass over token indices
    emits every value with its exact container size. */
#include "dfb_transcode.h"

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

/*  Makes room for n more bytes. Returns 0 or -1 (buf unchanged). */
static int
buf_reserve(dfb_buf_t *buf, size_t n)
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
    if (buf_reserve(buf, 9))
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
    if (buf_reserve(buf, 9))
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
    if (buf_reserve(buf, 9))
        return -1;
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    uint8_t *p = buf->data + buf->len;
    *p++ = 0xcb;
    put64(p, bits);
    buf->len += 9;
    return 0;
}

static inline int
emit_str(dfb_buf_t *buf, const char *s, size_t len)
{
    if (len > UINT32_MAX || buf_reserve(buf, 5 + len))
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
    if (len)
        memcpy(p, s, len);
    buf->len = (size_t)(p - buf->data) + len;
    return 0;
}

/*  fix / 16 / 32 header; fix_base is 0x90 (array) or 0x80 (map). */
static inline int
emit_container(dfb_buf_t *buf, uint32_t n, uint8_t fix_base, uint8_t tag16)
{
    if (buf_reserve(buf, 5))
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
    if (buf_reserve(buf, 1))
        return -1;
    buf->data[buf->len++] = b;
    return 0;
}

int
dfb_transcode_value(const dfb_json_t *json, dfb_json_ref_t ref, dfb_buf_t *buf)
{
    /* Values still to emit in the subtree; each container adds its
       children. Tokens are consecutive in document order. */
    uint64_t remaining = 1;
    for (dfb_json_ref_t r = ref; remaining > 0; r++, remaining--) {
        int rc = 0;
        switch (dfb_json_type(json, r)) {
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
            rc = emit_int(buf, dfb_json_int(json, r));
            break;
        case DFB_JSON_UINT:
            rc = emit_uint(buf, dfb_json_uint(json, r));
            break;
        case DFB_JSON_DOUBLE:
            rc = emit_double(buf, dfb_json_double(json, r));
            break;
        case DFB_JSON_STRING: {
            size_t len;
            const char *s = dfb_json_string(json, r, &len);
            rc = emit_str(buf, s, len);
            break;
        }
        case DFB_JSON_ARRAY: {
            uint32_t n = dfb_json_count(json, r);
            rc = emit_container(buf, n, 0x90, 0xdc);
            remaining += n;
            break;
        }
        case DFB_JSON_OBJECT: {
            uint32_t n = dfb_json_count(json, r);
            rc = emit_container(buf, n, 0x80, 0xde);
            remaining += 2 * (uint64_t)n;
            break;
        }
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

const char *
dfb_transcode_topic(const dfb_json_t *json, dfb_json_ref_t ref, size_t *len)
{
    dfb_json_ref_t t = dfb_json_get(json, ref, "type");
    size_t n = 0;
    const char *s = t == DFB_JSON_NONE ? NULL : dfb_json_string(json, t, &n);
    if (!s || n == 0) {
        s = DFB_TOPIC_UNKNOWN;
        n = sizeof DFB_TOPIC_UNKNOWN - 1;
    }
    if (len)
        *len = n;
    return s;
}
