/*  dfb_json_tape: the tape's layout, for the transcoder's one forward walk
    only (dfb_transcode.c). Everyone else uses dfb_json.h's accessors; this
    view trades their per-value checks and calls for direct reads, which is
    what a hot loop over every token of every event needs. */
#ifndef DFB_JSON_TAPE_H
#define DFB_JSON_TAPE_H

#include <stdint.h>

#include "dfb_json.h"

/*  One tape token. For containers `count` is the number of elements (array)
    or pairs (object); `next` links to the following sibling, so a subtree is
    skipped without walking it. 24 bytes. */
typedef struct {
    uint32_t type; /* dfb_json_type_t */
    uint32_t count;
    uint32_t next;
    union {
        int64_t i;
        uint64_t u;
        double d;
        struct {
            uint32_t off; /* into the string arena */
            uint32_t len;
        } s;
    } v;
} dfb_tok_t;

/*  A borrowed view of the last parse: valid until the next parse, wipe or
    destroy. Strings are at strs + v.s.off, v.s.len bytes (NUL follows). */
typedef struct {
    const dfb_tok_t *toks;
    uint32_t ntoks;
    const char *strs;
} dfb_json_tape_t;

void dfb_json_tape (const dfb_json_t *self, dfb_json_tape_t *tape);

#endif
