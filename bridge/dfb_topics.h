/*  dfb_topics: a bounded map topic -> last seq, the wire contract's per-topic
    counters. Used by the publisher (next seq to give), the publisher actor
    (last seq published, for heartbeats) and the journal (segment headers,
    recovery). Open addressing, at most DFB_TOPICS_MAX entries, so a hostile
    pod inventing types cannot grow memory. Not thread-safe: one owner. */
#ifndef DFB_TOPICS_H
#define DFB_TOPICS_H

#include <stddef.h>
#include <stdint.h>

/*  Most distinct topics (UNKNOWN included), and most bytes of their names
    in total: every name rides in each heartbeat and each journal segment
    header, so both stay small whatever the pod sends. */
#define DFB_TOPICS_MAX 4096
#define DFB_TOPICS_MAX_BYTES (256 * 1024)
/*  Longest name the map takes (DFB_TOPIC_MAX_LEN of the wire contract). */
#define DFB_TOPICS_MAX_LEN 255

typedef struct dfb_topics dfb_topics_t;

/*  One entry; topic is NUL-terminated and owned by the map. */
typedef struct {
    char *topic;
    size_t len;
    uint64_t seq;
} dfb_topic_t;

/*  Returns an empty map, or NULL when out of memory. */
dfb_topics_t *dfb_topics_new(void);

/*  Frees the map and its topics, NULLs *self_p; accepts NULL. */
void dfb_topics_destroy(dfb_topics_t **self_p);

/*  The entry of topic; inserted with seq 0 when create is set and the cap
    allows. Returns NULL when absent (and not created) or out of memory.
    (the count and bytes caps above). The pointer stays valid until the map is destroyed. */
dfb_topic_t *dfb_topics_get(dfb_topics_t *self, const char *topic, size_t len, int create);

/*  Number of topics. */
uint32_t dfb_topics_count(const dfb_topics_t *self);

/*  Total bytes of the topics' names (at most DFB_TOPICS_MAX_BYTES). */
size_t dfb_topics_bytes(const dfb_topics_t *self);

/*  Iteration in an unspecified but stable order: *cursor starts at 0;
    returns the next entry or NULL at the end. */
dfb_topic_t *dfb_topics_next(const dfb_topics_t *self, size_t *cursor);

/*  Sets every topic's seq (inserting topics) from other. Returns 0 or -1
    (cap or memory: the map then holds a prefix). */
int dfb_topics_copy(dfb_topics_t *self, const dfb_topics_t *other);

/*  The contract's 17 event types (schemas/contract-v1.json "topics", in its
    order; tests/schemas_lists.py checks this list): /metrics counts
    published events per type and puts every other topic under one label. */
#define DFB_EVENT_TYPES 17
extern const char *const dfb_event_types[DFB_EVENT_TYPES];

/*  The index of topic (len bytes) in dfb_event_types, or DFB_EVENT_TYPES
    for any other topic. */
size_t dfb_event_type_index(const char *topic, size_t len);

/*  FNV-1a 64 over len bytes (the contract's hash, schemas/CONTRACT.md). */
uint64_t dfb_fnv1a64(const void *data, size_t len);

#endif
