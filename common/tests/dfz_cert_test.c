/* dfz_cert's tests: Z85, the parser's errors (exact messages), save_pair's
 * modes and refusals, and files written by czmq's zcert both ways.
 * `dfz_cert_test` runs them; `dfz_cert_test load PATH` prints a file's keys in
 * Z85 and `dfz_cert_test save DIR NAME` writes a pair (for the pyzmq check). */
#include "dfz_cert.h"
#include "df_check.h"

#include <czmq.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char scratch[4096];

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs(text, f);
    fclose(f);
}

/* Parse text and return the error ("" on success). */
static const char *
parse_err(const char *text)
{
    static char err[512];
    dfz_cert_t c;
    err[0] = '\0';
    if (dfz_cert_parse(text, strlen(text), "t", &c, err, sizeof err) == 0)
        return "";
    return err;
}

static void
test_z85(void)
{
    /* ZeroMQ RFC 32's test vector, repeated to 32 bytes. */
    uint8_t k[32];
    static const uint8_t hw[8] = {0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B};
    for (int i = 0; i < 4; i++)
        memcpy(k + 8 * i, hw, 8);
    char z[41];
    dfz_key_encode(k, z);
    CHECK_STR(z, "HelloWorldHelloWorldHelloWorldHelloWorld");
    uint8_t back[32];
    CHECK_EQ(dfz_key_parse(z, back), 0);
    CHECK(memcmp(back, k, 32) == 0);
    char fp[DFZ_FP_LEN + 1];
    dfz_cert_fingerprint(k, fp);
    CHECK_STR(fp, "HelloWorldHe");
    /* libzmq's encoder agrees on random keys. */
    for (int i = 0; i < 50; i++) {
        char pub[41], sec[41], mine[41];
        CHECK_EQ(zmq_curve_keypair(pub, sec), 0);
        CHECK_EQ(dfz_key_parse(pub, back), 0);
        dfz_key_encode(back, mine);
        CHECK_STR(mine, pub);
    }
    CHECK_EQ(dfz_key_parse("HelloWorldHelloWorldHelloWorldHelloWorl", back), -1); /* 39 */
    CHECK_EQ(dfz_key_parse("HelloWorldHelloWorldHelloWorldHelloWorld1", back), -1);
    CHECK_EQ(dfz_key_parse("HelloWorldHelloWorldHelloWorldHelloWor\"d", back), -1);
    CHECK_EQ(dfz_key_parse("%%%%%WorldHelloWorldHelloWorldHelloWorld", back), -1); /* > 2^32 */
    CHECK_EQ(dfz_key_parse("", back), -1);
}

static void
test_parse(void)
{
    char pub[41], sec[41], pub2[41], sec2[41], text[2048];
    zmq_curve_keypair(pub, sec);
    zmq_curve_keypair(pub2, sec2);
    dfz_cert_t c;
    char err[512];

    snprintf(text, sizeof text,
             "#   ZeroMQ CURVE **Secret** Certificate\n\nmetadata\n    name = \"x\"\ncurve\n"
             "    public-key = \"%s\"\n    secret-key = \"%s\"\n",
             pub, sec);
    CHECK_EQ(dfz_cert_parse(text, strlen(text), "t", &c, err, sizeof err), 0);
    CHECK(c.has_secret);
    char z[41];
    dfz_key_encode(c.public_key, z);
    CHECK_STR(z, pub);
    dfz_key_encode(c.secret_key, z);
    CHECK_STR(z, sec);
    dfz_cert_wipe(&c);
    CHECK(!c.has_secret);

    /* Public only, CRLF, single quotes, unquoted, trailing comments. */
    snprintf(text, sizeof text, "metadata\r\ncurve\r\n    public-key = '%s'  # hi\r\n", pub);
    CHECK_STR(parse_err(text), "");
    snprintf(text, sizeof text, "curve\n    public-key = %s\n", pub);
    CHECK_STR(parse_err(text), "");
    CHECK_EQ(dfz_cert_parse(text, strlen(text), "t", &c, err, sizeof err), 0);
    CHECK(!c.has_secret);
    /* No trailing newline; keys of other sections ignored. */
    snprintf(text, sizeof text, "metadata\n    public-key = \"junk\"\ncurve\n    public-key = \"%s\"",
             pub);
    CHECK_STR(parse_err(text), "");

    CHECK_STR(parse_err(""), "t: no curve section");
    CHECK_STR(parse_err("# only comments\nmetadata\n"), "t: no curve section");
    CHECK_STR(parse_err("metadata\ncurve\n"), "t: no public-key in the curve section");
    snprintf(text, sizeof text, "#\n#\n#\n\nmetadata\ncurve\n    public-key = \"%s\"\n"
                                "    secret-key = \"%.39s\"\n",
             pub, sec);
    CHECK_STR(parse_err(text), "t: line 8: secret-key is not 40 Z85 characters");
    snprintf(text, sizeof text, "curve\n    public-key = \"%.39s\\\"\n", pub);
    CHECK_STR(parse_err(text), "t: line 2: public-key is not 40 Z85 characters");
    snprintf(text, sizeof text, "curve\n    public-key = \"%s0\"\n", pub);
    CHECK_STR(parse_err(text), "t: line 2: public-key is not 40 Z85 characters");
    snprintf(text, sizeof text, "curve\n    public-key = \"%s\"\n    public-key = \"%s\"\n", pub,
             pub2);
    CHECK_STR(parse_err(text), "t: line 3: public-key given twice");
    snprintf(text, sizeof text, "curve\n\tpublic-key = \"%s\"\n", pub);
    CHECK_STR(parse_err(text), "t: line 2: indentation must be spaces, not tabs");
    snprintf(text, sizeof text, "curve\n  public-key = \"%s\"\n", pub);
    CHECK_STR(parse_err(text), "t: line 2: indentation is 2 spaces, not a multiple of 4");
    snprintf(text, sizeof text, "curve\n    public-key = \"%s\n", pub);
    CHECK_STR(parse_err(text), "t: line 2: public-key: unterminated quoted value");
    snprintf(text, sizeof text, "curve\n    public-key = \"%s\" x\n", pub);
    CHECK_STR(parse_err(text), "t: line 2: public-key: unexpected text after the value");
    CHECK_STR(parse_err("curve\n    = 3\n"), "t: line 2: expected a name");
    CHECK_STR(parse_err("curve x\n"), "t: line 1: expected '=' or the end of the line");
    snprintf(text, sizeof text, "curve\n    public-key = \"%s\"\n    secret-key = \"%s\"\n", pub,
             sec2);
    CHECK_STR(parse_err(text), "t: secret-key does not belong to public-key");
    CHECK_EQ(dfz_cert_parse("curve\0x", 7, "t", &c, err, sizeof err), -1);
    CHECK_STR(err, "t: contains a NUL byte (not a certificate text file)");
    char *big = malloc(DFZ_CERT_MAX_BYTES + 2);
    memset(big, '#', DFZ_CERT_MAX_BYTES + 1);
    big[DFZ_CERT_MAX_BYTES + 1] = '\0';
    CHECK_STR(parse_err(big), "t: is larger than 65536 bytes");
    free(big);
}

static void
test_files(void)
{
    char path[4200], pp[4200], sp[4200], err[512];
    dfz_cert_t c, back;

    snprintf(path, sizeof path, "%s/missing.key", scratch);
    CHECK_EQ(dfz_cert_load(path, &c, err, sizeof err), -1);
    CHECK(strstr(err, "No such file or directory") != NULL);
    CHECK_EQ(dfz_cert_load(scratch, &c, err, sizeof err), -1);
    CHECK(strstr(err, "not a regular file") != NULL);

    mode_t old = umask(077); /* the modes are exact whatever the umask */
    CHECK_EQ(dfz_cert_save_pair(scratch, "bridge", &c, pp, sizeof pp, sp, sizeof sp, err,
                                sizeof err),
             0);
    umask(old);
    struct stat st;
    CHECK_EQ(stat(pp, &st), 0);
    CHECK_EQ(st.st_mode & 0777, 0644);
    CHECK_EQ(stat(sp, &st), 0);
    CHECK_EQ(st.st_mode & 0777, 0600);
    CHECK_EQ(dfz_cert_load(sp, &back, err, sizeof err), 0);
    CHECK(back.has_secret);
    CHECK(memcmp(back.public_key, c.public_key, 32) == 0);
    CHECK(memcmp(back.secret_key, c.secret_key, 32) == 0);
    CHECK_EQ(dfz_cert_load(pp, &back, err, sizeof err), 0);
    CHECK(!back.has_secret);
    CHECK(memcmp(back.public_key, c.public_key, 32) == 0);
    CHECK_EQ(dfz_cert_load_secret(sp, &back, err, sizeof err), 0);
    CHECK_EQ(dfz_cert_load_secret(pp, &back, err, sizeof err), -1);
    char want[4400];
    snprintf(want, sizeof want,
             "%s: holds a public certificate where a secret one is needed (no secret-key)", pp);
    CHECK_STR(err, want);

    /* Refuses to overwrite, whichever of the two exists, and leaves nothing new. */
    CHECK_EQ(dfz_cert_save_pair(scratch, "bridge", NULL, NULL, 0, NULL, 0, err, sizeof err), -1);
    CHECK(strstr(err, "already exists (refusing to overwrite)") != NULL);
    CHECK_EQ(dfz_cert_load(sp, &back, err, sizeof err), 0);
    CHECK(memcmp(back.secret_key, c.secret_key, 32) == 0); /* untouched */
    snprintf(path, sizeof path, "%s/half.key", scratch);
    write_file(path, "x");
    CHECK_EQ(dfz_cert_save_pair(scratch, "half", NULL, NULL, 0, NULL, 0, err, sizeof err), -1);
    snprintf(path, sizeof path, "%s/half.key_secret", scratch);
    CHECK(access(path, F_OK) != 0);
    snprintf(path, sizeof path, "%s/other.key_secret", scratch);
    write_file(path, "x");
    CHECK_EQ(dfz_cert_save_pair(scratch, "other", NULL, NULL, 0, NULL, 0, err, sizeof err), -1);
    snprintf(path, sizeof path, "%s/other.key", scratch);
    CHECK(access(path, F_OK) != 0);
    /* Names and directories. */
    CHECK_EQ(dfz_cert_save_pair(scratch, "../x", NULL, NULL, 0, NULL, 0, err, sizeof err), -1);
    CHECK(strstr(err, "is not 1-64 characters") != NULL);
    CHECK_EQ(dfz_cert_save_pair(scratch, "", NULL, NULL, 0, NULL, 0, err, sizeof err), -1);
    CHECK_EQ(dfz_cert_save_pair(scratch, ".hidden", NULL, NULL, 0, NULL, 0, err, sizeof err), -1);
    snprintf(path, sizeof path, "%s/nodir", scratch);
    CHECK_EQ(dfz_cert_save_pair(path, "a", NULL, NULL, 0, NULL, 0, err, sizeof err), -1);
    CHECK(strstr(err, "No such file or directory") != NULL);
    snprintf(path, sizeof path, "%s/half.key", scratch);
    CHECK_EQ(dfz_cert_save_pair(path, "a", NULL, NULL, 0, NULL, 0, err, sizeof err), -1);
    CHECK(strstr(err, "not a directory") != NULL);
    dfz_cert_wipe(&c);
    dfz_cert_wipe(&back);
}

static void
test_czmq(void)
{
    char path[4200], sp[4200], err[512];
    /* czmq writes, we read. */
    zcert_t *zc = zcert_new();
    zcert_set_meta(zc, "name", "%s", "from-czmq");
    snprintf(path, sizeof path, "%s/czmq.key", scratch);
    CHECK_EQ(zcert_save(zc, path), 0);
    snprintf(sp, sizeof sp, "%s/czmq.key_secret", scratch);
    dfz_cert_t c;
    CHECK_EQ(dfz_cert_load(path, &c, err, sizeof err), 0);
    CHECK(!c.has_secret);
    CHECK(memcmp(c.public_key, zcert_public_key(zc), 32) == 0);
    CHECK_EQ(dfz_cert_load_secret(sp, &c, err, sizeof err), 0);
    CHECK(memcmp(c.public_key, zcert_public_key(zc), 32) == 0);
    CHECK(memcmp(c.secret_key, zcert_secret_key(zc), 32) == 0);
    zcert_destroy(&zc);
    /* We write, czmq reads (zcert_load prefers NAME.key_secret). */
    dfz_cert_t mine;
    char pp[4200];
    CHECK_EQ(dfz_cert_save_pair(scratch, "ours", &mine, pp, sizeof pp, NULL, 0, err, sizeof err),
             0);
    zc = zcert_load(pp);
    CHECK(zc != NULL);
    if (zc) {
        CHECK(memcmp(zcert_public_key(zc), mine.public_key, 32) == 0);
        CHECK(memcmp(zcert_secret_key(zc), mine.secret_key, 32) == 0);
        CHECK_STR(zcert_meta(zc, "name"), "ours");
        zcert_destroy(&zc);
    }
    dfz_cert_wipe(&c);
    dfz_cert_wipe(&mine);
}

int
main(int argc, char **argv)
{
    char err[512];
    if (argc == 3 && strcmp(argv[1], "load") == 0) {
        dfz_cert_t c;
        if (dfz_cert_load(argv[2], &c, err, sizeof err) != 0) {
            fprintf(stderr, "%s\n", err);
            return 2;
        }
        char z[41];
        dfz_key_encode(c.public_key, z);
        printf("public %s\n", z);
        if (c.has_secret) {
            dfz_key_encode(c.secret_key, z);
            printf("secret %s\n", z);
        }
        dfz_cert_wipe(&c);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "save") == 0) {
        char pp[4200], sp[4200];
        if (dfz_cert_save_pair(argv[2], argv[3], NULL, pp, sizeof pp, sp, sizeof sp, err,
                               sizeof err) != 0) {
            fprintf(stderr, "%s\n", err);
            return 2;
        }
        printf("%s\n%s\n", pp, sp);
        return 0;
    }
    snprintf(scratch, sizeof scratch, "%s/dfz_cert_test.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(scratch)) {
        perror("mkdtemp");
        return 1;
    }
    test_z85();
    test_parse();
    test_files();
    test_czmq();
    if (df_check_failures == 0) {
        char cmd[4200 + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", scratch);
    }
    return df_check_report("dfz_cert_test");
}
