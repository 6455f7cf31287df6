/*  dfc_args: a small msgpack writer for the command channel's args maps
    (dfconsumer.h "Command channel"), with a JSON reader on top (dfsend's
    key:=json values, --json). Containers are written with a 5-byte header
    placeholder and shrunk to msgpack's smallest form when closed, so the
    bytes are those python msgpack writes for the same document. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dfc_internal.h"

#define ARGS_MAX_DEPTH 512
#define JSON_MAX_DEPTH 512

typedef struct {
    size_t at;  /* offset of the 5-byte header placeholder */
    uint32_t n; /* elements (pairs for a map) written */
    bool map;
} frame_t;

struct dfc_args {
    unsigned char *buf;
    size_t len, cap;
    frame_t stack[ARGS_MAX_DEPTH + 1]; /* [0] = the root map */
    size_t depth;                      /* open containers, root included */
    int err;
    bool finished; /* the root was closed for dfc_args_data */
};

dfc_args_t *
dfc_args_new(void)
{
    dfc_args_t *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->cap = 256;
    a->buf = malloc(a->cap);
    if (!a->buf) {
        free(a);
        return NULL;
    }
    memset(a->buf, 0, 5);
    a->len = 5;
    a->stack[0] = (frame_t){.at = 0, .n = 0, .map = true};
    a->depth = 1;
    return a;
}

void
dfc_args_destroy(dfc_args_t **a_p)
{
    if (!a_p || !*a_p)
        return;
    free((*a_p)->buf);
    free(*a_p);
    *a_p = NULL;
}

static int
fail(dfc_args_t *a, int rc)
{
    if (!a->err)
        a->err = rc;
    return rc;
}

static int
reserve(dfc_args_t *a, size_t n)
{
    if (a->cap - a->len >= n)
        return 0;
    size_t cap = a->cap;
    while (cap - a->len < n) {
        if (cap > SIZE_MAX / 2)
            return fail(a, DFC_ENOMEM);
        cap *= 2;
    }
    unsigned char *p = realloc(a->buf, cap);
    if (!p)
        return fail(a, DFC_ENOMEM);
    a->buf = p;
    a->cap = cap;
    return 0;
}

static int
put(dfc_args_t *a, const void *p, size_t n)
{
    if (reserve(a, n))
        return a->err;
    memcpy(a->buf + a->len, p, n);
    a->len += n;
    return 0;
}

static int
put_be(dfc_args_t *a, unsigned char tag, uint64_t v, int bytes)
{
    unsigned char b[9];
    b[0] = tag;
    for (int i = 0; i < bytes; i++)
        b[1 + i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
    return put(a, b, (size_t)bytes + 1);
}

/*  A header of msgpack's smallest form for a str/bin/array/map of n. */
static int
put_str_head(dfc_args_t *a, size_t n)
{
    if (n < 32)
        return put_be(a, (unsigned char)(0xa0 | n), 0, 0);
    if (n < 256)
        return put_be(a, 0xd9, n, 1);
    if (n < 65536)
        return put_be(a, 0xda, n, 2);
    if (n > UINT32_MAX)
        return fail(a, DFC_EINVAL);
    return put_be(a, 0xdb, n, 4);
}

static int
put_strn(dfc_args_t *a, const char *s, size_t n)
{
    if (put_str_head(a, n))
        return a->err;
    return put(a, s, n);
}

static int
put_uint(dfc_args_t *a, uint64_t v)
{
    if (v < 128)
        return put_be(a, (unsigned char)v, 0, 0);
    if (v < 256)
        return put_be(a, 0xcc, v, 1);
    if (v < 65536)
        return put_be(a, 0xcd, v, 2);
    if (v <= UINT32_MAX)
        return put_be(a, 0xce, v, 4);
    return put_be(a, 0xcf, v, 8);
}

static int
put_int(dfc_args_t *a, int64_t v)
{
    if (v >= 0)
        return put_uint(a, (uint64_t)v);
    if (v >= -32)
        return put_be(a, (unsigned char)(int8_t)v, 0, 0);
    if (v >= INT8_MIN)
        return put_be(a, 0xd0, (uint8_t)(int8_t)v, 1);
    if (v >= INT16_MIN)
        return put_be(a, 0xd1, (uint16_t)(int16_t)v, 2);
    if (v >= INT32_MIN)
        return put_be(a, 0xd2, (uint32_t)(int32_t)v, 4);
    return put_be(a, 0xd3, (uint64_t)v, 8);
}

static int
put_double(dfc_args_t *a, double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return put_be(a, 0xcb, u, 8);
}

/*  Checks the key against the innermost container and writes it (maps). */
static int
begin_value(dfc_args_t *a, const char *key, size_t klen)
{
    if (a->err)
        return a->err;
    if (a->finished || a->depth == 0)
        return fail(a, DFC_EINVAL);
    frame_t *f = &a->stack[a->depth - 1];
    if (f->map != (key != NULL) || f->n == UINT32_MAX)
        return fail(a, DFC_EINVAL);
    if (key && put_strn(a, key, klen))
        return a->err;
    f->n++;
    return 0;
}

int
dfc_args_strn(dfc_args_t *a, const char *key, const char *value, size_t len)
{
    if (!a || (!value && len))
        return DFC_EINVAL;
    if (begin_value(a, key, key ? strlen(key) : 0))
        return a->err;
    return put_strn(a, value ? value : "", len);
}

int
dfc_args_str(dfc_args_t *a, const char *key, const char *value)
{
    if (!a || !value)
        return a ? fail(a, DFC_EINVAL) : DFC_EINVAL;
    return dfc_args_strn(a, key, value, strlen(value));
}

int
dfc_args_int(dfc_args_t *a, const char *key, int64_t value)
{
    if (!a)
        return DFC_EINVAL;
    if (begin_value(a, key, key ? strlen(key) : 0))
        return a->err;
    return put_int(a, value);
}

int
dfc_args_bool(dfc_args_t *a, const char *key, bool value)
{
    if (!a)
        return DFC_EINVAL;
    if (begin_value(a, key, key ? strlen(key) : 0))
        return a->err;
    return put_be(a, value ? 0xc3 : 0xc2, 0, 0);
}

int
dfc_args_nil(dfc_args_t *a, const char *key)
{
    if (!a)
        return DFC_EINVAL;
    if (begin_value(a, key, key ? strlen(key) : 0))
        return a->err;
    return put_be(a, 0xc0, 0, 0);
}

int
dfc_args_bin(dfc_args_t *a, const char *key, const void *data, size_t len)
{
    if (!a || (!data && len))
        return DFC_EINVAL;
    if (begin_value(a, key, key ? strlen(key) : 0))
        return a->err;
    int rc = len < 256           ? put_be(a, 0xc4, len, 1)
             : len < 65536       ? put_be(a, 0xc5, len, 2)
             : len <= UINT32_MAX ? put_be(a, 0xc6, len, 4)
                                 : fail(a, DFC_EINVAL);
    if (rc)
        return rc;
    return put(a, data, len);
}

static int
open_container(dfc_args_t *a, const char *key, size_t klen, bool map)
{
    if (begin_value(a, key, klen))
        return a->err;
    if (a->depth > ARGS_MAX_DEPTH)
        return fail(a, DFC_EINVAL);
    static const unsigned char zero[5];
    a->stack[a->depth++] = (frame_t){.at = a->len, .n = 0, .map = map};
    return put(a, zero, 5);
}

int
dfc_args_map_begin(dfc_args_t *a, const char *key)
{
    return a ? open_container(a, key, key ? strlen(key) : 0, true) : DFC_EINVAL;
}

int
dfc_args_array_begin(dfc_args_t *a, const char *key)
{
    return a ? open_container(a, key, key ? strlen(key) : 0, false) : DFC_EINVAL;
}

/*  Writes the innermost container's real header over its placeholder,
    moving the body down when the header is shorter than 5 bytes. */
static void
close_container(dfc_args_t *a)
{
    frame_t *f = &a->stack[--a->depth];
    unsigned char h[5];
    size_t hl;
    uint32_t n = f->n;
    if (n < 16) {
        h[0] = (unsigned char)((f->map ? 0x80 : 0x90) | n);
        hl = 1;
    } else if (n < 65536) {
        h[0] = f->map ? 0xde : 0xdc;
        h[1] = (unsigned char)(n >> 8);
        h[2] = (unsigned char)n;
        hl = 3;
    } else {
        h[0] = f->map ? 0xdf : 0xdd;
        for (int i = 0; i < 4; i++)
            h[1 + i] = (unsigned char)(n >> (24 - 8 * i));
        hl = 5;
    }
    size_t body = f->at + 5;
    memmove(a->buf + f->at + hl, a->buf + body, a->len - body);
    memcpy(a->buf + f->at, h, hl);
    a->len -= 5 - hl;
}

int
dfc_args_end(dfc_args_t *a)
{
    if (!a)
        return DFC_EINVAL;
    if (a->err)
        return a->err;
    if (a->finished || a->depth < 2) /* the root is closed by dfc_args_data */
        return fail(a, DFC_EINVAL);
    close_container(a);
    return 0;
}

const void *
dfc_args_data(dfc_args_t *a, size_t *len)
{
    if (!a || a->err || (!a->finished && a->depth != 1))
        return NULL;
    if (!a->finished) {
        close_container(a);
        a->finished = true;
    }
    if (len)
        *len = a->len;
    return a->buf;
}

/* ------------------------------------------------------------ JSON reader */

typedef struct {
    const char *p, *end;
    dfc_args_t *a;
    int depth;
} json_t;

static void
skip_ws(json_t *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int
hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t
utf8_put(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/*  Reads a JSON string at j->p (the opening quote) into a malloc'ed buffer
    (*out, *len; the decoded form is never longer than the source). */
static int
json_string(json_t *j, char **out, size_t *len)
{
    const char *p = j->p + 1;
    char *o = malloc((size_t)(j->end - p) + 1), *w = o;
    if (!o)
        return DFC_ENOMEM;
    while (p < j->end && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20)
            goto bad;
        if (c != '\\') {
            *w++ = *p++;
            continue;
        }
        if (++p >= j->end)
            goto bad;
        switch (*p) {
        case '"':
            *w++ = '"';
            break;
        case '\\':
            *w++ = '\\';
            break;
        case '/':
            *w++ = '/';
            break;
        case 'b':
            *w++ = '\b';
            break;
        case 'f':
            *w++ = '\f';
            break;
        case 'n':
            *w++ = '\n';
            break;
        case 'r':
            *w++ = '\r';
            break;
        case 't':
            *w++ = '\t';
            break;
        case 'u': {
            unsigned cp, lo;
            if (j->end - p < 5 || hex4(p + 1, &cp))
                goto bad;
            p += 4;
            if (cp >= 0xd800 && cp < 0xdc00) {
                if (j->end - p < 7 || p[1] != '\\' || p[2] != 'u' || hex4(p + 3, &lo) ||
                    lo < 0xdc00 || lo > 0xdfff)
                    goto bad;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            } else if (cp >= 0xdc00 && cp < 0xe000) {
                goto bad;
            }
            w += utf8_put(w, cp);
            break;
        }
        default:
            goto bad;
        }
        p++;
    }
    if (p >= j->end)
        goto bad;
    j->p = p + 1;
    *out = o;
    *len = (size_t)(w - o);
    return 0;
bad:
    free(o);
    return DFC_EINVAL;
}

static int json_value(json_t *j, const char *key, size_t klen);

static int
json_number(json_t *j, const char *key, size_t klen)
{
    const char *s = j->p;
    bool neg = false, frac = false;
    if (s < j->end && *s == '-')
        neg = true, s++;
    if (s >= j->end || *s < '0' || *s > '9' ||
        (*s == '0' && s + 1 < j->end && s[1] >= '0' && s[1] <= '9'))
        return DFC_EINVAL;
    const char *q = s;
    while (q < j->end && *q >= '0' && *q <= '9')
        q++;
    const char *intend = q;
    if (q < j->end && *q == '.') {
        frac = true;
        if (++q >= j->end || *q < '0' || *q > '9')
            return DFC_EINVAL;
        while (q < j->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < j->end && (*q == 'e' || *q == 'E')) {
        frac = true;
        q++;
        if (q < j->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= j->end || *q < '0' || *q > '9')
            return DFC_EINVAL;
        while (q < j->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (!frac) {
        uint64_t v = 0;
        bool over = false;
        for (const char *d = s; d < intend; d++) {
            unsigned dig = (unsigned)(*d - '0');
            if (v > (UINT64_MAX - dig) / 10)
                over = true;
            else
                v = v * 10 + dig;
        }
        if (!over && (!neg || v <= (uint64_t)INT64_MAX + 1)) {
            j->p = q;
            if (begin_value(j->a, key, klen))
                return j->a->err;
            if (!neg)
                return put_uint(j->a, v);
            return put_int(j->a, v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v);
        }
    }
    /* a fraction, an exponent or an integer beyond 64 bits: float64 */
    char tmp[128];
    size_t n = (size_t)(q - j->p);
    if (n >= sizeof tmp)
        return DFC_EINVAL;
    memcpy(tmp, j->p, n);
    tmp[n] = '\0';
    double d = strtod(tmp, NULL);
    j->p = q;
    if (begin_value(j->a, key, klen))
        return j->a->err;
    return put_double(j->a, d);
}

static bool
lit(json_t *j, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
        return false;
    j->p += n;
    return true;
}

static int
json_container(json_t *j, const char *key, size_t klen, bool map)
{
    if (++j->depth > JSON_MAX_DEPTH)
        return DFC_EINVAL;
    int rc = open_container(j->a, key, klen, map);
    if (rc)
        return rc;
    j->p++;
    skip_ws(j);
    if (j->p < j->end && *j->p == (map ? '}' : ']')) {
        j->p++;
        close_container(j->a);
        j->depth--;
        return 0;
    }
    for (;;) {
        skip_ws(j);
        if (map) {
            char *k;
            size_t kl;
            if (j->p >= j->end || *j->p != '"')
                return DFC_EINVAL;
            if ((rc = json_string(j, &k, &kl)))
                return rc;
            skip_ws(j);
            if (j->p >= j->end || *j->p != ':') {
                free(k);
                return DFC_EINVAL;
            }
            j->p++;
            /* begin_value takes a NUL-free key only through its length */
            rc = json_value(j, k, kl);
            free(k);
        } else {
            rc = json_value(j, NULL, 0);
        }
        if (rc)
            return rc;
        skip_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == (map ? '}' : ']')) {
            j->p++;
            close_container(j->a);
            j->depth--;
            return 0;
        }
        return DFC_EINVAL;
    }
}

static int
json_value(json_t *j, const char *key, size_t klen)
{
    skip_ws(j);
    if (j->p >= j->end)
        return DFC_EINVAL;
    switch (*j->p) {
    case '{':
        return json_container(j, key, klen, true);
    case '[':
        return json_container(j, key, klen, false);
    case '"': {
        char *s;
        size_t n;
        int rc = json_string(j, &s, &n);
        if (rc)
            return rc;
        rc = begin_value(j->a, key, klen);
        if (!rc)
            rc = put_strn(j->a, s, n);
        free(s);
        return rc;
    }
    case 't':
        if (!lit(j, "true"))
            return DFC_EINVAL;
        return begin_value(j->a, key, klen) ? j->a->err : put_be(j->a, 0xc3, 0, 0);
    case 'f':
        if (!lit(j, "false"))
            return DFC_EINVAL;
        return begin_value(j->a, key, klen) ? j->a->err : put_be(j->a, 0xc2, 0, 0);
    case 'n':
        if (!lit(j, "null"))
            return DFC_EINVAL;
        return begin_value(j->a, key, klen) ? j->a->err : put_be(j->a, 0xc0, 0, 0);
    default:
        return json_number(j, key, klen);
    }
}

int
dfc_args_json(dfc_args_t *a, const char *key, const char *json)
{
    if (!a || !json)
        return a ? fail(a, DFC_EINVAL) : DFC_EINVAL;
    if (a->err)
        return a->err;
    json_t j = {.p = json, .end = json + strlen(json), .a = a, .depth = 0};
    int rc = json_value(&j, key, key ? strlen(key) : 0);
    if (!rc) {
        skip_ws(&j);
        if (j.p != j.end)
            rc = DFC_EINVAL;
    }
    return rc ? fail(a, rc) : 0;
}
