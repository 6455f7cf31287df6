/*  Runner for the tape's self-test, plus checks that need more than a
    unit: a 300 KB string, many parses on one tape (run under valgrind by
    ctest to prove no allocation once warm). */
#include "dfb_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  A realistic MESSAGESENT event with an escaped PresentationML body. */
static const char *s_event =
    "{\"id\":\"ulPr8a\",\"timestamp\":1700000000000,\"type\":\"MESSAGESENT\","
    "\"initiator\":{\"user\":{\"userId\":68719476737,\"displayName\":\"Jane Doe\"}},"
    "\"payload\":{\"messageSent\":{\"message\":{\"messageId\":\"CszQa6uPAA9V2ZvK0dCl4X___"
    "oWnF5B8dA\","
    "\"message\":\"<div data-format=\\\"PresentationML\\\">h\\u00e9llo \\ud83d\\ude00</div>\","
    "\"data\":\"{\\\"0\\\":{}}\",\"attachments\":[],\"stream\":{\"streamId\":\"wTmSDJ\","
    "\"streamType\":\"ROOM\"}}}}}";

static int
big_string(void)
{
    size_t n = 300 * 1024;
    char *text = malloc(n + 3);
    if (!text)
        return 1;
    text[0] = '"';
    for (size_t i = 0; i < n; i++)
        text[1 + i] = (char)('a' + i % 26);
    text[n + 1] = '"';
    text[n + 2] = '\0';
    dfb_json_t *j = dfb_json_new();
    int fails = 0;
    size_t len = 0;
    const char *s = NULL;
    if (!j || dfb_json_parse(j, text, n + 2) != 0) {
        fprintf(stderr, "300 KB string: parse failed: %s\n", j ? dfb_json_error(j) : "new");
        fails++;
    } else {
        s = dfb_json_string(j, 0, &len);
        if (!s || len != n || memcmp(s, text + 1, n) != 0 || s[n] != '\0') {
            fprintf(stderr, "300 KB string: content differs\n");
            fails++;
        }
    }
    dfb_json_destroy(&j);
    free(text);
    return fails;
}

/*  Parses the sample event `count` times on one tape, checking each. */
static int
reuse(long count)
{
    dfb_json_t *j = dfb_json_new();
    if (!j)
        return 1;
    int fails = 0;
    for (long i = 0; i < count; i++) {
        /* Alternate with a failing parse: errors must not leak either. */
        if (dfb_json_parse(j, "[1,", 3) != -1)
            fails++;
        if (dfb_json_parse(j, s_event, strlen(s_event)) != 0) {
            fprintf(stderr, "reuse: %s\n", dfb_json_error(j));
            fails++;
            break;
        }
        size_t len;
        const char *msg = dfb_json_string(
            j,
            dfb_json_get(j,
                         dfb_json_get(j,
                                      dfb_json_get(j, dfb_json_get(j, 0, "payload"), "messageSent"),
                                      "message"),
                         "message"),
            &len);
        if (!msg || strcmp(msg, "<div data-format=\"PresentationML\">h\xc3\xa9llo "
                                "\xf0\x9f\x98\x80</div>") != 0)
            fails++;
    }
    dfb_json_destroy(&j);
    if (fails)
        fprintf(stderr, "reuse: %d failure(s)\n", fails);
    return fails;
}

int
main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--reuse") == 0)
        return reuse(atol(argv[2])) ? 1 : 0;
    int verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
    int fails = dfb_json_test(verbose) + big_string() + reuse(100);
    printf("dfb_json_test: %s\n", fails ? "FAILED" : "OK");
    return fails ? 1 : 0;
}
