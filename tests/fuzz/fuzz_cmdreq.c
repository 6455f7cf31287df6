/*  Fuzz target bridge_cmdreq: the command channel's request parser
    (dfb_cmd_req_parse in bridge/dfb_cmdproto.c), the frame any client on
    the network sends to the commands ROUTER. Checked beyond "no crash": a
    refused frame has a reason and no copy; an accepted one has a usable id
    and op, its args inside its own copy of the frame and readable again,
    and for a post the `data` part built from it is a JSON object holding the
    mark (what goes to Symphony is always valid). */
#include "fuzz_util.h"

#include "dfb_cmdproto.h"
#include "dfb_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    static dfb_json_t *json;
    if (!json)
        json = dfb_json_new();
    dfb_cmd_req_t req;
    char why[512];
    why[0] = 0;
    if (dfb_cmd_req_parse(data, size, 1 << 20, &req, why, sizeof why) != 0) {
        if (!why[0] || req.frame || (req.has_id && (req.id_len < 1 || req.id_len > DFB_CMD_MAX_ID)))
            abort(); /* refused without a reason, or with a copy, or a bad echo */
        dfb_buf_t reply = {0};
        if (dfb_cmd_reply_error(&reply, req.has_id ? req.id : NULL, req.id_len, DFB_CMD_BAD_REQUEST,
                                why, 0, 0) != 0)
            abort();
        dfb_buf_free(&reply);
        return 0;
    }
    if (!req.has_id || req.id_len < 1 || req.id_len > DFB_CMD_MAX_ID ||
        strlen(req.id) != req.id_len || (unsigned)req.op >= DFB_OP_COUNT || req.frame_len != size ||
        memcmp(req.frame, data, size) != 0 || req.args < req.frame ||
        req.args + req.args_len > req.frame + req.frame_len)
        abort(); /* accepted outside the protocol's bounds */
    dfb_cmd_args_t a;
    if (dfb_cmd_args_read(&req, &a, why, sizeof why) != 0)
        abort(); /* parse and read disagree */
    if (dfb_op_posts(req.op)) {
        dfb_buf_t out = {0};
        if (dfb_cmd_data_json(&a, "0123456789abcdef0123456789abcdef", &out) != 0 ||
            dfb_json_parse(json, (const char *)out.data, out.len) != 0 ||
            dfb_json_type(json, 0) != DFB_JSON_OBJECT ||
            dfb_json_get(json, 0, "dfbridge.request") == DFB_JSON_NONE)
            abort(); /* the data part would not be a JSON object with the mark */
        dfb_buf_reset(&out);
        if (dfb_cmd_message_text(&a.message, &out) != 0 || out.len < a.message.len)
            abort();
        dfb_buf_free(&out);
    }
    dfb_cmd_req_free(&req);
    return 0;
}
