/*  bench_json_parsers: json-c with one reused tokener, in its own file
    because its names clash with jansson's. */
#include "json_parsers.h"

#include <json-c/json.h>
#include <stdint.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static json_tokener *s_tok;

void
bench_jsonc_init(void)
{
    s_tok = json_tokener_new();
    /* json-c checks UTF-8 only when asked; yajl and jansson always do. */
    json_tokener_set_flags(s_tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
}

void
bench_jsonc_fini(void)
{
    json_tokener_free(s_tok);
    s_tok = NULL;
}

int
bench_jsonc_parse(const char *text, size_t len)
{
    json_tokener_reset(s_tok);
    json_object *o = json_tokener_parse_ex(s_tok, text, (int)len);
    int rc = o && json_tokener_get_error(s_tok) == json_tokener_success ? 0 : -1;
    json_object_put(o);
    return rc;
}

void
bench_jsonc_probe(const char *what, const char *text, char *out, size_t n)
{
    json_tokener_reset(s_tok);
    json_object *v = json_tokener_parse_ex(s_tok, text, (int)strlen(text));
    if (!v) {
        snprintf(out, n, "rejected (%s)", json_tokener_error_desc(json_tokener_get_error(s_tok)));
        return;
    }
    if (!strcmp(what, "int")) {
        json_object *e = json_object_array_get_idx(v, 0);
        if (json_object_is_type(e, json_type_int)) {
            /* Values above INT64_MAX are kept as uint64; get_int64() then
               clamps to INT64_MAX. */
            if (json_object_get_int64(e) == INT64_MAX)
                snprintf(out, n, "%" PRIu64, json_object_get_uint64(e));
            else
                snprintf(out, n, "%" PRId64, json_object_get_int64(e));
        } else
            snprintf(out, n, "%.17g", json_object_get_double(e));
    } else if (!strcmp(what, "nul")) {
        snprintf(out, n, "len %d", json_object_get_string_len(json_object_array_get_idx(v, 0)));
    } else {
        out[0] = '\0';
        json_object_object_foreach(v, k, x)
        {
            size_t l = strlen(out);
            snprintf(out + l, n - l, "%s%s=%d", l ? "," : "", k, json_object_get_int(x));
        }
    }
    json_object_put(v);
}
