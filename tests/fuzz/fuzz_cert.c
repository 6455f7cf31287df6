/*  Fuzz target common_cert: the ZeroMQ certificate parser (dfz_cert_parse in
    common/dfz_cert.c) that reads every file of the bridge's
    bridge.curve.clientsDir (dropped there by whoever may write that folder),
    the bridge's secret certificate and the consumers' key files. Checked
    beyond "no crash": a refusal always says why; an accepted certificate's
    public key round-trips through Z85 (dfz_key_encode, dfz_key_parse) to the
    same bytes; a public certificate has no secret bytes; a secret one's
    secret key gives back its public key (zmq_curve_public); the fingerprint
    is the first 12 characters of the key's Z85 form. */
#include "fuzz_util.h"

#include <zmq.h>

#include "dfz_cert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dfz_cert_t c;
    char err[512];
    memset(&c, 0xa5, sizeof c);
    err[0] = '\0';
    if (dfz_cert_parse((const char *)data, size, "fuzz", &c, err, sizeof err) != 0) {
        if (!err[0] || !memchr(err, '\0', sizeof err))
            abort(); /* a refusal always says why */
        return 0;
    }
    char z85[DFZ_Z85_LEN + 1], fp[DFZ_FP_LEN + 1];
    uint8_t back[DFZ_KEY_BYTES];
    dfz_key_encode(c.public_key, z85);
    if (strlen(z85) != DFZ_Z85_LEN || dfz_key_parse(z85, back) != 0 ||
        memcmp(back, c.public_key, sizeof back) != 0)
        abort();
    dfz_cert_fingerprint(c.public_key, fp);
    if (strlen(fp) != DFZ_FP_LEN || memcmp(fp, z85, DFZ_FP_LEN) != 0)
        abort();
    static const uint8_t zero[DFZ_KEY_BYTES];
    if (!c.has_secret && memcmp(c.secret_key, zero, sizeof zero) != 0)
        abort(); /* "all zero unless has_secret" */
    if (c.has_secret) {
        char sec[DFZ_Z85_LEN + 1], pub[DFZ_Z85_LEN + 1];
        dfz_key_encode(c.secret_key, sec);
        if (zmq_curve_public(pub, sec) != 0 || strcmp(pub, z85) != 0)
            abort(); /* the parser checks that the pair belongs together */
    }
    dfz_cert_wipe(&c);
    if (memcmp(c.public_key, zero, sizeof zero) != 0 || memcmp(c.secret_key, zero, sizeof zero) != 0)
        abort();
    return 0;
}
