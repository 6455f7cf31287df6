/*  dfb_topics: the bounded topic -> seq map (see dfb_topics.h). Slots are
    allocated once; a topic's name is allocated the first time it is seen,
    so steady-state lookups allocate nothing. */
#include "dfb_topics.h"

#include <stdlib.h>
#include <string.h>

/*  At most half full so linear probes stay short. */
#define SLOTS (DFB_TOPICS_MAX * 2)

struct dfb_topics {
    dfb_topic_t *slots;
    uint32_t count;
    size_t bytes; /* of the names */
};

uint64_t
dfb_fnv1a64(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

dfb_topics_t *
dfb_topics_new(void)
{
    dfb_topics_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->slots = calloc(SLOTS, sizeof(dfb_topic_t));
    if (!self->slots) {
        free(self);
        return NULL;
    }
    return self;
}

void
dfb_topics_destroy(dfb_topics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_topics_t *self = *self_p;
    for (size_t i = 0; i < SLOTS; i++)
        free(self->slots[i].topic);
    free(self->slots);
    free(self);
    *self_p = NULL;
}

dfb_topic_t *
dfb_topics_get(dfb_topics_t *self, const char *topic, size_t len, int create)
{
    size_t i = (size_t)dfb_fnv1a64(topic, len) & (SLOTS - 1);
    for (size_t n = 0; n < SLOTS; n++, i = (i + 1) & (SLOTS - 1)) {
        dfb_topic_t *s = &self->slots[i];
        if (!s->topic) {
            if (!create || self->count >= DFB_TOPICS_MAX || len > DFB_TOPICS_MAX_LEN ||
                len > DFB_TOPICS_MAX_BYTES - self->bytes)
                return NULL;
            s->topic = malloc(len + 1);
            if (!s->topic)
                return NULL;
            memcpy(s->topic, topic, len);
            s->topic[len] = '\0';
            s->len = len;
            s->seq = 0;
            self->count++;
            self->bytes += len;
            return s;
        }
        if (s->len == len && memcmp(s->topic, topic, len) == 0)
            return s;
    }
    return NULL;
}

uint32_t
dfb_topics_count(const dfb_topics_t *self)
{
    return self->count;
}

size_t
dfb_topics_bytes(const dfb_topics_t *self)
{
    return self->bytes;
}

dfb_topic_t *
dfb_topics_next(const dfb_topics_t *self, size_t *cursor)
{
    while (*cursor < SLOTS) {
        dfb_topic_t *s = &self->slots[(*cursor)++];
        if (s->topic)
            return s;
    }
    return NULL;
}

int
dfb_topics_copy(dfb_topics_t *self, const dfb_topics_t *other)
{
    size_t cur = 0;
    for (dfb_topic_t *t; (t = dfb_topics_next(other, &cur));) {
        dfb_topic_t *mine = dfb_topics_get(self, t->topic, t->len, 1);
        if (!mine)
            return -1;
        mine->seq = t->seq;
    }
    return 0;
}

const char *const dfb_event_types[DFB_EVENT_TYPES] = {
    "MESSAGESENT",
    "SHAREDPOST",
    "INSTANTMESSAGECREATED",
    "ROOMCREATED",
    "ROOMUPDATED",
    "ROOMDEACTIVATED",
    "ROOMREACTIVATED",
    "USERREQUESTEDTOJOINROOM",
    "USERJOINEDROOM",
    "USERLEFTROOM",
    "ROOMMEMBERPROMOTEDTOOWNER",
    "ROOMMEMBERDEMOTEDFROMOWNER",
    "CONNECTIONREQUESTED",
    "CONNECTIONACCEPTED",
    "MESSAGESUPPRESSED",
    "SYMPHONYELEMENTSACTION",
    "GENERICSYSTEMEVENT",
};

size_t
dfb_event_type_index(const char *topic, size_t len)
{
    for (size_t i = 0; i < DFB_EVENT_TYPES; i++)
        if (strlen(dfb_event_types[i]) == len && memcmp(dfb_event_types[i], topic, len) == 0)
            return i;
    return DFB_EVENT_TYPES;
}
