/* dfpod: the bodies of message create and update: multipart/form-data (RFC 7578) and a
 * small XML well-formedness check of MessageML / PresentationML (pod_msgbody.c), used by
 * the outbound endpoints (pod_outbound.c). */
#ifndef POD_MSGBODY_H
#define POD_MSGBODY_H

#include <stdbool.h>
#include <stddef.h>

#define MAX_PARTS 1000

/* One part of a multipart body; data points into the body. */
typedef struct {
    char name[128];
    char filename[256];
    bool has_filename;
    char ctype[128];
    const char *data;
    size_t len;
} part_t;

/* The boundary parameter of a multipart/form-data Content-Type into B. */
bool pod_mp_boundary(const char *ctype, char *b, size_t blen);

/* Splits BODY at boundary BND into *PARTS_OUT (malloc'd, at most MAX_PARTS; free it) and
 * *N_OUT. 0, or -1 with WHY. */
int pod_mp_parse(const char *body, size_t len, const char *bnd, part_t **parts_out, size_t *n_out,
                 char *why, size_t whylen);

/* Checks that S is well-formed XML with one root, <messageML> or a PresentationML <div
 * data-format="PresentationML">. On success the root's inner content is S[*IN_START,
 * *IN_END) and *PML says the root was PresentationML. 0, or -1 with WHY. */
int pod_xml_check(const char *s, size_t n, size_t *in_start, size_t *in_end, bool *pml, char *why,
                  size_t whylen);

#endif
