/*  bench_json_parsers: the parsers whose headers cannot share a translation
    unit (jansson and json-c both define json_object, json_type...). */
#ifndef JSON_PARSERS_H
#define JSON_PARSERS_H

#include <stddef.h>

/*  Parse and free one document; 0 on success. */
int bench_jansson_parse(const char *text, size_t len);
int bench_jsonc_parse(const char *text, size_t len);

/*  Exactness probes: `what` is "int" (value of [N]), "order" / "dup" (the
    members of an object as k=v,...), "nul" (length of the string in [".."]). */
void bench_jansson_probe(const char *what, const char *text, char *out, size_t n);
void bench_jsonc_probe(const char *what, const char *text, char *out, size_t n);

void bench_jsonc_init(void);
void bench_jsonc_fini(void);

#endif
