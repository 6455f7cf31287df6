/*  dfb_zap: the bridge's ZAP handler (ZeroMQ RFC 27) and CURVE allow-list,
    on a thread of its own. Every CURVE handshake on the PUB and the replay
    ROUTER (dfb_zsock, domain DFB_ZAP_DOMAIN) asks it; it allows a client
    only if the client's public key is in one of the *.key certificates of
    bridge.curve.clientsDir. The folder is checked every second (names,
    sizes, mtimes, ctimes, inodes) and re-read when it changed; a broken
    file is logged and skipped, a missing folder allows nobody. When a
    reload removes a key, auth_rebinds grows: the publisher actor and the
    replay thread watch that counter and re-bind their sockets, which cuts
    every existing connection (ZAP only runs at the handshake); allowed
    clients reconnect and pass again. Denials are counted and logged at
    most once a second (then a summary of those not logged) with the peer
    address and the key's fingerprint. */
#ifndef DFB_ZAP_H
#define DFB_ZAP_H

#include <stddef.h>

#include "dfb_info.h"

#define DFB_ZAP_SCAN_MS 1000     /* how often clientsDir is checked */
#define DFB_ZAP_MAX_FILES 10000  /* *.key files read from clientsDir; more are ignored (logged) */

typedef struct dfb_zap dfb_zap_t;

/*  Binds the handler (inproc://zeromq.zap.01) in ctx, loads the allow-list
    (logged), and starts the thread. Call it BEFORE any CURVE socket of ctx
    binds and destroy it only AFTER they are all closed: libzmq 4.3 lets
    every CURVE client in while no handler is bound. counters (borrowed):
    the auth_* counters. NULL on error, message in err. If the thread stops
    on an error the socket stays bound (handshakes then wait: nobody new
    gets in), dead_threads grows and the daemon is asked to stop. */
dfb_zap_t *dfb_zap_new(void *ctx, const char *clients_dir, dfb_pub_counters_t *counters,
                       char *err, size_t errlen);

/*  Stops the thread, closes its sockets, NULLs *self_p; accepts NULL. */
void dfb_zap_destroy(dfb_zap_t **self_p);

#endif
