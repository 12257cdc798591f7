/* Which kernel runs: per format, a table of kernels best first; the first one this CPU runs at the
 * current SIMD level (chai_simd_level, so CHAI_CPU and chai_simd_force choose too) is the one in
 * use. Also the decode entry chai_qmat_gemv_rows and its twin. */
#include "chai/quant.h"
#include "quant/qkernels.h"

static bool has_avx512_vnni(void) {
  return chai_cpu_info_get()->avx512_vnni;
}
static bool has_avx_vnni(void) {
  return chai_cpu_info_get()->avx_vnni;
}
static bool has_avx512_bf16(void) {
  return chai_cpu_info_get()->avx512_bf16;
}
static bool has_f16c(void) {
  return chai_cpu_info_get()->f16c;
}
static bool always(void) {
  return true;
}

static const chai_qkernel int8_kernels[] = {
    {"amx-int8", CHAI_SIMD_AMX, always, NULL, chai_q8_gemm_amx},
    {"avx512-vnni", CHAI_SIMD_AVX512, has_avx512_vnni, chai_q8_gemv_avx512vnni,
     chai_q8_gemm_avx512vnni},
    {"avx-vnni", CHAI_SIMD_AVX2, has_avx_vnni, chai_q8_gemv_avxvnni, chai_q8_gemm_avxvnni},
    {"avx2", CHAI_SIMD_AVX2, always, chai_q8_gemv_avx2, chai_q8_gemm_avx2},
    {"ref", CHAI_SIMD_REF, always, chai_q8_gemv_ref, chai_q8_gemm_ref},
};
static const chai_qkernel int4_kernels[] = {
    {"avx512-vnni", CHAI_SIMD_AVX512, has_avx512_vnni, chai_q4_gemv_avx512vnni,
     chai_q4_gemm_avx512vnni},
    {"avx-vnni", CHAI_SIMD_AVX2, has_avx_vnni, chai_q4_gemv_avxvnni, chai_q4_gemm_avxvnni},
    {"avx2", CHAI_SIMD_AVX2, always, chai_q4_gemv_avx2, chai_q4_gemm_avx2},
    {"ref", CHAI_SIMD_REF, always, chai_q4_gemv_ref, chai_q4_gemm_ref},
};
static const chai_qkernel bf16_kernels[] = {
    {"amx-bf16", CHAI_SIMD_AMX, always, NULL, chai_bf16_gemm_amx},
    {"avx512-bf16", CHAI_SIMD_AVX512, has_avx512_bf16, chai_bf16_gemv_avx512bf16,
     chai_bf16_gemm_avx512bf16},
    {"avx512", CHAI_SIMD_AVX512, always, chai_bf16_gemv_avx512, chai_bf16_gemm_avx512},
    {"avx2", CHAI_SIMD_AVX2, always, chai_bf16_gemv_avx2, chai_bf16_gemm_avx2},
    {"ref", CHAI_SIMD_REF, always, chai_bf16_gemv_ref, chai_bf16_gemm_ref},
};

#define COUNT(a) ((int)(sizeof a / sizeof a[0]))

const chai_qkernel *chai_qkernels(chai_qformat f, int *count) {
  switch (f) {
  case CHAI_QF_INT8: *count = COUNT(int8_kernels); return int8_kernels;
  case CHAI_QF_INT4: *count = COUNT(int4_kernels); return int4_kernels;
  case CHAI_QF_BF16: *count = COUNT(bf16_kernels); return bf16_kernels;
  default: *count = 0; return NULL;
  }
}

bool chai_qkernel_runs_here(const chai_qkernel *k) {
  return k->level <= chai_simd_best() && k->cpu_has() && (k->level < CHAI_SIMD_AVX2 || has_f16c());
}

const chai_qkernel *chai_qkernel_pick(chai_qformat f, bool gemv) {
  int n;
  const chai_qkernel *ks = chai_qkernels(f, &n);
  chai_simd level = chai_simd_level();
  for (int i = 0; i < n; i++)
    if (ks[i].level <= level && chai_qkernel_runs_here(&ks[i]) && (!gemv || ks[i].gemv))
      return &ks[i];
  return NULL;
}

const char *chai_qformat_kernel(chai_qformat f) {
  if (f == CHAI_QF_F32 || f == CHAI_QF_F16) return "openblas";
  const chai_qkernel *k = chai_qkernel_pick(f, false);
  return k ? k->name : "?";
}

/* ---- decode ---------------------------------------------------------------------------------- */

void chai_rows_gemv(float *y, const void *W, chai_dtype dt, const float *x, int C, int r0, int r1,
                    const chai_qepilogue *e) {
  chai_simd s = chai_simd_level();
  if (s >= CHAI_SIMD_AVX512)
    chai_rows_gemv_avx512(y, W, dt, x, C, r0, r1, e);
  else if (s >= CHAI_SIMD_AVX2)
    chai_rows_gemv_avx2(y, W, dt, x, C, r0, r1, e);
  else
    chai_rows_gemv_ref(y, W, dt, x, C, r0, r1, e);
}

static const chai_qepilogue no_epilogue = {0};

void chai_qmat_gemv_rows(float *y, const chai_qmat *w, const float *x, const chai_qact *xa, int r0,
                         int r1, const chai_qepilogue *e) {
  if (!e) e = &no_epilogue;
  if (w->format == CHAI_QF_F32 || w->format == CHAI_QF_F16) {
    chai_rows_gemv(y, chai_tensor_data(&w->t), w->t.dtype, x, w->cols, r0, r1, e);
    return;
  }
  CHAI_ASSERT(r0 % 16 == 0 && r1 <= w->rows && xa->C == w->cols);
  chai_qkernel_pick(w->format, true)->gemv(y, w, xa, r0, r1, e);
}

void chai_qmat_gemv_rows_ref(float *y, const chai_qmat *w, const float *x, const chai_qact *xa,
                             int r0, int r1, const chai_qepilogue *e) {
  if (!e) e = &no_epilogue;
  switch (w->format) {
  case CHAI_QF_F32:
  case CHAI_QF_F16:
    chai_rows_gemv_ref(y, chai_tensor_data(&w->t), w->t.dtype, x, w->cols, r0, r1, e);
    break;
  case CHAI_QF_INT8: chai_q8_gemv_ref(y, w, xa, r0, r1, e); break;
  case CHAI_QF_INT4: chai_q4_gemv_ref(y, w, xa, r0, r1, e); break;
  case CHAI_QF_BF16: chai_bf16_gemv_ref(y, w, xa, r0, r1, e); break;
  default: CHAI_ASSERT(0);
  }
}
