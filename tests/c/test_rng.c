/* The seeded RNG: same seed → same bits, for any thread count; sane distributions. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "chai/chai.h"
#include "check.h"

static void fill(float *out, size_t n, int threads, uint64_t seed, int normal) {
  omp_set_num_threads(threads);
  chai_rng r;
  chai_rng_init(&r, seed);
  if (normal)
    chai_rng_fill_normal(&r, out, n, 0, 1);
  else
    chai_rng_fill_uniform(&r, out, n, -1, 1);
}

int main(void) {
  size_t n = 200000; /* above the parallel threshold */
  float *a = malloc(n * 4), *b = malloc(n * 4);
  for (int normal = 0; normal <= 1; normal++) {
    fill(a, n, 1, 7, normal);
    fill(b, n, 2, 7, normal);
    CHECK(memcmp(a, b, n * 4) == 0);
    fill(b, n, 1, 8, normal);
    CHECK(memcmp(a, b, n * 4) != 0);
    double mean = 0, var = 0;
    for (size_t i = 0; i < n; i++) mean += a[i];
    mean /= n;
    for (size_t i = 0; i < n; i++) var += (a[i] - mean) * (a[i] - mean);
    var /= n;
    CHECK_CLOSE(mean, 0, 0.01);
    CHECK_CLOSE(var, normal ? 1.0 : 1.0 / 3.0, 0.01);
  }
  /* a fill of n then m equals a fill of n + m: the state is just (seed, counter) */
  chai_rng r;
  chai_rng_init(&r, 3);
  chai_rng_fill_uniform(&r, a, 10, 0, 1);
  chai_rng_fill_uniform(&r, a + 10, 5, 0, 1);
  CHECK(r.counter == 15);
  chai_rng_init(&r, 3);
  chai_rng_fill_uniform(&r, b, 15, 0, 1);
  CHECK(memcmp(a, b, 15 * 4) == 0);
  for (int i = 0; i < 1000; i++) {
    float u = chai_rng_uniform(&r);
    if (u < 0 || u >= 1) CHECK(0);
  }
  free(a), free(b);
  return chai_test_finish();
}
