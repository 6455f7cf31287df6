/*  Test harness for the end-to-end tests: a bot key pair, a running dfpod and
    dfbridge as child processes, and the pod's control interface over HTTP.
    Every wait is bounded; nothing here sleeps to synchronise when a signal
    (a file, an HTTP answer, a process exit) exists. */
#ifndef HARNESS_H
#define HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#define H_CHECK(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            h_failures++;                                                                          \
        }                                                                                          \
    } while (0)

extern int h_failures;

typedef struct {
    char dir[256];      /* scratch folder, removed by h_env_destroy */
    char key_path[300]; /* bot private key (PKCS#8 PEM) */
    char pub_path[300]; /* its public key */
    pid_t pod_pid;
    int pod_port;
    pid_t bridge_pid;
    int pub_port; /* the bridge's PUB port */
    char pub_endpoint[64];
    char bridge_log[300];
    char pod_log[300];
    const char *dfpod_bin;
    const char *dfbridge_bin;
} h_env_t;

/*  Milliseconds on a monotonic clock. */
int64_t h_now_ms(void);

/*  Makes a scratch folder and an RSA-2048 bot key pair in it. 0 or -1. */
int h_env_init(h_env_t *env, const char *dfpod_bin, const char *dfbridge_bin);

/*  Starts dfpod on 127.0.0.1 with a free port and extra arguments (NULL-
    terminated array, may be NULL); waits (bounded) for its port file. */
int h_pod_start(h_env_t *env, const char *const *extra_args);

/*  Writes a bridge config (extra_yaml appended verbatim, may be NULL) and
    starts dfbridge publishing on a free loopback port. Does not wait. */
int h_bridge_start(h_env_t *env, const char *extra_yaml);

/*  Sends sig to the child and waits at most timeout_ms for it to exit.
    Returns its exit status (0..255), 128+signal if killed by a signal,
    or -1 on timeout (the child is then killed). *elapsed_ms if not NULL. */
int h_child_stop(pid_t *pid, int sig, int timeout_ms, int64_t *elapsed_ms);

/*  Waits at most timeout_ms for the child to exit by itself; status as
    above, -2 if still running. */
int h_child_wait(pid_t *pid, int timeout_ms);

/*  Stops whatever runs, prints the logs when there were failures, removes
    the scratch folder. */
void h_env_destroy(h_env_t *env);

/*  Control interface. h_admin returns the HTTP status (or -1) and, if
    body_out, a malloc'd NUL-terminated response body. */
int h_admin(h_env_t *env, const char *method, const char *path, const char *body, char **body_out);

/*  GET path and parse it as JSON (jansson); NULL on any failure. */
json_t *h_admin_json(h_env_t *env, const char *path);

/*  Counter value at a dotted path in /admin/counters (e.g. "calls.read"),
    or -1. */
long long h_pod_counter(h_env_t *env, const char *path);

/*  Polls a pod counter (an HTTP answer is the signal, not a sleep) until it
    is >= want; false after timeout_ms or as soon as the bridge (if running)
    exits. */
bool h_wait_counter(h_env_t *env, const char *path, long long want, int timeout_ms);

/*  Prints a file to stderr (for failure diagnostics). */
void h_dump_file(const char *title, const char *path);

/* ---- added for the delivery_* tests (issue 4) ---- */

/*  A free loopback TCP port (bound and released), or -1. */
int h_free_port(void);

/*  Starts one more dfbridge, independent of env->bridge_pid (restarts on
    the same ports, HA pairs): config <dir>/bridge-<tag>.yaml publishing on
    pub_endpoint with extra_yaml appended under "bridge:" (indent 2), log
    <dir>/bridge-<tag>.log (appended, path written to log_path). Does not
    wait. Returns the pid or -1; the caller stops it. */
pid_t h_bridge_spawn(h_env_t *env, const char *tag, const char *pub_endpoint,
                     const char *extra_yaml, char *log_path, size_t log_len);

#endif
