/* dfpod: the bodies of message create and update (see pod_msgbody.h): the multipart parser,
 * the call log's view of a multipart body (pod_out_log_body) and the MessageML check. */
#include "pod.h"
#include "pod_msgbody.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

#define MAX_XML_DEPTH 512

/* ---- multipart/form-data ---- */


static size_t
find(const char *hay, size_t hn, size_t from, const char *needle, size_t nn)
{
    for (size_t i = from; nn <= hn && i + nn <= hn; i++) {
        const char *p = memchr(hay + i, needle[0], hn - nn - i + 1);
        if (!p)
            return (size_t)-1;
        i = (size_t)(p - hay);
        if (memcmp(p, needle, nn) == 0)
            return i;
    }
    return (size_t)-1;
}

/* The boundary of a multipart/form-data Content-Type into B; false if there is none. */
bool
pod_mp_boundary(const char *ctype, char *b, size_t blen)
{
    if (!ctype || strncasecmp(ctype, "multipart/form-data", 19) != 0)
        return false;
    const char *p = ctype + 19;
    while (*p) {
        while (*p == ';' || *p == ' ' || *p == '\t')
            p++;
        if (strncasecmp(p, "boundary=", 9) == 0) {
            p += 9;
            size_t n = 0;
            if (*p == '"') {
                p++;
                while (p[n] && p[n] != '"')
                    n++;
            } else {
                while (p[n] && p[n] != ';' && p[n] != ' ' && p[n] != '\t')
                    n++;
            }
            if (n == 0 || n > 70 || n >= blen)
                return false;
            memcpy(b, p, n);
            b[n] = '\0';
            return true;
        }
        while (*p && *p != ';')
            p++;
    }
    return false;
}

/* A Content-Disposition parameter KEY ("name", "filename") into OUT (quotes removed,
 * backslash escapes undone). */
static bool
cd_param(const char *v, size_t vn, const char *key, char *out, size_t outlen)
{
    size_t kl = strlen(key), i = 0;
    while (i < vn) {
        while (i < vn && (v[i] == ';' || v[i] == ' ' || v[i] == '\t'))
            i++;
        size_t ks = i;
        while (i < vn && v[i] != '=' && v[i] != ';')
            i++;
        size_t ke = i;
        while (ke > ks && (v[ke - 1] == ' ' || v[ke - 1] == '\t'))
            ke--;
        if (i >= vn || v[i] != '=')
            continue;
        i++;
        while (i < vn && (v[i] == ' ' || v[i] == '\t'))
            i++;
        size_t o = 0;
        bool match = ke - ks == kl && strncasecmp(v + ks, key, kl) == 0;
        if (i < vn && v[i] == '"') {
            i++;
            while (i < vn && v[i] != '"') {
                if (v[i] == '\\' && i + 1 < vn)
                    i++;
                if (match && o + 1 < outlen)
                    out[o++] = v[i];
                i++;
            }
            i++; /* the closing quote */
        } else {
            while (i < vn && v[i] != ';') {
                if (match && o + 1 < outlen)
                    out[o++] = v[i];
                i++;
            }
        }
        if (match) {
            out[o] = '\0';
            return true;
        }
    }
    return false;
}

/* Parses BODY into at most MAX_PARTS parts (pointing into BODY). 0, or -1 with WHY. */
int
pod_mp_parse(const char *body, size_t len, const char *bnd, part_t **parts_out, size_t *n_out,
         char *why, size_t whylen)
{
    char dash[80];
    int dl = snprintf(dash, sizeof dash, "\r\n--%s", bnd);
    size_t pos;
    /* The first delimiter may open the body (no preamble) */
    if (len >= (size_t)dl - 2 && memcmp(body, dash + 2, (size_t)dl - 2) == 0)
        pos = (size_t)dl - 2;
    else {
        size_t f = find(body, len, 0, dash, (size_t)dl);
        if (f == (size_t)-1) {
            snprintf(why, whylen, "no boundary delimiter");
            return -1;
        }
        pos = f + (size_t)dl;
    }
    part_t *parts = NULL;
    size_t n = 0;
    for (;;) {
        if (pos + 2 <= len && body[pos] == '-' && body[pos + 1] == '-')
            break; /* the close delimiter */
        while (pos < len && (body[pos] == ' ' || body[pos] == '\t'))
            pos++;
        if (pos + 2 <= len && body[pos] == '\r' && body[pos + 1] == '\n')
            pos += 2;
        else {
            snprintf(why, whylen, "a delimiter is not followed by CRLF");
            goto fail;
        }
        if (n == MAX_PARTS) {
            snprintf(why, whylen, "more than %d parts", MAX_PARTS);
            goto fail;
        }
        parts = pod_xrealloc(parts, (n + 1) * sizeof *parts);
        part_t *p = &parts[n];
        memset(p, 0, sizeof *p);
        bool has_cd = false;
        /* headers */
        for (;;) {
            size_t eol = find(body, len, pos, "\r\n", 2);
            if (eol == (size_t)-1) {
                snprintf(why, whylen, "part headers without an end");
                goto fail;
            }
            if (eol == pos) {
                pos += 2;
                break;
            }
            const char *h = body + pos;
            size_t hn = eol - pos;
            const char *colon = memchr(h, ':', hn);
            if (!colon) {
                snprintf(why, whylen, "a part header without a colon");
                goto fail;
            }
            size_t kn = (size_t)(colon - h);
            const char *v = colon + 1;
            size_t vn = hn - kn - 1;
            while (vn && (*v == ' ' || *v == '\t')) {
                v++;
                vn--;
            }
            if (kn == 19 && strncasecmp(h, "Content-Disposition", 19) == 0) {
                if (vn < 9 || strncasecmp(v, "form-data", 9) != 0) {
                    snprintf(why, whylen, "Content-Disposition is not form-data");
                    goto fail;
                }
                has_cd = cd_param(v + 9, vn - 9, "name", p->name, sizeof p->name);
                p->has_filename =
                    cd_param(v + 9, vn - 9, "filename", p->filename, sizeof p->filename);
            } else if (kn == 12 && strncasecmp(h, "Content-Type", 12) == 0) {
                size_t c = vn < sizeof p->ctype - 1 ? vn : sizeof p->ctype - 1;
                memcpy(p->ctype, v, c);
                p->ctype[c] = '\0';
            }
            pos = eol + 2;
        }
        if (!has_cd) {
            snprintf(why, whylen, "a part without Content-Disposition: form-data; name=...");
            goto fail;
        }
        /* A delimiter is CRLF "--" boundary followed by "--", CRLF or white space: the same
         * bytes followed by anything else are content (RFC 2046 5.1.1). */
        size_t end = pos;
        for (;;) {
            end = find(body, len, end, dash, (size_t)dl);
            if (end == (size_t)-1)
                break;
            size_t after = end + (size_t)dl;
            if (after + 2 <= len &&
                (memcmp(body + after, "--", 2) == 0 || memcmp(body + after, "\r\n", 2) == 0))
                break;
            if (after < len && (body[after] == ' ' || body[after] == '\t'))
                break;
            end++;
        }
        if (end == (size_t)-1) {
            snprintf(why, whylen, "no closing boundary delimiter");
            goto fail;
        }
        p->data = body + pos;
        p->len = end - pos;
        n++;
        pos = end + (size_t)dl;
    }
    *parts_out = parts;
    *n_out = n;
    return 0;
fail:
    free(parts);
    return -1;
}

char *
pod_out_log_body(struct MHD_Connection *c, const char *body, size_t len)
{
    char bnd[80];
    if (!pod_mp_boundary(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type"), bnd,
                     sizeof bnd))
        return NULL;
    part_t *parts = NULL;
    size_t n = 0;
    char why[128];
    if (pod_mp_parse(body ? body : "", len, bnd, &parts, &n, why, sizeof why) != 0)
        return NULL;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(parts[i].name));
        if (parts[i].has_filename)
            json_object_set_new(o, "filename", json_string(parts[i].filename));
        if (parts[i].ctype[0])
            json_object_set_new(o, "content_type", json_string(parts[i].ctype));
        json_object_set_new(o, "size", json_integer((json_int_t)parts[i].len));
        json_t *t = parts[i].has_filename ? NULL : json_stringn(parts[i].data, parts[i].len);
        if (t)
            json_object_set_new(o, "text", t);
        json_array_append_new(arr, o);
    }
    free(parts);
    json_t *o = json_pack("{s:o}", "parts", arr);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* ---- MessageML: a small XML well-formedness check ---- */

static bool
name_start(unsigned char ch)
{
    return isalpha(ch) || ch == '_' || ch == ':' || ch >= 0x80;
}

static bool
name_char(unsigned char ch)
{
    return name_start(ch) || isdigit(ch) || ch == '-' || ch == '.';
}

/* An entity or character reference at S[*I] ('&'); advances past ';'. */
static bool
xml_entity(const char *s, size_t n, size_t *i)
{
    size_t j = *i + 1;
    if (j < n && s[j] == '#') {
        j++;
        bool hex = j < n && s[j] == 'x';
        if (hex)
            j++;
        size_t d = j;
        while (j < n && (hex ? isxdigit((unsigned char)s[j]) : isdigit((unsigned char)s[j])))
            j++;
        if (j == d)
            return false;
    } else {
        if (j >= n || !name_start((unsigned char)s[j]))
            return false;
        while (j < n && name_char((unsigned char)s[j]))
            j++;
    }
    if (j >= n || s[j] != ';')
        return false;
    *i = j + 1;
    return true;
}

int
pod_xml_check(const char *s, size_t n, size_t *in_start, size_t *in_end, bool *pml, char *why,
          size_t whylen)
{
    size_t stack[MAX_XML_DEPTH][2]; /* name offset, length */
    int depth = 0;
    bool root_seen = false, root_done = false;
    size_t i = 0;
    *pml = false;
    while (i < n) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '<') {
            if (n - i >= 4 && memcmp(s + i, "<!--", 4) == 0) {
                size_t e = find(s, n, i + 4, "-->", 3);
                if (e == (size_t)-1) {
                    snprintf(why, whylen, "unterminated comment");
                    return -1;
                }
                i = e + 3;
                continue;
            }
            if (n - i >= 9 && memcmp(s + i, "<![CDATA[", 9) == 0) {
                size_t e = find(s, n, i + 9, "]]>", 3);
                if (depth == 0 || e == (size_t)-1) {
                    snprintf(why, whylen, "CDATA outside the root or unterminated");
                    return -1;
                }
                i = e + 3;
                continue;
            }
            if (n - i >= 2 && s[i + 1] == '?') {
                size_t e = find(s, n, i + 2, "?>", 2);
                if (e == (size_t)-1 || root_seen) {
                    snprintf(why, whylen, "misplaced or unterminated processing instruction");
                    return -1;
                }
                i = e + 2;
                continue;
            }
            if (n - i >= 2 && s[i + 1] == '!') {
                snprintf(why, whylen, "DOCTYPE is not allowed");
                return -1;
            }
            if (n - i >= 2 && s[i + 1] == '/') {
                size_t tag = i, j = i + 2, ns = j;
                while (j < n && name_char((unsigned char)s[j]))
                    j++;
                size_t nl = j - ns;
                while (j < n && isspace((unsigned char)s[j]))
                    j++;
                if (j >= n || s[j] != '>' || nl == 0) {
                    snprintf(why, whylen, "malformed end tag at byte %zu", tag);
                    return -1;
                }
                if (depth == 0 || stack[depth - 1][1] != nl ||
                    memcmp(s + stack[depth - 1][0], s + ns, nl) != 0) {
                    snprintf(why, whylen, "end tag </%.*s> does not match the open element",
                             (int)(nl > 60 ? 60 : nl), s + ns);
                    return -1;
                }
                depth--;
                if (depth == 0) {
                    *in_end = tag;
                    root_done = true;
                }
                i = j + 1;
                continue;
            }
            /* a start tag */
            size_t tag = i, j = i + 1, ns = j;
            if (j >= n || !name_start((unsigned char)s[j])) {
                snprintf(why, whylen, "'<' not followed by a tag name at byte %zu", tag);
                return -1;
            }
            while (j < n && name_char((unsigned char)s[j]))
                j++;
            size_t nl = j - ns;
            if (root_done) {
                snprintf(why, whylen, "content after the root element");
                return -1;
            }
            bool is_root = depth == 0;
            bool fmt_pml = false;
            bool empty = false;
            for (;;) {
                bool ws = false;
                while (j < n && isspace((unsigned char)s[j])) {
                    j++;
                    ws = true;
                }
                if (j >= n) {
                    snprintf(why, whylen, "unterminated tag at byte %zu", tag);
                    return -1;
                }
                if (s[j] == '>') {
                    j++;
                    break;
                }
                if (s[j] == '/') {
                    if (j + 1 >= n || s[j + 1] != '>') {
                        snprintf(why, whylen, "malformed empty-element tag at byte %zu", tag);
                        return -1;
                    }
                    j += 2;
                    empty = true;
                    break;
                }
                if (!ws || !name_start((unsigned char)s[j])) {
                    snprintf(why, whylen, "malformed attribute at byte %zu", j);
                    return -1;
                }
                size_t as = j;
                while (j < n && name_char((unsigned char)s[j]))
                    j++;
                size_t al = j - as;
                while (j < n && isspace((unsigned char)s[j]))
                    j++;
                if (j >= n || s[j] != '=') {
                    snprintf(why, whylen, "attribute without a value at byte %zu", as);
                    return -1;
                }
                j++;
                while (j < n && isspace((unsigned char)s[j]))
                    j++;
                if (j >= n || (s[j] != '"' && s[j] != '\'')) {
                    snprintf(why, whylen, "attribute value not quoted at byte %zu", j);
                    return -1;
                }
                char q = s[j++];
                size_t vs = j;
                while (j < n && s[j] != q) {
                    if (s[j] == '<') {
                        snprintf(why, whylen, "'<' in an attribute value at byte %zu", j);
                        return -1;
                    }
                    if (s[j] == '&') {
                        if (!xml_entity(s, n, &j)) {
                            snprintf(why, whylen, "malformed entity at byte %zu", j);
                            return -1;
                        }
                        continue;
                    }
                    j++;
                }
                if (j >= n) {
                    snprintf(why, whylen, "unterminated attribute value at byte %zu", vs);
                    return -1;
                }
                if (al == 11 && memcmp(s + as, "data-format", 11) == 0 && j - vs == 14 &&
                    memcmp(s + vs, "PresentationML", 14) == 0)
                    fmt_pml = true;
                j++;
            }
            if (is_root) {
                bool mml = nl == 9 && memcmp(s + ns, "messageML", 9) == 0;
                bool div = nl == 3 && memcmp(s + ns, "div", 3) == 0 && fmt_pml;
                if (!mml && !div) {
                    snprintf(why, whylen, "Root tag must be <messageML> or <div>");
                    return -1;
                }
                *pml = div;
                root_seen = true;
                *in_start = j;
                if (empty) {
                    *in_end = j;
                    root_done = true;
                }
            }
            if (!empty) {
                if (depth == MAX_XML_DEPTH) {
                    snprintf(why, whylen, "elements nested deeper than %d", MAX_XML_DEPTH);
                    return -1;
                }
                stack[depth][0] = ns;
                stack[depth][1] = nl;
                depth++;
            }
            i = j;
            continue;
        }
        if (depth == 0 && !isspace(ch)) {
            snprintf(why, whylen, "text outside the root element at byte %zu", i);
            return -1;
        }
        if (ch == '&') {
            if (!xml_entity(s, n, &i)) {
                snprintf(why, whylen, "malformed entity at byte %zu", i);
                return -1;
            }
            continue;
        }
        i++;
    }
    if (!root_seen) {
        snprintf(why, whylen, "no root element");
        return -1;
    }
    if (depth > 0) {
        snprintf(why, whylen, "unclosed element <%.*s>",
                 (int)(stack[depth - 1][1] > 60 ? 60 : stack[depth - 1][1]),
                 s + stack[depth - 1][0]);
        return -1;
    }
    return 0;
}
