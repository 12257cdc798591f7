/* AdamW / SGD trajectories, clipping and schedules against PyTorch (tests/fixtures/train); the
 * SIMD AdamW kernels against their _ref twin; state round trips that continue bit-identically;
 * frozen parameters; every error path. */
#include <math.h>
#include <string.h>

#include "chai/train.h"
#include "train_fixtures.h"

#define MAXP 8

typedef struct traj {
  const cJSON *c;
  int np, steps;
  chai_param p[MAXP];
  chai_tensor data[MAXP], grads[MAXP], after[MAXP];
  char names[MAXP][64];
  chai_optim_config cfg;
  chai_schedule sched;
  double lr;
  float max_norm;
} traj;

static void traj_load(traj *t, const cJSON *c) {
  memset(t, 0, sizeof *t);
  t->c = c;
  t->steps = (int)fx_num(c, "steps");
  t->lr = fx_num(c, "lr");
  t->max_norm = (float)fx_num(c, "max_norm");
  chai_optim_kind kind;
  CHECK_OK(chai_optim_kind_parse(fx_str(c, "kind"), &kind));
  chai_optim_config_default(&t->cfg, kind);
  t->cfg.weight_decay = fx_num(c, "weight_decay");
  if (kind == CHAI_OPTIM_ADAMW) {
    const cJSON *b = cJSON_GetObjectItem(c, "betas");
    t->cfg.beta1 = cJSON_GetArrayItem(b, 0)->valuedouble;
    t->cfg.beta2 = cJSON_GetArrayItem(b, 1)->valuedouble;
    t->cfg.eps = fx_num(c, "eps");
  } else {
    t->cfg.momentum = fx_num(c, "momentum");
    t->cfg.dampening = fx_num(c, "dampening");
    t->cfg.nesterov = cJSON_IsTrue(cJSON_GetObjectItem(c, "nesterov"));
  }
  const cJSON *s = cJSON_GetObjectItem(c, "schedule");
  CHECK_OK(chai_schedule_kind_parse(fx_str(s, "kind"), &t->sched.kind));
  t->sched.warmup_steps = (long)fx_num(s, "warmup");
  t->sched.total_steps = (long)fx_num(s, "total");
  CHECK_OK(chai_schedule_check(&t->sched));
  const cJSON *pp;
  cJSON_ArrayForEach(pp, cJSON_GetObjectItem(c, "params")) {
    int i = t->np++;
    snprintf(t->names[i], sizeof t->names[i], "%s", fx_str(pp, "name"));
    chai_tensor init = fx_load(fx_str(pp, "init"));
    CHECK_OK(chai_tensor_clone(&t->data[i], &init));
    chai_tensor_release(&init);
    char f[256];
    snprintf(f, sizeof f, "opt_%s_%s_grads.npy", fx_str(c, "name"), t->names[i]);
    t->grads[i] = fx_load(f);
    snprintf(f, sizeof f, "opt_%s_%s_after.npy", fx_str(c, "name"), t->names[i]);
    t->after[i] = fx_load(f);
    t->p[i].name = t->names[i];
    t->p[i].data = chai_tensor_data(&t->data[i]);
    t->p[i].n = (size_t)chai_tensor_numel(&t->data[i]);
    bool nd = cJSON_IsTrue(cJSON_GetObjectItem(pp, "no_decay"));
    t->p[i].no_decay = nd;
    CHECK(chai_param_default_no_decay(t->names[i]) == nd);
  }
}

static void traj_free(traj *t) {
  for (int i = 0; i < t->np; i++) {
    chai_tensor_release(&t->data[i]);
    chai_tensor_release(&t->grads[i]);
    chai_tensor_release(&t->after[i]);
  }
}

/* Step `step` of the trajectory (gradients from the fixture, clipping, schedule). */
static void traj_step(traj *t, chai_optim *o, int step, bool check) {
  for (int i = 0; i < t->np; i++)
    t->p[i].grad = (const float *)chai_tensor_data(&t->grads[i]) + (size_t)step * t->p[i].n;
  double norm;
  bool finite;
  chai_grad_global_norm(&norm, &finite, t->p, t->np);
  CHECK(finite);
  float scale = chai_clip_factor(norm, t->max_norm);
  if (check && t->max_norm > 0) {
    double want = cJSON_GetArrayItem(cJSON_GetObjectItem(t->c, "grad_norms"), step)->valuedouble;
    CHECK(fabs(norm - want) <= 1e-5 * want);
  }
  double lr = t->lr * chai_schedule_factor(&t->sched, step);
  if (check) {
    double want = cJSON_GetArrayItem(cJSON_GetObjectItem(t->c, "lrs"), step)->valuedouble;
    CHECK(fabs(lr - want) <= 1e-12 + 1e-9 * want);
  }
  CHECK_OK(chai_optim_step(o, t->p, t->np, lr, scale));
}

static void trajectory(const cJSON *c) {
  traj t;
  traj_load(&t, c);
  chai_optim *o;
  CHECK_OK(chai_optim_new(&o, &t.cfg));
  for (int step = 0; step < t.steps; step++) {
    traj_step(&t, o, step, true);
    for (int i = 0; i < t.np; i++) {
      const float *want = (const float *)chai_tensor_data(&t.after[i]) + (size_t)step * t.p[i].n;
      double err = fx_rel_err(t.p[i].data, want, t.p[i].n);
      if (err > 2e-6)
        fprintf(stderr, "%s step %d %s: rel err %g\n", fx_str(c, "name"), step, t.names[i], err);
      CHECK(err <= 2e-6);
    }
  }
  if (t.cfg.kind == CHAI_OPTIM_ADAMW) {
    /* final moments as torch has them */
    int n = chai_optim_state_count(o);
    CHECK(n == 3 * t.np);
    for (int i = 0; i < n; i++) {
      const char *name;
      chai_tensor st;
      CHECK_OK(chai_optim_state_get(o, i, &name, &st));
      const char *dot = strrchr(name, '.');
      if (strcmp(dot, ".step") == 0) {
        CHECK(*(int64_t *)chai_tensor_data(&st) == t.steps);
      } else {
        char f[256];
        snprintf(f, sizeof f, "opt_%s_%.*s_%s.npy", fx_str(c, "name"), (int)(dot - name), name,
                 dot + 1);
        chai_tensor want = fx_load(f);
        if (chai_tensor_alive(&want)) {
          double e_ = fx_rel_err(chai_tensor_data(&st), chai_tensor_data(&want),
                                 (size_t)chai_tensor_numel(&st));
          if (e_ > 2e-6) fprintf(stderr, "%s: moment rel err %g\n", name, e_);
        }
        if (chai_tensor_alive(&want))
          CHECK(fx_rel_err(chai_tensor_data(&st), chai_tensor_data(&want),
                           (size_t)chai_tensor_numel(&st)) <= 2e-6);
        chai_tensor_release(&want);
      }
      chai_tensor_release(&st);
    }
  }
  chai_optim_free(o);
  traj_free(&t);
}

/* Saving the state halfway and restoring it into a fresh optimizer continues bit-identically. */
static void state_round_trip(const cJSON *c) {
  traj a, b;
  traj_load(&a, c);
  traj_load(&b, c);
  chai_optim *oa, *ob, *oc;
  CHECK_OK(chai_optim_new(&oa, &a.cfg));
  CHECK_OK(chai_optim_new(&ob, &b.cfg));
  CHECK_OK(chai_optim_new(&oc, &b.cfg));
  int half = a.steps / 2;
  for (int s = 0; s < a.steps; s++)
    traj_step(&a, oa, s, false);
  for (int s = 0; s < half; s++)
    traj_step(&b, ob, s, false);
  int n = chai_optim_state_count(ob);
  for (int i = 0; i < n; i++) {
    const char *name;
    chai_tensor st, copy;
    CHECK_OK(chai_optim_state_get(ob, i, &name, &st));
    CHECK_OK(chai_tensor_clone(&copy, &st));
    CHECK_OK(chai_optim_state_set(oc, name, &copy));
    chai_tensor_release(&st);
    chai_tensor_release(&copy);
  }
  chai_optim_free(ob);
  CHECK(chai_optim_state_count(oc) == n);
  for (int s = half; s < b.steps; s++)
    traj_step(&b, oc, s, false);
  for (int i = 0; i < a.np; i++)
    CHECK(memcmp(a.p[i].data, b.p[i].data, a.p[i].n * sizeof(float)) == 0);
  chai_optim_free(oa);
  chai_optim_free(oc);
  traj_free(&a);
  traj_free(&b);
}

static void kernels_vs_ref(void) {
  size_t n = 1000 + 13;
  float *p[2], *m[2], *v[2], *g = malloc(n * sizeof(float));
  chai_rng rng;
  chai_rng_init(&rng, 3);
  chai_rng_fill_normal(&rng, g, n, 0, 1);
  chai_simd top = chai_simd_level();
  chai_optim_config cfg;
  chai_optim_config_default(&cfg, CHAI_OPTIM_ADAMW);
  chai_adamw_consts k = chai_adamw_consts_make(&cfg, 1e-2, 0.1, 3, 0.7f);
  for (int lvl = 1; lvl <= (int)top; lvl++) {
    for (int q = 0; q < 2; q++) {
      p[q] = malloc(n * sizeof(float));
      m[q] = malloc(n * sizeof(float));
      v[q] = malloc(n * sizeof(float));
      chai_rng_init(&rng, 5);
      chai_rng_fill_normal(&rng, p[q], n, 0, 1);
      chai_rng_fill_normal(&rng, m[q], n, 0, 0.1f);
      chai_rng_fill_uniform(&rng, v[q], n, 0, 0.01f);
    }
    for (int rep = 0; rep < 3; rep++) {
      /* lengths with different tails */
      size_t len = n - (size_t)rep * 7;
      chai_adamw_update_ref(p[0], g, m[0], v[0], len, &k);
      chai_simd_force((chai_simd)lvl);
      chai_adamw_update(p[1], g, m[1], v[1], len, &k);
      chai_simd_force(top);
    }
    CHECK(fx_rel_err(p[1], p[0], n) <= 1e-6);
    CHECK(fx_rel_err(m[1], m[0], n) <= 1e-6);
    CHECK(fx_rel_err(v[1], v[0], n) <= 1e-6);
    for (int q = 0; q < 2; q++) {
      free(p[q]);
      free(m[q]);
      free(v[q]);
    }
  }
  free(g);
}

static void frozen_and_errors(void) {
  float w[4] = {1, 2, 3, 4}, gw[4] = {1, 1, 1, 1}, b[2] = {1, 1}, gb[2] = {1, -1};
  chai_param ps[2] = {{"w", w, gw, 4, false}, {"b", b, NULL, 2, true}};
  chai_optim_config cfg;
  chai_optim_config_default(&cfg, CHAI_OPTIM_ADAMW);
  chai_optim *o;
  CHECK_OK(chai_optim_new(&o, &cfg));
  CHECK_OK(chai_optim_step(o, ps, 2, 0.1f, 1));
  CHECK(b[0] == 1 && b[1] == 1); /* frozen: untouched, no state */
  CHECK(w[0] < 1);
  CHECK(chai_optim_state_count(o) == 3);
  /* unfreeze: b starts its own step count at 1 */
  ps[1].grad = gb;
  CHECK_OK(chai_optim_step(o, ps, 2, 0.1f, 1));
  CHECK(chai_optim_state_count(o) == 6);
  const char *name;
  chai_tensor st;
  CHECK_OK(chai_optim_state_get(o, 3, &name, &st));
  CHECK(strcmp(name, "b.step") == 0 && *(int64_t *)chai_tensor_data(&st) == 1);
  chai_tensor_release(&st);
  CHECK_OK(chai_optim_state_get(o, 0, &name, &st));
  CHECK(strcmp(name, "w.step") == 0 && *(int64_t *)chai_tensor_data(&st) == 2);
  chai_tensor_release(&st);
  CHECK_ERR(chai_optim_state_get(o, 6, &name, &st), CHAI_ERR_ARG, "index 6 outside 0..5");
  /* first update of AdamW moves every element by lr (sign of the gradient) */
  CHECK(fabsf(b[0] - (1 - 0.1f)) < 1e-6f && fabsf(b[1] - (1 + 0.1f)) < 1e-6f);

  float before[4];
  memcpy(before, w, sizeof w);
  ps[1].n = 3;
  CHECK_ERR(chai_optim_step(o, ps, 2, 0.1f, 1), CHAI_ERR_ARG,
            "parameter b has 3 elements but its optimizer state has 2");
  CHECK(memcmp(before, w, sizeof w) == 0); /* nothing updated */
  ps[1].n = 2;
  ps[1].name = "w";
  CHECK_ERR(chai_optim_step(o, ps, 2, 0.1f, 1), CHAI_ERR_ARG, "parameter w is given twice");
  ps[1].name = "";
  CHECK_ERR(chai_optim_step(o, ps, 2, 0.1f, 1), CHAI_ERR_ARG, "parameter 1 has no name");
  ps[1].name = "b";
  CHECK_ERR(chai_optim_step(o, ps, 2, -1, 1), CHAI_ERR_ARG, "lr must be");
  CHECK_ERR(chai_optim_step(o, ps, 2, NAN, 1), CHAI_ERR_ARG, "lr must be");
  CHECK_ERR(chai_optim_step(o, ps, 2, 0.1f, INFINITY), CHAI_ERR_ARG, "grad_scale");
  CHECK(memcmp(before, w, sizeof w) == 0);

  /* state_set refusals */
  chai_tensor t3, ti;
  CHECK_OK(chai_tensor_new(&t3, CHAI_F32, 1, (int64_t[]){3}));
  CHECK_OK(chai_tensor_new(&ti, CHAI_I32, 1, (int64_t[]){1}));
  CHECK_ERR(chai_optim_state_set(o, "w.exp_avg", &t3), CHAI_ERR_ARG,
            "w.exp_avg has 3 elements, the other state of w has 4");
  CHECK_ERR(chai_optim_state_set(o, "w.momentum_buffer", &t3), CHAI_ERR_ARG,
            "'w.momentum_buffer' is not a state of adamw");
  CHECK_ERR(chai_optim_state_set(o, "w.step", &ti), CHAI_ERR_ARG, "w.step must be i64, got i32");
  CHECK_ERR(chai_optim_state_set(o, "nodot", &t3), CHAI_ERR_ARG, "is not <param>.<state>");
  chai_tensor_release(&t3);
  chai_tensor_release(&ti);
  chai_optim_reset(o);
  CHECK(chai_optim_state_count(o) == 0);
  chai_optim_free(o);

  /* allocation failure while creating state leaves parameters untouched */
  CHECK_OK(chai_optim_new(&o, &cfg));
  memcpy(before, w, sizeof w);
  chai_alloc_fail_after(2);
  CHECK_ERR(chai_optim_step(o, ps, 2, 0.1f, 1), CHAI_ERR_NOMEM, "optimizer step: state of");
  chai_alloc_fail_after(0);
  CHECK(memcmp(before, w, sizeof w) == 0);
  CHECK_OK(chai_optim_step(o, ps, 2, 0.1f, 1));
  chai_optim_free(o);

  /* bad hyperparameters */
  chai_optim_config bad = cfg;
  bad.beta1 = 1;
  CHECK_ERR(chai_optim_new(&o, &bad), CHAI_ERR_ARG, "beta1 must be in [0, 1), got 1");
  CHECK(o == NULL);
  bad = cfg;
  bad.eps = 0;
  CHECK_ERR(chai_optim_new(&o, &bad), CHAI_ERR_ARG, "eps must be > 0");
  bad.eps = 1e-8f;
  bad.weight_decay = -1;
  CHECK_ERR(chai_optim_new(&o, &bad), CHAI_ERR_ARG, "weight_decay must be >= 0, got -1");
  chai_optim_config_default(&bad, CHAI_OPTIM_SGD);
  bad.nesterov = true;
  CHECK_ERR(chai_optim_new(&o, &bad), CHAI_ERR_ARG, "nesterov needs momentum > 0");
  bad.nesterov = false;
  bad.momentum = -0.5f;
  CHECK_ERR(chai_optim_new(&o, &bad), CHAI_ERR_ARG, "momentum must be >= 0, got -0.5");
  chai_optim_kind k;
  CHECK_ERR(chai_optim_kind_parse("adam", &k), CHAI_ERR_ARG, "unknown kind 'adam'");
  chai_schedule_kind sk;
  CHECK_ERR(chai_schedule_kind_parse("step", &sk), CHAI_ERR_ARG, "unknown kind 'step'");
  chai_schedule s = {CHAI_SCHEDULE_LINEAR, 5, 5, 0};
  CHECK_ERR(chai_schedule_check(&s), CHAI_ERR_ARG, "total_steps > warmup_steps, got 5 and 5");
  s.warmup_steps = -1;
  CHECK_ERR(chai_schedule_check(&s), CHAI_ERR_ARG, "warmup_steps must be >= 0, got -1");
  s = (chai_schedule){CHAI_SCHEDULE_COSINE, 0, 5, 2};
  CHECK_ERR(chai_schedule_check(&s), CHAI_ERR_ARG, "min_ratio must be in 0..1, got 2");
}

static void clipping(void) {
  float g1[3] = {3, 0, 0}, g2[1] = {4}, x[4] = {0};
  chai_param ps[3] = {{"a", x, g1, 3, false}, {"f", x, NULL, 1, false}, {"b", x, g2, 1, false}};
  double norm;
  bool finite;
  chai_grad_global_norm(&norm, &finite, ps, 3);
  CHECK(norm == 5 && finite);
  CHECK_CLOSE(chai_clip_factor(norm, 1), 1 / (5 + 1e-6), 1e-7);
  CHECK(chai_clip_factor(norm, 10) == 1);
  CHECK(chai_clip_factor(norm, 0) == 1);
  g2[0] = NAN;
  chai_grad_global_norm(&norm, &finite, ps, 3);
  CHECK(!finite);
  g2[0] = INFINITY;
  chai_grad_global_norm(&norm, &finite, ps, 3);
  CHECK(!finite);
  /* a large gradient: the chunked sum gives the same bits for 1 and 2 threads */
  size_t n = 1000003;
  float *big = malloc(n * sizeof(float));
  chai_rng rng;
  chai_rng_init(&rng, 11);
  chai_rng_fill_normal(&rng, big, n, 0, 1);
  chai_param pb = {"big", big, big, n, false};
  double n1, n2;
  int nt = chai_threads_get();
  chai_threads(1);
  chai_grad_global_norm(&n1, &finite, &pb, 1);
  chai_threads(2);
  chai_grad_global_norm(&n2, &finite, &pb, 1);
  chai_threads(nt);
  CHECK(n1 == n2);
  CHECK(fabs(n1 - 1000.0) < 10);
  free(big);
}

static void schedules(const cJSON *m) {
  const cJSON *c;
  int cases = 0;
  cJSON_ArrayForEach(c, cJSON_GetObjectItem(m, "schedule")) {
    chai_schedule s = {0};
    CHECK_OK(chai_schedule_kind_parse(fx_str(c, "kind"), &s.kind));
    s.warmup_steps = (long)fx_num(c, "warmup");
    s.total_steps = (long)fx_num(c, "total");
    s.min_ratio = (float)fx_num(c, "min_ratio");
    CHECK_OK(chai_schedule_check(&s));
    const cJSON *f;
    long step = 0;
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(c, "factors")) {
      double got = chai_schedule_factor(&s, step);
      if (fabs(got - f->valuedouble) > 1e-6)
        fprintf(stderr, "schedule %s step %ld: %g vs %g\n", fx_str(c, "kind"), step, got,
                f->valuedouble);
      CHECK(fabs(got - f->valuedouble) <= 1e-6);
      step++;
    }
    cases++;
  }
  CHECK(cases == 5);
}

int main(void) {
  cJSON *m = fx_manifest();
  CHECK(m != NULL);
  if (!m) return chai_test_finish();
  const cJSON *c;
  int n = 0;
  cJSON_ArrayForEach(c, cJSON_GetObjectItem(m, "optim")) {
    trajectory(c);
    state_round_trip(c);
    n++;
  }
  CHECK(n == 6);
  /* The trajectories at the scalar level too */
  chai_simd top = chai_simd_level();
  chai_simd_force(CHAI_SIMD_REF);
  cJSON_ArrayForEach(c, cJSON_GetObjectItem(m, "optim")) trajectory(c);
  chai_simd_force(top);
  schedules(m);
  cJSON_Delete(m);
  kernels_vs_ref();
  frozen_and_errors();
  clipping();
  CHECK(chai_memory_live() == 0);
  return chai_test_finish();
}
