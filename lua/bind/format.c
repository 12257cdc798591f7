/* tostring(t): "chai.Tensor (2,3) f32\n[[1, 2, 3], [4, 5, 6]]". Dims longer than 6 show their
 * first and last 3 entries around "...", so printing a large tensor stays short. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bind.h"
#include "chai/half.h"

#define SHOW_MAX 6
#define SHOW_EDGE 3

static void add_element(luaL_Buffer *b, const chai_tensor *t, int64_t off) {
  const uint8_t *p = (const uint8_t *)chai_tensor_data(t) + off;
  char buf[48];
  double v = 0;
  switch (t->dtype) {
  case CHAI_I32: {
    int32_t x;
    memcpy(&x, p, 4);
    snprintf(buf, sizeof buf, "%ld", (long)x);
    break;
  }
  case CHAI_I64: {
    int64_t x;
    memcpy(&x, p, 8);
    snprintf(buf, sizeof buf, "%lld", (long long)x);
    break;
  }
  case CHAI_I8: snprintf(buf, sizeof buf, "%d", *(const int8_t *)p); break;
  case CHAI_U8: snprintf(buf, sizeof buf, "%u", *p); break;
  default: {
    if (t->dtype == CHAI_F32) {
      float x;
      memcpy(&x, p, 4);
      v = x;
    } else {
      uint16_t h;
      memcpy(&h, p, 2);
      v = t->dtype == CHAI_F16 ? chai_f16_to_f32(h) : chai_bf16_to_f32(h);
    }
    if (isnan(v))
      snprintf(buf, sizeof buf, "nan");
    else if (isinf(v))
      snprintf(buf, sizeof buf, v > 0 ? "inf" : "-inf");
    else
      snprintf(buf, sizeof buf, "%.6g", v);
  }
  }
  luaL_addstring(b, buf);
}

static void add_dim(luaL_Buffer *b, const chai_tensor *t, int d, int64_t off) {
  if (d == t->ndim) {
    add_element(b, t, off);
    return;
  }
  int64_t n = t->shape[d];
  luaL_addchar(b, '[');
  for (int64_t i = 0; i < n; i++) {
    if (i) luaL_addstring(b, ", ");
    if (n > SHOW_MAX && i == SHOW_EDGE) {
      luaL_addstring(b, "...");
      i = n - SHOW_EDGE - 1;
      continue;
    }
    add_dim(b, t, d + 1, off + i * t->stride[d]);
  }
  luaL_addchar(b, ']');
}

void chai_bind_push_tostring(lua_State *L, const chai_tensor *t) {
  char desc[128];
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "chai.Tensor ");
  luaL_addstring(&b, chai_tensor_describe(t, desc, sizeof desc));
  luaL_addchar(&b, '\n');
  add_dim(&b, t, 0, 0);
  luaL_pushresult(&b);
}
