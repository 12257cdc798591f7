/* AdamW and SGD with momentum over named parameters; one fused pass per tensor. State is kept
 * per parameter name (step count + moments, as torch keeps it per parameter), allocated on the
 * parameter's first step, so freezing and unfreezing parts of a model between steps keeps the
 * other parameters' state. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chai/cpu.h"
#include "chai/memory.h"
#include "chai/train.h"
#include "train/optim_kernels.h"

/* Tensors larger than this are updated by several threads in fixed chunks. */
#define CHUNK ((size_t)1 << 15)

typedef struct optim_entry {
  char *name; /* the parameter's name */
  char *state_names[3];
  size_t n;           /* elements; 0 until known */
  chai_tensor step;   /* i64 (1) */
  chai_tensor buf[2]; /* AdamW: exp_avg, exp_avg_sq; SGD: momentum_buffer */
} optim_entry;

struct chai_optim {
  chai_optim_config cfg;
  optim_entry *e;
  int count, cap;
};

static const char *const ADAMW_STATE[] = {"exp_avg", "exp_avg_sq"};
static const char *const SGD_STATE[] = {"momentum_buffer"};

/* Moment tensors per entry for this optimizer. */
static int nbufs(const chai_optim *o) {
  if (o->cfg.kind == CHAI_OPTIM_ADAMW) return 2;
  return o->cfg.momentum > 0 ? 1 : 0;
}

static const char *buf_suffix(const chai_optim *o, int k) {
  return o->cfg.kind == CHAI_OPTIM_ADAMW ? ADAMW_STATE[k] : SGD_STATE[k];
}

void chai_optim_config_default(chai_optim_config *c, chai_optim_kind kind) {
  memset(c, 0, sizeof *c);
  c->kind = kind;
  c->beta1 = 0.9;
  c->beta2 = 0.999;
  c->eps = 1e-8;
  c->weight_decay = kind == CHAI_OPTIM_ADAMW ? 0.01 : 0.0;
}

const char *chai_optim_kind_name(chai_optim_kind kind) {
  return kind == CHAI_OPTIM_ADAMW ? "adamw" : kind == CHAI_OPTIM_SGD ? "sgd" : "?";
}

chai_status chai_optim_kind_parse(const char *name, chai_optim_kind *out) {
  if (name && strcmp(name, "adamw") == 0)
    *out = CHAI_OPTIM_ADAMW;
  else if (name && strcmp(name, "sgd") == 0)
    *out = CHAI_OPTIM_SGD;
  else
    return chai_error(CHAI_ERR_ARG, "optimizer: unknown kind '%s' (known: adamw, sgd)",
                      name ? name : "(null)");
  return CHAI_OK;
}

static bool contains(const char *s, const char *sub) {
  return strstr(s, sub) != NULL;
}

bool chai_param_default_no_decay(const char *name) {
  size_t n = strlen(name);
  if (n >= 4 && strcmp(name + n - 4, "bias") == 0) return true;
  return contains(name, "layer_norm") || contains(name, "layernorm") || contains(name, "ln_") ||
         contains(name, "LayerNorm");
}

chai_status chai_optim_new(chai_optim **out, const chai_optim_config *cfg) {
  *out = NULL;
  const chai_optim_config *c = cfg;
  if (c->kind != CHAI_OPTIM_ADAMW && c->kind != CHAI_OPTIM_SGD)
    return chai_error(CHAI_ERR_ARG, "optimizer: unknown kind %d", (int)c->kind);
  if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
    return chai_error(CHAI_ERR_ARG, "optimizer: weight_decay must be >= 0, got %g",
                      c->weight_decay);
  if (c->kind == CHAI_OPTIM_ADAMW) {
    if (!(c->beta1 >= 0 && c->beta1 < 1))
      return chai_error(CHAI_ERR_ARG, "adamw: beta1 must be in [0, 1), got %g", c->beta1);
    if (!(c->beta2 >= 0 && c->beta2 < 1))
      return chai_error(CHAI_ERR_ARG, "adamw: beta2 must be in [0, 1), got %g", c->beta2);
    if (!(c->eps > 0) || !isfinite(c->eps))
      return chai_error(CHAI_ERR_ARG, "adamw: eps must be > 0, got %g", c->eps);
  } else {
    if (!(c->momentum >= 0) || !isfinite(c->momentum))
      return chai_error(CHAI_ERR_ARG, "sgd: momentum must be >= 0, got %g", c->momentum);
    if (!(c->dampening >= 0 && c->dampening <= 1))
      return chai_error(CHAI_ERR_ARG, "sgd: dampening must be in 0..1, got %g", c->dampening);
    if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
      return chai_error(CHAI_ERR_ARG,
                        "sgd: nesterov needs momentum > 0 and dampening 0 (got %g and %g)",
                        c->momentum, c->dampening);
  }
  chai_optim *o = chai_alloc(sizeof *o, "optimizer");
  if (!o) return CHAI_ERR_NOMEM;
  memset(o, 0, sizeof *o);
  o->cfg = *c;
  *out = o;
  return CHAI_OK;
}

static void entry_release(optim_entry *e) {
  if (e->name) chai_free(e->name, strlen(e->name) + 1);
  for (int k = 0; k < 3; k++)
    if (e->state_names[k]) chai_free(e->state_names[k], strlen(e->state_names[k]) + 1);
  chai_tensor_release(&e->step);
  chai_tensor_release(&e->buf[0]);
  chai_tensor_release(&e->buf[1]);
  memset(e, 0, sizeof *e);
}

void chai_optim_reset(chai_optim *o) {
  if (!o) return;
  for (int i = 0; i < o->count; i++)
    entry_release(&o->e[i]);
  if (o->e) chai_free(o->e, (size_t)o->cap * sizeof *o->e);
  o->e = NULL;
  o->count = o->cap = 0;
}

void chai_optim_free(chai_optim *o) {
  if (!o) return;
  chai_optim_reset(o);
  chai_free(o, sizeof *o);
}

const chai_optim_config *chai_optim_get_config(const chai_optim *o) {
  return &o->cfg;
}

static char *concat(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *s = chai_alloc(la + lb + 2, "optimizer state name");
  if (!s) return NULL;
  memcpy(s, a, la);
  s[la] = '.';
  memcpy(s + la + 1, b, lb + 1);
  return s;
}

/* The entry for `name` (hint: where it probably is), or NULL. */
static optim_entry *find(const chai_optim *o, const char *name, int hint) {
  if (hint >= 0 && hint < o->count && strcmp(o->e[hint].name, name) == 0) return &o->e[hint];
  for (int i = 0; i < o->count; i++)
    if (strcmp(o->e[i].name, name) == 0) return &o->e[i];
  return NULL;
}

/* A new entry with its names and step tensor (moments come with the size). */
static chai_status add_entry(chai_optim *o, const char *name, optim_entry **out) {
  if (o->count == o->cap) {
    int cap = o->cap ? 2 * o->cap : 64;
    optim_entry *e = chai_alloc((size_t)cap * sizeof *e, "optimizer entries");
    if (!e) return CHAI_ERR_NOMEM;
    memset(e, 0, (size_t)cap * sizeof *e);
    if (o->count) memcpy(e, o->e, (size_t)o->count * sizeof *e);
    if (o->e) chai_free(o->e, (size_t)o->cap * sizeof *o->e);
    o->e = e;
    o->cap = cap;
  }
  optim_entry *e = &o->e[o->count];
  chai_status st = CHAI_ERR_NOMEM;
  memset(e, 0, sizeof *e);
  size_t ln = strlen(name);
  e->name = chai_alloc(ln + 1, "optimizer state name");
  if (!e->name) return CHAI_ERR_NOMEM;
  memcpy(e->name, name, ln + 1);
  e->state_names[0] = concat(name, "step");
  if (!e->state_names[0]) goto nomem;
  for (int k = 0; k < nbufs(o); k++) {
    e->state_names[k + 1] = concat(name, buf_suffix(o, k));
    if (!e->state_names[k + 1]) goto nomem;
  }
  st = chai_tensor_new(&e->step, CHAI_I64, 1, (int64_t[]){1});
  if (st) goto fail;
  o->count++;
  *out = e;
  return CHAI_OK;
nomem:
fail:
  entry_release(e);
  return st;
}

/* Allocates the (zeroed) moments once the size is known. */
static chai_status entry_size(chai_optim *o, optim_entry *e, size_t n) {
  if (e->n) return CHAI_OK;
  for (int k = 0; k < nbufs(o); k++) {
    chai_status st = chai_tensor_new(&e->buf[k], CHAI_F32, 1, (int64_t[]){(int64_t)n});
    if (st) {
      chai_tensor_release(&e->buf[0]);
      chai_tensor_release(&e->buf[1]);
      return st;
    }
  }
  e->n = n;
  return CHAI_OK;
}

static int64_t *step_of(optim_entry *e) {
  return (int64_t *)chai_tensor_data(&e->step);
}

/* ---- the fused kernels ---------------------------------------------------------------------- */

chai_adamw_consts chai_adamw_consts_make(const chai_optim_config *c, double lr, double wd,
                                         int64_t t, float grad_scale) {
  chai_adamw_consts k;
  k.decay = (float)(1.0 - lr * wd);
  k.beta1 = (float)c->beta1;
  k.one_minus_beta1 = (float)(1.0 - c->beta1);
  k.beta2 = (float)c->beta2;
  k.one_minus_beta2 = (float)(1.0 - c->beta2);
  k.bc2_sqrt = (float)sqrt(1.0 - pow(c->beta2, (double)t));
  k.eps = (float)c->eps;
  k.neg_step = (float)(-lr / (1.0 - pow(c->beta1, (double)t)));
  k.grad_scale = grad_scale;
  return k;
}

/* The scalar definition; torch's op order (mul_, add_, addcmul_, sqrt/div/add, addcdiv_). */
void chai_adamw_update_ref(float *p, const float *g, float *m, float *v, size_t n,
                           const chai_adamw_consts *k) {
  for (size_t i = 0; i < n; i++) {
    float gi = g[i] * k->grad_scale;
    float pi = p[i] * k->decay;
    float mi = m[i] * k->beta1 + gi * k->one_minus_beta1;
    float vi = v[i] * k->beta2 + (gi * gi) * k->one_minus_beta2;
    float den = sqrtf(vi) / k->bc2_sqrt + k->eps;
    p[i] = pi + k->neg_step * (mi / den);
    m[i] = mi;
    v[i] = vi;
  }
}

void chai_adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                       const chai_adamw_consts *k) {
  switch (chai_simd_level()) {
  case CHAI_SIMD_AMX:
  case CHAI_SIMD_AVX512: chai_adamw_update_avx512(p, g, m, v, n, k); break;
  case CHAI_SIMD_AVX2: chai_adamw_update_avx2(p, g, m, v, n, k); break;
  default: chai_adamw_update_ref(p, g, m, v, n, k);
  }
}

void chai_sgd_update(float *p, const float *g, float *buf, size_t n, float lr, float momentum,
                     float one_minus_dampening, bool nesterov, float wd, bool first,
                     float grad_scale) {
  for (size_t i = 0; i < n; i++) {
    float d = g[i] * grad_scale;
    if (wd != 0) d = d + wd * p[i];
    if (buf) {
      float b = first ? d : buf[i] * momentum + one_minus_dampening * d;
      buf[i] = b;
      d = nesterov ? d + momentum * b : b;
    }
    p[i] = p[i] - lr * d;
  }
}

/* Runs one parameter's update, in chunks over threads when it is large (elementwise, so the
 * result does not depend on the split). */
static void update_one(const chai_optim *o, const chai_param *p, optim_entry *e, double lr,
                       float grad_scale) {
  const chai_optim_config *c = &o->cfg;
  int64_t t = ++*step_of(e);
  double wd = p->no_decay ? 0.0 : c->weight_decay;
  size_t n = p->n, chunks = (n + CHUNK - 1) / CHUNK;
  if (c->kind == CHAI_OPTIM_ADAMW) {
    chai_adamw_consts k = chai_adamw_consts_make(c, lr, wd, t, grad_scale);
    float *m = chai_tensor_data(&e->buf[0]), *v = chai_tensor_data(&e->buf[1]);
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (size_t q = 0; q < chunks; q++) {
      size_t i0 = q * CHUNK, len = n - i0 < CHUNK ? n - i0 : CHUNK;
      chai_adamw_update(p->data + i0, p->grad + i0, m + i0, v + i0, len, &k);
    }
  } else {
    float *buf = c->momentum > 0 ? chai_tensor_data(&e->buf[0]) : NULL;
    bool first = t == 1;
    float flr = (float)lr, mom = (float)c->momentum, damp = (float)(1.0 - c->dampening);
    float fwd = (float)wd;
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (size_t q = 0; q < chunks; q++) {
      size_t i0 = q * CHUNK, len = n - i0 < CHUNK ? n - i0 : CHUNK;
      chai_sgd_update(p->data + i0, p->grad + i0, buf ? buf + i0 : NULL, len, flr, mom, damp,
                      c->nesterov, fwd, first, grad_scale);
    }
  }
}

chai_status chai_optim_step(chai_optim *o, const chai_param *params, int count, double lr,
                            float grad_scale) {
  if (!(lr >= 0) || !isfinite(lr))
    return chai_error(CHAI_ERR_ARG, "optimizer step: lr must be a finite number >= 0, got %g", lr);
  if (!(grad_scale >= 0) || !isfinite(grad_scale))
    return chai_error(CHAI_ERR_ARG, "optimizer step: grad_scale must be finite and >= 0, got %g",
                      (double)grad_scale);
  if (count < 0) return chai_error(CHAI_ERR_ARG, "optimizer step: %d parameters", count);
  /* Check everything before touching any parameter. */
  for (int i = 0; i < count; i++) {
    const chai_param *p = &params[i];
    if (!p->name || !p->name[0])
      return chai_error(CHAI_ERR_ARG, "optimizer step: parameter %d has no name", i);
    if (!p->grad) continue;
    if (!p->data)
      return chai_error(CHAI_ERR_ARG, "optimizer step: parameter %s has no data", p->name);
    for (int j = 0; j < i; j++)
      if (strcmp(params[j].name, p->name) == 0)
        return chai_error(CHAI_ERR_ARG, "optimizer step: parameter %s is given twice", p->name);
    const optim_entry *e = find(o, p->name, i);
    if (e && e->n && e->n != p->n)
      return chai_error(CHAI_ERR_ARG,
                        "optimizer step: parameter %s has %zu elements but its optimizer state "
                        "has %zu",
                        p->name, p->n, e->n);
  }
  /* Allocate all missing state, so a failure leaves the parameters as they were. */
  for (int i = 0; i < count; i++) {
    const chai_param *p = &params[i];
    if (!p->grad) continue;
    optim_entry *e = find(o, p->name, i);
    chai_status st = CHAI_OK;
    if (!e) st = add_entry(o, p->name, &e);
    if (!st) st = entry_size(o, e, p->n);
    if (st) return chai_error_context(st, "optimizer step: state of %s", p->name);
  }
  for (int i = 0; i < count; i++) {
    const chai_param *p = &params[i];
    if (!p->grad) continue;
    update_one(o, p, find(o, p->name, i), lr, grad_scale);
  }
  return CHAI_OK;
}

void chai_ema_update(float *ema, const float *p, size_t n, float decay) {
  const float keep = decay, take = 1.0f - decay;
  size_t chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (size_t q = 0; q < chunks; q++) {
    size_t i0 = q * CHUNK, end = n - i0 < CHUNK ? n : i0 + CHUNK;
    for (size_t i = i0; i < end; i++)
      ema[i] = keep * ema[i] + take * p[i];
  }
}

/* ---- state ---------------------------------------------------------------------------------- */

int chai_optim_state_count(const chai_optim *o) {
  return o->count * (1 + nbufs(o));
}

chai_status chai_optim_state_get(const chai_optim *o, int i, const char **name, chai_tensor *out) {
  int per = 1 + nbufs(o);
  if (i < 0 || i >= o->count * per)
    return chai_error(CHAI_ERR_ARG, "optimizer state: index %d outside 0..%d", i,
                      o->count * per - 1);
  const optim_entry *e = &o->e[i / per];
  int k = i % per;
  const chai_tensor *t = k == 0 ? &e->step : &e->buf[k - 1];
  if (!chai_tensor_alive(t))
    return chai_error(CHAI_ERR_STATE, "optimizer state: %s has no values yet", e->state_names[k]);
  *name = e->state_names[k];
  chai_tensor_ref(out, t);
  return CHAI_OK;
}

chai_status chai_optim_state_set(chai_optim *o, const char *name, const chai_tensor *t) {
  /* Split "<param>.<suffix>" at the last dot. */
  const char *dot = strrchr(name, '.');
  if (!dot || dot == name)
    return chai_error(CHAI_ERR_ARG, "optimizer state: '%s' is not <param>.<state>", name);
  const char *suffix = dot + 1;
  int k = -1;
  if (strcmp(suffix, "step") == 0) k = 0;
  for (int b = 0; b < nbufs(o); b++)
    if (strcmp(suffix, buf_suffix(o, b)) == 0) k = b + 1;
  if (k < 0)
    return chai_error(CHAI_ERR_ARG, "optimizer state: '%s' is not a state of %s%s", name,
                      chai_optim_kind_name(o->cfg.kind),
                      o->cfg.kind == CHAI_OPTIM_SGD && o->cfg.momentum == 0 ? " without momentum"
                                                                            : "");
  if (!chai_tensor_alive(t))
    return chai_error(CHAI_ERR_ARG, "optimizer state: %s is a released tensor", name);
  chai_dtype want = k == 0 ? CHAI_I64 : CHAI_F32;
  if (t->dtype != want)
    return chai_error(CHAI_ERR_ARG, "optimizer state: %s must be %s, got %s", name,
                      chai_dtype_name(want), chai_dtype_name(t->dtype));
  int64_t numel = chai_tensor_numel(t);
  if (k == 0 && numel != 1)
    return chai_error(CHAI_ERR_ARG, "optimizer state: %s must hold 1 value, got %lld", name,
                      (long long)numel);
  char pname[512];
  size_t pl = (size_t)(dot - name);
  if (pl >= sizeof pname)
    return chai_error(CHAI_ERR_ARG, "optimizer state: name too long: %.60s...", name);
  memcpy(pname, name, pl);
  pname[pl] = 0;
  optim_entry *e = find(o, pname, -1);
  if (k > 0 && e && e->n && (size_t)numel != e->n)
    return chai_error(CHAI_ERR_ARG,
                      "optimizer state: %s has %lld elements, the other state of %s "
                      "has %zu",
                      name, (long long)numel, pname, e->n);
  chai_status st = CHAI_OK;
  if (!e) st = add_entry(o, pname, &e);
  if (!st && k > 0) st = entry_size(o, e, (size_t)numel);
  if (st) return st;
  chai_tensor *dst = k == 0 ? &e->step : &e->buf[k - 1];
  return chai_tensor_copy(dst, t);
}

/* ---- schedules and clipping ----------------------------------------------------------------- */

chai_status chai_schedule_kind_parse(const char *name, chai_schedule_kind *out) {
  if (name && strcmp(name, "constant") == 0)
    *out = CHAI_SCHEDULE_CONSTANT;
  else if (name && strcmp(name, "linear") == 0)
    *out = CHAI_SCHEDULE_LINEAR;
  else if (name && strcmp(name, "cosine") == 0)
    *out = CHAI_SCHEDULE_COSINE;
  else
    return chai_error(CHAI_ERR_ARG, "schedule: unknown kind '%s' (known: constant, linear, cosine)",
                      name ? name : "(null)");
  return CHAI_OK;
}

const char *chai_schedule_kind_name(chai_schedule_kind k) {
  return k == CHAI_SCHEDULE_CONSTANT ? "constant"
         : k == CHAI_SCHEDULE_LINEAR ? "linear"
         : k == CHAI_SCHEDULE_COSINE ? "cosine"
                                     : "?";
}

chai_status chai_schedule_check(const chai_schedule *s) {
  if (s->kind != CHAI_SCHEDULE_CONSTANT && s->kind != CHAI_SCHEDULE_LINEAR &&
      s->kind != CHAI_SCHEDULE_COSINE)
    return chai_error(CHAI_ERR_ARG, "schedule: unknown kind %d", (int)s->kind);
  if (s->warmup_steps < 0)
    return chai_error(CHAI_ERR_ARG, "schedule: warmup_steps must be >= 0, got %ld",
                      s->warmup_steps);
  if (s->kind != CHAI_SCHEDULE_CONSTANT && s->total_steps <= s->warmup_steps)
    return chai_error(CHAI_ERR_ARG,
                      "schedule: %s needs total_steps > warmup_steps, got %ld and %ld",
                      chai_schedule_kind_name(s->kind), s->total_steps, s->warmup_steps);
  if (!(s->min_ratio >= 0 && s->min_ratio <= 1))
    return chai_error(CHAI_ERR_ARG, "schedule: min_ratio must be in 0..1, got %g",
                      (double)s->min_ratio);
  return CHAI_OK;
}

double chai_schedule_factor(const chai_schedule *s, long step) {
  if (step < s->warmup_steps)
    return (double)step / (double)(s->warmup_steps > 1 ? s->warmup_steps : 1);
  double f = 1.0;
  long span = s->total_steps - s->warmup_steps;
  if (span < 1) span = 1;
  double progress = (double)(step - s->warmup_steps) / (double)span;
  if (s->kind == CHAI_SCHEDULE_LINEAR) {
    f = fmax(0.0, (double)(s->total_steps - step) / (double)span);
  } else if (s->kind == CHAI_SCHEDULE_COSINE) {
    f = fmax(0.0, 0.5 * (1.0 + cos(M_PI * progress)));
    if (progress >= 1) f = 0; /* stop at 0 rather than rise again */
  }
  if (s->kind != CHAI_SCHEDULE_CONSTANT) f = s->min_ratio + (1.0 - s->min_ratio) * f;
  return f;
}

/* Σ x² in double, in fixed chunks summed in order (the same bits for any thread count). */
static double sumsq(const float *x, size_t n) {
  size_t chunks = (n + CHUNK - 1) / CHUNK;
  if (chunks <= 1) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
      s += (double)x[i] * x[i];
    return s;
  }
  double part[64];
  double total = 0;
  /* Groups of 64 chunks keep the partials on the stack. */
  for (size_t g0 = 0; g0 < chunks; g0 += 64) {
    size_t gn = chunks - g0 < 64 ? chunks - g0 : 64;
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < gn; k++) {
      size_t i0 = (g0 + k) * CHUNK, len = n - i0 < CHUNK ? n - i0 : CHUNK;
      double s = 0;
      for (size_t i = 0; i < len; i++)
        s += (double)x[i0 + i] * x[i0 + i];
      part[k] = s;
    }
    for (size_t k = 0; k < gn; k++)
      total += part[k];
  }
  return total;
}

void chai_grad_global_norm(double *norm, bool *finite, const chai_param *params, int count) {
  double s = 0;
  for (int i = 0; i < count; i++)
    if (params[i].grad) s += sumsq(params[i].grad, params[i].n);
  *norm = sqrt(s);
  if (finite) *finite = isfinite(s);
}

float chai_clip_factor(double norm, float max_norm) {
  if (!(max_norm > 0)) return 1.0f;
  double c = (double)max_norm / (norm + 1e-6);
  return c < 1.0 ? (float)c : 1.0f;
}
