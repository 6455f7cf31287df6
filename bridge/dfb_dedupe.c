/*  dfb_dedupe: a FIFO ring of key fingerprints plus an open-addressing index
    into it (linear probing, backward-shift deletion), so lookups, inserts
    and evictions are O(1) and allocate nothing (see dfb_dedupe.h). */
#include "dfb_dedupe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dfb_topics.h"

typedef struct {
    uint64_t h1, h2;
    int64_t ts;
} entry_t;

struct dfb_dedupe {
    size_t window;
    int64_t max_age;
    entry_t *ring; /* oldest at head, count entries */
    size_t head, count;
    uint32_t *index; /* ring position + 1, 0 = empty */
    size_t mask;
};

/*  Two independent 64-bit hashes of type '\0' id: FNV-1a (the contract's
    hash) and a multiply-xorshift mix, so that a false "seen" needs both to
    collide. */
static void
fingerprint(const char *id, size_t id_len, const char *type, size_t type_len, uint64_t *h1,
            uint64_t *h2)
{
    uint64_t a = 14695981039346656037ULL, b = 0x243f6a8885a308d3ULL;
    const char *parts[2] = {type, id};
    size_t lens[2] = {type_len, id_len};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < lens[k]; i++) {
            unsigned char c = (unsigned char)parts[k][i];
            a = (a ^ c) * 1099511628211ULL;
            b = (b ^ c) * 0x9e3779b97f4a7c15ULL;
            b ^= b >> 29;
        }
        a = (a ^ 0xffu) * 1099511628211ULL; /* separator: ("ab","c") != ("a","bc") */
        b = (b ^ 0xffu) * 0x9e3779b97f4a7c15ULL;
    }
    b ^= b >> 32;
    *h1 = a;
    *h2 = b;
}

dfb_dedupe_t *
dfb_dedupe_new(size_t window, int64_t max_age_ms)
{
    if (window > DFB_DEDUPE_MAX_WINDOW)
        return NULL;
    dfb_dedupe_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->window = window;
    self->max_age = max_age_ms;
    if (window == 0)
        return self;
    size_t slots = 16;
    while (slots < window * 2)
        slots *= 2;
    self->mask = slots - 1;
    self->ring = calloc(window, sizeof(entry_t));
    self->index = calloc(slots, sizeof(uint32_t));
    if (!self->ring || !self->index)
        dfb_dedupe_destroy(&self);
    return self;
}

void
dfb_dedupe_destroy(dfb_dedupe_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->ring);
    free((*self_p)->index);
    free(*self_p);
    *self_p = NULL;
}

/*  The index slot holding ring position pos (which must be indexed). */
static size_t
slot_of(const dfb_dedupe_t *self, size_t pos)
{
    size_t i = (size_t)self->ring[pos].h1 & self->mask;
    while (self->index[i] != pos + 1)
        i = (i + 1) & self->mask;
    return i;
}

/*  Removes the oldest entry (backward-shift deletion keeps probes valid). */
static void
evict_oldest(dfb_dedupe_t *self)
{
    size_t i = slot_of(self, self->head);
    for (size_t j = (i + 1) & self->mask;; j = (j + 1) & self->mask) {
        if (!self->index[j])
            break;
        size_t home = (size_t)self->ring[self->index[j] - 1].h1 & self->mask;
        /* j's entry may move to i only if its home is not in (i, j]. */
        int between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            self->index[i] = self->index[j];
            i = j;
        }
    }
    self->index[i] = 0;
    self->head = (self->head + 1) % self->window;
    self->count--;
}

static void
expire(dfb_dedupe_t *self, int64_t now_ms)
{
    while (self->max_age > 0 && self->count > 0 &&
           self->ring[self->head].ts + self->max_age <= now_ms)
        evict_oldest(self);
}

int
dfb_dedupe_seen(dfb_dedupe_t *self, const char *id, size_t id_len, const char *type,
                size_t type_len, int64_t now_ms)
{
    if (!self->window || !id_len)
        return 0;
    expire(self, now_ms);
    uint64_t h1, h2;
    fingerprint(id, id_len, type, type_len, &h1, &h2);
    for (size_t i = (size_t)h1 & self->mask; self->index[i]; i = (i + 1) & self->mask) {
        const entry_t *e = &self->ring[self->index[i] - 1];
        if (e->h1 == h1 && e->h2 == h2)
            return 1;
    }
    return 0;
}

void
dfb_dedupe_add(dfb_dedupe_t *self, const char *id, size_t id_len, const char *type, size_t type_len,
               int64_t ts_ms)
{
    if (!self->window || !id_len)
        return;
    if (self->count == self->window)
        evict_oldest(self);
    size_t pos = (self->head + self->count) % self->window;
    entry_t *e = &self->ring[pos];
    fingerprint(id, id_len, type, type_len, &e->h1, &e->h2);
    e->ts = ts_ms;
    size_t i = (size_t)e->h1 & self->mask;
    while (self->index[i])
        i = (i + 1) & self->mask;
    self->index[i] = (uint32_t)pos + 1;
    self->count++;
}

size_t
dfb_dedupe_count(const dfb_dedupe_t *self)
{
    return self->count;
}

/* ---- self-test ------------------------------------------------------------ */

/* The project's one CHECK macro set (tests/include/df_check.h). */
#include "df_check.h"

static int
seen(dfb_dedupe_t *d, const char *id, const char *type, int64_t now)
{
    return dfb_dedupe_seen(d, id, strlen(id), type, strlen(type), now);
}

static void
add(dfb_dedupe_t *d, const char *id, const char *type, int64_t now)
{
    dfb_dedupe_add(d, id, strlen(id), type, strlen(type), now);
}

int
dfb_dedupe_test(int verbose)
{
    df_check_failures = 0;
    /* (id, type) is the key: the same id under another type is new. */
    dfb_dedupe_t *d = dfb_dedupe_new(1000, 0);
    CHECK(d);
    add(d, "x1", "ROOMCREATED", 1);
    CHECK(seen(d, "x1", "ROOMCREATED", 2));
    CHECK(!seen(d, "x1", "USERJOINEDROOM", 2));
    CHECK(!seen(d, "x", "1ROOMCREATED", 2));
    CHECK(!seen(d, "", "ROOMCREATED", 2));
    add(d, "", "ROOMCREATED", 1); /* no id: never kept */
    CHECK(dfb_dedupe_count(d) == 1);
    dfb_dedupe_destroy(&d);
    CHECK(!d);

    /* Count window: 100 keys, 1000 added: exactly the last 100 are seen,
       across many evictions (backward shifts). */
    d = dfb_dedupe_new(100, 0);
    char id[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof id, "id-%d", i);
        add(d, id, "MESSAGESENT", i);
    }
    int hits = 0;
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof id, "id-%d", i);
        int s = seen(d, id, "MESSAGESENT", 1000);
        hits += s;
        CHECK(s == (i >= 900));
    }
    CHECK(hits == 100 && dfb_dedupe_count(d) == 100);
    dfb_dedupe_destroy(&d);

    /* Age window: a key older than max_age is forgotten. */
    d = dfb_dedupe_new(100, 1000);
    add(d, "a", "T", 0);
    add(d, "b", "T", 500);
    CHECK(seen(d, "a", "T", 999) && seen(d, "b", "T", 999));
    CHECK(!seen(d, "a", "T", 1000) && seen(d, "b", "T", 1000));
    CHECK(!seen(d, "b", "T", 1500) && dfb_dedupe_count(d) == 0);
    dfb_dedupe_destroy(&d);

    /* Window 0: off. */
    d = dfb_dedupe_new(0, 0);
    add(d, "a", "T", 0);
    CHECK(!seen(d, "a", "T", 0));
    dfb_dedupe_destroy(&d);
    CHECK(dfb_dedupe_new(DFB_DEDUPE_MAX_WINDOW + 1, 0) == NULL);
    if (verbose)
        printf("  dedupe: %d failures\n", df_check_failures);
    return df_check_failures;
}
