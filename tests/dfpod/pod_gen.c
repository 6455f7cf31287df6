/* dfpod event generator: realistic V4Events of the 17 real-time types. The types are a
 * table of (type, payload key, fields); each field kind has one builder, so a type is data.
 * Payloads follow the Agent API schemas: 64-bit user ids, PresentationML, EntityJSON as a
 * string, attachments, room keywords, non-ASCII text and sizes from ~300 B to tens of KB. */
#include "pod.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Field kinds a payload is made of. */
enum {
    F_END = 0,
    F_MESSAGE,        /* "message": V4Message */
    F_SHARED,         /* "message" + "sharedMessage" */
    F_STREAM_ROOM,    /* "stream": a room */
    F_STREAM_IM,      /* "stream": an IM/MIM with members */
    F_STREAM_ANY,     /* "stream": any conversation */
    F_ROOM_PROPS,     /* "roomProperties" */
    F_NEW_ROOM_PROPS, /* "newRoomProperties" */
    F_AFFECTED_USER,
    F_AFFECTED_USERS,
    F_TO_USER,
    F_FROM_USER,
    F_MESSAGE_ID, /* "messageId" of a suppressed message */
    F_FORM,       /* formMessageId, formId, formValues */
    F_GENERIC     /* eventTimestamp, sourceSystem, eventSubtype, parameters */
};

typedef struct {
    const char *type;
    const char *key;
    bool top_message_id; /* the V4Event carries "messageId" */
    int fields[4];
} event_kind_t;

static const event_kind_t kinds[] = {
    {"MESSAGESENT", "messageSent", true, {F_MESSAGE}},
    {"SHAREDPOST", "sharedPost", true, {F_SHARED}},
    {"INSTANTMESSAGECREATED", "instantMessageCreated", false, {F_STREAM_IM}},
    {"ROOMCREATED", "roomCreated", false, {F_STREAM_ROOM, F_ROOM_PROPS}},
    {"ROOMUPDATED", "roomUpdated", false, {F_STREAM_ROOM, F_NEW_ROOM_PROPS}},
    {"ROOMDEACTIVATED", "roomDeactivated", false, {F_STREAM_ROOM}},
    {"ROOMREACTIVATED", "roomReactivated", false, {F_STREAM_ROOM}},
    {"USERREQUESTEDTOJOINROOM",
     "userRequestedToJoinRoom",
     false,
     {F_STREAM_ROOM, F_AFFECTED_USERS}},
    {"USERJOINEDROOM", "userJoinedRoom", false, {F_STREAM_ROOM, F_AFFECTED_USER}},
    {"USERLEFTROOM", "userLeftRoom", false, {F_STREAM_ROOM, F_AFFECTED_USER}},
    {"ROOMMEMBERPROMOTEDTOOWNER",
     "roomMemberPromotedToOwner",
     false,
     {F_STREAM_ROOM, F_AFFECTED_USER}},
    {"ROOMMEMBERDEMOTEDFROMOWNER",
     "roomMemberDemotedFromOwner",
     false,
     {F_STREAM_ROOM, F_AFFECTED_USER}},
    {"CONNECTIONREQUESTED", "connectionRequested", false, {F_TO_USER}},
    {"CONNECTIONACCEPTED", "connectionAccepted", false, {F_FROM_USER}},
    {"MESSAGESUPPRESSED", "messageSuppressed", true, {F_MESSAGE_ID, F_STREAM_ANY}},
    {"SYMPHONYELEMENTSACTION", "symphonyElementsAction", false, {F_STREAM_ANY, F_FORM}},
    {"GENERICSYSTEMEVENT", "genericSystemEvent", false, {F_STREAM_ANY, F_GENERIC}},
};
#define NKINDS ((int)(sizeof kinds / sizeof kinds[0]))

/* People: names chosen to carry accents, other scripts and emoji. */
static const struct {
    const char *first, *last, *login;
} people[] = {
    {"Jane", "Doe", "jane.doe"},
    {"José", "Muñoz", "jose.munoz"},
    {"Zoë", "Ångström", "zoe.angstrom"},
    {"Łukasz", "Wiśniewski", "lukasz.w"},
    {"美咲", "佐藤", "misaki.sato"},
    {"Дмитрий", "Иванов", "dmitri.ivanov"},
    {"Søren", "Kierkegård", "soren.k"},
    {"Renée", "O'Brien", "renee.obrien"},
    {"Ahmed", "Al-Farsi", "ahmed.alfarsi"},
    {"Chloé", "\"CJ\" Martin", "chloe.martin"},
    {"Raj", "Patel 🚀", "raj.patel"},
    {"Ólafur", "Þórsson", "olafur.t"},
};
#define NPEOPLE ((int)(sizeof people / sizeof people[0]))

static const char *phrases[] = {
    "Quarterly numbers look good 📈, see the deck before Monday.",
    "He said \"ship it\" — then left for lunch 🍜",
    "The file is at C:\\shares\\risk\\report_v2.xlsx (read-only).",
    "Prices: 5 < 7 & 9 > 3, so the spread is fine.",
    "Café crème ☕ at 10:30? Bring the term sheet.",
    "日本語のテキストも問題なく届くはずです。",
    "Привет! Обновление по сделке будет завтра.",
    "مرحبا، تم تحديث التقرير",
    "Thumbs up 👍🏽 from the desk; flags: 🇫🇷🇯🇵🇧🇷",
    "Tab\tseparated\tvalues and a line\nbreak inside.",
    "Reminder: settlement is T+1 from now on ✅",
    "Zero-width joiner family: 👩‍👩‍👧‍👦 and a snowman ☃",
    "Backslash-u is not an escape here: \\u0041 stays as typed.",
    "Long ids like 349026222344891 must survive 64-bit parsing.",
};
#define NPHRASES ((int)(sizeof phrases / sizeof phrases[0]))

static const char *room_names[] = {
    "FX Desk – EMEA", "Rates 🇪🇺 Trading", "Project \"Atlas\"", "Équipe Paris",
    "東京オフィス",   "Ops & Support",    "Credit <Risk>",     "Deal Room #42",
};
#define NROOMS ((int)(sizeof room_names / sizeof room_names[0]))

static const char *tickers[] = {"AAPL", "MSFT", "TSLA", "BNP", "7203", "VOD"};
static const char *hashtags[] = {"earnings", "fx", "résumé", "urgent", "Q3"};

/* Event ids must be unique across every generator of the process. */
static atomic_uint_fast64_t event_seq = 1;

struct pod_gen_t {
    pthread_mutex_t mu;
    uint64_t rng;
    int64_t bot_id;
    char *bot_username;
};

pod_gen_t *
pod_gen_new(uint64_t seed, int64_t bot_id, const char *bot_username)
{
    pod_gen_t *self = calloc(1, sizeof *self);
    if (!self || !(self->bot_username = strdup(bot_username))) {
        free(self);
        return NULL;
    }
    pthread_mutex_init(&self->mu, NULL);
    self->rng = seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
    self->bot_id = bot_id;
    return self;
}

void
pod_gen_destroy(pod_gen_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pthread_mutex_destroy(&(*self_p)->mu);
    free((*self_p)->bot_username);
    free(*self_p);
    *self_p = NULL;
}

int
pod_gen_type_count(void)
{
    return NKINDS;
}

const char *
pod_gen_type_name(int index)
{
    return kinds[((index % NKINDS) + NKINDS) % NKINDS].type;
}

/* splitmix64: small, seedable, good enough for test data. */
static uint64_t
rnd(pod_gen_t *g)
{
    uint64_t z = (g->rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static int
below(pod_gen_t *g, int n)
{
    return (int)(rnd(g) % (uint64_t)n);
}

static void
rand_chars(pod_gen_t *g, char *out, int n, const char *alphabet)
{
    size_t k = strlen(alphabet);
    for (int i = 0; i < n; i++)
        out[i] = alphabet[rnd(g) % k];
    out[n] = '\0';
}

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char B62[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/*  An event id as the agent makes them: 6 random characters (r6), ':', then
    a process-wide sequence number in base 62, so ids never repeat. */
static void
event_id(const char *r6, char id[64])
{
    uint64_t seq = atomic_fetch_add(&event_seq, 1);
    char s62[16];
    int n = 0;
    do {
        s62[n++] = B62[seq % 62];
        seq /= 62;
    } while (seq && n < 15);
    s62[n] = '\0';
    snprintf(id, 64, "%s:%s", r6, s62);
}

/* Symphony stream and message ids: 22 base64url chars, "___", 9 more (34 in all). */
static void
symphony_id(pod_gen_t *g, char out[40])
{
    rand_chars(g, out, 22, B64URL);
    memcpy(out + 22, "___", 3);
    rand_chars(g, out + 25, 8, B64URL);
    out[33] = 'A' + (char)below(g, 26);
    out[34] = '\0';
}

/* A growable string for PresentationML. */
typedef struct {
    char *p;
    size_t n, cap;
} sb_t;

static void
sb_add(sb_t *b, const char *s)
{
    size_t n = strlen(s);
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return; /* the text just stays shorter */
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n + 1);
    b->n += n;
}

static void
sb_add_escaped(sb_t *b, const char *s)
{
    char one[2] = {0, 0};
    for (; *s; s++) {
        if (*s == '<')
            sb_add(b, "&lt;");
        else if (*s == '>')
            sb_add(b, "&gt;");
        else if (*s == '&')
            sb_add(b, "&amp;");
        else {
            one[0] = *s;
            sb_add(b, one);
        }
    }
}

static json_t *
user_json(pod_gen_t *g, bool bot)
{
    if (bot)
        return json_pack("{s:I,s:s,s:s,s:s,s:s,s:s}", "userId", (json_int_t)g->bot_id, "firstName",
                         "My", "lastName", "Bot", "displayName", "My Bot 🤖", "email",
                         "bot@example.com", "username", g->bot_username);
    int k = below(g, NPEOPLE);
    /* Real Symphony ids are ~3.5e14; the constructed fixtures use ~2^36. Both exceed 2^32. */
    json_int_t id = (rnd(g) & 1) ? (json_int_t)(68719476737LL + below(g, 1000) * 2 + 1)
                                 : (json_int_t)(349026222340000LL + below(g, 100000));
    if (id == (json_int_t)g->bot_id)
        id += 2000; /* a person is never the bot (bot_ratio 0 means no bot event), still > 2^32 */
    char display[128], email[96];
    snprintf(display, sizeof display, "%s %s", people[k].first, people[k].last);
    snprintf(email, sizeof email, "%s@example.com", people[k].login);
    return json_pack("{s:I,s:s,s:s,s:s,s:s,s:s}", "userId", id, "firstName", people[k].first,
                     "lastName", people[k].last, "displayName", display, "email", email, "username",
                     people[k].login);
}

/* KIND: 0 any, 1 room, 2 IM/MIM. */
static json_t *
stream_json(pod_gen_t *g, int kind)
{
    if (kind == 0)
        kind = below(g, 4) == 0 ? 2 : 1;
    char sid[40];
    symphony_id(g, sid);
    json_t *s = json_object();
    json_object_set_new(s, "streamId", json_string(sid));
    if (kind == 1) {
        json_object_set_new(s, "streamType", json_string(below(g, 8) == 0 ? "POST" : "ROOM"));
        json_object_set_new(s, "roomName", json_string(room_names[below(g, NROOMS)]));
    } else {
        int n = 2 + below(g, 3);
        json_object_set_new(s, "streamType", json_string(n == 2 ? "IM" : "MIM"));
        json_t *m = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(m, user_json(g, i == 0));
        json_object_set_new(s, "members", m);
    }
    bool ext = below(g, 5) == 0;
    json_object_set_new(s, "external", json_boolean(ext));
    json_object_set_new(s, "crossPod", json_boolean(ext));
    json_t *t = json_array();
    json_array_append_new(t, json_integer(190));
    if (ext)
        json_array_append_new(t, json_integer(1000 + below(g, 9000)));
    json_object_set_new(s, "recipientTenantIds", t);
    return s;
}

/* PresentationML with mentions, hashtags and cashtags, and the matching EntityJSON (as a
 * string, like the real API). PARAS sets the size. */
static void
message_text(pod_gen_t *g, int paras, bool table, char **ml, char **data)
{
    sb_t b = {0};
    json_t *ents = json_object();
    int ent = 0;
    sb_add(&b, "<div data-format=\"PresentationML\" data-version=\"2.0\" class=\"wysiwyg\">");
    for (int p = 0; p < paras; p++) {
        sb_add(&b, "<p>");
        sb_add_escaped(&b, phrases[below(g, NPHRASES)]);
        int what = below(g, 4);
        char key[16], tag[64];
        snprintf(key, sizeof key, "%d", ent);
        if (what == 0) {
            json_t *u = user_json(g, below(g, 3) == 0);
            json_int_t uid = json_integer_value(json_object_get(u, "userId"));
            char v[32];
            snprintf(v, sizeof v, "%" JSON_INTEGER_FORMAT, uid);
            snprintf(tag, sizeof tag, " <span class=\"entity\" data-entity-id=\"%d\">@", ent);
            sb_add(&b, tag);
            sb_add_escaped(&b, json_string_value(json_object_get(u, "displayName")));
            sb_add(&b, "</span>");
            json_object_set_new(ents, key,
                                json_pack("{s:[{s:s,s:s}],s:s,s:s}", "id", "type",
                                          "com.symphony.user.userId", "value", v, "type",
                                          "com.symphony.user.mention", "version", "1.0"));
            json_decref(u);
            ent++;
        } else if (what == 1) {
            const char *h = hashtags[below(g, 5)];
            snprintf(tag, sizeof tag, " <span class=\"entity\" data-entity-id=\"%d\">#", ent);
            sb_add(&b, tag);
            sb_add(&b, h);
            sb_add(&b, "</span>");
            json_object_set_new(ents, key,
                                json_pack("{s:[{s:s,s:s}],s:s,s:s}", "id", "type",
                                          "org.symphonyoss.taxonomy.hashtag", "value", h, "type",
                                          "org.symphonyoss.taxonomy", "version", "1.0"));
            ent++;
        } else if (what == 2) {
            const char *t = tickers[below(g, 6)];
            snprintf(tag, sizeof tag, " <span class=\"entity\" data-entity-id=\"%d\">$", ent);
            sb_add(&b, tag);
            sb_add(&b, t);
            sb_add(&b, "</span>");
            json_object_set_new(ents, key,
                                json_pack("{s:[{s:s,s:s}],s:s,s:s}", "id", "type",
                                          "org.symphonyoss.fin.security.id.ticker", "value", t,
                                          "type", "org.symphonyoss.fin.security", "version",
                                          "1.0"));
            ent++;
        }
        sb_add(&b, "</p>");
    }
    if (table) {
        /* A big price grid: the kind of message that makes events tens of KB. */
        int rows = 100 + below(g, 400);
        sb_add(&b, "<table><thead><tr><td>Ticker</td><td>Bid</td><td>Ask</td><td>Δ</td>"
                   "</tr></thead><tbody>");
        for (int r = 0; r < rows; r++) {
            char row[192];
            snprintf(row, sizeof row,
                     "<tr><td>%s</td><td>%d.%02d</td><td>%d.%02d</td><td>%s%d.%d%%</td></tr>",
                     tickers[below(g, 6)], 10 + below(g, 900), below(g, 100), 10 + below(g, 900),
                     below(g, 100), below(g, 2) ? "+" : "−", below(g, 9), below(g, 10));
            sb_add(&b, row);
        }
        sb_add(&b, "</tbody></table>");
    }
    sb_add(&b, "</div>");
    *ml = b.p;
    *data = json_dumps(ents, JSON_COMPACT);
    json_decref(ents);
}

static json_t *
message_json(pod_gen_t *g, json_t *user, json_t *stream, int64_t ts, bool shared)
{
    char mid[40];
    symphony_id(g, mid);
    /* Mostly small messages, some medium, about one in twelve tens of KB. */
    int sz = below(g, 12);
    int paras = sz == 0 ? 20 + below(g, 40) : sz < 4 ? 3 + below(g, 8) : 1 + below(g, 2);
    char *ml = NULL, *data = NULL;
    message_text(g, paras, sz == 0 && !shared, &ml, &data);
    json_t *m = json_object();
    json_object_set_new(m, "messageId", json_string(mid));
    json_object_set_new(m, "timestamp", json_integer(ts));
    json_object_set_new(m, "message", json_string(ml ? ml : "<div/>"));
    json_object_set_new(m, "data", json_string(data ? data : "{}"));
    free(ml);
    free(data);
    json_t *att = json_array();
    int na = below(g, 6) == 0 ? 1 + below(g, 3) : 0;
    for (int i = 0; i < na; i++) {
        char aid[40], tid[40], name[64];
        symphony_id(g, aid);
        symphony_id(g, tid);
        snprintf(name, sizeof name, "%s_%d.%s", i ? "scan" : "Präsentation", below(g, 100),
                 i ? "png" : "pdf");
        json_array_append_new(att, json_pack("{s:s,s:s,s:I,s:[{s:s,s:s}]}", "id", aid, "name", name,
                                             "size", (json_int_t)(1000 + below(g, 5000000)),
                                             "images", "id", tid, "dimension", "600"));
    }
    json_object_set_new(m, "attachments", att);
    json_object_set(m, "user", user);
    json_object_set(m, "stream", stream);
    json_object_set_new(m, "externalRecipients",
                        json_object_get(stream, "external")
                            ? json_copy(json_object_get(stream, "external"))
                            : json_false());
    json_object_set_new(m, "userAgent",
                        json_string(below(g, 2) ? "DESKTOP-40.0.0-10665-MacOSX-10.15.7-Chrome-90.0"
                                                : "Agent-25.8.1-Linux-5.15.0-amd64"));
    json_object_set_new(m, "originalFormat", json_string("com.symphony.messageml.v2"));
    char sid[40];
    rand_chars(g, sid, 8, "0123456789abcdef");
    char uuid[80];
    snprintf(uuid, sizeof uuid, "%s-%04x-4%03x-a%03x-%012" PRIx64, sid, (unsigned)below(g, 65536),
             (unsigned)below(g, 4096), (unsigned)below(g, 4096),
             (uint64_t)(rnd(g) & 0xffffffffffffULL));
    json_object_set_new(m, "sid", json_string(uuid));
    if (below(g, 10) == 0) {
        char pid[40];
        symphony_id(g, pid);
        json_object_set_new(m, "parentMessageId", json_string(pid));
    }
    return m;
}

static json_t *
room_props_json(pod_gen_t *g, json_t *stream, json_t *creator, int64_t ts)
{
    const char *name = json_string_value(json_object_get(stream, "roomName"));
    json_t *kw = json_array();
    int nk = below(g, 4);
    static const char *keys[] = {"desk", "région", "asset class", "priority"};
    static const char *vals[] = {"FX", "EMEA 🌍", "Rates", "high", "\"quoted\""};
    for (int i = 0; i < nk; i++)
        json_array_append_new(kw,
                              json_pack("{s:s,s:s}", "key", keys[i], "value", vals[below(g, 5)]));
    return json_pack("{s:s,s:s,s:O,s:I,s:b,s:b,s:b,s:b,s:b,s:b,s:b,s:o,s:b}", "name",
                     name ? name : "Room", "description",
                     below(g, 2) ? "Daily coordination — no client data here." : "", "creatorUser",
                     creator, "createdDate", (json_int_t)ts, "external", below(g, 5) == 0,
                     "crossPod", 0, "public", below(g, 3) == 0, "copyProtected", below(g, 4) == 0,
                     "readOnly", 0, "discoverable", below(g, 2), "membersCanInvite", 1, "keywords",
                     kw, "canViewHistory", below(g, 2));
}

static void
add_field(pod_gen_t *g, json_t *pl, int field, json_t *initiator, int64_t ts)
{
    switch (field) {
    case F_MESSAGE:
    case F_SHARED: {
        json_t *st = stream_json(g, 0);
        json_object_set_new(pl, "message", message_json(g, initiator, st, ts, false));
        if (field == F_SHARED) {
            json_t *author = user_json(g, false);
            json_t *wall = stream_json(g, 1);
            json_object_set_new(wall, "streamType", json_string("POST"));
            json_object_set_new(pl, "sharedMessage",
                                message_json(g, author, wall, ts - 3600000, true));
            json_decref(author);
            json_decref(wall);
        }
        json_decref(st);
        break;
    }
    case F_STREAM_ROOM:
    case F_STREAM_IM:
    case F_STREAM_ANY:
        json_object_set_new(pl, "stream",
                            stream_json(g, field == F_STREAM_ROOM ? 1
                                           : field == F_STREAM_IM ? 2
                                                                  : 0));
        break;
    case F_ROOM_PROPS:
    case F_NEW_ROOM_PROPS:
        json_object_set_new(pl, field == F_ROOM_PROPS ? "roomProperties" : "newRoomProperties",
                            room_props_json(g, json_object_get(pl, "stream"), initiator, ts));
        break;
    case F_AFFECTED_USER:
        json_object_set_new(pl, "affectedUser", user_json(g, below(g, 6) == 0));
        break;
    case F_AFFECTED_USERS: {
        json_t *a = json_array();
        int n = 1 + below(g, 4);
        for (int i = 0; i < n; i++)
            json_array_append_new(a, user_json(g, false));
        json_object_set_new(pl, "affectedUsers", a);
        break;
    }
    case F_TO_USER:
        json_object_set_new(pl, "toUser", user_json(g, false));
        break;
    case F_FROM_USER:
        json_object_set_new(pl, "fromUser", user_json(g, false));
        break;
    case F_MESSAGE_ID: {
        char mid[40];
        symphony_id(g, mid);
        json_object_set_new(pl, "messageId", json_string(mid));
        break;
    }
    case F_FORM: {
        char fm[40];
        symphony_id(g, fm);
        json_object_set_new(pl, "formMessageId", json_string(fm));
        json_object_set_new(pl, "formId", json_string(below(g, 2) ? "form_id" : "trade-ticket"));
        json_object_set_new(pl, "formValues",
                            json_pack("{s:s,s:s,s:I,s:[s,s],s:{s:s,s:f},s:s}", "action",
                                      below(g, 2) ? "submit_button" : "cancel", "name_01",
                                      phrases[below(g, NPHRASES)], "quantity",
                                      (json_int_t)(1 + below(g, 1000000)), "checkboxes", "opt-a",
                                      "opt-ç", "details", "comment", "looks good ✔", "price",
                                      (double)below(g, 100000) / 100.0, "date", "2026-11-27"));
        break;
    }
    case F_GENERIC: {
        static const char *subtypes[] = {"call.started", "call.ended", "compliance.hold",
                                         "workflow.step"};
        json_object_set_new(pl, "eventTimestamp", json_integer(ts - below(g, 5000)));
        json_object_set_new(pl, "sourceSystem", json_string(below(g, 2) ? "cloud9" : "WDK"));
        json_object_set_new(pl, "eventSubtype", json_string(subtypes[below(g, 4)]));
        json_t *parts = json_array();
        int n = 1 + below(g, 5);
        for (int i = 0; i < n; i++)
            json_array_append_new(parts, user_json(g, false));
        json_object_set_new(pl, "parameters",
                            json_pack("{s:I,s:o,s:{s:s,s:b},s:s,s:n}", "durationMs",
                                      (json_int_t)below(g, 3600000), "participants", parts,
                                      "nested", "région", "Île-de-France 🗼", "recorded",
                                      below(g, 2), "note", "line1\nline2\t\"q\"\\", "optional"));
        break;
    }
    default:
        break;
    }
}

/* Builds one event; ID_OUT (may be NULL) receives its id. Called with g->mu held. */
static char *
gen_locked(pod_gen_t *g, int index, bool from_bot, size_t *len, char id_out[64])
{
    const event_kind_t *k = &kinds[((index % NKINDS) + NKINDS) % NKINDS];
    int64_t ts = pod_wall_ms();
    char id[64], r6[8];
    rand_chars(g, r6, 6, B62);
    event_id(r6, id);

    json_t *initiator = user_json(g, from_bot);
    json_t *pl = json_object();
    for (int i = 0; i < 4 && k->fields[i] != F_END; i++)
        add_field(g, pl, k->fields[i], initiator, ts);

    json_t *ev = json_object();
    json_object_set_new(ev, "id", json_string(id));
    if (k->top_message_id) {
        json_t *m = json_object_get(pl, "message");
        const char *mid = m ? json_string_value(json_object_get(m, "messageId"))
                            : json_string_value(json_object_get(pl, "messageId"));
        if (mid)
            json_object_set_new(ev, "messageId", json_string(mid));
    }
    json_object_set_new(ev, "timestamp", json_integer(ts));
    json_object_set_new(ev, "type", json_string(k->type));
    json_object_set_new(ev, "initiator", json_pack("{s:o}", "user", initiator));
    json_object_set_new(ev, "payload", json_pack("{s:o}", k->key, pl));
    /* One event in ten escapes non-ASCII as \uXXXX (surrogate pairs for emoji), as some
     * servers do: consumers must handle both spellings. */
    size_t flags = JSON_COMPACT | (below(g, 10) == 0 ? JSON_ENSURE_ASCII : 0);
    char *s = json_dumps(ev, flags);
    json_decref(ev);
    if (s && len)
        *len = strlen(s);
    if (id_out)
        snprintf(id_out, 64, "%s", id);
    return s;
}

char *
pod_gen_event(pod_gen_t *self, int index, bool from_bot, size_t *len)
{
    pthread_mutex_lock(&self->mu);
    char *s = gen_locked(self, index, from_bot, len, NULL);
    pthread_mutex_unlock(&self->mu);
    return s;
}

long
pod_gen_enqueue(pod_gen_t *self, pod_state_t *state, long count, double bot_ratio,
                char first_id[64])
{
    long done = 0;
    if (first_id)
        first_id[0] = '\0';
    for (long i = 0; i < count; i++) {
        if (i % 4096 == 4095 && pod_state_stopping(state))
            break; /* a huge request must not hold up shutdown */
        /* floor((i+1)r) > floor(ir): exactly floor(count*r) bot events, evenly spread. */
        bool bot = floor((double)(i + 1) * bot_ratio) > floor((double)i * bot_ratio);
        size_t len = 0;
        pthread_mutex_lock(&self->mu);
        char *s = gen_locked(self, (int)(i % NKINDS), bot, &len, i == 0 ? first_id : NULL);
        pthread_mutex_unlock(&self->mu);
        if (!s)
            break;
        pod_state_enqueue(state, s, len);
        free(s);
        done++;
    }
    return done;
}

/* ---- benchmark kinds and pacing ------------------------------------------------------------- */

int64_t
pod_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The fixed-shape MESSAGESENT of the benchmarks (the shape of bench/consumers' event and of
 * the Agent's eventlist samples): %s id, %s messageId, %lld ts, %s messageId, %lld ts, then
 * the PresentationML paragraph. */
static const char MS_HEAD[] =
    "{\"id\":\"%s\",\"messageId\":\"%s\",\"timestamp\":%lld,\"type\":\"MESSAGESENT\","
    "\"initiator\":{\"user\":{\"userId\":68719476737,\"firstName\":\"Zo\xc3\xab\","
    "\"lastName\":\"\xc3\x85ngstr\xc3\xb6m\",\"displayName\":\"Zo\xc3\xab \xc3\x85ngstr\xc3\xb6m\","
    "\"email\":\"zoe.angstrom@example.com\",\"username\":\"zoe.angstrom\"}},"
    "\"payload\":{\"messageSent\":{\"message\":{\"messageId\":\"%s\",\"timestamp\":%lld,"
    "\"message\":\"<div data-format=\\\"PresentationML\\\" data-version=\\\"2.0\\\"><p>Hi "
    "<span class=\\\"entity\\\" data-entity-id=\\\"0\\\">@Ravi</span>, ";
static const char MS_TAIL[] =
    "</p></div>\",\"attachments\":[],\"data\":\"{\\\"0\\\":{\\\"id\\\":[{\\\"type\\\":\\\"com.symphony.user.userId"
    "\\\",\\\"value\\\":\\\"349026222344891\\\"}],\\\"type\\\":\\\"com.symphony.user.mention\\\","
    "\\\"version\\\":\\\"1.0\\\"}}\",\"user\":{\"userId\":68719476737,\"firstName\":"
    "\"Zo\xc3\xab\",\"lastName\":\"\xc3\x85ngstr\xc3\xb6m\",\"displayName\":\"Zo\xc3\xab "
    "\xc3\x85ngstr\xc3\xb6m\",\"email\":\"zoe.angstrom@example.com\",\"username\":"
    "\"zoe.angstrom\"},\"stream\":{\"streamId\":\"wTmSDJSNPXgB4a8r1Xr6UX___oqRzCcbdA\","
    "\"streamType\":\"ROOM\"},\"externalRecipients\":false,\"userAgent\":\"DESKTOP-40.0.0-"
    "10665-MacOSX-10.15.7-Chrome-90.0\",\"originalFormat\":\"com.symphony.messageml.v2\","
    "\"sid\":\"a4d08d18-0729-4b54-9c45-68da1c3e7f02\"}}}}";
static const char MS_FILLER[] = "Numbers below, see the deck (r\xc3\xa9sum\xc3\xa9 \xe2\x82\xac). ";

char *
pod_gen_message_sent(pod_gen_t *self, size_t bytes, size_t *len, char id_out[64])
{
    char id[64], mid[40], r6[8];
    pthread_mutex_lock(&self->mu);
    rand_chars(self, r6, 6, B62);
    symphony_id(self, mid);
    pthread_mutex_unlock(&self->mu);
    event_id(r6, id);
    long long ts = (long long)pod_wall_ms();
    int head = snprintf(NULL, 0, MS_HEAD, id, mid, ts, mid, ts);
    size_t fixed = (size_t)head + sizeof MS_TAIL - 1;
    size_t pad = bytes > fixed ? bytes - fixed : 0;
    char *s = malloc(fixed + pad + 1);
    if (!s)
        return NULL;
    snprintf(s, (size_t)head + 1, MS_HEAD, id, mid, ts, mid, ts);
    size_t o = (size_t)head, fl = sizeof MS_FILLER - 1;
    while (pad > 0) {
        /* Whole filler pieces, then ASCII dots: never a cut UTF-8 sequence. */
        size_t k = pad >= fl ? fl : 0;
        if (k) {
            memcpy(s + o, MS_FILLER, k);
        } else {
            k = pad;
            memset(s + o, '.', k);
        }
        o += k;
        pad -= k;
    }
    memcpy(s + o, MS_TAIL, sizeof MS_TAIL);
    o += sizeof MS_TAIL - 1;
    if (len)
        *len = o;
    if (id_out)
        snprintf(id_out, 64, "%s", id);
    return s;
}

static char *
gen_one(pod_gen_t *self, const pod_gen_opts_t *o, long i, bool bot, size_t *len, char id[64])
{
    if (o && o->kind == POD_GEN_MESSAGESENT)
        return pod_gen_message_sent(self, o->bytes, len, id);
    pthread_mutex_lock(&self->mu);
    char *s = gen_locked(self, (int)(i % NKINDS), bot, len, id);
    pthread_mutex_unlock(&self->mu);
    return s;
}

long
pod_gen_enqueue_opts(pod_gen_t *self, pod_state_t *state, long count, double bot_ratio,
                     const pod_gen_opts_t *o, char first_id[64])
{
    if (!o || (o->kind == POD_GEN_MIX && !o->at_once && o->rate <= 0))
        return pod_gen_enqueue(self, state, count, bot_ratio, first_id);
    if (first_id)
        first_id[0] = '\0';
    if (count <= 0)
        return 0;
    if (!o->at_once && o->rate <= 0) { /* one by one, as made */
        long done = 0;
        for (long i = 0; i < count; i++) {
            if (i % 4096 == 4095 && pod_state_stopping(state))
                break;
            size_t len = 0;
            char *s = gen_one(self, o, i, false, &len, i == 0 ? first_id : NULL);
            if (!s)
                break;
            pod_state_enqueue(state, s, len);
            free(s);
            done++;
        }
        return done;
    }
    /* Built first, so neither the backlog's release nor the pace waits on the generator. */
    char **raw = calloc((size_t)count, sizeof *raw);
    size_t *lens = calloc((size_t)count, sizeof *lens);
    long made = 0;
    if (raw && lens) {
        for (; made < count; made++) {
            if (made % 4096 == 4095 && pod_state_stopping(state))
                break;
            bool bot = floor((double)(made + 1) * bot_ratio) > floor((double)made * bot_ratio);
            char *id = o->rate > 0 && o->ids ? o->ids[made] : made == 0 ? first_id : NULL;
            raw[made] = gen_one(self, o, made, bot, &lens[made], id);
            if (!raw[made])
                break;
        }
    }
    if (first_id && made > 0 && o->rate > 0 && o->ids)
        snprintf(first_id, 64, "%s", o->ids[0]);
    long done = 0;
    if (o->rate <= 0) {
        pod_state_enqueue_many(state, (const char *const *)raw, lens, (size_t)made);
        done = made;
    } else {
        /* Paced: every millisecond, release what is due since the start. */
        int64_t t0 = pod_mono_ns();
        while (done < made) {
            int64_t now = pod_mono_ns();
            long due = (long)((double)(now - t0) * o->rate / 1e9) + 1;
            if (due > made)
                due = made;
            for (; done < due; done++) {
                pod_state_enqueue(state, raw[done], lens[done]);
                if (o->release_ns)
                    o->release_ns[done] = pod_mono_ns();
            }
            if (done < made) {
                if (pod_state_stopping(state))
                    break;
                struct timespec ms = {0, 1000000};
                nanosleep(&ms, NULL);
            }
        }
    }
    for (long i = 0; i < made && raw; i++)
        free(raw[i]);
    free(raw);
    free(lens);
    return done;
}

/* ---- the generator's users, for GET /pod/v3/users ---- */

#define GEN_ID_LOW 68719476738LL      /* + 2k, k = 0..1000 (user_json's first range) */
#define GEN_ID_HIGH 349026222340000LL /* .. + 99999 (the second range) */

static bool
gen_id_known(int64_t id, int64_t bot_id)
{
    if (id == bot_id)
        return false;
    if (id >= GEN_ID_LOW && id <= GEN_ID_LOW + 2000 && (id - GEN_ID_LOW) % 2 == 0)
        return true;
    /* user_json moves an id equal to the bot's by 2000 */
    return (id >= GEN_ID_HIGH && id < GEN_ID_HIGH + 100000) || id == bot_id + 2000;
}

json_t *
pod_gen_user(int64_t id, int64_t bot_id)
{
    if (!gen_id_known(id, bot_id))
        return NULL;
    int k = (int)(id % NPEOPLE);
    char display[128], email[96];
    snprintf(display, sizeof display, "%s %s", people[k].first, people[k].last);
    snprintf(email, sizeof email, "%s@example.com", people[k].login);
    return json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "id", (json_int_t)id, "emailAddress",
                     email, "firstName", people[k].first, "lastName", people[k].last, "displayName",
                     display, "username", people[k].login, "company", "dfpod", "accountType",
                     "NORMAL");
}

int64_t
pod_gen_user_by(const char *key, bool is_email)
{
    for (int k = 0; k < NPEOPLE; k++) {
        char email[96];
        snprintf(email, sizeof email, "%s@example.com", people[k].login);
        if (strcmp(key, is_email ? email : people[k].login) != 0)
            continue;
        /* the first id of the high range whose person is k */
        int64_t base = GEN_ID_HIGH - GEN_ID_HIGH % NPEOPLE;
        int64_t id = base + k;
        if (id < GEN_ID_HIGH)
            id += NPEOPLE;
        return id;
    }
    return 0;
}
