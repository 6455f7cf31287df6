/*  df_check: the one set of CHECK macros for the project's C tests. A
    failed check prints file:line and the expression (with both values for
    CHECK_EQ/CHECK_STR) and counts in df_check_failures; a test program
    returns DF_CHECK_RESULT() at the end. Header-only: each test is one
    program (one translation unit includes it). */
#ifndef DF_CHECK_H
#define DF_CHECK_H

#include <stdio.h>
#include <string.h>

static int df_check_failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                        \
            df_check_failures++;                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "FAIL %s:%d: %s == %lld, want %lld\n", __FILE__, __LINE__, #a, a_,   \
                    b_);                                                                           \
            df_check_failures++;                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                   \
            fprintf(stderr, "FAIL %s:%d: %s\n  got:  %s\n  want: %s\n", __FILE__, __LINE__, #a,    \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                       \
            df_check_failures++;                                                                   \
        }                                                                                          \
    } while (0)

/*  0 when every check passed, 1 otherwise (for main's return). */
#define DF_CHECK_RESULT() (df_check_failures ? 1 : 0)

/*  Says how program `name` ended ("N failure(s)" on stderr or "all checks
    passed") and returns main's exit status. */
static inline int
df_check_report(const char *name)
{
    if (df_check_failures)
        fprintf(stderr, "%s: %d failure(s)\n", name, df_check_failures);
    else
        printf("%s: all checks passed\n", name);
    return DF_CHECK_RESULT();
}

#endif
