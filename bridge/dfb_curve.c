/*  dfb_curve: CURVE keys and the loopback rule at start (see dfb_curve.h). */
#include "dfb_curve.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "dfb_log.h"
#include "dfb_secret.h"
#include "dfz_cert.h"

int
dfb_endpoint_is_loopback(const char *ep)
{
    if (strncmp(ep, "ipc://", 6) == 0 || strncmp(ep, "inproc://", 9) == 0)
        return 1;
    if (strncmp(ep, "tcp://", 6) != 0)
        return 0;
    const char *h = ep + 6;
    char host[256];
    size_t n;
    if (*h == '[') { /* tcp://[::1]:port */
        const char *e = strchr(h, ']');
        if (!e || e[1] != ':')
            return 0;
        n = (size_t)(e - h - 1);
        h++;
    } else {
        const char *e = strrchr(h, ':');
        if (!e)
            return 0;
        n = (size_t)(e - h);
    }
    if (n == 0 || n >= sizeof host)
        return 0;
    memcpy(host, h, n);
    host[n] = '\0';
    if (strchr(host, ';')) /* source;destination is a connect form, never ours */
        return 0;
    if (strcasecmp(host, "localhost") == 0)
        return 1;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        if (memcmp(&a6, &in6addr_loopback, sizeof a6) == 0)
            return 1;
        /* ::ffff:127.x.y.z is IPv4 loopback too */
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        return memcmp(a6.s6_addr, mapped, 12) == 0 && a6.s6_addr[12] == 127;
    }
    return 0;
}

void
dfb_curve_wipe(dfb_curve_t *curve)
{
    if (curve)
        explicit_bzero(curve, sizeof *curve);
}

static int
check_endpoint(const dfb_config_t *cfg, const char *key, const char *ep, char *err, size_t errlen)
{
    if (!ep || !*ep || dfb_endpoint_is_loopback(ep))
        return 0;
    if (cfg->curve_secret_key)
        return 0;
    if (cfg->insecure) {
        dfb_warn("config: bridge.insecure: true: %s '%s' listens beyond loopback without CURVE: "
                 "anyone who reaches it reads every event in plain text",
                 key, ep);
        return 0;
    }
    snprintf(err, errlen,
             "config: %s: '%s' listens beyond loopback without CURVE; set bridge.curve.secretKey "
             "and bridge.curve.clientsDir, use a loopback address, or set bridge.insecure: true "
             "to accept plain text on the network",
             key, ep);
    return -1;
}

int
dfb_curve_setup(const dfb_config_t *cfg, dfb_curve_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (cfg->curve_secret_key) {
        char e[512];
        dfz_cert_t cert;
        /* one open: the mode checked on the file read (dfb_secret), parsed
           from memory, the text wiped */
        size_t len = 0;
        char *text = dfb_secret_read(cfg->curve_secret_key, "bridge.curve.secretKey",
                                     cfg->strict_permissions, DFZ_CERT_MAX_BYTES, &len, err, errlen);
        if (!text)
            return -1;
        int rc = dfz_cert_parse(text, len, cfg->curve_secret_key, &cert, e, sizeof e);
        dfb_secret_free(text, len);
        if (rc == 0 && !cert.has_secret) {
            snprintf(e, sizeof e,
                     "%s: holds a public certificate where a secret one is needed (no secret-key)",
                     cfg->curve_secret_key);
            dfz_cert_wipe(&cert);
            rc = -1;
        }
        if (rc != 0) {
            snprintf(err, errlen, "config: bridge.curve.secretKey: %s", e);
            return -1;
        }
        memcpy(out->public_key, cert.public_key, 32);
        memcpy(out->secret_key, cert.secret_key, 32);
        dfz_cert_wipe(&cert);
        dfz_cert_fingerprint(out->public_key, out->fingerprint);
        struct stat st;
        const char *dir = cfg->curve_clients_dir, *why = NULL;
        DIR *d = NULL;
        if (stat(dir, &st) != 0)
            why = strerror(errno);
        else if (!S_ISDIR(st.st_mode))
            why = "not a directory";
        else if (!(d = opendir(dir)))
            why = strerror(errno);
        if (why) {
            snprintf(err, errlen, "config: bridge.curve.clientsDir: %s: %s", dir, why);
            dfb_curve_wipe(out);
            return -1;
        }
        closedir(d);
        out->enabled = 1;
        out->clients_dir = dir;
    }
    if (check_endpoint(cfg, "bridge.publish", cfg->publish, err, errlen) != 0 ||
        check_endpoint(cfg, "bridge.replay", cfg->replay, err, errlen) != 0 ||
        check_endpoint(cfg, "bridge.commands", cfg->commands, err, errlen) != 0) {
        dfb_curve_wipe(out);
        return -1;
    }
    return 0;
}
