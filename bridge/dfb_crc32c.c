/*  dfb_crc32c: CRC-32C for the journal's records. The bytewise table loop
    was 15 % of the bridge's CPU; the hardware instruction does 8 bytes in a
    few cycles, slicing-by-8 is the fallback where there is none. */
#define _GNU_SOURCE
#include "dfb_crc32c.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DFB_CRC_X86 1
#include <nmmintrin.h>
#endif
#if defined(__aarch64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define DFB_CRC_ARM 1
#include <asm/hwcap.h>
#include <sys/auxv.h>
#if defined(__clang__) /* clang: target "crc" and its builtins (arm_acle.h needs +crc globally) */
#define ARM_CRC_TARGET __attribute__((target("crc")))
#define ARM_CRC32CB __builtin_arm_crc32cb
#define ARM_CRC32CD __builtin_arm_crc32cd
#else /* GCC: arm_acle.h declares the intrinsics under its own target pragma */
#include <arm_acle.h>
#define ARM_CRC_TARGET __attribute__((target("+crc")))
#define ARM_CRC32CB __crc32cb
#define ARM_CRC32CD __crc32cd
#endif
#endif

#define POLY 0x82f63b78u /* reflected Castagnoli polynomial */

static uint32_t s_table[8][256];
static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static dfb_crc32c_fn s_fn; /* written once under s_once */
static const char *s_name;
static size_t s_impl_n; /* entries of s_impls usable on this CPU */
static struct {
    dfb_crc32c_fn fn;
    const char *name;
} s_impls[3];

static uint32_t
crc_portable(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
    crc = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        crc = s_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        len--;
    }
    while (len >= 8) {
        /* Little-endian load of 8 bytes, byte by byte (no alignment or
           endianness assumption; the compiler makes it one load). */
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        uint32_t hi =
            (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        crc = s_table[7][lo & 0xff] ^ s_table[6][(lo >> 8) & 0xff] ^ s_table[5][(lo >> 16) & 0xff] ^
              s_table[4][lo >> 24] ^ s_table[3][hi & 0xff] ^ s_table[2][(hi >> 8) & 0xff] ^
              s_table[1][(hi >> 16) & 0xff] ^ s_table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = s_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#ifdef DFB_CRC_X86
__attribute__((target("sse4.2"))) static uint32_t
crc_sse42(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t c = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        len--;
    }
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        len -= 8;
    }
    while (len--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#endif

#ifdef DFB_CRC_ARM
ARM_CRC_TARGET static uint32_t
crc_armv8(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
    crc = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        crc = ARM_CRC32CB(crc, *p++);
        len--;
    }
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        crc = ARM_CRC32CD(crc, v);
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = ARM_CRC32CB(crc, *p++);
    return ~crc;
}
#endif

static void
crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        s_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            s_table[t][i] = s_table[0][s_table[t - 1][i] & 0xff] ^ (s_table[t - 1][i] >> 8);
    s_impls[s_impl_n].fn = crc_portable;
    s_impls[s_impl_n++].name = "portable";
#ifdef DFB_CRC_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) {
        s_impls[s_impl_n].fn = crc_sse42;
        s_impls[s_impl_n++].name = "sse4.2";
    }
#endif
#ifdef DFB_CRC_ARM
    if (getauxval(AT_HWCAP) & HWCAP_CRC32) {
        s_impls[s_impl_n].fn = crc_armv8;
        s_impls[s_impl_n++].name = "armv8";
    }
#endif
    /* The last supported one is the fastest; DFB_CRC32C=portable forces
       the fallback (to test or to rule the hardware path out). */
    const char *force = getenv("DFB_CRC32C");
    size_t pick = s_impl_n - 1;
    if (force && strcmp(force, "portable") == 0)
        pick = 0;
    s_fn = s_impls[pick].fn;
    s_name = s_impls[pick].name;
}

uint32_t
dfb_crc32c(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&s_once, crc_init);
    return s_fn(crc, data, len);
}

const char *
dfb_crc32c_impl(void)
{
    pthread_once(&s_once, crc_init);
    return s_name;
}

dfb_crc32c_fn
dfb_crc32c_impl_at(size_t i, const char **name)
{
    pthread_once(&s_once, crc_init);
    if (i >= s_impl_n)
        return NULL;
    if (name)
        *name = s_impls[i].name;
    return s_impls[i].fn;
}

/* The reference the others are checked against: one bit at a time, no table. */
static uint32_t
crc_bitwise(uint32_t crc, const unsigned char *p, size_t len)
{
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? (crc >> 1) ^ POLY : crc >> 1;
    }
    return ~crc;
}

int
dfb_crc32c_test(int verbose)
{
    enum { MAXLEN = 1100 };
    static unsigned char buf[MAXLEN + 16];
    uint32_t x = 0x12345678u;
    for (size_t i = 0; i < sizeof buf; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 24);
    }
    int fails = 0;
    const char *name;
    dfb_crc32c_fn fn;
    size_t n = 0;
    for (; (fn = dfb_crc32c_impl_at(n, &name)) != NULL; n++) {
        int bad = 0;
        if (fn(0, "123456789", 9) != 0xE3069283u) {
            fprintf(stderr, "crc32c %s: check value %08x\n", name, fn(0, "123456789", 9));
            bad++;
        }
        if (fn(0, "", 0) != 0 || fn(0xdeadbeefu, buf, 0) != 0xdeadbeefu)
            bad++;
        for (size_t align = 0; align < 8 && bad < 5; align++)
            for (size_t len = 0; len <= MAXLEN && bad < 5; len++) {
                const unsigned char *p = buf + align;
                uint32_t want = crc_bitwise(0, p, len);
                uint32_t got = fn(0, p, len);
                /* Chained over three parts, cut at places that straddle
                   the 8-byte steps. */
                size_t a = len / 3, b = len - len / 5;
                uint32_t part = fn(fn(fn(0, p, a), p + a, b - a), p + b, len - b);
                if (got != want || part != want) {
                    fprintf(stderr, "crc32c %s: len %zu align %zu: %08x/%08x want %08x\n", name,
                            len, align, got, part, want);
                    bad++;
                }
            }
        if (verbose)
            printf("  crc32c %s: %s\n", name, bad ? "FAILED" : "ok");
        fails += bad;
    }
    if (n < 1 || dfb_crc32c(0, "123456789", 9) != 0xE3069283u)
        fails++;
    /* The forcing switch works (ctest bridge_crc32c_portable sets it). */
    const char *force = getenv("DFB_CRC32C");
    if (force && strcmp(force, "portable") == 0 && strcmp(dfb_crc32c_impl(), "portable") != 0)
        fails++;
    if (verbose)
        printf("  crc32c in use: %s (%zu implementations)\n", dfb_crc32c_impl(), n);
    return fails ? 1 : 0;
}
