#!/usr/bin/python3
"""Generates schemas/golden/vectors.json: JSON inputs and the exact msgpack
bytes contract v1 requires, computed with python3-msgpack (independently of
the C transcoder). `generate.py --check FILE` regenerates and compares.

Run with Debian's /usr/bin/python3 (python3-msgpack 1.0.x)."""
import json
import sys

import msgpack

# depth_512 recurses through json.loads and pack().
sys.setrecursionlimit(20000)

# Events from /work/shared/reference/data: constructed-v5-fixtures.json
# (read_datafeed_200, written for this project) and
# java-test-read_datafeed_v4_eventlist.json (finos/symphony-bdk-java test
# resource, Apache-2.0), re-serialised with key order kept.
FIXTURES = [
    ('constructed_messagesent_ulPr8a',
     '{"id":"ulPr8a","messageId":"CszQa6uPAA9V2ZvK0dCl4X___oWnF5B8dA","timestamp":1700000000000,"type":"MESSAGESENT","initiator":{"user":{"userId":68719476737,"firstName":"Jane","lastName":"Doe","displayName":"Jane Doe","email":"jane.doe@example.com","username":"jane.doe"}},"payload":{"messageSent":{"message":{"messageId":"CszQa6uPAA9V2ZvK0dCl4X___oWnF5B8dA","timestamp":1700000000000,"message":"<div data-format=\\"PresentationML\\" data-version=\\"2.0\\" class=\\"wysiwyg\\"><p>hello <span class=\\"entity\\" data-entity-id=\\"0\\">@bot</span></p></div>","data":"{\\"0\\":{\\"id\\":[{\\"type\\":\\"com.symphony.user.userId\\",\\"value\\":\\"68719476738\\"}],\\"type\\":\\"com.symphony.user.mention\\"}}","attachments":[],"user":{"userId":68719476737,"firstName":"Jane","lastName":"Doe","displayName":"Jane Doe","email":"jane.doe@example.com","username":"jane.doe"},"stream":{"streamId":"wTmSDJSNPXgB4iJ2Ou1B7n___oZxZ4O1dA","streamType":"ROOM","roomName":"Test room","external":false,"crossPod":false},"externalRecipients":false,"userAgent":"DESKTOP-40.0.0-10665-MacOSX-10.15.7-Chrome-90.0.4430.212","originalFormat":"com.symphony.messageml.v2","sid":"fa691cd3-484a-4109-aeb2-57c05b78c95b"}}}}'),
    ('constructed_roomcreated_q2Bn3k',
     '{"id":"q2Bn3k","timestamp":1700000001000,"type":"ROOMCREATED","initiator":{"user":{"userId":68719476737,"displayName":"Jane Doe","email":"jane.doe@example.com","username":"jane.doe"}},"payload":{"roomCreated":{"stream":{"streamId":"aBcD1234efGH5678ijKL___oZxZ4O1dA","streamType":"ROOM","roomName":"New room"},"roomProperties":{"name":"New room","description":"","creatorUser":{"userId":68719476737,"displayName":"Jane Doe","username":"jane.doe"},"createdDate":1700000001000,"external":false,"crossPod":false,"public":false,"copyProtected":false,"readOnly":false,"discoverable":false,"membersCanInvite":true,"keywords":[],"canViewHistory":true}}}}'),
    ('constructed_userjoinedroom_q2Bn3k',
     '{"id":"q2Bn3k","timestamp":1700000001000,"type":"USERJOINEDROOM","initiator":{"user":{"userId":68719476737,"displayName":"Jane Doe","username":"jane.doe"}},"payload":{"userJoinedRoom":{"stream":{"streamId":"aBcD1234efGH5678ijKL___oZxZ4O1dA","streamType":"ROOM","roomName":"New room"},"affectedUser":{"userId":68719476738,"displayName":"My Bot","username":"my-bot"}}}}'),
    ('constructed_symphonyelementsaction_z9Yx8w',
     '{"id":"z9Yx8w","timestamp":1700000002000,"type":"SYMPHONYELEMENTSACTION","initiator":{"user":{"userId":68719476737,"displayName":"Jane Doe","username":"jane.doe"}},"payload":{"symphonyElementsAction":{"stream":{"streamId":"wTmSDJSNPXgB4iJ2Ou1B7n___oZxZ4O1dA","streamType":"ROOM"},"formMessageId":"pHRLfQB2pCuqX8TnE1PB0H___oWnF5B8bQ","formId":"form_id","formValues":{"action":"submit_button","name_01":"value"}}}}'),
    ('constructed_messagesent_self01',
     '{"id":"self01","timestamp":1700000003000,"type":"MESSAGESENT","initiator":{"user":{"userId":68719476738,"displayName":"My Bot","username":"my-bot"}},"payload":{"messageSent":{"message":{"messageId":"selfMsg1","timestamp":1700000003000,"message":"<div data-format=\\"PresentationML\\" data-version=\\"2.0\\">bot reply</div>","user":{"userId":68719476738,"username":"my-bot"},"stream":{"streamId":"wTmSDJSNPXgB4iJ2Ou1B7n___oZxZ4O1dA","streamType":"ROOM"}}}}}'),
    ('java_bdk_messagesent',
     '{\n  "id": "ulPr8a:eFFDL7",\n  "messageId": "CszQa6uPAA9V...",\n  "timestamp": 1536346282592,\n  "type": "MESSAGESENT",\n  "initiator": {\n    "user": {\n      "userId": 1456852,\n      "displayName": "Local Bot01",\n      "email": "bot.user1@test.com",\n      "username": "bot.user1"\n    }\n  },\n  "payload": {\n    "messageSent": {\n      "message": {\n        "messageId": "CszQa6uPAA9",\n        "timestamp": 1536346282592,\n        "message": "<div data-format=\\"PresentationML\\" data-version=\\"2.0\\">Hello World</div>",\n        "data": "{\\"entityIdentifier\\":{\\"type\\":\\"org.symphonyoss.fin.security\\",\\"version\\":\\"0.1\\",\\"id\\":[{\\"type\\":\\"org.symphonyoss.fin.security.id.isin\\",\\"value\\":\\"US0378\\"},{\\"type\\":\\"org.symphonyoss.fin.security.id.cusip\\",\\"value\\":\\"037\\"},{\\"type\\":\\"org.symphonyoss.fin.security.id.openfigi\\",\\"value\\":\\"BBG000\\"}]}}",\n        "user": {\n          "userId": 14568529,\n          "displayName": "Local Bot01",\n          "email": "bot.user1@ntest.com",\n          "username": "bot.user1"\n        },\n        "stream": {\n          "streamId": "wTmSDJSNPXgB...",\n          "streamType": "ROOM"\n        },\n        "externalRecipients": false,\n        "userAgent": "Agent-2.2.8-Linux-4.9.77-31.58.amzn1.x86_64",\n        "originalFormat": "com.symphony.messageml.v2",\n        "sid": "a4d08d18-0729-4b54-9c4568da"\n      }\n    }\n  }\n}'),
]
READ_BODY = '{"ackId":"AAECAwQFBgcICQ==-3","events":[{"id":"ulPr8a","messageId":"CszQa6uPAA9V2ZvK0dCl4X___oWnF5B8dA","timestamp":1700000000000,"type":"MESSAGESENT","initiator":{"user":{"userId":68719476737,"firstName":"Jane","lastName":"Doe","displayName":"Jane Doe","email":"jane.doe@example.com","username":"jane.doe"}},"payload":{"messageSent":{"message":{"messageId":"CszQa6uPAA9V2ZvK0dCl4X___oWnF5B8dA","timestamp":1700000000000,"message":"<div data-format=\\"PresentationML\\" data-version=\\"2.0\\" class=\\"wysiwyg\\"><p>hello <span class=\\"entity\\" data-entity-id=\\"0\\">@bot</span></p></div>","data":"{\\"0\\":{\\"id\\":[{\\"type\\":\\"com.symphony.user.userId\\",\\"value\\":\\"68719476738\\"}],\\"type\\":\\"com.symphony.user.mention\\"}}","attachments":[],"user":{"userId":68719476737,"firstName":"Jane","lastName":"Doe","displayName":"Jane Doe","email":"jane.doe@example.com","username":"jane.doe"},"stream":{"streamId":"wTmSDJSNPXgB4iJ2Ou1B7n___oZxZ4O1dA","streamType":"ROOM","roomName":"Test room","external":false,"crossPod":false},"externalRecipients":false,"userAgent":"DESKTOP-40.0.0-10665-MacOSX-10.15.7-Chrome-90.0.4430.212","originalFormat":"com.symphony.messageml.v2","sid":"fa691cd3-484a-4109-aeb2-57c05b78c95b"}}}},{"id":"q2Bn3k","timestamp":1700000001000,"type":"ROOMCREATED","initiator":{"user":{"userId":68719476737,"displayName":"Jane Doe","email":"jane.doe@example.com","username":"jane.doe"}},"payload":{"roomCreated":{"stream":{"streamId":"aBcD1234efGH5678ijKL___oZxZ4O1dA","streamType":"ROOM","roomName":"New room"},"roomProperties":{"name":"New room","description":"","creatorUser":{"userId":68719476737,"displayName":"Jane Doe","username":"jane.doe"},"createdDate":1700000001000,"external":false,"crossPod":false,"public":false,"copyProtected":false,"readOnly":false,"discoverable":false,"membersCanInvite":true,"keywords":[],"canViewHistory":true}}}},{"id":"q2Bn3k","timestamp":1700000001000,"type":"USERJOINEDROOM","initiator":{"user":{"userId":68719476737,"displayName":"Jane Doe","username":"jane.doe"}},"payload":{"userJoinedRoom":{"stream":{"streamId":"aBcD1234efGH5678ijKL___oZxZ4O1dA","streamType":"ROOM","roomName":"New room"},"affectedUser":{"userId":68719476738,"displayName":"My Bot","username":"my-bot"}}}},{"id":"z9Yx8w","timestamp":1700000002000,"type":"SYMPHONYELEMENTSACTION","initiator":{"user":{"userId":68719476737,"displayName":"Jane Doe","username":"jane.doe"}},"payload":{"symphonyElementsAction":{"stream":{"streamId":"wTmSDJSNPXgB4iJ2Ou1B7n___oZxZ4O1dA","streamType":"ROOM"},"formMessageId":"pHRLfQB2pCuqX8TnE1PB0H___oWnF5B8bQ","formId":"form_id","formValues":{"action":"submit_button","name_01":"value"}}}},{"id":"self01","timestamp":1700000003000,"type":"MESSAGESENT","initiator":{"user":{"userId":68719476738,"displayName":"My Bot","username":"my-bot"}},"payload":{"messageSent":{"message":{"messageId":"selfMsg1","timestamp":1700000003000,"message":"<div data-format=\\"PresentationML\\" data-version=\\"2.0\\">bot reply</div>","user":{"userId":68719476738,"username":"my-bot"},"stream":{"streamId":"wTmSDJSNPXgB4iJ2Ou1B7n___oZxZ4O1dA","streamType":"ROOM"}}}}}]}'

ENV_A = {"seq": 1, "gseq": 1, "epoch": "20261127T075500Z-4f2a", "ts": 1764230100123,
         "bot": 68719476738}
ENV_B = {"seq": 128, "gseq": 4294967296, "epoch": "", "ts": 0, "bot": 1456852}
ENV_C = {"seq": 18446744073709551615, "gseq": 65536, "epoch": "e" * 40,
         "ts": 9007199254740993, "bot": -1}

INT64_MIN, INT64_MAX, UINT64_MAX = -2**63, 2**63 - 1, 2**64 - 1


def rep(ph, json_unit, times, msgpack_hex_unit=None):
    """A placeholder expanded to json_unit * times in the input and, when
    given, to msgpack_hex_unit * times in msgpack_hex."""
    return {"placeholder": ph, "json_unit": json_unit, "times": times,
            "msgpack_hex_unit": msgpack_hex_unit}


def nested(depth):
    text = ""
    for i in range(depth):
        text += '{"k":' if i % 2 == 0 else "["
    text += '"leaf"'
    for i in reversed(range(depth)):
        text += "}" if i % 2 == 0 else "]"
    return text


def s(n, ch="x"):
    return json.dumps(ch * n)


VALID = [
    # name, json text (or template), repeats, envelope
    ("int_0", "0"), ("int_1", "1"), ("int_minus_0", "-0"), ("int_minus_1", "-1"),
    ("int_127", "127"), ("int_128", "128"), ("int_255", "255"), ("int_256", "256"),
    ("int_65535", "65535"), ("int_65536", "65536"), ("int_2p32_minus_1", "4294967295"),
    ("int_2p32", "4294967296"), ("int_minus_32", "-32"), ("int_minus_33", "-33"),
    ("int_minus_128", "-128"), ("int_minus_129", "-129"), ("int_minus_32768", "-32768"),
    ("int_minus_32769", "-32769"), ("int_minus_2p31", "-2147483648"),
    ("int_minus_2p31_minus_1", "-2147483649"), ("int_2p53_plus_1", "9007199254740993"),
    ("int_user_id", "68719476737"), ("int64_max", str(INT64_MAX)), ("int64_min", str(INT64_MIN)),
    ("uint64_2p63", str(INT64_MAX + 1)), ("uint64_max", str(UINT64_MAX)),
    ("int_beyond_uint64_is_float", str(UINT64_MAX + 1)),
    ("int_below_int64_is_float", str(INT64_MIN - 1)),
    ("int_30_digits_is_float", "123456789012345678901234567890"),
    ("float_0_1", "0.1"), ("float_1e300", "1e300"), ("float_minus_0", "-0.0"),
    ("float_1_0", "1.0"), ("float_1E2", "1E2"), ("float_1e_plus_2", "1e+2"),
    ("float_minus_2_5e_minus_3", "-2.5e-3"), ("float_max", "1.7976931348623157e308"),
    ("float_min_subnormal", "5e-324"), ("float_overflow_is_inf", "1e400"),
    ("float_minus_overflow_is_minus_inf", "-1e400"), ("float_underflow_is_0", "1e-400"),
    ("float_0e0", "0e0"),
    ("true", "true"), ("false", "false"), ("null", "null"),
    ("str_empty", '""'), ("str_31", s(31)), ("str_32", s(32)), ("str_255", s(255)),
    ("str_256", s(256)),
    ("str_65535", '"%R"', [rep("%R", "x", 65535, "78")]),
    ("str_65536", '"%R"', [rep("%R", "x", 65536, "78")]),
    ("str_300KB", '"%R"', [rep("%R", "x", 300 * 1024, "78")]),
    ("str_multibyte_70KB", '"%R"', [rep("%R", "é€😀", 10000, "c3a9e282acf09f9880")]),
    ("str_emoji", '"😀 👍🏽 🇫🇷"'), ("str_multibyte", '"héllo wörld 漢字 Ωμέγα"'),
    ("str_escaped_nul", '"a\\u0000b"'), ("str_only_nul", '"\\u0000"'),
    ("str_surrogate_pair_escape", '"\\ud83d\\ude00"'),
    ("str_surrogate_pair_uppercase", '"\\uD83D\\uDE00"'),
    ("str_bmp_escapes", '"\\u00e9\\u20ac\\uffff"'),
    ("str_escaped_backslash_then_u", '"\\\\ud83d \\\\\\ud83d\\ude00"'),
    ("str_simple_escapes", '"\\" \\\\ \\/ \\b \\f \\n \\r \\t"'),
    ("str_31_bytes_multibyte", json.dumps("€" * 10 + "x", ensure_ascii=False)),
    ("obj_empty", "{}"), ("arr_empty", "[]"),
    ("obj_15", "{" + ",".join('"k%d":%d' % (i, i) for i in range(15)) + "}"),
    ("obj_16", "{" + ",".join('"k%d":%d' % (i, i) for i in range(16)) + "}"),
    ("arr_15", "[" + ",".join(str(i) for i in range(15)) + "]"),
    ("arr_16", "[" + ",".join(str(i) for i in range(16)) + "]"),
    ("arr_65535", "[1%R]", [rep("%R", ",1", 65534, "01")]),
    ("arr_65536", "[1%R]", [rep("%R", ",1", 65535, "01")]),
    ("obj_65536", '{%R"k":0}', [rep("%R", '"k":0,', 65535, "a16b00")]),
    ("key_order_kept", '{"z":1,"a":2,"m":3,"b":{"y":true,"c":false}}'),
    ("duplicate_keys_kept", '{"a":1,"a":2,"b":3,"a":4}'),
    ("key_empty_and_nul", '{"":1,"a\\u0000b":2}'),
    ("whitespace", ' \t\n\r{ "a" : [ 1 , 2.5 , "x" ] , "b" : { } }\n '),
    ("mixed_array", '[null,true,false,0,-1,1.5,"s",[],{},[[]],{"a":{}}]'),
    ("depth_40", nested(40)),
    ("depth_512", "%A[]%B", [rep("%A", "[", 511, "91"), rep("%B", "]", 511)]),
    # topics
    ("topic_missing_type", '{"id":"x","payload":{}}'),
    ("topic_null_type", '{"type":null}'),
    ("topic_numeric_type", '{"type":42}'),
    ("topic_empty_type", '{"type":""}'),
    ("topic_object_type", '{"type":{"name":"MESSAGESENT"}}'),
    ("topic_unknown_string_type", '{"id":"g1","type":"FUTUREEVENTTYPE","payload":{"futureEvent":{}}}'),
    ("topic_generic_system_event", '{"type":"GENERICSYSTEMEVENT","payload":{"genericSystemEvent":{}}}'),
    ("topic_first_duplicate_type_wins", '{"type":"ROOMCREATED","type":"ROOMUPDATED"}'),
    ("topic_nested_type_ignored", '{"payload":{"type":"MESSAGESENT"}}'),
    ("topic_reserved_underscore_prefix", '{"type":"_heartbeat"}'),
    ("topic_array_event", '["MESSAGESENT"]'),
    ("topic_string_event", '"MESSAGESENT"'),
    ("topic_lowercase_kept", '{"type":"messagesent"}'),
]
VALID = [v if len(v) >= 3 else (v[0], v[1], []) for v in VALID]
for name, text in FIXTURES:
    VALID.append((name, text, []))
    VALID.append((name + "_envelope_a", text, [], ENV_A))
VALID.append(("constructed_read_datafeed_200_body", READ_BODY, []))
VALID.append(("envelope_b_small_event", '{"type":"ROOMDEACTIVATED","payload":{}}', [], ENV_B))
VALID.append(("envelope_c_extremes", '{"type":"USERLEFTROOM"}', [], ENV_C))
VALID.append(("envelope_untyped_event", '{"id":"n0type"}', [], ENV_B))

# Inputs every contract-v1 producer must reject (dfb_json_parse fails).
INVALID = [
    ("empty", ""), ("whitespace_only", " \n"), ("truncated_object", '{"a":1'),
    ("truncated_array", "[1,2"), ("truncated_string", '"abc'), ("truncated_literal", "tru"),
    ("trailing_garbage", "{} x"), ("two_values", "{}{}"), ("trailing_comma_array", "[1,]"),
    ("trailing_comma_object", '{"a":1,}'), ("single_quotes", "{'a':1}"),
    ("unquoted_key", "{a:1}"), ("missing_colon", '{"a" 1}'), ("missing_comma", "[1 2]"),
    ("nan", "NaN"), ("infinity", "Infinity"), ("leading_zero", "01"),
    ("leading_plus", "+1"), ("bare_minus", "-"), ("dot_no_digits", "1."),
    ("leading_dot", ".5"), ("exponent_no_digits", "1e"), ("comment_block", "/* c */ 1"),
    ("comment_line", "// c\n1"), ("bad_escape", '"\\x"'), ("short_unicode_escape", '"\\u12"'),
    ("control_char_in_string", '"a\x01b"'), ("newline_in_string", '"a\nb"'),
    ("lone_high_surrogate", '"\\ud83d"'), ("lone_low_surrogate", '"\\ude00"'),
    ("high_surrogate_then_letter", '"\\ud83dx"'),
    ("high_surrogate_then_non_low_escape", '"\\ud83d\\u0041"'),
    ("two_high_surrogates", '"\\ud83d\\ud83d"'),
    ("surrogate_in_key", '{"\\ud800":1}'),
    ("depth_513", "%A%B", [rep("%A", "[", 513), rep("%B", "]", 513)]),
]
INVALID_HEX = [
    # raw bytes that cannot be carried in a JSON string of this file
    ("utf8_invalid_byte_ff", b'"\xff"'), ("utf8_lone_continuation", b'"\x80"'),
    ("utf8_overlong_nul", b'"\xc0\x80"'), ("utf8_overlong_slash", b'"\xe0\x80\xaf"'),
    ("utf8_raw_surrogate", b'"\xed\xa0\x80"'), ("utf8_above_10ffff", b'"\xf4\x90\x80\x80"'),
    ("utf8_truncated_sequence", b'"\xe2\x82"'), ("utf8_bom_prefix", b"\xef\xbb\xbf{}"),
    ("utf8_invalid_in_key", b'{"\xff":1}'),
]

# Strings that the lenient mode (DFB_JSON_REPLACE_INVALID) repairs: the
# invalid cases above whose name is listed here, plus these extra inputs.
LENIENT_REPAIRS = {
    "lone_high_surrogate", "lone_low_surrogate", "high_surrogate_then_letter",
    "high_surrogate_then_non_low_escape", "two_high_surrogates", "surrogate_in_key",
    "utf8_invalid_byte_ff", "utf8_lone_continuation", "utf8_overlong_nul", "utf8_overlong_slash",
    "utf8_raw_surrogate", "utf8_above_10ffff", "utf8_truncated_sequence", "utf8_invalid_in_key",
}
LENIENT_EXTRA = [
    ("lenient_truncated_then_ascii", b'"\xe2\x82a"'),
    ("lenient_truncated_4byte_at_end", b'["\xf0\x9f\x98"]'),
    ("lenient_lone_lead_c3", b'"x\xc3"'),
    ("lenient_mixed_valid_and_invalid",
     b'{"m":"h\\u00e9 \\ud83d\\ude00 \\ud83d \\u20ac \xff","k\\udc00":[1]}\n'),
    ("lenient_two_highs_then_low", b'"\\ud83d\\ud83d\\ude00"'),
    ("lenient_low_then_pair", b'"\\udc00\\ud83d\\ude00"'),
    ("lenient_escape_then_raw_surrogate", b'"\\ud83d\xed\xb0\x80"'),
    ("lenient_nothing_to_repair", '{"q":"why? \U0001F600 ok"}'.encode()),
    ("lenient_event_with_bad_byte",
     b'{"id":"x","type":"MESSAGESENT","payload":{"messageSent":{"message":{"message":"<p>caf\xe9</p>"}}}}'),
]


def load_lenient(raw):
    """Python's reading of contract v1's lenient mode: invalid UTF-8 replaced
    by U+FFFD per maximal subpart (errors="replace"), then every unpaired
    surrogate left by json.loads replaced by U+FFFD. Returns (value, count)."""
    text = raw.decode("utf-8", "replace")
    count = text.count("\ufffd") - raw.decode("utf-8", "ignore").count("\ufffd")
    value = load(text)

    def fix(v):
        nonlocal count
        if isinstance(v, str):
            out = "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in v)
            count += sum(1 for ch in v if 0xD800 <= ord(ch) <= 0xDFFF)
            return out
        if isinstance(v, Obj):
            return Obj((fix(k), fix(x)) for k, x in v)
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v
    return fix(value), count


def expand(template, repeats, field):
    for r in repeats:
        unit = r["json_unit"] if field == "json" else r["msgpack_hex_unit"]
        if unit is None:
            continue
        template = template.replace(r["placeholder"], unit * r["times"])
    return template


class Obj(list):
    """A JSON object as its list of (key, value) pairs: order and duplicates kept."""


def parse_int(text):
    v = int(text)
    # Contract: integers outside int64..uint64 are carried as float64.
    return v if INT64_MIN <= v <= UINT64_MAX else float(text)


def load(text):
    def no_constants(name):
        raise ValueError("not JSON: " + name)
    return json.loads(text, object_pairs_hook=Obj, parse_int=parse_int,
                      parse_constant=no_constants)


_packer = msgpack.Packer(use_bin_type=True, autoreset=True)


def pack(value):
    if isinstance(value, Obj):
        return _packer.pack_map_header(len(value)) + b"".join(
            _packer.pack(k) + pack(v) for k, v in value)
    if isinstance(value, list):
        return _packer.pack_array_header(len(value)) + b"".join(pack(v) for v in value)
    return _packer.pack(value)


def pack_envelope(env, event):
    out = _packer.pack_map_header(7)
    for key, val in (("v", 1), ("seq", env["seq"]), ("gseq", env["gseq"]),
                     ("epoch", env["epoch"]), ("ts", env["ts"]), ("bot", env["bot"])):
        out += _packer.pack(key) + _packer.pack(val)
    return out + _packer.pack("event") + pack(event)


def topic(event):
    if isinstance(event, Obj):
        for k, v in event:
            if k == "type":
                if isinstance(v, str) and v and not v.startswith("_"):
                    return v
                break
    return "UNKNOWN"


def compress_hex(full_hex, repeats):
    """Replaces each repeat's run in the hex with its placeholder."""
    out = full_hex
    for r in repeats:
        if r["msgpack_hex_unit"] is None:
            continue
        run = r["msgpack_hex_unit"] * r["times"]
        i = out.find(run)
        while i >= 0 and i % 2:
            i = out.find(run, i + 1)
        assert i >= 0, "repeat run not found in msgpack"
        out = out[:i] + r["placeholder"] + out[i + len(run):]
    assert expand(out, repeats, "msgpack_hex") == full_hex
    return out


# ---- bridge messages (issue 4: heartbeat, replay) and keys -----------------
# Reserved topics `_hb` and `_end` carry maps built by the bridge itself; these
# fix their bytes. Key order is the order listed in CONTRACT.md.

HEARTBEATS = [
    ("heartbeat_idle", [("v", 1), ("epoch", "20261127T075500Z-3fa2c1d9"), ("gseq", 0),
                        ("seqs", {}), ("ts", 1764230100123), ("interval", 1000),
                        ("replay", "tcp://bridge.example:5557")]),
    ("heartbeat_one_topic", [("v", 1), ("epoch", "20261127T075500Z-3fa2c1d9"),
                             ("gseq", 4294967296), ("seqs", {"MESSAGESENT": 65536}),
                             ("ts", 1764230100123), ("interval", 250), ("replay", "")]),
]

END_MARKERS = [
    ("end_gseq_ok_more", [("v", 1), ("req", 7), ("status", "ok"), ("count", 1000),
                          ("last_gseq", 1000), ("more", True), ("head_gseq", 2500),
                          ("oldest_gseq", 1), ("epoch", "20261127T075500Z-3fa2c1d9")]),
    ("end_topic_ok_empty", [("v", 1), ("req", 8), ("status", "ok"), ("count", 0),
                            ("last_gseq", 0), ("last_seq", 9), ("more", False),
                            ("head_gseq", 2500), ("oldest_gseq", 1),
                            ("epoch", "20261127T075500Z-3fa2c1d9")]),
    ("end_error_gone", [("v", 1), ("req", 9), ("status", "error"), ("count", 0),
                        ("last_gseq", 0), ("more", False), ("head_gseq", 3000),
                        ("oldest_gseq", 2658), ("epoch", "20261127T075500Z-3fa2c1d9"),
                        ("code", "gone"),
                        ("error", "from_gseq is older than the journal's retention")]),
    ("end_error_io_error", [("v", 1), ("req", 10), ("status", "error"), ("count", 0),
                            ("last_gseq", 41), ("more", False), ("head_gseq", 3000),
                            ("oldest_gseq", 1), ("epoch", "20261127T075500Z-3fa2c1d9"),
                            ("code", "io_error"),
                            ("error", "the journal cannot be read at that position: "
                                      "ask again later")]),
    ("end_error_damaged", [("v", 1), ("req", 12), ("status", "error"), ("count", 10),
                           ("last_gseq", 10), ("more", False), ("head_gseq", 20),
                           ("oldest_gseq", 1), ("epoch", "20261127T075500Z-3fa2c1d9"),
                           ("code", "damaged"),
                           ("error", "gseq 11..20 are damaged in the journal: count them lost, "
                                     "ask again from 21"),
                           ("lost_from", 11), ("lost_to", 20)]),
]

# The answer to an info request (issue 7): the live counters, a map in the
# bridge's table order (contract-v1.json replay_info); here a short one.
INFOS = [
    ("info_reply", [("v", 1), ("req", 11), ("epoch", "20261127T075500Z-3fa2c1d9"),
                    ("ts", 1764230100123),
                    ("counters", {"reads": 3, "published": 4294967296, "journal_failing": 0})]),
]

REQUESTS = [
    ("request_from_gseq", [("v", 1), ("req", 1), ("from_gseq", 1)]),
    ("request_from_gseq_topics", [("v", 1), ("req", 2), ("epoch", "20261127T075500Z-3fa2c1d9"),
                                  ("from_gseq", 4242), ("topics", ["MESSAGESENT", "ROOMCREATED"]),
                                  ("limit", 100)]),
    ("request_topic_seq", [("v", 1), ("req", 3), ("topic", "USERJOINEDROOM"),
                           ("from_seq", 17)]),
    ("request_info", [("v", 1), ("req", 11), ("info", True)]),
]

# Partition keys: payload.<key>.stream.streamId, then payload.<key>.message.stream.streamId,
# else id, else "". FNV-1a 64 of the UTF-8 bytes, modulo N.
PARTITION_EVENTS = [
    ("room_event", '{"id":"q2Bn3k","type":"ROOMCREATED","payload":{"roomCreated":{"stream":'
                   '{"streamId":"aBcD1234efGH5678ijKL___oZxZ4O1dA"}}}}'),
    ("message_event", '{"id":"ulPr8a","type":"MESSAGESENT","payload":{"messageSent":{"message":'
                      '{"stream":{"streamId":"wTmSDJSNPXgB4iJ2Ou1B7n___oZxZ4O1dA"}}}}}'),
    ("no_stream_uses_id", '{"id":"c0nn3ct","type":"CONNECTIONREQUESTED","payload":'
                          '{"connectionRequested":{"toUser":{"userId":1}}}}'),
    ("stream_id_not_a_string", '{"id":"x1","type":"ROOMUPDATED","payload":{"roomUpdated":'
                               '{"stream":{"streamId":12}}}}'),
    ("nothing", '{"type":"GENERICSYSTEMEVENT","payload":{}}'),
    ("non_ascii", '{"id":"é","type":"ROOMCREATED","payload":{"roomCreated":{"stream":'
                  '{"streamId":"流-ü"}}}}'),
]


def fnv1a64(data):
    h = 14695981039346656037
    for b in data:
        h ^= b
        h = (h * 1099511628211) % 2**64
    return h


def partition_key(event):
    payload = event.get("payload")
    if isinstance(payload, dict) and len(payload) == 1:
        inner = next(iter(payload.values()))
        for path in (("stream", "streamId"), ("message", "stream", "streamId")):
            v = inner
            for k in path:
                v = v.get(k) if isinstance(v, dict) else None
            if isinstance(v, str):
                return v
    ident = event.get("id")
    return ident if isinstance(ident, str) else ""


def pack_pairs(pairs):
    """A map in the listed key order (dicts keep insertion order)."""
    return msgpack.packb(dict(pairs), use_bin_type=True)


def bridge_messages():
    out = []
    for kind, topic_name, table in (("heartbeat", "_hb", HEARTBEATS),
                                    ("end", "_end", END_MARKERS),
                                    ("info", "_info", INFOS),
                                    ("request", None, REQUESTS)):
        for name, pairs in table:
            out.append({"name": name, "kind": kind, "topic": topic_name,
                        "value": {k: (str(v) if isinstance(v, int) and not isinstance(v, bool)
                                      else v) for k, v in pairs},
                        "msgpack_hex": pack_pairs(pairs).hex()})
    return out


def keys():
    out = []
    for name, text in PARTITION_EVENTS:
        event = json.loads(text)
        key = partition_key(event)
        h = fnv1a64(key.encode("utf-8"))
        ident, typ = event.get("id"), event.get("type")
        out.append({"name": name, "json": text,
                    "dedupe_key": [ident, typ] if isinstance(ident, str) and ident else None,
                    "partition_key": key, "fnv1a64": str(h),
                    "partition_of_3": h % 3, "partition_of_7": h % 7})
    return out


# ---- the command channel (issue 12, CONTRACT.md section 13) ---------------
# Requests and replies as JSON text (the "view": integers exact as written, an
# object {"$bin": "<hex>"} standing for a msgpack bin) packed key by key in the
# order written. The bridge's side of each is checked from C (dfb_cmdproto),
# the readers' side by check.py and the JSON Schemas.

import base64
import hashlib

STREAM = "wTmSDJSNPXgB4iJ2Ou1B7n___oZxZ4O1dA"
MSG_ID = "CszQa6uPAA9V2ZvK0dCl4X___oWnF5B8dA"
ROOM = "aBcD1234efGH5678ijKL___oZxZ4O1dA"
STD_B64_STREAM = "lX1hwfmQ+AK/k/a/BB0y2n///q2+0KfbdA=="

COMMAND_REQUESTS = [
    # name, request view; the expected URL-safe stream follows from the args
    ("cmd_send_string",
     '{"v":1,"id":"ulPr8a/reply/1","op":"messages.send","args":{"stream_id":"%s",'
     '"message":"Build <b>42</b> passed"}}' % STREAM),
    ("cmd_send_full",
     '{"v":1,"id":"job-7f3a","op":"messages.send","args":{"stream_id":"%s",'
     '"message":{"message":"<messageML>See <span class=\\"entity\\" data-entity-id=\\"b1\\">build</span>'
     '</messageML>","data":{"b1":{"type":"org.example.build","version":"1.0","id":9007199254740993,'
     '"owner":68719476737}},"version":"2.0","attachments":[{"name":"build.log","content":{"$bin":"6f6b0a"},'
     '"content_type":"text/plain","preview":{"$bin":"89504e47"}}]},"version":"",'
     '"data":"{\\"ignored\\":{\\"type\\":\\"t\\"}}"}}' % STREAM),
    ("cmd_send_standard_base64_stream",
     '{"id":"no-v-defaults-to-1","op":"messages.send","args":{"stream_id":"%s",'
     '"message":"<messageML>hi</messageML>","data":"{\\"x\\":{\\"type\\":\\"t\\"}}"}}' % STD_B64_STREAM),
    ("cmd_send_unknown_keys_ignored",
     '{"v":1,"id":"é-ü-漢字","op":"messages.send","trace":"abc","args":{"stream_id":"%s",'
     '"message":"x <i>y</i>","attachments":[{"name":"a.bin","content":{"$bin":""}},'
     '{"name":"b.bin","content":{"$bin":"00ff"}}]}}' % STREAM),
    ("cmd_update",
     '{"v":1,"id":"upd-1","op":"messages.update","args":{"stream_id":"%s","message_id":"%s",'
     '"message":"<messageML>Build <b>42</b> passed (edited)</messageML>","data":{},"silent":false}}'
     % (STREAM, MSG_ID)),
    ("cmd_suppress",
     '{"v":1,"id":"sup-1","op":"messages.suppress","args":{"message_id":"%s"}}' % MSG_ID),
    ("cmd_get",
     '{"v":1,"id":"get-1","op":"messages.get","args":{"message_id":"%s"}}' % MSG_ID),
    ("cmd_create_im",
     '{"v":1,"id":"im-1","op":"streams.createIm","args":{"user_ids":[68719476737,9223372036854775807]}}'),
    ("cmd_create_im_single",
     '{"v":1,"id":"im-2","op":"streams.createIm","args":{"user_id":68719476737}}'),
    ("cmd_add_member",
     '{"v":1,"id":"add-1","op":"rooms.addMember","args":{"stream_id":"%s","user_id":68719476737}}' % ROOM),
    ("cmd_remove_member",
     '{"v":1,"id":"rm-1","op":"rooms.removeMember","args":{"stream_id":"%s","user_id":68719476737}}' % ROOM),
    ("cmd_stream_info",
     '{"v":1,"id":"info-1","op":"streams.info","args":{"stream_id":"%s"}}' % STD_B64_STREAM),
    ("cmd_users_by_ids",
     '{"v":1,"id":"users-1","op":"users.lookup","args":{"user_ids":[68719476737,68719476738],'
     '"local":true,"active":true}}'),
    ("cmd_users_by_emails",
     '{"v":1,"id":"users-2","op":"users.lookup","args":{"emails":["jane.doe@example.com","a+b@example.com"]}}'),
    ("cmd_users_by_usernames",
     '{"v":1,"id":"users-3","op":"users.lookup","args":{"usernames":["jane.doe"],"local":false}}'),
]

# Frames the bridge must answer bad_request (nothing sent). view: a request
# view, or hex: raw bytes; id: the id the reply echoes ("" when none usable:
# a map with a valid id followed by trailing bytes still has one);
# schema: whether command-request.json can see the fault (False: only the
# bridge can: bytes, not characters; a JSON object inside a string).
BAD = '{"v":1,"id":"bad-1","op":"%s","args":%s}'
COMMAND_BAD_REQUESTS = [
    ("bad_not_msgpack", None, "c1", "", False),
    ("bad_truncated", None, "83a17601a26964", "", False),
    ("bad_not_a_map", '["messages.get"]', None, "", True),
    ("bad_trailing_bytes", None,
     "SELF:cmd_get+00", "get-1", False),
    ("bad_v_2", '{"v":2,"id":"bad-1","op":"messages.get","args":{"message_id":"%s"}}' % MSG_ID, None, "bad-1", True),
    ("bad_v_string", '{"v":"1","id":"bad-1","op":"messages.get","args":{"message_id":"%s"}}' % MSG_ID, None, "bad-1", True),
    ("bad_id_missing", '{"v":1,"op":"messages.get","args":{"message_id":"%s"}}' % MSG_ID, None, "", True),
    ("bad_id_empty", '{"v":1,"id":"","op":"messages.get","args":{"message_id":"%s"}}' % MSG_ID, None, "", True),
    ("bad_id_not_a_string", '{"v":1,"id":42,"op":"messages.get","args":{"message_id":"%s"}}' % MSG_ID, None, "", True),
    ("bad_id_129_bytes", '{"v":1,"id":"%s","op":"messages.get","args":{"message_id":"%s"}}' % ("i" * 129, MSG_ID), None, "", True),
    ("bad_id_129_bytes_43_chars", '{"v":1,"id":"%s","op":"messages.get","args":{"message_id":"%s"}}' % ("€" * 43, MSG_ID), None, "", False),
    ("bad_id_control_char", '{"v":1,"id":"a\\nb","op":"messages.get","args":{"message_id":"%s"}}' % MSG_ID, None, "", True),
    ("bad_op_missing", '{"v":1,"id":"bad-1","args":{}}', None, "bad-1", True),
    ("bad_op_unknown", BAD % ("messages.blast", '{"stream_id":"%s","message":"x"}' % STREAM), None, "bad-1", True),
    ("bad_op_not_a_string", '{"v":1,"id":"bad-1","op":1,"args":{}}', None, "bad-1", True),
    ("bad_args_missing", '{"v":1,"id":"bad-1","op":"messages.get"}', None, "bad-1", True),
    ("bad_args_not_a_map", BAD % ("messages.get", '["%s"]' % MSG_ID), None, "bad-1", True),
    ("bad_args_unknown_key", BAD % ("messages.get", '{"message_id":"%s","stream_id":"%s"}' % (MSG_ID, STREAM)), None, "bad-1", True),
    ("bad_args_missing_required", BAD % ("messages.send", '{"stream_id":"%s"}' % STREAM), None, "bad-1", True),
    ("bad_stream_id_int", BAD % ("streams.info", '{"stream_id":12}'), None, "bad-1", True),
    ("bad_stream_id_empty", BAD % ("streams.info", '{"stream_id":""}'), None, "bad-1", True),
    ("bad_message_empty", BAD % ("messages.send", '{"stream_id":"%s","message":""}' % STREAM), None, "bad-1", True),
    ("bad_message_whitespace", BAD % ("messages.send", '{"stream_id":"%s","message":" \\n\\t"}' % STREAM), None, "bad-1", True),
    ("bad_message_map_without_message", BAD % ("messages.send", '{"stream_id":"%s","message":{"data":{}}}' % STREAM), None, "bad-1", True),
    ("bad_message_map_unknown_key", BAD % ("messages.send", '{"stream_id":"%s","message":{"message":"x","silent":true}}' % STREAM), None, "bad-1", True),
    ("bad_data_string_not_object", BAD % ("messages.send", '{"stream_id":"%s","message":"x","data":"[1]"}' % STREAM), None, "bad-1", False),
    ("bad_data_string_not_json", BAD % ("messages.send", '{"stream_id":"%s","message":"x","data":"{nope"}' % STREAM), None, "bad-1", False),
    ("bad_data_string_vertical_tab", BAD % ("messages.send", '{"stream_id":"%s","message":"x","data":"{\\"a\\":1}\\u000b"}' % STREAM), None, "bad-1", False),
    ("bad_data_reserved_key", BAD % ("messages.send", '{"stream_id":"%s","message":"x","data":{"dfbridge.request":{}}}' % STREAM), None, "bad-1", True),
    ("bad_data_bin_inside", BAD % ("messages.send", '{"stream_id":"%s","message":"x","data":{"e":{"$bin":"00"}}}' % STREAM), None, "bad-1", False),
    ("bad_attachment_content_str", BAD % ("messages.send", '{"stream_id":"%s","message":"x","attachments":[{"name":"a","content":"text"}]}' % STREAM), None, "bad-1", True),
    ("bad_attachment_no_name", BAD % ("messages.send", '{"stream_id":"%s","message":"x","attachments":[{"content":{"$bin":"00"}}]}' % STREAM), None, "bad-1", True),
    ("bad_attachment_some_previews", BAD % ("messages.send", '{"stream_id":"%s","message":"x","attachments":[{"name":"a","content":{"$bin":"00"},"preview":{"$bin":"00"}},{"name":"b","content":{"$bin":"01"}}]}' % STREAM), None, "bad-1", True),
    ("bad_update_no_message_id", BAD % ("messages.update", '{"stream_id":"%s","message":"x"}' % STREAM), None, "bad-1", True),
    ("bad_silent_int", BAD % ("messages.update", '{"stream_id":"%s","message_id":"%s","message":"x","silent":1}' % (STREAM, MSG_ID)), None, "bad-1", True),
    ("bad_user_id_string", BAD % ("rooms.addMember", '{"stream_id":"%s","user_id":"68719476737"}' % ROOM), None, "bad-1", True),
    ("bad_user_id_float", BAD % ("rooms.addMember", '{"stream_id":"%s","user_id":68719476737.0}' % ROOM), None, "bad-1", True),
    ("bad_im_both_forms", BAD % ("streams.createIm", '{"user_ids":[1],"user_id":1}'), None, "bad-1", True),
    ("bad_im_no_users", BAD % ("streams.createIm", '{"user_ids":[]}'), None, "bad-1", True),
    ("bad_users_two_selectors", BAD % ("users.lookup", '{"user_ids":[1],"emails":["a@b.c"]}'), None, "bad-1", True),
    ("bad_users_none", BAD % ("users.lookup", '{"local":true}'), None, "bad-1", True),
    ("bad_users_101", BAD % ("users.lookup", '{"user_ids":[%s]}' % ",".join(str(i) for i in range(1, 102))), None, "bad-1", True),
    ("bad_users_email_int", BAD % ("users.lookup", '{"emails":[1]}'), None, "bad-1", True),
]

V4MESSAGE = (
    '{"messageId":"Zk2pQ7xYv0s1Yq8mN4eXbH___nZ9aB1cbQ","timestamp":1767225600000,'
    '"message":"<div data-format=\\"PresentationML\\" data-version=\\"2.0\\">Build <b>42</b> passed</div>",'
    '"data":"{\\"dfbridge.request\\":{\\"type\\":\\"org.dfbridge.request\\",\\"version\\":\\"1.0\\",'
    '\\"id\\":\\"%s\\"}}","attachments":[],'
    '"user":{"userId":349026222344891,"displayName":"ci-bot"},'
    '"stream":{"streamId":"%s","streamType":"ROOM"},'
    '"originalFormat":"com.symphony.messageml.v2","sid":"6f1c2b9e-0d1a-4c55-9a7e-3b2f0e9d8c71"}')
IM = '{"id":"iMx0aBcD1234efGH5678ij___oZxZ4O1dA"}'
USERS = ('{"users":[{"id":68719476737,"emailAddress":"jane.doe@example.com","firstName":"Jane",'
         '"lastName":"Doe","displayName":"Jane Doe","username":"jane.doe","company":"Example",'
         '"accountType":"NORMAL"}],"errors":[{"error":"invalid.format","email":"a+b@example"}]}')
SUCCESS = '{"format":"TEXT","message":"Member added"}'


def mark(scope, ident):
    return hashlib.sha256(b"dfbridge-mark\0" + scope.encode("utf-8") + b"\0"
                          + ident.encode("utf-8")).digest()[:16].hex()


def url_safe(ident):
    """IdUtil.toUrlSafeIdIfNeeded: only ids with +, / or = are re-encoded."""
    if not any(c in ident for c in "+/="):
        return ident
    return ident.replace("+", "-").replace("/", "_").rstrip("=")


# Replies: name, how the bridge makes it, id, what. "outcome": the journal's
# outcome map {ok, result|error, found} and replayed; "error": a reply made
# before any call (bad_request, not_allowed, busy, unavailable while stopping).
COMMAND_REPLIES = [
    ("reply_ok_send", "outcome", "ulPr8a/reply/1", False,
     '{"ok":true,"result":%s,"found":false}' % (V4MESSAGE % (mark("", "ulPr8a/reply/1"), STREAM))),
    ("reply_ok_send_found", "outcome", "ulPr8a/reply/1", False,
     '{"ok":true,"result":%s,"found":true}' % (V4MESSAGE % (mark("", "ulPr8a/reply/1"), STREAM))),
    ("reply_ok_send_replayed", "outcome", "ulPr8a/reply/1", True,
     '{"ok":true,"result":%s,"found":false}' % (V4MESSAGE % (mark("", "ulPr8a/reply/1"), STREAM))),
    ("reply_ok_get_204", "outcome", "get-1", False, '{"ok":true,"result":null,"found":false}'),
    ("reply_ok_create_im", "outcome", "im-1", False, '{"ok":true,"result":%s,"found":false}' % IM),
    ("reply_ok_add_member", "outcome", "add-1", False, '{"ok":true,"result":%s,"found":false}' % SUCCESS),
    ("reply_ok_users", "outcome", "users-2", False, '{"ok":true,"result":%s,"found":false}' % USERS),
    ("reply_rejected_400", "outcome", "job-7f3a", False,
     '{"ok":false,"error":{"code":"rejected","message":"Invalid messageML: Element \\"b\\" is not closed",'
     '"status":400},"found":false}'),
    ("reply_rejected_403_replayed", "outcome", "add-1", True,
     '{"ok":false,"error":{"code":"rejected","message":"The user lacks the required entitlement to perform '
     'this operation","status":403},"found":false}'),
    ("reply_unavailable", "outcome", "sup-1", False,
     '{"ok":false,"error":{"code":"unavailable","message":"Symphony answered 503 10 times: retries exhausted"},'
     '"found":false}'),
    ("reply_unknown_outcome", "outcome", "ulPr8a/reply/1", False,
     '{"ok":false,"error":{"code":"unknown_outcome","message":"the create may have been committed and the '
     'stream could not be listed (500): retry with the same id"},"found":false}'),
    ("reply_busy", "error", "ulPr8a/reply/2", False,
     '{"code":"busy","message":"1000 requests are queued: try again later","retry_after_ms":2500}'),
    ("reply_bad_request", "error", "bad-1", False,
     '{"code":"bad_request","message":"args.stream_id: expected a string"}'),
    ("reply_bad_request_no_id", "error", "", False,
     '{"code":"bad_request","message":"not a msgpack map"}'),
    ("reply_not_allowed", "error", "ulPr8a/reply/3", False,
     '{"code":"not_allowed","message":"client worker-b may not call messages.suppress"}'),
    ("reply_unavailable_stopping", "error", "ulPr8a/reply/4", False,
     '{"code":"unavailable","message":"the bridge is stopping"}'),
]

MARKS = [("", "ulPr8a/reply/1"), ("worker-a", "ulPr8a/reply/1"), ("", "é-ü-漢字"),
         ("", "x" * 128)]


def cmd_load(text):
    """A view: JSON text, {"$bin": hex} as bytes."""
    def fix(v):
        if isinstance(v, Obj):
            if len(v) == 1 and v[0][0] == "$bin":
                return bytes.fromhex(v[0][1])
            return Obj((k, fix(x)) for k, x in v)
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v
    return fix(load(text))


def cmd_pack(value):
    """pack() that also writes bytes as msgpack bin."""
    if isinstance(value, bytes):
        return _packer.pack(value)
    if isinstance(value, Obj):
        return _packer.pack_map_header(len(value)) + b"".join(
            _packer.pack(k) + cmd_pack(v) for k, v in value)
    if isinstance(value, list):
        return _packer.pack_array_header(len(value)) + b"".join(cmd_pack(v) for v in value)
    return pack(value)


def get(obj, key, default=None):
    for k, v in obj:
        if k == key:
            return v
    return default


def commands():
    requests = []
    for name, view in COMMAND_REQUESTS:
        value = cmd_load(view)
        args, op, ident = get(value, "args"), get(value, "op"), get(value, "id")
        stream = get(args, "stream_id", "")
        requests.append({"name": name, "view": view, "op": op, "id": ident,
                         "stream": url_safe(stream),
                         "fingerprint": hashlib.sha256(op.encode() + b"\0" + cmd_pack(args)).hexdigest(),
                         "mark": mark("", ident),
                         "msgpack_hex": cmd_pack(value).hex()})
    by_name = {r["name"]: r for r in requests}
    bad = []
    for name, view, raw, echo, schema in COMMAND_BAD_REQUESTS:
        if raw and raw.startswith("SELF:"):
            base, extra = raw[5:].split("+")
            raw = by_name[base]["msgpack_hex"] + extra
        case = {"name": name}
        if view is not None:
            case["view"] = view
            raw = cmd_pack(cmd_load(view)).hex()
        case.update({"msgpack_hex": raw, "id": echo, "schema_sees_it": schema})
        bad.append(case)
    replies = []
    for name, how, ident, replayed, body in COMMAND_REPLIES:
        if how == "outcome":
            outcome = cmd_load(body)
            ok, found = get(outcome, "ok"), get(outcome, "found")
            key = "result" if ok else "error"
            reply = Obj([("v", 1), ("id", ident), ("ok", ok), (key, get(outcome, key)),
                         ("replayed", replayed), ("found", found)])
            case = {"name": name, "from": how, "outcome_view": body,
                    "outcome_hex": cmd_pack(outcome).hex()}
        else:
            error = cmd_load(body)
            reply = Obj([("v", 1), ("id", ident), ("ok", False), ("error", error),
                         ("replayed", False), ("found", False)])
            case = {"name": name, "from": how, "error_view": body}
        case["replayed"] = replayed
        case["view"] = json.dumps(to_view(reply), ensure_ascii=False, separators=(",", ":"))
        case["msgpack_hex"] = cmd_pack(reply).hex()
        replies.append(case)
    marks = [{"scope": s, "id": i, "mark": mark(s, i)} for s, i in MARKS]
    return {"requests": requests, "bad_requests": bad, "replies": replies, "marks": marks}


def to_view(value):
    """The view of a value: Obj as an ordered dict (duplicates never occur here)."""
    if isinstance(value, Obj):
        return {k: to_view(v) for k, v in value}
    if isinstance(value, list):
        return [to_view(v) for v in value]
    if isinstance(value, bytes):
        return {"$bin": value.hex()}
    return value


def build():
    cases = []
    for entry in VALID:
        name, template, repeats = entry[0], entry[1], entry[2]
        env = entry[3] if len(entry) > 3 else None
        value = load(expand(template, repeats, "json"))
        raw = pack_envelope(env, value) if env else pack(value)
        case = {"name": name, "json": template}
        if repeats:
            case["repeat"] = repeats
        # Integers as decimal strings: every language's standard JSON reader
        # keeps them exact (uint64 max, 2^53+1 do not survive a double).
        case["envelope"] = None if env is None else {
            k: (v if isinstance(v, str) else str(v)) for k, v in env.items()}
        case["topic"] = topic(value)
        case["msgpack_hex"] = compress_hex(raw.hex(), repeats)
        cases.append(case)
    invalid = []
    for entry in INVALID:
        case = {"name": entry[0], "json": entry[1]}
        if len(entry) > 2:
            case["repeat"] = entry[2]
        invalid.append(case)
    for name, raw in INVALID_HEX:
        invalid.append({"name": name, "json_hex": raw.hex()})
    lenient = []
    for case in invalid:
        case["strict_only"] = case["name"] in LENIENT_REPAIRS
        if case["strict_only"]:
            raw = bytes.fromhex(case["json_hex"]) if "json_hex" in case else \
                case["json"].encode("utf-8")
            lenient.append((case["name"], raw))
    lenient_cases = []
    for name, raw in lenient + LENIENT_EXTRA:
        value, count = load_lenient(raw)
        lenient_cases.append({"name": name, "json_hex": raw.hex(), "replacements": count,
                              "topic": topic(value), "msgpack_hex": pack(value).hex()})
    return {
        "_about": "Golden vectors of the dfbridge wire contract v1 (schemas/CONTRACT.md). "
                  "Generated by generate.py with python3-msgpack; do not edit by hand.",
        "contract_version": 1,
        "rules": {
            "valid": "For each case, the input is `json` after expanding `repeat`. If `envelope` "
                     "is null, `msgpack_hex` is the msgpack of the JSON value alone; otherwise it "
                     "is the whole frame-2 body {v:1, seq, gseq, epoch, ts, bot, event} with those "
                     "envelope values (integers written as decimal strings here, to stay exact "
                     "in every JSON reader; on the wire they are msgpack ints) and the value as "
                     "`event`. `topic` is frame 1 for the value.",
            "repeat": "Each entry of `repeat` names a `placeholder` that occurs once in `json` and "
                      "stands for `json_unit` repeated `times` times; in `msgpack_hex` the same "
                      "placeholder (if `msgpack_hex_unit` is not null) stands for "
                      "`msgpack_hex_unit` repeated `times` times.",
            "invalid": "Each input of `invalid` (`json` text, or raw bytes as `json_hex`) must be "
                       "rejected by the bridge's JSON parser in its default, strict mode; those "
                       "with `strict_only` true are accepted in lenient mode (see `lenient`).",
            "lenient": "Lenient mode (dfb_json DFB_JSON_REPLACE_INVALID): the input bytes "
                       "`json_hex` parse, every maximal invalid UTF-8 subpart and every unpaired "
                       "surrogate escape in a string becoming U+FFFD (`replacements` of them); "
                       "`msgpack_hex` is the bare converted value.",
            "bridge_messages": "The bridge's own maps (CONTRACT.md sections Heartbeat and "
                               "Replay): `kind` heartbeat (frame 1 `_hb`), end (frame 1 `_end`, "
                               "the end marker of a replay answer), info (frame 1 `_info`, the "
                               "answer to an info request) or request (the one frame a "
                               "replay client sends). `value` lists the keys in wire order "
                               "(integers as decimal strings); `msgpack_hex` is the exact body.",
            "keys": "Dedupe key [id, type] (null: never deduplicated) and partition key of an "
                    "event (`json`), its FNV-1a 64 (decimal string) over the key's UTF-8 bytes, "
                    "and the member it maps to among 3 and among 7.",
            "commands": "The command channel (CONTRACT.md section 13). A `view` is the value as JSON "
                        "text: integers exact as written, keys in wire order, and an object "
                        "{\"$bin\": \"<hex>\"} standing for a msgpack bin; `msgpack_hex` is the exact "
                        "frame. `requests`: valid requests, one DEALER frame each (REQ style: an empty "
                        "frame first, and the reply then starts with an empty frame too), with the "
                        "`stream` the bridge uses (URL-safe; \"\" for ops without one), the `mark` "
                        "id for scope \"\" and the bridge's `fingerprint` (SHA-256 over the op name, "
                        "a 0 byte, the args' bytes as received). `bad_requests`: frames answered "
                        "bad_request, the reply echoing `id`; `schema_sees_it` false when "
                        "command-request.json cannot tell (bytes, not characters; JSON inside a "
                        "string; bin inside data; not msgpack). `replies`: exact reply frames; "
                        "`from` outcome: made from the journal's outcome map (`outcome_hex`, keys "
                        "ok, result or error, found) and `replayed`; `from` error: an error decided "
                        "before any call (`error_view`). `marks`: the mark id of (scope, id).",
        },
        "valid": cases,
        "invalid": invalid,
        "lenient": lenient_cases,
        "bridge_messages": bridge_messages(),
        "keys": keys(),
        "commands": commands(),
    }


def render(doc):
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"


def main(argv):
    if len(argv) == 3 and argv[1] == "--check":
        with open(argv[2], encoding="utf-8") as f:
            stored = f.read()
        if stored != render(build()):
            print("vectors.json differs from what generate.py produces: regenerate it")
            return 1
        doc = build()
        print("vectors.json is up to date (%d valid, %d invalid, %d lenient)"
              % (len(doc["valid"]), len(doc["invalid"]), len(doc["lenient"])))
        return 0
    out = argv[1] if len(argv) > 1 else "vectors.json"
    with open(out, "w", encoding="utf-8") as f:
        f.write(render(build()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
