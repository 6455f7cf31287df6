/*  dfb_infodump: SIGUSR1 logs the INFO table (dfb_info) as one `info:` line
    while the bridge runs. The signal handler only writes a byte to a pipe;
    a thread of its own reads it and does the rest (the journal's stats may
    wait on its lock), so neither the datafeed loop nor the actor waits. */
#ifndef DFB_INFODUMP_H
#define DFB_INFODUMP_H

#include "dfb_info.h"

typedef struct dfb_infodump dfb_infodump_t;

/*  Installs the SIGUSR1 handler and starts the thread; src's pointers are
    borrowed and must outlive the object. One at a time per process. NULL
    on error (errno set; SIGUSR1 is then left as it was). */
dfb_infodump_t *dfb_infodump_new(const dfb_info_sources_t *src);

/*  Stops the thread; SIGUSR1 is ignored from then on. NULLs *self_p;
    accepts NULL. */
void dfb_infodump_destroy(dfb_infodump_t **self_p);

/*  Logs the table as one info line now (also used at exit). */
void dfb_infodump_log(const dfb_info_sources_t *src);

#endif
