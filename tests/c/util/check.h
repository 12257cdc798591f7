/* A tiny test harness: CHECK* macros record failures and go on; chai_test_finish() prints
 * "N passed, N failed" and returns the exit code. */
#ifndef CHAI_TEST_CHECK_H
#define CHAI_TEST_CHECK_H

#include <math.h>
#include <stdio.h>

#include "chai/error.h"

extern int chai_test_passed, chai_test_failed;

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (cond) {                                                                                    \
      chai_test_passed++;                                                                          \
    } else {                                                                                       \
      chai_test_failed++;                                                                          \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                     \
    }                                                                                              \
  } while (0)

#define CHECK_OK(expr)                                                                             \
  do {                                                                                             \
    chai_status st_ = (expr);                                                                      \
    if (st_ == CHAI_OK) {                                                                          \
      chai_test_passed++;                                                                          \
    } else {                                                                                       \
      chai_test_failed++;                                                                          \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, chai_last_error());     \
    }                                                                                              \
  } while (0)

/* expr must fail with `code` and its message must contain `needle`. */
#define CHECK_ERR(expr, code, needle) chai_test_check_err((expr), (code), (needle), #expr, __FILE__, __LINE__)

#define CHECK_CLOSE(a, b, tol)                                                                     \
  do {                                                                                             \
    double a_ = (a), b_ = (b);                                                                     \
    if (fabs(a_ - b_) <= (tol)) {                                                                  \
      chai_test_passed++;                                                                          \
    } else {                                                                                       \
      chai_test_failed++;                                                                          \
      fprintf(stderr, "%s:%d: %s = %.9g, expected %.9g (tol %g)\n", __FILE__, __LINE__, #a, a_,    \
              b_, (double)(tol));                                                                  \
    }                                                                                              \
  } while (0)

void chai_test_check_err(chai_status got, chai_status code, const char *needle, const char *expr,
                         const char *file, int line);
/* max |a[i]-b[i]| over n floats vs doubles */
double chai_test_max_abs_diff(const float *a, const double *b, size_t n);
double chai_test_max_abs_diff_f(const float *a, const float *b, size_t n);
int chai_test_finish(void);

#endif
