/*  dfb_cmdproto: request parsing and validation, outcome and reply encoding
    of the command channel (schemas/CONTRACT.md "Commands"). The ops and
    their arguments are data (s_ops, s_args): one walker checks every
    request against them, and dfb_outbound reads the same views back. */
#include "dfb_cmdproto.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "dfb_json.h"
#include "dfb_log.h"

/* ---- ops and args as data ------------------------------------------------ */

typedef enum {
    A_STREAM_ID,
    A_MESSAGE_ID,
    A_MESSAGE,
    A_DATA,
    A_VERSION,
    A_ATTACHMENTS,
    A_SILENT,
    A_USER_IDS,
    A_USER_ID,
    A_EMAILS,
    A_USERNAMES,
    A_LOCAL,
    A_ACTIVE,
    A_COUNT
} arg_t;

static const char *const s_args[A_COUNT] = {
    "stream_id", "message_id", "message", "data",      "version", "attachments", "silent",
    "user_ids",  "user_id",    "emails",  "usernames", "local",   "active"};

#define BIT(a) (1u << (a))
#define POSTING (BIT(A_MESSAGE) | BIT(A_DATA) | BIT(A_VERSION) | BIT(A_ATTACHMENTS))

typedef struct {
    const char *name;
    unsigned allowed;  /* args the op takes */
    unsigned required; /* args it needs (the "one of" rules are in check_op) */
    int posts;
} op_def_t;

static const op_def_t s_ops[DFB_OP_COUNT] = {
    [DFB_OP_SEND] = {"messages.send", BIT(A_STREAM_ID) | POSTING, BIT(A_STREAM_ID) | BIT(A_MESSAGE),
                     1},
    /* Attachments on update: Symphony takes them since SBE 24.1 (reference §3.3). */
    [DFB_OP_UPDATE] = {"messages.update",
                       BIT(A_STREAM_ID) | BIT(A_MESSAGE_ID) | POSTING | BIT(A_SILENT),
                       BIT(A_STREAM_ID) | BIT(A_MESSAGE_ID) | BIT(A_MESSAGE), 1},
    [DFB_OP_SUPPRESS] = {"messages.suppress", BIT(A_MESSAGE_ID), BIT(A_MESSAGE_ID), 0},
    [DFB_OP_GET] = {"messages.get", BIT(A_MESSAGE_ID), BIT(A_MESSAGE_ID), 0},
    [DFB_OP_CREATE_IM] = {"streams.createIm", BIT(A_USER_IDS) | BIT(A_USER_ID), 0, 0},
    [DFB_OP_ADD_MEMBER] = {"rooms.addMember", BIT(A_STREAM_ID) | BIT(A_USER_ID),
                           BIT(A_STREAM_ID) | BIT(A_USER_ID), 0},
    [DFB_OP_REMOVE_MEMBER] = {"rooms.removeMember", BIT(A_STREAM_ID) | BIT(A_USER_ID),
                              BIT(A_STREAM_ID) | BIT(A_USER_ID), 0},
    [DFB_OP_STREAM_INFO] = {"streams.info", BIT(A_STREAM_ID), BIT(A_STREAM_ID), 0},
    [DFB_OP_USERS] = {"users.lookup",
                      BIT(A_USER_IDS) | BIT(A_EMAILS) | BIT(A_USERNAMES) | BIT(A_LOCAL) |
                          BIT(A_ACTIVE),
                      0, 0},
};

const char *
dfb_op_name(dfb_op_t op)
{
    return (unsigned)op < DFB_OP_COUNT ? s_ops[op].name : "?";
}

int
dfb_op_from_name(const char *s, size_t len)
{
    for (int i = 0; i < DFB_OP_COUNT; i++)
        if (strlen(s_ops[i].name) == len && memcmp(s_ops[i].name, s, len) == 0)
            return i;
    return -1;
}

int
dfb_op_posts(dfb_op_t op)
{
    return (unsigned)op < DFB_OP_COUNT && s_ops[op].posts;
}

/* ---- small checks ---------------------------------------------------------- */

/*  Valid UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF). */
static int
utf8_ok(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < len;) {
        size_t l = s[i] < 0x80 ? 1 : dfb_utf8_len(s + i, len - i);
        if (!l)
            return 0;
        i += l;
    }
    return 1;
}

/*  No C0 control, DEL or C1 control (U+0080..U+009F, UTF-8 c2 80..c2 9f). */
static int
no_controls(const char *str, size_t len)
{
    const uint8_t *s = (const uint8_t *)str;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f)
            return 0;
        if (s[i] == 0xc2 && i + 1 < len && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f)
            return 0;
    }
    return 1;
}

static int
is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/' || c == '=' || c == '-' || c == '_';
}

/*  A key or value a peer chose, made printable and short for a message. */
static const char *
printable(const char *s, size_t len, char *out, size_t outlen)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 4 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        out[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
        if (i + 1 < len && n + 4 >= outlen) {
            memcpy(out + n, "...", 3);
            n += 3;
        }
    }
    out[n] = 0;
    return out;
}

#define WHY(...) (snprintf(why, whylen, __VA_ARGS__), -1)

/* ---- msgpack -> JSON ------------------------------------------------------- */

static int
put(dfb_buf_t *out, const void *p, size_t n)
{
    return out ? dfb_buf_put(out, p, n) : 0;
}

int
dfb_cmd_json_str(dfb_buf_t *out, const char *s, size_t len)
{
    /* the log's escaper: at most 6 bytes per input byte, + the quotes and its NUL */
    if (dfb_buf_reserve(out, 6 * len + 3) != 0)
        return -1;
    uint8_t *p = out->data + out->len;
    *p = '"';
    size_t n = dfb_log_json_escape(s, len, (char *)p + 1, 6 * len + 2);
    p[1 + n] = '"';
    out->len += n + 2;
    return 0;
}

int
dfb_cmd_mpack_to_json(dfb_mpack_reader_t *r, dfb_buf_t *out, int depth, char *why, size_t whylen)
{
    char num[40];
    if (depth <= 0)
        return WHY("nested too deeply");
    switch (dfb_mpack_peek(r)) {
    case DFB_MP_NIL:
        dfb_mpack_read_nil(r);
        return put(out, "null", 4) == 0 ? 0 : WHY("out of memory");
    case DFB_MP_BOOL: {
        int b = 0;
        dfb_mpack_read_bool(r, &b);
        return put(out, b ? "true" : "false", b ? 4 : 5) == 0 ? 0 : WHY("out of memory");
    }
    case DFB_MP_UINT: {
        uint64_t u = 0;
        if (dfb_mpack_read_uint(r, &u) != 0)
            return WHY("truncated");
        int n = snprintf(num, sizeof num, "%llu", (unsigned long long)u);
        return put(out, num, (size_t)n) == 0 ? 0 : WHY("out of memory");
    }
    case DFB_MP_INT: {
        int64_t i = 0;
        if (dfb_mpack_read_int(r, &i) != 0)
            return WHY("truncated");
        int n = snprintf(num, sizeof num, "%lld", (long long)i);
        return put(out, num, (size_t)n) == 0 ? 0 : WHY("out of memory");
    }
    case DFB_MP_FLOAT: {
        double d = 0;
        if (dfb_mpack_read_float(r, &d) != 0)
            return WHY("truncated");
        if (!isfinite(d))
            return WHY("NaN and infinities cannot go into JSON");
        int n = snprintf(num, sizeof num, "%.17g", d);
        /* "1" would read back as an integer: keep it a number with a fraction */
        if (strspn(num, "-0123456789") == (size_t)n && n + 2 < (int)sizeof num)
            memcpy(num + n, ".0", 3), n += 2;
        return put(out, num, (size_t)n) == 0 ? 0 : WHY("out of memory");
    }
    case DFB_MP_STR: {
        const char *s;
        size_t len;
        if (dfb_mpack_read_str(r, &s, &len) != 0)
            return WHY("truncated");
        if (!utf8_ok(s, len))
            return WHY("a string is not valid UTF-8");
        return !out || dfb_cmd_json_str(out, s, len) == 0 ? 0 : WHY("out of memory");
    }
    case DFB_MP_ARRAY: {
        uint32_t n;
        if (dfb_mpack_read_array(r, &n) != 0)
            return WHY("truncated");
        if (put(out, "[", 1) != 0)
            return WHY("out of memory");
        for (uint32_t i = 0; i < n; i++) {
            if (i && put(out, ",", 1) != 0)
                return WHY("out of memory");
            if (dfb_cmd_mpack_to_json(r, out, depth - 1, why, whylen) != 0)
                return -1;
        }
        return put(out, "]", 1) == 0 ? 0 : WHY("out of memory");
    }
    case DFB_MP_MAP: {
        uint32_t n;
        if (dfb_mpack_read_map(r, &n) != 0)
            return WHY("truncated");
        if (put(out, "{", 1) != 0)
            return WHY("out of memory");
        for (uint32_t i = 0; i < n; i++) {
            if (i && put(out, ",", 1) != 0)
                return WHY("out of memory");
            if (dfb_mpack_peek(r) != DFB_MP_STR)
                return WHY("map keys must be strings");
            if (dfb_cmd_mpack_to_json(r, out, depth - 1, why, whylen) != 0 ||
                put(out, ":", 1) != 0 || dfb_cmd_mpack_to_json(r, out, depth - 1, why, whylen) != 0)
                return -1;
        }
        return put(out, "}", 1) == 0 ? 0 : WHY("out of memory");
    }
    case DFB_MP_BIN:
    case DFB_MP_EXT:
        return WHY("binary and extension values cannot go into JSON");
    default:
        return WHY("truncated or invalid msgpack");
    }
}

/* ---- the args walker --------------------------------------------------------- */

#define MARK_KEY "dfbridge.request"
#define JSON_DEPTH 64
#define SKIP_DEPTH 80 /* args > data nesting */

/*  A stream or message id: base64 (standard or URL-safe) characters. */
static int
read_id(dfb_mpack_reader_t *r, const char *path, dfb_cmd_str_t *v, char *why, size_t whylen)
{
    if (dfb_mpack_read_str(r, &v->s, &v->len) != 0)
        return WHY("%s: expected a string", path);
    if (v->len == 0 || v->len > DFB_CMD_MAX_SID)
        return WHY("%s: must be 1..%d bytes", path, DFB_CMD_MAX_SID);
    for (size_t i = 0; i < v->len; i++)
        if (!is_b64(v->s[i]))
            return WHY("%s: not a Symphony id (base64 characters only)", path);
    return 0;
}

/*  A string of at most max bytes, UTF-8, optionally without control chars. */
static int
read_text(dfb_mpack_reader_t *r, const char *path, dfb_cmd_str_t *v, size_t max, int controls_ok,
          char *why, size_t whylen)
{
    if (dfb_mpack_read_str(r, &v->s, &v->len) != 0)
        return WHY("%s: expected a string", path);
    if (v->len > max)
        return WHY("%s: longer than %zu bytes", path, max);
    if (!utf8_ok(v->s, v->len))
        return WHY("%s: not valid UTF-8", path);
    if (!controls_ok && !no_controls(v->s, v->len))
        return WHY("%s: control characters are not allowed", path);
    return 0;
}

static int
read_bool(dfb_mpack_reader_t *r, const char *path, int *v, char *why, size_t whylen)
{
    return dfb_mpack_read_bool(r, v) == 0 ? 0 : WHY("%s: expected a boolean", path);
}

static int
read_user_id(dfb_mpack_reader_t *r, const char *path, int64_t *v, char *why, size_t whylen)
{
    if (dfb_mpack_read_int(r, v) != 0)
        return WHY("%s: expected an integer (int64)", path);
    if (*v <= 0)
        return WHY("%s: a user id is a positive integer", path);
    return 0;
}

static int
check_message(const dfb_cmd_str_t *m, const char *path, char *why, size_t whylen)
{
    for (size_t i = 0; i < m->len; i++)
        if (m->s[i] != ' ' && m->s[i] != '\t' && m->s[i] != '\r' && m->s[i] != '\n')
            return 0;
    return WHY("%s: the message is empty", path);
}

/*  data: a map (converted to JSON) or a string holding a JSON object. Its
    top level may not use the mark's key. */
static int
read_data(dfb_mpack_reader_t *r, const char *path, dfb_cmd_args_t *a, char *why, size_t whylen)
{
    char sub[200];
    dfb_mp_type_t t = dfb_mpack_peek(r);
    if (t == DFB_MP_MAP) {
        const uint8_t *start = r->p;
        dfb_mpack_reader_t keys = *r;
        if (dfb_cmd_mpack_to_json(r, NULL, JSON_DEPTH, sub, sizeof sub) != 0)
            return WHY("%s: %s", path, sub);
        uint32_t n;
        dfb_mpack_read_map(&keys, &n);
        for (uint32_t i = 0; i < n; i++) {
            const char *k;
            size_t kl;
            dfb_mpack_read_str(&keys, &k, &kl);
            if (kl == strlen(MARK_KEY) && memcmp(k, MARK_KEY, kl) == 0)
                return WHY("%s: the entity id \"" MARK_KEY "\" is reserved for the bridge", path);
            dfb_mpack_skip(&keys, JSON_DEPTH + 1);
        }
        a->data_kind = DFB_CMD_DATA_MAP;
        a->data_map = start;
        a->data_map_len = (size_t)(r->p - start);
        return 0;
    }
    if (t != DFB_MP_STR)
        return WHY("%s: expected a map or a string holding a JSON object", path);
    dfb_cmd_str_t s;
    if (read_text(r, path, &s, SIZE_MAX, 1, why, whylen) != 0)
        return -1;
    a->data_kind = DFB_CMD_DATA_NONE;
    a->data_str = s;
    int empty = 1;
    for (size_t i = 0; i < s.len && empty; i++)
        empty = s.s[i] == ' ' || s.s[i] == '\t' || s.s[i] == '\r' || s.s[i] == '\n';
    if (empty) /* "" = no data, as the BDKs send it */
        return 0;
    dfb_json_t *json = dfb_json_new();
    if (!json)
        return WHY("%s: out of memory", path);
    int rc = 0;
    if (dfb_json_parse(json, s.s, s.len) != 0)
        rc = WHY("%s: not JSON: %s", path, dfb_json_error(json));
    else if (memchr(s.s, '\v', s.len) || memchr(s.s, '\f', s.len))
        /* yajl takes them as blanks (and never inside a string); JSON and
           Symphony's parser do not, and the entity goes before the last brace */
        rc = WHY("%s: not JSON: a vertical tab or form feed between values (JSON's blanks are "
                 "space, tab, CR and LF)",
                 path);
    else if (dfb_json_type(json, 0) != DFB_JSON_OBJECT)
        rc = WHY("%s: the JSON is not an object", path);
    else if (dfb_json_get(json, 0, MARK_KEY) != DFB_JSON_NONE)
        rc = WHY("%s: the entity id \"" MARK_KEY "\" is reserved for the bridge", path);
    dfb_json_destroy(&json);
    if (rc == 0)
        a->data_kind = DFB_CMD_DATA_STR;
    return rc;
}

/*  attachments: [{name, content, content_type?, preview?}], previews all or none. */
static int
read_attachments(dfb_mpack_reader_t *r, const char *path, dfb_cmd_args_t *a, char *why,
                 size_t whylen)
{
    const uint8_t *start = r->p;
    uint32_t n;
    if (dfb_mpack_read_array(r, &n) != 0)
        return WHY("%s: expected an array", path);
    int previews = 0;
    for (uint32_t i = 0; i < n; i++) {
        char p[160], key[80];
        uint32_t nk;
        if (dfb_mpack_read_map(r, &nk) != 0)
            return WHY("%s[%u]: expected a map", path, i);
        int has_name = 0, has_content = 0, has_preview = 0, has_type = 0;
        for (uint32_t j = 0; j < nk; j++) {
            const char *k;
            size_t kl;
            if (dfb_mpack_read_str(r, &k, &kl) != 0)
                return WHY("%s[%u]: keys must be strings", path, i);
            const uint8_t *b;
            size_t bl;
            dfb_cmd_str_t s;
            snprintf(p, sizeof p, "%s[%u].%s", path, i, printable(k, kl, key, sizeof key));
#define IS(lit) (kl == sizeof lit - 1 && memcmp(k, lit, kl) == 0)
            if (IS("name")) {
                if (has_name++)
                    return WHY("%s: given twice", p);
                if (read_text(r, p, &s, 255, 0, why, whylen) != 0)
                    return -1;
                if (s.len == 0)
                    return WHY("%s: empty file name", p);
                if (memchr(s.s, '"', s.len) || memchr(s.s, '\\', s.len))
                    return WHY("%s: quotes and backslashes are not allowed in a file name", p);
            } else if (IS("content") || IS("preview")) {
                int *seen = IS("content") ? &has_content : &has_preview;
                if ((*seen)++)
                    return WHY("%s: given twice", p);
                if (dfb_mpack_read_bin(r, &b, &bl) != 0)
                    return WHY("%s: expected bytes (msgpack bin)", p);
            } else if (IS("content_type")) {
                if (has_type++)
                    return WHY("%s: given twice", p);
                if (read_text(r, p, &s, 255, 0, why, whylen) != 0)
                    return -1;
                for (size_t c = 0; c < s.len; c++)
                    if ((unsigned char)s.s[c] >= 0x7f)
                        return WHY("%s: ASCII only", p);
            } else
                return WHY("%s: unknown key", p);
#undef IS
        }
        if (!has_name || !has_content)
            return WHY("%s[%u]: %s is missing", path, i, has_name ? "content" : "name");
        previews += has_preview;
    }
    if (previews != 0 && (uint32_t)previews != n)
        return WHY("%s: previews must be given for all attachments or none", path);
    a->attachments = start;
    a->attachments_len = (size_t)(r->p - start);
    a->nattachments = n;
    a->npreviews = previews;
    return 0;
}

/*  An array of 1..100 user ids or of 1..100 strings (emails, usernames). */
static int
read_list(dfb_mpack_reader_t *r, const char *path, int ints, const uint8_t **start, size_t *len,
          uint32_t *count, char *why, size_t whylen)
{
    const uint8_t *s = r->p;
    uint32_t n;
    char p[96];
    if (dfb_mpack_read_array(r, &n) != 0)
        return WHY("%s: expected an array", path);
    if (n == 0 || n > DFB_CMD_MAX_VALUES)
        return WHY("%s: must hold 1..%d values", path, DFB_CMD_MAX_VALUES);
    for (uint32_t i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s[%u]", path, i);
        if (ints) {
            int64_t v;
            if (read_user_id(r, p, &v, why, whylen) != 0)
                return -1;
        } else {
            dfb_cmd_str_t v;
            if (read_text(r, p, &v, 256, 0, why, whylen) != 0)
                return -1;
            if (v.len == 0 || memchr(v.s, ',', v.len))
                return WHY("%s: must be non-empty and without commas", p);
        }
    }
    *start = s;
    *len = (size_t)(r->p - s);
    *count = n;
    return 0;
}

/*  The map form of `message`: {message, data?, version?, attachments?}; its
    fields override the top-level ones. */
static int
read_message_map(dfb_mpack_reader_t *r, dfb_cmd_args_t *a, unsigned *seen, char *why, size_t whylen)
{
    uint32_t n;
    char p[120], key[80];
    dfb_mpack_read_map(r, &n);
    int has_message = 0;
    unsigned mine = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        if (dfb_mpack_read_str(r, &k, &kl) != 0)
            return WHY("args.message: keys must be strings");
        snprintf(p, sizeof p, "args.message.%s", printable(k, kl, key, sizeof key));
        int arg = -1;
        for (int j = 0; j < A_COUNT; j++)
            if (strlen(s_args[j]) == kl && memcmp(s_args[j], k, kl) == 0)
                arg = j;
        if (arg != A_MESSAGE && arg != A_DATA && arg != A_VERSION && arg != A_ATTACHMENTS)
            return WHY("%s: unknown key", p);
        if (mine & BIT(arg))
            return WHY("%s: given twice", p);
        mine |= BIT(arg);
        int rc = 0;
        switch (arg) {
        case A_MESSAGE:
            has_message = 1;
            rc = read_text(r, p, &a->message, SIZE_MAX, 1, why, whylen);
            rc = rc ? rc : check_message(&a->message, p, why, whylen);
            break;
        case A_DATA:
            rc = read_data(r, p, a, why, whylen);
            break;
        case A_VERSION:
            a->has_version = 1;
            rc = read_text(r, p, &a->version, 64, 0, why, whylen);
            break;
        default:
            rc = read_attachments(r, p, a, why, whylen);
            break;
        }
        if (rc)
            return -1;
    }
    if (!has_message)
        return WHY("args.message.message: missing");
    *seen |= mine;
    return 0;
}

/*  Walks args (r at the args value) for op, filling a. */
static int
walk_args(dfb_mpack_reader_t *r, dfb_op_t op, dfb_cmd_args_t *a, char *why, size_t whylen)
{
    memset(a, 0, sizeof *a);
    a->silent = a->local = a->active = -1;
    const op_def_t *def = &s_ops[op];
    uint32_t n;
    if (dfb_mpack_read_map(r, &n) != 0)
        return WHY("args: expected a map");
    unsigned seen = 0, from_map = 0;
    const uint8_t *message_map = NULL;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        char p[120], key[80];
        if (dfb_mpack_read_str(r, &k, &kl) != 0)
            return WHY("args: keys must be strings");
        printable(k, kl, key, sizeof key);
        snprintf(p, sizeof p, "args.%s", key);
        int arg = -1;
        for (int j = 0; j < A_COUNT; j++)
            if (strlen(s_args[j]) == kl && memcmp(s_args[j], k, kl) == 0)
                arg = j;
        if (arg < 0 || !(def->allowed & BIT(arg)))
            return WHY("%s: unknown argument for %s", p, def->name);
        if (seen & BIT(arg))
            return WHY("%s: given twice", p);
        seen |= BIT(arg);
        int rc = 0;
        switch ((arg_t)arg) {
        case A_STREAM_ID:
            rc = read_id(r, p, &a->stream_id, why, whylen);
            break;
        case A_MESSAGE_ID:
            rc = read_id(r, p, &a->message_id, why, whylen);
            break;
        case A_MESSAGE:
            if (dfb_mpack_peek(r) == DFB_MP_MAP) {
                message_map = r->p; /* read after the top-level fields it overrides */
                rc = dfb_mpack_skip(r, SKIP_DEPTH) == 0 ? 0 : WHY("%s: invalid msgpack", p);
            } else if (dfb_mpack_peek(r) == DFB_MP_STR) {
                rc = read_text(r, p, &a->message, SIZE_MAX, 1, why, whylen);
                rc = rc ? rc : check_message(&a->message, p, why, whylen);
            } else
                rc = WHY("%s: expected a string or a map", p);
            break;
        case A_DATA:
            rc = read_data(r, p, a, why, whylen);
            break;
        case A_VERSION:
            a->has_version = 1;
            rc = read_text(r, p, &a->version, 64, 0, why, whylen);
            break;
        case A_ATTACHMENTS:
            rc = read_attachments(r, p, a, why, whylen);
            break;
        case A_SILENT:
            rc = read_bool(r, p, &a->silent, why, whylen);
            break;
        case A_USER_IDS:
            rc = read_list(r, p, 1, &a->user_ids, &a->user_ids_len, &a->nuser_ids, why, whylen);
            if (rc == 0 && op == DFB_OP_USERS)
                a->lookup_by = 'u';
            break;
        case A_USER_ID:
            a->has_user_id = 1;
            rc = read_user_id(r, p, &a->user_id, why, whylen);
            break;
        case A_EMAILS:
        case A_USERNAMES:
            rc = read_list(r, p, 0, &a->strs, &a->strs_len, &a->nstrs, why, whylen);
            a->lookup_by = arg == A_EMAILS ? 'e' : 'n';
            break;
        case A_LOCAL:
            rc = read_bool(r, p, &a->local, why, whylen);
            break;
        case A_ACTIVE:
            rc = read_bool(r, p, &a->active, why, whylen);
            break;
        default:
            rc = -1;
        }
        if (rc)
            return -1;
    }
    if (message_map) {
        dfb_mpack_reader_t m = {message_map, r->p};
        if (read_message_map(&m, a, &from_map, why, whylen) != 0)
            return -1;
    }
    for (int j = 0; j < A_COUNT; j++)
        if ((def->required & BIT(j)) && !(seen & BIT(j)))
            return WHY("args.%s: missing (%s needs it)", s_args[j], def->name);
    if (op == DFB_OP_CREATE_IM && !!(seen & BIT(A_USER_IDS)) + !!(seen & BIT(A_USER_ID)) != 1)
        return WHY("args: %s takes exactly one of user_ids and user_id", def->name);
    if (op == DFB_OP_USERS &&
        !!(seen & BIT(A_USER_IDS)) + !!(seen & BIT(A_EMAILS)) + !!(seen & BIT(A_USERNAMES)) != 1)
        return WHY("args: %s takes exactly one of user_ids, emails and usernames", def->name);
    return 0;
}

int
dfb_cmd_args_read(const dfb_cmd_req_t *req, dfb_cmd_args_t *a, char *why, size_t whylen)
{
    dfb_mpack_reader_t r = {req->args, req->args + req->args_len};
    if (!req->args)
        return WHY("args: missing");
    return walk_args(&r, req->op, a, why, whylen);
}

/* ---- the request ------------------------------------------------------------- */

void
dfb_cmd_urlsafe_id(const char *id, size_t len, char *out, size_t outlen)
{
    int convert = 0;
    for (size_t i = 0; i < len; i++)
        convert |= id[i] == '+' || id[i] == '/' || id[i] == '=';
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < outlen; i++) {
        char c = id[i];
        if (convert && c == '=')
            continue;
        out[n++] = convert && c == '+' ? '-' : convert && c == '/' ? '_' : c;
    }
    if (outlen)
        out[n] = 0;
}

static void
sha256_parts(const void *const *parts, const size_t *lens, int n, uint8_t out[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int olen = 32;
    memset(out, 0, 32);
    if (!md)
        return;
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1) {
        for (int i = 0; i < n; i++)
            EVP_DigestUpdate(md, parts[i], lens[i]);
        EVP_DigestFinal_ex(md, out, &olen);
    }
    EVP_MD_CTX_free(md);
}

static void
set_id(dfb_cmd_req_t *req, const char *s, size_t len)
{
    memcpy(req->id, s, len);
    req->id[len] = 0;
    req->id_len = len;
    req->has_id = 1;
}

int
dfb_cmd_req_parse(const void *frame, size_t frame_len, size_t max_bytes, dfb_cmd_req_t *req,
                  char *why, size_t whylen)
{
    memset(req, 0, sizeof *req);
    if (frame_len > max_bytes)
        return WHY("request of %zu bytes is over bridge.commandsMaxBytes (%zu)", frame_len,
                   max_bytes);
    if (frame_len == 0)
        return WHY("empty request frame");
    dfb_mpack_reader_t r = {(const uint8_t *)frame, (const uint8_t *)frame + frame_len};
    uint32_t n;
    if (dfb_mpack_read_map(&r, &n) != 0)
        return WHY(dfb_mpack_peek(&r) == DFB_MP_MAP ? "the request is truncated"
                                                    : "the request is not a msgpack map");
    /* One pass for the structure: where each known key's value is. */
    const uint8_t *vals[4] = {0}, *ends[4] = {0};
    static const char *const keys[4] = {"v", "id", "op", "args"};
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        if (dfb_mpack_read_str(&r, &k, &kl) != 0)
            return WHY("request keys must be strings");
        int which = -1;
        for (int j = 0; j < 4; j++)
            if (strlen(keys[j]) == kl && memcmp(keys[j], k, kl) == 0)
                which = j;
        if (which >= 0 && vals[which])
            return WHY("%s: given twice", keys[which]);
        const uint8_t *v = r.p;
        if (dfb_mpack_skip(&r, SKIP_DEPTH) != 0)
            return WHY("the request is truncated, invalid msgpack or nested too deeply");
        if (which >= 0)
            vals[which] = v, ends[which] = r.p;
        if (which == 1) { /* the id as early as possible, for the echo */
            dfb_mpack_reader_t ir = {v, r.p};
            const char *s;
            size_t sl;
            if (dfb_mpack_read_str(&ir, &s, &sl) == 0 && sl >= 1 && sl <= DFB_CMD_MAX_ID &&
                utf8_ok(s, sl) && no_controls(s, sl))
                set_id(req, s, sl);
        }
    }
    if (r.p != r.end)
        return WHY("%zu trailing bytes after the request map", (size_t)(r.end - r.p));
    if (!vals[1])
        return WHY("id: missing");
    if (!req->has_id) {
        dfb_mpack_reader_t ir = {vals[1], ends[1]};
        const char *s;
        size_t sl;
        if (dfb_mpack_read_str(&ir, &s, &sl) != 0)
            return WHY("id: expected a string");
        if (sl < 1 || sl > DFB_CMD_MAX_ID)
            return WHY("id: must be 1..%d bytes", DFB_CMD_MAX_ID);
        if (!utf8_ok(s, sl))
            return WHY("id: not valid UTF-8");
        return WHY("id: control characters are not allowed");
    }
    if (vals[0]) {
        dfb_mpack_reader_t vr = {vals[0], ends[0]};
        uint64_t v;
        if (dfb_mpack_read_uint(&vr, &v) != 0 || v != 1)
            return WHY("v: unsupported protocol version (this bridge speaks 1)");
    }
    if (!vals[2])
        return WHY("op: missing");
    dfb_mpack_reader_t orr = {vals[2], ends[2]};
    const char *os;
    size_t ol;
    if (dfb_mpack_read_str(&orr, &os, &ol) != 0)
        return WHY("op: expected a string");
    int op = dfb_op_from_name(os, ol);
    if (op < 0) {
        char p[80];
        return WHY("op: unknown operation \"%s\"", printable(os, ol, p, sizeof p));
    }
    req->op = (dfb_op_t)op;
    if (!vals[3])
        return WHY("args: missing");
    dfb_cmd_args_t a;
    dfb_mpack_reader_t ar = {vals[3], ends[3]};
    if (walk_args(&ar, req->op, &a, why, whylen) != 0)
        return -1;
    if (a.stream_id.len) {
        dfb_cmd_urlsafe_id(a.stream_id.s, a.stream_id.len, req->stream, sizeof req->stream);
    }
    req->frame = malloc(frame_len);
    if (!req->frame)
        return WHY("out of memory");
    memcpy(req->frame, frame, frame_len);
    req->frame_len = frame_len;
    req->args = req->frame + (vals[3] - (const uint8_t *)frame);
    req->args_len = (size_t)(ends[3] - vals[3]);
    const char *name = s_ops[op].name;
    const void *parts[2] = {name, req->args};
    size_t lens[2] = {strlen(name) + 1, req->args_len};
    sha256_parts(parts, lens, 2, req->fp);
    return 0;
}

void
dfb_cmd_req_free(dfb_cmd_req_t *req)
{
    if (!req)
        return;
    free(req->frame);
    req->frame = NULL;
    req->args = NULL;
    req->frame_len = req->args_len = 0;
}

/* ---- what goes to Symphony --------------------------------------------------- */

int
dfb_cmd_message_text(const dfb_cmd_str_t *m, dfb_buf_t *out)
{
    static const char open[] = "<messageML>", close[] = "</messageML>";
    size_t lo = sizeof open - 1, lc = sizeof close - 1;
    int wrapped = (m->len >= lo && memcmp(m->s, open, lo) == 0) ||
                  (m->len >= lc && memcmp(m->s + m->len - lc, close, lc) == 0);
    if (wrapped)
        return dfb_buf_put(out, m->s, m->len);
    return dfb_buf_put(out, open, lo) == 0 && dfb_buf_put(out, m->s, m->len) == 0 &&
                   dfb_buf_put(out, close, lc) == 0
               ? 0
               : -1;
}

int
dfb_cmd_data_json(const dfb_cmd_args_t *a, const char *mark, dfb_buf_t *out)
{
    char entity[160];
    int n = snprintf(entity, sizeof entity,
                     "\"" MARK_KEY "\":{\"type\":\"org.dfbridge.request\",\"version\":\"1.0\","
                     "\"id\":\"%s\"}",
                     mark);
    size_t start = out->len;
    if (a->data_kind == DFB_CMD_DATA_STR) {
        if (dfb_buf_put(out, a->data_str.s, a->data_str.len) != 0)
            return -1;
    } else if (a->data_kind == DFB_CMD_DATA_MAP) {
        dfb_mpack_reader_t r = {a->data_map, a->data_map + a->data_map_len};
        char why[128];
        if (dfb_cmd_mpack_to_json(&r, out, JSON_DEPTH, why, sizeof why) != 0)
            return -1;
    } else
        return dfb_buf_put(out, "{", 1) == 0 && dfb_buf_put(out, entity, (size_t)n) == 0 &&
                       dfb_buf_put(out, "}", 1) == 0
                   ? 0
                   : -1;
    /* The object's closing brace is its last non-blank byte: the entity goes
       just before it, after a comma unless the object is empty. */
    size_t end = out->len;
    while (end > start && strchr(" \t\r\n", out->data[end - 1]))
        end--;
    if (end == start || out->data[end - 1] != '}')
        return -1;
    size_t brace = end - 1, q = brace;
    while (q > start && strchr(" \t\r\n", out->data[q - 1]))
        q--;
    int empty = q > start && out->data[q - 1] == '{';
    out->len = brace;
    return (empty || dfb_buf_put(out, ",", 1) == 0) && dfb_buf_put(out, entity, (size_t)n) == 0 &&
                   dfb_buf_put(out, "}", 1) == 0
               ? 0
               : -1;
}

/* ---- outcomes and replies ------------------------------------------------------ */

void
dfb_cmd_outcome_init(dfb_cmd_outcome_t *o)
{
    memset(o, 0, sizeof *o);
    dfb_buf_init(&o->result);
}

void
dfb_cmd_outcome_free(dfb_cmd_outcome_t *o)
{
    if (o)
        dfb_buf_free(&o->result);
}

void
dfb_cmd_outcome_error(dfb_cmd_outcome_t *o, const char *code, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->message, sizeof o->message, fmt, ap);
    va_end(ap);
    o->ok = 0;
    o->code = code;
    o->status = status;
    o->definite = strcmp(code, DFB_CMD_REJECTED) == 0 || strcmp(code, DFB_CMD_BAD_REQUEST) == 0;
    dfb_buf_reset(&o->result);
}

/*  error map: {code, message[, status][, retry_after_ms]} */
static int
put_error(dfb_buf_t *out, const char *code, const char *message, int status, int64_t retry)
{
    int with_status = strcmp(code, DFB_CMD_REJECTED) == 0;
    int with_retry = strcmp(code, DFB_CMD_BUSY) == 0;
    return dfb_mpack_map(out, 2u + (unsigned)with_status + (unsigned)with_retry) ||
                   dfb_mpack_cstr(out, "code") || dfb_mpack_cstr(out, code) ||
                   dfb_mpack_cstr(out, "message") || dfb_mpack_cstr(out, message ? message : "") ||
                   (with_status && (dfb_mpack_cstr(out, "status") || dfb_mpack_int(out, status))) ||
                   (with_retry &&
                    (dfb_mpack_cstr(out, "retry_after_ms") || dfb_mpack_int(out, retry)))
               ? -1
               : 0;
}

int
dfb_cmd_outcome_encode(dfb_buf_t *out, const dfb_cmd_outcome_t *o)
{
    if (dfb_mpack_map(out, 3) || dfb_mpack_cstr(out, "ok") || dfb_mpack_bool(out, o->ok))
        return -1;
    if (o->ok) {
        if (dfb_mpack_cstr(out, "result") ||
            (o->result.len ? dfb_buf_put(out, o->result.data, o->result.len) : dfb_mpack_nil(out)))
            return -1;
    } else if (dfb_mpack_cstr(out, "error") ||
               put_error(out, o->code ? o->code : DFB_CMD_UNAVAILABLE, o->message, o->status,
                         o->retry_after_ms))
        return -1;
    return dfb_mpack_cstr(out, "found") || dfb_mpack_bool(out, o->found) ? -1 : 0;
}

int
dfb_cmd_reply_from_outcome(dfb_buf_t *out, const char *id, size_t id_len, const uint8_t *outcome,
                           size_t outcome_len, int replayed)
{
    dfb_mpack_reader_t r = {outcome, outcome + outcome_len};
    uint32_t n;
    int ok = -1, found = 0;
    const uint8_t *val = NULL, *val_end = NULL;
    if (!outcome || dfb_mpack_read_map(&r, &n) != 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        if (dfb_mpack_read_str(&r, &k, &kl) != 0)
            return -1;
        const uint8_t *v = r.p;
        if (kl == 2 && memcmp(k, "ok", 2) == 0) {
            if (dfb_mpack_read_bool(&r, &ok) != 0)
                return -1;
        } else if (kl == 5 && memcmp(k, "found", 5) == 0) {
            if (dfb_mpack_read_bool(&r, &found) != 0)
                return -1;
        } else {
            int is_result = kl == 6 && memcmp(k, "result", 6) == 0;
            int is_error = kl == 5 && memcmp(k, "error", 5) == 0;
            if (is_error && dfb_mpack_peek(&r) != DFB_MP_MAP)
                return -1;
            if (dfb_mpack_skip(&r, 600) != 0)
                return -1;
            if (is_result || is_error)
                val = v, val_end = r.p;
        }
    }
    if (r.p != r.end || ok < 0 || !val)
        return -1;
    size_t mark = out->len;
    if (dfb_mpack_map(out, 6) || dfb_mpack_cstr(out, "v") || dfb_mpack_uint(out, 1) ||
        dfb_mpack_cstr(out, "id") || dfb_mpack_str(out, id ? id : "", id ? id_len : 0) ||
        dfb_mpack_cstr(out, "ok") || dfb_mpack_bool(out, ok) ||
        dfb_mpack_cstr(out, ok ? "result" : "error") ||
        dfb_buf_put(out, val, (size_t)(val_end - val)) || dfb_mpack_cstr(out, "replayed") ||
        dfb_mpack_bool(out, replayed) || dfb_mpack_cstr(out, "found") ||
        dfb_mpack_bool(out, found)) {
        out->len = mark;
        return -1;
    }
    return 0;
}

int
dfb_cmd_reply_error(dfb_buf_t *out, const char *id, size_t id_len, const char *code,
                    const char *message, int status, int64_t retry_after_ms)
{
    size_t mark = out->len;
    if (dfb_mpack_map(out, 6) || dfb_mpack_cstr(out, "v") || dfb_mpack_uint(out, 1) ||
        dfb_mpack_cstr(out, "id") || dfb_mpack_str(out, id ? id : "", id ? id_len : 0) ||
        dfb_mpack_cstr(out, "ok") || dfb_mpack_bool(out, 0) || dfb_mpack_cstr(out, "error") ||
        put_error(out, code, message, status, retry_after_ms) || dfb_mpack_cstr(out, "replayed") ||
        dfb_mpack_bool(out, 0) || dfb_mpack_cstr(out, "found") || dfb_mpack_bool(out, 0)) {
        out->len = mark;
        return -1;
    }
    return 0;
}

void
dfb_cmd_mark(const char *scope, size_t scope_len, const char *id, size_t id_len, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    static const char tag[] = "dfbridge-mark"; /* + its NUL */
    static const uint8_t zero = 0;
    const void *parts[4] = {tag, scope ? scope : "", &zero, id};
    size_t lens[4] = {sizeof tag, scope ? scope_len : 0, 1, id_len};
    uint8_t d[32];
    sha256_parts(parts, lens, 4, d);
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[32] = 0;
}
