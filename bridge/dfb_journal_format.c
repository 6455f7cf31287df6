/*  dfb_journal_format: the journal's on-disk format (record framing with
    CRC-32C (dfb_crc32c.c), header and event codecs), the segments' sparse index, and the
    small file helpers shared by the writer, recovery and readers. */
#define _GNU_SOURCE
#include "dfb_journal_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void
jr_seg_path(const dfb_journal_t *j, uint64_t first, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%020" PRIu64 ".dfj", j->jdir, first);
}

ssize_t
jr_pread_full(int fd, void *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/*  Reads the record at off (not beyond limit) into buf. Returns RR_OK
    (payload in buf->data, length buf->len), RR_SHORT when the record is
    incomplete before limit (a torn tail or the head), DFB_JOURNAL_CORRUPT
    (bad length or CRC), DFB_JOURNAL_EIO (errno set) or DFB_JOURNAL_NOMEM. */
int
jr_read_record(int fd, uint64_t off, uint64_t limit, dfb_buf_t *buf)
{
    uint8_t h[REC_HEAD];
    if (off + REC_HEAD > limit)
        return RR_SHORT;
    ssize_t r = jr_pread_full(fd, h, REC_HEAD, off);
    if (r < 0)
        return DFB_JOURNAL_EIO;
    if (r < REC_HEAD)
        return RR_SHORT;
    uint32_t len = rd32(h), crc = rd32(h + 4);
    if (len == 0 || len > MAX_PAYLOAD)
        return DFB_JOURNAL_CORRUPT;
    if (off + REC_HEAD + len > limit)
        return RR_SHORT;
    buf->len = 0;
    if (dfb_buf_reserve(buf, len) != 0)
        return DFB_JOURNAL_NOMEM;
    r = jr_pread_full(fd, buf->data, len, off + REC_HEAD);
    if (r < 0)
        return DFB_JOURNAL_EIO;
    if ((size_t)r < len)
        return RR_SHORT;
    buf->len = len;
    return dfb_crc32c(0, buf->data, len) == crc ? RR_OK : DFB_JOURNAL_CORRUPT;
}

/*  Decodes an event payload. 0, or -1 when it is not a well-formed event. */
int
jr_parse_event(const uint8_t *p, size_t len, dfb_journal_rec_t *rec)
{
    if (len < EVENT_FIXED || p[0] != 'E')
        return -1;
    rec->gseq = rd64(p + 1);
    rec->seq = rd64(p + 9);
    rec->ts = (int64_t)rd64(p + 17);
    uint64_t tl = rd32(p + 25), yl = rd32(p + 29), il = rd32(p + 33), bl = rd32(p + 37);
    if (EVENT_FIXED + tl + yl + il + bl != len)
        return -1;
    const uint8_t *q = p + EVENT_FIXED;
    rec->topic = (const char *)q;
    rec->topic_len = tl;
    rec->type = (const char *)(q += tl);
    rec->type_len = yl;
    rec->id = (const char *)(q += yl);
    rec->id_len = il;
    rec->body = q + il;
    rec->body_len = bl;
    return 0;
}

/*  Header payload: epoch into epoch (cap 64), first gseq, and, if topics,
    each topic's seq before the segment (topics over the caps left out).
    0 or -1. */
int
jr_parse_header(const uint8_t *p, size_t len, char *epoch, uint64_t *first, dfb_topics_t *topics)
{
    if (len < 2 + 4 || p[0] != 'H' || p[1] != 1)
        return -1;
    size_t off = 2;
    uint32_t el = rd32(p + off);
    off += 4;
    if (el == 0 || el >= 64 || off + el + 8 + 8 + 4 > len)
        return -1;
    if (epoch) {
        memcpy(epoch, p + off, el);
        epoch[el] = '\0';
    }
    off += el;
    *first = rd64(p + off);
    off += 16; /* first gseq, created ms */
    uint32_t n = rd32(p + off);
    off += 4;
    for (uint32_t i = 0; i < n; i++) {
        if (off + 4 > len)
            return -1;
        uint32_t tl = rd32(p + off);
        off += 4;
        if (tl > len || off + tl + 8 > len)
            return -1;
        /* A topic longer than the cap (a journal from a bridge without it)
           or beyond the table's caps is left out: its events are readable,
           the topic is never published again (the cap re-topics its type). */
        if (topics && tl <= DFB_TOPIC_MAX_LEN) {
            dfb_topic_t *t = dfb_topics_get(topics, (const char *)p + off, tl, 1);
            if (t)
                t->seq = rd64(p + off + tl);
        }
        off += tl + 8;
    }
    return off == len ? 0 : -1;
}

static int
seg_mark(seg_t *s, uint64_t gseq, uint64_t off)
{
    if (s->nmarks == s->capmarks) {
        size_t cap = s->capmarks ? s->capmarks * 2 : 64;
        mark_t *m = realloc(s->marks, cap * sizeof *m);
        if (!m)
            return -1;
        s->marks = m;
        s->capmarks = cap;
    }
    s->marks[s->nmarks++] = (mark_t){gseq, off};
    return 0;
}

/*  Records one more record in s (sparse index every INDEX_EVERY). */
void
jr_seg_count(seg_t *s, uint64_t gseq, uint64_t off)
{
    if (s->indexed && s->records % INDEX_EVERY == 0 && seg_mark(s, gseq, off) != 0)
        s->indexed = 0; /* out of memory: fall back to scanning from the start */
    s->records++;
}

int
jr_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int
jr_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/*  Serialises a header record (framing included) into b. 0 or -1 (memory). */
int
jr_build_header(dfb_buf_t *b, const char *epoch, uint64_t first, int64_t now_ms,
                const dfb_topics_t *topics)
{
    b->len = 0;
    uint8_t tmp[16];
    size_t el = strlen(epoch);
    uint8_t zero[REC_HEAD] = {0};
    int rc = dfb_buf_put(b, zero, REC_HEAD);
    tmp[0] = 'H';
    tmp[1] = 1;
    rc |= dfb_buf_put(b, tmp, 2);
    le32(tmp, (uint32_t)el);
    rc |= dfb_buf_put(b, tmp, 4);
    rc |= dfb_buf_put(b, epoch, el);
    le64(tmp, first);
    le64(tmp + 8, (uint64_t)now_ms);
    rc |= dfb_buf_put(b, tmp, 16);
    le32(tmp, dfb_topics_count(topics));
    rc |= dfb_buf_put(b, tmp, 4);
    size_t cur = 0;
    for (dfb_topic_t *t; (t = dfb_topics_next(topics, &cur));) {
        le32(tmp, (uint32_t)t->len);
        le64(tmp + 4, t->seq);
        rc |= dfb_buf_put(b, tmp, 4);
        rc |= dfb_buf_put(b, t->topic, t->len);
        rc |= dfb_buf_put(b, tmp + 4, 8);
    }
    if (rc != 0)
        return -1;
    le32(b->data, (uint32_t)(b->len - REC_HEAD));
    le32(b->data + 4, dfb_crc32c(0, b->data + REC_HEAD, b->len - REC_HEAD));
    return 0;
}
