/*  dfb_feedfile: the datafeed v1 id file, as the BDKs keep it: one line
    `<id>@<agent base URL>` in `datafeed.id` inside datafeed.idFilePath (a
    folder), or in idFilePath itself (a file path). Written atomically. */
#ifndef DFB_FEEDFILE_H
#define DFB_FEEDFILE_H

#include <stddef.h>

/*  The file's path for a datafeed.idFilePath value: "<dir>/datafeed.id"
    when id_file_path is an existing folder (or ends with '/'), else
    id_file_path itself. Returns 0, or -1 when buf is too small. */
int dfb_feedfile_path(const char *id_file_path, char *buf, size_t len);

/*  Reads the id stored at path into id (cap bytes). Only the text before
    the first '@' of the first line counts. Returns 0 when an id was found;
    -1 when the file is missing, unreadable, empty, has no '@', an empty id,
    or an id with characters that cannot go in a URL path ("create a new
    feed"); *why (static text, if why) says which. */
int dfb_feedfile_read(const char *path, char *id, size_t cap, const char **why);

/*  Writes "<id>@<agent_base>\n" to path atomically (a temp file in the same
    folder, fsync, rename). Returns 0, or -1 with errno set. */
int dfb_feedfile_write(const char *path, const char *id, const char *agent_base);

/*  Self-test; returns 0 when all checks pass. */
int dfb_feedfile_test(int verbose);

#endif
