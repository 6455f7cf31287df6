/* dfpod TLS helpers: PEM files for libmicrohttpd's HTTPS mode (GnuTLS on Debian) and the
 * verified client certificate's CN, which is how a real pod's /sessionauth and /keyauth
 * endpoints know which service account authenticates (mutual TLS, no body). */
#include "pod.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>

char *
pod_tls_read_pem(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "dfpod: cannot read %s\n", path);
        return NULL;
    }
    size_t cap = 1 << 20;
    char *buf = malloc(cap + 1);
    size_t n = buf ? fread(buf, 1, cap, f) : 0;
    fclose(f);
    if (!buf || n == 0 || n == cap) {
        fprintf(stderr, "dfpod: %s: empty, unreadable or over 1 MiB\n", path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

bool
pod_tls_client_cn(struct MHD_Connection *c, char *out, size_t outlen, char *why, size_t whylen)
{
    out[0] = '\0';
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session) {
        snprintf(why, whylen, "not a TLS connection");
        return false;
    }
    gnutls_session_t s = (gnutls_session_t)ci->tls_session;
    unsigned int n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(s, &n);
    if (!certs || n == 0) {
        snprintf(why, whylen, "no client certificate");
        return false;
    }
    /* Verified against the --tls-client-ca trust list MHD loaded. */
    unsigned int status = 0;
    if (gnutls_certificate_verify_peers2(s, &status) != GNUTLS_E_SUCCESS || status != 0) {
        snprintf(why, whylen, "client certificate not trusted (status 0x%x)", status);
        return false;
    }
    gnutls_x509_crt_t crt;
    if (gnutls_x509_crt_init(&crt) != GNUTLS_E_SUCCESS) {
        snprintf(why, whylen, "out of memory");
        return false;
    }
    bool ok = false;
    size_t len = outlen;
    if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == GNUTLS_E_SUCCESS &&
        gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, out, &len) ==
            GNUTLS_E_SUCCESS)
        ok = true;
    else
        snprintf(why, whylen, "no CN in the client certificate");
    gnutls_x509_crt_deinit(crt);
    if (!ok)
        out[0] = '\0';
    return ok;
}
