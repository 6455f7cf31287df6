/*  dfb_outbound: the Symphony calls of one command channel request, run on
    an executor thread: the call of the op (schemas/CONTRACT.md "Commands"),
    the mark in a posted message's data, the lookup of the mark after an
    ambiguous failure, retries (the global `retry` block, Retry-After), one
    shared re-authentication after a 401 (dfb_auth_refresh_shared), and the
    mapping of what happened to an outcome. One object per thread. */
#ifndef DFB_OUTBOUND_H
#define DFB_OUTBOUND_H

#include <stddef.h>
#include <stdint.h>

#include "dfb_auth.h"
#include "dfb_cmdproto.h"
#include "dfb_config.h"

typedef struct dfb_outbound dfb_outbound_t;

/*  One per executor thread: its own dfb_http_t (cfg's timeouts and
    transport settings), sharing the session via auth. cfg and auth are
    borrowed and must outlive the object. stop_fd: the daemon's (cuts waits
    and transfers). NULL with a message in err on failure. */
dfb_outbound_t *dfb_outbound_new(const dfb_config_t *cfg, dfb_auth_t *auth, int stop_fd, char *err,
                                 size_t errlen);
void dfb_outbound_destroy(dfb_outbound_t **self_p);

typedef struct {
    const char *scope;
    size_t scope_len; /* for the mark */
    int64_t begin_ms; /* wall ms of the request's first begin record: the lookup's since =
                         begin_ms - lookback */
    int resumed;      /* an earlier attempt may have reached Symphony: for send/update look for
                         the mark FIRST */
} dfb_outbound_ctx_t;

/*  Runs req to an outcome (always fills out, which must be initialised with
    dfb_cmd_outcome_init; never blocks past the retry budget or a stop). */
void dfb_outbound_exec(dfb_outbound_t *self, const dfb_cmd_req_t *req,
                       const dfb_outbound_ctx_t *ctx, dfb_cmd_outcome_t *out);

/*  The lookup's window before begin_ms (bridge.commandsLookbackMillis;
    default DFB_OUTBOUND_LOOKBACK_MS). */
#define DFB_OUTBOUND_LOOKBACK_MS 120000
void dfb_outbound_set_lookback(dfb_outbound_t *self, int64_t ms);

/*  Lookup bounds: messages per page (Symphony's maximum) and pages. The
    list runs oldest first from `since`: when every page is full and none
    holds the mark, the newest messages - ours among them, maybe - were not
    read, and the outcome is unknown_outcome, never "not found". */
#define DFB_OUTBOUND_PAGE 500
#define DFB_OUTBOUND_PAGES 20
/*  Tests only: other bounds (page 1..500, pages 1..1000; 0 = the default). */
void dfb_outbound_set_paging(dfb_outbound_t *self, int page, int pages);

/*  Self-test (dfb_selftest outbound): the call built for each op, no network. */
int dfb_outbound_test(int verbose);

#endif
