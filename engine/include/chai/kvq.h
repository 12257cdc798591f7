/* chai — the int8 KV cache: K and V rows stored as int8 codes with one f32 scale per token and
 * head, and attention that reads the codes directly (each row is dequantized in registers, never
 * into a copy of the cache). See docs/quant.md, "The int8 KV cache".
 *
 * Layout of one sequence's cache (the caller owns it, Tk tokens so far):
 *   K codes (Tk, S·D) int8 and K scales (Tk, S) f32: S score heads (all H heads in a dense layer,
 *     the cluster representatives in a CHAI-clustered one, which keeps only their K rows);
 *   V codes (Tk, H·D) int8 and V scales (Tk, H) f32: every value head.
 * A row x (D floats) is stored as s = amax/127 (amax = max |x_d|) and c_d = rhe(clamp(x_d/s, −127,
 * 127)) (round half to even), so x_d ≈ s·c_d within s/2; a zero row (or one whose s underflows)
 * gets s = 0 and zero codes. A row holding a NaN or Inf gets s = NaN and zero codes, so attention
 * over it gives NaN, as the f32 kernel would.
 */
#ifndef CHAI_KVQ_H
#define CHAI_KVQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chai/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Stores one token: x (heads, D) f32 -> codes (heads, D), scales (heads), as above (heads, D >= 1;
 * no failure mode: a non-finite row is stored as zero codes with scale NaN). The SIMD versions give
 * the same bits as the _ref twin. */
void chai_kvq_store(int8_t *codes, float *scales, const float *x, int heads, int D);
void chai_kvq_store_ref(int8_t *codes, float *scales, const float *x, int heads, int D);

typedef struct chai_kvq_attention_args {
  int Tq, Tk;  /* queries, and keys in the cache (query i sits at key position Tk − Tq + i) */
  int S, H, D; /* score heads, value heads, head size */
  int q_ts;    /* floats from one query's row to the next (>= S·D); query s's head at s·D */
  bool causal; /* query i sees keys 0..Tk − Tq + i */
  const float *key_mask; /* (Tk): 0 = padding (never attended), anything else attends; or NULL */
  const int *slot; /* (H): value head h uses the probabilities of score head slot[h]; NULL means
                      slot[h] = h and needs S == H. Every score head must be used. */
} chai_kvq_attention_args;

/* out (Tq, H·D) packed = attention of q (Tq, q_ts; S heads) over the int8 cache: for score head
 * s, query i and key j, score = (q_i,s · K_j,s) · (ks[j,s] / sqrt(D)); masked keys and keys past
 * the causal limit get −inf; p = softmax over the keys; out_i,h = Σ_j p_i,slot[h],j · vs[j,h] ·
 * V_j,h. A query that sees no key (all masked, or Tq > Tk under causal) gets zeros, as
 * chai_attention_forward. Keys with p = 0 are skipped, so a masked token's V row is never read
 * (its K row is scored, and the score discarded). `work` is scratch of
 * chai_kvq_attention_work_bytes(a) bytes (S·min(Tq, 16)·Tk floats), or NULL to allocate it
 * (CHAI_ERR_NOMEM). Threads split the heads; the result does not depend on the thread count.
 * CHAI_ERR_ARG for bad sizes, strides, a slot out of range or a score head no value head uses.
 * The SIMD version (AVX-512 or AVX2, by chai_simd_level()) agrees with the _ref twin to float
 * rounding (sums in another order, a vector exp). */
size_t chai_kvq_attention_work_bytes(const chai_kvq_attention_args *a);
chai_status chai_kvq_attention(float *out, const float *q, const int8_t *k, const float *ks,
                               const int8_t *v, const float *vs, const chai_kvq_attention_args *a,
                               void *work);
chai_status chai_kvq_attention_ref(float *out, const float *q, const int8_t *k, const float *ks,
                                   const int8_t *v, const float *vs,
                                   const chai_kvq_attention_args *a, void *work);

#ifdef __cplusplus
}
#endif
#endif
