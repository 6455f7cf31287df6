/*  dfc_value: a small bounded msgpack decoder into a read-only value tree,
    the generic accessors and the JSON printer. We do not use msgpack-c's
    unpacker because it trusts declared lengths (dd ff ff ff ff asks it for
    ~96 GB); here every length is checked against the bytes left first. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dfc_internal.h"

struct dfc_value {
    uint8_t type;
    int8_t ext_type;
    uint32_t n; /* str/bin/ext byte length, array items, map pairs */
    union {
        bool b;
        int64_t i;
        uint64_t u;
        double d;
        const char *s;
        struct dfc_value *kids; /* arrays: n items; maps: key, value, key, value... */
    } as;
};

struct dfc_doc {
    struct dfc_value *nodes; /* nodes[0] is the root */
    char *arena;             /* copies of str/bin/ext bytes, each NUL-terminated */
};

/*  One decoder for both passes: with nodes == NULL it only validates and
    counts (nodes needed, arena bytes needed); with nodes it fills them. */
typedef struct {
    const uint8_t *p;
    size_t len, pos;
    size_t nnodes, narena;   /* counted (pass 1) or used (pass 2) */
    struct dfc_value *nodes; /* pass 2 only */
    char *arena;             /* pass 2 only */
} parser_t;

static int
take(parser_t *ps, size_t n, const uint8_t **out)
{
    if (ps->len - ps->pos < n)
        return -1;
    *out = ps->p + ps->pos;
    ps->pos += n;
    return 0;
}

static uint64_t
be(const uint8_t *b, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | b[i];
    return v;
}

static int
read_be(parser_t *ps, int n, uint64_t *out)
{
    const uint8_t *b;
    if (take(ps, (size_t)n, &b))
        return -1;
    *out = be(b, n);
    return 0;
}

static int parse_value(parser_t *ps, int depth, struct dfc_value *node);

/*  A str/bin/ext body of n bytes: bounded by what is left, then copied into
    the arena with a NUL so struct fields can be plain C strings. */
static int
parse_bytes(parser_t *ps, uint64_t n, uint8_t type, int8_t ext_type, struct dfc_value *node)
{
    const uint8_t *b;
    if (n > ps->len - ps->pos || take(ps, (size_t)n, &b))
        return -1;
    if (node) {
        char *dst = ps->arena + ps->narena;
        memcpy(dst, b, (size_t)n);
        dst[n] = '\0';
        node->type = type;
        node->ext_type = ext_type;
        node->n = (uint32_t)n;
        node->as.s = dst;
    }
    ps->narena += (size_t)n + 1;
    return 0;
}

static int
parse_container(parser_t *ps, int depth, uint64_t count, bool is_map, struct dfc_value *node)
{
    if (depth >= DFC_MAX_DEPTH)
        return -1;
    /*  Every element takes at least one byte: a count above the bytes left
        is a lie, refused before anything is reserved for it. */
    uint64_t elems = is_map ? count * 2 : count;
    if (count > ps->len - ps->pos || elems > ps->len - ps->pos)
        return -1;
    /*  Nor can a document hold more values than it has bytes: the nodes
        reserved so far (root included) plus these stay within len + 1, the
        scratch's size. The check above alone is not enough: the bytes left
        are promised to this container's pending siblings as well, so
        nested containers could reserve past the scratch before the
        document is found short (fuzz_consumer_link). */
    if (elems > ps->len + 1 - ps->nnodes)
        return -1;
    struct dfc_value *kids = NULL;
    if (node) {
        kids = ps->nodes + ps->nnodes;
        node->type = is_map ? DFC_MAP : DFC_ARRAY;
        node->n = (uint32_t)count;
        node->as.kids = kids;
    }
    ps->nnodes += (size_t)elems;
    for (uint64_t i = 0; i < elems; i++) {
        if (is_map && i % 2 == 0) {
            /* keys must be strings (contract v1) */
            if (ps->pos >= ps->len)
                return -1;
            uint8_t k = ps->p[ps->pos];
            if (!((k >= 0xa0 && k <= 0xbf) || (k >= 0xd9 && k <= 0xdb)))
                return -1;
        }
        if (parse_value(ps, depth + 1, kids ? &kids[i] : NULL))
            return -1;
    }
    return 0;
}

static int
parse_value(parser_t *ps, int depth, struct dfc_value *node)
{
    const uint8_t *b;
    uint64_t u;
    if (take(ps, 1, &b))
        return -1;
    uint8_t c = *b;
    struct dfc_value tmp;
    struct dfc_value *nd = node ? node : &tmp;
    memset(nd, 0, sizeof *nd);

    if (c <= 0x7f) {
        nd->type = DFC_UINT;
        nd->as.u = c;
        return 0;
    }
    if (c >= 0xe0) {
        nd->type = DFC_INT;
        nd->as.i = (int8_t)c;
        return 0;
    }
    if (c >= 0x80 && c <= 0x8f)
        return parse_container(ps, depth, c & 0x0f, true, node);
    if (c >= 0x90 && c <= 0x9f)
        return parse_container(ps, depth, c & 0x0f, false, node);
    if (c >= 0xa0 && c <= 0xbf)
        return parse_bytes(ps, c & 0x1f, DFC_STR, 0, node);

    switch (c) {
    case 0xc0:
        nd->type = DFC_NIL;
        return 0;
    case 0xc2:
    case 0xc3:
        nd->type = DFC_BOOL;
        nd->as.b = c == 0xc3;
        return 0;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        if (read_be(ps, 1 << (c - 0xc4), &u))
            return -1;
        return parse_bytes(ps, u, DFC_BIN, 0, node);
    case 0xc7:
    case 0xc8:
    case 0xc9: {
        const uint8_t *t;
        if (read_be(ps, 1 << (c - 0xc7), &u) || take(ps, 1, &t))
            return -1;
        return parse_bytes(ps, u, DFC_EXT, (int8_t)*t, node);
    }
    case 0xca: {
        float f;
        uint32_t bits;
        if (read_be(ps, 4, &u))
            return -1;
        bits = (uint32_t)u;
        memcpy(&f, &bits, 4);
        nd->type = DFC_DOUBLE;
        nd->as.d = f;
        return 0;
    }
    case 0xcb:
        if (read_be(ps, 8, &u))
            return -1;
        nd->type = DFC_DOUBLE;
        memcpy(&nd->as.d, &u, 8);
        return 0;
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        if (read_be(ps, 1 << (c - 0xcc), &u))
            return -1;
        nd->type = DFC_UINT;
        nd->as.u = u;
        return 0;
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        int n = 1 << (c - 0xd0);
        if (read_be(ps, n, &u))
            return -1;
        /* sign-extend from n bytes */
        int64_t v;
        if (n == 8) {
            memcpy(&v, &u, 8);
        } else {
            uint64_t sign = (uint64_t)1 << (n * 8 - 1);
            v = (int64_t)((u ^ sign) - sign);
        }
        if (v >= 0) {
            nd->type = DFC_UINT;
            nd->as.u = (uint64_t)v;
        } else {
            nd->type = DFC_INT;
            nd->as.i = v;
        }
        return 0;
    }
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8: {
        const uint8_t *t;
        if (take(ps, 1, &t))
            return -1;
        return parse_bytes(ps, (uint64_t)1 << (c - 0xd4), DFC_EXT, (int8_t)*t, node);
    }
    case 0xd9:
    case 0xda:
    case 0xdb:
        if (read_be(ps, 1 << (c - 0xd9), &u))
            return -1;
        return parse_bytes(ps, u, DFC_STR, 0, node);
    case 0xdc:
    case 0xdd:
        if (read_be(ps, c == 0xdc ? 2 : 4, &u))
            return -1;
        return parse_container(ps, depth, u, false, node);
    case 0xde:
    case 0xdf:
        if (read_be(ps, c == 0xde ? 2 : 4, &u))
            return -1;
        return parse_container(ps, depth, u, true, node);
    default: /* 0xc1 is never used */
        return -1;
    }
}

#define ROUND16(n) (((n) + 15) & ~(size_t)15)

static int parse_twice(dfc_blocks_t *blocks, const void *buf, size_t len, size_t head, void **block,
                       bool *pooled, dfc_doc_t **out);

/*  One pass instead of two. The strings go straight into a pooled block,
    after the caller's head and the document (their place is known before
    parsing: a string's bytes and NUL never take more than its encoding, so
    the arena fits when len does); the nodes, whose number is not known yet,
    go to the taker's scratch (a node per input byte + the root at most) and
    are copied behind the strings, their pointers moved by the distance.
    When the nodes do not fit in the block, the document moves to one
    allocation of its exact size. */
static int
parse_once(dfc_blocks_t *blocks, const void *buf, size_t len, size_t head, void **block,
           bool *pooled, dfc_doc_t **out)
{
    size_t at_doc = ROUND16(head), at_arena = at_doc + ROUND16(sizeof(dfc_doc_t));
    if (at_arena + len + 1 > DFC_BLOCK_SIZE)
        return parse_twice(blocks, buf, len, head, block, pooled, out);
    struct dfc_value *tmp = dfc_blocks_scratch(blocks, (len + 1) * sizeof(struct dfc_value));
    char *mem = tmp ? dfc_blocks_get(blocks) : NULL;
    if (!mem)
        return DFC_ENOMEM;
    parser_t ps = {.p = buf, .len = len, .nnodes = 1, .nodes = tmp, .arena = mem + at_arena};
    if (parse_value(&ps, 0, &tmp[0]) || ps.pos != len) {
        dfc_blocks_put(blocks, mem);
        return DFC_EINVAL;
    }
    size_t nnodes = ps.nnodes, narena = ps.narena;
    size_t at_nodes = at_arena + ROUND16(narena ? narena : 1);
    size_t total = at_nodes + nnodes * sizeof(struct dfc_value);
    bool in_pool = total <= DFC_BLOCK_SIZE;
    if (!in_pool) { /* rare: many small values */
        char *exact = malloc(total);
        if (!exact) {
            dfc_blocks_put(blocks, mem);
            return DFC_ENOMEM;
        }
        memcpy(exact + at_arena, mem + at_arena, narena);
        dfc_blocks_put(blocks, mem);
        mem = exact;
    }
    memset(mem, 0, head);
    dfc_doc_t *doc = (dfc_doc_t *)(mem + at_doc);
    doc->arena = mem + at_arena;
    doc->nodes = (struct dfc_value *)(mem + at_nodes);
    memcpy(doc->nodes, tmp, nnodes * sizeof(struct dfc_value));
    const char *old_arena = ps.arena;
    for (size_t i = 0; i < nnodes; i++) {
        struct dfc_value *v = &doc->nodes[i];
        if (v->type == DFC_MAP || v->type == DFC_ARRAY)
            v->as.kids = doc->nodes + (v->as.kids - tmp);
        else if (!in_pool && (v->type == DFC_STR || v->type == DFC_BIN || v->type == DFC_EXT))
            v->as.s = doc->arena + (v->as.s - old_arena);
    }
    *pooled = in_pool;
    *block = mem;
    *out = doc;
    return DFC_OK;
}

int
dfc_doc_parse_in(const void *buf, size_t len, size_t head, void **block, dfc_doc_t **out)
{
    bool pooled;
    return dfc_doc_parse_pooled(NULL, buf, len, head, block, &pooled, out);
}

int
dfc_doc_parse_pooled(dfc_blocks_t *blocks, const void *buf, size_t len, size_t head, void **block,
                     bool *pooled, dfc_doc_t **out)
{
    *out = NULL;
    *block = NULL;
    *pooled = false;
    if (!buf && len)
        return DFC_EINVAL;
    if (blocks && len <= DFC_SCRATCH_MAX)
        return parse_once(blocks, buf, len, head, block, pooled, out);
    return parse_twice(blocks, buf, len, head, block, pooled, out);
}

/*  A counting pass, then a filling pass into one block of the exact size
    (from blocks when it fits). */
static int
parse_twice(dfc_blocks_t *blocks, const void *buf, size_t len, size_t head, void **block,
            bool *pooled, dfc_doc_t **out)
{
    parser_t ps = {.p = buf, .len = len, .nnodes = 1};
    if (parse_value(&ps, 0, NULL) || ps.pos != len)
        return DFC_EINVAL;
    /* Both counts are bounded by len (+1 root, +1 NUL per string), so the
       allocation is at most a small multiple of the input. One block: the
       caller's head, the document, its nodes, its string bytes. */
    size_t nnodes = ps.nnodes, narena = ps.narena;
    size_t at_doc = ROUND16(head), at_nodes = at_doc + ROUND16(sizeof(dfc_doc_t));
    size_t at_arena = at_nodes + nnodes * sizeof(struct dfc_value);
    size_t total = at_arena + (narena ? narena : 1);
    bool from_pool = blocks && total <= DFC_BLOCK_SIZE;
    char *mem = from_pool ? dfc_blocks_get(blocks) : malloc(total);
    if (!mem)
        return DFC_ENOMEM;
    memset(mem, 0, head);
    dfc_doc_t *doc = (dfc_doc_t *)(mem + at_doc);
    doc->nodes = (struct dfc_value *)(mem + at_nodes);
    doc->arena = mem + at_arena;
    parser_t p2 = {.p = buf, .len = len, .nnodes = 1, .nodes = doc->nodes, .arena = doc->arena};
    if (parse_value(&p2, 0, &doc->nodes[0]) || p2.nnodes != nnodes || p2.narena != narena) {
        if (from_pool)
            dfc_blocks_put(blocks, mem);
        else
            free(mem);
        return DFC_EINVAL;
    }
    *pooled = from_pool;
    *block = mem;
    *out = doc;
    return DFC_OK;
}

int
dfc_doc_parse(const void *buf, size_t len, dfc_doc_t **out)
{
    if (!out)
        return DFC_EINVAL;
    void *block;
    return dfc_doc_parse_in(buf, len, 0, &block, out);
}

void
dfc_doc_destroy(dfc_doc_t **doc_p)
{
    if (!doc_p || !*doc_p)
        return;
    free(*doc_p); /* the block starts with the document (head 0) */
    *doc_p = NULL;
}

const dfc_value_t *
dfc_doc_root(const dfc_doc_t *doc)
{
    return doc ? &doc->nodes[0] : NULL;
}

/* ---------------------------------------------------------------- access */

dfc_type_t
dfc_value_type(const dfc_value_t *v)
{
    return v ? (dfc_type_t)v->type : DFC_NIL;
}

bool
dfc_value_bool(const dfc_value_t *v)
{
    return v && v->type == DFC_BOOL && v->as.b;
}

int
dfc_value_int64(const dfc_value_t *v, int64_t *out)
{
    if (v && v->type == DFC_INT) {
        *out = v->as.i;
        return 0;
    }
    if (v && v->type == DFC_UINT && v->as.u <= (uint64_t)INT64_MAX) {
        *out = (int64_t)v->as.u;
        return 0;
    }
    return -1;
}

int
dfc_value_uint64(const dfc_value_t *v, uint64_t *out)
{
    if (v && v->type == DFC_UINT) {
        *out = v->as.u;
        return 0;
    }
    return -1;
}

double
dfc_value_double(const dfc_value_t *v)
{
    if (!v)
        return 0.0;
    switch (v->type) {
    case DFC_DOUBLE:
        return v->as.d;
    case DFC_INT:
        return (double)v->as.i;
    case DFC_UINT:
        return (double)v->as.u;
    default:
        return 0.0;
    }
}

const char *
dfc_value_str(const dfc_value_t *v, size_t *len)
{
    if (!v || (v->type != DFC_STR && v->type != DFC_BIN))
        return NULL;
    if (len)
        *len = v->n;
    return v->as.s;
}

const void *
dfc_value_bin(const dfc_value_t *v, size_t *len, int8_t *ext_type)
{
    if (!v || (v->type != DFC_STR && v->type != DFC_BIN && v->type != DFC_EXT))
        return NULL;
    if (len)
        *len = v->n;
    if (ext_type)
        *ext_type = v->ext_type;
    return v->as.s;
}

size_t
dfc_value_size(const dfc_value_t *v)
{
    return v && (v->type == DFC_ARRAY || v->type == DFC_MAP) ? v->n : 0;
}

const dfc_value_t *
dfc_value_at(const dfc_value_t *v, size_t i)
{
    return v && v->type == DFC_ARRAY && i < v->n ? &v->as.kids[i] : NULL;
}

const dfc_value_t *
dfc_value_key_at(const dfc_value_t *v, size_t i)
{
    return v && v->type == DFC_MAP && i < v->n ? &v->as.kids[2 * i] : NULL;
}

const dfc_value_t *
dfc_value_item_at(const dfc_value_t *v, size_t i)
{
    return v && v->type == DFC_MAP && i < v->n ? &v->as.kids[2 * i + 1] : NULL;
}

const dfc_value_t *
dfc_value_find_n(const dfc_value_t *v, const char *key, size_t klen)
{
    if (!v || v->type != DFC_MAP)
        return NULL;
    for (uint32_t i = 0; i < v->n; i++) {
        const dfc_value_t *k = &v->as.kids[2 * i];
        if (k->n == klen && memcmp(k->as.s, key, klen) == 0)
            return &v->as.kids[2 * i + 1];
    }
    return NULL;
}

void
dfc_value_lookup(const dfc_value_t *map, const void *keys, size_t stride, size_t nkeys,
                 const dfc_value_t **out)
{
    for (size_t j = 0; j < nkeys; j++)
        out[j] = NULL;
    if (!map || map->type != DFC_MAP)
        return;
    size_t left = nkeys;
    for (uint32_t i = 0; i < map->n && left; i++) {
        const dfc_value_t *k = &map->as.kids[2 * i];
        const char *kb = (const char *)keys;
        for (size_t j = 0; j < nkeys; j++, kb += stride) {
            const dfc_key_t *want = (const dfc_key_t *)kb;
            if (want->len == k->n && !out[j] && memcmp(want->s, k->as.s, k->n) == 0) {
                out[j] = &map->as.kids[2 * i + 1]; /* the first match, as dfc_value_find */
                left--;
                break;
            }
        }
    }
}

const dfc_value_t *
dfc_value_find(const dfc_value_t *v, const char *key)
{
    return key ? dfc_value_find_n(v, key, strlen(key)) : NULL;
}

const dfc_value_t *
dfc_value_get(const dfc_value_t *v, const char *path)
{
    if (!path)
        return NULL;
    while (v && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (v->type == DFC_ARRAY) {
            size_t idx = 0;
            if (n == 0 || n > 18)
                return NULL;
            for (size_t i = 0; i < n; i++) {
                if (path[i] < '0' || path[i] > '9')
                    return NULL;
                idx = idx * 10 + (size_t)(path[i] - '0');
            }
            v = dfc_value_at(v, idx);
        } else {
            v = dfc_value_find_n(v, path, n);
        }
        if (!dot)
            return v;
        path = dot + 1;
    }
    return v;
}

const char *
dfc_value_cstr(const dfc_value_t *v)
{
    return v && v->type == DFC_STR ? v->as.s : NULL;
}

/* ------------------------------------------------------------------ JSON */

typedef struct {
    char *buf;
    size_t size, pos;
} jw_t;

static void
jw_put(jw_t *w, const char *s, size_t n)
{
    if (w->size && w->pos < w->size - 1) {
        size_t room = w->size - 1 - w->pos;
        memcpy(w->buf + w->pos, s, n < room ? n : room);
    }
    w->pos += n;
}

static void
jw_puts(jw_t *w, const char *s)
{
    jw_put(w, s, strlen(s));
}

/*  Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid
    (overlong, surrogate, above U+10FFFF, truncated). */
static size_t
utf8_len(const uint8_t *s, size_t left)
{
    uint8_t c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

static void
jw_string(jw_t *w, const char *str, size_t len)
{
    const uint8_t *s = (const uint8_t *)str;
    jw_put(w, "\"", 1);
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            jw_put(w, e, 2);
            i++;
        } else if (c < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", c);
            jw_put(w, e, 6);
            i++;
        } else {
            size_t n = utf8_len(s + i, len - i);
            if (n == 0) {
                jw_puts(w, "\\ufffd");
                i++;
            } else {
                jw_put(w, (const char *)s + i, n);
                i += n;
            }
        }
    }
    jw_put(w, "\"", 1);
}

static void
jw_base64(jw_t *w, const uint8_t *s, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    jw_put(w, "\"", 1);
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < len)
            v |= s[i + 2];
        char q[4] = {tab[(v >> 18) & 63], tab[(v >> 12) & 63],
                     i + 1 < len ? tab[(v >> 6) & 63] : '=', i + 2 < len ? tab[v & 63] : '='};
        jw_put(w, q, 4);
    }
    jw_put(w, "\"", 1);
}

void
dfc_json_double(char *out, size_t size, double d)
{
    if (!isfinite(d)) {
        snprintf(out, size, "null");
        return;
    }
    int n = snprintf(out, size, "%.17g", d);
    /* without '.', 'e' it would read back as an integer */
    if (n > 0 && (size_t)n + 2 < size && !strpbrk(out, ".e"))
        memcpy(out + n, ".0", 3);
}

static void
jw_value(jw_t *w, const dfc_value_t *v)
{
    char num[48];
    if (!v) {
        jw_puts(w, "null");
        return;
    }
    switch (v->type) {
    case DFC_NIL:
    case DFC_EXT:
        jw_puts(w, "null");
        break;
    case DFC_BOOL:
        jw_puts(w, v->as.b ? "true" : "false");
        break;
    case DFC_INT:
        snprintf(num, sizeof num, "%lld", (long long)v->as.i);
        jw_puts(w, num);
        break;
    case DFC_UINT:
        snprintf(num, sizeof num, "%llu", (unsigned long long)v->as.u);
        jw_puts(w, num);
        break;
    case DFC_DOUBLE:
        dfc_json_double(num, sizeof num, v->as.d);
        jw_puts(w, num);
        break;
    case DFC_STR:
        jw_string(w, v->as.s, v->n);
        break;
    case DFC_BIN:
        jw_base64(w, (const uint8_t *)v->as.s, v->n);
        break;
    case DFC_ARRAY:
        jw_put(w, "[", 1);
        for (uint32_t i = 0; i < v->n; i++) {
            if (i)
                jw_put(w, ",", 1);
            jw_value(w, &v->as.kids[i]);
        }
        jw_put(w, "]", 1);
        break;
    case DFC_MAP:
        jw_put(w, "{", 1);
        for (uint32_t i = 0; i < v->n; i++) {
            if (i)
                jw_put(w, ",", 1);
            jw_value(w, &v->as.kids[2 * i]);
            jw_put(w, ":", 1);
            jw_value(w, &v->as.kids[2 * i + 1]);
        }
        jw_put(w, "}", 1);
        break;
    }
}

size_t
dfc_value_to_json(const dfc_value_t *v, char *buf, size_t size)
{
    jw_t w = {buf, buf ? size : 0, 0};
    jw_value(&w, v);
    if (w.size)
        w.buf[w.pos < w.size ? w.pos : w.size - 1] = '\0';
    return w.pos;
}

size_t
dfc_json_string(const char *s, size_t len, char *buf, size_t size)
{
    jw_t w = {buf, buf ? size : 0, 0};
    jw_string(&w, s, len);
    if (w.size)
        w.buf[w.pos < w.size ? w.pos : w.size - 1] = '\0';
    return w.pos;
}
