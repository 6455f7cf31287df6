/*  dfsend: one command through the bridge's command channel (dfc_client),
    for operators and scripts: the args from key=value / key:=json words (as
    httpie) or --json, the reply printed as one JSON line. Exit status: 0 ok,
    1 an error reply (its code on stderr), 2 usage, 3 no reply (timeout). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dfc_tsan.h"
#include "dfconsumer.h"

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: dfsend [--endpoint E] [--curve-server-key K --curve-cert F] [--id ID]\n"
            "              [--timeout MS] [--attempts N] [--attach FILE]... OP\n"
            "              [key=value | key:=json ...] | [--json '{...}']\n"
            "  --endpoint E     the bridge's bridge.commands (default tcp://127.0.0.1:5558)\n"
            "  --curve-server-key K  CURVE: the bridge's public key (its .key file or 40 Z85\n"
            "                   characters); --curve-cert F: this client's .key_secret file\n"
            "  --id ID          the idempotency key (default: a random UUIDv4). Run again with\n"
            "                   the same id: the bridge answers with the recorded outcome\n"
            "  --timeout MS     per attempt (default 10000); --attempts N sends (default 3)\n"
            "  --attach FILE    messages.send/update: an attachment (name = the file's name)\n"
            "  key=value        a string argument; key:=json a typed one (1, true, [1,2], {...})\n"
            "  --json OBJ       every argument as one JSON object\n"
            "Prints the reply as JSON on stdout. Exit 0 ok, 1 error reply (code on stderr),\n"
            "2 usage, 3 no reply.\n"
            "example: dfsend messages.send stream_id=X message='<messageML>hi</messageML>'\n");
}

static unsigned char *
read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            unsigned char *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = p;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    *len = n;
    return buf;
}

/*  --json: the object's members become the root map's (written under a
    throw-away key, then that key's bytes skipped: {"a": {...}} -> {...}). */
static const void *
json_args(const char *json, dfc_args_t **tmp, size_t *len)
{
    *tmp = dfc_args_new();
    if (!*tmp || dfc_args_json(*tmp, "a", json))
        return NULL;
    size_t n;
    const unsigned char *p = dfc_args_data(*tmp, &n);
    /* 0x81 = map of 1, 0xa1 'a' = the key */
    if (!p || n < 4 || p[0] != 0x81 || p[1] != 0xa1 || p[2] != 'a')
        return NULL;
    unsigned char t = p[3];
    if (!((t >= 0x80 && t <= 0x8f) || t == 0xde || t == 0xdf))
        return NULL; /* not an object */
    *len = n - 3;
    return p + 3;
}

int
main(int argc, char **argv)
{
    const char *endpoint = "tcp://127.0.0.1:5558", *server_key = NULL, *cert = NULL, *id = NULL,
               *json = NULL, *op = NULL;
    const char *attach[64];
    int nattach = 0, timeout_ms = 10000, attempts = 3;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        bool val = i + 1 < argc;
        if (!strcmp(a, "--endpoint") && val)
            endpoint = argv[++i];
        else if ((!strcmp(a, "--curve-server-key") || !strcmp(a, "--server-key")) && val)
            server_key = argv[++i];
        else if ((!strcmp(a, "--curve-cert") || !strcmp(a, "--cert")) && val)
            cert = argv[++i];
        else if (!strcmp(a, "--id") && val)
            id = argv[++i];
        else if (!strcmp(a, "--json") && val)
            json = argv[++i];
        else if (!strcmp(a, "--attach") && val && nattach < 64)
            attach[nattach++] = argv[++i];
        else if ((!strcmp(a, "--timeout") || !strcmp(a, "--attempts")) && val) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v <= 0 || v > 86400000) {
                fprintf(stderr, "dfsend: %s takes a positive number\n", a);
                return 2;
            }
            *(!strcmp(a, "--timeout") ? &timeout_ms : &attempts) = (int)v;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "dfsend: unknown option or missing value: %s\n", a);
            usage(stderr);
            return 2;
        } else {
            break;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    op = argv[i++];
    if (json && i < argc) {
        fprintf(stderr, "dfsend: give the args as key=value words or as --json, not both\n");
        return 2;
    }

    int status = 2;
    dfc_args_t *a = NULL, *tmp = NULL;
    dfc_client_t *c = NULL;
    dfc_reply_t *r = NULL;
    unsigned char *files[64] = {NULL};
    const void *args;
    size_t args_len = 0;
    if (json) {
        args = json_args(json, &tmp, &args_len);
        if (!args) {
            fprintf(stderr, "dfsend: --json: not a JSON object\n");
            goto out;
        }
        if (nattach) {
            fprintf(stderr, "dfsend: --attach goes with key=value words, not --json\n");
            goto out;
        }
    } else {
        a = dfc_args_new();
        if (!a)
            goto out;
        for (; i < argc; i++) {
            char *w = argv[i], *eq = strchr(w, '=');
            if (!eq || eq == w) {
                fprintf(stderr, "dfsend: %s: want key=value or key:=json\n", w);
                goto out;
            }
            bool typed = eq > w + 1 && eq[-1] == ':';
            char key[256];
            size_t kl = (size_t)(eq - w) - (typed ? 1 : 0);
            if (kl >= sizeof key) {
                fprintf(stderr, "dfsend: %s: key too long\n", w);
                goto out;
            }
            memcpy(key, w, kl);
            key[kl] = '\0';
            if (typed ? dfc_args_json(a, key, eq + 1) : dfc_args_str(a, key, eq + 1)) {
                fprintf(stderr, "dfsend: %s: %s\n", w,
                        typed ? "the value after := is not JSON" : "cannot be added");
                goto out;
            }
        }
        if (nattach) {
            dfc_args_array_begin(a, "attachments");
            for (int k = 0; k < nattach; k++) {
                size_t n = 0;
                files[k] = read_file(attach[k], &n);
                if (!files[k]) {
                    fprintf(stderr, "dfsend: --attach %s: %s\n", attach[k], strerror(errno));
                    goto out;
                }
                const char *base = strrchr(attach[k], '/');
                dfc_args_map_begin(a, NULL);
                dfc_args_str(a, "name", base ? base + 1 : attach[k]);
                dfc_args_bin(a, "content", files[k], n);
                dfc_args_end(a);
            }
            dfc_args_end(a);
        }
        args = dfc_args_data(a, &args_len);
        if (!args) {
            fprintf(stderr, "dfsend: the args could not be built (a repeated key is fine, a "
                            "key:=json that is not JSON is not)\n");
            goto out;
        }
    }

    dfc_client_config_t cfg = {.endpoint = endpoint,
                               .timeout_ms = timeout_ms,
                               .attempts = attempts,
                               .server_key = server_key,
                               .cert = cert};
    c = dfc_client_new(&cfg); /* says why on stderr (the library's log) */
    if (!c)
        goto out;
    int rc = dfc_client_call(c, op, id, args, args_len, &r);
    if (rc == DFC_ETIMEOUT) {
        fprintf(stderr, "dfsend: no reply from %s after %d attempt(s) of %d ms\n", endpoint,
                attempts, timeout_ms);
        status = 3;
        goto out;
    }
    if (rc) {
        fprintf(stderr, "dfsend: %s (op, --id or args refused before sending)\n", dfc_strerror(rc));
        goto out;
    }
    size_t need = dfc_value_to_json(dfc_reply_value(r), NULL, 0);
    char *line = malloc(need + 1);
    if (!line) {
        fprintf(stderr, "dfsend: out of memory\n");
        goto out;
    }
    dfc_value_to_json(dfc_reply_value(r), line, need + 1);
    printf("%s\n", line);
    fflush(stdout);
    free(line);
    if (dfc_reply_ok(r)) {
        status = 0;
    } else {
        int st = dfc_reply_status(r);
        fprintf(stderr, "%s%s%.0d: %s\n", dfc_reply_error_code(r), st ? " " : "", st,
                dfc_reply_error_message(r) ? dfc_reply_error_message(r) : "");
        status = 1;
    }
out:
    dfc_reply_destroy(&r);
    dfc_client_destroy(&c);
    dfc_args_destroy(&a);
    dfc_args_destroy(&tmp);
    for (int k = 0; k < nattach; k++)
        free(files[k]);
    return status;
}
