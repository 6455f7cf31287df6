/*  Internals shared by the files of libdfconsumer and by dftail: the
    envelope check, event construction and release, JSON helpers. Not
    installed, not part of the public API. */
#ifndef DFC_INTERNAL_H
#define DFC_INTERNAL_H

#include <stdatomic.h>

#include "dfconsumer.h"

#define DFC_WIRE_VERSION 1
#define DFC_MAX_TOPIC 255

/*  A NUL-terminated string value or NULL (for struct fields). */
const char *dfc_value_cstr(const dfc_value_t *v);
/*  JSON for a double (see dfc_value_to_json) into out (>= 32 bytes). */
void dfc_json_double(char *out, size_t size, double d);
/*  JSON string literal, snprintf-style like dfc_value_to_json. */
size_t dfc_json_string(const char *s, size_t len, char *buf, size_t size);

/*  Why a message was refused; indexes the per-reason counters. */
typedef enum {
    DFC_MSG_OK = 0,
    DFC_MSG_BAD_FRAMES,
    DFC_MSG_OVERSIZE,
    DFC_MSG_BAD_MSGPACK,
    DFC_MSG_NOT_MAP,
    DFC_MSG_BAD_VERSION,
    DFC_MSG_BAD_ENVELOPE,
    DFC_MSG_BAD_EVENT,
    DFC_MSG_NOMEM
} dfc_msg_status_t;
const char *dfc_msg_status_str(dfc_msg_status_t st);

typedef struct {
    const dfc_value_t *root, *event;
    uint64_t v, seq, gseq, ts;
    int64_t bot;
    const char *epoch;
} dfc_envelope_t;

/*  Checks the frame-2 map of contract v1: v (uint, <= 1), seq, gseq, ts
    (uint), bot (int64), epoch (str), event (map); unknown keys ignored. */
dfc_msg_status_t dfc_envelope_check(const dfc_value_t *root, dfc_envelope_t *env);

/*  Builds an event from the two frames (decoded once, payload structs
    filled from the type table). On success returns an event with one
    reference; on refusal NULL and *st says why. */
dfc_event_t *dfc_event_new(const void *topic, size_t topic_len, const void *body, size_t body_len,
                           size_t max_frame, dfc_msg_status_t *st);
void dfc_event_ref(dfc_event_t *ev);
/*  Drops a reference; the last one frees the event. */
void dfc_event_unref(dfc_event_t *ev);
/*  True when the topic is one of the 17 types. */
bool dfc_event_is_known(const dfc_event_t *ev);
/*  True when listener l has a callback for this event (on_unknown for
    unknown topics). */
bool dfc_event_has_callback(const dfc_event_t *ev, const dfc_listener_t *l);
/*  Calls l's callback for this event (which must exist). */
void dfc_event_dispatch(const dfc_event_t *ev, const dfc_listener_t *l);
const dfc_initiator_t *dfc_event_initiator(const dfc_event_t *ev);

/*  The thread-local listener context, set by workers around a callback. */
#define DFC_CONTEXT_MAX 256
void dfc_context_set(const char *worker, const char *event_id, const char *listener_id);
void dfc_context_clear(void);

#endif
