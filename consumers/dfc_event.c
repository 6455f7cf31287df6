/*  dfc_event: one received message decoded once into an event shared by all
    its jobs. The 17 event types are data: one X-macro table names each type,
    its payload key, its payload struct and callback, and field descriptor
    tables (offsetof into the public structs) drive the decoding. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "dfc_internal.h"

/* ------------------------------------------------- field descriptors */

typedef enum { F_STR, F_I64, F_BOOL, F_VALUE, F_OBJ } fkind_t;

typedef struct sdesc sdesc_t;
typedef struct {
    const char *key; /* key and klen first: a dfc_key_t (dfc_value_lookup) */
    size_t klen;
    fkind_t kind;
    size_t off;
    const sdesc_t *sub; /* F_OBJ */
    size_t has_off1;    /* F_I64: offset+1 of a bool set when present; 0 = none */
} fdesc_t;

struct sdesc {
    size_t raw_off;
    const fdesc_t *fields;
    size_t nfields;
};

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_FIELDS 32 /* per struct (the largest, the message, has 20): checked in SDESC */
#define FSTR(T, k, m)                                                                              \
    {                                                                                              \
        k, sizeof(k) - 1, F_STR, offsetof(T, m), NULL, 0                                           \
    }
#define FI64(T, k, m)                                                                              \
    {                                                                                              \
        k, sizeof(k) - 1, F_I64, offsetof(T, m), NULL, 0                                           \
    }
#define FBOOL(T, k, m)                                                                             \
    {                                                                                              \
        k, sizeof(k) - 1, F_BOOL, offsetof(T, m), NULL, 0                                          \
    }
#define FVAL(T, k, m)                                                                              \
    {                                                                                              \
        k, sizeof(k) - 1, F_VALUE, offsetof(T, m), NULL, 0                                         \
    }
#define FOBJ(T, k, m, d)                                                                           \
    {                                                                                              \
        k, sizeof(k) - 1, F_OBJ, offsetof(T, m), &d, 0                                             \
    }
#define SDESC(T, f)                                                                                \
    {                                                                                              \
        offsetof(T, raw), f, N(f) + 0 * sizeof(char[N(f) <= MAX_FIELDS ? 1 : -1])                  \
    }
_Static_assert(offsetof(fdesc_t, key) == offsetof(dfc_key_t, s) &&
                   offsetof(fdesc_t, klen) == offsetof(dfc_key_t, len),
               "a field descriptor starts with a dfc_key_t");

static const fdesc_t user_f[] = {
    {"userId", sizeof("userId") - 1, F_I64, offsetof(dfc_user_t, user_id), NULL,
     offsetof(dfc_user_t, has_user_id) + 1},
    FSTR(dfc_user_t, "username", username),
    FSTR(dfc_user_t, "displayName", display_name),
    FSTR(dfc_user_t, "firstName", first_name),
    FSTR(dfc_user_t, "lastName", last_name),
    FSTR(dfc_user_t, "email", email),
};
static const sdesc_t USER = SDESC(dfc_user_t, user_f);

static const fdesc_t initiator_f[] = {FOBJ(dfc_initiator_t, "user", user, USER)};
static const sdesc_t INITIATOR = SDESC(dfc_initiator_t, initiator_f);

static const fdesc_t stream_f[] = {
    FSTR(dfc_stream_t, "streamId", stream_id),
    FSTR(dfc_stream_t, "streamType", stream_type),
    FSTR(dfc_stream_t, "roomName", room_name),
    FBOOL(dfc_stream_t, "external", external),
    FBOOL(dfc_stream_t, "crossPod", cross_pod),
    FVAL(dfc_stream_t, "members", members),
    FVAL(dfc_stream_t, "recipientTenantIds", recipient_tenant_ids),
};
static const sdesc_t STREAM = SDESC(dfc_stream_t, stream_f);

static const fdesc_t message_f[] = {
    FSTR(dfc_message_t, "messageId", message_id),
    FSTR(dfc_message_t, "parentMessageId", parent_message_id),
    FI64(dfc_message_t, "timestamp", timestamp),
    FSTR(dfc_message_t, "message", message),
    FSTR(dfc_message_t, "data", data),
    FVAL(dfc_message_t, "attachments", attachments),
    FVAL(dfc_message_t, "sharedMessage", shared_message),
    FOBJ(dfc_message_t, "user", user, USER),
    FOBJ(dfc_message_t, "stream", stream, STREAM),
    FBOOL(dfc_message_t, "externalRecipients", external_recipients),
    FBOOL(dfc_message_t, "silent", silent),
    FSTR(dfc_message_t, "userAgent", user_agent),
    FSTR(dfc_message_t, "originalFormat", original_format),
    FSTR(dfc_message_t, "disclaimer", disclaimer),
    FSTR(dfc_message_t, "sid", sid),
    FSTR(dfc_message_t, "replacing", replacing),
    FSTR(dfc_message_t, "replacedBy", replaced_by),
    FSTR(dfc_message_t, "initialMessageId", initial_message_id),
    FSTR(dfc_message_t, "diagnostic", diagnostic),
    FI64(dfc_message_t, "initialTimestamp", initial_timestamp),
};
static const sdesc_t MESSAGE = SDESC(dfc_message_t, message_f);

static const fdesc_t room_props_f[] = {
    FSTR(dfc_room_properties_t, "name", name),
    FSTR(dfc_room_properties_t, "description", description),
    FOBJ(dfc_room_properties_t, "creatorUser", creator_user, USER),
    FI64(dfc_room_properties_t, "createdDate", created_date),
    FBOOL(dfc_room_properties_t, "external", external),
    FBOOL(dfc_room_properties_t, "crossPod", cross_pod),
    FBOOL(dfc_room_properties_t, "public", is_public),
    FBOOL(dfc_room_properties_t, "copyProtected", copy_protected),
    FBOOL(dfc_room_properties_t, "readOnly", read_only),
    FBOOL(dfc_room_properties_t, "discoverable", discoverable),
    FBOOL(dfc_room_properties_t, "membersCanInvite", members_can_invite),
    FBOOL(dfc_room_properties_t, "canViewHistory", can_view_history),
    FVAL(dfc_room_properties_t, "keywords", keywords),
};
static const sdesc_t ROOM_PROPS = SDESC(dfc_room_properties_t, room_props_f);

/* ------------------------------------------------------ the 17 payloads */

static const fdesc_t message_sent_f[] = {FOBJ(dfc_message_sent_t, "message", message, MESSAGE)};
static const fdesc_t shared_post_f[] = {
    FOBJ(dfc_shared_post_t, "message", message, MESSAGE),
    FOBJ(dfc_shared_post_t, "sharedMessage", shared_message, MESSAGE),
};
static const fdesc_t stream_event_f[] = {FOBJ(dfc_stream_event_t, "stream", stream, STREAM)};
static const fdesc_t room_created_f[] = {
    FOBJ(dfc_room_created_t, "stream", stream, STREAM),
    FOBJ(dfc_room_created_t, "roomProperties", room_properties, ROOM_PROPS),
};
static const fdesc_t room_updated_f[] = {
    FOBJ(dfc_room_updated_t, "stream", stream, STREAM),
    FOBJ(dfc_room_updated_t, "newRoomProperties", room_properties, ROOM_PROPS),
};
static const fdesc_t room_member_f[] = {
    FOBJ(dfc_room_member_t, "stream", stream, STREAM),
    FOBJ(dfc_room_member_t, "affectedUser", affected_user, USER),
};
static const fdesc_t join_request_f[] = {
    FOBJ(dfc_user_requested_to_join_room_t, "stream", stream, STREAM),
    FVAL(dfc_user_requested_to_join_room_t, "affectedUsers", affected_users),
};
static const fdesc_t conn_requested_f[] = {
    FOBJ(dfc_connection_requested_t, "toUser", to_user, USER)};
static const fdesc_t conn_accepted_f[] = {
    FOBJ(dfc_connection_accepted_t, "fromUser", from_user, USER)};
static const fdesc_t suppressed_f[] = {
    FSTR(dfc_message_suppressed_t, "messageId", message_id),
    FOBJ(dfc_message_suppressed_t, "stream", stream, STREAM),
};
static const fdesc_t elements_f[] = {
    FOBJ(dfc_symphony_elements_action_t, "stream", stream, STREAM),
    FSTR(dfc_symphony_elements_action_t, "formMessageId", form_message_id),
    FSTR(dfc_symphony_elements_action_t, "formId", form_id),
    FVAL(dfc_symphony_elements_action_t, "formValues", form_values),
};
static const fdesc_t generic_f[] = {
    FOBJ(dfc_generic_system_event_t, "stream", stream, STREAM),
    FI64(dfc_generic_system_event_t, "eventTimestamp", event_timestamp),
    FSTR(dfc_generic_system_event_t, "sourceSystem", source_system),
    FSTR(dfc_generic_system_event_t, "eventSubtype", event_subtype),
    FVAL(dfc_generic_system_event_t, "parameters", parameters),
};

/*  type, payload key, union member / callback suffix, struct, fields. */
#define DFC_EVENT_TABLE(X)                                                                         \
    X("MESSAGESENT", "messageSent", message_sent, dfc_message_sent_t, message_sent_f)              \
    X("SHAREDPOST", "sharedPost", shared_post, dfc_shared_post_t, shared_post_f)                   \
    X("INSTANTMESSAGECREATED", "instantMessageCreated", instant_message_created,                   \
      dfc_instant_message_created_t, stream_event_f)                                               \
    X("ROOMCREATED", "roomCreated", room_created, dfc_room_created_t, room_created_f)              \
    X("ROOMUPDATED", "roomUpdated", room_updated, dfc_room_updated_t, room_updated_f)              \
    X("ROOMDEACTIVATED", "roomDeactivated", room_deactivated, dfc_room_deactivated_t,              \
      stream_event_f)                                                                              \
    X("ROOMREACTIVATED", "roomReactivated", room_reactivated, dfc_room_reactivated_t,              \
      stream_event_f)                                                                              \
    X("USERREQUESTEDTOJOINROOM", "userRequestedToJoinRoom", user_requested_to_join_room,           \
      dfc_user_requested_to_join_room_t, join_request_f)                                           \
    X("USERJOINEDROOM", "userJoinedRoom", user_joined_room, dfc_user_joined_room_t, room_member_f) \
    X("USERLEFTROOM", "userLeftRoom", user_left_room, dfc_user_left_room_t, room_member_f)         \
    X("ROOMMEMBERPROMOTEDTOOWNER", "roomMemberPromotedToOwner", room_member_promoted_to_owner,     \
      dfc_room_member_promoted_to_owner_t, room_member_f)                                          \
    X("ROOMMEMBERDEMOTEDFROMOWNER", "roomMemberDemotedFromOwner", room_member_demoted_from_owner,  \
      dfc_room_member_demoted_from_owner_t, room_member_f)                                         \
    X("CONNECTIONREQUESTED", "connectionRequested", connection_requested,                          \
      dfc_connection_requested_t, conn_requested_f)                                                \
    X("CONNECTIONACCEPTED", "connectionAccepted", connection_accepted, dfc_connection_accepted_t,  \
      conn_accepted_f)                                                                             \
    X("MESSAGESUPPRESSED", "messageSuppressed", message_suppressed, dfc_message_suppressed_t,      \
      suppressed_f)                                                                                \
    X("SYMPHONYELEMENTSACTION", "symphonyElementsAction", symphony_elements_action,                \
      dfc_symphony_elements_action_t, elements_f)                                                  \
    X("GENERICSYSTEMEVENT", "genericSystemEvent", generic_system_event,                            \
      dfc_generic_system_event_t, generic_f)

typedef union {
#define X(type, key, m, T, f) T m;
    DFC_EVENT_TABLE(X)
#undef X
} payload_u;

struct dfc_event {
    atomic_int refs;
    dfc_blocks_t *blocks; /* where the block goes back to (pooled) */
    bool pooled;
    dfc_doc_t *doc;
    char topic[DFC_MAX_TOPIC + 1];
    dfc_envelope_t env;
    size_t topic_len;
    size_t wire_size; /* topic + body as received */
    const char *id, *type;
    size_t id_len, type_len;
    int64_t timestamp;
    int kind; /* index in etypes, -1 when unknown */
    dfc_initiator_t initiator;
    payload_u payload;
};

/*  Calls through the right function type: one small trampoline per type,
    generated from the same table. */
#define X(type, key, m, T, f)                                                                      \
    static bool has_##m(const dfc_listener_t *l)                                                   \
    {                                                                                              \
        return l->on_##m != NULL;                                                                  \
    }                                                                                              \
    static void call_##m(const dfc_listener_t *l, const dfc_event_t *ev)                           \
    {                                                                                              \
        l->on_##m(l->ctx, ev, &ev->initiator, &ev->payload.m);                                     \
    }
DFC_EVENT_TABLE(X)
#undef X

typedef struct {
    const char *type, *key;
    sdesc_t desc; /* raw_off is into the payload struct */
    bool (*has)(const dfc_listener_t *);
    void (*call)(const dfc_listener_t *, const dfc_event_t *);
} etype_t;

static const etype_t etypes[] = {
#define X(type, key, m, T, f) {type, key, SDESC(T, f), has_##m, call_##m},
    DFC_EVENT_TABLE(X)
#undef X
};

/* ------------------------------------------------------------- decoding */

static void
decode_struct(const dfc_value_t *map, const sdesc_t *d, void *out)
{
    if (dfc_value_type(map) != DFC_MAP)
        return;
    char *base = out;
    *(const dfc_value_t **)(base + d->raw_off) = map;
    const dfc_value_t *vals[MAX_FIELDS];
    dfc_value_lookup(map, d->fields, sizeof *d->fields, d->nfields, vals); /* one pass */
    for (size_t i = 0; i < d->nfields; i++) {
        const fdesc_t *f = &d->fields[i];
        const dfc_value_t *v = vals[i];
        if (!v)
            continue;
        switch (f->kind) {
        case F_STR:
            *(const char **)(base + f->off) = dfc_value_cstr(v);
            break;
        case F_I64:
            if (dfc_value_int64(v, (int64_t *)(base + f->off)) == 0 && f->has_off1)
                *(bool *)(base + f->has_off1 - 1) = true;
            break;
        case F_BOOL:
            *(bool *)(base + f->off) = dfc_value_bool(v);
            break;
        case F_VALUE:
            *(const dfc_value_t **)(base + f->off) = v;
            break;
        case F_OBJ:
            decode_struct(v, f->sub, base + f->off);
            break;
        }
    }
}

const char *
dfc_msg_status_str(dfc_msg_status_t st)
{
    static const char *names[] = {"ok",
                                  "frame count is not 2, or topic empty or over 255 bytes",
                                  "oversize",
                                  "bad msgpack",
                                  "not a map",
                                  "bad or newer version",
                                  "bad envelope field",
                                  "event missing or not a map",
                                  "out of memory"};
    return (size_t)st < N(names) ? names[st] : "?";
}

dfc_msg_status_t
dfc_frames_check(size_t nparts, size_t topic_len)
{
    return nparts == 2 && topic_len > 0 && topic_len <= DFC_MAX_TOPIC ? DFC_MSG_OK
                                                                      : DFC_MSG_BAD_FRAMES;
}

dfc_msg_status_t
dfc_envelope_check(const dfc_value_t *root, dfc_envelope_t *env)
{
    memset(env, 0, sizeof *env);
    if (dfc_value_type(root) != DFC_MAP)
        return DFC_MSG_NOT_MAP;
    env->root = root;
    /* the envelope's keys, found in one pass (the first of each, as dfc_value_find) */
    static const dfc_key_t keys[] = {{"v", 1},   {"seq", 3},   {"gseq", 4}, {"ts", 2},
                                     {"bot", 3}, {"epoch", 5}, {"event", 5}};
    const dfc_value_t *k[N(keys)];
    dfc_value_lookup(root, keys, sizeof keys[0], N(keys), k);
    if (dfc_value_uint64(k[0], &env->v) || env->v > DFC_WIRE_VERSION)
        return DFC_MSG_BAD_VERSION;
    if (dfc_value_uint64(k[1], &env->seq) || dfc_value_uint64(k[2], &env->gseq) ||
        dfc_value_uint64(k[3], &env->ts) || dfc_value_int64(k[4], &env->bot) ||
        dfc_value_type(k[5]) != DFC_STR)
        return DFC_MSG_BAD_ENVELOPE;
    env->epoch = dfc_value_str(k[5], &env->epoch_len);
    env->event = k[6];
    if (dfc_value_type(env->event) != DFC_MAP)
        return DFC_MSG_BAD_EVENT;
    return DFC_MSG_OK;
}

static void
block_free(dfc_event_t *ev)
{
    if (ev->pooled)
        dfc_blocks_put(ev->blocks, ev);
    else
        free(ev);
}

dfc_event_t *
dfc_event_new(const void *topic, size_t topic_len, const void *body, size_t body_len,
              size_t max_frame, dfc_msg_status_t *st)
{
    return dfc_event_new_in(NULL, topic, topic_len, body, body_len, max_frame, st);
}

dfc_event_t *
dfc_event_new_in(dfc_blocks_t *blocks, const void *topic, size_t topic_len, const void *body,
                 size_t body_len, size_t max_frame, dfc_msg_status_t *st)
{
    if ((*st = dfc_frames_check(2, topic_len)) != DFC_MSG_OK)
        return NULL;
    if (body_len > max_frame) {
        *st = DFC_MSG_OVERSIZE;
        return NULL;
    }
    /* one allocation per event: the event, then its document */
    void *block;
    dfc_doc_t *doc;
    bool pooled;
    int rc =
        dfc_doc_parse_pooled(blocks, body, body_len, sizeof(dfc_event_t), &block, &pooled, &doc);
    if (rc != DFC_OK) {
        *st = rc == DFC_ENOMEM ? DFC_MSG_NOMEM : DFC_MSG_BAD_MSGPACK;
        return NULL;
    }
    dfc_event_t *ev = block;
    ev->doc = doc;
    ev->blocks = blocks;
    ev->pooled = pooled;
    *st = dfc_envelope_check(dfc_doc_root(ev->doc), &ev->env);
    if (*st != DFC_MSG_OK) {
        block_free(ev);
        return NULL;
    }
    atomic_init(&ev->refs, 1);
    memcpy(ev->topic, topic, topic_len);
    ev->topic[topic_len] = '\0';
    ev->topic_len = topic_len;
    ev->wire_size = topic_len + body_len;
    const dfc_value_t *e = ev->env.event;
    const dfc_value_t *id = DFC_FIND(e, "id"), *type = DFC_FIND(e, "type");
    if (dfc_value_type(id) == DFC_STR)
        ev->id = dfc_value_str(id, &ev->id_len);
    if (dfc_value_type(type) == DFC_STR)
        ev->type = dfc_value_str(type, &ev->type_len);
    (void)dfc_value_int64(DFC_FIND(e, "timestamp"), &ev->timestamp);
    decode_struct(DFC_FIND(e, "initiator"), &INITIATOR, &ev->initiator);
    ev->kind = -1;
    /* Dispatch follows the topic, which the bridge sets to event.type. An
       embedded NUL in the topic makes it unknown rather than truncated. */
    if (memchr(topic, '\0', topic_len) == NULL) {
        for (size_t i = 0; i < N(etypes); i++) {
            if (strcmp(ev->topic, etypes[i].type) == 0) {
                ev->kind = (int)i;
                const dfc_value_t *p = dfc_value_find(DFC_FIND(e, "payload"), etypes[i].key);
                decode_struct(p, &etypes[i].desc, &ev->payload);
                break;
            }
        }
    }
    return ev;
}

void
dfc_event_ref(dfc_event_t *ev)
{
    atomic_fetch_add(&ev->refs, 1);
}

void
dfc_event_unref(dfc_event_t *ev)
{
    if (ev && atomic_fetch_sub(&ev->refs, 1) == 1)
        block_free(ev); /* the document is in the same block */
}

bool
dfc_event_is_known(const dfc_event_t *ev)
{
    return ev->kind >= 0;
}

bool
dfc_event_has_callback(const dfc_event_t *ev, const dfc_listener_t *l)
{
    return ev->kind >= 0 ? etypes[ev->kind].has(l) : l->on_unknown != NULL;
}

void
dfc_event_dispatch(const dfc_event_t *ev, const dfc_listener_t *l)
{
    if (ev->kind >= 0)
        etypes[ev->kind].call(l, ev);
    else if (l->on_unknown)
        l->on_unknown(l->ctx, ev, &ev->initiator);
}

const dfc_initiator_t *
dfc_event_initiator(const dfc_event_t *ev)
{
    return &ev->initiator;
}

/* ------------------------------------------------------ public getters */

const char *
dfc_event_id_n(const dfc_event_t *ev, size_t *len)
{
    *len = ev && ev->id ? ev->id_len : 0;
    return ev ? ev->id : NULL;
}
const char *
dfc_event_type_n(const dfc_event_t *ev, size_t *len)
{
    *len = ev && ev->type ? ev->type_len : 0;
    return ev ? ev->type : NULL;
}
const char *
dfc_event_epoch_n(const dfc_event_t *ev, size_t *len)
{
    *len = ev ? ev->env.epoch_len : 0;
    return ev ? ev->env.epoch : NULL;
}
size_t
dfc_event_wire_size(const dfc_event_t *ev)
{
    return ev ? ev->wire_size : 0;
}
const char *
dfc_event_topic_n(const dfc_event_t *ev, size_t *len)
{
    *len = ev ? ev->topic_len : 0;
    return ev ? ev->topic : NULL;
}

const char *
dfc_event_topic(const dfc_event_t *ev)
{
    return ev ? ev->topic : NULL;
}
const char *
dfc_event_type(const dfc_event_t *ev)
{
    return ev ? ev->type : NULL;
}
const char *
dfc_event_id(const dfc_event_t *ev)
{
    return ev ? ev->id : NULL;
}
int64_t
dfc_event_timestamp(const dfc_event_t *ev)
{
    return ev ? ev->timestamp : 0;
}
uint64_t
dfc_event_seq(const dfc_event_t *ev)
{
    return ev ? ev->env.seq : 0;
}
uint64_t
dfc_event_gseq(const dfc_event_t *ev)
{
    return ev ? ev->env.gseq : 0;
}
const char *
dfc_event_epoch(const dfc_event_t *ev)
{
    return ev ? ev->env.epoch : NULL;
}
uint64_t
dfc_event_ts(const dfc_event_t *ev)
{
    return ev ? ev->env.ts : 0;
}
int64_t
dfc_event_bot(const dfc_event_t *ev)
{
    return ev ? ev->env.bot : 0;
}
const dfc_value_t *
dfc_event_value(const dfc_event_t *ev)
{
    return ev ? ev->env.event : NULL;
}
const dfc_value_t *
dfc_event_envelope(const dfc_event_t *ev)
{
    return ev ? ev->env.root : NULL;
}

bool
dfc_default_is_accepting(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *initiator,
                         int64_t bot_id)
{
    (void)ctx;
    (void)ev;
    return initiator && initiator->user.has_user_id && initiator->user.user_id != bot_id;
}
