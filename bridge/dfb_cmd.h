/*  dfb_cmd: the command channel (schemas/CONTRACT.md "Commands", README
    "Replying from a worker"). One thread owns the ROUTER at bridge.commands:
    it reads each request (one frame, or an empty delimiter then the
    request), parses it (dfb_cmdproto), applies the allow-list
    (bridge.commandsAllow, by the CURVE certificate name ZAP gave the
    connection), and looks its key (scope "\0" id) up in the in-flight
    table (a second requester of a request in progress is attached to it)
    and the command journal (dfb_cmdlog: a recorded outcome is replied with
    replayed = true, no call). A new or resumed request waits in the
    scheduler (dfb_cmdsched: global and per-stream rates, bounded queue,
    busy beyond it) for one of bridge.commandsConcurrency executor threads,
    each with its own dfb_outbound_t (HTTP connection, shared session),
    which journals the begin, makes the Symphony call(s) and journals the
    outcome; the thread then replies to every requester. Replies never block
    the thread: one that cannot be sent (client gone, its pipe full) is
    dropped and counted. */
#ifndef DFB_CMD_H
#define DFB_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "dfb_auth.h"
#include "dfb_config.h"
#include "dfb_fdguard.h"
#include "dfb_info.h"
#include "dfb_zsock.h"

typedef struct dfb_cmd dfb_cmd_t;

typedef struct {
    const dfb_config_t *cfg;  /* bridge.commands* and the HTTP settings (borrowed, outlives self) */
    dfb_auth_t *auth;         /* the session shared with the datafeed loop (borrowed) */
    int stop_fd;              /* the daemon's stop (dfb_stop_fd): ends waits and calls */
    void *ctx;                /* the ZeroMQ context (the publisher's) */
    void *sock;               /* the bound ROUTER (dfb_publish_take_commands): self owns it,
                                 even when dfb_cmd_new fails */
    const dfb_zsock_opts_t *zo; /* its options, for a CURVE re-bind (copied; the curve
                                   secret they point to must outlive self) */
    dfb_pub_counters_t *counters; /* commands_* (written), auth_rebinds (read) */
    dfb_fdguard_t *guard;     /* the connection guard watching sock ("bridge.commands"), or NULL */
} dfb_cmd_opts_t;

/*  Opens the command journal (<bridge.stateDir>/commands.log, or memory
    only without stateDir: a warning), creates the executors (one
    dfb_outbound_t each) and starts the threads. NULL on error with a
    message in err. */
dfb_cmd_t *dfb_cmd_new(const dfb_cmd_opts_t *o, char *err, size_t errlen);

/*  Stops the channel: requests still waiting are answered unavailable
    ("the bridge is stopping"), the requests with an executor end (cut by
    the stop fd when a stop was requested) and are answered, then the
    threads are joined and the ROUTER closed. NULLs *self_p; accepts NULL. */
void dfb_cmd_destroy(dfb_cmd_t **self_p);

/*  The endpoint bound (borrowed). */
const char *dfb_cmd_endpoint(const dfb_cmd_t *self);

/*  Checks bridge.commandsAllow's patterns against the op names: an op, a
    prefix then ".*" that names at least one op, or "*". 0, or -1 with a
    message naming the client and the pattern in err. */
int dfb_cmd_check_allow(const dfb_config_t *cfg, char *err, size_t errlen);

/*  Whether client may call op under cfg's allow-list (CURVE on: client is
    the certificate name; allow unset: every client may). 1 or 0. */
int dfb_cmd_allowed(const dfb_config_t *cfg, const char *client, const char *op);

/*  One line describing the channel's settings (for --check and the start
    log): endpoint, CURVE, allow-list, rates, queue, window, journal. */
void dfb_cmd_describe(const dfb_config_t *cfg, int curve, char *out, size_t cap);

/*  Self-test of the allow-list (dfb_selftest cmd); 0 when all pass. */
int dfb_cmd_test(int verbose);

#endif
