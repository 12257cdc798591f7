#include "chai/error.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[1024];
static volatile sig_atomic_t interrupt_flag;

const char *chai_last_error(void) { return last_error; }

chai_status chai_error(chai_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return status;
}

chai_status chai_error_context(chai_status status, const char *fmt, ...) {
  char prefix[512], old[sizeof last_error];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, last_error, sizeof old);
  size_t n = strlen(prefix);
  memcpy(last_error, prefix, n);
  if (n + 2 < sizeof last_error) {
    memcpy(last_error + n, ": ", 2);
    n += 2;
  }
  size_t rest = strnlen(old, sizeof old - 1);
  if (rest > sizeof last_error - 1 - n) rest = sizeof last_error - 1 - n;
  memcpy(last_error + n, old, rest);
  last_error[n + rest] = 0;
  return status;
}

const char *chai_status_name(chai_status status) {
  switch (status) {
  case CHAI_OK: return "ok";
  case CHAI_ERR_ARG: return "bad argument";
  case CHAI_ERR_NOMEM: return "out of memory";
  case CHAI_ERR_IO: return "i/o error";
  case CHAI_ERR_FORMAT: return "malformed data";
  case CHAI_ERR_STATE: return "bad state";
  case CHAI_ERR_UNSUPPORTED: return "unsupported";
  case CHAI_ERR_INTERRUPTED: return "interrupted";
  case CHAI_ERR_NETWORK: return "network error";
  }
  return "unknown error";
}

void chai_interrupt(void) { interrupt_flag = 1; }
void chai_interrupt_clear(void) { interrupt_flag = 0; }
int chai_interrupted(void) { return interrupt_flag != 0; }

void chai_assert_fail(const char *what, const char *file, int line) {
  fprintf(stderr, "chai: internal error: %s (%s:%d)\n", what, file, line);
  abort();
}
