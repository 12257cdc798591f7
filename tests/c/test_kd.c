/* KD and label-smoothed cross-entropy against PyTorch (tests/fixtures/train), at every SIMD level
 * and thread count; accumulation, masking, fully ignored batches and every error path. */
#include <math.h>
#include <string.h>

#include "chai/train.h"
#include "train_fixtures.h"

typedef struct kd_case {
  chai_tensor s, t, y, g, mask;
  int N, V;
  chai_kd_args a;
  double loss, kl, ce;
  int count;
  const char *name;
} kd_case;

static void run_case(const kd_case *c) {
  const float *s = chai_tensor_data(&c->s), *t = chai_tensor_data(&c->t);
  const int32_t *y = chai_tensor_data(&c->y);
  const float *mask = chai_tensor_alive(&c->mask) ? chai_tensor_data(&c->mask) : NULL;
  size_t nv = (size_t)c->N * c->V;
  chai_kd_result r;
  CHECK_OK(chai_kd_forward(&r, NULL, s, t, y, mask, c->N, c->V, &c->a));
  double tol = 2e-6 * fmax(1.0, fabs(c->loss));
  if (fabs(r.loss - c->loss) > tol)
    fprintf(stderr, "case %s: loss %.9g vs torch %.9g\n", c->name, r.loss, c->loss);
  CHECK(fabs(r.loss - c->loss) <= tol);
  if (c->a.alpha > 0) CHECK(fabs(r.kl - c->kl) <= 2e-6 * fmax(1.0, fabs(c->kl)));
  if (c->a.alpha < 1) CHECK(fabs(r.ce - c->ce) <= 2e-6 * fmax(1.0, fabs(c->ce)));
  CHECK(r.count == c->count);

  float *d = calloc(nv, sizeof(float)), *d2 = calloc(nv, sizeof(float));
  CHECK_OK(chai_kd_backward(d, s, t, y, mask, c->N, c->V, &c->a, 1.0f));
  double err = fx_rel_err(d, chai_tensor_data(&c->g), nv);
  if (err > 1e-5) fprintf(stderr, "case %s: grad rel err %g\n", c->name, err);
  CHECK(err <= 1e-5);

  /* forward_backward = forward + backward; backward accumulates and scales with dloss. */
  chai_kd_result r2;
  CHECK_OK(chai_kd_forward_backward(&r2, d2, s, t, y, mask, c->N, c->V, &c->a));
  CHECK(r2.loss == r.loss && r2.count == r.count);
  CHECK(chai_test_max_abs_diff_f(d2, d, nv) == 0);
  CHECK_OK(chai_kd_backward(d2, s, t, y, mask, c->N, c->V, &c->a, 0.5f));
  for (size_t i = 0; i < nv; i++)
    d[i] *= 1.5f;
  CHECK(fx_rel_err(d2, d, nv) <= 1e-6);
  free(d);
  free(d2);
}

static void simd_and_threads(const kd_case *c) {
  /* The same loss at every SIMD level (to rounding) and the same bits at any thread count. */
  const float *s = chai_tensor_data(&c->s), *t = chai_tensor_data(&c->t);
  const int32_t *y = chai_tensor_data(&c->y);
  chai_simd top = chai_simd_level();
  for (int lvl = 0; lvl <= (int)top; lvl++) {
    chai_simd_force((chai_simd)lvl);
    chai_kd_result r;
    CHECK_OK(chai_kd_forward(&r, NULL, s, t, y, NULL, c->N, c->V, &c->a));
    CHECK(fabs(r.loss - c->loss) <= 2e-6 * fmax(1.0, fabs(c->loss)));
  }
  chai_simd_force(top);
  int nt = chai_threads_get();
  chai_kd_result r1, r2;
  chai_threads(1);
  CHECK_OK(chai_kd_forward(&r1, NULL, s, t, y, NULL, c->N, c->V, &c->a));
  chai_threads(2);
  CHECK_OK(chai_kd_forward(&r2, NULL, s, t, y, NULL, c->N, c->V, &c->a));
  chai_threads(nt);
  CHECK(memcmp(&r1, &r2, sizeof r1) == 0);
}

static void errors(void) {
  float s[6] = {1, 2, 3, 4, 5, 6}, t[6] = {0}, d[6] = {0};
  int32_t y[2] = {1, 2};
  chai_kd_args a = {.T = 2, .alpha = 0.5f, .label_smoothing = 0, .ignore_index = -100};
  chai_kd_result r;
  CHECK_ERR(chai_kd_forward(&r, NULL, s, t, y, NULL, 2, 3, &a), CHAI_OK, NULL);
  y[1] = 3;
  CHECK_ERR(chai_kd_forward(&r, NULL, s, t, y, NULL, 2, 3, &a), CHAI_ERR_ARG,
            "label 3 in row 1 is outside 0..2");
  CHECK_ERR(chai_kd_backward(d, s, t, y, NULL, 2, 3, &a, 1), CHAI_ERR_ARG, "label 3 in row 1");
  CHECK(d[0] == 0 && d[5] == 0); /* nothing written on error */
  y[1] = -5;
  CHECK_ERR(chai_kd_forward(&r, NULL, s, t, y, NULL, 2, 3, &a), CHAI_ERR_ARG, "label -5 in row 1");
  y[1] = -100; /* ignored */
  CHECK_OK(chai_kd_forward(&r, NULL, s, t, y, NULL, 2, 3, &a));
  CHECK(r.count == 1);
  float mask[2] = {1, 0};
  y[1] = 7; /* a masked row's label is not looked at */
  CHECK_OK(chai_kd_forward(&r, NULL, s, t, y, mask, 2, 3, &a));
  CHECK(r.count == 1);
  y[1] = 2;
  a.T = 0;
  CHECK_ERR(chai_kd_forward(&r, NULL, s, t, y, NULL, 2, 3, &a), CHAI_ERR_ARG, "temperature T");
  a.T = NAN;
  CHECK_ERR(chai_kd_forward(&r, NULL, s, t, y, NULL, 2, 3, &a), CHAI_ERR_ARG, "got nan");
  a.T = 2;
  a.alpha = 1.5f;
  CHECK_ERR(chai_kd_forward(&r, NULL, s, t, y, NULL, 2, 3, &a), CHAI_ERR_ARG,
            "alpha must be in 0..1, got 1.5");
  a.alpha = 0.5f;
  a.label_smoothing = 1;
  CHECK_ERR(chai_kd_forward(&r, NULL, s, t, y, NULL, 2, 3, &a), CHAI_ERR_ARG, "label_smoothing");
  a.label_smoothing = 0;
  CHECK_ERR(chai_kd_forward(&r, NULL, s, NULL, y, NULL, 2, 3, &a), CHAI_ERR_ARG, "needs teacher");
  CHECK_ERR(chai_kd_forward(&r, NULL, s, t, NULL, NULL, 2, 3, &a), CHAI_ERR_ARG, "needs targets");
  CHECK_ERR(chai_kd_forward(&r, NULL, s, t, y, NULL, 0, 3, &a), CHAI_ERR_ARG, "got (0,3)");
  /* pure KD needs no labels; plain CE needs no teacher */
  a.alpha = 1;
  CHECK_OK(chai_kd_forward(&r, NULL, s, t, NULL, NULL, 2, 3, &a));
  CHECK(r.count == 2 && r.ce == 0);
  a.alpha = 0;
  CHECK_OK(chai_kd_forward(&r, NULL, s, NULL, y, NULL, 2, 3, &a));
  /* label-smoothed CE with ε = 0 agrees with the ops CE */
  float l1, l2;
  int c1;
  CHECK_OK(chai_cross_entropy_smooth_forward(&l1, &c1, s, y, 2, 3, -100, 0));
  CHECK_OK(chai_cross_entropy_forward(&l2, NULL, NULL, s, y, 2, 3, -100));
  CHECK_CLOSE(l1, l2, 1e-6);
  CHECK(c1 == 2);
  y[0] = 9;
  CHECK_ERR(chai_cross_entropy_smooth_forward(&l1, &c1, s, y, 2, 3, -100, 0.1f), CHAI_ERR_ARG,
            "cross_entropy: label 9 in row 0");
  CHECK_ERR(chai_cross_entropy_smooth_backward(d, s, y, 2, 3, -100, 0.1f, 1), CHAI_ERR_ARG,
            "label 9 in row 0");
  /* every row ignored: loss 0, count 0, no gradient */
  y[0] = y[1] = -100;
  a.alpha = 0.5f;
  CHECK_OK(chai_kd_forward_backward(&r, d, s, t, y, NULL, 2, 3, &a));
  CHECK(r.count == 0 && r.loss == 0);
  for (int i = 0; i < 6; i++)
    CHECK(d[i] == 0);
  /* NaN / Inf logits give a NaN loss, not a crash */
  y[0] = 0;
  y[1] = 1;
  s[4] = INFINITY;
  CHECK_OK(chai_kd_forward(&r, NULL, s, t, y, NULL, 2, 3, &a));
  CHECK(isnan(r.loss));
  s[4] = NAN;
  CHECK_OK(chai_kd_forward(&r, NULL, s, t, y, NULL, 2, 3, &a));
  CHECK(isnan(r.loss));
  /* allocation failure is reported, not a crash */
  s[4] = 5;
  chai_alloc_fail_after(1);
  CHECK_ERR(chai_kd_forward(&r, NULL, s, t, y, NULL, 2, 3, &a), CHAI_ERR_NOMEM, NULL);
  chai_alloc_fail_after(0);
}

/* The KD gradient by central differences in double on a small case, independent of torch. */
static void finite_differences(void) {
  enum { N = 3, V = 5 };
  float s[N * V], t[N * V], d[N * V] = {0};
  int32_t y[N] = {4, -100, 0};
  chai_rng rng;
  chai_rng_init(&rng, 7);
  chai_rng_fill_normal(&rng, s, N * V, 0, 2);
  chai_rng_fill_normal(&rng, t, N * V, 0, 2);
  chai_kd_args a = {.T = 3, .alpha = 0.7f, .label_smoothing = 0.1f, .ignore_index = -100};
  CHECK_OK(chai_kd_backward(d, s, t, y, NULL, N, V, &a, 1));
  double worst = 0;
  for (int i = 0; i < N * V; i++) {
    float keep = s[i], h = 1e-2f;
    chai_kd_result rp, rm;
    s[i] = keep + h;
    CHECK_OK(chai_kd_forward(&rp, NULL, s, t, y, NULL, N, V, &a));
    s[i] = keep - h;
    CHECK_OK(chai_kd_forward(&rm, NULL, s, t, y, NULL, N, V, &a));
    s[i] = keep;
    double num = ((double)rp.loss - rm.loss) / (2.0 * h);
    worst = fmax(worst, fabs(num - d[i]));
  }
  CHECK(worst < 1e-3);
}

int main(void) {
  cJSON *m = fx_manifest();
  CHECK(m != NULL);
  if (!m) return chai_test_finish();
  const cJSON *c;
  int ncases = 0;
  cJSON_ArrayForEach(c, cJSON_GetObjectItem(m, "kd")) {
    kd_case k = {0};
    k.name = fx_str(c, "name");
    k.N = (int)fx_num(c, "N");
    k.V = (int)fx_num(c, "V");
    k.a.T = (float)fx_num(c, "T");
    k.a.alpha = (float)fx_num(c, "alpha");
    k.a.label_smoothing = (float)fx_num(c, "label_smoothing");
    k.a.ignore_index = (int)fx_num(c, "ignore_index");
    k.loss = fx_num(c, "loss");
    k.kl = fx_num(c, "kl");
    k.ce = fx_num(c, "ce");
    k.count = (int)fx_num(c, "count");
    k.s = fx_load(fx_str(c, "student"));
    k.t = fx_load(fx_str(c, "teacher"));
    k.y = fx_load(fx_str(c, "labels"));
    k.g = fx_load(fx_str(c, "grad"));
    if (cJSON_GetObjectItem(c, "mask")) k.mask = fx_load(fx_str(c, "mask"));
    if (chai_tensor_alive(&k.s) && chai_tensor_alive(&k.g)) {
      run_case(&k);
      if (!chai_tensor_alive(&k.mask)) simd_and_threads(&k);
    }
    chai_tensor_release(&k.s);
    chai_tensor_release(&k.t);
    chai_tensor_release(&k.y);
    chai_tensor_release(&k.g);
    chai_tensor_release(&k.mask);
    ncases++;
  }
  CHECK(ncases >= 10);
  cJSON_Delete(m);
  errors();
  finite_differences();
  CHECK(chai_memory_live() == 0);
  return chai_test_finish();
}
