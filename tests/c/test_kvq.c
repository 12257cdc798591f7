/* The int8 KV cache (chai/kvq.h): storing rows (the rule, ties, zero/tiny/NaN rows, SIMD = ref bit
 * for bit), attention over the codes against the f32 kernels run on the dequantized cache (dense:
 * ops' chai_attention_forward; clustered slot maps: heads' chai_heads_attention_forward), SIMD
 * against the _ref twin, causal and masked rows, decode and prefill shapes, thread counts, and bad
 * arguments. */
#include <float.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../../engine/src/team.h"
#include "chai/chai.h"
#include "chai/heads.h"
#include "chai/kvq.h"
#include "check.h"

static float *randn(size_t n, uint64_t seed) {
  float *x = malloc((n ? n : 1) * sizeof(float));
  chai_rng r;
  chai_rng_init(&r, seed);
  chai_rng_fill_normal(&r, x, n, 0, 1);
  return x;
}

/* ---- store ---------------------------------------------------------------------------------- */

static void test_store(void) {
  /* ties: amax 127 gives s = 1, so halves round to even */
  float x[8] = {127, 0.5f, 1.5f, 2.5f, -2.5f, -0.5f, 126.5f, -3.5f};
  int8_t c[8];
  float s;
  chai_kvq_store_ref(c, &s, x, 1, 8);
  int8_t want[8] = {127, 0, 2, 2, -2, 0, 126, -4};
  CHECK(s == 1.0f && memcmp(c, want, 8) == 0);
  /* zero row, a row whose scale underflows, NaN and Inf rows */
  float z[4] = {0, -0.0f, 0, 0}, tiny[4] = {1e-44f, -2e-44f, 0, 3e-45f};
  float bad[4] = {1, NAN, 2, 3}, inf[4] = {1, 2, -INFINITY, 3};
  int8_t c4[4] = {9, 9, 9, 9};
  chai_kvq_store_ref(c4, &s, z, 1, 4);
  CHECK(s == 0.0f && c4[0] == 0 && c4[1] == 0 && c4[3] == 0);
  memset(c4, 9, 4);
  chai_kvq_store_ref(c4, &s, tiny, 1, 4);
  CHECK(s == 0.0f && c4[0] == 0 && c4[1] == 0);
  memset(c4, 9, 4);
  chai_kvq_store_ref(c4, &s, bad, 1, 4);
  CHECK(isnan(s) && c4[0] == 0 && c4[2] == 0);
  chai_kvq_store_ref(c4, &s, inf, 1, 4);
  CHECK(isnan(s) && c4[3] == 0);

  /* SIMD = ref bit for bit, at every level and row size (tails too), special rows included */
  int Ds[] = {1, 5, 8, 15, 16, 17, 63, 64, 80, 128, 200};
  for (size_t di = 0; di < sizeof Ds / sizeof Ds[0]; di++) {
    int D = Ds[di], heads = 7;
    float *xs = randn((size_t)heads * D, 10 + di);
    for (int d = 0; d < D; d++) {
      xs[1 * D + d] = 0;                     /* zero row */
      xs[2 * D + d] *= 1e-42f;               /* subnormal scale */
      xs[3 * D + d] = (float)(d % 9) - 4.5f; /* ties */
    }
    xs[3 * D] = 127; /* s = 1 */
    xs[4 * D + D / 2] = NAN;
    xs[5 * D + D - 1] = INFINITY;
    int8_t *cr = malloc((size_t)heads * D), *cs = malloc((size_t)heads * D);
    float sr[7], ss[7];
    chai_kvq_store_ref(cr, sr, xs, heads, D);
    bool bounded = true;
    for (int h = 0; h < heads; h++)
      if (sr[h] >= FLT_MIN)
        for (int d = 0; d < D; d++)
          bounded &= fabsf(xs[h * D + d] - sr[h] * cr[h * D + d]) <= 0.50001f * sr[h];
    CHECK(bounded);
    for (int lvl = CHAI_SIMD_AVX2; lvl <= CHAI_SIMD_AVX512; lvl++) {
      if ((int)chai_simd_force((chai_simd)lvl) != lvl) continue;
      memset(cs, 0x55, (size_t)heads * D);
      chai_kvq_store(cs, ss, xs, heads, D);
      bool same = memcmp(cr, cs, (size_t)heads * D) == 0;
      for (int h = 0; h < heads; h++)
        same &= memcmp(&sr[h], &ss[h], 4) == 0 || (isnan(sr[h]) && isnan(ss[h]));
      CHECK(same);
      if (!same) fprintf(stderr, "store differs at level %d, D=%d\n", lvl, D);
    }
    chai_simd_force(CHAI_SIMD_AVX512);
    free(cr);
    free(cs);
    free(xs);
  }
}

/* ---- attention ------------------------------------------------------------------------------ */

/* One sequence's cache: K (Tk, S·D) and V (Tk, H·D) stored as codes, and their dequantized f32. */
typedef struct cache {
  int Tk, S, H, D;
  int8_t *k, *v;
  float *ks, *vs, *kd, *vd;
} cache;

static void cache_make(cache *c, int Tk, int S, int H, int D, uint64_t seed) {
  *c = (cache){.Tk = Tk, .S = S, .H = H, .D = D};
  size_t nk = (size_t)Tk * S * D, nv = (size_t)Tk * H * D;
  float *kf = randn(nk, seed), *vf = randn(nv, seed + 1);
  c->k = malloc(nk ? nk : 1);
  c->v = malloc(nv ? nv : 1);
  c->ks = malloc(sizeof(float) * (Tk * S + 1));
  c->vs = malloc(sizeof(float) * (Tk * H + 1));
  c->kd = malloc(sizeof(float) * (nk + 1));
  c->vd = malloc(sizeof(float) * (nv + 1));
  for (int t = 0; t < Tk; t++) {
    chai_kvq_store_ref(c->k + (size_t)t * S * D, c->ks + (size_t)t * S, kf + (size_t)t * S * D, S,
                       D);
    chai_kvq_store_ref(c->v + (size_t)t * H * D, c->vs + (size_t)t * H, vf + (size_t)t * H * D, H,
                       D);
  }
  for (size_t i = 0; i < nk; i++)
    c->kd[i] = c->ks[i / D] * (float)c->k[i];
  for (size_t i = 0; i < nv; i++)
    c->vd[i] = c->vs[i / D] * (float)c->v[i];
  free(kf);
  free(vf);
}

static void cache_free(cache *c) {
  free(c->k);
  free(c->v);
  free(c->ks);
  free(c->vs);
  free(c->kd);
  free(c->vd);
}

/* A key mask of Tk with every 4th key padding (or NULL). */
static float *mask_make(int Tk, bool on) {
  if (!on) return NULL;
  float *m = malloc(sizeof(float) * (Tk + 1));
  for (int j = 0; j < Tk; j++)
    m[j] = j % 4 == 2 ? 0.0f : 1.0f;
  return m;
}

/* The int8 kernel (ref) against the f32 kernels on the dequantized cache: dense when slot is NULL
 * (ops), clustered otherwise (heads). */
static void compare_f32(int Tq, int Tk, int S, int H, int D, const int *slot, bool causal,
                        bool masked, double tol) {
  cache c;
  cache_make(&c, Tk, S, H, D, 100 + Tq * 7 + Tk);
  float *q = randn((size_t)Tq * S * D, 3), *km = mask_make(Tk, masked);
  size_t no = (size_t)Tq * H * D;
  float *got = malloc(sizeof(float) * (no + 1)), *want = malloc(sizeof(float) * (no + 1));
  chai_kvq_attention_args a = {.Tq = Tq,
                               .Tk = Tk,
                               .S = S,
                               .H = H,
                               .D = D,
                               .q_ts = S * D,
                               .causal = causal,
                               .key_mask = km,
                               .slot = slot};
  CHECK_OK(chai_kvq_attention_ref(got, q, c.k, c.ks, c.v, c.vs, &a, NULL));
  float scale = 1.0f / sqrtf((float)D);
  if (!slot) {
    chai_attention_args fa = {.B = 1,
                              .Tq = Tq,
                              .Tk = Tk,
                              .H = H,
                              .D = D,
                              .q_ts = H * D,
                              .k_ts = H * D,
                              .v_ts = H * D,
                              .scale = scale,
                              .causal = causal,
                              .key_mask = km};
    CHECK_OK(chai_attention_forward(want, NULL, q, c.kd, c.vd, &fa));
  } else {
    chai_heads_attention_args ha = {.B = 1,
                                    .Tq = Tq,
                                    .Tk = Tk,
                                    .H = H,
                                    .K = S,
                                    .D = D,
                                    .q_ts = S * D,
                                    .k_ts = S * D,
                                    .v_ts = H * D,
                                    .scale = scale,
                                    .causal = causal,
                                    .key_mask = km,
                                    .slot = slot};
    CHECK_OK(chai_heads_attention_forward(want, q, c.kd, c.vd, &ha));
  }
  double d = chai_test_max_abs_diff_f(got, want, no);
  CHECK(d <= tol);
  if (d > tol)
    fprintf(stderr, "vs f32: Tq=%d Tk=%d S=%d H=%d D=%d causal=%d mask=%d: max diff %g\n", Tq, Tk,
            S, H, D, causal, masked, d);
  free(q);
  free(km);
  free(got);
  free(want);
  cache_free(&c);
}

static void test_vs_f32(void) {
  int slot4[6] = {0, 1, 0, 2, 1, 0}; /* 6 value heads in 3 clusters */
  int slot1[4] = {0, 0, 0, 0};
  for (int causal = 0; causal < 2; causal++)
    for (int masked = 0; masked < 2; masked++) {
      compare_f32(1, 1, 4, 4, 64, NULL, causal, false, 2e-5); /* Tk = 1 */
      compare_f32(1, 37, 4, 4, 64, NULL, causal, masked, 2e-5);
      compare_f32(1, 300, 3, 3, 80, NULL, causal, masked, 2e-5);
      compare_f32(20, 20, 2, 2, 64, NULL, causal, masked, 2e-5); /* prefill: 16 + 4 rows */
      compare_f32(7, 30, 2, 2, 24, NULL, causal, masked, 2e-5);
      compare_f32(5, 3, 2, 2, 16, NULL, causal, masked, 2e-5); /* Tq > Tk */
      compare_f32(1, 50, 3, 6, 64, slot4, causal, masked, 2e-5);
      compare_f32(18, 40, 3, 6, 32, slot4, causal, masked, 2e-5);
      compare_f32(3, 25, 1, 4, 17, slot1, causal, masked, 2e-5);
    }
}

/* Runs the dispatched kernel at every SIMD level against the ref, on one shape. */
static void compare_simd(int Tq, int Tk, int S, int H, int D, const int *slot, bool causal,
                         bool masked) {
  cache c;
  cache_make(&c, Tk, S, H, D, 7 + D);
  int q_ts = S * D + 3; /* a strided query */
  float *q = randn((size_t)Tq * q_ts, 5), *km = mask_make(Tk, masked);
  size_t no = (size_t)Tq * H * D;
  float *want = malloc(sizeof(float) * (no + 1)), *got = malloc(sizeof(float) * (no + 1));
  chai_kvq_attention_args a = {.Tq = Tq,
                               .Tk = Tk,
                               .S = S,
                               .H = H,
                               .D = D,
                               .q_ts = q_ts,
                               .causal = causal,
                               .key_mask = km,
                               .slot = slot};
  CHECK_OK(chai_kvq_attention_ref(want, q, c.k, c.ks, c.v, c.vs, &a, NULL));
  for (int lvl = CHAI_SIMD_AVX2; lvl <= CHAI_SIMD_AVX512; lvl++) {
    if ((int)chai_simd_force((chai_simd)lvl) != lvl) continue;
    memset(got, 0xff, sizeof(float) * no);
    CHECK_OK(chai_kvq_attention(got, q, c.k, c.ks, c.v, c.vs, &a, NULL));
    double d = chai_test_max_abs_diff_f(got, want, no);
    CHECK(d <= 3e-6);
    if (d > 3e-6)
      fprintf(stderr, "simd %d vs ref: Tq=%d Tk=%d S=%d H=%d D=%d: max diff %g\n", lvl, Tq, Tk, S,
              H, D, d);
  }
  chai_simd_force(CHAI_SIMD_AVX512);
  free(q);
  free(km);
  free(want);
  free(got);
  cache_free(&c);
}

static void test_simd(void) {
  int slot[5] = {1, 0, 1, 1, 0};
  int Ds[] = {1, 7, 16, 24, 64, 80, 128, 130, 300};
  for (size_t di = 0; di < sizeof Ds / sizeof Ds[0]; di++) {
    int D = Ds[di];
    compare_simd(1, 33, 3, 3, D, NULL, true, true);   /* decode */
    compare_simd(19, 40, 2, 5, D, slot, true, false); /* prefill blocks, clustered */
  }
  compare_simd(1, 1, 2, 5, 64, slot, true, false);
  compare_simd(4, 9, 2, 2, 64, NULL, false, true);
}

/* chai_kvq_attention as the body of a held team (a decode step's). */
typedef struct {
  float *out;
  const float *q;
  const cache *c;
  const chai_kvq_attention_args *a;
} kvq_call;
static chai_status kvq_body(void *ctx) {
  kvq_call *k = ctx;
  return chai_kvq_attention(k->out, k->q, k->c->k, k->c->ks, k->c->v, k->c->vs, k->a, NULL);
}

/* Thread counts give the same bits, and so does a held team; a caller's work buffer is the same as
 * an allocated one. */
static void test_threads(void) {
  int Tk = 700, S = 4, H = 12, D = 64;
  int slot[12] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
  cache c;
  cache_make(&c, Tk, S, H, D, 77);
  for (int Tq = 1; Tq <= 20; Tq += 19) {
    float *q = randn((size_t)Tq * S * D, 8);
    size_t no = (size_t)Tq * H * D;
    float *o1 = malloc(sizeof(float) * no), *o2 = malloc(sizeof(float) * no),
          *o3 = malloc(sizeof(float) * no);
    chai_kvq_attention_args a = {
        .Tq = Tq, .Tk = Tk, .S = S, .H = H, .D = D, .q_ts = S * D, .causal = true, .slot = slot};
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    CHECK_OK(chai_kvq_attention(o1, q, c.k, c.ks, c.v, c.vs, &a, NULL));
    omp_set_num_threads(2);
    CHECK_OK(chai_kvq_attention(o2, q, c.k, c.ks, c.v, c.vs, &a, NULL));
    size_t wb = chai_kvq_attention_work_bytes(&a);
    void *work = chai_alloc(wb, "test work");
    CHECK_OK(chai_kvq_attention(o3, q, c.k, c.ks, c.v, c.vs, &a, work));
    chai_free(work, wb);
    float *o4 = malloc(sizeof(float) * no);
    kvq_call call = {o4, q, &c, &a};
    CHECK_OK(chai_team_hold(kvq_body, &call));
    CHECK(memcmp(o1, o4, sizeof(float) * no) == 0);
    free(o4);
    omp_set_num_threads(saved);
    CHECK(memcmp(o1, o2, sizeof(float) * no) == 0);
    CHECK(memcmp(o1, o3, sizeof(float) * no) == 0);
    free(q);
    free(o1);
    free(o2);
    free(o3);
  }
  cache_free(&c);
}

/* Masked keys are never read (a NaN row there changes nothing); an unmasked NaN row poisons the
 * output as in f32; every key masked, or no key at all, gives zeros. */
static void test_masks(void) {
  int Tk = 12, S = 2, H = 2, D = 16;
  cache c;
  cache_make(&c, Tk, S, H, D, 31);
  float *q = randn((size_t)S * D, 4), *km = mask_make(Tk, true), out[2 * 16], base[2 * 16];
  chai_kvq_attention_args a = {
      .Tq = 1, .Tk = Tk, .S = S, .H = H, .D = D, .q_ts = S * D, .causal = true, .key_mask = km};
  for (int lvl = CHAI_SIMD_REF; lvl <= CHAI_SIMD_AVX512; lvl++) {
    if ((int)chai_simd_force((chai_simd)lvl) != lvl) continue;
    CHECK_OK(chai_kvq_attention(base, q, c.k, c.ks, c.v, c.vs, &a, NULL));
    float nanrow[2 * 16];
    for (int i = 0; i < 2 * 16; i++)
      nanrow[i] = NAN;
    int8_t ksave[32], vsave[32];
    float kss[2], vss[2];
    memcpy(ksave, c.k + 6 * S * D, 32);
    memcpy(vsave, c.v + 6 * H * D, 32);
    memcpy(kss, c.ks + 6 * S, 8);
    memcpy(vss, c.vs + 6 * H, 8);
    chai_kvq_store(c.k + 6 * S * D, c.ks + 6 * S, nanrow, S, D); /* key 6 is masked */
    chai_kvq_store(c.v + 6 * H * D, c.vs + 6 * H, nanrow, H, D);
    CHECK_OK(chai_kvq_attention(out, q, c.k, c.ks, c.v, c.vs, &a, NULL));
    CHECK(memcmp(out, base, sizeof out) == 0);
    km[6] = 1; /* now it is attended */
    CHECK_OK(chai_kvq_attention(out, q, c.k, c.ks, c.v, c.vs, &a, NULL));
    CHECK(isnan(out[0]) && isnan(out[2 * D - 1]));
    km[6] = 0;
    memcpy(c.k + 6 * S * D, ksave, 32);
    memcpy(c.v + 6 * H * D, vsave, 32);
    memcpy(c.ks + 6 * S, kss, 8);
    memcpy(c.vs + 6 * H, vss, 8);
    float zeros[2 * 16] = {0};
    float *none = calloc(Tk, sizeof(float));
    chai_kvq_attention_args b = a;
    b.key_mask = none;
    memset(out, 0xff, sizeof out);
    CHECK_OK(chai_kvq_attention(out, q, c.k, c.ks, c.v, c.vs, &b, NULL));
    CHECK(memcmp(out, zeros, sizeof out) == 0);
    b.key_mask = NULL;
    b.Tk = 0;
    memset(out, 0xff, sizeof out);
    CHECK_OK(chai_kvq_attention(out, q, NULL, NULL, NULL, NULL, &b, NULL));
    CHECK(memcmp(out, zeros, sizeof out) == 0);
    free(none);
  }
  chai_simd_force(CHAI_SIMD_AVX512);
  free(q);
  free(km);
  cache_free(&c);
}

static void test_bad_args(void) {
  cache c;
  cache_make(&c, 4, 2, 3, 8, 1);
  float q[16] = {0}, out[24];
  int slot[3] = {0, 1, 1}, bad_slot[3] = {0, 2, 1}, unused[3] = {0, 0, 0};
  chai_kvq_attention_args a = {
      .Tq = 1, .Tk = 4, .S = 2, .H = 3, .D = 8, .q_ts = 16, .causal = true, .slot = slot};
  CHECK_OK(chai_kvq_attention(out, q, c.k, c.ks, c.v, c.vs, &a, NULL));
  chai_kvq_attention_args b = a;
  b.S = 0;
  CHECK_ERR(chai_kvq_attention(out, q, c.k, c.ks, c.v, c.vs, &b, NULL), CHAI_ERR_ARG, "S=0");
  b = a;
  b.Tk = -1;
  CHECK_ERR(chai_kvq_attention(out, q, c.k, c.ks, c.v, c.vs, &b, NULL), CHAI_ERR_ARG, "Tk=-1");
  b = a;
  b.D = 0;
  CHECK_ERR(chai_kvq_attention_ref(out, q, c.k, c.ks, c.v, c.vs, &b, NULL), CHAI_ERR_ARG, "D=0");
  b = a;
  b.q_ts = 15;
  CHECK_ERR(chai_kvq_attention(out, q, c.k, c.ks, c.v, c.vs, &b, NULL), CHAI_ERR_ARG,
            "query stride 15 is below S*D = 16");
  b = a;
  b.slot = NULL;
  CHECK_ERR(chai_kvq_attention(out, q, c.k, c.ks, c.v, c.vs, &b, NULL), CHAI_ERR_ARG,
            "no slot map, but 2 score heads for 3 value heads");
  b.slot = bad_slot;
  CHECK_ERR(chai_kvq_attention(out, q, c.k, c.ks, c.v, c.vs, &b, NULL), CHAI_ERR_ARG,
            "slot[1] = 2 is outside 0..1");
  b.slot = unused;
  CHECK_ERR(chai_kvq_attention(out, q, c.k, c.ks, c.v, c.vs, &b, NULL), CHAI_ERR_ARG,
            "score head 1 has no value head");
  CHECK_ERR(chai_kvq_attention(out, q, NULL, c.ks, c.v, c.vs, &a, NULL), CHAI_ERR_ARG, "NULL");
  CHECK_ERR(chai_kvq_attention(out, q, c.k, c.ks, c.v, c.vs, NULL, NULL), CHAI_ERR_ARG,
            "no arguments");
  chai_alloc_fail_after(1);
  CHECK_ERR(chai_kvq_attention(out, q, c.k, c.ks, c.v, c.vs, &a, NULL), CHAI_ERR_NOMEM,
            "int8 KV attention");
  chai_alloc_fail_after(0);
  cache_free(&c);
}

int main(void) {
  test_store();
  test_vs_f32();
  test_simd();
  test_threads();
  test_masks();
  test_bad_args();
  return chai_test_finish();
}
