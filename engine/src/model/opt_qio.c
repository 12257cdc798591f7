/* Quantized checkpoints: what chai_opt_save writes for matrices in packed formats and how
 * chai_opt_load reads them back (bit-identical codes, so bit-identical logits).
 *
 * config.json gets a block
 *   "quantization_config": {"quant_method": "chai", "kv_cache": "int8",
 *     "modules": {"model.decoder.layers.0.fc1.weight":
 *                 {"format": "int4", "group": 64, "zero_point": false, "scales": "f16"}, ...}}
 * listing every matrix not in f32. In model.safetensors a quantized matrix NAME (ending in
 * "weight") is stored row-major as
 *   int8: NAME I8 (R,C) codes, NAME_scale F32 (R)
 *   int4: NAME U8 (R,ceil(C/2)), code 2j in the low nibble of byte j, 2j+1 in the high one (a
 *         last odd code's high nibble is 0); NAME_scale F32 or F16 (R,ceil(C/G)); with a zero
 *         point NAME_zero_point U8 (R,ceil(C/G))
 *   bf16: NAME BF16 (R,C);  f16: NAME F16 (R,C)
 * (the compressed-tensors names weight_scale / weight_zero_point), and the safetensors metadata
 * holds "chai.format.NAME" = the format of each. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chai/checkpoint.h"
#include "chai/half.h"
#include "model/opt_model.h"

/* ---- writing --------------------------------------------------------------------------------- */

static bool is_chai_quant(const opt_param *p) {
  return p->matrix && p->q.format != CHAI_QF_F32;
}

chai_status opt_qio_config_json(const chai_opt_model *m, char **out) {
  *out = NULL;
  char *base = NULL;
  chai_status st = chai_opt_config_to_json(&m->cfg, m->dtype, &base);
  if (st) return st;
  cJSON *root = cJSON_Parse(base);
  free(base);
  if (!root) return chai_error(CHAI_ERR_NOMEM, "OPT save: out of memory for config.json");
  cJSON_DeleteItemFromObjectCaseSensitive(root, "quantization_config");
  bool any = m->kv_format != CHAI_QF_F32;
  for (int i = 0; i < m->n_params && !any; i++)
    any = is_chai_quant(&m->params[i]);
  if (any) {
    cJSON *qc = cJSON_AddObjectToObject(root, "quantization_config");
    cJSON *mods = qc ? cJSON_CreateObject() : NULL;
    if (mods) {
      cJSON_AddStringToObject(qc, "quant_method", "chai");
      cJSON_AddStringToObject(qc, "kv_cache", chai_qformat_name(m->kv_format));
      cJSON_AddItemToObject(qc, "modules", mods);
    }
    for (int i = 0; mods && i < m->n_params; i++) {
      const opt_param *p = &m->params[i];
      if (!is_chai_quant(p)) continue;
      cJSON *e = cJSON_AddObjectToObject(mods, p->name);
      if (!e) break;
      cJSON_AddStringToObject(e, "format", chai_qformat_name(p->q.format));
      if (p->q.format == CHAI_QF_INT4) {
        cJSON_AddNumberToObject(e, "group", p->q.group);
        cJSON_AddBoolToObject(e, "zero_point", p->q.zero_point);
        cJSON_AddStringToObject(e, "scales", p->q.f16_scales ? "f16" : "f32");
      }
    }
  }
  *out = cJSON_Print(root);
  cJSON_Delete(root);
  return *out ? CHAI_OK : chai_error(CHAI_ERR_NOMEM, "OPT save: out of memory for config.json");
}

void opt_qio_list_free(opt_qio_list *l) {
  for (int i = 0; i < l->n; i++) {
    free(l->names[i]);
    chai_tensor_release(&l->ts[i]);
  }
  for (int i = 0; i < l->n_meta; i++)
    free(l->meta[i]);
  free(l->names);
  free(l->ts);
  free(l->meta);
  memset(l, 0, sizeof *l);
}

static chai_status add(opt_qio_list *l, const char *name, const char *suffix, chai_tensor *t) {
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 64;
    char **nn = realloc(l->names, (size_t)cap * sizeof *nn);
    if (nn) l->names = nn;
    chai_tensor *nt = nn ? realloc(l->ts, (size_t)cap * sizeof *nt) : NULL;
    if (!nt) {
      chai_tensor_release(t);
      return chai_error(CHAI_ERR_NOMEM, "OPT save: out of memory");
    }
    l->ts = nt;
    l->cap = cap;
  }
  size_t len = strlen(name) + strlen(suffix) + 1;
  char *s = malloc(len);
  if (!s) {
    chai_tensor_release(t);
    return chai_error(CHAI_ERR_NOMEM, "OPT save: out of memory");
  }
  snprintf(s, len, "%s%s", name, suffix);
  l->names[l->n] = s;
  l->ts[l->n++] = *t; /* the list owns the reference */
  return CHAI_OK;
}

static chai_status add_meta(opt_qio_list *l, const char *name, const char *format) {
  char **nm = realloc(l->meta, (size_t)(l->n_meta + 3) * sizeof *nm);
  if (!nm) return chai_error(CHAI_ERR_NOMEM, "OPT save: out of memory");
  l->meta = nm;
  size_t len = strlen(name) + 16;
  char *k = malloc(len), *v = strdup(format);
  if (!k || !v) {
    free(k);
    free(v);
    return chai_error(CHAI_ERR_NOMEM, "OPT save: out of memory");
  }
  snprintf(k, len, "chai.format.%s", name);
  l->meta[l->n_meta++] = k;
  l->meta[l->n_meta++] = v;
  l->meta[l->n_meta] = NULL;
  return CHAI_OK;
}

static chai_status new_tensor(chai_tensor *t, chai_dtype dt, int64_t r, int64_t c) {
  int64_t shape[2] = {r, c};
  return chai_tensor_new(t, dt, c ? 2 : 1, shape);
}

/* The stored tensors of one packed matrix. */
static chai_status add_packed(opt_qio_list *l, const opt_param *p) {
  const chai_qmat *q = &p->q;
  int R = q->rows, C = q->cols;
  chai_tensor codes = {0}, scale = {0}, zero = {0};
  chai_status st;
  if (q->format == CHAI_QF_BF16) {
    if ((st = new_tensor(&codes, CHAI_BF16, R, C))) return st;
    chai_qmat_to_bf16(q, chai_tensor_data(&codes));
    return add(l, p->name, "", &codes);
  }
  if (q->format == CHAI_QF_INT8) {
    if ((st = new_tensor(&codes, CHAI_I8, R, C))) return st;
    if ((st = new_tensor(&scale, CHAI_F32, R, 0))) {
      chai_tensor_release(&codes);
      return st;
    }
    chai_qmat_to_int8(q, chai_tensor_data(&codes), chai_tensor_data(&scale));
    st = add(l, p->name, "", &codes);
    if (!st)
      st = add(l, p->name, "_scale", &scale);
    else
      chai_tensor_release(&scale);
    return st;
  }
  /* int4 */
  int ng = (C + q->group - 1) / q->group;
  size_t nu = (size_t)R * C, ns = (size_t)R * ng;
  uint8_t *u = malloc(nu);
  float *sc = malloc(ns * sizeof(float));
  uint8_t *z = malloc(ns);
  if (!u || !sc || !z) {
    free(u), free(sc), free(z);
    return chai_error(CHAI_ERR_NOMEM, "OPT save: out of memory");
  }
  chai_qmat_to_int4(q, u, sc, z);
  int half = (C + 1) / 2;
  st = new_tensor(&codes, CHAI_U8, R, half);
  if (!st) st = new_tensor(&scale, q->f16_scales ? CHAI_F16 : CHAI_F32, R, ng);
  if (!st && q->zero_point) st = new_tensor(&zero, CHAI_U8, R, ng);
  if (!st) {
    uint8_t *d = chai_tensor_data(&codes);
    for (int r = 0; r < R; r++)
      for (int j = 0; j < half; j++) {
        const uint8_t *row = u + (size_t)r * C;
        uint8_t lo = row[2 * j], hi = 2 * j + 1 < C ? row[2 * j + 1] : 0;
        d[(size_t)r * half + j] = (uint8_t)(lo | hi << 4);
      }
    if (q->f16_scales)
      chai_f32_to_f16_array(chai_tensor_data(&scale), sc, ns);
    else
      memcpy(chai_tensor_data(&scale), sc, ns * sizeof(float));
    if (q->zero_point) memcpy(chai_tensor_data(&zero), z, ns);
    st = add(l, p->name, "", &codes);
    if (!st)
      st = add(l, p->name, "_scale", &scale);
    else
      chai_tensor_release(&scale);
    if (!st && q->zero_point)
      st = add(l, p->name, "_zero_point", &zero);
    else
      chai_tensor_release(&zero);
  } else {
    chai_tensor_release(&codes);
    chai_tensor_release(&scale);
    chai_tensor_release(&zero);
  }
  free(u), free(sc), free(z);
  return st;
}

chai_status opt_qio_tensors(const chai_opt_model *m, opt_qio_list *l) {
  memset(l, 0, sizeof *l);
  chai_status st = CHAI_OK;
  for (int i = 0; i < m->n_params && !st; i++) {
    const opt_param *p = &m->params[i];
    if (opt_param_packed(p)) {
      st = add_packed(l, p);
    } else {
      chai_tensor t;
      chai_tensor_ref(&t, &p->t);
      st = add(l, p->name, "", &t);
    }
    if (!st && is_chai_quant(p)) st = add_meta(l, p->name, chai_qformat_name(p->q.format));
  }
  if (st) opt_qio_list_free(l);
  return st;
}

/* ---- reading --------------------------------------------------------------------------------- */

/* The module entry of a quantized checkpoint for `name`, or NULL. */
static const cJSON *module_entry(const cJSON *mods, const char *name) {
  return mods ? cJSON_GetObjectItemCaseSensitive(mods, name) : NULL;
}

static chai_status get_checked(const chai_checkpoint *ck, const char *key, chai_dtype dt,
                               chai_dtype dt2, int64_t r, int64_t c, const char *origin,
                               chai_tensor *out) {
  chai_status st = chai_checkpoint_get(ck, key, out);
  if (st) return chai_error_context(st, "%s: quantized weights", origin);
  if (out->dtype != dt && out->dtype != dt2) {
    st = chai_error(CHAI_ERR_FORMAT, "%s: %s has dtype %s, expected %s", origin, key,
                    chai_dtype_name(out->dtype), chai_dtype_name(dt));
  } else {
    int nd = c ? 2 : 1;
    bool ok = out->ndim == nd && out->shape[0] == r && (nd == 1 || out->shape[1] == c);
    if (!ok) {
      char got[64], exp[64];
      int64_t want[2] = {r, c};
      st = chai_error(CHAI_ERR_FORMAT, "%s: %s has shape %s, expected %s", origin, key,
                      chai_shape_str(out->ndim, out->shape, got, sizeof got),
                      chai_shape_str(nd, want, exp, sizeof exp));
    } else if (!chai_tensor_is_contiguous(out)) {
      st = chai_error(CHAI_ERR_FORMAT, "%s: %s is not contiguous", origin, key);
    }
  }
  if (st) chai_tensor_release(out);
  return st;
}

/* One packed matrix from its stored tensors: p->q. `key` is the payload's key in the file. */
static chai_status read_packed(opt_param *p, const chai_checkpoint *ck, const char *key,
                               const cJSON *e, const char *origin) {
  const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(e, "format");
  chai_qformat f;
  if (!cJSON_IsString(fmt) || chai_qformat_parse(fmt->valuestring, &f))
    return chai_error(CHAI_ERR_FORMAT,
                      "%s: quantization_config: %s has an unknown format %s (f16, bf16, int8, "
                      "int4)",
                      origin, p->name, cJSON_IsString(fmt) ? fmt->valuestring : "(not a string)");
  int R = (int)p->shape[0], C = (int)p->shape[1];
  char sk[200], zk[200];
  snprintf(sk, sizeof sk, "%s_scale", key);
  snprintf(zk, sizeof zk, "%s_zero_point", key);
  chai_tensor codes, scale, zero;
  chai_status st;
  chai_qmat q;
  chai_qmat_init(&q);
  if (f == CHAI_QF_F32 || f == CHAI_QF_F16) {
    if ((st = get_checked(ck, key, f == CHAI_QF_F32 ? CHAI_F32 : CHAI_F16, CHAI_DTYPE_COUNT, R, C,
                          origin, &codes)))
      return st;
    chai_tensor_release(&p->t);
    p->t = codes;
    return opt_param_wrap(p);
  }
  if (f == CHAI_QF_BF16) {
    if ((st = get_checked(ck, key, CHAI_BF16, CHAI_DTYPE_COUNT, R, C, origin, &codes))) return st;
    st = chai_qmat_from_bf16(&q, chai_tensor_data(&codes), R, C);
    chai_tensor_release(&codes);
  } else if (f == CHAI_QF_INT8) {
    if ((st = get_checked(ck, key, CHAI_I8, CHAI_DTYPE_COUNT, R, C, origin, &codes))) return st;
    if ((st = get_checked(ck, sk, CHAI_F32, CHAI_DTYPE_COUNT, R, 0, origin, &scale))) {
      chai_tensor_release(&codes);
      return st;
    }
    st = chai_qmat_from_int8(&q, chai_tensor_data(&codes), chai_tensor_data(&scale), R, C);
    chai_tensor_release(&codes);
    chai_tensor_release(&scale);
  } else {
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(e, "group");
    const cJSON *zp = cJSON_GetObjectItemCaseSensitive(e, "zero_point");
    int G = cJSON_IsNumber(g) ? g->valueint : 0;
    if ((G != 32 && G != 64 && G != 128) || g->valuedouble != G)
      return chai_error(CHAI_ERR_FORMAT,
                        "%s: quantization_config: %s has group %g; int4 needs 32, 64 or 128",
                        origin, p->name, cJSON_IsNumber(g) ? g->valuedouble : 0.0);
    bool has_zero = cJSON_IsTrue(zp);
    int ng = (C + G - 1) / G, half = (C + 1) / 2;
    if ((st = get_checked(ck, key, CHAI_U8, CHAI_DTYPE_COUNT, R, half, origin, &codes))) return st;
    if ((st = get_checked(ck, sk, CHAI_F32, CHAI_F16, R, ng, origin, &scale))) {
      chai_tensor_release(&codes);
      return st;
    }
    zero.storage = NULL;
    if (has_zero && (st = get_checked(ck, zk, CHAI_U8, CHAI_DTYPE_COUNT, R, ng, origin, &zero))) {
      chai_tensor_release(&codes);
      chai_tensor_release(&scale);
      return st;
    }
    size_t ns = (size_t)R * ng;
    uint8_t *u = malloc((size_t)R * C), *z = malloc(ns);
    float *sc = malloc(ns * sizeof(float));
    if (!u || !z || !sc) {
      st = chai_error(CHAI_ERR_NOMEM, "%s: out of memory reading %s", origin, key);
    } else {
      const uint8_t *d = chai_tensor_data(&codes);
      for (int r = 0; r < R && !st; r++)
        for (int c = 0; c < C; c++) {
          uint8_t b = d[(size_t)r * half + c / 2];
          u[(size_t)r * C + c] = c % 2 ? b >> 4 : b & 15;
        }
      bool f16 = scale.dtype == CHAI_F16;
      if (f16)
        chai_f16_to_f32_array(sc, chai_tensor_data(&scale), ns);
      else
        memcpy(sc, chai_tensor_data(&scale), ns * sizeof(float));
      if (has_zero) {
        memcpy(z, chai_tensor_data(&zero), ns);
        for (size_t i = 0; i < ns && !st; i++)
          if (z[i] > 15)
            st = chai_error(CHAI_ERR_FORMAT, "%s: %s holds %u at %zu; int4 zero points are 0..15",
                            origin, zk, z[i], i);
      } else {
        memset(z, 8, ns);
      }
      if (!st) st = chai_qmat_from_int4(&q, u, sc, z, R, C, G, has_zero, f16);
    }
    free(u), free(z), free(sc);
    chai_tensor_release(&codes);
    chai_tensor_release(&scale);
    chai_tensor_release(&zero);
  }
  if (st) return st;
  chai_tensor_release(&p->t);
  chai_qmat_release(&p->q);
  p->q = q;
  return CHAI_OK;
}

chai_status opt_qio_modules(const chai_opt_model *m, const char *origin, cJSON **out,
                            chai_qformat *kv) {
  *out = NULL;
  *kv = CHAI_QF_F32;
  if (!m->cfg.extra_json) return CHAI_OK;
  cJSON *root = cJSON_Parse(m->cfg.extra_json);
  if (!root) return chai_error(CHAI_ERR_NOMEM, "%s: out of memory", origin);
  cJSON *qc = cJSON_DetachItemFromObjectCaseSensitive(root, "quantization_config");
  cJSON_Delete(root);
  if (!qc) return CHAI_OK;
  chai_status st = CHAI_OK;
  const cJSON *method = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
  const cJSON *mods = cJSON_GetObjectItemCaseSensitive(qc, "modules");
  const cJSON *kvj = cJSON_GetObjectItemCaseSensitive(qc, "kv_cache");
  if (!cJSON_IsString(method) || strcmp(method->valuestring, "chai") != 0) {
    st = chai_error(CHAI_ERR_UNSUPPORTED,
                    "%s: quantization_config has quant_method %s; chai reads only its own "
                    "(\"chai\")",
                    origin, cJSON_IsString(method) ? method->valuestring : "(none)");
  } else if (!cJSON_IsObject(mods)) {
    st = chai_error(CHAI_ERR_FORMAT, "%s: quantization_config has no \"modules\" object", origin);
  } else if (kvj && (!cJSON_IsString(kvj) || chai_qformat_parse(kvj->valuestring, kv) ||
                     (*kv != CHAI_QF_F32 && *kv != CHAI_QF_INT8))) {
    st = chai_error(CHAI_ERR_FORMAT,
                    "%s: quantization_config: kv_cache must be \"f32\" or \"int8\"", origin);
  }
  if (st) {
    cJSON_Delete(qc);
    return st;
  }
  *out = qc;
  return CHAI_OK;
}

chai_status opt_qio_check_names(const chai_opt_model *m, const cJSON *qc, const char *origin) {
  const cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(qc, "modules")) {
    bool found = false;
    for (int i = 0; i < m->n_params && !found; i++)
      found = strcmp(m->params[i].name, e->string) == 0;
    if (!found)
      return chai_error(CHAI_ERR_FORMAT,
                        "%s: quantization_config lists %s, which this model (config.json) does not "
                        "have",
                        origin, e->string);
  }
  return CHAI_OK;
}

bool opt_qio_listed(const cJSON *qc, const char *name) {
  return module_entry(qc ? cJSON_GetObjectItemCaseSensitive(qc, "modules") : NULL, name) != NULL;
}

chai_status opt_qio_read(opt_param *p, const chai_checkpoint *ck, const char *key, const cJSON *qc,
                         const char *origin, bool *done) {
  *done = false;
  const cJSON *e =
      module_entry(qc ? cJSON_GetObjectItemCaseSensitive(qc, "modules") : NULL, p->name);
  if (!e) return CHAI_OK;
  if (!p->matrix)
    return chai_error(CHAI_ERR_FORMAT, "%s: quantization_config lists %s, which is not a matrix",
                      origin, p->name);
  *done = true;
  return read_packed(p, ck, key, e, origin);
}
