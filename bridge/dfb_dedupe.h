/*  dfb_dedupe: the window of recently published dedupe keys, so that an
    event Symphony delivers again (a batch redelivered after a crash or a
    lost ack) is not published twice. The key of an event is (id, type)
    (schemas/CONTRACT.md, "Dedupe and partition keys"); events without an id
    are never deduplicated. The window holds the last `window` keys, each
    for at most `max_age_ms`. Keys are kept as 128-bit fingerprints in
    preallocated arrays: nothing is allocated per event. One thread only. */
#ifndef DFB_DEDUPE_H
#define DFB_DEDUPE_H

#include <stddef.h>
#include <stdint.h>

/*  Largest window accepted (memory: ~28 bytes per key). */
#define DFB_DEDUPE_MAX_WINDOW 10000000

typedef struct dfb_dedupe dfb_dedupe_t;

/*  A window of `window` keys (0 = deduplication off: nothing is ever
    seen), each kept at most max_age_ms (0 = no age limit). NULL when out
    of memory or window > DFB_DEDUPE_MAX_WINDOW. */
dfb_dedupe_t *dfb_dedupe_new(size_t window, int64_t max_age_ms);

void dfb_dedupe_destroy(dfb_dedupe_t **self_p);

/*  1 when the key (id, type) was added within the window (as of now_ms),
    else 0. An empty id is never seen. */
int dfb_dedupe_seen(dfb_dedupe_t *self, const char *id, size_t id_len, const char *type,
                    size_t type_len, int64_t now_ms);

/*  Adds the key, stamped at ts_ms, evicting the oldest key when the window
    is full. An empty id is not added. */
void dfb_dedupe_add(dfb_dedupe_t *self, const char *id, size_t id_len, const char *type,
                    size_t type_len, int64_t ts_ms);

/*  Keys held now. */
size_t dfb_dedupe_count(const dfb_dedupe_t *self);

/*  Self-test; returns 0 when all checks pass. */
int dfb_dedupe_test(int verbose);

#endif
