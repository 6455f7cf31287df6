/*  dfb_cmdproto's self-test (dfb_selftest cmdproto): every op parsed valid
    and invalid, the fingerprint, outcome and reply bytes against msgpack
    written by Python's msgpack (pinned hex), the mark for a fixed input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "df_check.h"
#include "dfb_cmdproto.h"
#include "dfb_json.h"

/*  Test requests are written as JSON and converted here; a string
    "\u0001b:<text>" becomes a bin of <text>, "\u0001f:<num>" a float64,
    "\u0001raw:<hex>" raw msgpack bytes. */
static int
enc(const dfb_json_t *j, dfb_json_ref_t ref, dfb_buf_t *b)
{
    size_t len;
    const char *s;
    switch (dfb_json_type(j, ref)) {
    case DFB_JSON_NULL:
        return dfb_mpack_nil(b);
    case DFB_JSON_TRUE:
    case DFB_JSON_FALSE:
        return dfb_mpack_bool(b, dfb_json_type(j, ref) == DFB_JSON_TRUE);
    case DFB_JSON_INT:
        return dfb_mpack_int(b, dfb_json_int(j, ref));
    case DFB_JSON_UINT:
        return dfb_mpack_uint(b, dfb_json_uint(j, ref));
    case DFB_JSON_DOUBLE: {
        double d = dfb_json_double(j, ref);
        uint64_t u;
        memcpy(&u, &d, 8);
        uint8_t x[9] = {0xcb};
        for (int i = 0; i < 8; i++)
            x[1 + i] = (uint8_t)(u >> (56 - 8 * i));
        return dfb_buf_put(b, x, 9);
    }
    case DFB_JSON_STRING:
        s = dfb_json_string(j, ref, &len);
        if (len > 3 && memcmp(s, "\001b:", 3) == 0) {
            uint8_t h = 0xc4, l = (uint8_t)(len - 3);
            return dfb_buf_put(b, &h, 1) || dfb_buf_put(b, &l, 1) || dfb_buf_put(b, s + 3, len - 3);
        }
        if (len > 3 && memcmp(s, "\001f:", 3) == 0) {
            double d = strtod(s + 3, NULL);
            uint64_t u;
            memcpy(&u, &d, 8);
            uint8_t x[9] = {0xcb};
            for (int i = 0; i < 8; i++)
                x[1 + i] = (uint8_t)(u >> (56 - 8 * i));
            return dfb_buf_put(b, x, 9);
        }
        if (len >= 5 && memcmp(s, "\001raw:", 5) == 0) {
            for (size_t i = 5; i + 1 < len; i += 2) {
                unsigned v;
                sscanf(s + i, "%2x", &v);
                uint8_t c = (uint8_t)v;
                if (dfb_buf_put(b, &c, 1))
                    return -1;
            }
            return 0;
        }
        return dfb_mpack_str(b, s, len);
    case DFB_JSON_ARRAY:
        if (dfb_mpack_array(b, dfb_json_count(j, ref)))
            return -1;
        for (dfb_json_ref_t c = dfb_json_first(j, ref); c != DFB_JSON_NONE; c = dfb_json_next(j, c))
            if (enc(j, c, b))
                return -1;
        return 0;
    case DFB_JSON_OBJECT:
        if (dfb_mpack_map(b, dfb_json_count(j, ref)))
            return -1;
        for (dfb_json_ref_t c = dfb_json_first(j, ref); c != DFB_JSON_NONE; c = dfb_json_next(j, c))
            if (enc(j, c, b))
                return -1;
        return 0;
    default:
        return -1;
    }
}

static void
mp(const char *json, dfb_buf_t *b)
{
    dfb_json_t *j = dfb_json_new();
    dfb_buf_reset(b);
    if (dfb_json_parse(j, json, strlen(json)) != 0 || enc(j, 0, b) != 0) {
        fprintf(stderr, "test JSON broken: %s\n", json);
        df_check_failures++;
    }
    dfb_json_destroy(&j);
}

static char *
hex(const uint8_t *p, size_t n)
{
    static char out[4096];
    size_t k = 0;
    for (size_t i = 0; i < n && k + 3 < sizeof out; i++)
        k += (size_t)snprintf(out + k, sizeof out - k, "%02x", p[i]);
    out[k] = 0;
    return out;
}

typedef struct {
    const char *json;
    const char *why; /* NULL = valid; else a substring of the reason */
    int has_id;
} parse_case_t;

#define R(op, args) "{\"v\":1,\"id\":\"r1\",\"op\":\"" op "\",\"args\":" args "}"

static const parse_case_t s_cases[] = {
    /* valid, every op */
    {R("messages.send", "{\"stream_id\":\"abc+/d==\",\"message\":\"hi\"}"), NULL, 1},
    {R("messages.send",
       "{\"stream_id\":\"s\",\"message\":{\"message\":\"<messageML>x</messageML>\","
       "\"data\":{\"a\":{\"type\":\"t\",\"n\":[1,-2,\"\\u0001f:1.5\",null,true]}},"
       "\"version\":\"2.0\",\"attachments\":[{\"name\":\"a.txt\",\"content\":"
       "\"\\u0001b:xyz\",\"content_type\":\"text/plain\",\"preview\":\"\\u0001b:p\"}]}}"),
     NULL, 1},
    {R("messages.send", "{\"stream_id\":\"s\",\"message\":\"m\",\"data\":\"{\\\"a\\\":1}\","
                        "\"version\":\"\",\"attachments\":[]}"),
     NULL, 1},
    {R("messages.send", "{\"stream_id\":\"s\",\"message\":\"m\",\"data\":\"\"}"), NULL, 1},
    {R("messages.update",
       "{\"stream_id\":\"s\",\"message_id\":\"m_1-\",\"message\":\"x\",\"silent\":false}"),
     NULL, 1},
    {R("messages.suppress", "{\"message_id\":\"m1\"}"), NULL, 1},
    {R("messages.get", "{\"message_id\":\"m1\"}"), NULL, 1},
    {R("streams.createIm", "{\"user_ids\":[1,9223372036854775807]}"), NULL, 1},
    {R("streams.createIm", "{\"user_id\":7215545058313}"), NULL, 1},
    {R("rooms.addMember", "{\"stream_id\":\"r\",\"user_id\":5}"), NULL, 1},
    {R("rooms.removeMember", "{\"stream_id\":\"r\",\"user_id\":5}"), NULL, 1},
    {R("streams.info", "{\"stream_id\":\"r\"}"), NULL, 1},
    {R("users.lookup", "{\"user_ids\":[1,2],\"local\":true,\"active\":false}"), NULL, 1},
    {R("users.lookup", "{\"emails\":[\"a@b.c\"]}"), NULL, 1},
    {R("users.lookup", "{\"usernames\":[\"bob\"],\"local\":false}"), NULL, 1},
    {"{\"id\":\"r1\",\"op\":\"streams.info\",\"args\":{\"stream_id\":\"r\"},\"future\":[1,{}]}",
     NULL, 1},
    /* the envelope */
    {"[1]", "not a msgpack map", 0},
    {"\"\\u0001raw:\"", "empty request frame", 0},
    {"\"\\u0001raw:85a1\"", "truncated", 0},
    {"\"\\u0001raw:81a1760180\"", "trailing bytes", 0},
    {"\"\\u0001raw:c1\"", "not a msgpack map", 0},
    {"{\"id\":\"r1\",\"op\":\"streams.info\",\"args\":{\"stream_id\":\"r\"},\"x\":\"\\u0001raw:"
     "919191919191919191919191919191919191919191919191919191919191919191919191919191919191919191919"
     "19191919191919191919191919191919191919191919191919191919191919191919191919191919191919190\"}",
     "nested too deeply", 1},
    {"{\"\\u0001raw:01\":1}", "keys must be strings", 0},
    {"{\"op\":\"streams.info\",\"args\":{\"stream_id\":\"r\"}}", "id: missing", 0},
    {"{\"id\":5,\"op\":\"streams.info\",\"args\":{}}", "id: expected a string", 0},
    {"{\"id\":\"\",\"op\":\"streams.info\",\"args\":{}}", "id: must be 1..128", 0},
    {"{\"id\":\"a\\nb\",\"op\":\"streams.info\",\"args\":{}}", "id: control characters", 0},
    {"{\"id\":\"a\\u0085b\",\"op\":\"streams.info\",\"args\":{}}", "id: control characters", 0},
    {"{\"id\":\"\\u0001raw:a2c328\",\"op\":\"streams.info\",\"args\":{}}", "id: not valid UTF-8",
     0},
    {"{\"id\":"
     "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\",\"op\":\"streams.info\",\"args\":{}}",
     "id: must be 1..128", 0},
    {"{\"id\":\"r1\",\"id\":\"r2\",\"op\":\"streams.info\",\"args\":{}}", "id: given twice", 1},
    {"{\"v\":2,\"id\":\"r1\",\"op\":\"streams.info\",\"args\":{\"stream_id\":\"r\"}}",
     "v: unsupported", 1},
    {"{\"v\":\"1\",\"id\":\"r1\",\"op\":\"streams.info\",\"args\":{\"stream_id\":\"r\"}}",
     "v: unsupported", 1},
    {"{\"id\":\"r1\",\"args\":{}}", "op: missing", 1},
    {"{\"id\":\"r1\",\"op\":1,\"args\":{}}", "op: expected a string", 1},
    {"{\"id\":\"r1\",\"op\":\"messages.blast\",\"args\":{}}",
     "unknown operation \"messages.blast\"", 1},
    {"{\"id\":\"r1\",\"op\":\"streams.info\"}", "args: missing", 1},
    {"{\"id\":\"r1\",\"op\":\"streams.info\",\"args\":[]}", "args: expected a map", 1},
    /* args */
    {R("streams.info", "{}"), "args.stream_id: missing", 1},
    {R("streams.info", "{\"stream_id\":5}"), "args.stream_id: expected a string", 1},
    {R("streams.info", "{\"stream_id\":\"a/../b?x\"}"), "not a Symphony id", 1},
    {R("streams.info", "{\"stream_id\":\"\"}"), "args.stream_id: must be 1..255", 1},
    {R("streams.info", "{\"stream_id\":\"r\",\"user_id\":1}"), "args.user_id: unknown argument", 1},
    {R("streams.info", "{\"stream_id\":\"r\",\"colour\":1}"), "args.colour: unknown argument", 1},
    {R("streams.info", "{\"stream_id\":\"r\",\"stream_id\":\"q\"}"), "args.stream_id: given twice",
     1},
    {R("messages.send", "{\"stream_id\":\"s\"}"), "args.message: missing", 1},
    {R("messages.send", "{\"message\":\"x\"}"), "args.stream_id: missing", 1},
    {R("messages.send", "{\"stream_id\":\"s\",\"message\":5}"),
     "args.message: expected a string or a map", 1},
    {R("messages.send", "{\"stream_id\":\"s\",\"message\":\" \\n\\t\"}"),
     "args.message: the message is empty", 1},
    {R("messages.send", "{\"stream_id\":\"s\",\"message\":{\"data\":\"\"}}"),
     "args.message.message: missing", 1},
    {R("messages.send", "{\"stream_id\":\"s\",\"message\":{\"message\":\"x\",\"silent\":true}}"),
     "args.message.silent: unknown key", 1},
    {R("messages.send", "{\"stream_id\":\"s\",\"message\":\"x\",\"data\":5}"),
     "args.data: expected a map or a string", 1},
    {R("messages.send", "{\"stream_id\":\"s\",\"message\":\"x\",\"data\":\"[1]\"}"),
     "args.data: the JSON is not an object", 1},
    {R("messages.send", "{\"stream_id\":\"s\",\"message\":\"x\",\"data\":\"{oops\"}"),
     "args.data: not JSON", 1},
    {R("messages.send", "{\"stream_id\":\"s\",\"message\":\"x\",\"data\":\"{}\\u000b\"}"),
     "args.data: not JSON: a vertical tab", 1},
    {R("messages.send", "{\"stream_id\":\"s\",\"message\":\"x\",\"data\":\"\\f{\\\"a\\\":1}\"}"),
     "args.data: not JSON: a vertical tab or form feed", 1},
    {R("messages.send", "{\"stream_id\":\"s\",\"message\":\"x\",\"data\":{\"a\":\"\\u0001b:zz\"}}"),
     "args.data: binary", 1},
    {R("messages.send", "{\"stream_id\":\"s\",\"message\":\"x\",\"data\":{\"\\u0001raw:01\":1}}"),
     "args.data: map keys must be strings", 1},
    {R("messages.send",
       "{\"stream_id\":\"s\",\"message\":\"x\",\"data\":{\"dfbridge.request\":{}}}"),
     "reserved", 1},
    {R("messages.send",
       "{\"stream_id\":\"s\",\"message\":\"x\",\"data\":\"{\\\"dfbridge.request\\\":1}\"}"),
     "reserved", 1},
    {R("messages.send", "{\"stream_id\":\"s\",\"message\":\"x\",\"version\":3}"),
     "args.version: expected a string", 1},
    {R("messages.send", "{\"stream_id\":\"s\",\"message\":\"x\",\"attachments\":{}}"),
     "args.attachments: expected an array", 1},
    {R("messages.send",
       "{\"stream_id\":\"s\",\"message\":\"x\",\"attachments\":[{\"name\":\"a\"}]}"),
     "args.attachments[0]: content is missing", 1},
    {R("messages.send", "{\"stream_id\":\"s\",\"message\":\"x\",\"attachments\":[{\"name\":\"a\","
                        "\"content\":\"text\"}]}"),
     "args.attachments[0].content: expected bytes", 1},
    {R("messages.send", "{\"stream_id\":\"s\",\"message\":\"x\",\"attachments\":[{\"name\":"
                        "\"a\\\"b\",\"content\":\"\\u0001b:x\"}]}"),
     "quotes", 1},
    {R("messages.send", "{\"stream_id\":\"s\",\"message\":\"x\",\"attachments\":[{\"name\":\"a\","
                        "\"content\":\"\\u0001b:x\",\"size\":1}]}"),
     "args.attachments[0].size: unknown key", 1},
    {R("messages.send",
       "{\"stream_id\":\"s\",\"message\":\"x\",\"attachments\":[{\"name\":\"a\",\"content\":"
       "\"\\u0001b:x\","
       "\"preview\":\"\\u0001b:p\"},{\"name\":\"b\",\"content\":\"\\u0001b:y\"}]}"),
     "previews must be given for all", 1},
    {R("messages.update", "{\"stream_id\":\"s\",\"message\":\"x\"}"), "args.message_id: missing",
     1},
    {R("messages.update",
       "{\"stream_id\":\"s\",\"message_id\":\"m\",\"message\":\"x\",\"silent\":\"yes\"}"),
     "args.silent: expected a boolean", 1},
    {R("messages.get", "{\"message_id\":[]}"), "args.message_id: expected a string", 1},
    {R("messages.suppress", "{}"), "args.message_id: missing", 1},
    {R("streams.createIm", "{}"), "exactly one of user_ids and user_id", 1},
    {R("streams.createIm", "{\"user_ids\":[1],\"user_id\":2}"),
     "exactly one of user_ids and user_id", 1},
    {R("streams.createIm", "{\"user_ids\":[]}"), "args.user_ids: must hold 1..100", 1},
    {R("streams.createIm", "{\"user_ids\":[1,\"2\"]}"), "args.user_ids[1]: expected an integer", 1},
    {R("streams.createIm", "{\"user_ids\":[-4]}"), "args.user_ids[0]: a user id is a positive", 1},
    {R("streams.createIm", "{\"user_ids\":[18446744073709551615]}"),
     "args.user_ids[0]: expected an integer", 1},
    {R("rooms.addMember", "{\"stream_id\":\"r\",\"user_id\":\"\\u0001f:1.0\"}"),
     "args.user_id: expected an integer", 1},
    {R("rooms.removeMember", "{\"stream_id\":\"r\"}"), "args.user_id: missing", 1},
    {R("users.lookup", "{}"), "exactly one of user_ids, emails and usernames", 1},
    {R("users.lookup", "{\"emails\":[\"a\"],\"usernames\":[\"b\"]}"), "exactly one of", 1},
    {R("users.lookup", "{\"emails\":[\"a,b\"]}"), "without commas", 1},
    {R("users.lookup", "{\"emails\":[\"\"]}"), "non-empty", 1},
    {R("users.lookup", "{\"usernames\":[\"b\"],\"local\":1}"), "args.local: expected a boolean", 1},
};

static void
test_parse(int verbose)
{
    dfb_buf_t b = {0};
    char why[512];
    for (size_t i = 0; i < sizeof s_cases / sizeof s_cases[0]; i++) {
        const parse_case_t *c = &s_cases[i];
        dfb_cmd_req_t req;
        mp(c->json, &b);
        why[0] = 0;
        int rc = dfb_cmd_req_parse(b.data, b.len, 1 << 20, &req, why, sizeof why);
        if (verbose)
            printf("  case %zu: rc %d %s\n", i, rc, why);
        if (c->why == NULL) {
            if (rc != 0)
                fprintf(stderr, "case %zu (%s): %s\n", i, c->json, why);
            CHECK_EQ(rc, 0);
            if (rc == 0) {
                CHECK_STR(req.id, "r1");
                CHECK_EQ(req.frame_len, b.len);
                CHECK(req.args > req.frame && req.args + req.args_len <= req.frame + req.frame_len);
                dfb_cmd_args_t a;
                CHECK_EQ(dfb_cmd_args_read(&req, &a, why, sizeof why), 0);
            }
        } else {
            CHECK_EQ(rc, -1);
            if (!strstr(why, c->why))
                fprintf(stderr, "case %zu (%s): why \"%s\", want \"%s\"\n", i, c->json, why,
                        c->why);
            CHECK(strstr(why, c->why) != NULL);
            CHECK_EQ(req.has_id, c->has_id);
            if (c->has_id)
                CHECK_STR(req.id, "r1");
            CHECK(req.frame == NULL);
        }
        dfb_cmd_req_free(&req);
    }
    dfb_buf_free(&b);
}

static void
test_details(void)
{
    dfb_buf_t b = {0}, out = {0};
    char why[256];
    dfb_cmd_req_t req;
    dfb_cmd_args_t a;

    /* oversize: refused before parsing (garbage bytes, still the size reason) */
    CHECK_EQ(dfb_cmd_req_parse("\xc1\xc1\xc1\xc1\xc1", 5, 4, &req, why, sizeof why), -1);
    CHECK_STR(why, "request of 5 bytes is over bridge.commandsMaxBytes (4)");
    CHECK_EQ(req.has_id, 0);

    /* URL-safe stream id, the op, posts */
    mp(R("messages.send",
         "{\"stream_id\":\"lX1hwfmQ+AK/k/a/BB0y2n///q2+0KfbdA==\",\"message\":\"hi\"}"),
       &b);
    CHECK_EQ(dfb_cmd_req_parse(b.data, b.len, b.len, &req, why, sizeof why), 0);
    CHECK_STR(req.stream, "lX1hwfmQ-AK_k_a_BB0y2n___q2-0KfbdA");
    CHECK_EQ(req.op, DFB_OP_SEND);
    CHECK(dfb_op_posts(req.op));
    CHECK_EQ(dfb_cmd_args_read(&req, &a, why, sizeof why), 0);
    CHECK_EQ(a.data_kind, DFB_CMD_DATA_NONE);
    dfb_cmd_message_text(&a.message, &out);
    CHECK_EQ(out.len, strlen("<messageML>hi</messageML>"));
    CHECK(memcmp(out.data, "<messageML>hi</messageML>", out.len) == 0);
    dfb_buf_reset(&out);
    CHECK_EQ(dfb_cmd_data_json(&a, "0123456789abcdef0123456789abcdef", &out), 0);
    dfb_buf_put(&out, "", 1);
    CHECK_STR((char *)out.data,
              "{\"dfbridge.request\":{\"type\":\"org.dfbridge.request\",\"version\":"
              "\"1.0\",\"id\":\"0123456789abcdef0123456789abcdef\"}}");
    dfb_cmd_req_free(&req);

    /* fingerprint: SHA-256("messages.send\0" + args bytes), pinned from Python's hashlib */
    mp(R("messages.send", "{\"stream_id\":\"s1\",\"message\":\"hi\"}"), &b);
    CHECK_EQ(dfb_cmd_req_parse(b.data, b.len, b.len, &req, why, sizeof why), 0);
    CHECK_STR(hex(req.fp, 32), "1e2923d2956648612995ab8c1f80d1e76e1ae3f83cfea0b96783d593cab92483");
    uint8_t fp1[32];
    memcpy(fp1, req.fp, 32);
    dfb_cmd_req_free(&req);
    /* another id, no v, same args: same fingerprint; other args: another */
    mp("{\"id\":\"zz\",\"op\":\"messages.send\",\"args\":{\"stream_id\":\"s1\",\"message\":\"hi\"}"
       "}",
       &b);
    CHECK_EQ(dfb_cmd_req_parse(b.data, b.len, b.len, &req, why, sizeof why), 0);
    CHECK(memcmp(req.fp, fp1, 32) == 0);
    dfb_cmd_req_free(&req);
    mp(R("messages.send", "{\"stream_id\":\"s1\",\"message\":\"hj\"}"), &b);
    CHECK_EQ(dfb_cmd_req_parse(b.data, b.len, b.len, &req, why, sizeof why), 0);
    CHECK(memcmp(req.fp, fp1, 32) != 0);
    dfb_cmd_req_free(&req);

    /* the map form overrides; data kept byte for byte with the mark appended */
    mp(R("messages.update", "{\"stream_id\":\"s\",\"message_id\":\"m\",\"message\":{\"message\":"
                            "\"<messageML>a</messageML>\",\"data\":\" { \\\"x\\\" : [1] }  \"},"
                            "\"data\":{\"ignored\":1},\"version\":\"2.0\"}"),
       &b);
    CHECK_EQ(dfb_cmd_req_parse(b.data, b.len, b.len, &req, why, sizeof why), 0);
    CHECK_EQ(req.op, DFB_OP_UPDATE);
    CHECK_EQ(dfb_cmd_args_read(&req, &a, why, sizeof why), 0);
    CHECK_EQ(a.data_kind, DFB_CMD_DATA_STR);
    CHECK_EQ(a.silent, -1);
    CHECK(a.has_version && a.version.len == 3);
    dfb_buf_reset(&out);
    dfb_cmd_message_text(&a.message, &out);
    CHECK_EQ(out.len, 24);
    dfb_buf_reset(&out);
    CHECK_EQ(dfb_cmd_data_json(&a, "00000000000000000000000000000000", &out), 0);
    dfb_buf_put(&out, "", 1);
    CHECK_STR((char *)out.data,
              " { \"x\" : [1] ,\"dfbridge.request\":{\"type\":\"org.dfbridge.request\","
              "\"version\":\"1.0\",\"id\":\"00000000000000000000000000000000\"}}");
    dfb_cmd_req_free(&req);

    /* data map -> JSON: exact ints, escapes, floats, empty object */
    mp(R("messages.send",
         "{\"stream_id\":\"s\",\"message\":\"x\",\"data\":{\"e\":{\"big\":9223372036854775807,"
         "\"neg\":-9223372036854775807,\"u\":18446744073709551615,\"f\":\"\\u0001f:2\","
         "\"s\":\"q\\\"\\\\\\n\\u0001\\u00e9\",\"l\":[null,false,{}]}}}"),
       &b);
    CHECK_EQ(dfb_cmd_req_parse(b.data, b.len, b.len, &req, why, sizeof why), 0);
    CHECK_EQ(dfb_cmd_args_read(&req, &a, why, sizeof why), 0);
    CHECK_EQ(a.data_kind, DFB_CMD_DATA_MAP);
    dfb_buf_reset(&out);
    CHECK_EQ(dfb_cmd_data_json(&a, "11111111111111111111111111111111", &out), 0);
    dfb_buf_put(&out, "", 1);
    CHECK_STR((char *)out.data,
              "{\"e\":{\"big\":9223372036854775807,\"neg\":-9223372036854775807,"
              "\"u\":18446744073709551615,\"f\":2.0,\"s\":\"q\\\"\\\\\\n\\u0001\xc3\xa9\","
              "\"l\":[null,false,{}]},\"dfbridge.request\":{\"type\":\"org.dfbridge.request\","
              "\"version\":\"1.0\",\"id\":\"11111111111111111111111111111111\"}}");
    dfb_cmd_req_free(&req);
    mp(R("messages.send", "{\"stream_id\":\"s\",\"message\":\"x\",\"data\":\"{ }\"}"), &b);
    CHECK_EQ(dfb_cmd_req_parse(b.data, b.len, b.len, &req, why, sizeof why), 0);
    CHECK_EQ(dfb_cmd_args_read(&req, &a, why, sizeof why), 0);
    dfb_buf_reset(&out);
    CHECK_EQ(dfb_cmd_data_json(&a, "22222222222222222222222222222222", &out), 0);
    dfb_buf_put(&out, "", 1);
    CHECK_STR((char *)out.data,
              "{ \"dfbridge.request\":{\"type\":\"org.dfbridge.request\",\"version\":"
              "\"1.0\",\"id\":\"22222222222222222222222222222222\"}}");
    dfb_cmd_req_free(&req);

    /* message wrapping: either tag alone means "already MessageML" */
    dfb_cmd_str_t m1 = {"a</messageML>", 13}, m2 = {"<messageML>a", 12};
    dfb_buf_reset(&out);
    dfb_cmd_message_text(&m1, &out);
    CHECK_EQ(out.len, 13);
    dfb_buf_reset(&out);
    dfb_cmd_message_text(&m2, &out);
    CHECK_EQ(out.len, 12);

    /* users.lookup view */
    mp(R("users.lookup", "{\"usernames\":[\"a\",\"b\"],\"active\":true}"), &b);
    CHECK_EQ(dfb_cmd_req_parse(b.data, b.len, b.len, &req, why, sizeof why), 0);
    CHECK_EQ(dfb_cmd_args_read(&req, &a, why, sizeof why), 0);
    CHECK_EQ(a.lookup_by, 'n');
    CHECK_EQ(a.nstrs, 2);
    CHECK_EQ(a.active, 1);
    CHECK_EQ(a.local, -1);
    CHECK_STR(req.stream, "");
    dfb_cmd_req_free(&req);

    /* every byte prefix of a valid request is refused, never read past */
    mp(R("messages.send",
         "{\"stream_id\":\"s\",\"message\":{\"message\":\"x\",\"data\":{\"a\":[1,2.5]},"
         "\"attachments\":[{\"name\":\"n\",\"content\":\"\\u0001b:abc\"}]}}"),
       &b);
    for (size_t n = 0; n < b.len; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, b.data, n);
        CHECK_EQ(dfb_cmd_req_parse(copy, n, 1 << 20, &req, why, sizeof why), -1);
        free(copy);
    }
    CHECK_EQ(dfb_cmd_req_parse(b.data, b.len, 1 << 20, &req, why, sizeof why), 0);
    dfb_cmd_req_free(&req);
    dfb_cmd_req_free(&req); /* twice: harmless */
    dfb_buf_free(&b);
    dfb_buf_free(&out);
}

static void
test_encode(void)
{
    dfb_buf_t out = {0}, o = {0};
    dfb_cmd_outcome_t oc;

    /* ok with a result (an int beyond 2^53 kept) */
    dfb_cmd_outcome_init(&oc);
    oc.ok = 1;
    oc.found = 1;
    oc.definite = 1;
    dfb_mpack_map(&oc.result, 2);
    dfb_mpack_cstr(&oc.result, "messageId");
    dfb_mpack_cstr(&oc.result, "m1");
    dfb_mpack_cstr(&oc.result, "n");
    dfb_mpack_uint(&oc.result, (uint64_t)1 << 62);
    CHECK_EQ(dfb_cmd_outcome_encode(&o, &oc), 0);
    CHECK_STR(hex(o.data, o.len),
              "83a26f6bc3a6726573756c7482a96d6573736167654964a26d31a16ecf4000000000"
              "000000a5666f756e64c3");
    CHECK_EQ(dfb_cmd_reply_from_outcome(&out, "req-1", 5, o.data, o.len, 1), 0);
    CHECK_STR(hex(out.data, out.len),
              "86a17601a26964a57265712d31a26f6bc3a6726573756c7482a96d6573736167654964a26d31a16ecf"
              "4000000000000000a87265706c61796564c3a5666f756e64c3");
    dfb_cmd_outcome_free(&oc);

    /* ok, 204: nil */
    dfb_cmd_outcome_init(&oc);
    oc.ok = 1;
    dfb_buf_reset(&o);
    CHECK_EQ(dfb_cmd_outcome_encode(&o, &oc), 0);
    CHECK_STR(hex(o.data, o.len), "83a26f6bc3a6726573756c74c0a5666f756e64c2");
    dfb_cmd_outcome_free(&oc);

    /* rejected: status kept */
    dfb_cmd_outcome_init(&oc);
    dfb_cmd_outcome_error(&oc, DFB_CMD_REJECTED, 400, "Stream %s not found", "x");
    CHECK_EQ(oc.definite, 1);
    dfb_buf_reset(&o);
    CHECK_EQ(dfb_cmd_outcome_encode(&o, &oc), 0);
    CHECK_STR(hex(o.data, o.len),
              "83a26f6bc2a56572726f7283a4636f6465a872656a6563746564a76d657373616765b253747265616d20"
              "78206e6f7420666f756e64a6737461747573cd0190a5666f756e64c2");
    dfb_buf_reset(&out);
    CHECK_EQ(dfb_cmd_reply_from_outcome(&out, "req-1", 5, o.data, o.len, 0), 0);
    CHECK_STR(hex(out.data, out.len),
              "86a17601a26964a57265712d31a26f6bc2a56572726f7283a4636f6465a872656a6563746564a76d6573"
              "73616765b253747265616d2078206e6f7420666f756e64a6737461747573cd0190a87265706c61796564"
              "c2a5666f756e64c2");
    dfb_cmd_outcome_free(&oc);
    dfb_cmd_outcome_init(&oc);
    dfb_cmd_outcome_error(&oc, DFB_CMD_UNKNOWN_OUTCOME, 0, "x");
    CHECK_EQ(oc.definite, 0);
    dfb_cmd_outcome_free(&oc);

    /* errors decided before any call */
    dfb_buf_reset(&out);
    CHECK_EQ(dfb_cmd_reply_error(&out, NULL, 0, DFB_CMD_BUSY, "queue full", 0, 250), 0);
    CHECK_STR(hex(out.data, out.len),
              "86a17601a26964a0a26f6bc2a56572726f7283a4636f6465a462757379a76d657373616765aa71756575"
              "652066756c6cae72657472795f61667465725f6d73ccfaa87265706c61796564c2a5666f756e64c2");
    dfb_buf_reset(&out);
    CHECK_EQ(dfb_cmd_reply_error(&out, "x", 1, DFB_CMD_BAD_REQUEST, "op: missing", 0, 0), 0);
    CHECK_STR(hex(out.data, out.len),
              "86a17601a26964a178a26f6bc2a56572726f7282a4636f6465ab6261645f72657175657374a76d657373"
              "616765ab6f703a206d697373696e67a87265706c61796564c2a5666f756e64c2");

    /* bad outcome bytes are refused; out is left as it was */
    dfb_buf_reset(&out);
    static const uint8_t bad1[] = {0x81, 0xa2, 'o', 'k'};       /* truncated */
    static const uint8_t bad2[] = {0x81, 0xa2, 'o', 'k', 0xc3}; /* no result */
    static const uint8_t bad3[] = {0x82, 0xa2, 'o', 'k', 0xc2, 0xa5, 'e', 'r', 'r', 'o', 'r', 0x01};
    CHECK_EQ(dfb_cmd_reply_from_outcome(&out, "a", 1, bad1, sizeof bad1, 0), -1);
    CHECK_EQ(dfb_cmd_reply_from_outcome(&out, "a", 1, bad2, sizeof bad2, 0), -1);
    CHECK_EQ(dfb_cmd_reply_from_outcome(&out, "a", 1, bad3, sizeof bad3, 0), -1);
    CHECK_EQ(dfb_cmd_reply_from_outcome(&out, "a", 1, NULL, 0, 0), -1);
    CHECK_EQ(out.len, 0);
    dfb_buf_free(&out);
    dfb_buf_free(&o);
}

int
dfb_cmdproto_test(int verbose)
{
    df_check_failures = 0;
    /* op names */
    for (int i = 0; i < DFB_OP_COUNT; i++)
        CHECK_EQ(dfb_op_from_name(dfb_op_name((dfb_op_t)i), strlen(dfb_op_name((dfb_op_t)i))), i);
    CHECK_EQ(dfb_op_from_name("messages.sen", 12), -1);
    CHECK_STR(dfb_op_name(DFB_OP_CREATE_IM), "streams.createIm");
    CHECK_STR(dfb_op_name(DFB_OP_USERS), "users.lookup");
    CHECK_EQ(dfb_op_posts(DFB_OP_UPDATE), 1);
    CHECK_EQ(dfb_op_posts(DFB_OP_GET), 0);
    /* the mark, pinned from Python's hashlib */
    char mark[33];
    dfb_cmd_mark("worker-a", 8, "req-1", 5, mark);
    CHECK_STR(mark, "26fd2676914c4e42d608cd529ec0068a");
    dfb_cmd_mark("", 0, "r1", 2, mark);
    CHECK_STR(mark, "1c576d054cf95535a3c62ab836946e46");
    char safe[64];
    dfb_cmd_urlsafe_id("abc", 3, safe, sizeof safe);
    CHECK_STR(safe, "abc");
    dfb_cmd_urlsafe_id("a+b/c==", 7, safe, sizeof safe);
    CHECK_STR(safe, "a-b_c");
    test_parse(verbose);
    test_details();
    test_encode();
    return DF_CHECK_RESULT();
}
