/*  dfb_heartbeat: the `_hb` body encoder (see dfb_heartbeat.h), checked
    against the golden vectors by the heartbeat_golden test. */
#include "dfb_heartbeat.h"

#include "dfb_mpack.h"

int
dfb_heartbeat_encode(dfb_buf_t *b, const char *epoch, uint64_t gseq, const dfb_topics_t *seqs,
                     uint64_t ts, int interval_ms, const char *replay)
{
    uint32_t n = 0;
    size_t cur = 0;
    for (dfb_topic_t *t; (t = dfb_topics_next(seqs, &cur));)
        n += t->seq > 0;
    int rc = dfb_mpack_map(b, 7);
    rc |= dfb_mpack_cstr(b, "v") | dfb_mpack_uint(b, 1);
    rc |= dfb_mpack_cstr(b, "epoch") | dfb_mpack_cstr(b, epoch);
    rc |= dfb_mpack_cstr(b, "gseq") | dfb_mpack_uint(b, gseq);
    rc |= dfb_mpack_cstr(b, "seqs") | dfb_mpack_map(b, n);
    cur = 0;
    for (dfb_topic_t *t; (t = dfb_topics_next(seqs, &cur));)
        if (t->seq > 0)
            rc |= dfb_mpack_str(b, t->topic, t->len) | dfb_mpack_uint(b, t->seq);
    rc |= dfb_mpack_cstr(b, "ts") | dfb_mpack_uint(b, ts);
    rc |= dfb_mpack_cstr(b, "interval") | dfb_mpack_uint(b, (uint64_t)interval_ms);
    rc |= dfb_mpack_cstr(b, "replay") | dfb_mpack_cstr(b, replay);
    return rc ? -1 : 0;
}
