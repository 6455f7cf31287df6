/*  consumer_golden: libdfconsumer reads every valid golden vector of the wire
    contract (schemas/golden/vectors.json, made by python3-msgpack): each body
    decodes, equals its JSON input value by value (exact ints, -0.0, key
    order), envelopes give the stated fields, and the constructed Symphony
    events come out right in the typed structs and the default filter. */
#include <math.h>

#include "testutil.h"

#include "dfc_internal.h"

static uint8_t *
unhex(const char *hex, size_t *len)
{
    size_t n = strlen(hex) / 2;
    uint8_t *out = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) {
        unsigned b;
        sscanf(hex + 2 * i, "%2x", &b);
        out[i] = (uint8_t)b;
    }
    *len = n;
    return out;
}

/*  Replaces the one occurrence of ph in s by unit repeated times. */
static char *
expand(const char *s, const char *ph, const char *unit, long times)
{
    const char *at = strstr(s, ph);
    if (!at)
        return strdup(s);
    size_t ul = strlen(unit), pl = strlen(ph), head = (size_t)(at - s);
    size_t total = strlen(s) - pl + ul * (size_t)times;
    char *out = malloc(total + 1), *p = out;
    memcpy(p, s, head);
    p += head;
    for (long i = 0; i < times; i++, p += ul)
        memcpy(p, unit, ul);
    strcpy(p, at + pl);
    return out;
}

/*  Value-by-value equality with jansson's reading of the JSON input. */
static bool
same(const dfc_value_t *v, const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        if (dfc_value_type(v) != DFC_MAP || dfc_value_size(v) != json_object_size(j))
            return false;
        const char *k;
        json_t *jv;
        size_t i = 0;
        json_object_foreach((json_t *)j, k, jv)
        {
            size_t kl;
            const char *vk = dfc_value_str(dfc_value_key_at(v, i), &kl);
            if (!vk || kl != strlen(k) || memcmp(vk, k, kl) || !same(dfc_value_item_at(v, i), jv))
                return false;
            i++;
        }
        return true;
    }
    case JSON_ARRAY:
        if (dfc_value_type(v) != DFC_ARRAY || dfc_value_size(v) != json_array_size(j))
            return false;
        for (size_t i = 0; i < json_array_size(j); i++)
            if (!same(dfc_value_at(v, i), json_array_get(j, i)))
                return false;
        return true;
    case JSON_STRING: {
        size_t len;
        const char *s = dfc_value_str(v, &len);
        return dfc_value_type(v) == DFC_STR && len == json_string_length(j) &&
               memcmp(s, json_string_value(j), len) == 0;
    }
    case JSON_INTEGER: {
        int64_t i;
        return dfc_value_int64(v, &i) == 0 && i == json_integer_value(j);
    }
    case JSON_REAL: {
        double d = dfc_value_double(v);
        return dfc_value_type(v) == DFC_DOUBLE && d == json_real_value(j) &&
               signbit(d) == signbit(json_real_value(j));
    }
    case JSON_TRUE:
    case JSON_FALSE:
        return dfc_value_type(v) == DFC_BOOL && dfc_value_bool(v) == json_is_true(j);
    case JSON_NULL:
        return dfc_value_type(v) == DFC_NIL;
    }
    return false;
}

static int compared, decoded, envelopes;

static void
check_typed(const char *name, const dfc_event_t *ev)
{
    const dfc_initiator_t *in = dfc_event_initiator(ev);
    bool accept = dfc_default_is_accepting(NULL, ev, in, dfc_event_bot(ev));
    if (strstr(name, "constructed_messagesent_ulPr8a")) {
        CHECK_EQ(in->user.user_id, 68719476737LL);
        CHECK_STR(in->user.email, "jane.doe@example.com");
        CHECK_STR(dfc_value_str(dfc_value_get(dfc_event_value(ev),
                                              "payload.messageSent.message.stream.streamId"),
                                NULL),
                  "wTmSDJSNPXgB4iJ2Ou1B7n___oZxZ4O1dA");
        CHECK(accept);
    } else if (strstr(name, "constructed_messagesent_self01")) {
        CHECK_EQ(in->user.user_id, 68719476738LL);
        CHECK(!accept); /* the bot's own message */
    } else if (strstr(name, "constructed_userjoinedroom")) {
        CHECK_STR(dfc_event_id(ev), "q2Bn3k");
        CHECK(accept);
    }
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: consumer_test_golden vectors.json\n");
        return 2;
    }
    json_error_t jerr;
    json_t *root = json_load_file(argv[1], 0, &jerr);
    if (!root) {
        fprintf(stderr, "cannot read %s: %s\n", argv[1], jerr.text);
        return 2;
    }
    dfc_log_set_level(DFC_LOG_ERROR);
    json_t *valid = json_object_get(root, "valid");
    CHECK(json_array_size(valid) > 100);
    size_t i;
    json_t *vec;
    json_array_foreach(valid, i, vec)
    {
        const char *name = json_string_value(json_object_get(vec, "name"));
        char *hex = strdup(json_string_value(json_object_get(vec, "msgpack_hex")));
        char *text = strdup(json_string_value(json_object_get(vec, "json")));
        json_t *reps = json_object_get(vec, "repeat");
        size_t k;
        json_t *r;
        json_array_foreach(reps, k, r)
        {
            const char *ph = json_string_value(json_object_get(r, "placeholder"));
            long times = (long)json_integer_value(json_object_get(r, "times"));
            char *t2 = expand(text, ph, json_string_value(json_object_get(r, "json_unit")), times);
            free(text);
            text = t2;
            const char *hu = json_string_value(json_object_get(r, "msgpack_hex_unit"));
            if (hu) {
                char *h2 = expand(hex, ph, hu, times);
                free(hex);
                hex = h2;
            }
        }
        size_t len;
        uint8_t *body = unhex(hex, &len);
        const char *topic = json_string_value(json_object_get(vec, "topic"));
        json_t *env = json_object_get(vec, "envelope");
        dfc_doc_t *doc = NULL;
        int rc = dfc_doc_parse(body, len, &doc);
        if (rc != DFC_OK)
            fprintf(stderr, "vector %s: decode failed (%d)\n", name, rc);
        CHECK_EQ(rc, DFC_OK);
        const dfc_value_t *value = dfc_doc_root(doc);
        dfc_event_t *ev = NULL;
        if (rc == DFC_OK)
            decoded++;
        if (rc == DFC_OK && json_is_object(env)) {
            dfc_msg_status_t st;
            ev = dfc_event_new(topic, strlen(topic), body, len, 1u << 30, &st);
            CHECK_EQ(st, DFC_MSG_OK);
            if (ev) {
                envelopes++;
                char num[32];
                snprintf(num, sizeof num, "%llu", (unsigned long long)dfc_event_seq(ev));
                CHECK_STR(num, json_string_value(json_object_get(env, "seq")));
                snprintf(num, sizeof num, "%llu", (unsigned long long)dfc_event_gseq(ev));
                CHECK_STR(num, json_string_value(json_object_get(env, "gseq")));
                snprintf(num, sizeof num, "%llu", (unsigned long long)dfc_event_ts(ev));
                CHECK_STR(num, json_string_value(json_object_get(env, "ts")));
                snprintf(num, sizeof num, "%lld", (long long)dfc_event_bot(ev));
                CHECK_STR(num, json_string_value(json_object_get(env, "bot")));
                CHECK_STR(dfc_event_epoch(ev), json_string_value(json_object_get(env, "epoch")));
                CHECK_STR(dfc_event_topic(ev), topic);
                value = dfc_event_value(ev);
                check_typed(name, ev);
            }
        }
        /* jansson cannot hold every input (ints beyond int64, 1e400,
           duplicate keys): those are covered by decode + envelope only */
        json_t *j =
            json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
        if (j && rc == DFC_OK) {
            if (!same(value, j)) {
                fprintf(stderr, "vector %s: decoded value differs from its JSON\n", name);
                failures++;
            }
            compared++;
        }
        json_decref(j);
        dfc_event_unref(ev);
        dfc_doc_destroy(&doc);
        free(body);
        free(hex);
        free(text);
    }
    json_decref(root);
    printf("consumer_golden: %d decoded, %d compared with their JSON, %d envelopes\n", decoded,
           compared, envelopes);
    CHECK(compared > 90);
    CHECK(envelopes >= 9);
    if (failures)
        fprintf(stderr, "consumer_golden: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
