/*  dfc_delivery: the pieces of the delivery guarantees that hold no socket:
    the dedupe window over (event id, type), the partition key and FNV-1a,
    and the checkpoint file (atomic write). The replay client is dfc_replay.c;
    the state that uses them is in dfc_link.c, dfc_fill.c, dfc_watermark.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dfc_internal.h"

/* ------------------------------------------------------------ FNV-1a */

uint64_t
dfc_fnv1a64(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

uint32_t
dfc_partition(const char *key, size_t len, uint32_t n)
{
    if (n == 0)
        return 0;
    return (uint32_t)(dfc_fnv1a64(key ? key : "", key ? len : 0) % n);
}

const char *
dfc_event_partition_key(const dfc_event_t *ev, size_t *len)
{
    const dfc_value_t *event = dfc_event_value(ev);
    const dfc_value_t *payload = dfc_value_find(event, "payload");
    const char *s = NULL;
    size_t n = 0;
    if (dfc_value_type(payload) == DFC_MAP && dfc_value_size(payload) == 1) {
        const dfc_value_t *inner = dfc_value_item_at(payload, 0);
        static const char *const paths[] = {"stream.streamId", "message.stream.streamId"};
        for (size_t i = 0; i < 2 && !s; i++) {
            const dfc_value_t *v = dfc_value_get(inner, paths[i]);
            if (dfc_value_type(v) == DFC_STR)
                s = dfc_value_str(v, &n);
        }
    }
    if (!s) {
        const dfc_value_t *id = dfc_value_find(event, "id");
        if (dfc_value_type(id) == DFC_STR)
            s = dfc_value_str(id, &n);
    }
    if (!s) {
        s = "";
        n = 0;
    }
    if (len)
        *len = n;
    return s;
}

/* ------------------------------------------------------- dedupe window */

/*  A FIFO ring of the last `window` key hashes plus an open-addressing set
    of them (linear probing, backward-shift deletion). Only 64-bit hashes are
    kept: two different keys colliding inside one window is a ~window/2^64
    chance per event, and would drop one event as a duplicate. */
struct dfc_dedupe {
    uint64_t *ring;
    size_t window, head, len;
    uint64_t *set; /* 0 = empty slot; hashes of 0 are stored as 1 */
    size_t mask;
};

dfc_dedupe_t *
dfc_dedupe_new(size_t window)
{
    dfc_dedupe_t *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    size_t cap = 16;
    while (cap < window * 2)
        cap *= 2;
    d->ring = calloc(window ? window : 1, sizeof *d->ring);
    d->set = calloc(cap, sizeof *d->set);
    d->window = window;
    d->mask = cap - 1;
    if (!d->ring || !d->set)
        dfc_dedupe_destroy(&d);
    return d;
}

void
dfc_dedupe_destroy(dfc_dedupe_t **d_p)
{
    if (!d_p || !*d_p)
        return;
    free((*d_p)->ring);
    free((*d_p)->set);
    free(*d_p);
    *d_p = NULL;
}

static void
set_remove(dfc_dedupe_t *d, uint64_t h)
{
    size_t i = h & d->mask;
    while (d->set[i] && d->set[i] != h)
        i = (i + 1) & d->mask;
    if (!d->set[i])
        return;
    /* backward shift: move later members of the probe run into the hole */
    size_t j = i;
    for (;;) {
        j = (j + 1) & d->mask;
        if (!d->set[j])
            break;
        size_t home = d->set[j] & d->mask;
        /* j's entry may move to i when its home is not in (i, j] cyclically */
        bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            d->set[i] = d->set[j];
            i = j;
        }
    }
    d->set[i] = 0;
}

bool
dfc_dedupe_seen(dfc_dedupe_t *d, const char *id, size_t idlen, const char *type, size_t tlen)
{
    if (!d || !id || d->window == 0)
        return false;
    /* hash of (id length, id, type): ids alone are not unique (ROOMCREATED and
       USERJOINEDROOM of one action share one) */
    uint64_t h = dfc_fnv1a64(&idlen, sizeof idlen);
    for (size_t i = 0; i < idlen; i++) { /* the length first: ("a\0b", "c") != ("a", "b\0c") */
        h ^= (unsigned char)id[i];
        h *= 1099511628211ull;
    }
    for (size_t i = 0; i < tlen; i++) {
        h ^= (unsigned char)type[i];
        h *= 1099511628211ull;
    }
    if (h == 0)
        h = 1;
    size_t i = h & d->mask;
    while (d->set[i]) {
        if (d->set[i] == h)
            return true;
        i = (i + 1) & d->mask;
    }
    if (d->len == d->window) { /* forget the oldest */
        set_remove(d, d->ring[d->head]);
        d->head = (d->head + 1) % d->window;
        d->len--;
        i = h & d->mask; /* the removal may have shifted the run */
        while (d->set[i])
            i = (i + 1) & d->mask;
    }
    d->set[i] = h;
    d->ring[(d->head + d->len) % d->window] = h;
    d->len++;
    return false;
}

/* ------------------------------------------------------------ checkpoint */

/*  Format (text):
        dfc-checkpoint 1
        e <epoch> <gseq>      the watermark of a bridge epoch, oldest epoch first
        d <gseq>              ...then gseqs above it already handled, ascending
    Epochs are the bridge's own strings; an epoch with a space or a newline
    is never written. */
void
dfc_ckpt_entries_free(dfc_ckpt_entry_t *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].done);
        e[i].done = NULL;
        e[i].ndone = 0;
    }
}

static int
parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-' || (*end != '\n' && *end != '\0'))
        return -1;
    *out = v;
    return 0;
}

int
dfc_ckpt_load(const char *path, dfc_ckpt_entry_t *out, size_t max, size_t *n)
{
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? DFC_OK : DFC_EINVAL;
    char line[DFC_EPOCH_MAX + 64]; /* a line of up to 190 bytes and its LF */
    int rc = DFC_OK;
    size_t total = 0;
    if (!fgets(line, sizeof line, f) || strcmp(line, "dfc-checkpoint 1\n") != 0)
        rc = DFC_EINVAL;
    while (rc == DFC_OK && fgets(line, sizeof line, f)) {
        uint64_t g;
        size_t len = strlen(line);
        total += len;
        if ((len == sizeof line - 1 && line[len - 1] != '\n') || total > DFC_CKPT_FILE_MAX) {
            /* a line too long (its rest would read as another line), or a file
               no writer produces: malformed from here, never read whole */
            rc = DFC_EINVAL;
            break;
        }
        if (line[0] == 'd' && line[1] == ' ' && *n > 0 && parse_u64(line + 2, &g) == 0) {
            dfc_ckpt_entry_t *e = &out[*n - 1];
            if (e->ndone == DFC_CKPT_DONE_MAX || (e->ndone && g <= e->done[e->ndone - 1]))
                continue;                           /* bounded; ascending only */
            if ((e->ndone & (e->ndone - 1)) == 0) { /* grow at powers of two */
                uint64_t *grown = realloc(e->done, (e->ndone ? e->ndone * 2 : 16) * sizeof g);
                if (!grown) {
                    rc = DFC_ENOMEM;
                    break;
                }
                e->done = grown;
            }
            e->done[e->ndone++] = g;
            continue;
        }
        char *sp = strrchr(line, ' ');
        if (line[0] != 'e' || line[1] != ' ' || !sp || sp <= line + 2 ||
            (size_t)(sp - line - 2) >= DFC_EPOCH_MAX || parse_u64(sp + 1, &g) != 0) {
            rc = DFC_EINVAL;
            break;
        }
        if (*n == max) { /* keep the newest: shift */
            free(out[0].done);
            memmove(out, out + 1, (max - 1) * sizeof *out);
            (*n)--;
        }
        dfc_ckpt_entry_t *e = &out[*n];
        memset(e, 0, sizeof *e);
        memcpy(e->epoch, line + 2, (size_t)(sp - line - 2));
        e->gseq = g;
        (*n)++;
    }
    fclose(f);
    return rc;
}

static int
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/*  One failed step of a save: logged here, where the step and errno are
    known; the temp file is removed (the previous checkpoint is untouched). */
static int
save_failed(dfc_log_level_t level, const char *step, const char *file, const char *tmp)
{
    int err = errno;
    dfc_log(level, "checkpoint: %s %s: %s", step, file, strerror(err));
    if (tmp)
        unlink(tmp);
    errno = err;
    return DFC_EIO;
}

int
dfc_ckpt_save(const char *path, const dfc_ckpt_entry_t *e, size_t n, dfc_log_level_t level)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return DFC_EINVAL;
    size_t cap = 32;
    for (size_t i = 0; i < n; i++)
        cap += DFC_EPOCH_MAX + 32 + e[i].ndone * 24;
    char *buf = malloc(cap);
    if (!buf)
        return DFC_ENOMEM;
    size_t pos = (size_t)snprintf(buf, cap, "dfc-checkpoint 1\n");
    for (size_t i = 0; i < n; i++) {
        if (strpbrk(e[i].epoch, " \n") || !e[i].epoch[0])
            continue;
        pos += (size_t)snprintf(buf + pos, cap - pos, "e %s %llu\n", e[i].epoch,
                                (unsigned long long)e[i].gseq);
        for (size_t k = 0; k < e[i].ndone; k++)
            pos += (size_t)snprintf(buf + pos, cap - pos, "d %llu\n",
                                    (unsigned long long)e[i].done[k]);
    }
    /* Only the temp file is ever written: whatever fails (disk full, EIO),
       the previous checkpoint stays as it was. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(buf);
        return save_failed(level, "open", tmp, NULL);
    }
    int rc = DFC_OK;
    if (write_all(fd, buf, pos) != 0)
        rc = save_failed(level, "write", tmp, NULL);
    else if (fsync(fd) != 0)
        rc = save_failed(level, "fsync", tmp, NULL);
    free(buf);
    if (close(fd) != 0 && rc == DFC_OK)
        rc = save_failed(level, "close", tmp, NULL);
    if (rc != DFC_OK) {
        int err = errno;
        unlink(tmp);
        errno = err;
        return rc;
    }
    /* rename is atomic: a reader (or a restart after SIGKILL) sees the old
       file or the new one, never half of one */
    if (rename(tmp, path) != 0)
        return save_failed(level, "rename to", path, tmp);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        /* the rename itself must reach the disk, or a crash may bring the
           old file back: a failure here is a failed save (retried) */
        int dfd = open(slash == dir ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
            return save_failed(level, "open the folder of", path, NULL);
        int r = fsync(dfd);
        int err = errno;
        close(dfd);
        errno = err;
        if (r != 0)
            return save_failed(level, "fsync the folder of", path, NULL);
    }
    return DFC_OK;
}
