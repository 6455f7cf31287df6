/*  dfb_json: JSON text -> flat token tape, using yajl's callback parser.
    Each value is one token in document order; siblings are linked so that
    navigation skips subtrees in O(1) and the transcoder walks the tape once.
    Everything (tokens, strings, yajl's own memory) is reused across parses. */
#define _GNU_SOURCE /* memrchr */
#include "dfb_json.h"
#include "dfb_json_tape.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>


/*  An open container while parsing: its token and its last child so far. */
typedef struct {
    uint32_t tok;
    uint32_t last;
} dfb_frame_t;

/*  Bump allocator handed to yajl, so that a parse after warm-up does not
    touch malloc. Each block is preceded by its size. When a parse needed
    more than one chunk, reset() merges them into one big enough for it. */
typedef struct dfb_chunk {
    struct dfb_chunk *prev;
    size_t cap;
    size_t used;
    size_t last; /* offset of the last block's header, for in-place realloc */
    max_align_t data[];
} dfb_chunk_t;

#define ARENA_ALIGN 16
#define ARENA_HDR 16
#define ARENA_FIRST (16 * 1024)

struct dfb_json {
    dfb_tok_t *toks;
    uint32_t ntoks;
    uint32_t toks_cap;
    char *strs; /* string arena: each string followed by a NUL */
    size_t strs_len;
    size_t strs_cap;
    char *num; /* scratch for strtod (yajl's number text is not terminated) */
    size_t num_cap;
    dfb_frame_t stack[DFB_JSON_MAX_DEPTH];
    uint32_t depth;
    dfb_chunk_t *chunk;   /* yajl's arena, newest chunk first */
    const char *cb_error; /* set by a callback that stops the parse */
    size_t cb_offset;
    const char *text; /* the input during a parse */
    unsigned options; /* DFB_JSON_REPLACE_INVALID */
    uint32_t replacements;
    char *scratch; /* lenient decoding of a string's raw text */
    size_t scratch_cap;
    yajl_handle hand;
    char error[160];
};

/* ---------------------------------------------------------------- arena */

static void *
arena_malloc(void *ctx, size_t size)
{
    dfb_json_t *self = ctx;
    size_t need = ARENA_HDR + ((size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1));
    if (need < size)
        return NULL;
    dfb_chunk_t *c = self->chunk;
    if (!c || c->cap - c->used < need) {
        size_t cap = c ? c->cap * 2 : ARENA_FIRST;
        while (cap < need)
            cap *= 2;
        dfb_chunk_t *n = malloc(sizeof(dfb_chunk_t) + cap);
        if (!n)
            return NULL;
        n->prev = c;
        n->cap = cap;
        n->used = 0;
        n->last = SIZE_MAX;
        self->chunk = c = n;
    }
    unsigned char *base = (unsigned char *)c->data;
    unsigned char *hdr = base + c->used;
    memcpy(hdr, &size, sizeof size);
    c->last = c->used;
    c->used += need;
    return hdr + ARENA_HDR;
}

static void *
arena_realloc(void *ctx, void *ptr, size_t size)
{
    dfb_json_t *self = ctx;
    if (!ptr)
        return arena_malloc(ctx, size);
    unsigned char *p = ptr;
    size_t old;
    memcpy(&old, p - ARENA_HDR, sizeof old);
    if (size <= old)
        return ptr;
    dfb_chunk_t *c = self->chunk;
    unsigned char *base = (unsigned char *)c->data;
    if (c->last != SIZE_MAX && p - ARENA_HDR == base + c->last) {
        /* The newest block grows in place when the chunk has room. */
        size_t need = ARENA_HDR + ((size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1));
        if (need >= size && c->cap - c->last >= need) {
            memcpy(p - ARENA_HDR, &size, sizeof size);
            c->used = c->last + need;
            return ptr;
        }
    }
    void *n = arena_malloc(ctx, size);
    if (n)
        memcpy(n, ptr, old);
    return n;
}

static void
arena_free(void *ctx, void *ptr)
{
    /* Memory comes back all at once in arena_reset(). */
    (void)ctx;
    (void)ptr;
}

/*  Empties the arena; if the last parse spilled into several chunks,
    replaces them with one chunk as large as all of them together. */
static void
arena_reset(dfb_json_t *self)
{
    dfb_chunk_t *c = self->chunk;
    if (!c)
        return;
    if (c->prev) {
        size_t total = 0;
        while (c) {
            dfb_chunk_t *prev = c->prev;
            total += c->cap;
            free(c);
            c = prev;
        }
        self->chunk = NULL;
        c = malloc(sizeof(dfb_chunk_t) + total);
        if (!c)
            return; /* the next parse allocates again */
        c->prev = NULL;
        c->cap = total;
        self->chunk = c;
    }
    c->used = 0;
    c->last = SIZE_MAX;
}

static void
arena_destroy(dfb_json_t *self)
{
    dfb_chunk_t *c = self->chunk;
    while (c) {
        dfb_chunk_t *prev = c->prev;
        free(c);
        c = prev;
    }
    self->chunk = NULL;
}

/* ---------------------------------------------------------------- tape */

static int
fail_at(dfb_json_t *self, size_t offset, const char *reason)
{
    self->cb_error = reason;
    self->cb_offset = offset;
    return 0; /* tells yajl to stop */
}

static int
fail(dfb_json_t *self, const char *reason)
{
    return fail_at(self, yajl_get_bytes_consumed(self->hand), reason);
}

/*  Doubles the token array. 0, or -1 after recording an error. */
static __attribute__((noinline)) int
toks_grow(dfb_json_t *self)
{
    if (self->toks_cap >= UINT32_MAX / 2) {
        fail(self, "too many values");
        return -1;
    }
    uint32_t cap = self->toks_cap ? self->toks_cap * 2 : 256;
    dfb_tok_t *n = realloc(self->toks, (size_t)cap * sizeof *n);
    if (!n) {
        fail(self, "out of memory");
        return -1;
    }
    self->toks = n;
    self->toks_cap = cap;
    return 0;
}

/*  Appends a token and links it into the open container. Returns its index,
    or UINT32_MAX after recording an error. Inline: it runs once per value. */
static inline uint32_t
tok_push(dfb_json_t *self, dfb_json_type_t type, bool is_key)
{
    if (self->ntoks == self->toks_cap && toks_grow(self) != 0)
        return UINT32_MAX;
    uint32_t idx = self->ntoks++;
    dfb_tok_t *t = &self->toks[idx];
    t->type = type;
    t->count = 0;
    t->next = DFB_JSON_NONE;
    if (self->depth > 0) {
        dfb_frame_t *f = &self->stack[self->depth - 1];
        dfb_tok_t *parent = &self->toks[f->tok];
        /* Objects count pairs, i.e. keys; arrays count elements. */
        if (is_key || parent->type == DFB_JSON_ARRAY)
            parent->count++;
        if (f->last != DFB_JSON_NONE)
            self->toks[f->last].next = idx;
        f->last = idx;
    }
    return idx;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*  Code unit of "\uXXXX" at p (p points at the backslash), or -1. */
static long
escape_unit(const char *p, const char *end)
{
    if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
        return -1;
    long v = 0;
    for (int k = 2; k < 6; k++) {
        int h = hexval(p[k]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/*  yajl turns a lone high surrogate escape into "?" and pairs a high
    surrogate with whatever \u follows it, silently corrupting the text.
    We reject both (and lone low surrogates): the wire carries UTF-8 only.
    `raw` starts at the string's opening quote (string_start), so walking
    escapes pairwise from there is exact. Returns the offset of the
    offending escape in raw, or SIZE_MAX. */
static size_t
find_bad_surrogate(const char *raw, size_t len)
{
    const char *end = raw + len;
    const char *p = raw;
    while (p < end && (p = memchr(p, '\\', (size_t)(end - p))) != NULL) {
        long u = escape_unit(p, end);
        if (u < 0xD800 || u > 0xDFFF) {
            p += 2; /* any escape is at least 2 bytes */
            continue;
        }
        if (u >= 0xDC00)
            return (size_t)(p - raw);
        long lo = escape_unit(p + 6, end);
        if (lo < 0xDC00 || lo > 0xDFFF)
            return (size_t)(p - raw);
        p += 12;
    }
    return SIZE_MAX;
}

/*  Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing above
    U+10FFFF. yajl only checks the byte pattern, which lets all three through;
    msgpack readers with strict decoding would then reject the message. */
static bool
utf8_valid(const unsigned char *s, size_t len, bool *four)
{
    size_t i = 0;
    while (i < len) {
        /* ASCII fast path, 8 bytes at a time. */
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull)
                break;
            i += 8;
        }
        if (i >= len)
            break;
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            n = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            *four = true;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else
            return false;
        if (len - i - 1 < n)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        i += n + 1;
    }
    return true;
}

static size_t
put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/*  Copies s to out replacing each maximal invalid subpart with U+FFFD, as
    Unicode recommends (and Python's errors="replace" and WHATWG do). out
    must have room for 3 * len bytes. Returns the bytes written. */
static size_t
utf8_replace(const unsigned char *s, size_t len, char *out, uint32_t *count)
{
    size_t i = 0, o = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            out[o++] = (char)c;
            i++;
            continue;
        }
        size_t n = 0, k = 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            n = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            lo = c == 0xE0 ? 0xA0 : 0x80;
            hi = c == 0xED ? 0x9F : 0xBF;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF;
        }
        if (n && i + 1 < len && s[i + 1] >= lo && s[i + 1] <= hi) {
            k = 1;
            while (k < n && i + 1 + k < len && (s[i + 1 + k] & 0xC0) == 0x80)
                k++;
        }
        if (n && k == n) {
            memcpy(out + o, s + i, n + 1);
            o += n + 1;
        } else {
            o += put_utf8(out + o, 0xFFFD);
            (*count)++;
        }
        i += 1 + k;
    }
    return o;
}

/*  Decodes the string literal raw (from its opening quote to just past
    the closing quote) with unpaired surrogate
    escapes replaced by U+FFFD. yajl has already checked the escape syntax.
    out needs len bytes. Returns the bytes written, or SIZE_MAX. */
static size_t
unescape_lenient(const char *raw, size_t len, char *out, uint32_t *count)
{
    const char *p = memchr(raw, '"', len);
    const char *end = raw + len - 1; /* the closing quote */
    if (!p || len < 2 || *end != '"' || p >= end)
        return SIZE_MAX;
    size_t o = 0;
    for (p++; p < end;) {
        if (*p != '\\') {
            out[o++] = *p++;
            continue;
        }
        if (end - p < 2)
            return SIZE_MAX;
        char e = p[1];
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *f = e ? strchr(from, e) : NULL;
        if (f) {
            out[o++] = to[f - from];
            p += 2;
            continue;
        }
        long u = escape_unit(p, end);
        if (u < 0)
            return SIZE_MAX;
        uint32_t cp = (uint32_t)u;
        p += 6;
        if (u >= 0xD800 && u <= 0xDBFF) {
            long low = escape_unit(p, end);
            if (low >= 0xDC00 && low <= 0xDFFF) {
                cp = 0x10000 + (((uint32_t)u - 0xD800) << 10) + ((uint32_t)low - 0xDC00);
                p += 6;
            } else {
                cp = 0xFFFD;
                (*count)++;
            }
        } else if (u >= 0xDC00 && u <= 0xDFFF) {
            cp = 0xFFFD;
            (*count)++;
        }
        o += put_utf8(out + o, cp);
    }
    return o;
}

static __attribute__((noinline)) int
strs_grow(dfb_json_t *self, size_t need)
{
    if (need >= UINT32_MAX || self->strs_len + need > UINT32_MAX)
        return fail(self, "strings too large");
    if (self->strs_len + need > self->strs_cap) {
        size_t cap = self->strs_cap ? self->strs_cap : 4096;
        while (cap < self->strs_len + need)
            cap *= 2;
        char *n = realloc(self->strs, cap);
        if (!n)
            return fail(self, "out of memory");
        self->strs = n;
        self->strs_cap = cap;
    }
    return 1;
}

/*  Room for need more bytes of strings: 1, or 0 after recording an error.
    Offsets are 32-bit, so the arena stays below 4 GiB (strs_grow checks;
    a cap that large is never reached without passing through it). */
static inline int
strs_reserve(dfb_json_t *self, size_t need)
{
    if (need < self->strs_cap - self->strs_len && self->strs_cap <= UINT32_MAX)
        return 1;
    return strs_grow(self, need);
}

/*  Offset of the opening quote of the string literal that ends just
    before offset end (yajl calls back right after the closing quote), or
    SIZE_MAX. Walking back, the first quote not escaped (preceded by an even
    run of backslashes) opens the literal: inside it every quote is escaped,
    and the byte before the opening quote is never a backslash. Only strings
    that may hide a surrogate escape come here, so no token pays for it. */
static size_t
string_start(const char *text, size_t end)
{
    if (end < 2 || text[end - 1] != '"')
        return SIZE_MAX;
    const char *p = text + end - 1;
    while ((p = memrchr(text, '"', (size_t)(p - text))) != NULL) {
        size_t q = (size_t)(p - text);
        size_t b = q;
        while (b > 0 && text[b - 1] == '\\')
            b--;
        if ((q - b) % 2 == 0)
            return q;
    }
    return SIZE_MAX;
}

/*  Copies s to dst while it is plain: ASCII and no '?' (a '?' may be yajl's
    stand-in for a lone surrogate escape). Returns how many bytes it
    copied: len when the whole string is plain, which is what nearly every
    key and value of an event is; then it needs no other pass. */
static size_t
copy_plain(char *dst, const unsigned char *s, size_t len)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    const uint64_t qmarks = 0x3F3F3F3F3F3F3F3Full; /* '?' in every byte */
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        uint64_t q = w ^ qmarks; /* a zero byte where w has '?' */
        if ((w & highs) || ((q - ones) & ~q & highs))
            return i;
        memcpy(dst + i, &w, 8);
    }
    if (i < len && len >= 8) {
        /* The tail as one word that overlaps what was checked already. */
        uint64_t w;
        memcpy(&w, s + len - 8, 8);
        uint64_t q = w ^ qmarks;
        if ((w & highs) || ((q - ones) & ~q & highs))
            return i;
        memcpy(dst + len - 8, &w, 8);
        return len;
    }
    for (; i < len; i++) {
        if (s[i] >= 0x80 || s[i] == '?')
            return i;
        dst[i] = (char)s[i];
    }
    return len;
}

static int
add_string(dfb_json_t *self, const unsigned char *s, size_t len, bool is_key)
{
    /* Fast path: copy and check in one pass. */
    if (!strs_reserve(self, len + 1))
        return 0;
    if (copy_plain(self->strs + self->strs_len, s, len) == len) {
        uint32_t idx = tok_push(self, DFB_JSON_STRING, is_key);
        if (idx == UINT32_MAX)
            return 0;
        self->strs[self->strs_len + len] = '\0';
        dfb_tok_t *t = &self->toks[idx];
        t->v.s.off = (uint32_t)self->strs_len;
        t->v.s.len = (uint32_t)len;
        self->strs_len += len + 1;
        return 1;
    }
    bool lenient = self->options & DFB_JSON_REPLACE_INVALID;
    bool four = false;
    bool valid = utf8_valid(s, len, &four);
    /* Surrogate escapes can only hide behind a "?" (yajl's lone high), a
       4-byte sequence (a pair, maybe a wrong one) or invalid UTF-8 (a lone
       low): only then look at the raw text of this string. */
    if (!valid || four || memchr(s, '?', len)) {
        size_t now = yajl_get_bytes_consumed(self->hand);
        size_t start = self->text ? string_start(self->text, now) : SIZE_MAX;
        if (start != SIZE_MAX) {
            const char *raw = self->text + start;
            size_t raw_len = now - start;
            size_t bad = find_bad_surrogate(raw, raw_len);
            if (bad != SIZE_MAX && !lenient)
                return fail_at(self, start + bad, "unpaired UTF-16 surrogate escape");
            if (bad != SIZE_MAX) {
                /* Decode the raw text ourselves; the result is never
                   longer than the raw text. */
                if (raw_len > self->scratch_cap) {
                    char *n = realloc(self->scratch, raw_len);
                    if (!n)
                        return fail(self, "out of memory");
                    self->scratch = n;
                    self->scratch_cap = raw_len;
                }
                len = unescape_lenient(raw, raw_len, self->scratch, &self->replacements);
                if (len == SIZE_MAX)
                    return fail_at(self, start + bad, "unpaired UTF-16 surrogate escape");
                s = (const unsigned char *)self->scratch;
                valid = utf8_valid(s, len, &four);
            }
        }
    }
    if (!valid && !lenient)
        return fail(self, "invalid UTF-8 in string");
    /* Invalid sequences grow at most 3x when replaced. */
    if (!strs_reserve(self, (valid ? len : 3 * len) + 1))
        return 0;
    uint32_t idx = tok_push(self, DFB_JSON_STRING, is_key);
    if (idx == UINT32_MAX)
        return 0;
    char *dst = self->strs + self->strs_len;
    if (!valid)
        len = utf8_replace(s, len, dst, &self->replacements);
    else if (len)
        memcpy(dst, s, len);
    dst[len] = '\0';
    dfb_tok_t *t = &self->toks[idx];
    t->v.s.off = (uint32_t)self->strs_len;
    t->v.s.len = (uint32_t)len;
    self->strs_len += len + 1;
    return 1;
}

static int
on_null(void *ctx)
{
    return tok_push(ctx, DFB_JSON_NULL, false) != UINT32_MAX;
}

static int
on_boolean(void *ctx, int value)
{
    return tok_push(ctx, value ? DFB_JSON_TRUE : DFB_JSON_FALSE, false) != UINT32_MAX;
}

/*  yajl hands over the number's text; we classify it ourselves so that
    integers are exact over the whole int64 and uint64 ranges. */
static int
on_number(void *ctx, const char *text, size_t len)
{
    dfb_json_t *self = ctx;
    size_t i = 0;
    bool neg = len > 0 && text[0] == '-';
    if (neg)
        i = 1;
    bool integer = i < len;
    uint64_t mag = 0;
    bool overflow = false;
    /* Up to 19 digits cannot overflow 64 bits: no check per digit. */
    size_t k = i;
    for (size_t fast = len - i <= 19 ? len : i; k < fast; k++) {
        unsigned char c = (unsigned char)text[k];
        if (c < '0' || c > '9') {
            integer = false;
            break;
        }
        mag = mag * 10 + (c - '0');
    }
    for (; k < len && integer; k++) {
        unsigned char c = (unsigned char)text[k];
        if (c < '0' || c > '9') {
            integer = false;
            break;
        }
        unsigned d = c - '0';
        if (mag > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            mag = mag * 10 + d;
    }
    if (integer && !overflow) {
        if (!neg && mag <= (uint64_t)INT64_MAX) {
            uint32_t idx = tok_push(self, DFB_JSON_INT, false);
            if (idx == UINT32_MAX)
                return 0;
            self->toks[idx].v.i = (int64_t)mag;
            return 1;
        }
        if (!neg) {
            uint32_t idx = tok_push(self, DFB_JSON_UINT, false);
            if (idx == UINT32_MAX)
                return 0;
            self->toks[idx].v.u = mag;
            return 1;
        }
        if (mag <= (uint64_t)INT64_MAX + 1) {
            uint32_t idx = tok_push(self, DFB_JSON_INT, false);
            if (idx == UINT32_MAX)
                return 0;
            /* -(2^63) does not fit as a positive int64: negate in uint64. */
            self->toks[idx].v.i = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
            return 1;
        }
    }
    /* Fraction, exponent, or an integer beyond 64 bits: a double, correctly
       rounded by strtod (overflow gives +-inf, like Python's float()). */
    if (len + 1 > self->num_cap) {
        size_t cap = len + 1 < 64 ? 64 : len + 1;
        char *n = realloc(self->num, cap);
        if (!n)
            return fail(self, "out of memory");
        self->num = n;
        self->num_cap = cap;
    }
    memcpy(self->num, text, len);
    self->num[len] = '\0';
    double d = strtod(self->num, NULL);
    uint32_t idx = tok_push(self, DFB_JSON_DOUBLE, false);
    if (idx == UINT32_MAX)
        return 0;
    self->toks[idx].v.d = d;
    return 1;
}

static int
on_string(void *ctx, const unsigned char *s, size_t len)
{
    return add_string(ctx, s, len, false);
}

static int
on_key(void *ctx, const unsigned char *s, size_t len)
{
    return add_string(ctx, s, len, true);
}

static int
open_container(dfb_json_t *self, dfb_json_type_t type)
{
    if (self->depth >= DFB_JSON_MAX_DEPTH)
        return fail(self, "nesting deeper than 512");
    uint32_t idx = tok_push(self, type, false);
    if (idx == UINT32_MAX)
        return 0;
    self->stack[self->depth].tok = idx;
    self->stack[self->depth].last = DFB_JSON_NONE;
    self->depth++;
    return 1;
}

static int
on_start_map(void *ctx)
{
    return open_container(ctx, DFB_JSON_OBJECT);
}

static int
on_start_array(void *ctx)
{
    return open_container(ctx, DFB_JSON_ARRAY);
}

static int
on_end(void *ctx)
{
    dfb_json_t *self = ctx;
    self->depth--; /* yajl guarantees balance */
    return 1;
}

static const yajl_callbacks s_callbacks = {on_null,   on_boolean,     NULL,         NULL,
                                           on_number, on_string,      on_start_map, on_key,
                                           on_end,    on_start_array, on_end};

/* ---------------------------------------------------------------- API */

dfb_json_t *
dfb_json_new(void)
{
    dfb_json_t *self = calloc(1, sizeof *self);
    return self;
}

void
dfb_json_destroy(dfb_json_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_json_t *self = *self_p;
    free(self->toks);
    free(self->strs);
    free(self->num);
    free(self->scratch);
    arena_destroy(self);
    free(self);
    *self_p = NULL;
}

void
dfb_json_wipe(dfb_json_t *self)
{
    /* secrets: plain memset, then a compiler barrier so it is not elided */
    if (self->strs)
        memset(self->strs, 0, self->strs_cap);
    if (self->scratch)
        memset(self->scratch, 0, self->scratch_cap);
    if (self->num)
        memset(self->num, 0, self->num_cap);
    for (dfb_chunk_t *c = self->chunk; c; c = c->prev)
        memset(c->data, 0, c->cap);
    __asm__ __volatile__("" : : "r"(self) : "memory");
    self->ntoks = 0;
    self->strs_len = 0;
}

static int
set_error(dfb_json_t *self, size_t offset, const char *reason)
{
    snprintf(self->error, sizeof self->error, "JSON error at byte %zu: %s", offset, reason);
    self->ntoks = 0;
    self->strs_len = 0;
    return -1;
}

int
dfb_json_parse(dfb_json_t *self, const char *text, size_t len)
{
    self->ntoks = 0;
    self->strs_len = 0;
    self->depth = 0;
    self->cb_error = NULL;
    self->cb_offset = 0;
    self->error[0] = '\0';
    if (!text && len)
        return set_error(self, 0, "no input");

    self->text = text;
    self->replacements = 0;

    arena_reset(self);
    yajl_alloc_funcs afs = {arena_malloc, arena_realloc, arena_free, self};
    self->hand = yajl_alloc(&s_callbacks, &afs, self);
    if (!self->hand)
        return set_error(self, 0, "out of memory");
    /* Defaults already validate UTF-8, refuse comments, trailing garbage,
       multiple and partial values; set them anyway so they stay so. */
    yajl_config(self->hand, yajl_allow_comments, 0);
    /* Lenient mode lets invalid UTF-8 through yajl and replaces it. */
    yajl_config(self->hand, yajl_dont_validate_strings,
                (self->options & DFB_JSON_REPLACE_INVALID) ? 1 : 0);
    yajl_config(self->hand, yajl_allow_trailing_garbage, 0);
    yajl_config(self->hand, yajl_allow_multiple_values, 0);
    yajl_config(self->hand, yajl_allow_partial_values, 0);

    yajl_status st = yajl_parse(self->hand, (const unsigned char *)(text ? text : ""), len);
    /* yajl counts the bytes of the current chunk; in yajl_complete_parse
       that is a one-space pad, so errors found there are at the end. */
    bool at_end = false;
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(self->hand);
        at_end = true;
    }
    int rc = 0;
    if (st != yajl_status_ok) {
        if (self->cb_error)
            rc = set_error(self, at_end ? len : self->cb_offset, self->cb_error);
        else {
            /* Non-verbose yajl messages never quote the input. */
            size_t off = yajl_get_bytes_consumed(self->hand);
            unsigned char *msg = yajl_get_error(self->hand, 0, NULL, 0);
            char reason[96] = "syntax error";
            if (msg) {
                const char *m = (const char *)msg;
                snprintf(reason, sizeof reason, "%s", m);
                reason[strcspn(reason, "\n")] = '\0';
                yajl_free_error(self->hand, msg);
            }
            if (at_end || off > len)
                off = len;
            rc = set_error(self, off, reason);
        }
    } else if (self->ntoks == 0) {
        rc = set_error(self, len, "no value");
    }
    yajl_free(self->hand);
    self->hand = NULL;
    self->text = NULL;
    return rc;
}

const char *
dfb_json_error(const dfb_json_t *self)
{
    return self->error;
}

void
dfb_json_set_options(dfb_json_t *self, unsigned options)
{
    self->options = options;
}

uint32_t
dfb_json_replacements(const dfb_json_t *self)
{
    return self->replacements;
}

void
dfb_json_tape(const dfb_json_t *self, dfb_json_tape_t *tape)
{
    tape->toks = self->toks;
    tape->ntoks = self->ntoks;
    tape->strs = self->strs;
}

uint32_t
dfb_json_size(const dfb_json_t *self)
{
    return self->ntoks;
}

static const dfb_tok_t *
tok_at(const dfb_json_t *self, dfb_json_ref_t ref)
{
    return ref < self->ntoks ? &self->toks[ref] : NULL;
}

dfb_json_type_t
dfb_json_type(const dfb_json_t *self, dfb_json_ref_t ref)
{
    const dfb_tok_t *t = tok_at(self, ref);
    return t ? (dfb_json_type_t)t->type : DFB_JSON_NULL;
}

uint32_t
dfb_json_count(const dfb_json_t *self, dfb_json_ref_t ref)
{
    const dfb_tok_t *t = tok_at(self, ref);
    return t && (t->type == DFB_JSON_ARRAY || t->type == DFB_JSON_OBJECT) ? t->count : 0;
}

dfb_json_ref_t
dfb_json_first(const dfb_json_t *self, dfb_json_ref_t ref)
{
    return dfb_json_count(self, ref) ? ref + 1 : DFB_JSON_NONE;
}

dfb_json_ref_t
dfb_json_next(const dfb_json_t *self, dfb_json_ref_t ref)
{
    const dfb_tok_t *t = tok_at(self, ref);
    return t ? t->next : DFB_JSON_NONE;
}

dfb_json_ref_t
dfb_json_get(const dfb_json_t *self, dfb_json_ref_t ref, const char *key)
{
    const dfb_tok_t *t = tok_at(self, ref);
    if (!t || t->type != DFB_JSON_OBJECT || !key)
        return DFB_JSON_NONE;
    size_t klen = strlen(key);
    dfb_json_ref_t k = t->count ? ref + 1 : DFB_JSON_NONE;
    while (k != DFB_JSON_NONE) {
        const dfb_tok_t *kt = &self->toks[k];
        dfb_json_ref_t v = kt->next;
        if (kt->v.s.len == klen && memcmp(self->strs + kt->v.s.off, key, klen) == 0)
            return v;
        k = self->toks[v].next;
    }
    return DFB_JSON_NONE;
}

const char *
dfb_json_string(const dfb_json_t *self, dfb_json_ref_t ref, size_t *len)
{
    const dfb_tok_t *t = tok_at(self, ref);
    if (!t || t->type != DFB_JSON_STRING) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = t->v.s.len;
    return self->strs + t->v.s.off;
}

int64_t
dfb_json_int(const dfb_json_t *self, dfb_json_ref_t ref)
{
    const dfb_tok_t *t = tok_at(self, ref);
    return t && t->type == DFB_JSON_INT ? t->v.i : 0;
}

uint64_t
dfb_json_uint(const dfb_json_t *self, dfb_json_ref_t ref)
{
    const dfb_tok_t *t = tok_at(self, ref);
    return t && t->type == DFB_JSON_UINT ? t->v.u : 0;
}

double
dfb_json_double(const dfb_json_t *self, dfb_json_ref_t ref)
{
    const dfb_tok_t *t = tok_at(self, ref);
    return t && t->type == DFB_JSON_DOUBLE ? t->v.d : 0.0;
}

/* ---------------------------------------------------------------- self-test */

/* The project's one CHECK macro set (tests/include/df_check.h). */
#include "df_check.h"

static int
parse_str(dfb_json_t *self, const char *text)
{
    return dfb_json_parse(self, text, strlen(text));
}

/*  Offset printed in the error message, or -1. */
static long
error_offset(const dfb_json_t *self)
{
    long off = -1;
    if (sscanf(dfb_json_error(self), "JSON error at byte %ld:", &off) != 1)
        return -1;
    return off;
}

int
dfb_json_test(int verbose)
{
    df_check_failures = 0;
    dfb_json_t *j = dfb_json_new();
    CHECK(j);
    if (!j)
        return 1;

    /* Navigation: first/next alternate key, value in objects. */
    const char *doc = "{\"a\":1,\"b\":[true,false,null,{\"c\":\"x\"}],\"d\":{},\"e\":[],"
                      "\"a\":2,\"s\":\"n\\u0000ul\"}";
    CHECK(parse_str(j, doc) == 0);
    CHECK(strcmp(dfb_json_error(j), "") == 0);
    CHECK(dfb_json_type(j, 0) == DFB_JSON_OBJECT);
    CHECK(dfb_json_count(j, 0) == 6);
    dfb_json_ref_t k = dfb_json_first(j, 0);
    size_t len = 99;
    CHECK(dfb_json_type(j, k) == DFB_JSON_STRING);
    CHECK(strcmp(dfb_json_string(j, k, &len), "a") == 0 && len == 1);
    dfb_json_ref_t v = dfb_json_next(j, k);
    CHECK(dfb_json_int(j, v) == 1);
    k = dfb_json_next(j, v);
    CHECK(strcmp(dfb_json_string(j, k, NULL), "b") == 0);
    dfb_json_ref_t arr = dfb_json_next(j, k);
    CHECK(dfb_json_type(j, arr) == DFB_JSON_ARRAY && dfb_json_count(j, arr) == 4);
    dfb_json_ref_t e = dfb_json_first(j, arr);
    CHECK(dfb_json_type(j, e) == DFB_JSON_TRUE);
    e = dfb_json_next(j, e);
    CHECK(dfb_json_type(j, e) == DFB_JSON_FALSE);
    e = dfb_json_next(j, e);
    CHECK(dfb_json_type(j, e) == DFB_JSON_NULL);
    e = dfb_json_next(j, e);
    CHECK(dfb_json_type(j, e) == DFB_JSON_OBJECT && dfb_json_count(j, e) == 1);
    CHECK(strcmp(dfb_json_string(j, dfb_json_get(j, e, "c"), NULL), "x") == 0);
    CHECK(dfb_json_next(j, e) == DFB_JSON_NONE);
    /* next() of the array skips its whole subtree. */
    k = dfb_json_next(j, arr);
    CHECK(strcmp(dfb_json_string(j, k, NULL), "d") == 0);
    CHECK(dfb_json_count(j, dfb_json_get(j, 0, "d")) == 0);
    CHECK(dfb_json_first(j, dfb_json_get(j, 0, "d")) == DFB_JSON_NONE);
    CHECK(dfb_json_first(j, dfb_json_get(j, 0, "e")) == DFB_JSON_NONE);
    /* Duplicate keys are kept; get() returns the first. */
    CHECK(dfb_json_int(j, dfb_json_get(j, 0, "a")) == 1);
    CHECK(dfb_json_get(j, 0, "zz") == DFB_JSON_NONE);
    CHECK(dfb_json_get(j, arr, "a") == DFB_JSON_NONE);
    const char *s = dfb_json_string(j, dfb_json_get(j, 0, "s"), &len);
    CHECK(s && len == 4 && memcmp(s, "n\0ul", 5) == 0);
    /* Wrong-type accessors. */
    CHECK(dfb_json_string(j, v, &len) == NULL && len == 0);
    CHECK(dfb_json_uint(j, v) == 0 && dfb_json_double(j, v) == 0.0);
    CHECK(dfb_json_count(j, v) == 0 && dfb_json_first(j, v) == DFB_JSON_NONE);
    /* 1 object, 6 keys, 6 values, 4 in b, 1 key + 1 value in b[3]. */
    CHECK(dfb_json_size(j) == 19);

    /* Key lookup compares length and bytes: "a\0b" is not "a". */
    CHECK(parse_str(j, "{\"a\\u0000b\":1,\"a\":2}") == 0);
    CHECK(dfb_json_int(j, dfb_json_get(j, 0, "a")) == 2);

    /* Numbers: exact int64/uint64, everything else double. */
    CHECK(parse_str(j, "[9223372036854775807,-9223372036854775808,9223372036854775808,"
                       "18446744073709551615,18446744073709551616,-9223372036854775809,"
                       "-0,0.1,1E2,1.0,-0.0,68719476737]") == 0);
    e = dfb_json_first(j, 0);
    CHECK(dfb_json_type(j, e) == DFB_JSON_INT && dfb_json_int(j, e) == INT64_MAX);
    e = dfb_json_next(j, e);
    CHECK(dfb_json_type(j, e) == DFB_JSON_INT && dfb_json_int(j, e) == INT64_MIN);
    e = dfb_json_next(j, e);
    CHECK(dfb_json_type(j, e) == DFB_JSON_UINT && dfb_json_uint(j, e) == 9223372036854775808u);
    e = dfb_json_next(j, e);
    CHECK(dfb_json_type(j, e) == DFB_JSON_UINT && dfb_json_uint(j, e) == UINT64_MAX);
    e = dfb_json_next(j, e);
    CHECK(dfb_json_type(j, e) == DFB_JSON_DOUBLE &&
          dfb_json_double(j, e) == 18446744073709551616.0);
    e = dfb_json_next(j, e);
    CHECK(dfb_json_type(j, e) == DFB_JSON_DOUBLE &&
          dfb_json_double(j, e) == -9223372036854775808.0);
    e = dfb_json_next(j, e);
    CHECK(dfb_json_type(j, e) == DFB_JSON_INT && dfb_json_int(j, e) == 0);
    e = dfb_json_next(j, e);
    CHECK(dfb_json_type(j, e) == DFB_JSON_DOUBLE && dfb_json_double(j, e) == 0.1);
    e = dfb_json_next(j, e);
    CHECK(dfb_json_type(j, e) == DFB_JSON_DOUBLE && dfb_json_double(j, e) == 100.0);
    e = dfb_json_next(j, e);
    CHECK(dfb_json_type(j, e) == DFB_JSON_DOUBLE && dfb_json_double(j, e) == 1.0);
    e = dfb_json_next(j, e);
    double nz = dfb_json_double(j, e);
    CHECK(dfb_json_type(j, e) == DFB_JSON_DOUBLE && nz == 0.0 && 1.0 / nz < 0);
    e = dfb_json_next(j, e);
    CHECK(dfb_json_int(j, e) == 68719476737);
    CHECK(dfb_json_next(j, e) == DFB_JSON_NONE);

    /* An escaped backslash followed by "ud83d" is text, not a surrogate. */
    CHECK(parse_str(j, "[\"\\\\ud83d\",\"\\\\\\ud83d\\ude00\"]") == 0);
    s = dfb_json_string(j, 1, &len);
    CHECK(s && len == 6 && strcmp(s, "\\ud83d") == 0);
    s = dfb_json_string(j, 2, &len);
    CHECK(s && len == 5 && strcmp(s, "\\\xf0\x9f\x98\x80") == 0);

    /* Lenient mode replaces what strict mode rejects, and counts it. */
    dfb_json_set_options(j, DFB_JSON_REPLACE_INVALID);
    CHECK(parse_str(j, "{\"k\\ud800\":[\"a\\ud83dz\",\"\xe2\x82\",\"\xf0\x9f\x98\x80\"]}") == 0);
    CHECK(dfb_json_replacements(j) == 3);
    s = dfb_json_string(j, 1, &len);
    CHECK(s && len == 4 && memcmp(s, "k\xef\xbf\xbd", 4) == 0);
    s = dfb_json_string(j, 3, &len);
    CHECK(s && len == 5 && memcmp(s, "a\xef\xbf\xbdz", 5) == 0);
    s = dfb_json_string(j, 4, &len);
    CHECK(s && len == 3 && memcmp(s, "\xef\xbf\xbd", 3) == 0);
    s = dfb_json_string(j, 5, &len);
    CHECK(s && len == 4 && memcmp(s, "\xf0\x9f\x98\x80", 4) == 0);
    /* ... but not syntax errors; and strict mode is back with options 0. */
    CHECK(parse_str(j, "[\"\xff\"") == -1);
    dfb_json_set_options(j, 0);
    CHECK(parse_str(j, "\"\xff\"") == -1);
    CHECK(parse_str(j, "\"ok\"") == 0 && dfb_json_replacements(j) == 0);

    /* Scalars at the root. */
    CHECK(parse_str(j, " 42 ") == 0 && dfb_json_int(j, 0) == 42);
    CHECK(parse_str(j, "\"\"") == 0 && dfb_json_string(j, 0, &len) && len == 0);
    CHECK(parse_str(j, "null") == 0 && dfb_json_type(j, 0) == DFB_JSON_NULL);

    /* Errors carry a byte offset and leave an empty tape. yajl stops just
       past the offending token; our own checks (surrogates) point at it. */
    struct {
        const char *text;
        long offset;
    } bad[] = {
        {"", 0},
        {"{\"a\":1", 6},
        {"{\"a\":1} x", 9},
        {"[1,]", 4},
        {"{\"a\" 1}", 6},
        {"\"\\ud83d\"", 1},
        {"\"\\ude00\"", 1},
        {"[\"ok\",\"\\ud83d\\u0041\"]", 7},
        /* escaped quotes and backslashes before it: the literal's start is
           found walking back from its end */
        {"[1,\"q\\\"\\\\\\ud800\"]", 9},
        /* yajl's "?" for it in the last word of a longer string */
        {"\"abcdefgh\\ud83d\"", 9},
        {"\"abcdefghijklmno\\ud83d\"", 16},
        {"{\"\\\"\":\"\\\\\",\"k\":\"\\\"\\ude00\"}", 18},
        {"\"\xc0\x80\"", 4},
        {"\"\xed\xa0\x80\"", 5},
        {"nul", 3},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse_str(j, bad[i].text);
        CHECK(rc == -1);
        if (verbose || error_offset(j) != bad[i].offset)
            fprintf(stderr, "bad[%zu]: %s (want offset %ld)\n", i, dfb_json_error(j),
                    bad[i].offset);
        CHECK(error_offset(j) == bad[i].offset);
        CHECK(dfb_json_type(j, 0) == DFB_JSON_NULL && dfb_json_count(j, 0) == 0);
    }
    CHECK(dfb_json_size(j) == 0);
    /* The tape works again after an error. */
    CHECK(parse_str(j, "[1]") == 0 && dfb_json_count(j, 0) == 1);
    CHECK(strcmp(dfb_json_error(j), "") == 0);

    /* Depth: 512 nested arrays parse, 513 do not. */
    char deep[2 * (DFB_JSON_MAX_DEPTH + 1) + 1];
    for (int depth = DFB_JSON_MAX_DEPTH; depth <= DFB_JSON_MAX_DEPTH + 1; depth++) {
        memset(deep, '[', (size_t)depth);
        memset(deep + depth, ']', (size_t)depth);
        deep[2 * depth] = '\0';
        int rc = parse_str(j, deep);
        CHECK(rc == (depth == DFB_JSON_MAX_DEPTH ? 0 : -1));
        if (rc)
            CHECK(strstr(dfb_json_error(j), "deeper than 512") != NULL);
    }

    /* secrets: after a wipe, no byte of the last parse is left anywhere in
       the tape's buffers (strings, yajl's arena, scratch), and it is empty. */
    {
        static const char tok[] = "{\"token\":\"tok-W1PE-ME\\u0041\",\"n\":12345678901234}";
        CHECK(dfb_json_parse(j, tok, sizeof tok - 1) == 0);
        CHECK(strcmp(dfb_json_string(j, dfb_json_get(j, 0, "token"), NULL), "tok-W1PE-MEA") == 0);
        dfb_json_wipe(j);
        CHECK(dfb_json_size(j) == 0);
        int left = 0;
        for (size_t i = 0; i < j->strs_cap; i++)
            left |= j->strs[i];
        for (dfb_chunk_t *c = j->chunk; c; c = c->prev)
            for (size_t i = 0; i < c->cap; i++)
                left |= ((unsigned char *)c->data)[i];
        for (size_t i = 0; j->num && i < j->num_cap; i++)
            left |= j->num[i];
        CHECK(left == 0);
        CHECK(dfb_json_parse(j, "[1]", 3) == 0 && dfb_json_size(j) == 2); /* still usable */
    }
    dfb_json_destroy(&j);
    CHECK(j == NULL);
    dfb_json_destroy(&j); /* accepts NULL */
    if (verbose)
        fprintf(stderr, "dfb_json_test: %d failure(s)\n", df_check_failures);
    return df_check_failures ? 1 : 0;
}
