/*  dfb_replay_parse: the replay thread's request parser (dfb_replay.c),
    exposed for its tests and fuzz target (tests/fuzz); the thread itself
    does not go through this entry point. */
#ifndef DFB_REPLAY_PARSE_H
#define DFB_REPLAY_PARSE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int info;          /* an info request */
    int by_topic;      /* a "topic from seq" request */
    uint64_t from;     /* first gseq (or seq) asked, >= 1 */
    uint32_t limit;    /* 1 .. DFB_REPLAY_MAX_LIMIT */
    uint32_t ntopics;  /* entries of the topics filter */
    const char *code;  /* a refused request: "bad_request" or "epoch" (static); else NULL */
} dfb_replay_parsed_t;

/*  Parses one request frame as the replay thread does, against the
    bridge's epoch, fills *out and frees what the parse allocated. Returns
    0 for a request that would be served, 1 for one answered with an error
    (out->code), -1 when out of memory. */
int dfb_replay_parse(const uint8_t *data, size_t len, const char *epoch, dfb_replay_parsed_t *out);

#endif
