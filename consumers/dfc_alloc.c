/*  dfc_alloc: the allocations on the loop's growth paths (links, held
    events), with a test-only failure countdown so that tests can prove an
    out-of-memory there is logged, counted and survived; and the recycling
    pool of event blocks (no malloc per event on the receive path). */
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

typedef struct blk {
    struct blk *next;
} blk_t;

struct dfc_blocks {
    _Atomic(blk_t *) shared; /* given back, any thread */
    blk_t *mine;             /* the taker's own */
    char *scratch;           /* the taker's */
    size_t scratch_cap;
    atomic_size_t nfree; /* blocks in both lists */
    size_t max;
};

dfc_blocks_t *
dfc_blocks_new(size_t max)
{
    dfc_blocks_t *b = calloc(1, sizeof *b);
    if (b) {
        atomic_init(&b->shared, NULL);
        atomic_init(&b->nfree, 0);
        b->max = max;
    }
    return b;
}

static void
free_list(blk_t *x)
{
    while (x) {
        blk_t *next = x->next;
        free(x);
        x = next;
    }
}

void
dfc_blocks_destroy(dfc_blocks_t **blocks_p)
{
    if (!blocks_p || !*blocks_p)
        return;
    dfc_blocks_t *b = *blocks_p;
    free_list(b->mine);
    free_list(atomic_load(&b->shared));
    free(b->scratch);
    free(b);
    *blocks_p = NULL;
}

void *
dfc_blocks_scratch(dfc_blocks_t *b, size_t n)
{
    if (n > b->scratch_cap) {
        char *grown = realloc(b->scratch, n);
        if (!grown)
            return NULL;
        b->scratch = grown;
        b->scratch_cap = n;
    }
    return b->scratch;
}

void *
dfc_blocks_get(dfc_blocks_t *b)
{
    if (!b->mine)
        b->mine = atomic_exchange_explicit(&b->shared, NULL, memory_order_acquire);
    blk_t *x = b->mine;
    if (!x)
        return malloc(DFC_BLOCK_SIZE);
    b->mine = x->next;
    atomic_fetch_sub_explicit(&b->nfree, 1, memory_order_relaxed);
    return x;
}

void
dfc_blocks_put(dfc_blocks_t *b, void *block)
{
    if (atomic_fetch_add_explicit(&b->nfree, 1, memory_order_relaxed) >= b->max) {
        atomic_fetch_sub_explicit(&b->nfree, 1, memory_order_relaxed);
        free(block);
        return;
    }
    blk_t *x = block;
    x->next = atomic_load_explicit(&b->shared, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&b->shared, &x->next, x, memory_order_release,
                                                  memory_order_relaxed))
        ;
}
