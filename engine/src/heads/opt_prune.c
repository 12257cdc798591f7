/* Per-layer head counts of a pruned OPT model, and chai_opt_prune_heads: slicing the real
 * attention weights down to the heads a plan keeps (never re-initialising them, unlike the seed
 * project's CHAI-base). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "chai/opt_heads.h"
#include "model/opt_model.h"

#define HEADS_KEY "chai_attention_heads"

int opt_layer_heads(const chai_opt_model *m, int l) {
  return m->layer_heads ? m->layer_heads[l] : m->cfg.num_attention_heads;
}

int chai_opt_layer_heads(const chai_opt_model *m, int layer) {
  if (layer < 0 || layer >= m->cfg.num_hidden_layers) return 0;
  return opt_layer_heads(m, layer);
}

chai_status opt_layer_heads_parse(chai_opt_model *m) {
  free(m->layer_heads);
  m->layer_heads = NULL;
  if (!m->cfg.extra_json) return CHAI_OK;
  cJSON *root = cJSON_Parse(m->cfg.extra_json);
  const cJSON *item = root ? cJSON_GetObjectItemCaseSensitive(root, HEADS_KEY) : NULL;
  if (!item) {
    cJSON_Delete(root);
    return CHAI_OK;
  }
  int L = m->cfg.num_hidden_layers, H = m->cfg.num_attention_heads;
  chai_status st = CHAI_OK;
  if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != L) {
    st =
        chai_error(CHAI_ERR_ARG, "config: %s must list %d head counts (one a layer)", HEADS_KEY, L);
  } else if (!(m->layer_heads = malloc(sizeof(int) * (size_t)L))) {
    st = chai_error(CHAI_ERR_NOMEM, "out of memory for %s", HEADS_KEY);
  } else {
    int l = 0;
    for (const cJSON *e = item->child; e && !st; e = e->next, l++) {
      double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
      if (v != (int)v || v < 1 || v > H)
        st = chai_error(CHAI_ERR_ARG, "config: %s[%d] must be a head count in 1..%d", HEADS_KEY, l,
                        H);
      else
        m->layer_heads[l] = (int)v;
    }
  }
  cJSON_Delete(root);
  if (st) {
    free(m->layer_heads);
    m->layer_heads = NULL;
  }
  return st;
}

/* A copy of cfg whose extra keys record the head counts. */
static chai_status pruned_config(chai_opt_config *out, const chai_opt_config *cfg,
                                 const int *heads) {
  chai_status st = chai_opt_config_copy(out, cfg);
  if (st) return st;
  cJSON *obj = out->extra_json ? cJSON_Parse(out->extra_json) : cJSON_CreateObject();
  cJSON *arr = obj ? cJSON_CreateIntArray(heads, cfg->num_hidden_layers) : NULL;
  char *text = NULL;
  if (arr) {
    cJSON_DeleteItemFromObjectCaseSensitive(obj, HEADS_KEY);
    cJSON_AddItemToObject(obj, HEADS_KEY, arr);
    text = cJSON_PrintUnformatted(obj);
  }
  cJSON_Delete(obj);
  if (!text) {
    chai_opt_config_free(out);
    return chai_error(CHAI_ERR_NOMEM, "out of memory writing %s", HEADS_KEY);
  }
  free(out->extra_json);
  out->extra_json = text;
  return CHAI_OK;
}

/* dst rows/columns of kept heads from src: rows when `by_rows` ((H·D,C) → (K·D,C), or a (H·D)
 * bias), else columns ((C,H·D) → (C,K·D)). Same dtype on both sides. */
static void slice(opt_param *dst, const opt_param *src, const int *kept, int K, int D,
                  bool by_rows) {
  size_t es = chai_dtype_size(src->t.dtype);
  const uint8_t *s = chai_tensor_data(&src->t);
  uint8_t *d = chai_tensor_data(&dst->t);
  if (by_rows) {
    size_t row = (src->ndim == 2 ? (size_t)src->shape[1] : 1) * es;
    for (int k = 0; k < K; k++)
      memcpy(d + (size_t)k * D * row, s + (size_t)kept[k] * D * row, (size_t)D * row);
  } else {
    size_t rows = (size_t)src->shape[0], sw = (size_t)src->shape[1], dw = (size_t)K * D;
    for (size_t r = 0; r < rows; r++)
      for (int k = 0; k < K; k++)
        memcpy(d + (r * dw + (size_t)k * D) * es, s + (r * sw + (size_t)kept[k] * D) * es,
               (size_t)D * es);
  }
}

chai_status chai_opt_prune_heads(chai_opt_model **out, const chai_opt_model *m,
                                 const chai_heads_plan *plan, int keep) {
  *out = NULL;
  const chai_opt_config *c = &m->cfg;
  int L = c->num_hidden_layers, H = c->num_attention_heads, D = c->hidden_size / H;
  if (keep < 1)
    return chai_error(CHAI_ERR_ARG, "prune: keep must be >= 1 head per cluster, got %d", keep);
  if (m->layer_heads) return chai_error(CHAI_ERR_UNSUPPORTED, "prune: the model is already pruned");
  chai_heads_plan p;
  chai_status st = chai_heads_plan_copy(&p, plan);
  if (st) return st;
  chai_heads_dims dims = {L, H, 0};
  if ((st = chai_heads_plan_validate(&p, &dims))) goto done;
  for (int i = 0; i < p.n_layers; i++)
    if (!p.layers[i].has_clusters) {
      st = chai_error(CHAI_ERR_ARG,
                      "prune: layer %d of the plan gives only k; pruning needs clusters",
                      p.layers[i].layer);
      goto done;
    }
  /* kept[l*H ..]: the kept heads of layer l in increasing order; heads[l]: how many. */
  int *kept = malloc(sizeof(int) * (size_t)L * H), *heads = malloc(sizeof(int) * (size_t)L);
  if (!kept || !heads) {
    free(kept), free(heads);
    st = chai_error(CHAI_ERR_NOMEM, "out of memory pruning");
    goto done;
  }
  for (int l = 0; l < L; l++) {
    const chai_heads_layer *pl = chai_heads_plan_find(&p, l);
    int n = 0;
    for (int h = 0; h < H; h++) {
      bool k = true;
      if (pl) { /* h is kept when it is among the first `keep` of its cluster */
        for (int cidx = 0; cidx < pl->k; cidx++)
          for (int q = pl->start[cidx]; q < pl->start[cidx + 1]; q++)
            if (pl->order[q] == h) k = q - pl->start[cidx] < keep;
      }
      if (k) kept[l * H + n++] = h;
    }
    heads[l] = n;
  }
  chai_opt_config cfg;
  chai_opt_model *n = NULL;
  if (!(st = pruned_config(&cfg, c, heads))) {
    chai_rng rng; /* the draws are overwritten below */
    chai_rng_init(&rng, 0);
    st = chai_opt_create(&n, &cfg, m->dtype, &rng);
    chai_opt_config_free(&cfg);
  }
  for (int i = 0; !st && i < n->n_params; i++) { /* same-shaped parameters: plain copies */
    opt_param *np = &n->params[i];
    const opt_param *op = opt_param_find((chai_opt_model *)m, np->name);
    if (!op) {
      st = chai_error(CHAI_ERR_STATE, "prune: %s missing in the source model", np->name);
    } else if (chai_tensor_nbytes(&op->t) == chai_tensor_nbytes(&np->t) &&
               op->shape[0] == np->shape[0] && op->shape[1] == np->shape[1]) {
      memcpy(chai_tensor_data(&np->t), chai_tensor_data(&op->t), chai_tensor_nbytes(&np->t));
    }
  }
  for (int l = 0; !st && l < L; l++) {
    if (heads[l] == H) continue;
    const opt_layer *o = &m->layers[l];
    opt_layer *d = &n->layers[l];
    const int *kl = kept + l * H;
    slice(d->q_w, o->q_w, kl, heads[l], D, true);
    slice(d->k_w, o->k_w, kl, heads[l], D, true);
    slice(d->v_w, o->v_w, kl, heads[l], D, true);
    slice(d->o_w, o->o_w, kl, heads[l], D, false);
    if (o->q_b) {
      slice(d->q_b, o->q_b, kl, heads[l], D, true);
      slice(d->k_b, o->k_b, kl, heads[l], D, true);
      slice(d->v_b, o->v_b, kl, heads[l], D, true);
    }
  }
  if (!st) {
    n->score_from_checkpoint = m->score_from_checkpoint;
    n->score_warned = m->score_warned;
    memcpy(n->score_note, m->score_note, sizeof n->score_note);
    *out = n;
  } else {
    chai_opt_free(n);
  }
  free(kept), free(heads);
done:
  chai_heads_plan_free(&p);
  return st;
}
