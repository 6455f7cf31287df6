/*  Helpers shared by the consumer tests: the CHECK macros (df_check.h), a JSON -> msgpack
    packer (jansson + msgpack-c's packer) to write events readably, the v1
    envelope, and XPUB helpers that wait for the subscription instead of
    sleeping. Header-only: every test is one program. */
#ifndef DFC_TESTUTIL_H
#define DFC_TESTUTIL_H

#include <errno.h>
#include <jansson.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "df_check.h"

/*  The tests predate df_check.h and count in `failures`. */
#define failures df_check_failures

#include "dfc_tsan.h"

/*  The bound for "reacts promptly" assertions (stop, a signal): the
    reaction takes milliseconds, but under ASan/TSan on a loaded 2-core CI
    machine a thread can be off the CPU for a while; 3 s still tells a
    prompt stop from one that waits out a 5 or 10 s timeout. */
#define TU_PROMPT_MS 3000

static inline int64_t
tu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*  Absolute CLOCK_REALTIME deadline ms from now, for pthread_cond_timedwait. */
static inline struct timespec
tu_deadline(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static inline void
tu_pack_json(msgpack_packer *pk, const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        msgpack_pack_map(pk, json_object_size(j));
        json_object_foreach((json_t *)j, k, v)
        {
            msgpack_pack_str_with_body(pk, k, strlen(k));
            tu_pack_json(pk, v);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *v;
        msgpack_pack_array(pk, json_array_size(j));
        json_array_foreach(j, i, v) tu_pack_json(pk, v);
        break;
    }
    case JSON_STRING:
        msgpack_pack_str_with_body(pk, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        msgpack_pack_int64(pk, json_integer_value(j));
        break;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(j));
        break;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        break;
    case JSON_NULL:
        msgpack_pack_nil(pk);
        break;
    }
}

/*  Packs the v1 envelope around an event given as JSON text into sb
    (cleared first); the epoch is el bytes (it may hold NULs, as may the
    JSON's strings: "\u0000" is kept). Aborts the test program on bad test
    JSON. */
static inline void
tu_envelope_n(msgpack_sbuffer *sb, uint64_t seq, uint64_t gseq, const char *epoch, size_t el,
              int64_t bot, const char *event_json)
{
    json_error_t err;
    json_t *ev = json_loads(event_json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!ev) {
        fprintf(stderr, "bad test JSON: %s: %s\n", err.text, event_json);
        exit(2);
    }
    msgpack_sbuffer_clear(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 7);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_str_with_body(&pk, "seq", 3);
    msgpack_pack_uint64(&pk, seq);
    msgpack_pack_str_with_body(&pk, "gseq", 4);
    msgpack_pack_uint64(&pk, gseq);
    msgpack_pack_str_with_body(&pk, "epoch", 5);
    msgpack_pack_str_with_body(&pk, epoch, el);
    msgpack_pack_str_with_body(&pk, "ts", 2);
    msgpack_pack_uint64(&pk, 1700000000123ull);
    msgpack_pack_str_with_body(&pk, "bot", 3);
    msgpack_pack_int64(&pk, bot);
    msgpack_pack_str_with_body(&pk, "event", 5);
    tu_pack_json(&pk, ev);
    json_decref(ev);
}

static inline void
tu_envelope(msgpack_sbuffer *sb, uint64_t seq, uint64_t gseq, const char *epoch, int64_t bot,
            const char *event_json)
{
    tu_envelope_n(sb, seq, gseq, epoch, strlen(epoch), bot, event_json);
}

/*  Sends topic (tl bytes) + body as one two-frame message. */
static inline int
tu_send2n(void *pub, const char *topic, size_t tl, const void *body, size_t len)
{
    if (zmq_send(pub, topic, tl, ZMQ_SNDMORE) < 0)
        return -1;
    return zmq_send(pub, body, len, 0) < 0 ? -1 : 0;
}

/*  Sends topic + body as one two-frame message. */
static inline int
tu_send2(void *pub, const char *topic, const void *body, size_t len)
{
    if (zmq_send(pub, topic, strlen(topic), ZMQ_SNDMORE) < 0)
        return -1;
    return zmq_send(pub, body, len, 0) < 0 ? -1 : 0;
}

/*  Waits (bounded) for a subscription message on an XPUB. Returns 0 once one
    arrived: from then on the subscriber receives what we publish. */
static inline int
tu_wait_subscription(void *xpub, int timeout_ms)
{
    zmq_pollitem_t it = {xpub, 0, ZMQ_POLLIN, 0};
    int64_t end = tu_now_ms() + timeout_ms;
    while (tu_now_ms() < end) {
        if (zmq_poll(&it, 1, (long)(end - tu_now_ms())) > 0) {
            char buf[256];
            int n = zmq_recv(xpub, buf, sizeof buf, ZMQ_DONTWAIT);
            if (n > 0 && buf[0] == 1)
                return 0;
        }
    }
    return -1;
}

#endif
