/* dfpod JWT checks: what the Symphony login and relay endpoints verify before issuing a
 * token — an RS512 signature by the bot's registered public key, sub = bot username and
 * now < exp <= now + 300 s. Every failure gets a reason for the 401 message. */
#include "pod.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

struct pod_jwt_t {
    EVP_PKEY *key;
    char *username;
};

pod_jwt_t *
pod_jwt_new(const char *pem_path, const char *username, char *err, size_t errlen)
{
    FILE *fp = fopen(pem_path, "r");
    if (!fp) {
        snprintf(err, errlen, "cannot open %s", pem_path);
        return NULL;
    }
    EVP_PKEY *key = PEM_read_PUBKEY(fp, NULL, NULL, NULL); /* SPKI "PUBLIC KEY" */
    if (!key) {
        /* PKCS#1 "RSA PUBLIC KEY": the decoder takes it without deprecated RSA calls. */
        rewind(fp);
        OSSL_DECODER_CTX *dctx = OSSL_DECODER_CTX_new_for_pkey(&key, "PEM", "type-specific", "RSA",
                                                               EVP_PKEY_PUBLIC_KEY, NULL, NULL);
        if (dctx) {
            BIO *bio = BIO_new_fp(fp, BIO_NOCLOSE);
            if (bio && !OSSL_DECODER_from_bio(dctx, bio))
                key = NULL;
            BIO_free(bio);
            OSSL_DECODER_CTX_free(dctx);
        }
    }
    fclose(fp);
    if (!key) {
        snprintf(err, errlen, "%s holds no PEM public key (SPKI or PKCS#1)", pem_path);
        return NULL;
    }
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
        EVP_PKEY_free(key);
        snprintf(err, errlen, "%s is not an RSA key", pem_path);
        return NULL;
    }
    pod_jwt_t *self = calloc(1, sizeof *self);
    if (!self || !(self->username = strdup(username))) {
        free(self);
        EVP_PKEY_free(key);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->key = key;
    return self;
}

void
pod_jwt_destroy(pod_jwt_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    EVP_PKEY_free((*self_p)->key);
    free((*self_p)->username);
    free(*self_p);
    *self_p = NULL;
}

long
pod_b64url_decode(const char *in, size_t len, unsigned char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    long n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        int v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '-')
            v = 62;
        else if (c == '_')
            v = 63;
        else if (c == '=' && i + 2 >= len)
            break; /* tolerate padding at the very end */
        else
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits >= 6) /* a lone trailing character carries no whole byte */
        return -1;
    return n;
}

/* Decodes one base64url part into a malloc'd NUL-terminated buffer; NULL if invalid. */
static unsigned char *
part_decode(const char *s, size_t n, long *outlen)
{
    unsigned char *out = malloc(n * 3 / 4 + 4);
    if (!out)
        return NULL;
    long k = pod_b64url_decode(s, n, out);
    if (k < 0) {
        free(out);
        return NULL;
    }
    out[k] = '\0';
    *outlen = k;
    return out;
}

int
pod_jwt_verify(pod_jwt_t *self, const char *jwt, int64_t now_s, char *why, size_t whylen)
{
    int rc = -1;
    unsigned char *hdr = NULL, *pay = NULL, *sig = NULL;
    json_t *jh = NULL, *jp = NULL;
    EVP_MD_CTX *md = NULL;
    if (!jwt) {
        snprintf(why, whylen, "no token");
        return -1;
    }
    const char *d1 = strchr(jwt, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d1 || !d2 || strchr(d2 + 1, '.')) {
        snprintf(why, whylen, "token is not a JWS compact serialisation");
        return -1;
    }
    long hl, pl, sl;
    hdr = part_decode(jwt, (size_t)(d1 - jwt), &hl);
    pay = part_decode(d1 + 1, (size_t)(d2 - d1 - 1), &pl);
    sig = part_decode(d2 + 1, strlen(d2 + 1), &sl);
    if (!hdr || !pay || !sig) {
        snprintf(why, whylen, "token is not base64url");
        goto out;
    }
    jh = json_loadb((const char *)hdr, (size_t)hl, 0, NULL);
    jp = json_loadb((const char *)pay, (size_t)pl, 0, NULL);
    if (!json_is_object(jh) || !json_is_object(jp)) {
        snprintf(why, whylen, "token header or claims are not JSON objects");
        goto out;
    }
    const char *alg = json_string_value(json_object_get(jh, "alg"));
    if (!alg || strcmp(alg, "RS512") != 0) {
        snprintf(why, whylen, "alg must be RS512");
        goto out;
    }
    md = EVP_MD_CTX_new();
    if (!md || EVP_DigestVerifyInit(md, NULL, EVP_sha512(), NULL, self->key) != 1 ||
        EVP_DigestVerify(md, sig, (size_t)sl, (const unsigned char *)jwt, (size_t)(d2 - jwt)) !=
            1) {
        snprintf(why, whylen, "signature does not verify");
        goto out;
    }
    const char *sub = json_string_value(json_object_get(jp, "sub"));
    if (!sub || strcmp(sub, self->username) != 0) {
        snprintf(why, whylen, "sub is not the bot username");
        goto out;
    }
    json_t *exp = json_object_get(jp, "exp");
    if (!json_is_number(exp)) {
        snprintf(why, whylen, "exp missing");
        goto out;
    }
    double e = json_number_value(exp);
    if (e <= (double)now_s) {
        snprintf(why, whylen, "token expired");
        goto out;
    }
    if (e > (double)(now_s + 300)) {
        snprintf(why, whylen, "exp more than 5 minutes ahead");
        goto out;
    }
    rc = 0;
out:
    ERR_clear_error(); /* the thread's OpenSSL error queue must not grow */
    EVP_MD_CTX_free(md);
    json_decref(jh);
    json_decref(jp);
    free(hdr);
    free(pay);
    free(sig);
    return rc;
}
