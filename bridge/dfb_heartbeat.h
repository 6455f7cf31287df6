/*  dfb_heartbeat: the body of the `_hb` message (schemas/CONTRACT.md,
    "Heartbeat"). Only the encoder: the publisher actor decides when one is
    sent. */
#ifndef DFB_HEARTBEAT_H
#define DFB_HEARTBEAT_H

#include <stdint.h>

#include "dfb_topics.h"
#include "dfb_transcode.h"

/*  The heartbeat topic. */
#define DFB_TOPIC_HEARTBEAT "_hb"

/*  Appends the msgpack body of a heartbeat: v, epoch, gseq, seqs (the
    topics of seqs whose seq > 0, in the map's order), ts, interval, replay.
    0, or -1 when out of memory. */
int dfb_heartbeat_encode(dfb_buf_t *b, const char *epoch, uint64_t gseq, const dfb_topics_t *seqs,
                         uint64_t ts, int interval_ms, const char *replay);

#endif
