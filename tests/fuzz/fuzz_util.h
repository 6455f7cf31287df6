/*  Helpers the fuzz targets share: silence the libraries' logs (a finding
    is reported by the sanitizers on fd 2, which stays open), scratch files
    in memory (memfd) and a scratch folder on tmpfs removed at exit. Set
    DF_FUZZ_LOG=1 to see the logs while debugging an input. */
#ifndef DF_FUZZ_UTIL_H
#define DF_FUZZ_UTIL_H

#define _GNU_SOURCE 1
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/*  The logs write through the FILE stderr: point it at /dev/null (the
    sanitizers and libFuzzer write to fd 2 themselves). */
static inline void
fuzz_quiet(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    if (getenv("DF_FUZZ_LOG"))
        return;
    FILE *null = fopen("/dev/null", "w");
    if (null)
        stderr = null;
}

/*  Writes data to a new memfd; its path (/proc/self/fd/N) into path.
    Returns the fd (close it after use) or -1. */
static inline int
fuzz_memfile(const uint8_t *data, size_t size, char *path, size_t cap)
{
    int fd = memfd_create("dffuzz", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

static inline int
fuzz_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

/*  Removes a folder and everything in it. */
static inline void
fuzz_rmtree(const char *dir)
{
    nftw(dir, fuzz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char fuzz_scratch_dir[256];

static inline void
fuzz_scratch_cleanup(void)
{
    if (fuzz_scratch_dir[0])
        fuzz_rmtree(fuzz_scratch_dir);
}

/*  The process's scratch folder (created once, on /dev/shm when it exists,
    removed at exit), or NULL. */
static inline const char *
fuzz_scratch(void)
{
    if (fuzz_scratch_dir[0])
        return fuzz_scratch_dir;
    struct stat st;
    const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
                           ? "/dev/shm"
                           : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    snprintf(fuzz_scratch_dir, sizeof fuzz_scratch_dir, "%s/dffuzz.XXXXXX", base);
    if (!mkdtemp(fuzz_scratch_dir)) {
        fuzz_scratch_dir[0] = '\0';
        return NULL;
    }
    atexit(fuzz_scratch_cleanup);
    return fuzz_scratch_dir;
}

#endif
