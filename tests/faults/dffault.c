/*  dffault: an LD_PRELOAD shim that makes file-system calls fail on demand,
    for the disk-fault tests (ENOSPC, EIO, ... without a real broken disk).

    DFFAULT_CTL names a control file, re-read whenever it changes (its
    inode, mtime or size: replace it by rename for changes closer together
    than the file system's timestamps), so a test switches faults on and
    off while the program runs. One rule a line; the first rule that matches a call decides:

        <call> <errno> [<path substring> [<count>]]

      call    write writev pwrite fdatasync fsync rename open ftruncate
              unlink mkdir, or * for all of them
      errno   ENOSPC EIO EDQUOT EROFS EACCES EMFILE, or a number; or
              DELAY:<ms>: the call waits that long, then runs (a slow disk);
              or SHORT:<n>: write/writev/pwrite write at most n bytes (a
              short write, as on a disk filling up); other calls run
      path    a substring of the file's path (for calls on a descriptor,
              the path /proc/self/fd/N names); * or omitted = any file
      count   fail this many matching calls, then let them pass (until the
              control file changes); omitted or -1 = every one

    '#' starts a comment. Calls on sockets, pipes and the tty are never
    failed (only paths that start with '/'), and neither is anything under
    /proc, /sys or /dev. With DFFAULT_LOG=1 every failure injected is
    written to stderr as "dffault: <call> <path>: <errno>". stdio (fopen,
    fwrite) goes through glibc-internal calls this shim does not see.

    Test-only: never linked into a product binary. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_RULES 32

typedef struct {
    char call[16];
    int err;
    char path[256];
    long count;    /* remaining failures, -1 = unlimited */
    long delay_ms; /* > 0: a DELAY rule (err is 0) */
    long short_n;  /* > 0: a SHORT rule (err is 0) */
} rule_t;

static pthread_mutex_t s_mu = PTHREAD_MUTEX_INITIALIZER;
static rule_t s_rules[MAX_RULES];
static int s_nrules;
static struct timespec s_mtime;
static off_t s_size = -1;
static ino_t s_ino;

static const struct {
    const char *name;
    int err;
} s_errnos[] = {{"ENOSPC", ENOSPC}, {"EIO", EIO},       {"EDQUOT", EDQUOT},
                {"EROFS", EROFS},   {"EACCES", EACCES}, {"EMFILE", EMFILE}};

static int
parse_errno(const char *s)
{
    for (size_t i = 0; i < sizeof s_errnos / sizeof s_errnos[0]; i++)
        if (strcmp(s, s_errnos[i].name) == 0)
            return s_errnos[i].err;
    int n = atoi(s);
    return n > 0 ? n : EIO;
}

/*  Re-reads the control file when it changed. Caller holds s_mu. Uses raw
    system calls so that nothing here goes through the shim. */
static void
reload_locked(void)
{
    const char *ctl = getenv("DFFAULT_CTL");
    struct stat sb;
    if (!ctl || syscall(SYS_stat, ctl, &sb) != 0) {
        s_nrules = 0;
        s_size = -1;
        return;
    }
    if (sb.st_size == s_size && sb.st_ino == s_ino && sb.st_mtim.tv_sec == s_mtime.tv_sec &&
        sb.st_mtim.tv_nsec == s_mtime.tv_nsec)
        return;
    s_size = sb.st_size;
    s_ino = sb.st_ino;
    s_mtime = sb.st_mtim;
    s_nrules = 0;
    char text[8192];
    int fd = (int)syscall(SYS_openat, AT_FDCWD, ctl, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = syscall(SYS_read, fd, text, sizeof text - 1);
    syscall(SYS_close, fd);
    if (n <= 0)
        return;
    text[n] = '\0';
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && s_nrules < MAX_RULES;
         line = strtok_r(NULL, "\n", &save)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char call[16], err[32], path[256] = "*";
        long count = -1;
        int k = sscanf(line, "%15s %31s %255s %ld", call, err, path, &count);
        if (k < 2)
            continue;
        rule_t *r = &s_rules[s_nrules++];
        snprintf(r->call, sizeof r->call, "%s", call);
        r->delay_ms = strncmp(err, "DELAY:", 6) == 0 ? atol(err + 6) : 0;
        r->short_n = strncmp(err, "SHORT:", 6) == 0 ? atol(err + 6) : 0;
        r->err = r->delay_ms > 0 || r->short_n > 0 ? 0 : parse_errno(err);
        snprintf(r->path, sizeof r->path, "%s", path);
        r->count = count;
    }
}

/*  0 when the call proceeds, or the errno to fail it with; *short_n (when
    not NULL) gets a SHORT rule's byte limit (0 = none). */
static int
decide_short(const char *call, const char *path, long *short_n)
{
    if (short_n)
        *short_n = 0;
    if (!path || path[0] != '/' || strncmp(path, "/proc/", 6) == 0 ||
        strncmp(path, "/sys/", 5) == 0 || strncmp(path, "/dev/", 5) == 0)
        return 0;
    int err = 0;
    long delay_ms = 0;
    pthread_mutex_lock(&s_mu);
    reload_locked();
    for (int i = 0; i < s_nrules; i++) {
        rule_t *r = &s_rules[i];
        if (strcmp(r->call, "*") != 0 && strcmp(r->call, call) != 0)
            continue;
        if (strcmp(r->path, "*") != 0 && !strstr(path, r->path))
            continue;
        if (r->count == 0)
            continue;
        if (r->count > 0)
            r->count--;
        err = r->err;
        delay_ms = r->delay_ms;
        if (short_n)
            *short_n = r->short_n;
        break;
    }
    pthread_mutex_unlock(&s_mu);
    if (delay_ms > 0) {
        struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        return 0;
    }
    if (err) {
        const char *log = getenv("DFFAULT_LOG");
        if (log && strcmp(log, "1") == 0) {
            char msg[512];
            int m = snprintf(msg, sizeof msg, "dffault: %s %s: %s\n", call, path, strerror(err));
            if (m > 0)
                syscall(SYS_write, 2, msg, (size_t)(m < (int)sizeof msg ? m : (int)sizeof msg - 1));
        }
    }
    return err;
}

static int
decide(const char *call, const char *path)
{
    return decide_short(call, path, NULL);
}

/*  decide() for a path argument: a relative path is made absolute first. */
static int
decide_path(const char *call, const char *path)
{
    if (!path || path[0] == '/')
        return decide(call, path);
    char abs[4096];
    if (syscall(SYS_getcwd, abs, sizeof abs - 300) <= 0)
        return 0;
    size_t n = strlen(abs);
    snprintf(abs + n, sizeof abs - n, "/%s", path);
    return decide(call, abs);
}

static int
decide_fd_short(const char *call, int fd, long *short_n)
{
    char link[64], path[4096];
    if (short_n)
        *short_n = 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = syscall(SYS_readlink, link, path, sizeof path - 1);
    if (n <= 0)
        return 0;
    path[n] = '\0';
    return decide_short(call, path, short_n);
}

static int
decide_fd(const char *call, int fd)
{
    return decide_fd_short(call, fd, NULL);
}

/*  The next definition of name (glibc's), looked up once. */
#define REAL(name)                                                                                 \
    static __typeof__(&name) real_##name;                                                          \
    if (!real_##name)                                                                              \
        *(void **)&real_##name = dlsym(RTLD_NEXT, #name);

#define FAIL_IF(e)                                                                                 \
    do {                                                                                           \
        int e_ = (e);                                                                              \
        if (e_) {                                                                                  \
            errno = e_;                                                                            \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

ssize_t
write(int fd, const void *buf, size_t n)
{
    REAL(write);
    long lim;
    FAIL_IF(decide_fd_short("write", fd, &lim));
    return real_write(fd, buf, lim > 0 && (size_t)lim < n ? (size_t)lim : n);
}

ssize_t
writev(int fd, const struct iovec *iov, int cnt)
{
    REAL(writev);
    REAL(write);
    long lim;
    FAIL_IF(decide_fd_short("writev", fd, &lim));
    if (lim > 0) {
        /* A short write: the first lim bytes of the vector. */
        for (int i = 0; i < cnt; i++)
            if (iov[i].iov_len) {
                size_t n = iov[i].iov_len < (size_t)lim ? iov[i].iov_len : (size_t)lim;
                return real_write(fd, iov[i].iov_base, n);
            }
    }
    return real_writev(fd, iov, cnt);
}

ssize_t
pwrite(int fd, const void *buf, size_t n, off_t off)
{
    REAL(pwrite);
    long lim;
    FAIL_IF(decide_fd_short("pwrite", fd, &lim));
    return real_pwrite(fd, buf, lim > 0 && (size_t)lim < n ? (size_t)lim : n, off);
}

ssize_t
pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    REAL(pwrite64);
    long lim;
    FAIL_IF(decide_fd_short("pwrite", fd, &lim));
    return real_pwrite64(fd, buf, lim > 0 && (size_t)lim < n ? (size_t)lim : n, off);
}

int
fdatasync(int fd)
{
    REAL(fdatasync);
    FAIL_IF(decide_fd("fdatasync", fd));
    return real_fdatasync(fd);
}

int
fsync(int fd)
{
    REAL(fsync);
    FAIL_IF(decide_fd("fsync", fd));
    return real_fsync(fd);
}

int
ftruncate(int fd, off_t len)
{
    REAL(ftruncate);
    FAIL_IF(decide_fd("ftruncate", fd));
    return real_ftruncate(fd, len);
}

int
ftruncate64(int fd, off_t len)
{
    REAL(ftruncate64);
    FAIL_IF(decide_fd("ftruncate", fd));
    return real_ftruncate64(fd, len);
}

int
rename(const char *from, const char *to)
{
    REAL(rename);
    FAIL_IF(decide_path("rename", to));
    return real_rename(from, to);
}

int
unlink(const char *path)
{
    REAL(unlink);
    FAIL_IF(decide_path("unlink", path));
    return real_unlink(path);
}

int
mkdir(const char *path, mode_t mode)
{
    REAL(mkdir);
    FAIL_IF(decide_path("mkdir", path));
    return real_mkdir(path, mode);
}

/*  open with O_CREAT or a write mode only: reads are never failed, so a
    test can break writing without breaking recovery's reads. */
static int
open_decides(const char *path, int flags)
{
    if (!(flags & (O_CREAT | O_WRONLY | O_RDWR | O_TRUNC)))
        return 0;
    return decide_path("open", path);
}

int
open(const char *path, int flags, ...)
{
    REAL(open);
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    FAIL_IF(open_decides(path, flags));
    return real_open(path, flags, mode);
}

int
open64(const char *path, int flags, ...)
{
    REAL(open64);
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    FAIL_IF(open_decides(path, flags));
    return real_open64(path, flags, mode);
}

int
openat(int dirfd, const char *path, int flags, ...)
{
    REAL(openat);
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    FAIL_IF(open_decides(path, flags));
    return real_openat(dirfd, path, flags, mode);
}
