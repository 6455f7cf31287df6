/*  Runs the transcoder's self-test (--self) or checks it against the golden
    vectors of schemas/golden/vectors.json, byte for byte. The vectors file is
    read with jansson so the check does not depend on the parser under test. */
#include "dfb_transcode.h"

#include <jansson.h>
#include <stdbool.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *data;
    size_t len;
} text_t;

/*  Expands the case's "repeat" placeholders in `field` ("json" units or
    "msgpack_hex" units). Returns 0, or -1 on a malformed case. */
static int
expand(json_t *c, const char *field, const char *unit_key, text_t *out)
{
    json_t *tmpl = json_object_get(c, field);
    if (!json_is_string(tmpl))
        return -1;
    const char *t = json_string_value(tmpl);
    size_t tlen = json_string_length(tmpl);
    json_t *reps = json_object_get(c, "repeat");
    /* First pass: size; second: copy. */
    for (int pass = 0; pass < 2; pass++) {
        size_t n = 0;
        for (size_t i = 0; i < tlen;) {
            size_t idx;
            json_t *r;
            int matched = 0;
            json_array_foreach(reps, idx, r)
            {
                const char *ph = json_string_value(json_object_get(r, "placeholder"));
                json_t *unit = json_object_get(r, unit_key);
                size_t plen = ph ? strlen(ph) : 0;
                if (!plen || !json_is_string(unit) || tlen - i < plen ||
                    memcmp(t + i, ph, plen) != 0)
                    continue;
                json_int_t times = json_integer_value(json_object_get(r, "times"));
                size_t ulen = json_string_length(unit);
                for (json_int_t k = 0; k < times; k++, n += ulen)
                    if (pass)
                        memcpy(out->data + n, json_string_value(unit), ulen);
                i += plen;
                matched = 1;
                break;
            }
            if (!matched) {
                if (pass)
                    out->data[n] = t[i];
                n++;
                i++;
            }
        }
        if (pass == 0) {
            out->data = malloc(n + 1);
            if (!out->data)
                return -1;
        }
        out->len = n;
    }
    out->data[out->len] = '\0';
    return 0;
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

static int
unhex(const text_t *hex, text_t *out)
{
    if (hex->len % 2)
        return -1;
    out->len = hex->len / 2;
    out->data = malloc(out->len + 1);
    if (!out->data)
        return -1;
    for (size_t i = 0; i < out->len; i++) {
        int hi = hexval(hex->data[2 * i]), lo = hexval(hex->data[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out->data[i] = (char)(hi * 16 + lo);
    }
    return 0;
}

static int
check_valid(json_t *c, dfb_json_t *j, dfb_buf_t *buf, int verbose)
{
    const char *name = json_string_value(json_object_get(c, "name"));
    text_t in = {0}, hex = {0}, want = {0};
    int fail = 1;
    if (expand(c, "json", "json_unit", &in) || expand(c, "msgpack_hex", "msgpack_hex_unit", &hex) ||
        unhex(&hex, &want)) {
        fprintf(stderr, "FAIL %s: malformed vector\n", name);
        goto done;
    }
    if (dfb_json_parse(j, in.data, in.len) != 0) {
        fprintf(stderr, "FAIL %s: parse: %s\n", name, dfb_json_error(j));
        goto done;
    }
    size_t tlen;
    const char *topic = dfb_transcode_topic(j, 0, &tlen);
    const char *want_topic = json_string_value(json_object_get(c, "topic"));
    if (!want_topic || tlen != strlen(want_topic) || memcmp(topic, want_topic, tlen) != 0) {
        fprintf(stderr, "FAIL %s: topic %.*s, want %s\n", name, (int)tlen, topic, want_topic);
        goto done;
    }
    dfb_buf_reset(buf);
    json_t *env = json_object_get(c, "envelope");
    int rc;
    if (json_is_object(env)) {
        /* Envelope integers are decimal strings in the vectors file. */
        dfb_envelope_t e = {0};
        e.seq = strtoull(json_string_value(json_object_get(env, "seq")), NULL, 10);
        e.gseq = strtoull(json_string_value(json_object_get(env, "gseq")), NULL, 10);
        e.epoch = json_string_value(json_object_get(env, "epoch"));
        e.ts = strtoull(json_string_value(json_object_get(env, "ts")), NULL, 10);
        e.bot = strtoll(json_string_value(json_object_get(env, "bot")), NULL, 10);
        rc = dfb_transcode_message(&e, j, 0, buf);
    } else
        rc = dfb_transcode_value(j, 0, buf);
    if (rc != 0) {
        fprintf(stderr, "FAIL %s: transcode returned %d\n", name, rc);
        goto done;
    }
    if (buf->len != want.len || memcmp(buf->data, want.data, want.len) != 0) {
        size_t at = 0;
        while (at < buf->len && at < want.len && buf->data[at] == (uint8_t)want.data[at])
            at++;
        fprintf(stderr, "FAIL %s: %zu bytes, want %zu; first difference at byte %zu\n", name,
                buf->len, want.len, at);
        goto done;
    }
    if (verbose)
        printf("ok %s (%zu bytes)\n", name, buf->len);
    fail = 0;
done:
    free(in.data);
    free(hex.data);
    free(want.data);
    return fail;
}

/*  Lenient mode: the bytes parse, with `replacements` U+FFFD substitutions,
    into exactly msgpack_hex. */
static int
check_lenient(json_t *c, dfb_json_t *j, dfb_buf_t *buf, int verbose)
{
    const char *name = json_string_value(json_object_get(c, "name"));
    text_t hex = {0}, in = {0}, whex = {0}, want = {0};
    int fail = 1;
    json_t *h = json_object_get(c, "json_hex"), *m = json_object_get(c, "msgpack_hex");
    hex.data = strdup(json_string_value(h) ? json_string_value(h) : "");
    hex.len = json_string_length(h);
    whex.data = strdup(json_string_value(m) ? json_string_value(m) : "");
    whex.len = json_string_length(m);
    if (!hex.data || !whex.data || unhex(&hex, &in) || unhex(&whex, &want)) {
        fprintf(stderr, "FAIL lenient %s: malformed vector\n", name);
        goto done;
    }
    dfb_json_set_options(j, DFB_JSON_REPLACE_INVALID);
    int rc = dfb_json_parse(j, in.data, in.len);
    dfb_json_set_options(j, 0);
    if (rc != 0) {
        fprintf(stderr, "FAIL lenient %s: %s\n", name, dfb_json_error(j));
        goto done;
    }
    json_int_t want_n = json_integer_value(json_object_get(c, "replacements"));
    if ((json_int_t)dfb_json_replacements(j) != want_n) {
        fprintf(stderr, "FAIL lenient %s: %u replacements, want %lld\n", name,
                dfb_json_replacements(j), (long long)want_n);
        goto done;
    }
    size_t tlen;
    const char *topic = dfb_transcode_topic(j, 0, &tlen);
    const char *want_topic = json_string_value(json_object_get(c, "topic"));
    dfb_buf_reset(buf);
    if (!want_topic || tlen != strlen(want_topic) || memcmp(topic, want_topic, tlen) != 0 ||
        dfb_transcode_value(j, 0, buf) != 0 || buf->len != want.len ||
        memcmp(buf->data, want.data, want.len) != 0) {
        fprintf(stderr, "FAIL lenient %s: wrong topic or bytes\n", name);
        goto done;
    }
    if (verbose)
        printf("ok lenient %s (%u replacements)\n", name, dfb_json_replacements(j));
    fail = 0;
done:
    free(hex.data);
    free(in.data);
    free(whex.data);
    free(want.data);
    return fail;
}

static int
check_invalid(json_t *c, dfb_json_t *j, int verbose)
{
    const char *name = json_string_value(json_object_get(c, "name"));
    text_t in = {0}, hex = {0};
    int fail = 1;
    if (json_object_get(c, "json_hex")) {
        json_t *h = json_object_get(c, "json_hex");
        hex.data = strdup(json_string_value(h));
        hex.len = json_string_length(h);
        if (!hex.data || unhex(&hex, &in))
            goto done;
    } else if (expand(c, "json", "json_unit", &in))
        goto done;
    if (dfb_json_parse(j, in.data, in.len) == 0) {
        fprintf(stderr, "FAIL invalid %s: accepted\n", name);
        goto done;
    }
    if (strncmp(dfb_json_error(j), "JSON error at byte ", 19) != 0) {
        fprintf(stderr, "FAIL invalid %s: error without offset: %s\n", name, dfb_json_error(j));
        goto done;
    }
    /* Lenient mode repairs strings only: everything else still fails. */
    dfb_json_set_options(j, DFB_JSON_REPLACE_INVALID);
    int lenient_rc = dfb_json_parse(j, in.data, in.len);
    dfb_json_set_options(j, 0);
    if ((lenient_rc == 0) != json_is_true(json_object_get(c, "strict_only"))) {
        fprintf(stderr, "FAIL invalid %s: lenient mode %s it\n", name,
                lenient_rc == 0 ? "accepts" : "rejects");
        goto done;
    }
    if (verbose)
        printf("ok invalid %s: %s\n", name, dfb_json_error(j));
    fail = 0;
done:
    free(in.data);
    free(hex.data);
    return fail;
}

/*  Independent strict UTF-8 check (code points, not byte ranges): decode
    each sequence and refuse overlongs, surrogates and > U+10FFFF. */
static bool
utf8_ok(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n;
        if (s[i] < 0x80) {
            i++;
            continue;
        } else if ((s[i] & 0xE0) == 0xC0)
            n = 1, cp = s[i] & 0x1F;
        else if ((s[i] & 0xF0) == 0xE0)
            n = 2, cp = s[i] & 0x0F;
        else if ((s[i] & 0xF8) == 0xF0)
            n = 3, cp = s[i] & 0x07;
        else
            return false;
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

/*  Mutation run: random byte edits of the valid vectors' inputs (seeded,
    bounded). Every input must either be rejected with an offset, or be
    transcoded into exactly one complete msgpack object (checked with
    msgpack-c, independent of our encoder) whose top level matches the tape. */
static int
mutate(json_t *valid, long rounds)
{
    dfb_json_t *j = dfb_json_new();
    dfb_buf_t buf;
    dfb_buf_init(&buf);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    uint64_t rng = 0x9E3779B97F4A7C15u;
    long accepted = 0, rejected = 0, bad = 0;
    size_t ncases = json_array_size(valid);
    static const char alphabet[] =
        "{}[]\",:\\u0123456789abcdefEe+-.tfn? \x00\x7f\x80\xbf\xc3\xa9\xed\xf0\xf4\xff";
    for (long r = 0; r < rounds && j; r++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        json_t *c = json_array_get(valid, (size_t)(rng % ncases));
        /* Keep inputs small; and msgpack-c's unpacker stops at depth 32
           (MSGPACK_EMBED_STACK_SIZE), so the deep cases cannot be checked. */
        if (json_object_get(c, "repeat") ||
            strncmp(json_string_value(json_object_get(c, "name")), "depth_", 6) == 0)
            continue;
        const char *src = json_string_value(json_object_get(c, "json"));
        size_t len = json_string_length(json_object_get(c, "json"));
        char text[8192];
        if (len == 0 || len > sizeof text - 8)
            continue;
        memcpy(text, src, len);
        int edits = 1 + (int)((rng >> 8) % 3);
        for (int e = 0; e < edits; e++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            size_t at = (size_t)(rng % len);
            char ch = alphabet[(rng >> 20) % (sizeof alphabet - 1)];
            switch ((rng >> 40) % 3) {
            case 0: /* replace */
                text[at] = ch;
                break;
            case 1: /* insert */
                memmove(text + at + 1, text + at, len - at);
                text[at] = ch;
                len++;
                break;
            default: /* delete */
                if (len > 1) {
                    memmove(text + at, text + at + 1, len - at - 1);
                    len--;
                }
            }
        }
        /* Every other round in lenient mode, which must still give valid
           UTF-8 strings only. */
        bool lenient = r % 2;
        dfb_json_set_options(j, lenient ? DFB_JSON_REPLACE_INVALID : 0);
        if (dfb_json_parse(j, text, len) != 0) {
            rejected++;
            if (strncmp(dfb_json_error(j), "JSON error at byte ", 19) != 0 || dfb_json_size(j) != 0)
                bad++;
            continue;
        }
        accepted++;
        for (dfb_json_ref_t k = 0; k < dfb_json_size(j); k++) {
            size_t slen;
            const char *str = dfb_json_string(j, k, &slen);
            if (str && !utf8_ok((const unsigned char *)str, slen)) {
                fprintf(stderr, "invalid UTF-8 kept from %.*s\n", (int)len, text);
                bad++;
            }
        }
        dfb_buf_reset(&buf);
        size_t off = 0;
        if (dfb_transcode_value(j, 0, &buf) != 0 ||
            msgpack_unpack_next(&up, (const char *)buf.data, buf.len, &off) !=
                MSGPACK_UNPACK_SUCCESS ||
            off != buf.len) {
            fprintf(stderr, "bad msgpack for %.*s\n", (int)len, text);
            bad++;
            continue;
        }
        /* The top level agrees with the tape. */
        msgpack_object *o = &up.data;
        dfb_json_type_t t = dfb_json_type(j, 0);
        if ((t == DFB_JSON_OBJECT &&
             (o->type != MSGPACK_OBJECT_MAP || o->via.map.size != dfb_json_count(j, 0))) ||
            (t == DFB_JSON_ARRAY &&
             (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != dfb_json_count(j, 0))) ||
            (t == DFB_JSON_STRING && o->type != MSGPACK_OBJECT_STR)) {
            fprintf(stderr, "top level differs for %.*s\n", (int)len, text);
            bad++;
        }
    }
    msgpack_unpacked_destroy(&up);
    dfb_buf_free(&buf);
    dfb_json_destroy(&j);
    printf("mutations: %ld accepted, %ld rejected, %ld bad\n", accepted, rejected, bad);
    return bad || accepted == 0 || rejected == 0;
}

int
main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--self") == 0) {
        int rc = dfb_transcode_test(argc > 2);
        printf("dfb_transcode_test: %s\n", rc ? "FAILED" : "OK");
        return rc;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: %s --self | vectors.json [-v | --mutate N]\n", argv[0]);
        return 2;
    }
    int verbose = argc > 2 && strcmp(argv[2], "-v") == 0;
    json_error_t jerr;
    json_t *doc = json_load_file(argv[1], JSON_ALLOW_NUL, &jerr);
    if (!doc) {
        fprintf(stderr, "%s:%d: %s\n", argv[1], jerr.line, jerr.text);
        return 2;
    }
    json_t *valid = json_object_get(doc, "valid");
    json_t *invalid = json_object_get(doc, "invalid");
    if (json_integer_value(json_object_get(doc, "contract_version")) != DFB_WIRE_VERSION ||
        json_array_size(valid) < 100 || json_array_size(invalid) < 40 ||
        json_array_size(json_object_get(doc, "lenient")) < 20) {
        fprintf(stderr, "%s: not a contract v1 vectors file\n", argv[1]);
        json_decref(doc);
        return 2;
    }
    if (argc > 3 && strcmp(argv[2], "--mutate") == 0) {
        int rc = mutate(valid, atol(argv[3]));
        json_decref(doc);
        printf("%d passed, %d failed\n", rc ? 0 : 1, rc ? 1 : 0);
        return rc;
    }
    /* One tape and one buffer for everything, twice over, so reuse after
       big and failed parses is exercised too. */
    dfb_json_t *j = dfb_json_new();
    dfb_buf_t buf;
    dfb_buf_init(&buf);
    int passed = 0, failed = 0;
    for (int round = 0; round < 2 && j; round++) {
        size_t i;
        json_t *c;
        json_array_foreach(valid, i, c)
        {
            if (check_valid(c, j, &buf, verbose && round == 0))
                failed++;
            else
                passed++;
        }
        json_array_foreach(invalid, i, c)
        {
            if (check_invalid(c, j, verbose && round == 0))
                failed++;
            else
                passed++;
        }
        json_array_foreach(json_object_get(doc, "lenient"), i, c)
        {
            if (check_lenient(c, j, &buf, verbose && round == 0))
                failed++;
            else
                passed++;
        }
    }
    dfb_buf_free(&buf);
    dfb_json_destroy(&j);
    json_decref(doc);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
