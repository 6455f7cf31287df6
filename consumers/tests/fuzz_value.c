/*  libFuzzer target for everything that reads network bytes in libdfconsumer:
    the bounded msgpack decoder, the JSON printer, the envelope check and the
    typed event decoding. Target consumer_value of tests/fuzz (built there,
    run with scripts/fuzz.sh consumer_value). */
#include <stdlib.h>
#include <string.h>

#include "dfc_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dfc_doc_t *doc = NULL;
    if (dfc_doc_parse(data, size, &doc) == DFC_OK) {
        char small[64];
        size_t need = dfc_value_to_json(dfc_doc_root(doc), small, sizeof small);
        char *big = malloc(need + 1);
        if (big) {
            size_t again = dfc_value_to_json(dfc_doc_root(doc), big, need + 1);
            if (again != need || strlen(big) > need)
                abort(); /* the two passes must agree */
            free(big);
        }
        (void)dfc_value_get(dfc_doc_root(doc), "event.payload.messageSent.message.stream.0");
        dfc_doc_destroy(&doc);
    }
    /* the same bytes as a frame 2 under a known topic: typed decoding too */
    dfc_msg_status_t st;
    dfc_event_t *ev = dfc_event_new("MESSAGESENT", 11, data, size, 1u << 24, &st);
    if (ev) {
        const dfc_initiator_t *in = dfc_event_initiator(ev);
        (void)dfc_default_is_accepting(NULL, ev, in, dfc_event_bot(ev));
        dfc_event_unref(ev);
    }
    return 0;
}
