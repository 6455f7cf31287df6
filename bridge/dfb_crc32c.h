/*  dfb_crc32c: CRC-32C (Castagnoli), the journal's record checksum, with a
    hardware implementation chosen at run time (x86-64 SSE4.2, ARMv8 CRC32)
    and a portable slicing-by-8 fallback. */
#ifndef DFB_CRC32C_H
#define DFB_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/*  CRC-32C of len bytes, continuing crc (start with 0): crc over parts
    chained equals one call over the whole. Thread-safe. The implementation
    is chosen on first use: the fastest the CPU supports, unless the
    environment variable DFB_CRC32C=portable forces the portable one. */
uint32_t dfb_crc32c(uint32_t crc, const void *data, size_t len);

/*  The name of the implementation dfb_crc32c uses: "sse4.2", "armv8" or
    "portable". */
const char *dfb_crc32c_impl(void);

/*  Test hook: the i-th implementation compiled in and supported by this CPU
    (0 is always "portable"), its name in *name; NULL past the last. */
typedef uint32_t (*dfb_crc32c_fn)(uint32_t crc, const void *data, size_t len);
dfb_crc32c_fn dfb_crc32c_impl_at(size_t i, const char **name);

/*  Self-test: every implementation against a bytewise reference (lengths
    0..1100 at alignments 0..7, chaining, the check value). 0 on success. */
int dfb_crc32c_test(int verbose);

#endif
