/*  bench_json_parsers: jansson (json_loadb, the usual C choice), in its own
    file because its names clash with json-c's. */
#include "json_parsers.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

int
bench_jansson_parse(const char *text, size_t len)
{
    /* JSON_ALLOW_NUL: without it jansson rejects "\u0000" in strings. */
    json_t *v = json_loadb(text, len, JSON_ALLOW_NUL, NULL);
    json_decref(v);
    return v ? 0 : -1;
}

void
bench_jansson_probe(const char *what, const char *text, char *out, size_t n)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_ALLOW_NUL, &err);
    if (!v) {
        snprintf(out, n, "rejected (%s)", err.text);
        return;
    }
    if (!strcmp(what, "int")) {
        json_t *e = json_array_get(v, 0);
        if (json_is_integer(e))
            snprintf(out, n, "%" JSON_INTEGER_FORMAT, json_integer_value(e));
        else
            snprintf(out, n, "%.17g", json_real_value(e));
    } else if (!strcmp(what, "nul")) {
        snprintf(out, n, "len %zu", json_string_length(json_array_get(v, 0)));
    } else {
        const char *k;
        json_t *x;
        out[0] = '\0';
        json_object_foreach(v, k, x)
        {
            size_t l = strlen(out);
            snprintf(out + l, n - l, "%s%s=%" JSON_INTEGER_FORMAT, l ? "," : "", k,
                     json_integer_value(x));
        }
    }
    json_decref(v);
}
