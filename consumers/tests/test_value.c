/*  consumer_value: the bounded msgpack decoder, the value accessors, the JSON
    printer, the envelope check and the typed decoding of events, including
    a hostile-input corpus and every truncation of a valid message. */
#include "testutil.h"

#include "dfc_internal.h"

static dfc_doc_t *
parse_ok(const void *buf, size_t len)
{
    dfc_doc_t *doc = NULL;
    int rc = dfc_doc_parse(buf, len, &doc);
    CHECK_EQ(rc, DFC_OK);
    return doc;
}

static void
test_scalars(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 12);
    msgpack_pack_int64(&pk, INT64_MIN);
    msgpack_pack_uint64(&pk, UINT64_MAX);
    msgpack_pack_int64(&pk, -1);
    msgpack_pack_int64(&pk, 9007199254740993LL); /* 2^53 + 1 */
    msgpack_pack_double(&pk, -0.0);
    msgpack_pack_double(&pk, 0.1);
    msgpack_pack_float(&pk, 1.5f);
    msgpack_pack_str_with_body(&pk, "a\0b", 3);
    msgpack_pack_bin_with_body(&pk, "\x01\x02\x03\x04", 4);
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    msgpack_pack_double(&pk, 3.0);

    dfc_doc_t *doc = parse_ok(sb.data, sb.size);
    const dfc_value_t *a = dfc_doc_root(doc);
    CHECK_EQ(dfc_value_type(a), DFC_ARRAY);
    CHECK_EQ(dfc_value_size(a), 12);
    int64_t i64 = 0;
    uint64_t u64 = 0;
    CHECK(dfc_value_int64(dfc_value_at(a, 0), &i64) == 0 && i64 == INT64_MIN);
    CHECK(dfc_value_uint64(dfc_value_at(a, 1), &u64) == 0 && u64 == UINT64_MAX);
    CHECK(dfc_value_int64(dfc_value_at(a, 1), &i64) == -1); /* does not fit */
    CHECK_EQ(dfc_value_type(dfc_value_at(a, 2)), DFC_INT);
    CHECK(dfc_value_int64(dfc_value_at(a, 3), &i64) == 0 && i64 == 9007199254740993LL);
    CHECK_EQ(dfc_value_type(dfc_value_at(a, 3)), DFC_UINT);
    CHECK_EQ(dfc_value_type(dfc_value_at(a, 4)), DFC_DOUBLE);
    CHECK(dfc_value_double(dfc_value_at(a, 6)) == 1.5);
    size_t len = 0;
    const char *s = dfc_value_str(dfc_value_at(a, 7), &len);
    CHECK(s && len == 3 && memcmp(s, "a\0b", 3) == 0);
    CHECK_EQ(dfc_value_type(dfc_value_at(a, 8)), DFC_BIN);
    CHECK(dfc_value_at(a, 12) == NULL);

    char json[512];
    size_t need = dfc_value_to_json(a, json, sizeof json);
    CHECK_STR(json, "[-9223372036854775808,18446744073709551615,-1,9007199254740993,-0.0,"
                    "0.10000000000000001,1.5,\"a\\u0000b\",\"AQIDBA==\",null,true,3.0]");
    CHECK_EQ(need, strlen(json));
    /* snprintf semantics: truncated output, full length returned */
    char small[8];
    CHECK_EQ(dfc_value_to_json(a, small, sizeof small), need);
    CHECK_STR(small, "[-92233");
    dfc_doc_destroy(&doc);
    CHECK(doc == NULL);
    dfc_doc_destroy(&doc); /* NULL accepted */
    msgpack_sbuffer_destroy(&sb);
}

static void
test_strings_json(void)
{
    /* control chars as \u00XX, quotes and backslashes escaped, valid UTF-8
       (2, 3, 4 bytes) passed through, invalid bytes as \ufffd */
    const char in[] = "q\"b\\\n\t\x01\x1f\x7f é € 😀 \xff\xc0\xaf\xed\xa0\x80 end";
    char out[256];
    dfc_json_string(in, sizeof in - 1, out, sizeof out);
    CHECK_STR(out, "\"q\\\"b\\\\\\u000a\\u0009\\u0001\\u001f\x7f é € 😀 "
                   "\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd end\"");
    char d[48];
    dfc_json_double(d, sizeof d, 1e300);
    CHECK_STR(d, "1.0000000000000001e+300");
    dfc_json_double(d, sizeof d, 0.0 / 0.0);
    CHECK_STR(d, "null");
    dfc_json_double(d, sizeof d, -2.5);
    CHECK_STR(d, "-2.5");
}

static const char *fixture_event =
    "{\"id\":\"ulPr8a\",\"messageId\":\"CszQa6\",\"timestamp\":1700000000000,"
    "\"type\":\"MESSAGESENT\","
    "\"initiator\":{\"user\":{\"userId\":9007199254740993,\"firstName\":\"Jane\","
    "\"lastName\":\"Doe\",\"displayName\":\"Jane Doe\",\"email\":\"jane.doe@example.com\","
    "\"username\":\"jane.doe\"}},"
    "\"payload\":{\"messageSent\":{\"message\":{\"messageId\":\"CszQa6\","
    "\"timestamp\":1700000000001,\"message\":\"<div>hello</div>\",\"data\":\"{}\","
    "\"attachments\":[{\"id\":\"att1\",\"name\":\"a.txt\",\"size\":12}],"
    "\"user\":{\"userId\":68719476737,\"username\":\"jane.doe\"},"
    "\"stream\":{\"streamId\":\"wTmSDJ\",\"streamType\":\"ROOM\",\"roomName\":\"Test room\","
    "\"external\":true,\"crossPod\":false},\"externalRecipients\":true,\"sid\":\"fa69\","
    "\"initialTimestamp\":-5}}}}";

static void
test_envelope_and_event(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    tu_envelope(&sb, 7, 42, "ep-1", 68719476738LL, fixture_event);
    dfc_msg_status_t st;
    dfc_event_t *ev = dfc_event_new("MESSAGESENT", 11, sb.data, sb.size, 1 << 20, &st);
    CHECK_EQ(st, DFC_MSG_OK);
    if (!ev) {
        msgpack_sbuffer_destroy(&sb);
        return;
    }
    CHECK_STR(dfc_event_topic(ev), "MESSAGESENT");
    CHECK_STR(dfc_event_type(ev), "MESSAGESENT");
    CHECK_STR(dfc_event_id(ev), "ulPr8a");
    CHECK_STR(dfc_event_epoch(ev), "ep-1");
    CHECK_EQ(dfc_event_seq(ev), 7);
    CHECK_EQ(dfc_event_gseq(ev), 42);
    CHECK_EQ(dfc_event_bot(ev), 68719476738LL);
    CHECK_EQ(dfc_event_ts(ev), 1700000000123LL);
    CHECK_EQ(dfc_event_timestamp(ev), 1700000000000LL);
    const dfc_initiator_t *in = dfc_event_initiator(ev);
    CHECK(in->user.has_user_id);
    CHECK_EQ(in->user.user_id, 9007199254740993LL);
    CHECK_STR(in->user.email, "jane.doe@example.com");
    CHECK_STR(in->user.first_name, "Jane");
    CHECK_STR(in->user.last_name, "Doe");
    CHECK_STR(in->user.display_name, "Jane Doe");
    CHECK_STR(in->user.username, "jane.doe");

    const dfc_value_t *e = dfc_event_value(ev);
    CHECK_STR(dfc_value_str(dfc_value_get(e, "payload.messageSent.message.stream.streamId"), NULL),
              "wTmSDJ");
    CHECK_STR(
        dfc_value_str(dfc_value_get(e, "payload.messageSent.message.attachments.0.name"), NULL),
        "a.txt");
    CHECK(dfc_value_get(e, "payload.messageSent.message.attachments.1") == NULL);
    CHECK(dfc_value_get(e, "payload.messageSent.message.attachments.x") == NULL);
    CHECK(dfc_value_get(e, "payload.nothing.here") == NULL);
    CHECK(dfc_value_get(dfc_event_envelope(ev), "event") == e);

    /* the typed view, through the dispatcher */
    dfc_event_unref(ev);

    /* refusals, one per reason */
    CHECK(dfc_event_new("T", 1, sb.data, sb.size, sb.size - 1, &st) == NULL);
    CHECK_EQ(st, DFC_MSG_OVERSIZE);
    char longtopic[300];
    memset(longtopic, 'A', sizeof longtopic);
    CHECK(dfc_event_new(longtopic, sizeof longtopic, sb.data, sb.size, 1 << 20, &st) == NULL);
    CHECK_EQ(st, DFC_MSG_BAD_FRAMES);

    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    struct {
        const char *what;
        dfc_msg_status_t want;
    } cases[] = {{"array", DFC_MSG_NOT_MAP},         {"v2", DFC_MSG_BAD_VERSION},
                 {"nov", DFC_MSG_BAD_VERSION},       {"seqstr", DFC_MSG_BAD_ENVELOPE},
                 {"epochint", DFC_MSG_BAD_ENVELOPE}, {"noevent", DFC_MSG_BAD_EVENT},
                 {"eventstr", DFC_MSG_BAD_EVENT}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *w = cases[i].what;
        msgpack_sbuffer_clear(&sb);
        if (!strcmp(w, "array")) {
            msgpack_pack_array(&pk, 0);
        } else {
            msgpack_pack_map(&pk, !strcmp(w, "noevent") || !strcmp(w, "nov") ? 6 : 7);
            if (strcmp(w, "nov")) {
                msgpack_pack_str_with_body(&pk, "v", 1);
                msgpack_pack_uint64(&pk, !strcmp(w, "v2") ? 2 : 1);
            }
            msgpack_pack_str_with_body(&pk, "seq", 3);
            if (!strcmp(w, "seqstr"))
                msgpack_pack_str_with_body(&pk, "1", 1);
            else
                msgpack_pack_uint64(&pk, 1);
            msgpack_pack_str_with_body(&pk, "gseq", 4);
            msgpack_pack_uint64(&pk, 1);
            msgpack_pack_str_with_body(&pk, "epoch", 5);
            if (!strcmp(w, "epochint"))
                msgpack_pack_uint64(&pk, 1);
            else
                msgpack_pack_str_with_body(&pk, "e", 1);
            msgpack_pack_str_with_body(&pk, "ts", 2);
            msgpack_pack_uint64(&pk, 1);
            msgpack_pack_str_with_body(&pk, "bot", 3);
            msgpack_pack_int64(&pk, 1);
            if (strcmp(w, "noevent")) {
                msgpack_pack_str_with_body(&pk, "event", 5);
                if (!strcmp(w, "eventstr"))
                    msgpack_pack_str_with_body(&pk, "x", 1);
                else
                    msgpack_pack_map(&pk, 0);
            }
        }
        ev = dfc_event_new("T", 1, sb.data, sb.size, 1 << 20, &st);
        CHECK(ev == NULL);
        if (st != cases[i].want)
            fprintf(stderr, "case %s: status %d\n", w, st);
        CHECK_EQ(st, cases[i].want);
        dfc_event_unref(ev);
    }
    msgpack_sbuffer_destroy(&sb);
}

/*  Inputs that must be refused without a crash or a big allocation. */
static void
test_hostile(void)
{
    static uint8_t deep[10001];
    memset(deep, 0x91, 10000); /* fixarray of 1, nested 10000 deep */
    deep[10000] = 0xc0;
    static uint8_t dfs[64];
    memset(dfs, 0xdf, sizeof dfs);
    struct {
        const char *name;
        const void *p;
        size_t n;
    } corpus[] = {
        {"array32 of 2^32-1", "\xdd\xff\xff\xff\xff", 5},
        {"map32 chain", dfs, sizeof dfs},
        {"truncated str32",
         "\xdb\x00\x00\x10\x00"
         "abc",
         8},
        {"truncated bin32",
         "\xc6\xff\xff\xff\xff"
         "a",
         6},
        {"truncated ext32",
         "\xc9\x7f\xff\xff\xff\x01"
         "a",
         7},
        {"deep nesting 10000", deep, sizeof deep},
        {"map with int key", "\x81\x01\x02", 3},
        {"map with nil key", "\x81\xc0\x02", 3},
        {"reserved 0xc1", "\xc1", 1},
        {"empty", "", 0},
        {"trailing bytes", "\xc0\xc0", 2},
        {"fixmap short",
         "\x82\xa1"
         "a"
         "\x01",
         4},
        {"uint64 cut", "\xcf\x00\x00", 3},
        {"map16 lies",
         "\xde\xff\xff\xa1"
         "a",
         5},
    };
    for (size_t i = 0; i < sizeof corpus / sizeof corpus[0]; i++) {
        dfc_doc_t *doc = NULL;
        int rc = dfc_doc_parse(corpus[i].p, corpus[i].n, &doc);
        if (rc != DFC_EINVAL)
            fprintf(stderr, "hostile input '%s' gave %d\n", corpus[i].name, rc);
        CHECK_EQ(rc, DFC_EINVAL);
        CHECK(doc == NULL);
    }
    /* depth: DFC_MAX_DEPTH nested containers are fine, one more is not */
    uint8_t ok[DFC_MAX_DEPTH + 2];
    memset(ok, 0x91, sizeof ok);
    ok[DFC_MAX_DEPTH] = 0xc0;
    dfc_doc_t *doc = NULL;
    CHECK_EQ(dfc_doc_parse(ok, DFC_MAX_DEPTH + 1, &doc), DFC_OK);
    dfc_doc_destroy(&doc);
    ok[DFC_MAX_DEPTH] = 0x91;
    ok[DFC_MAX_DEPTH + 1] = 0xc0;
    CHECK_EQ(dfc_doc_parse(ok, DFC_MAX_DEPTH + 2, &doc), DFC_EINVAL);

    /* every strict prefix of a valid message is refused, the whole accepted */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    tu_envelope(&sb, 1, 1, "e", 1, fixture_event);
    for (size_t n = 0; n < sb.size; n++) {
        int rc = dfc_doc_parse(sb.data, n, &doc);
        CHECK_EQ(rc, DFC_EINVAL);
    }
    CHECK_EQ(dfc_doc_parse(sb.data, sb.size, &doc), DFC_OK);
    dfc_doc_destroy(&doc);

    /* deterministic mutations: never crash (ASan/UBSan watch the rest) */
    uint8_t *buf = malloc(sb.size);
    unsigned seed = 12345;
    int accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(buf, sb.data, sb.size);
        for (int k = 0; k < 3; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % sb.size;
            seed = seed * 1103515245u + 12345u;
            buf[pos] = (uint8_t)(seed >> 16);
        }
        if (dfc_doc_parse(buf, sb.size, &doc) == DFC_OK) {
            accepted++;
            char json[64];
            dfc_value_to_json(dfc_doc_root(doc), json, sizeof json);
            dfc_doc_destroy(&doc);
        }
    }
    CHECK(accepted > 0 && accepted < 20000);
    free(buf);
    msgpack_sbuffer_destroy(&sb);
}

int
main(void)
{
    dfc_log_set_level(DFC_LOG_ERROR);
    test_scalars();
    test_strings_json();
    test_envelope_and_event();
    test_hostile();
    return df_check_report("consumer_value");
}
