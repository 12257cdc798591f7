/* chai — a seeded, counter-based random generator. Draw i of a fill depends only on (seed, counter
 * + i), so a fill gives the same bits for any thread count and the state is two integers (savable). */
#ifndef CHAI_RNG_H
#define CHAI_RNG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct chai_rng {
  uint64_t seed;
  uint64_t counter;
} chai_rng;

void chai_rng_init(chai_rng *r, uint64_t seed);
/* The process-wide generator that chai.seed(n) reseeds (initial seed 0). */
chai_rng *chai_rng_global(void);
/* One 64-bit draw. */
uint64_t chai_rng_u64(chai_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float chai_rng_uniform(chai_rng *r);
/* out[i] = uniform [lo, hi) draws / normal(mean, std) draws; the counter advances by n. */
void chai_rng_fill_uniform(chai_rng *r, float *out, size_t n, float lo, float hi);
void chai_rng_fill_normal(chai_rng *r, float *out, size_t n, float mean, float std);

#ifdef __cplusplus
}
#endif
#endif
