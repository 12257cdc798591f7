/* chai — f16 and bf16 conversion. Each bulk converter has a scalar _ref twin; the dispatching
 * version uses F16C / AVX-512-BF16 when the CPU has them (see chai/cpu.h). */
#ifndef CHAI_HALF_H
#define CHAI_HALF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* IEEE binary16 <-> binary32, round to nearest even, NaN/Inf/subnormals preserved. */
float chai_f16_to_f32(uint16_t h);
uint16_t chai_f32_to_f16(float f);
/* bfloat16 <-> binary32, round to nearest even, NaN kept quiet. */
float chai_bf16_to_f32(uint16_t h);
uint16_t chai_f32_to_bf16(float f);

void chai_f16_to_f32_array(float *out, const uint16_t *in, size_t n);
void chai_f32_to_f16_array(uint16_t *out, const float *in, size_t n);
void chai_bf16_to_f32_array(float *out, const uint16_t *in, size_t n);
void chai_f32_to_bf16_array(uint16_t *out, const float *in, size_t n);

void chai_f16_to_f32_array_ref(float *out, const uint16_t *in, size_t n);
void chai_f32_to_f16_array_ref(uint16_t *out, const float *in, size_t n);
void chai_bf16_to_f32_array_ref(float *out, const uint16_t *in, size_t n);
void chai_f32_to_bf16_array_ref(uint16_t *out, const float *in, size_t n);

#ifdef __cplusplus
}
#endif
#endif
