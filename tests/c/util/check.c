#include "check.h"

#include <string.h>

int chai_test_passed, chai_test_failed;

void chai_test_check_err(chai_status got, chai_status code, const char *needle, const char *expr,
                         const char *file, int line) {
  if (got == code && (!needle || strstr(chai_last_error(), needle))) {
    chai_test_passed++;
    return;
  }
  chai_test_failed++;
  fprintf(stderr, "%s:%d: %s returned %d (\"%s\"), expected %d with \"%s\"\n", file, line, expr,
          (int)got, chai_last_error(), (int)code, needle ? needle : "");
}

double chai_test_max_abs_diff(const float *a, const double *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (d > m || d != d) m = d != d ? INFINITY : d;
  }
  return m;
}

double chai_test_max_abs_diff_f(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (d > m || d != d) m = d != d ? INFINITY : d;
  }
  return m;
}

int chai_test_finish(void) {
  printf("%d passed, %d failed\n", chai_test_passed, chai_test_failed);
  return chai_test_failed ? 1 : 0;
}
