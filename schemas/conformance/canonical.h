/*  canonical: the canonical JSON of an event (README.md, "Canonical JSON of an
    event") written from libdfconsumer's values into a growing text buffer. The
    one C printer of it: the conformance adapter (adapter_c.c) and the polyglot
    live test's C worker (tests/polyglot/c_worker.c) both print through it. */
#ifndef DF_CANONICAL_H
#define DF_CANONICAL_H

#include <stdbool.h>
#include <stddef.h>

#include "dfconsumer.h"

/*  A growing NUL-terminated text; start it as {0}, free(b.p) when done. When
    an allocation fails, oom is set, the text stops growing and later writes
    are ignored: the caller decides what a lost line means. */
typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} canonical_buf_t;

void canonical_put(canonical_buf_t *b, const void *data, size_t len);
void canonical_puts(canonical_buf_t *b, const char *s);
void canonical_printf(canonical_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*  A JSON string by the canonical rule: '"' and '\' escaped, bytes below 0x20
    as \u00xx, every other byte as it is. */
void canonical_str(canonical_buf_t *b, const char *s, size_t len);

/*  The canonical JSON of v: maps in wire order with a repeated key once, at its
    first position, with its last value; ints exact; floats "f64:<bits>"; bin
    "bin:<hex>"; ext "ext:<type>:<hex>". */
void canonical_value(canonical_buf_t *b, const dfc_value_t *v);

/*  The 17 typed callbacks of dfc_listener_t: X(field, payload type). The field
    name is the C name a printed line reports as its "callback". */
#define CANONICAL_CALLBACKS(X)                                                                     \
    X(on_message_sent, dfc_message_sent_t)                                                         \
    X(on_shared_post, dfc_shared_post_t)                                                           \
    X(on_instant_message_created, dfc_instant_message_created_t)                                   \
    X(on_room_created, dfc_room_created_t)                                                         \
    X(on_room_updated, dfc_room_updated_t)                                                         \
    X(on_room_deactivated, dfc_room_deactivated_t)                                                 \
    X(on_room_reactivated, dfc_room_reactivated_t)                                                 \
    X(on_user_requested_to_join_room, dfc_user_requested_to_join_room_t)                           \
    X(on_user_joined_room, dfc_user_joined_room_t)                                                 \
    X(on_user_left_room, dfc_user_left_room_t)                                                     \
    X(on_room_member_promoted_to_owner, dfc_room_member_promoted_to_owner_t)                       \
    X(on_room_member_demoted_from_owner, dfc_room_member_demoted_from_owner_t)                     \
    X(on_connection_requested, dfc_connection_requested_t)                                         \
    X(on_connection_accepted, dfc_connection_accepted_t)                                           \
    X(on_message_suppressed, dfc_message_suppressed_t)                                             \
    X(on_symphony_elements_action, dfc_symphony_elements_action_t)                                 \
    X(on_generic_system_event, dfc_generic_system_event_t)

#endif
