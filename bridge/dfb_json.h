/*  dfb_json: JSON text -> a flat token tape, the bridge's only JSON parser.
    Tokenising is done by yajl; the tape records every value in document order
    with exact integers, so the transcoder can emit msgpack with the right
    container sizes in one forward walk. A tape is reused across parses:
    after warm-up, parsing allocates nothing. */
#ifndef DFB_JSON_H
#define DFB_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    DFB_JSON_NULL = 0,
    DFB_JSON_FALSE,
    DFB_JSON_TRUE,
    DFB_JSON_INT,    /* fits int64_t (negative, or positive <= INT64_MAX) */
    DFB_JSON_UINT,   /* INT64_MAX < n <= UINT64_MAX */
    DFB_JSON_DOUBLE, /* any number with fraction/exponent, or beyond uint64 */
    DFB_JSON_STRING,
    DFB_JSON_ARRAY,
    DFB_JSON_OBJECT
} dfb_json_type_t;

/*  A reference to one value on the tape: its token index. The root is 0.
    DFB_JSON_NONE means "no such value". */
typedef uint32_t dfb_json_ref_t;
#define DFB_JSON_NONE ((dfb_json_ref_t) UINT32_MAX)

/*  Deepest nesting accepted; deeper documents are a parse error. */
#define DFB_JSON_MAX_DEPTH 512

typedef struct dfb_json dfb_json_t;

/*  Creates an empty tape. Returns NULL on allocation failure. */
dfb_json_t *dfb_json_new (void);

/*  Frees the tape and NULLs the caller's pointer; accepts NULL. */
void dfb_json_destroy (dfb_json_t **self_p);

/*  Overwrites with zeros every byte the last parse left in the tape's
    buffers (decoded strings, yajl's lexer copies, number scratch) and
    empties the tape: for a parse of a secret (an authentication answer's
    token). Memory stays allocated for reuse. */
void dfb_json_wipe (dfb_json_t *self);

/*  Parses one complete JSON text (RFC 8259, UTF-8 validated, \u0000 allowed
    inside strings) replacing the previous content. Returns 0, or -1 on a
    syntax error, too deep nesting or allocation failure; then
    dfb_json_error() says what and where ("JSON error at byte N: reason";
    for syntax errors N is just past the offending token). Stricter than
    yajl alone: strings must be valid UTF-8 (no overlongs, no surrogates,
    nothing above U+10FFFF) and \u escapes of surrogates must pair up.
    The input is not retained: strings are copied (decoded) into the tape. */
int dfb_json_parse (dfb_json_t *self, const char *text, size_t len);

/*  Parse options. The default (0) is strict: a string with invalid UTF-8
    or an unpaired surrogate escape fails the whole parse. With
    DFB_JSON_REPLACE_INVALID such strings are kept with each maximal
    invalid subpart (or unpaired surrogate) replaced by U+FFFD, as Python's
    errors="replace" does, so one bad string cannot make a whole datafeed
    batch unreadable; dfb_json_replacements() counts them. Syntax errors
    always fail. */
#define DFB_JSON_REPLACE_INVALID 0x1u
void dfb_json_set_options (dfb_json_t *self, unsigned options);

/*  U+FFFD substitutions made by the last parse (0 in strict mode). */
uint32_t dfb_json_replacements (const dfb_json_t *self);

/*  Human-readable reason of the last failed parse ("" after success). */
const char *dfb_json_error (const dfb_json_t *self);

/*  Number of values (tokens) on the tape: valid refs are 0 .. n-1; 0 after
    a failed parse. */
uint32_t dfb_json_size (const dfb_json_t *self);

/*  Type of the value at ref. ref must be valid. */
dfb_json_type_t dfb_json_type (const dfb_json_t *self, dfb_json_ref_t ref);

/*  Number of elements of an array, or of key/value pairs of an object;
    0 for scalars. */
uint32_t dfb_json_count (const dfb_json_t *self, dfb_json_ref_t ref);

/*  First element of an array, or first KEY of an object (its value is the
    next sibling); DFB_JSON_NONE when empty or not a container. */
dfb_json_ref_t dfb_json_first (const dfb_json_t *self, dfb_json_ref_t ref);

/*  The value following ref at the same level (skipping ref's subtree),
    or DFB_JSON_NONE after the last one. Inside an object keys and values
    alternate: key, value, key, value. */
dfb_json_ref_t dfb_json_next (const dfb_json_t *self, dfb_json_ref_t ref);

/*  Value of the first member named key in the object at ref, or
    DFB_JSON_NONE (also when ref is not an object). */
dfb_json_ref_t dfb_json_get (const dfb_json_t *self, dfb_json_ref_t ref, const char *key);

/*  Scalars. Strings are borrowed from the tape, valid until the next parse
    or destroy, NUL-terminated, and may contain NULs (use *len). Calling an
    accessor of the wrong type returns 0 / NULL. */
const char *dfb_json_string (const dfb_json_t *self, dfb_json_ref_t ref, size_t *len);
int64_t dfb_json_int (const dfb_json_t *self, dfb_json_ref_t ref);
uint64_t dfb_json_uint (const dfb_json_t *self, dfb_json_ref_t ref);
double dfb_json_double (const dfb_json_t *self, dfb_json_ref_t ref);

/*  Self-test; returns 0 when all checks pass. */
int dfb_json_test (int verbose);

#endif
