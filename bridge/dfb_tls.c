/*  dfb_tls: loading the bot certificate (PEM or PKCS#12) and checking the
    trust store with OpenSSL 3 (see dfb_tls.h). Everything is converted to
    PEM in memory so that libcurl gets one format (CURLOPT_SSLCERT_BLOB). */
#include "dfb_tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include "dfb_secret.h"

#define DFB_TLS_MAX_FILE (1 << 20) /* a certificate file above 1 MiB is not one */

/*  Reads a whole (small) file; caller frees (and cleanses: it may hold a key). */
static unsigned char *
read_file(const char *path, size_t *len, char *why, size_t whylen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, whylen, "cannot read '%s': %s", path, strerror(errno));
        return NULL;
    }
    unsigned char *buf = malloc(DFB_TLS_MAX_FILE + 1);
    size_t n = buf ? fread(buf, 1, DFB_TLS_MAX_FILE + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad || n == 0 || n > DFB_TLS_MAX_FILE) {
        snprintf(why, whylen, "cannot read '%s': %s", path,
                 !buf     ? "out of memory"
                 : bad    ? "read error"
                 : n == 0 ? "empty"
                          : "over 1 MiB");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/*  PEM text of a BIO's content, malloc'd and NUL-terminated. */
static char *
bio_text(BIO *b, size_t *len)
{
    char *data;
    long n = BIO_get_mem_data(b, &data);
    if (n <= 0)
        return NULL;
    char *out = malloc((size_t)n + 1);
    if (!out)
        return NULL;
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    *len = (size_t)n;
    return out;
}

static int
is_pem(const unsigned char *buf, size_t len)
{
    static const char mark[] = "-----BEGIN ";
    for (size_t i = 0; i + sizeof mark - 1 <= len; i++)
        if (memcmp(buf + i, mark, sizeof mark - 1) == 0)
            return 1;
    return 0;
}

/*  PEM text with a certificate and a key (the key may be encrypted). */
static int
parse_pem(const unsigned char *buf, size_t len, const char *password, X509 **cert,
          STACK_OF(X509) * *chain, EVP_PKEY **key, char *why, size_t whylen)
{
    BIO *b = BIO_new_mem_buf(buf, (int)len);
    *cert = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!*cert) {
        snprintf(why, whylen, "no PEM CERTIFICATE block");
        return -1;
    }
    /* Every further certificate is chain. */
    *chain = sk_X509_new_null();
    b = BIO_new_mem_buf(buf, (int)len);
    X509 *x;
    int first = 1;
    while (b && *chain && (x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        if (first)
            X509_free(x); /* the leaf, already taken */
        else if (!sk_X509_push(*chain, x))
            X509_free(x);
        first = 0;
    }
    BIO_free(b);
    ERR_clear_error();
    /* An encrypted key would prompt on the terminal without a password:
       "" makes OpenSSL fail instead. */
    b = BIO_new_mem_buf(buf, (int)len);
    *key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, (void *)(password ? password : "")) : NULL;
    BIO_free(b);
    if (!*key) {
        snprintf(why, whylen, "no usable PEM private key next to the certificate (%s)",
                 password ? "wrong bot.certificate.password?"
                          : "an encrypted key needs bot.certificate.password");
        return -1;
    }
    return 0;
}

static int
parse_p12(const unsigned char *buf, size_t len, const char *password, X509 **cert,
          STACK_OF(X509) * *chain, EVP_PKEY **key, char *why, size_t whylen)
{
    const unsigned char *p = buf;
    PKCS12 *p12 = d2i_PKCS12(NULL, &p, (long)len);
    if (!p12) {
        snprintf(why, whylen, "neither PEM nor PKCS#12");
        return -1;
    }
    int ok = PKCS12_parse(p12, password ? password : "", key, cert, chain) == 1;
    PKCS12_free(p12);
    if (!ok || !*cert || !*key) {
        snprintf(why, whylen, "cannot open the PKCS#12 file (%s)",
                 ok ? "no certificate or no key in it"
                    : "wrong or missing bot.certificate.password?");
        return -1;
    }
    return 0;
}

/*  Base64 (Java's byte[] content) to bytes; NULL if not base64. */
static unsigned char *
unbase64(const char *text, size_t *len)
{
    size_t n = strlen(text);
    unsigned char *out = malloc(n + 1);
    char *clean = malloc(n + 1);
    if (!out || !clean) {
        free(out);
        free(clean);
        return NULL;
    }
    size_t m = 0, pad = 0;
    for (size_t i = 0; i < n; i++)
        if (text[i] != '\n' && text[i] != '\r' && text[i] != ' ' && text[i] != '\t')
            clean[m++] = text[i];
    clean[m] = '\0';
    if (m == 0 || m % 4 != 0) {
        free(out);
        free(clean);
        return NULL;
    }
    pad = (clean[m - 1] == '=') + (m > 1 && clean[m - 2] == '=');
    int k = EVP_DecodeBlock(out, (unsigned char *)clean, (int)m);
    dfb_secret_free(clean, m); /* the PKCS#12 (its key) in base64 */
    if (k < 0 || (size_t)k < pad) {
        dfb_secret_free(out, n + 1);
        return NULL;
    }
    *len = (size_t)k - pad;
    return out;
}

dfb_tls_identity_t *
dfb_tls_identity_load(const char *path, const char *content, const char *password, const char *key,
                      int strict, char *err, size_t errlen)
{
    char why[256] = "";
    size_t len = 0;
    unsigned char *buf = NULL;
    int pem = 0;
    if (path) {
        /* the certificate's file holds its key: a secret file, read without
           stdio copies and wiped below */
        buf = (unsigned char *)dfb_secret_read(path, key, strict, DFB_TLS_MAX_FILE, &len, err,
                                               errlen);
        if (!buf)
            return NULL; /* err says why */
        if (len == 0)
            snprintf(why, sizeof why, "cannot read '%s': empty", path);
        pem = is_pem(buf, len);
    } else if (content) {
        len = strlen(content);
        pem = is_pem((const unsigned char *)content, len);
        buf = pem ? (unsigned char *)strdup(content) : unbase64(content, &len);
        if (!buf)
            snprintf(why, sizeof why, "neither PEM text nor base64 PKCS#12");
    } else {
        snprintf(why, sizeof why, "required");
    }
    X509 *cert = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *pkey = NULL;
    dfb_tls_identity_t *self = NULL;
    BIO *cb = NULL, *kb = NULL;
    if (!buf || why[0])
        goto done;
    int rc = pem ? parse_pem(buf, len, password, &cert, &chain, &pkey, why, sizeof why)
                 : parse_p12(buf, len, password, &cert, &chain, &pkey, why, sizeof why);
    if (rc != 0)
        goto done;
    if (X509_check_private_key(cert, pkey) != 1) {
        snprintf(why, sizeof why, "the private key does not match the certificate");
        goto done;
    }
    self = calloc(1, sizeof *self);
    cb = BIO_new(BIO_s_mem());
    kb = BIO_new(BIO_s_mem());
    int ok = self && cb && kb && PEM_write_bio_X509(cb, cert) == 1;
    for (int i = 0; ok && chain && i < sk_X509_num(chain); i++)
        ok = PEM_write_bio_X509(cb, sk_X509_value(chain, i)) == 1;
    ok = ok && PEM_write_bio_PrivateKey(kb, pkey, NULL, NULL, 0, NULL, NULL) == 1;
    if (ok) {
        self->cert_pem = bio_text(cb, &self->cert_len);
        self->key_pem = bio_text(kb, &self->key_len);
    }
    if (!ok || !self->cert_pem || !self->key_pem) {
        snprintf(why, sizeof why, "cannot convert the certificate (out of memory?)");
        dfb_tls_identity_destroy(&self);
        goto done;
    }
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, self->subject_cn,
                                  sizeof self->subject_cn) < 0)
        self->subject_cn[0] = '\0';
    /* not_after as time_t: the difference from the epoch. */
    int days = 0, secs = 0;
    ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
    if (epoch && ASN1_TIME_diff(&days, &secs, epoch, X509_get0_notAfter(cert)) == 1)
        self->not_after = (time_t)days * 86400 + secs;
    ASN1_TIME_free(epoch);
done:
    if (!self)
        snprintf(err, errlen, "config: %s: %s", key, why);
    if (cb) {
        /* the key's PEM text passed through this buffer */
        BIO_free(cb);
    }
    if (kb) {
        char *data;
        long n = BIO_get_mem_data(kb, &data);
        if (n > 0)
            OPENSSL_cleanse(data, (size_t)n);
        BIO_free(kb);
    }
    X509_free(cert);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(pkey);
    if (buf) {
        OPENSSL_cleanse(buf, len);
        free(buf);
    }
    ERR_clear_error();
    return self;
}

void
dfb_tls_identity_destroy(dfb_tls_identity_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_tls_identity_t *self = *self_p;
    free(self->cert_pem);
    if (self->key_pem) {
        OPENSSL_cleanse(self->key_pem, self->key_len);
        free(self->key_pem);
    }
    free(self);
    *self_p = NULL;
}

int
dfb_tls_check_ca_bundle(const char *path, char *err, size_t errlen)
{
    char why[256];
    size_t len;
    unsigned char *buf = read_file(path, &len, why, sizeof why);
    if (!buf) {
        snprintf(err, errlen, "config: ssl.trustStore.path: %s", why);
        return -1;
    }
    BIO *b = BIO_new_mem_buf(buf, (int)len);
    STACK_OF(X509_INFO) *infos = b ? PEM_X509_INFO_read_bio(b, NULL, NULL, NULL) : NULL;
    int n = 0;
    for (int i = 0; infos && i < sk_X509_INFO_num(infos); i++)
        if (sk_X509_INFO_value(infos, i)->x509)
            n++;
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    BIO_free(b);
    free(buf);
    ERR_clear_error();
    if (n == 0) {
        snprintf(err, errlen,
                 "config: ssl.trustStore.path: '%s' holds no PEM certificate (a Java JKS or "
                 "PKCS#12 trust store must be exported to PEM: keytool -exportcert -rfc)",
                 path);
        return -1;
    }
    return n;
}

/* ---- self-test ------------------------------------------------------------ */

#include <sys/stat.h>

/* The project's one CHECK macro set (tests/include/df_check.h). */
#include "df_check.h"

static char *
slurp_text(const char *path)
{
    size_t len;
    char why[256];
    return (char *)read_file(path, &len, why, sizeof why);
}

/*  Loads and checks that the identity is usable and named `cn`. */
static void
expect_ok(const char *path, const char *content, const char *password, const char *cn, int verbose)
{
    char err[512] = "";
    dfb_tls_identity_t *id =
        dfb_tls_identity_load(path, content, password, "bot.certificate.path", 0, err, sizeof err);
    if (verbose)
        printf("  %s -> %s\n", path ? path : "(content)", id ? id->subject_cn : err);
    CHECK(id);
    if (!id)
        return;
    CHECK(strcmp(id->subject_cn, cn) == 0);
    CHECK(strncmp(id->cert_pem, "-----BEGIN CERTIFICATE-----", 27) == 0);
    CHECK(strlen(id->cert_pem) == id->cert_len);
    CHECK(strstr(id->key_pem, "-----BEGIN PRIVATE KEY-----") == id->key_pem); /* unencrypted */
    CHECK(id->not_after > time(NULL) + 86400 * 300);                          /* -days 365 */
    dfb_tls_identity_destroy(&id);
    CHECK(!id);
}

static void
expect_err(const char *path, const char *content, const char *password, const char *want,
           int verbose)
{
    char err[512] = "";
    dfb_tls_identity_t *id =
        dfb_tls_identity_load(path, content, password, "bot.certificate.path", 0, err, sizeof err);
    if (verbose)
        printf("  expect error: %s\n", err);
    CHECK(!id);
    CHECK(strstr(err, want));
    dfb_tls_identity_destroy(&id);
}

int
dfb_tls_test(int verbose)
{
    df_check_failures = 0;
    char dir[] = "/tmp/dfb_tls_test_XXXXXX";
    if (!mkdtemp(dir)) {
        printf("FAIL mkdtemp\n");
        return 1;
    }
    char cmd[4096];
    snprintf(
        cmd, sizeof cmd,
        "cd %s && "
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 365 "
        "-subj /CN=dfb-test-ca 2>/dev/null && "
        "openssl req -newkey rsa:2048 -nodes -keyout bot.key -out bot.csr -subj /CN=tls-bot "
        "2>/dev/null && "
        "openssl x509 -req -in bot.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out bot.crt "
        "-days 365 2>/dev/null && "
        "cat bot.crt bot.key > bot.pem && cat bot.key bot.crt ca.pem > keyfirst.pem && "
        "openssl pkcs8 -topk8 -in bot.key -passout pass:s3cret -out bot.enc.key 2>/dev/null && "
        "cat bot.crt bot.enc.key > enc.pem && "
        "openssl pkcs12 -export -in bot.crt -inkey bot.key -certfile ca.pem -passout "
        "pass:p12pass -out bot.p12 2>/dev/null && "
        "base64 -w 64 bot.p12 > bot.p12.b64 && "
        "openssl req -newkey rsa:2048 -nodes -keyout other.key -out other.csr -subj /CN=x "
        "2>/dev/null && cat bot.crt other.key > mismatch.pem",
        dir);
    if (system(cmd) != 0) {
        printf("FAIL openssl could not generate the test certificates\n");
        return 1;
    }
    char p[512], q[512];
    /* PEM: certificate then key, key then certificate (+ chain), encrypted key. */
    snprintf(p, sizeof p, "%s/bot.pem", dir);
    expect_ok(p, NULL, NULL, "tls-bot", verbose);
    {
        /* secrets: the certificate file holds the key: a secret file. Group-
           or world-readable: refused under strict (the key named), else
           loaded; 0600: loaded under strict. */
        char err[512] = "";
        CHECK(chmod(p, 0644) == 0);
        dfb_tls_identity_t *id =
            dfb_tls_identity_load(p, NULL, NULL, "bot.certificate.path", 1, err, sizeof err);
        if (verbose)
            printf("  0644 strict -> %s\n", id ? "loaded" : err);
        CHECK(!id && strstr(err, "config: bot.certificate.path: ") == err &&
              strstr(err, "(mode 0644): refused"));
        expect_ok(p, NULL, NULL, "tls-bot", verbose);
        CHECK(chmod(p, 0600) == 0);
        id = dfb_tls_identity_load(p, NULL, NULL, "bot.certificate.path", 1, err, sizeof err);
        CHECK(id);
        dfb_tls_identity_destroy(&id);
    }
    snprintf(p, sizeof p, "%s/keyfirst.pem", dir);
    expect_ok(p, NULL, NULL, "tls-bot", verbose);
    {
        char err[256];
        dfb_tls_identity_t *id =
            dfb_tls_identity_load(p, NULL, NULL, "bot.certificate.path", 0, err, sizeof err);
        /* the chain (the CA) follows the leaf */
        CHECK(id && strstr(id->cert_pem + 27, "-----BEGIN CERTIFICATE-----"));
        dfb_tls_identity_destroy(&id);
    }
    snprintf(p, sizeof p, "%s/enc.pem", dir);
    expect_ok(p, NULL, "s3cret", "tls-bot", verbose);
    expect_err(p, NULL, NULL, "an encrypted key needs bot.certificate.password", verbose);
    expect_err(p, NULL, "wrong", "wrong bot.certificate.password?", verbose);
    /* PEM text as content. */
    snprintf(p, sizeof p, "%s/bot.pem", dir);
    char *text = slurp_text(p);
    CHECK(text);
    if (text)
        expect_ok(NULL, text, NULL, "tls-bot", verbose);
    free(text);
    /* PKCS#12 from a path, and base64 as content (Java). */
    snprintf(p, sizeof p, "%s/bot.p12", dir);
    expect_ok(p, NULL, "p12pass", "tls-bot", verbose);
    expect_err(p, NULL, "nope", "wrong or missing bot.certificate.password?", verbose);
    snprintf(q, sizeof q, "%s/bot.p12.b64", dir);
    text = slurp_text(q);
    CHECK(text);
    if (text)
        expect_ok(NULL, text, "p12pass", "tls-bot", verbose);
    free(text);
    /* Errors name the key and say why. */
    snprintf(p, sizeof p, "%s/mismatch.pem", dir);
    expect_err(p, NULL, NULL, "config: bot.certificate.path: the private key does not match",
               verbose);
    snprintf(p, sizeof p, "%s/bot.crt", dir);
    expect_err(p, NULL, NULL, "no usable PEM private key", verbose);
    snprintf(p, sizeof p, "%s/bot.key", dir);
    expect_err(p, NULL, NULL, "no PEM CERTIFICATE block", verbose);
    expect_err("/nonexistent/bot.pem", NULL, NULL, "cannot read '/nonexistent/bot.pem'", verbose);
    expect_err(NULL, "not base64 at all!", NULL, "neither PEM text nor base64 PKCS#12", verbose);
    snprintf(p, sizeof p, "%s/bot.csr", dir); /* PEM, but no certificate */
    expect_err(p, NULL, NULL, "no PEM CERTIFICATE block", verbose);

    /* Trust store. */
    char err[512];
    snprintf(p, sizeof p, "%s/ca.pem", dir);
    CHECK(dfb_tls_check_ca_bundle(p, err, sizeof err) == 1);
    snprintf(p, sizeof p, "%s/keyfirst.pem", dir);
    CHECK(dfb_tls_check_ca_bundle(p, err, sizeof err) == 2);
    snprintf(p, sizeof p, "%s/bot.p12", dir);
    CHECK(dfb_tls_check_ca_bundle(p, err, sizeof err) == -1);
    CHECK(strstr(err, "config: ssl.trustStore.path: '") &&
           strstr(err, "holds no PEM certificate"));
    CHECK(dfb_tls_check_ca_bundle("/nonexistent/ca.pem", err, sizeof err) == -1);
    CHECK(strstr(err, "config: ssl.trustStore.path: cannot read"));
    if (verbose)
        printf("  last error: %s\n", err);

    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        df_check_failures++;
    return df_check_failures;
}
