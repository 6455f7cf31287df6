/*  dfb_curve: the bridge's network exposure policy at start (README
    "Security"): the CURVE keys named by bridge.curve.secretKey and
    bridge.curve.clientsDir, and the rule that an endpoint listening beyond
    loopback needs CURVE or bridge.insecure: true. --check and the start
    both go through dfb_curve_setup, so a config that passes --check starts. */
#ifndef DFB_CURVE_H
#define DFB_CURVE_H

#include <stddef.h>
#include <stdint.h>

#include "dfb_config.h"

typedef struct {
    int enabled;            /* bridge.curve.* set: CURVE on the PUB and the replay ROUTER */
    uint8_t public_key[32]; /* the bridge's, what consumers configure as the server key */
    uint8_t secret_key[32]; /* wiped by dfb_curve_wipe */
    char fingerprint[16];   /* of public_key (dfz_cert_fingerprint), for the log */
    const char *clients_dir; /* borrowed from the config */
} dfb_curve_t;

/*  1 when a bind endpoint only listens on this host: tcp:// on 127.0.0.0/8,
    ::1 or localhost; ipc:// and inproc://. `*`, 0.0.0.0, ::, interface
    names, host names and every other transport are not. */
int dfb_endpoint_is_loopback(const char *endpoint);

/*  Loads the bridge's secret certificate and checks clientsDir (a readable
    folder) when curve is set, then applies the loopback rule to
    bridge.publish, bridge.replay and bridge.commands. 0 (with insecure non-loopback
    endpoints: one warning each, logged here), or -1 with one message in err
    naming the key ("config: bridge.curve.secretKey: ..."). *out is zeroed
    first; wipe it with dfb_curve_wipe. */
int dfb_curve_setup(const dfb_config_t *cfg, dfb_curve_t *out, char *err, size_t errlen);

/*  Zeroes the key material. Accepts NULL. */
void dfb_curve_wipe(dfb_curve_t *curve);

#endif
