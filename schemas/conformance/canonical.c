/*  canonical: the canonical JSON of README.md written from libdfconsumer's
    values (canonical.h). Test support: an allocation failure marks the buffer
    (oom) instead of aborting, and the program that prints decides. */
#include "canonical.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  Room for len more bytes and the NUL; false (and oom) when there is none. */
static bool
reserve(canonical_buf_t *b, size_t len)
{
    if (b->oom)
        return false;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return false;
        }
        b->p = p;
        b->cap = cap;
    }
    return true;
}

void
canonical_put(canonical_buf_t *b, const void *data, size_t len)
{
    if (!reserve(b, len))
        return;
    memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = '\0';
}

void
canonical_puts(canonical_buf_t *b, const char *s)
{
    canonical_put(b, s, strlen(s));
}

void
canonical_printf(canonical_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0 || !reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

void
canonical_str(canonical_buf_t *b, const char *s, size_t len)
{
    canonical_put(b, "\"", 1);
    size_t run = 0; /* bytes copied as they are, written in one go */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        canonical_put(b, s + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            canonical_put(b, e, 2);
        } else {
            canonical_printf(b, "\\u%04x", c);
        }
    }
    canonical_put(b, s + run, len - run);
    canonical_put(b, "\"", 1);
}

static void
put_hex(canonical_buf_t *b, const unsigned char *p, size_t len)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        char two[2] = {hx[p[i] >> 4], hx[p[i] & 15]};
        canonical_put(b, two, 2);
    }
}

static bool
key_eq(const dfc_value_t *a, const dfc_value_t *b)
{
    size_t la, lb;
    const char *sa = dfc_value_str(a, &la), *sb = dfc_value_str(b, &lb);
    return sa && sb && la == lb && memcmp(sa, sb, la) == 0;
}

/*  A map by the duplicate-key rule: each key once, at its first position,
    with the value of its last occurrence. first[i] is the first pair with
    i's key, last[j] (for a first pair j) the last; an open-addressing table
    of the keys finds them in linear time (a map can have 65536 pairs). */
static void
put_map(canonical_buf_t *b, const dfc_value_t *v)
{
    size_t n = dfc_value_size(v), cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    size_t *slot = malloc(cap * sizeof *slot), *last = malloc((n ? n : 1) * sizeof *last);
    bool *is_first = malloc((n ? n : 1) * sizeof *is_first);
    if (!slot || !last || !is_first) {
        b->oom = true;
        goto out;
    }
    for (size_t s = 0; s < cap; s++)
        slot[s] = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *k = dfc_value_str(dfc_value_key_at(v, i), &len);
        size_t s = (size_t)dfc_fnv1a64(k ? k : "", k ? len : 0) & (cap - 1);
        while (slot[s] != SIZE_MAX && !key_eq(dfc_value_key_at(v, slot[s]), dfc_value_key_at(v, i)))
            s = (s + 1) & (cap - 1);
        is_first[i] = slot[s] == SIZE_MAX;
        if (is_first[i])
            slot[s] = i;
        last[slot[s]] = i;
    }
    canonical_put(b, "{", 1);
    bool comma = false;
    for (size_t i = 0; i < n; i++) {
        if (!is_first[i])
            continue;
        if (comma)
            canonical_put(b, ",", 1);
        comma = true;
        canonical_value(b, dfc_value_key_at(v, i));
        canonical_put(b, ":", 1);
        canonical_value(b, dfc_value_item_at(v, last[i]));
    }
    canonical_put(b, "}", 1);
out:
    free(slot);
    free(last);
    free(is_first);
}

void
canonical_value(canonical_buf_t *b, const dfc_value_t *v)
{
    size_t len = 0;
    switch (dfc_value_type(v)) {
    case DFC_NIL:
        canonical_puts(b, "null");
        break;
    case DFC_BOOL:
        canonical_puts(b, dfc_value_bool(v) ? "true" : "false");
        break;
    case DFC_INT: {
        int64_t i = 0;
        dfc_value_int64(v, &i);
        canonical_printf(b, "%" PRId64, i);
        break;
    }
    case DFC_UINT: {
        uint64_t u = 0;
        dfc_value_uint64(v, &u);
        canonical_printf(b, "%" PRIu64, u);
        break;
    }
    case DFC_DOUBLE: {
        double d = dfc_value_double(v);
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        canonical_printf(b, "\"f64:%016" PRIx64 "\"", bits);
        break;
    }
    case DFC_STR: {
        const char *s = dfc_value_str(v, &len);
        canonical_str(b, s, len);
        break;
    }
    case DFC_BIN: {
        const void *p = dfc_value_bin(v, &len, NULL);
        canonical_puts(b, "\"bin:");
        put_hex(b, p, len);
        canonical_put(b, "\"", 1);
        break;
    }
    case DFC_EXT: {
        int8_t t = 0;
        const void *p = dfc_value_bin(v, &len, &t);
        canonical_printf(b, "\"ext:%d:", t);
        put_hex(b, p, len);
        canonical_put(b, "\"", 1);
        break;
    }
    case DFC_ARRAY:
        canonical_put(b, "[", 1);
        for (size_t i = 0; i < dfc_value_size(v); i++) {
            if (i)
                canonical_put(b, ",", 1);
            canonical_value(b, dfc_value_at(v, i));
        }
        canonical_put(b, "]", 1);
        break;
    case DFC_MAP:
        put_map(b, v);
        break;
    }
}
