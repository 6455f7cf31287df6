/*  Test harness for the end-to-end tests: key pair, child processes (dfpod,
    dfbridge), free loopback ports, and the pod's control interface. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

int h_failures = 0;

int64_t
h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
write_key_pair(const char *key_path, const char *pub_path)
{
    EVP_PKEY *pkey = EVP_RSA_gen(2048);
    if (!pkey)
        return -1;
    int rc = -1;
    FILE *f = fopen(key_path, "w");
    FILE *g = fopen(pub_path, "w");
    if (f && g && PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) == 1 &&
        PEM_write_PUBKEY(g, pkey) == 1)
        rc = 0;
    if (f)
        fclose(f);
    if (g)
        fclose(g);
    EVP_PKEY_free(pkey);
    return rc;
}

int
h_env_init(h_env_t *env, const char *dfpod_bin, const char *dfbridge_bin)
{
    memset(env, 0, sizeof *env);
    env->dfpod_bin = dfpod_bin;
    env->dfbridge_bin = dfbridge_bin;
    const char *tmp = getenv("TMPDIR");
    snprintf(env->dir, sizeof env->dir, "%s/dfbridge-it.XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(env->dir))
        return -1;
    snprintf(env->key_path, sizeof env->key_path, "%s/bot.pem", env->dir);
    snprintf(env->pub_path, sizeof env->pub_path, "%s/bot.pub.pem", env->dir);
    snprintf(env->pod_log, sizeof env->pod_log, "%s/dfpod.log", env->dir);
    snprintf(env->bridge_log, sizeof env->bridge_log, "%s/dfbridge.log", env->dir);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return write_key_pair(env->key_path, env->pub_path);
}

static pid_t
spawn(char *const argv[], const char *log_path)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            close(null);
        }
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

/*  A loopback port for a server started later, taken BELOW the kernel's
    ephemeral range: a port bind(0) hands out can go, before our server
    binds it, to another process's bind(0) or outgoing connection (tests run
    side by side), and the server then fails with EADDRINUSE. Random in
    [10000, low end of the range), checked free by binding it; the same rule
    as tests/pylib/dftest.py free_port. */
static int
try_bind(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    socklen_t len = sizeof a;
    int got = -1;
    if (bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(s, (struct sockaddr *)&a, &len) == 0)
        got = ntohs(a.sin_port);
    close(s);
    return got;
}

static int
free_port(void)
{
    static unsigned seed;
    if (!seed)
        seed = (unsigned)getpid() ^ (unsigned)time(NULL);
    int low = 32768;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%d", &low) != 1)
            low = 32768;
        fclose(f);
    }
    if (low > 10001)
        for (int i = 0; i < 200; i++) {
            int port = try_bind(10000 + (int)(rand_r(&seed) % (unsigned)(low - 10000)));
            if (port > 0)
                return port;
        }
    return try_bind(0);
}

int
h_pod_start(h_env_t *env, const char *const *extra_args)
{
    char port_file[300];
    snprintf(port_file, sizeof port_file, "%s/pod.port", env->dir);
    unlink(port_file);
    const char *argv[64];
    int n = 0;
    argv[n++] = env->dfpod_bin;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--port-file";
    argv[n++] = port_file;
    argv[n++] = "--public-key";
    argv[n++] = env->pub_path;
    argv[n++] = "--bot-username";
    argv[n++] = "it-bot";
    for (int i = 0; extra_args && extra_args[i] && n < 62; i++)
        argv[n++] = extra_args[i];
    argv[n] = NULL;
    env->pod_pid = spawn((char *const *)argv, env->pod_log);
    if (env->pod_pid < 0)
        return -1;
    /*  The port file appears only once dfpod listens: poll for it with a
        bound, and give up early if dfpod died. */
    int64_t deadline = h_now_ms() + 10000;
    while (h_now_ms() < deadline) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            int port = 0;
            int ok = fscanf(f, "%d", &port);
            fclose(f);
            if (ok == 1 && port > 0) {
                env->pod_port = port;
                return 0;
            }
        }
        if (h_child_wait(&env->pod_pid, 0) != -2)
            return -1;
        poll(NULL, 0, 10);
    }
    return -1;
}

int
h_bridge_start(h_env_t *env, const char *extra_yaml)
{
    env->pub_port = free_port();
    if (env->pub_port < 0)
        return -1;
    snprintf(env->pub_endpoint, sizeof env->pub_endpoint, "tcp://127.0.0.1:%d", env->pub_port);
    char cfg[300];
    snprintf(cfg, sizeof cfg, "%s/bridge.yaml", env->dir);
    FILE *f = fopen(cfg, "w");
    if (!f)
        return -1;
    fprintf(f,
            "scheme: http\nhost: 127.0.0.1\nport: %d\n"
            "bot:\n  username: it-bot\n  privateKey:\n    path: %s\n"
            "datafeed:\n  version: v2\n  retry:\n    initialIntervalMillis: 50\n"
            "    maxIntervalMillis: 400\n"
            "bridge:\n  publish: %s\n  logLevel: debug\n%s",
            env->pod_port, env->key_path, env->pub_endpoint, extra_yaml ? extra_yaml : "");
    fclose(f);
    const char *argv[] = {env->dfbridge_bin, "--config", cfg, NULL};
    env->bridge_pid = spawn((char *const *)argv, env->bridge_log);
    return env->bridge_pid > 0 ? 0 : -1;
}

static int
decode_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -3;
}

int
h_child_wait(pid_t *pid, int timeout_ms)
{
    if (*pid <= 0)
        return -3;
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(*pid, &st, WNOHANG);
        if (r == *pid) {
            *pid = 0;
            return decode_status(st);
        }
        if (r < 0)
            return -3;
        if (h_now_ms() >= deadline)
            return -2;
        poll(NULL, 0, 2);
    }
}

int
h_child_stop(pid_t *pid, int sig, int timeout_ms, int64_t *elapsed_ms)
{
    if (*pid <= 0)
        return -3;
    int64_t t0 = h_now_ms();
    kill(*pid, sig);
    int rc = h_child_wait(pid, timeout_ms);
    if (elapsed_ms)
        *elapsed_ms = h_now_ms() - t0;
    if (rc == -2) {
        kill(*pid, SIGKILL);
        h_child_wait(pid, 5000);
        return -1;
    }
    return rc;
}

void
h_dump_file(const char *title, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    fprintf(stderr, "----- %s (%s) -----\n", title, path);
    char line[4096];
    int n = 0;
    /*  Keep the dump readable: the last lines matter most, but print all
        up to a bound. */
    while (fgets(line, sizeof line, f) && n++ < 400)
        fputs(line, stderr);
    fclose(f);
}

void
h_env_destroy(h_env_t *env)
{
    if (env->bridge_pid > 0)
        h_child_stop(&env->bridge_pid, SIGKILL, 5000, NULL);
    if (env->pod_pid > 0)
        h_child_stop(&env->pod_pid, SIGTERM, 5000, NULL);
    if (h_failures || getenv("H_VERBOSE")) {
        h_dump_file("dfbridge stderr", env->bridge_log);
        h_dump_file("dfpod stderr", env->pod_log);
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", env->dir);
    if (env->dir[0] && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", env->dir);
    curl_global_cleanup();
}

typedef struct {
    char *data;
    size_t len;
} h_body_t;

static size_t
on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    h_body_t *b = ud;
    size_t n = size * nmemb;
    char *p = realloc(b->data, b->len + n + 1);
    if (!p)
        return 0;
    b->data = p;
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = 0;
    return n;
}

int
h_admin(h_env_t *env, const char *method, const char *path, const char *body, char **body_out)
{
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", env->pod_port, path);
    h_body_t b = {0};
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    if (body_out)
        *body_out = b.data ? b.data : strdup("");
    else
        free(b.data);
    return (int)status;
}

json_t *
h_admin_json(h_env_t *env, const char *path)
{
    char *body = NULL;
    int st = h_admin(env, "GET", path, NULL, &body);
    json_t *j = NULL;
    if (st == 200) {
        json_error_t err;
        j = json_loads(body, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    }
    free(body);
    return j;
}

long long
h_pod_counter(h_env_t *env, const char *path)
{
    json_t *j = h_admin_json(env, "/admin/counters");
    if (!j)
        return -1;
    json_t *cur = j;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok && cur;
         tok = strtok_r(NULL, ".", &save))
        cur = json_object_get(cur, tok);
    long long v = json_is_integer(cur) ? json_integer_value(cur) : -1;
    json_decref(j);
    return v;
}

bool
h_wait_counter(h_env_t *env, const char *path, long long want, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    while (h_now_ms() < deadline) {
        if (h_pod_counter(env, path) >= want)
            return true;
        if (env->bridge_pid > 0 && h_child_wait(&env->bridge_pid, 20) != -2)
            return false;
    }
    return false;
}

/* ---- added for the delivery_* tests (issue 4) ------------------------- */

int
h_free_port(void)
{
    return free_port();
}

pid_t
h_bridge_spawn(h_env_t *env, const char *tag, const char *pub_endpoint, const char *extra_yaml,
               char *log_path, size_t log_len)
{
    char cfg[300];
    snprintf(cfg, sizeof cfg, "%s/bridge-%s.yaml", env->dir, tag);
    snprintf(log_path, log_len, "%s/bridge-%s.log", env->dir, tag);
    FILE *f = fopen(cfg, "w");
    if (!f)
        return -1;
    fprintf(f,
            "scheme: http\nhost: 127.0.0.1\nport: %d\n"
            "bot:\n  username: it-bot\n  privateKey:\n    path: %s\n"
            "datafeed:\n  version: v2\n  retry:\n    initialIntervalMillis: 50\n"
            "    maxIntervalMillis: 400\n"
            "bridge:\n  publish: %s\n  logLevel: debug\n%s",
            env->pod_port, env->key_path, pub_endpoint, extra_yaml ? extra_yaml : "");
    fclose(f);
    const char *argv[] = {env->dfbridge_bin, "--config", cfg, NULL};
    return spawn((char *const *)argv, log_path);
}
