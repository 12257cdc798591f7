/* Generation: greedy or sampled (temperature, top-k, top-p in Hugging Face's warper order),
 * seeded, one prompt through the KV cache. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chai/memory.h"
#include "chai/opt.h"
#include "kernels/kernels.h"
#include "model/opt_model.h"

void chai_opt_generate_defaults(const chai_opt_model *m, chai_opt_generate_opts *o) {
  memset(o, 0, sizeof *o);
  o->max_new_tokens = 20;
  o->temperature = 1.0f;
  o->top_p = 1.0f;
  o->eos_token_id = m ? m->cfg.eos_token_id : -1;
}

/* The first maximum wins, as torch.argmax (NaNs are passed over; see chai_argmax). A vectorised
 * max then a scan: the plain running-best loop cost ~0.2 ms of every decoded token over a
 * 50272-word vocabulary, a tenth of a quantized step. */
static int argmax(const float *x, int n) {
  return (int)chai_argmax(x, (size_t)n);
}

static int by_score_desc(const void *a, const void *b, void *ctx) {
  const float *keys = ctx;
  float x = keys[*(const int32_t *)a], y = keys[*(const int32_t *)b];
  if (x != y) return x > y ? -1 : 1;
  return *(const int32_t *)a - *(const int32_t *)b; /* ties: lower id first */
}

int chai_opt_sample(const float *logits, int V, const chai_opt_generate_opts *o, chai_rng *rng,
                    float *scratch, int32_t *order) {
  if (!o->sample) return argmax(logits, V);
  float *s = scratch;
  float inv_t = 1.0f / o->temperature;
  for (int i = 0; i < V; i++)
    s[i] = logits[i] * inv_t;
  float mx = s[argmax(s, V)];
  if (!isfinite(mx)) return argmax(logits, V);
  double total = 0;
  for (int i = 0; i < V; i++)
    total += exp((double)s[i] - mx);
  bool filter = (o->top_k > 0 && o->top_k < V) || o->top_p < 1.0f;
  if (!filter) { /* plain temperature sampling over the whole vocabulary */
    double u = (double)chai_rng_uniform(rng) * total, acc = 0;
    for (int i = 0; i < V; i++) {
      acc += exp((double)s[i] - mx);
      if (u < acc) return i;
    }
    return argmax(s, V);
  }
  /* Sorting all V scores per token is slow, so first sort only the tokens within 1e-4 of the top
   * probability. The tokens left out all rank below every one kept, so the answer is the same
   * whenever the kept ones contain the top-k and reach the top-p mass; else sort everything. */
  float thr = mx - 9.2103404f; /* log(1e-4) */
  int n = 0;
  double mass = 0;
  for (int i = 0; i < V; i++)
    if (s[i] >= thr) {
      order[n++] = i;
      mass += exp((double)s[i] - mx);
    }
  if ((o->top_k > 0 && n < o->top_k) || (o->top_p < 1.0f && mass / total < (double)o->top_p)) {
    n = 0;
    for (int i = 0; i < V; i++)
      if (s[i] > -INFINITY) order[n++] = i;
  }
  qsort_r(order, (size_t)n, sizeof *order, by_score_desc, s);
  /* top-k: keep scores >= the k-th largest (ties at the boundary stay, as HF's TopKLogitsWarper).
   */
  if (o->top_k > 0 && o->top_k < n) {
    float kth = s[order[o->top_k - 1]];
    int keep = o->top_k;
    while (keep < n && s[order[keep]] >= kth)
      keep++;
    n = keep;
    total = 0;
    for (int r = 0; r < n; r++)
      total += exp((double)s[order[r]] - mx);
  }
  /* top-p: keep a token while the probability ranked above it is < top_p (HF's TopPLogitsWarper
   * drops a token when the ascending cumulative sum up to it is <= 1 - top_p); the top token is
   * always kept. */
  if (o->top_p < 1.0f) {
    double above = 0;
    int keep = 0;
    while (keep < n && above < (double)o->top_p)
      above += exp((double)s[order[keep++]] - mx) / total;
    n = keep;
    total = 0;
    for (int r = 0; r < n; r++)
      total += exp((double)s[order[r]] - mx);
  }
  double u = (double)chai_rng_uniform(rng) * total, acc = 0;
  for (int r = 0; r < n; r++) {
    acc += exp((double)s[order[r]] - mx);
    if (u < acc) return order[r];
  }
  return order[n - 1];
}

chai_status chai_opt_generate(chai_opt_model *m, int32_t *out, int *n_out, const int32_t *ids,
                              int n_prompt, const chai_opt_generate_opts *o) {
  *n_out = 0;
  const chai_opt_config *c = &m->cfg;
  if (n_prompt < 1) return chai_error(CHAI_ERR_ARG, "OPT generate: the prompt is empty");
  if (o->max_new_tokens < 0)
    return chai_error(CHAI_ERR_ARG, "OPT generate: max_new_tokens is %d; it must be >= 0",
                      o->max_new_tokens);
  if (o->sample) {
    if (!(o->temperature > 0) || !isfinite(o->temperature))
      return chai_error(CHAI_ERR_ARG, "OPT generate: temperature %g must be > 0", o->temperature);
    if (o->top_k < 0)
      return chai_error(CHAI_ERR_ARG, "OPT generate: top_k %d must be >= 0 (0 = off)", o->top_k);
    if (!(o->top_p > 0 && o->top_p <= 1))
      return chai_error(CHAI_ERR_ARG, "OPT generate: top_p %g must be in (0, 1]", o->top_p);
  }
  if (o->eos_token_id < -1 || o->eos_token_id >= c->vocab_size)
    return chai_error(CHAI_ERR_ARG, "OPT generate: eos_token_id %d is outside the vocabulary",
                      o->eos_token_id);
  if (o->max_new_tokens == 0) return CHAI_OK;
  /* The last new token is returned, never fed back: the cache needs prompt + new - 1 slots. */
  int64_t need = (int64_t)n_prompt + o->max_new_tokens - 1;
  if (need > c->max_position_embeddings)
    return chai_error(CHAI_ERR_ARG,
                      "OPT generate: a prompt of %d tokens plus max_new_tokens %d exceeds "
                      "max_position_embeddings %d",
                      n_prompt, o->max_new_tokens, c->max_position_embeddings);
  chai_status st = chai_opt_cache_begin(m, 1, (int)need);
  if (st) return st;
  int V = c->vocab_size;
  size_t bytes = (size_t)V * (2 * sizeof(float) + sizeof(int32_t));
  float *buf = chai_alloc(bytes, "OPT generate logits");
  if (!buf) return CHAI_ERR_NOMEM;
  float *logits = buf, *scratch = buf + V;
  int32_t *order = (int32_t *)(buf + 2 * (size_t)V);
  chai_rng rng;
  chai_rng_init(&rng, o->seed);
  st = chai_opt_cache_step(m, logits, ids, NULL, 1, n_prompt);
  while (!st) {
    int32_t tok = chai_opt_sample(logits, V, o, &rng, scratch, order);
    out[(*n_out)++] = tok;
    if (tok == o->eos_token_id || *n_out == o->max_new_tokens) break;
    if (chai_interrupted()) {
      st = chai_error(CHAI_ERR_INTERRUPTED, "OPT generate interrupted");
      break;
    }
    st = chai_opt_cache_step(m, logits, &tok, NULL, 1, 1);
  }
  chai_free(buf, bytes);
  return st;
}
