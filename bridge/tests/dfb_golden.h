/*  dfb_golden: what the bridge's C tests need to check bytes against
    schemas/golden/vectors.json — read the file, find a vector's field, and
    compare a buffer with its hex. Header-only (each test is one program). */
#ifndef DFB_GOLDEN_H
#define DFB_GOLDEN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dfb_json.h"
#include "dfb_transcode.h"

/*  The whole file, NUL-terminated (free it), its length in *len; NULL when
    it cannot be read. */
static inline char *
dfb_golden_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *d = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (d && fread(d, 1, (size_t)n, f) != (size_t)n) {
        free(d);
        d = NULL;
    }
    fclose(f);
    if (d)
        d[n] = '\0';
    *len = d ? (size_t)n : 0;
    return d;
}

/*  Reads and parses the JSON file at path: the tape (destroy it) and the
    text it points into (*text, free it). NULL when it cannot be read or
    parsed (*text may still need free). */
static inline dfb_json_t *
dfb_golden_load(const char *path, char **text)
{
    size_t len = 0;
    *text = dfb_golden_slurp(path, &len);
    dfb_json_t *json = *text ? dfb_json_new() : NULL;
    if (json && dfb_json_parse(json, *text, len) != 0)
        dfb_json_destroy(&json);
    return json;
}

/*  The string `field` of the entry named name in section (an array of
    objects with a "name"), borrowed from json; NULL when absent. */
static inline const char *
dfb_golden_vector(dfb_json_t *json, const char *section, const char *name, const char *field)
{
    dfb_json_ref_t arr = dfb_json_get(json, 0, section);
    for (dfb_json_ref_t e = dfb_json_first(json, arr); e != DFB_JSON_NONE;
         e = dfb_json_next(json, e)) {
        const char *n = dfb_json_string(json, dfb_json_get(json, e, "name"), NULL);
        if (n && strcmp(n, name) == 0)
            return dfb_json_string(json, dfb_json_get(json, e, field), NULL);
    }
    return NULL;
}

/*  1 when b holds exactly the bytes that hex (lower case) spells. */
static inline int
dfb_golden_same_hex(const dfb_buf_t *b, const char *hex)
{
    if (!hex || strlen(hex) != b->len * 2)
        return 0;
    char two[3];
    for (size_t i = 0; i < b->len; i++) {
        snprintf(two, sizeof two, "%02x", b->data[i]);
        if (memcmp(two, hex + 2 * i, 2) != 0)
            return 0;
    }
    return 1;
}

#endif
