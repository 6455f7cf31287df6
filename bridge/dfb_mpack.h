/*  dfb_mpack: the small msgpack writer and the bounded reader the bridge
    needs for its own messages (heartbeat, replay end marker, replay
    requests). The event bodies are written by dfb_transcode. The writer
    emits the contract's canonical (smallest) forms; the reader trusts no
    declared length: every length is checked against the bytes left. */
#ifndef DFB_MPACK_H
#define DFB_MPACK_H

#include <stddef.h>
#include <stdint.h>

#include "dfb_transcode.h"

/*  Writers: append to buf; return 0, or -1 when out of memory. */
int dfb_mpack_map(dfb_buf_t *buf, uint32_t n);
int dfb_mpack_array(dfb_buf_t *buf, uint32_t n);
int dfb_mpack_str(dfb_buf_t *buf, const char *s, size_t len);
int dfb_mpack_cstr(dfb_buf_t *buf, const char *s);
int dfb_mpack_uint(dfb_buf_t *buf, uint64_t v);
int dfb_mpack_bool(dfb_buf_t *buf, int v);
int dfb_mpack_nil(dfb_buf_t *buf);
/*  Any int64 in its smallest form (a non-negative one as dfb_mpack_uint). */
int dfb_mpack_int(dfb_buf_t *buf, int64_t v);

/*  Bounded reader over [p, end). */
typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} dfb_mpack_reader_t;

typedef enum {
    DFB_MP_NONE = 0, /* truncated or not a value this reader knows */
    DFB_MP_NIL,
    DFB_MP_BOOL,
    DFB_MP_UINT, /* a non-negative integer in any int form */
    DFB_MP_INT,  /* a negative integer */
    DFB_MP_FLOAT,
    DFB_MP_STR,
    DFB_MP_BIN,
    DFB_MP_ARRAY,
    DFB_MP_MAP,
    DFB_MP_EXT
} dfb_mp_type_t;

/*  The type of the next value (without consuming it). */
dfb_mp_type_t dfb_mpack_peek(const dfb_mpack_reader_t *r);

/*  Readers: consume one value of the named type; return 0, or -1 (wrong
    type or truncated; the reader is then left unchanged). Strings point into
    the input. */
int dfb_mpack_read_map(dfb_mpack_reader_t *r, uint32_t *n);
int dfb_mpack_read_array(dfb_mpack_reader_t *r, uint32_t *n);
int dfb_mpack_read_str(dfb_mpack_reader_t *r, const char **s, size_t *len);
int dfb_mpack_read_uint(dfb_mpack_reader_t *r, uint64_t *v);

/*  A negative or non-negative integer that fits int64_t (an uint64 above
    INT64_MAX is refused). */
int dfb_mpack_read_int(dfb_mpack_reader_t *r, int64_t *v);
int dfb_mpack_read_bool(dfb_mpack_reader_t *r, int *v);
int dfb_mpack_read_nil(dfb_mpack_reader_t *r);
/*  Bytes point into the input. */
int dfb_mpack_read_bin(dfb_mpack_reader_t *r, const uint8_t **b, size_t *len);
/*  A float32 or float64, as a double. */
int dfb_mpack_read_float(dfb_mpack_reader_t *r, double *v);

/*  Skips one value of any type, nested at most depth levels. 0 or -1. */
int dfb_mpack_skip(dfb_mpack_reader_t *r, int depth);

#endif
