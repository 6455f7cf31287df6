/*  Fuzz target bridge_replay_request: the replay endpoint's request parser
    (parse_request in bridge/dfb_replay.c, through dfb_replay_parse), the
    frame any client on the network sends to the ROUTER. Checked beyond "no
    crash": a request served is within the protocol's bounds (limit
    1..1000, from >= 1, at most 64 topics); a refused one has a code. */
#include "fuzz_util.h"

#include "dfb_replay.h"
#include "dfb_replay_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    dfb_replay_parsed_t p;
    int rc = dfb_replay_parse(data, size, "0123456789abcdef", &p);
    if (rc == 1 && (!p.code || !*p.code))
        abort(); /* refused without a code */
    if (rc == 0 && !p.info &&
        (p.limit < 1 || p.limit > DFB_REPLAY_MAX_LIMIT || p.from < 1 ||
         p.ntopics > DFB_REPLAY_MAX_TOPICS || (p.by_topic && p.ntopics)))
        abort(); /* served outside the protocol's bounds */
    return 0;
}
