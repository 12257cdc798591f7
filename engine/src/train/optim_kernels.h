/* Internal: vectorised twins of chai_adamw_update_ref (src/train/optim.c). Same arguments; results
 * differ from the ref by float rounding only (FMA contraction). Call _avx2 only at SIMD level >=
 * AVX2 and _avx512 only at AVX512. */
#ifndef CHAI_OPTIM_KERNELS_H
#define CHAI_OPTIM_KERNELS_H

#include <stddef.h>

#include "chai/train.h"

void chai_adamw_update_avx2(float *p, const float *g, float *m, float *v, size_t n,
                            const chai_adamw_consts *k);
void chai_adamw_update_avx512(float *p, const float *g, float *m, float *v, size_t n,
                              const chai_adamw_consts *k);

#endif
