/*  dfb_mpack: canonical msgpack writer and bounded reader for the bridge's
    own messages (see dfb_mpack.h). */
#include "dfb_mpack.h"

#include <stdlib.h>
#include <string.h>

/*  Tag then a big-endian integer of size bytes. */
static int
put_be(dfb_buf_t *buf, uint8_t tag, uint64_t v, int size)
{
    uint8_t b[9];
    b[0] = tag;
    for (int i = 0; i < size; i++)
        b[1 + i] = (uint8_t)(v >> (8 * (size - 1 - i)));
    return dfb_buf_put(buf, b, (size_t)size + 1);
}

static int
container(dfb_buf_t *buf, uint32_t n, uint8_t fix, uint8_t tag16)
{
    if (n < 16) {
        uint8_t b = (uint8_t)(fix | n);
        return dfb_buf_put(buf, &b, 1);
    }
    if (n <= 0xffff)
        return put_be(buf, tag16, n, 2);
    return put_be(buf, (uint8_t)(tag16 + 1), n, 4);
}

int
dfb_mpack_map(dfb_buf_t *buf, uint32_t n)
{
    return container(buf, n, 0x80, 0xde);
}

int
dfb_mpack_array(dfb_buf_t *buf, uint32_t n)
{
    return container(buf, n, 0x90, 0xdc);
}

int
dfb_mpack_str(dfb_buf_t *buf, const char *s, size_t len)
{
    int rc;
    if (len < 32) {
        uint8_t b = (uint8_t)(0xa0 | len);
        rc = dfb_buf_put(buf, &b, 1);
    } else if (len <= 0xff)
        rc = put_be(buf, 0xd9, len, 1);
    else if (len <= 0xffff)
        rc = put_be(buf, 0xda, len, 2);
    else if (len <= 0xffffffffu)
        rc = put_be(buf, 0xdb, len, 4);
    else
        return -1;
    return rc == 0 ? dfb_buf_put(buf, s, len) : -1;
}

int
dfb_mpack_cstr(dfb_buf_t *buf, const char *s)
{
    return dfb_mpack_str(buf, s, strlen(s));
}

int
dfb_mpack_uint(dfb_buf_t *buf, uint64_t v)
{
    if (v < 128) {
        uint8_t b = (uint8_t)v;
        return dfb_buf_put(buf, &b, 1);
    }
    if (v <= 0xff)
        return put_be(buf, 0xcc, v, 1);
    if (v <= 0xffff)
        return put_be(buf, 0xcd, v, 2);
    if (v <= 0xffffffffu)
        return put_be(buf, 0xce, v, 4);
    return put_be(buf, 0xcf, v, 8);
}

int
dfb_mpack_bool(dfb_buf_t *buf, int v)
{
    uint8_t b = v ? 0xc3 : 0xc2;
    return dfb_buf_put(buf, &b, 1);
}

int
dfb_mpack_nil(dfb_buf_t *buf)
{
    uint8_t b = 0xc0;
    return dfb_buf_put(buf, &b, 1);
}

int
dfb_mpack_int(dfb_buf_t *buf, int64_t v)
{
    if (v >= 0)
        return dfb_mpack_uint(buf, (uint64_t)v);
    if (v >= -32) {
        uint8_t b = (uint8_t)(int8_t)v;
        return dfb_buf_put(buf, &b, 1);
    }
    if (v >= INT8_MIN)
        return put_be(buf, 0xd0, (uint64_t)v & 0xff, 1);
    if (v >= INT16_MIN)
        return put_be(buf, 0xd1, (uint64_t)v & 0xffff, 2);
    if (v >= INT32_MIN)
        return put_be(buf, 0xd2, (uint64_t)v & 0xffffffffu, 4);
    return put_be(buf, 0xd3, (uint64_t)v, 8);
}

/* ---- reader --------------------------------------------------------------- */

static uint64_t
be(const uint8_t *p, int size)
{
    uint64_t v = 0;
    for (int i = 0; i < size; i++)
        v = (v << 8) | p[i];
    return v;
}

/*  Decodes the head of the next value: its type, the size of its head in
    bytes, and its count (str/bin/ext bytes, array elements, map pairs) or
    integer value. Returns 0, or -1 when truncated or reserved (0xc1). */
typedef struct {
    dfb_mp_type_t type;
    size_t head;
    uint64_t n;
} head_t;

static int
head(const dfb_mpack_reader_t *r, head_t *h)
{
    if (r->p >= r->end)
        return -1;
    size_t left = (size_t)(r->end - r->p);
    uint8_t t = r->p[0];
    const uint8_t *q = r->p + 1;
    h->head = 1;
    h->n = 0;
    int size = 0;
    if (t <= 0x7f) {
        h->type = DFB_MP_UINT;
        h->n = t;
        return 0;
    }
    if (t >= 0xe0) {
        h->type = DFB_MP_INT;
        return 0;
    }
    if ((t & 0xf0) == 0x80) {
        h->type = DFB_MP_MAP;
        h->n = t & 0x0f;
        return 0;
    }
    if ((t & 0xf0) == 0x90) {
        h->type = DFB_MP_ARRAY;
        h->n = t & 0x0f;
        return 0;
    }
    if ((t & 0xe0) == 0xa0) {
        h->type = DFB_MP_STR;
        h->n = t & 0x1f;
        return 0;
    }
    switch (t) {
    case 0xc0:
        h->type = DFB_MP_NIL;
        return 0;
    case 0xc2:
    case 0xc3:
        h->type = DFB_MP_BOOL;
        h->n = t == 0xc3;
        return 0;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        h->type = DFB_MP_BIN;
        size = 1 << (t - 0xc4);
        break;
    case 0xc7:
    case 0xc8:
    case 0xc9:
        h->type = DFB_MP_EXT;
        size = 1 << (t - 0xc7);
        if (left < (size_t)size + 2)
            return -1;
        h->n = be(q, size);
        h->head = 2 + (size_t)size; /* length, then the type byte */
        return 0;
    case 0xca:
    case 0xcb:
        h->type = DFB_MP_FLOAT;
        h->head = t == 0xca ? 5 : 9;
        return left < h->head ? -1 : 0;
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        size = 1 << (t - 0xcc);
        if (left < (size_t)size + 1)
            return -1;
        h->type = DFB_MP_UINT;
        h->n = be(q, size);
        h->head = 1 + (size_t)size;
        return 0;
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        size = 1 << (t - 0xd0);
        if (left < (size_t)size + 1)
            return -1;
        uint64_t v = be(q, size);
        int neg = (v >> (8 * size - 1)) & 1;
        h->type = neg ? DFB_MP_INT : DFB_MP_UINT;
        h->n = neg ? 0 : v;
        h->head = 1 + (size_t)size;
        return 0;
    }
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        h->type = DFB_MP_EXT;
        h->n = (uint64_t)1 << (t - 0xd4);
        h->head = 2;
        return left < 2 ? -1 : 0;
    case 0xd9:
    case 0xda:
    case 0xdb:
        h->type = DFB_MP_STR;
        size = 1 << (t - 0xd9);
        break;
    case 0xdc:
    case 0xdd:
        h->type = DFB_MP_ARRAY;
        size = t == 0xdc ? 2 : 4;
        break;
    case 0xde:
    case 0xdf:
        h->type = DFB_MP_MAP;
        size = t == 0xde ? 2 : 4;
        break;
    default:
        return -1; /* 0xc1 */
    }
    if (left < (size_t)size + 1)
        return -1;
    h->n = be(q, size);
    h->head = 1 + (size_t)size;
    return 0;
}

dfb_mp_type_t
dfb_mpack_peek(const dfb_mpack_reader_t *r)
{
    head_t h;
    return head(r, &h) == 0 ? h.type : DFB_MP_NONE;
}

/*  Bytes following the head that belong to the value (str/bin/ext). */
static int
payload_fits(const dfb_mpack_reader_t *r, const head_t *h)
{
    return (uint64_t)(r->end - r->p) - h->head >= h->n;
}

int
dfb_mpack_read_map(dfb_mpack_reader_t *r, uint32_t *n)
{
    head_t h;
    /* Each pair takes at least 2 bytes: a count beyond that is a lie. */
    if (head(r, &h) != 0 || h.type != DFB_MP_MAP ||
        h.n > (uint64_t)(r->end - r->p - (ptrdiff_t)h.head) / 2)
        return -1;
    r->p += h.head;
    *n = (uint32_t)h.n;
    return 0;
}

int
dfb_mpack_read_array(dfb_mpack_reader_t *r, uint32_t *n)
{
    head_t h;
    if (head(r, &h) != 0 || h.type != DFB_MP_ARRAY ||
        h.n > (uint64_t)(r->end - r->p - (ptrdiff_t)h.head))
        return -1;
    r->p += h.head;
    *n = (uint32_t)h.n;
    return 0;
}

int
dfb_mpack_read_str(dfb_mpack_reader_t *r, const char **s, size_t *len)
{
    head_t h;
    if (head(r, &h) != 0 || h.type != DFB_MP_STR || !payload_fits(r, &h))
        return -1;
    *s = (const char *)r->p + h.head;
    *len = (size_t)h.n;
    r->p += h.head + h.n;
    return 0;
}

int
dfb_mpack_read_uint(dfb_mpack_reader_t *r, uint64_t *v)
{
    head_t h;
    if (head(r, &h) != 0 || h.type != DFB_MP_UINT)
        return -1;
    *v = h.n;
    r->p += h.head;
    return 0;
}

int
dfb_mpack_skip(dfb_mpack_reader_t *r, int depth)
{
    head_t h;
    if (depth < 0 || head(r, &h) != 0)
        return -1;
    const uint8_t *save = r->p;
    switch (h.type) {
    case DFB_MP_STR:
    case DFB_MP_BIN:
    case DFB_MP_EXT:
        if (!payload_fits(r, &h))
            return -1;
        r->p += h.head + h.n;
        return 0;
    case DFB_MP_ARRAY:
    case DFB_MP_MAP: {
        uint64_t items = h.type == DFB_MP_MAP ? h.n * 2 : h.n;
        if (h.n > (uint64_t)(r->end - r->p))
            return -1;
        r->p += h.head;
        for (uint64_t i = 0; i < items; i++)
            if (dfb_mpack_skip(r, depth - 1) != 0) {
                r->p = save;
                return -1;
            }
        return 0;
    }
    default:
        r->p += h.head;
        return 0;
    }
}

int
dfb_mpack_read_int(dfb_mpack_reader_t *r, int64_t *v)
{
    if (r->p >= r->end)
        return -1;
    uint8_t t = r->p[0];
    size_t left = (size_t)(r->end - r->p);
    if (t <= 0x7f || t >= 0xe0) {
        *v = (int8_t)t;
        r->p++;
        return 0;
    }
    if (t >= 0xcc && t <= 0xcf) {
        uint64_t u;
        dfb_mpack_reader_t save = *r;
        if (dfb_mpack_read_uint(r, &u) != 0 || u > (uint64_t)INT64_MAX) {
            *r = save;
            return -1;
        }
        *v = (int64_t)u;
        return 0;
    }
    if (t >= 0xd0 && t <= 0xd3) {
        int size = 1 << (t - 0xd0);
        if (left < (size_t)size + 1)
            return -1;
        uint64_t u = be(r->p + 1, size);
        if (size < 8 && (u >> (8 * size - 1)) & 1)
            u |= ~(uint64_t)0 << (8 * size); /* sign-extend */
        *v = (int64_t)u;
        r->p += 1 + (size_t)size;
        return 0;
    }
    return -1;
}

int
dfb_mpack_read_bool(dfb_mpack_reader_t *r, int *v)
{
    if (r->p >= r->end || (r->p[0] != 0xc2 && r->p[0] != 0xc3))
        return -1;
    *v = r->p[0] == 0xc3;
    r->p++;
    return 0;
}

int
dfb_mpack_read_nil(dfb_mpack_reader_t *r)
{
    if (r->p >= r->end || r->p[0] != 0xc0)
        return -1;
    r->p++;
    return 0;
}

int
dfb_mpack_read_bin(dfb_mpack_reader_t *r, const uint8_t **b, size_t *len)
{
    head_t h;
    if (head(r, &h) != 0 || h.type != DFB_MP_BIN || !payload_fits(r, &h))
        return -1;
    *b = r->p + h.head;
    *len = (size_t)h.n;
    r->p += h.head + h.n;
    return 0;
}

int
dfb_mpack_read_float(dfb_mpack_reader_t *r, double *v)
{
    head_t h;
    if (head(r, &h) != 0 || h.type != DFB_MP_FLOAT)
        return -1;
    if (h.head == 5) {
        uint32_t u = (uint32_t)be(r->p + 1, 4);
        float f;
        memcpy(&f, &u, 4);
        *v = f;
    } else {
        uint64_t u = be(r->p + 1, 8);
        memcpy(v, &u, 8);
    }
    r->p += h.head;
    return 0;
}
