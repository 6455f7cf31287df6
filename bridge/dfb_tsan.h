/*  dfb_tsan.h: ThreadSanitizer settings compiled into dfbridge (included
    once, by dfbridge.c); empty unless built with -fsanitize=thread. The
    consumers' programs have the same rule (consumers/dfc_tsan.h).

    libzmq is not built with -fsanitize=thread. The replay thread hands its
    answer bodies to libzmq zero-copy (zmq_msg_init_data: the I/O thread
    writes them and calls our free function), through libzmq's lock-free
    pipes whose atomics TSan cannot see, so every such body would look
    raced. A report is suppressed only when a frame of libzmq is in one of
    its access stacks; races between our own threads on our own memory are
    still reported. Compiled in, so that a dfbridge started by any test
    (not only the bridge's, which also pass tests/tsan.supp) gets it, and
    TSAN_OPTIONS keeps working as given. */
#ifndef DFB_TSAN_H
#define DFB_TSAN_H

#if defined(__SANITIZE_THREAD__)
const char *__tsan_default_suppressions(void);
const char *
__tsan_default_suppressions(void)
{
    /* called_from_lib: libzmq's own accesses through intercepted calls
       are not recorded (a report suppressed one by one costs more with
       every report seen: see tests/tsan.supp) */
    return "race:libzmq.so\ncalled_from_lib:libzmq.so\n";
}
/*  A longer access history, so that the other stack of a report (inside
    libzmq) is found and the suppression can match. */
const char *__tsan_default_options(void);
const char *
__tsan_default_options(void)
{
    return "history_size=7";
}
#endif

#endif
