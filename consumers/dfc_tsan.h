/*  dfc_tsan.h: ThreadSanitizer settings compiled into a program that uses
    libzmq (the consumer tests, dftail). Include it in exactly one file of
    the program; it is empty unless built with -fsanitize=thread. */
#ifndef DFC_TSAN_H
#define DFC_TSAN_H

#if defined(__SANITIZE_THREAD__)
/*  libzmq is not built with -fsanitize=thread: a message body allocated by
    one thread is handed to another through libzmq's lock-free pipes, whose
    atomics TSan cannot see, so every body would look raced. A report is
    suppressed only when a frame of libzmq is in one of its two access
    stacks (libzmq writing the body); races between our own threads on our
    own memory are still reported. Compiled in, so TSAN_OPTIONS
    (halt_on_error...) keeps working as given. */
const char *__tsan_default_suppressions(void);
const char *
__tsan_default_suppressions(void)
{
    /* with CURVE the body is decrypted into the message by libsodium in
       libzmq's I/O thread: the same hand-off, a libsodium frame on top */
    /* called_from_lib: libzmq's own accesses through intercepted calls
       (the I/O thread's recv/memcpy into a body) are not recorded, so the
       receiver's reads of a body are not reported and suppressed one by one
       (a cost that grows with every report seen: see tests/tsan.supp) */
    return "race:libzmq.so\nrace:libsodium.so\ncalled_from_lib:libzmq.so\n"
           "called_from_lib:libsodium.so\n";
}
/*  A longer access history, so that the other stack of a report (the
    write inside libzmq) is found and the suppression above can match. */
const char *__tsan_default_options(void);
const char *
__tsan_default_options(void)
{
    return "history_size=7";
}
#endif

#endif
