/*  dfb_feedfile: the v1 datafeed id file (see dfb_feedfile.h). A restart
    reads the id back and keeps reading the same v1 feed; a bad file is
    never fatal, it only means "create a new feed". */
#include "dfb_feedfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DFB_FEEDFILE_NAME "datafeed.id"
#define DFB_FEEDFILE_MAX 4096 /* a longer file is not ours */

int
dfb_feedfile_path(const char *id_file_path, char *buf, size_t len)
{
    const char *p = id_file_path && *id_file_path ? id_file_path : ".";
    struct stat st;
    size_t n = strlen(p);
    int n_out;
    if ((stat(p, &st) == 0 && S_ISDIR(st.st_mode)) || p[n - 1] == '/')
        n_out = snprintf(buf, len, "%s%s%s", p, p[n - 1] == '/' ? "" : "/", DFB_FEEDFILE_NAME);
    else
        n_out = snprintf(buf, len, "%s", p);
    return n_out < 0 || (size_t)n_out >= len ? -1 : 0;
}

/*  Same rule as the loop's: ids go into URL paths unescaped. */
static int
id_ok(const char *id, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.' || c == '~'))
            return 0;
    }
    return len > 0;
}

int
dfb_feedfile_read(const char *path, char *id, size_t cap, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    FILE *f = fopen(path, "rb");
    if (!f) {
        *why = errno == ENOENT ? "no file" : "unreadable";
        return -1;
    }
    char line[DFB_FEEDFILE_MAX + 1];
    size_t n = fread(line, 1, DFB_FEEDFILE_MAX, f);
    int too_long = n == DFB_FEEDFILE_MAX && fgetc(f) != EOF;
    fclose(f);
    line[n] = '\0';
    if (too_long) {
        *why = "too long";
        return -1;
    }
    line[strcspn(line, "\r\n")] = '\0'; /* the first line only */
    if (!line[0]) {
        *why = "empty";
        return -1;
    }
    char *at = strchr(line, '@');
    if (!at) {
        *why = "no '@'";
        return -1;
    }
    size_t len = (size_t)(at - line);
    if (len == 0) {
        *why = "empty id";
        return -1;
    }
    if (!id_ok(line, len) || len >= cap) {
        *why = "invalid id";
        return -1;
    }
    memcpy(id, line, len);
    id[len] = '\0';
    *why = "ok";
    return 0;
}

int
dfb_feedfile_write(const char *path, const char *id, const char *agent_base)
{
    size_t n = strlen(path);
    char *tmp = malloc(n + 32);
    if (!tmp) {
        errno = ENOMEM;
        return -1;
    }
    snprintf(tmp, n + 32, "%s.tmpXXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        free(tmp);
        return -1;
    }
    /* Readable like a file written by the BDK (mkstemp makes it 0600). */
    fchmod(fd, 0644);
    FILE *f = fdopen(fd, "wb");
    int rc = -1;
    if (f) {
        int ok = fprintf(f, "%s@%s\n", id, agent_base) > 0;
        ok = fflush(f) == 0 && ok;
        ok = fsync(fileno(f)) == 0 && ok;
        ok = fclose(f) == 0 && ok;
        if (ok && rename(tmp, path) == 0)
            rc = 0;
    } else {
        close(fd);
    }
    if (rc != 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
    }
    free(tmp);
    return rc;
}

/* ---- self-test ------------------------------------------------------------ */

static int
write_raw(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

int
dfb_feedfile_test(int verbose)
{
    int fails = 0;
    char dir[] = "/tmp/dfb_feedfile_XXXXXX";
    if (!mkdtemp(dir)) {
        printf("FAIL mkdtemp\n");
        return 1;
    }
    char path[512], file[600], buf[256];
    /* A folder gets datafeed.id inside it; a file path is used as is. */
    if (dfb_feedfile_path(dir, path, sizeof path) != 0 ||
        snprintf(buf, sizeof buf, "%s/datafeed.id", dir) < 0 || strcmp(path, buf) != 0) {
        printf("FAIL folder path: %s\n", path);
        fails++;
    }
    snprintf(file, sizeof file, "%s/custom.id", dir);
    if (dfb_feedfile_path(file, path, sizeof path) != 0 || strcmp(path, file) != 0) {
        printf("FAIL file path: %s\n", path);
        fails++;
    }
    if (dfb_feedfile_path(".", path, sizeof path) != 0 || strcmp(path, "./datafeed.id") != 0) {
        printf("FAIL default path: %s\n", path);
        fails++;
    }
    if (dfb_feedfile_path("", path, sizeof path) != 0 || strcmp(path, "./datafeed.id") != 0) {
        printf("FAIL empty path: %s\n", path);
        fails++;
    }
    if (dfb_feedfile_path(dir, path, 8) != -1) {
        printf("FAIL small buffer accepted\n");
        fails++;
    }
    /* Contents: the BDK test vectors and the bad cases. */
    static const struct {
        const char *text;
        const char *want; /* NULL = "create" */
    } cases[] = {
        {"8e7c8672-220@https://acme.symphony.com:443", "8e7c8672-220"},
        {"test-id@https://devx1.symphony.com:443\n", "test-id"},
        {"abc@", "abc"},                  /* Python BDK writes "<id>@" */
        {"abc@host@more\nsecond", "abc"}, /* the first '@' of the first line */
        {"abc@x\r\n", "abc"},
        {"", NULL},
        {"\n", NULL},
        {"abc", NULL},
        {"@https://host", NULL},
        {"a/b@host", NULL},
        {"a b@host", NULL},
        {"\nabc@host", NULL},
    };
    snprintf(path, sizeof path, "%s/datafeed.id", dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = NULL;
        write_raw(path, cases[i].text);
        int rc = dfb_feedfile_read(path, buf, sizeof buf, &why);
        if (verbose)
            printf("  '%.30s' -> %s (%s)\n", cases[i].text, rc == 0 ? buf : "create", why);
        if (cases[i].want ? rc != 0 || strcmp(buf, cases[i].want) != 0 : rc != -1) {
            printf("FAIL read case %zu\n", i);
            fails++;
        }
    }
    /* Missing file. */
    unlink(path);
    const char *why = NULL;
    if (dfb_feedfile_read(path, buf, sizeof buf, &why) != -1 || strcmp(why, "no file") != 0) {
        printf("FAIL missing file\n");
        fails++;
    }
    /* An id longer than the caller's buffer is refused, not cut. */
    write_raw(path, "0123456789abcdef@h");
    if (dfb_feedfile_read(path, buf, 8, NULL) != -1) {
        printf("FAIL long id accepted\n");
        fails++;
    }
    /* Write, read back, overwrite; no temp file left behind. */
    if (dfb_feedfile_write(path, "feed1", "https://a:443") != 0 ||
        dfb_feedfile_read(path, buf, sizeof buf, NULL) != 0 || strcmp(buf, "feed1") != 0) {
        printf("FAIL write/read\n");
        fails++;
    }
    if (dfb_feedfile_write(path, "feed2", "https://a:443/ctx") != 0 ||
        dfb_feedfile_read(path, buf, sizeof buf, NULL) != 0 || strcmp(buf, "feed2") != 0) {
        printf("FAIL overwrite\n");
        fails++;
    }
    FILE *f = fopen(path, "rb");
    char line[128] = "";
    if (!f || !fgets(line, sizeof line, f) || strcmp(line, "feed2@https://a:443/ctx\n") != 0) {
        printf("FAIL file text '%s'\n", line);
        fails++;
    }
    if (f)
        fclose(f);
    /* A folder we cannot write into: an error, nothing left. */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/no/such/dir/datafeed.id", dir);
    if (dfb_feedfile_write(bad, "x", "y") != -1) {
        printf("FAIL write into a missing folder\n");
        fails++;
    }
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -c tmp >/dev/null && exit 1; rm -rf '%s'", dir,
             dir);
    if (system(cmd) != 0) {
        printf("FAIL a temp file was left in %s\n", dir);
        fails++;
    }
    return fails;
}
