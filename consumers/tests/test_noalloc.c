/*  consumer_decode_noalloc: once warm, decoding a live event into its typed structs and
    releasing it allocates nothing (the event's block and the decoder's scratch are
    recycled by dfc_blocks). Run under valgrind with --rounds 1 and --rounds 300: the heap
    allocation counts must be equal (CMakeLists.txt compares them). Each round holds 100
    events at once, as a queue would, then releases them. */
#include "testutil.h"

#include "dfc_internal.h"

#define HELD 100

int
main(int argc, char **argv)
{
    int rounds = argc == 3 && !strcmp(argv[1], "--rounds") ? atoi(argv[2]) : 1;
    char body[1200];
    memset(body, 'x', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    char *json = malloc(4096);
    snprintf(json, 4096,
             "{\"id\":\"ev1\",\"type\":\"MESSAGESENT\",\"timestamp\":1700000000000,"
             "\"initiator\":{\"user\":{\"userId\":7,\"displayName\":\"A\"}},"
             "\"payload\":{\"messageSent\":{\"message\":{\"messageId\":\"m1\","
             "\"message\":\"<messageML>%s</messageML>\",\"stream\":{\"streamId\":\"s1\","
             "\"streamType\":\"ROOM\"},\"user\":{\"userId\":8}}}}}",
             body);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    tu_envelope(&sb, 1, 1, "epoch-A", 9, json);
    free(json);
    dfc_blocks_t *blocks = dfc_blocks_new(2 * HELD);
    CHECK(blocks != NULL);
    dfc_event_t *evs[HELD];
    uint64_t decoded = 0;
    for (int r = 0; r < rounds && blocks; r++) {
        for (int k = 0; k < HELD; k++) {
            dfc_msg_status_t st;
            evs[k] = dfc_event_new_in(blocks, "MESSAGESENT", 11, sb.data, sb.size, 1u << 20, &st);
            CHECK(evs[k] != NULL && st == DFC_MSG_OK);
            if (evs[k] && dfc_event_gseq(evs[k]) == 1 && !strcmp(dfc_event_id(evs[k]), "ev1"))
                decoded++;
        }
        for (int k = 0; k < HELD; k++) {
            dfc_event_ref(evs[k]); /* a job's reference, then the receiver's */
            dfc_event_unref(evs[k]);
            dfc_event_unref(evs[k]);
        }
    }
    CHECK_EQ(decoded, (uint64_t)rounds * HELD);
    dfc_blocks_destroy(&blocks);
    msgpack_sbuffer_destroy(&sb);
    return df_check_report("consumer_decode_noalloc");
}
