#include "chai/rng.h"

#include <math.h>

static chai_rng global_rng;

void chai_rng_init(chai_rng *r, uint64_t seed) {
  r->seed = seed;
  r->counter = 0;
}

chai_rng *chai_rng_global(void) { return &global_rng; }

/* splitmix64's finaliser over a mix of seed, stream and counter. */
static uint64_t hash3(uint64_t seed, uint64_t stream, uint64_t counter) {
  uint64_t z = seed * 0x9e3779b97f4a7c15ull ^ (stream + 1) * 0xd1b54a32d192ed03ull;
  z += counter * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static float u01(uint64_t h) { return (float)(h >> 40) * (1.0f / 16777216.0f); }

uint64_t chai_rng_u64(chai_rng *r) { return hash3(r->seed, 0, r->counter++); }

float chai_rng_uniform(chai_rng *r) { return u01(chai_rng_u64(r)); }

void chai_rng_fill_uniform(chai_rng *r, float *out, size_t n, float lo, float hi) {
  uint64_t base = r->counter;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) out[i] = lo + (hi - lo) * u01(hash3(r->seed, 0, base + i));
  r->counter += n;
}

void chai_rng_fill_normal(chai_rng *r, float *out, size_t n, float mean, float std) {
  uint64_t base = r->counter;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) {
    /* Box-Muller from two independent streams at the same counter; u1 in (0, 1]. */
    double u1 = ((double)(hash3(r->seed, 1, base + i) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(hash3(r->seed, 2, base + i) >> 11) * (1.0 / 9007199254740992.0);
    out[i] = mean + std * (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
  }
  r->counter += n;
}
