/*  dfc_alloc: the allocations on the loop's growth paths (links, held
    events), with a test-only failure countdown so that tests can prove an
    out-of-memory there is logged, counted and survived. */
#include <stdatomic.h>
#include <stdlib.h>

#include "dfc_internal.h"

static atomic_int fail_next;

void
dfc_alloc_fail_next(int n)
{
    atomic_store(&fail_next, n);
}

void *
dfc_realloc(void *p, size_t n)
{
    int left = atomic_load(&fail_next);
    while (left > 0)
        if (atomic_compare_exchange_weak(&fail_next, &left, left - 1))
            return NULL;
    return realloc(p, n);
}
