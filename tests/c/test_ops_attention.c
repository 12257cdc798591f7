/* Attention: forward (output and probabilities) against a double reference written from ops.h's
 * contract, and dq/dk/dv against central differences of it. Inputs are slices of one fused QKV
 * buffer (token stride 3·H·D). Cases: causal with a padding key_mask (including a fully masked
 * query row), clustered score heads {0,0,2}, Tq < Tk (KV cache), Tq == 1 (decode). When Tq < Tk,
 * q is its own packed buffer and k, v are slices of a fused KV buffer (token stride 2·H·D). */
#include "chai/chai.h"
#include "check.h"
#include "ops_testutil.h"

typedef struct {
  chai_attention_args a;
  size_t qb, kb, vb;  /* offsets of q, k, v in the one parameter buffer */
  double *qkv, *dout; /* parameters in double; dout (B,Tq,H,D) */
} att_ctx;

static void attention_ref(double *out, double *probs, const double *qkv, const att_ctx *c) {
  const chai_attention_args *a = &c->a;
  int B = a->B, Tq = a->Tq, Tk = a->Tk, H = a->H, D = a->D;
  double *s = malloc(sizeof(double) * (Tk ? Tk : 1));
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (int i = 0; i < Tq; i++) {
        int r = a->score_head ? a->score_head[h] : h;
        const double *qi = qkv + c->qb + ((size_t)b * Tq + i) * a->q_ts + r * D;
        double m = -INFINITY;
        for (int j = 0; j < Tk; j++) {
          bool ok =
              (!a->causal || j <= Tk - Tq + i) && (!a->key_mask || a->key_mask[b * Tk + j] != 0);
          const double *kj = qkv + c->kb + ((size_t)b * Tk + j) * a->k_ts + r * D;
          double d = 0;
          for (int x = 0; x < D; x++)
            d += qi[x] * kj[x];
          s[j] = ok ? a->scale * d : -INFINITY;
          m = fmax(m, s[j]);
        }
        double z = 0;
        for (int j = 0; j < Tk; j++) {
          s[j] = m == -INFINITY ? 0 : exp(s[j] - m);
          z += s[j];
        }
        double *o = out + (((size_t)b * Tq + i) * H + h) * D;
        for (int x = 0; x < D; x++)
          o[x] = 0;
        for (int j = 0; j < Tk; j++) {
          double p = z > 0 ? s[j] / z : 0;
          if (probs) probs[(((size_t)b * H + h) * Tq + i) * Tk + j] = p;
          const double *vj = qkv + c->vb + ((size_t)b * Tk + j) * a->v_ts + h * D;
          for (int x = 0; x < D; x++)
            o[x] += p * vj[x];
        }
      }
  free(s);
}

static double attention_loss(void *p) {
  att_ctx *c = p;
  size_t n = (size_t)c->a.B * c->a.Tq * c->a.H * c->a.D;
  double *out = tu_dalloc(n), l = 0;
  attention_ref(out, NULL, c->qkv, c);
  for (size_t i = 0; i < n; i++)
    l += out[i] * c->dout[i];
  free(out);
  return l;
}

static void run_case(const char *name, int B, int Tq, int Tk, int H, int D, bool causal,
                     const float *key_mask, const int *score_head) {
  int hd = H * D;
  bool fused = Tq == Tk;
  chai_attention_args a = {B,
                           Tq,
                           Tk,
                           H,
                           D,
                           fused ? 3 * hd : hd,
                           fused ? 3 * hd : 2 * hd,
                           fused ? 3 * hd : 2 * hd,
                           1.0f / sqrtf((float)D),
                           causal,
                           key_mask,
                           score_head};
  size_t qb = 0, kb = fused ? (size_t)hd : (size_t)B * Tq * hd, vb = kb + hd;
  size_t nqkv = fused ? (size_t)B * Tk * 3 * hd : (size_t)B * Tq * hd + (size_t)B * Tk * 2 * hd;
  size_t nout = (size_t)B * Tq * hd, nprob = (size_t)B * H * Tq * Tk;
  float *qkv = tu_falloc(nqkv), *out = tu_falloc(nout), *probs = tu_falloc(nprob);
  float *dout = tu_falloc(nout), *d = tu_falloc(nqkv), *d0 = tu_falloc(nqkv);
  tu_fill(qkv, nqkv, -1.5f, 1.5f);
  tu_fill(dout, nout, -1, 1);
  tu_fill(d0, nqkv, -1, 1);
  const float *q = qkv + qb, *k = qkv + kb, *v = qkv + vb;
  att_ctx c = {a, qb, kb, vb, tu_dup(qkv, nqkv), tu_dup(dout, nout)};
  double *want = tu_dalloc(nout), *wantp = tu_dalloc(nprob), *g = tu_dalloc(nqkv);
  attention_ref(want, wantp, c.qkv, &c);
  char what[96];

  CHECK_OK(chai_attention_forward(out, probs, q, k, v, &a));
  snprintf(what, sizeof what, "%s: output", name);
  tu_check_close(what, out, want, nout, 2e-6);
  snprintf(what, sizeof what, "%s: probs", name);
  tu_check_close(what, probs, wantp, nprob, 2e-6);
  /* without probs the output is the same */
  float *out2 = tu_falloc(nout);
  CHECK_OK(chai_attention_forward(out2, NULL, q, k, v, &a));
  CHECK(memcmp(out, out2, nout * sizeof(float)) == 0);
  free(out2);

  /* dq, dk, dv accumulate into one fused gradient buffer laid out like qkv */
  memcpy(d, d0, nqkv * sizeof(float));
  chai_attention_backward(d + qb, d + kb, d + vb, dout, probs, q, k, v, &a);
  tu_num_grad(g, c.qkv, nqkv, attention_loss, &c);
  snprintf(what, sizeof what, "%s: dq/dk/dv", name);
  tu_check_grad(what, d, d0, g, nqkv, 2e-5);
  /* the row-by-row path, taken when the block scratch cannot be allocated, agrees too */
  memcpy(d, d0, nqkv * sizeof(float));
  chai_alloc_fail_after(1);
  chai_attention_backward(d + qb, d + kb, d + vb, dout, probs, q, k, v, &a);
  chai_alloc_fail_after(0);
  snprintf(what, sizeof what, "%s: dq/dk/dv without scratch", name);
  tu_check_grad(what, d, d0, g, nqkv, 2e-5);
  memcpy(d, d0, nqkv * sizeof(float));
  chai_attention_backward(d + qb, d + kb, d + vb, dout, probs, q, k, v, &a);
  /* dv alone (dq, dk NULL) gives the same dv and leaves the q/k parts untouched */
  float *dv_only = tu_falloc(nqkv);
  memcpy(dv_only, d0, nqkv * sizeof(float));
  chai_attention_backward(NULL, NULL, dv_only + vb, dout, probs, q, k, v, &a);
  bool same = true; /* v's elements: token rows of the kv part, last H·D of each */
  for (size_t i = 0; i < nqkv; i++) {
    bool is_v = i >= vb && (i - vb) % a.v_ts < (size_t)hd;
    same = same && (is_v ? dv_only[i] == d[i] : dv_only[i] == d0[i]);
  }
  CHECK(same);
  free(dv_only);

  free(qkv), free(out), free(probs), free(dout), free(d), free(d0);
  free(c.qkv), free(c.dout), free(want), free(wantp), free(g);
}

static void test_cases(void) {
  /* batch 1 pads key 0 (left padding), so its query 0 under the causal mask sees nothing */
  float mask[2 * 4] = {1, 1, 1, 1, 0, 1, 1, 1};
  int clusters[3] = {0, 0, 2};
  run_case("causal+mask+clusters", 2, 4, 4, 3, 4, true, mask, clusters);
  run_case("plain", 2, 4, 4, 3, 4, false, NULL, NULL);
  float mask5[2 * 5] = {1, 1, 0, 1, 1, 0, 1, 1, 1, 1};
  int clusters2[3] = {2, 1, 2};
  run_case("kv cache Tq<Tk", 2, 2, 5, 3, 4, true, mask5, clusters2);
  run_case("decode Tq=1", 2, 1, 5, 3, 4, true, mask5, clusters);
  run_case("non-causal Tq<Tk", 1, 3, 5, 2, 3, false, NULL, NULL);
  /* more query rows than one 64-row block */
  float mask80[80];
  for (int j = 0; j < 80; j++)
    mask80[j] = j % 7 != 3;
  int two[2] = {0, 0};
  run_case("blocks causal", 1, 70, 70, 2, 3, true, mask80, two);
  run_case("blocks Tq<Tk", 1, 67, 80, 2, 3, true, mask80, NULL);
}

/* Properties the reference comparison does not single out. */
static void test_properties(void) {
  enum { B = 1, T = 3, H = 2, D = 2 };
  float q[B * T * H * D], k[B * T * H * D], v[B * T * H * D], out[B * T * H * D];
  float probs[B * H * T * T];
  tu_fill(q, sizeof q / 4, -1, 1);
  tu_fill(k, sizeof k / 4, -1, 1);
  tu_fill(v, sizeof v / 4, -1, 1);
  float none[T] = {0, 0, 0};
  chai_attention_args a = {B, T, T, H, D, H * D, H * D, H * D, 0.5f, false, none, NULL};
  CHECK_OK(chai_attention_forward(out, probs, q, k, v, &a));
  bool zero = true;
  for (size_t i = 0; i < sizeof out / 4; i++)
    zero = zero && out[i] == 0;
  for (size_t i = 0; i < sizeof probs / 4; i++)
    zero = zero && probs[i] == 0;
  CHECK(zero); /* every key masked: zero probabilities and output */

  /* members never read their own q/k: poisoning them changes nothing */
  int sh[2] = {0, 0};
  a.key_mask = NULL;
  a.score_head = sh;
  float out2[sizeof out / 4];
  CHECK_OK(chai_attention_forward(out, NULL, q, k, v, &a));
  for (int t = 0; t < T; t++)
    q[t * H * D + D] = k[t * H * D + D] = NAN;
  CHECK_OK(chai_attention_forward(out2, NULL, q, k, v, &a));
  CHECK(memcmp(out, out2, sizeof out) == 0);

  int bad1[2] = {0, 5}, bad2[3] = {0, 2, 1};
  a.score_head = bad1;
  CHECK_ERR(chai_attention_forward(out, NULL, q, k, v, &a), CHAI_ERR_ARG, "score_head[1] = 5");
  chai_attention_args a3 = {B, 1, 1, 3, 1, 3, 3, 3, 1.0f, false, NULL, bad2};
  CHECK_ERR(chai_attention_forward(out, NULL, q, k, v, &a3), CHAI_ERR_ARG,
            "score_head[1] = 2 but head 2 is not a representative");
  a.score_head = NULL;
  a.q_ts = 3;
  CHECK_ERR(chai_attention_forward(out, NULL, q, k, v, &a), CHAI_ERR_ARG, "below H*D=4");
}

/* Same bits for 1 and 2 threads (tasks are independent (b, head) pairs). */
static void test_threads(void) {
  enum { B = 2, T = 48, H = 4, D = 16, NQ = B * T * H * D, NP = B * H * T * T };
  float *q = tu_falloc(NQ), *k = tu_falloc(NQ), *v = tu_falloc(NQ), *dout = tu_falloc(NQ);
  tu_fill(q, NQ, -1, 1), tu_fill(k, NQ, -1, 1), tu_fill(v, NQ, -1, 1), tu_fill(dout, NQ, -1, 1);
  int sh[H] = {0, 0, 2, 3};
  chai_attention_args a = {B, T, T, H, D, H * D, H * D, H * D, 0.25f, true, NULL, sh};
  float *res[2][5];
  for (int run = 0; run < 2; run++) {
    CHECK_OK(chai_threads(run + 1));
    float *out = tu_falloc(NQ), *p = tu_falloc(NP), *dq = tu_falloc(NQ), *dk = tu_falloc(NQ),
          *dv = tu_falloc(NQ);
    CHECK_OK(chai_attention_forward(out, p, q, k, v, &a));
    chai_attention_backward(dq, dk, dv, dout, p, q, k, v, &a);
    res[run][0] = out, res[run][1] = p, res[run][2] = dq, res[run][3] = dk, res[run][4] = dv;
  }
  for (int i = 0; i < 5; i++) {
    CHECK(memcmp(res[0][i], res[1][i], (i == 1 ? NP : NQ) * sizeof(float)) == 0);
    free(res[0][i]), free(res[1][i]);
  }
  free(q), free(k), free(v), free(dout);
}

static void test_op(void) {
  int64_t sq[4] = {2, 3, 2, 4}, sk[4] = {2, 5, 2, 4}, sm[2] = {2, 5};
  chai_tensor q, k, v, m, r;
  CHECK_OK(chai_tensor_new(&q, CHAI_F32, 4, sq));
  CHECK_OK(chai_tensor_new(&k, CHAI_F32, 4, sk));
  CHECK_OK(chai_tensor_new(&v, CHAI_F32, 4, sk));
  CHECK_OK(chai_tensor_new(&m, CHAI_F32, 2, sm));
  tu_fill(chai_tensor_data(&q), 48, -1, 1);
  tu_fill(chai_tensor_data(&k), 80, -1, 1);
  tu_fill(chai_tensor_data(&v), 80, -1, 1);
  float *mk = chai_tensor_data(&m);
  for (int i = 0; i < 10; i++)
    mk[i] = i != 6;
  CHECK_OK(chai_op_attention(&r, &q, &k, &v, &m, true, 0.5f));
  CHECK(r.ndim == 4 && r.shape[1] == 3);
  float want[48];
  chai_attention_args a = {2, 3, 5, 2, 4, 8, 8, 8, 0.5f, true, mk, NULL};
  CHECK_OK(chai_attention_forward(want, NULL, chai_tensor_data(&q), chai_tensor_data(&k),
                                  chai_tensor_data(&v), &a));
  CHECK(memcmp(want, chai_tensor_data(&r), sizeof want) == 0);
  chai_tensor_release(&r);
  CHECK_ERR(chai_op_attention(&r, &q, &k, &q, NULL, true, 0.5f), CHAI_ERR_ARG,
            "q (2,3,2,4), k (2,5,2,4), v (2,3,2,4)");
  CHECK_ERR(chai_op_attention(&r, &q, &k, &v, &q, true, 0.5f), CHAI_ERR_ARG,
            "key_mask (2,3,2,4) must be (2,5)");
  CHECK_ERR(chai_op_attention(&r, &m, &k, &v, NULL, true, 0.5f), CHAI_ERR_ARG,
            "must all be (B,T,H,D)");
  CHECK(!chai_tensor_alive(&r));
  chai_tensor_release(&q), chai_tensor_release(&k), chai_tensor_release(&v),
      chai_tensor_release(&m);
}

int main(void) {
  CHECK_OK(chai_blas_init());
  test_cases();
  test_properties();
  test_threads();
  test_op();
  CHECK(chai_memory_live() == 0);
  return chai_test_finish();
}
