/*  dfc_curve: CURVE client keys for every socket a consumer opens to a bridge
    (dfc_config_t server_key and cert, dftail --server-key --cert): loaded with
    common/dfz_cert (czmq zcert / pyzmq certificate files), checked, applied,
    wiped. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "dfc_internal.h"
#include "dfz_cert.h"

int
dfc_curve_load(dfc_curve_t *c, const char *server_key, const char *cert, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    bool has_server = server_key && *server_key, has_cert = cert && *cert;
    if (!has_server && !has_cert)
        return DFC_OK;
    if (!has_cert) {
        snprintf(err, errlen, "server_key needs cert: the path of this consumer's .key_secret file");
        return DFC_EINVAL;
    }
    if (!has_server) {
        snprintf(err, errlen, "cert needs server_key: the bridge's public key (40 Z85 "
                              "characters) or its .key file");
        return DFC_EINVAL;
    }
    if (!zmq_has("curve")) {
        snprintf(err, errlen, "server_key/cert: this libzmq has no CURVE support");
        return DFC_EINVAL;
    }
    char why[400];
    dfz_cert_t k;
    /* a file of that name wins: a 40-character path is made of Z85 characters too */
    int no_file = access(server_key, F_OK) == 0 ? 0 : errno;
    if (!no_file) {
        if (dfz_cert_load(server_key, &k, why, sizeof why) != 0) {
            snprintf(err, errlen, "server_key: %s", why);
            return DFC_EINVAL;
        }
        if (k.has_secret) {
            dfz_cert_wipe(&k);
            snprintf(err, errlen,
                     "server_key: %s holds a secret-key: give the bridge's public certificate "
                     "(.key), never its secret",
                     server_key);
            return DFC_EINVAL;
        }
        memcpy(c->server, k.public_key, sizeof c->server);
    } else if (dfz_key_parse(server_key, c->server) != 0) {
        /* the value itself is not repeated: it might be a mistyped secret */
        snprintf(err, errlen,
                 "server_key: neither a certificate file (%s) nor a 40-character Z85 key (%zu "
                 "characters)",
                 strerror(no_file), strlen(server_key));
        return DFC_EINVAL;
    }
    if (dfz_cert_load_secret(cert, &k, why, sizeof why) != 0) {
        dfz_cert_wipe(&k);
        explicit_bzero(c, sizeof *c);
        snprintf(err, errlen, "cert: %s", why);
        return DFC_EINVAL;
    }
    memcpy(c->public_key, k.public_key, sizeof c->public_key);
    memcpy(c->secret, k.secret_key, sizeof c->secret);
    dfz_cert_wipe(&k);
    c->on = true;
    return DFC_OK;
}

int
dfc_curve_apply(const dfc_curve_t *c, void *sock)
{
    if (!c || !c->on)
        return 0;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, c->server, sizeof c->server) ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, c->public_key, sizeof c->public_key) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, c->secret, sizeof c->secret))
        return -1;
    return 0;
}

void
dfc_curve_wipe(dfc_curve_t *c)
{
    if (c)
        explicit_bzero(c, sizeof *c);
}
