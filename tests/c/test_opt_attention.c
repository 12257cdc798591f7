/* The model's GEMM attention (engine/src/model/opt_attention.c) against the ops reference
 * chai_attention_forward: causal and not, key masks with fully masked rows, fewer queries than keys
 * (a KV cache), strided q/k/v slices of one buffer, several query blocks, clustered score heads. */
#include "../../engine/src/model/opt_model.h"
#include "../../engine/src/team.h"
#include "opt_fixture.h"

/* opt_attention_forward as the body of a held team (a decode step's). */
typedef struct {
  float *out;
  const float *q, *k, *v;
  const chai_attention_args *a;
  float *scratch;
  size_t sf;
} attn_call;
static chai_status attn_body(void *ctx) {
  attn_call *c = ctx;
  return opt_attention_forward(c->out, c->q, c->k, c->v, c->a, c->scratch, c->sf);
}

static void one_case(int B, int Tq, int Tk, int H, int D, bool causal, bool masked,
                     const int *score_head) {
  int hd = H * D, ts = 3 * hd; /* q, k, v interleaved per token, as a fused QKV buffer */
  size_t nq = (size_t)B * Tq * ts, nk = (size_t)B * Tk * ts;
  float *qbuf = malloc(nq * 4), *kvbuf = malloc(nk * 4);
  chai_rng rng;
  chai_rng_init(&rng, (uint64_t)(B * 1000 + Tq * 10 + Tk));
  chai_rng_fill_normal(&rng, qbuf, nq, 0, 1);
  chai_rng_fill_normal(&rng, kvbuf, nk, 0, 1);
  float *mask = malloc((size_t)B * Tk * 4);
  for (int b = 0; b < B; b++)
    for (int j = 0; j < Tk; j++)
      mask[b * Tk + j] = !(masked && (j < b + 1 || j == Tk / 2));
  chai_attention_args a = {.B = B,
                           .Tq = Tq,
                           .Tk = Tk,
                           .H = H,
                           .D = D,
                           .q_ts = ts,
                           .k_ts = ts,
                           .v_ts = ts,
                           .scale = 0.3f,
                           .causal = causal,
                           .key_mask = masked ? mask : NULL,
                           .score_head = score_head};
  size_t no = (size_t)B * Tq * hd;
  float *want = malloc(no * 4), *got = malloc(no * 4);
  CHECK_OK(chai_attention_forward(want, NULL, qbuf, kvbuf + hd, kvbuf + 2 * hd, &a));
  size_t sf = opt_attention_scratch_floats(Tk, 8);
  float *scratch = malloc(sf * 4);
  CHECK_OK(opt_attention_forward(got, qbuf, kvbuf + hd, kvbuf + 2 * hd, &a, scratch, sf));
  double d = chai_test_max_abs_diff_f(got, want, no);
  if (d > 1e-5)
    printf("B=%d Tq=%d Tk=%d H=%d causal=%d masked=%d clustered=%d: %.3g\n", B, Tq, Tk, H, causal,
           masked, score_head != NULL, d);
  CHECK(d <= 1e-5);
  /* in a held team, the same bits */
  float *held = malloc(no * 4);
  attn_call call = {held, qbuf, kvbuf + hd, kvbuf + 2 * hd, &a, scratch, sf};
  CHECK_OK(chai_team_hold(attn_body, &call));
  CHECK(memcmp(held, got, no * 4) == 0);
  free(held);
  CHECK_ERR(opt_attention_forward(got, qbuf, kvbuf + hd, kvbuf + 2 * hd, &a, scratch, 1),
            CHAI_ERR_STATE, "scratch too small");
  free(qbuf);
  free(kvbuf);
  free(mask);
  free(want);
  free(got);
  free(scratch);
}

/* One query (decoding) goes through the row kernels: at every SIMD level this CPU has, head
 * widths that are not a multiple of a vector, clustered heads whose members sit in the other
 * thread's share, enough keys for the thread team, and rows with every key masked; each case also
 * in a held team (one_case). */
static void decode_cases(void) {
  int heads[6] = {0, 0, 2, 0, 4, 2}; /* head 0 scores for 0, 1 and 3; head 2 for 2 and 5 */
  for (int l = CHAI_SIMD_REF; l <= CHAI_SIMD_AVX512; l++) {
    if (chai_simd_force((chai_simd)l) != (chai_simd)l) continue;
    for (int masked = 0; masked < 2; masked++) {
      one_case(3, 1, 9, 4, 64, true, masked, NULL);
      one_case(2, 1, 33, 6, 20, true, masked, heads);
      one_case(1, 1, 700, 12, 64, true, masked, NULL); /* 2^19 multiply-adds: threads */
      one_case(2, 1, 600, 6, 24, false, masked, heads);
      one_case(2, 1, 100, 6, 24, true, masked, heads); /* threads in a held team only */
      one_case(2, 1, 1, 3, 16, true, masked, NULL);    /* masked: row 0 and 1 see no key */
    }
  }
  chai_simd_force(chai_simd_best());
}

int main(void) {
  if (chai_blas_init() != CHAI_OK) return 2;
  decode_cases();
  int heads[4] = {0, 0, 2, 2}; /* two clusters: head 0 scores for 0-1, head 2 for 2-3 */
  for (int causal = 0; causal < 2; causal++)
    for (int masked = 0; masked < 2; masked++) {
      one_case(2, 7, 7, 4, 8, causal, masked, NULL);
      one_case(3, 1, 9, 4, 8, causal, masked, NULL);      /* one decode step */
      one_case(2, 5, 12, 4, 8, causal, masked, NULL);     /* prefill after a cache */
      one_case(1, 150, 150, 2, 16, causal, masked, NULL); /* three query blocks */
      one_case(2, 7, 10, 4, 8, causal, masked, heads);
    }
  int bad[4] = {1, 0, 2, 2}; /* head 1 is not a representative */
  chai_attention_args a = {.B = 1,
                           .Tq = 2,
                           .Tk = 2,
                           .H = 4,
                           .D = 2,
                           .q_ts = 8,
                           .k_ts = 8,
                           .v_ts = 8,
                           .scale = 1,
                           .causal = true,
                           .score_head = bad};
  float buf[64] = {0}, scratch[1024];
  CHECK_ERR(opt_attention_forward(buf, buf, buf, buf, &a, scratch, 1024), CHAI_ERR_ARG,
            "score_head[0] = 1");
  a.score_head = NULL;
  a.Tk = 1;
  CHECK_ERR(opt_attention_forward(buf, buf, buf, buf, &a, scratch, 1024), CHAI_ERR_ARG,
            "bad sizes");
  return chai_test_finish();
}
