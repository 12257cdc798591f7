/* chai — status codes and the per-thread last error message. */
#ifndef CHAI_ERROR_H
#define CHAI_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* Every core function that can fail returns a chai_status: 0 on success, a negative code otherwise,
 * and leaves a human-readable message for chai_last_error(). */
typedef enum chai_status {
  CHAI_OK = 0,
  CHAI_ERR_ARG = -1,     /* a bad argument: wrong shape, dtype, index, option */
  CHAI_ERR_NOMEM = -2,   /* an allocation failed */
  CHAI_ERR_IO = -3,      /* a file could not be read or written */
  CHAI_ERR_FORMAT = -4,  /* a file or buffer is malformed */
  CHAI_ERR_STATE = -5,   /* the object is in the wrong state (freed, frozen, ...) */
  CHAI_ERR_UNSUPPORTED = -6,
  CHAI_ERR_INTERRUPTED = -7, /* chai_interrupt() was called while a long loop ran */
  CHAI_ERR_NETWORK = -8,
} chai_status;

/* The message of the last failure on this thread; never NULL ("" when none). Valid until the next
 * failing call on the same thread. */
const char *chai_last_error(void);

/* Records a printf-style message for chai_last_error() and returns `status`, so a failing path reads
 * `return chai_error(CHAI_ERR_ARG, "bad dim %d", d);`. */
chai_status chai_error(chai_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefixes the current message with printf-style context ("loading x: <old message>") and returns
 * `status` unchanged. */
chai_status chai_error_context(chai_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The name of a status ("out of memory", ...). */
const char *chai_status_name(chai_status status);

/* Ctrl-C support: chai_interrupt() (async-signal-safe) asks long C loops to stop; they return
 * CHAI_ERR_INTERRUPTED at their next check. chai_interrupt_clear() re-arms. */
void chai_interrupt(void);
void chai_interrupt_clear(void);
int chai_interrupted(void);

/* Internal invariants only: never for anything a user can cause. */
#define CHAI_ASSERT(cond)                                                                          \
  do {                                                                                             \
    if (!(cond)) chai_assert_fail(#cond, __FILE__, __LINE__);                                      \
  } while (0)
_Noreturn void chai_assert_fail(const char *what, const char *file, int line);

#ifdef __cplusplus
}
#endif
#endif
