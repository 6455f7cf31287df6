/*  Fuzz target consumer_replay_end: the consumer's reader of a replay
    answer's end marker (dfc_replay_end_parse in consumers/dfc_replay.c),
    the frame any replay endpoint (or one named by a forged heartbeat)
    sends. Checked beyond "no crash": the strings it keeps are cut to fit
    and NUL-terminated, and a marker it does not flag as impossible has
    numbers a consumer can act on. */
#include "fuzz_util.h"

#include "dfc_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    dfc_log_set_level((dfc_log_level_t)(getenv("DF_FUZZ_LOG") ? DFC_LOG_DEBUG : DFC_LOG_ERROR + 1));
    dfc_replay_end_t end;
    int rc = dfc_replay_end_parse(data, size, &end);
    if (rc != DFC_OK && rc != DFC_EINVAL)
        abort();
    if (!memchr(end.code, '\0', sizeof end.code) || !memchr(end.error, '\0', sizeof end.error))
        abort();
    if (rc == DFC_OK && !end.impossible &&
        (end.last_gseq > DFC_SEQ_MAX || end.head_gseq > DFC_SEQ_MAX ||
         (end.has_head && end.last_gseq > end.head_gseq) ||
         (end.has_lost && end.lost_from > end.lost_to)))
        abort();
    return 0;
}
