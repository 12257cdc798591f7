/* y (N,R) = epilogue(x (N,C) · Wᵀ) for a matrix of any format, and the input gradient through it.
 *
 * Packed formats: the activations are quantized once into the workspace (tokens padded with zeros
 * to a multiple of 16, the kernels' token step), then the output is cut into tasks of PANEL row
 * blocks × a chunk of tokens, which the threads take one at a time in row-panel order (a panel of
 * weights stays in cache while its token chunks pass). Each output is one task's fixed-order
 * arithmetic: the same bits for any thread count and any task order. A batch of products over one
 * input (a layer's Q, K and V) quantizes it once and shares one region's tasks; each product keeps
 * the bits it has alone. f32 goes to OpenBLAS; f16 is widened a block of rows at a time into the
 * workspace (a block stays in cache) and multiplied there. */
#include <omp.h>
#include <string.h>

#include "chai/blas.h"
#include "chai/half.h"
#include "chai/quant.h"
#include "quant/qkernels.h"

/* Row blocks per task: a multiple of every kernel's register tile (1, 2 or 3 blocks). */
#define PANEL 6
/* Floats of an f16 matrix widened at a time: 1 MB, about one core's L2. */
#define LOWP_BLOCK_FLOATS (256 * 1024)
/* Tasks a thread should find (when the tokens allow chunks of 64 or more), taken as threads come
 * free: a thread that the machine slows takes fewer. With 4 a thread, taken in fixed contiguous
 * runs, int8 classify of opt-125m spent ~6% of its samples in threads waiting for each other; 16,
 * taken dynamically, was 4-6% faster (measured in one process, alternating calls; Zen 5). */
#define TASKS_PER_THREAD 16
/* Below this many multiply-adds a product runs on one thread. */
#define PARALLEL_MIN (1 << 18)

static const chai_qepilogue no_epilogue = {0};

static int round16(int n) {
  return (n + 15) & ~15;
}

static int lowp_rows(int R, int C) {
  int rows = LOWP_BLOCK_FLOATS / C;
  if (rows < 1) rows = 1;
  return rows < R ? rows : R;
}

size_t chai_qmat_matmul_work_bytes(const chai_qmat *w, int N) {
  if (N < 1) return 0;
  switch (w->format) {
  case CHAI_QF_F32: return 0;
  case CHAI_QF_F16: return (size_t)lowp_rows(w->rows, w->cols) * (size_t)w->cols * sizeof(float);
  default: return chai_qact_bytes(round16(N), w->cols, w->format == CHAI_QF_BF16);
  }
}

/* bias and ReLU over y (N,R) after a GEMM that already added y when accumulating. */
static void dense_epilogue(float *y, int N, int R, const chai_qepilogue *e) {
  if (!e->bias && !e->relu) return;
#pragma omp parallel for if ((int64_t)N * R > (1 << 15))
  for (int n = 0; n < N; n++) {
    float *o = y + (size_t)n * R;
    if (e->bias)
      for (int j = 0; j < R; j++)
        o[j] += e->bias[j];
    if (e->relu)
      for (int j = 0; j < R; j++)
        o[j] = o[j] > 0.0f ? o[j] : 0.0f;
  }
}

/* Rows r0..r0+n-1 of a row-major f16 matrix as f32, split over the threads when large. */
static void widen_rows(float *dst, const uint16_t *src, int64_t r0, int64_t n, int C) {
  src += r0 * C;
  int64_t total = n * C;
  int64_t parts = total >= (1 << 16) ? 8 : 1, per = (total + parts - 1) / parts;
#pragma omp parallel for if (parts > 1)
  for (int64_t i = 0; i < parts; i++) {
    int64_t a = i * per, b = a + per < total ? a + per : total;
    if (a < b) chai_f16_to_f32_array(dst + a, src + a, (size_t)(b - a));
  }
}

static chai_status dense_matmul(float *y, const float *x, const chai_qmat *w, int N,
                                const chai_qepilogue *e, float *work) {
  chai_status st = chai_blas_init();
  if (st) return st;
  int R = w->rows, C = w->cols;
  float beta = e->accumulate ? 1.0f : 0.0f;
  if (w->format == CHAI_QF_F32) {
    chai_sgemm(false, true, N, R, C, 1.0f, x, C, chai_tensor_data(&w->t), C, beta, y, R);
  } else {
    int block = lowp_rows(R, C);
    for (int j0 = 0; j0 < R; j0 += block) {
      int r = R - j0 < block ? R - j0 : block;
      widen_rows(work, chai_tensor_data(&w->t), j0, r, C);
      chai_sgemm(false, true, N, r, C, 1.0f, x, C, work, C, beta, y + j0, R);
    }
  }
  dense_epilogue(y, N, R, e);
  return CHAI_OK;
}

static chai_status check_args(const float *y, const float *x, const chai_qmat *w, int N,
                              const char *fn) {
  if (N < 0 || N > (1 << 30)) return chai_error(CHAI_ERR_ARG, "%s: %d tokens", fn, N);
  if (w->format >= CHAI_QF_COUNT || w->rows < 1 || w->cols < 1)
    return chai_error(CHAI_ERR_ARG, "%s: the matrix is released or has no rows", fn);
  if (N > 0 && (!y || !x)) return chai_error(CHAI_ERR_ARG, "%s: NULL input or output", fn);
  return CHAI_OK;
}

static bool is_packed(const chai_qmat *w) {
  return w->format != CHAI_QF_F32 && w->format != CHAI_QF_F16;
}

/* The packed products of p (all over the same x) with their kernels, or the scalar twins when ref:
 * x quantized once (with a bf16 copy when one of them is bf16), then one parallel region whose
 * tasks cover every product's panels. */
static void packed_matmul(const chai_qmat_product *p, int count, const float *x, int N, void *work,
                          bool ref) {
  int Np = round16(N), C = 0, panels = 0;
  bool bf = false;
  double madds = 0;
  for (int j = 0; j < count; j++)
    if (is_packed(p[j].w)) {
      C = p[j].w->cols;
      bf = bf || p[j].w->format == CHAI_QF_BF16;
      panels += (p[j].w->rows_p / 16 + PANEL - 1) / PANEL;
      madds += (double)N * p[j].w->rows * C;
    }
  if (panels == 0) return;
  chai_qact a;
  chai_qact_layout(&a, work, Np, C, bf);
  if (ref) {
    chai_qact_rows_ref(&a, x, 0, N);
    chai_qact_zero_rows(&a, N, Np);
    for (int j = 0; j < count; j++) {
      const chai_qmat *w = p[j].w;
      if (!is_packed(w)) continue;
      chai_qgemm_fn gemm = w->format == CHAI_QF_INT8   ? chai_q8_gemm_ref
                           : w->format == CHAI_QF_INT4 ? chai_q4_gemm_ref
                                                       : chai_bf16_gemm_ref;
      gemm(p[j].y, N, w, &a, 0, w->rows_p / 16, 0, Np, &p[j].e);
    }
    return;
  }
  /* Token chunks: whole multiples of 16, small enough for TASKS_PER_THREAD. */
  int threads = madds < PARALLEL_MIN ? 1 : omp_get_max_threads();
  int chunk = Np;
  while (chunk > 64 && (int64_t)panels * ((Np + chunk - 1) / chunk) < TASKS_PER_THREAD * threads)
    chunk = round16(chunk / 2);
  int chunks = (Np + chunk - 1) / chunk, tasks = panels * chunks;
#pragma omp parallel num_threads(threads)
  {
    int per = (N + omp_get_num_threads() - 1) / omp_get_num_threads(), t = omp_get_thread_num();
    int n0 = t * per < N ? t * per : N, n1 = n0 + per < N ? n0 + per : N;
    chai_qact_rows(&a, x, n0, n1);
#pragma omp single nowait
    chai_qact_zero_rows(&a, N, Np);
#pragma omp barrier
#pragma omp for schedule(dynamic, 1)
    for (int i = 0; i < tasks; i++) {
      /* task i: panel i / chunks counted over the packed products in order, chunk i % chunks */
      int panel = i / chunks, c = i % chunks, j = 0, nrb = 0;
      for (;; j++) {
        if (!is_packed(p[j].w)) continue;
        nrb = p[j].w->rows_p / 16;
        int own = (nrb + PANEL - 1) / PANEL;
        if (panel < own) break;
        panel -= own;
      }
      int rb0 = panel * PANEL, rb1 = rb0 + PANEL < nrb ? rb0 + PANEL : nrb;
      int c0 = c * chunk, c1 = c0 + chunk < Np ? c0 + chunk : Np;
      chai_qkernel_pick(p[j].w->format, false)
          ->gemm(p[j].y, N, p[j].w, &a, rb0, rb1, c0, c1, &p[j].e);
    }
  }
}

static chai_status matmul_batch(const chai_qmat_product *p, int count, const float *x, int N,
                                void *work, bool ref, const char *fn) {
  if (count < 1 || !p) return chai_error(CHAI_ERR_ARG, "%s: %d products", fn, count);
  for (int j = 0; j < count; j++) {
    if (!p[j].w) return chai_error(CHAI_ERR_ARG, "%s: product %d has no matrix", fn, j + 1);
    chai_status st = check_args(p[j].y, x, p[j].w, N, fn);
    if (st) return st;
    if (p[j].w->cols != p[0].w->cols)
      return chai_error(CHAI_ERR_ARG, "%s: product %d has %d columns, product 1 has %d", fn, j + 1,
                        p[j].w->cols, p[0].w->cols);
  }
  if (N == 0) return CHAI_OK;
  size_t bytes = chai_qmat_matmul_batch_work_bytes(p, count, N);
  void *own = NULL;
  if (!work && bytes) {
    own = work = chai_alloc(bytes, "quantized matmul workspace");
    if (!own) return CHAI_ERR_NOMEM;
  }
  packed_matmul(p, count, x, N, work, ref);
  chai_status st = CHAI_OK;
  for (int j = 0; j < count && !st; j++) {
    const chai_qmat *w = p[j].w;
    if (is_packed(w)) continue;
    if (ref) {
      for (int n = 0; n < N; n++)
        chai_rows_gemv_ref(p[j].y + (size_t)n * w->rows, chai_tensor_data(&w->t), w->t.dtype,
                           x + (size_t)n * w->cols, w->cols, 0, w->rows, &p[j].e);
    } else {
      st = dense_matmul(p[j].y, x, w, N, &p[j].e, work);
    }
  }
  if (own) chai_free(own, bytes);
  return st;
}

size_t chai_qmat_matmul_batch_work_bytes(const chai_qmat_product *p, int count, int N) {
  size_t need = 0;
  for (int j = 0; j < count; j++) {
    size_t b = p[j].w ? chai_qmat_matmul_work_bytes(p[j].w, N) : 0;
    need = b > need ? b : need;
  }
  return need;
}

chai_status chai_qmat_matmul_batch(const chai_qmat_product *p, int count, const float *x, int N,
                                   void *work) {
  return matmul_batch(p, count, x, N, work, false, "qmat matmul_batch");
}

chai_status chai_qmat_matmul_batch_ref(const chai_qmat_product *p, int count, const float *x, int N,
                                       void *work) {
  return matmul_batch(p, count, x, N, work, true, "qmat matmul_batch_ref");
}

static chai_status matmul(float *y, const float *x, const chai_qmat *w, int N,
                          const chai_qepilogue *e, void *work, bool ref, const char *fn) {
  chai_qmat_product one = {.y = y, .w = w, .e = e ? *e : no_epilogue};
  return matmul_batch(&one, 1, x, N, work, ref, fn);
}

chai_status chai_qmat_matmul(float *y, const float *x, const chai_qmat *w, int N,
                             const chai_qepilogue *e, void *work) {
  return matmul(y, x, w, N, e, work, false, "qmat matmul");
}

chai_status chai_qmat_matmul_ref(float *y, const float *x, const chai_qmat *w, int N,
                                 const chai_qepilogue *e, void *work) {
  return matmul(y, x, w, N, e, work, true, "qmat matmul_ref");
}

/* ---- the dequantized product (training) --------------------------------------------------------
 */

size_t chai_qmat_dequant_work_bytes(const chai_qmat *w) {
  if (w->format == CHAI_QF_F32) return 0;
  return (size_t)lowp_rows(w->rows, w->cols) * (size_t)w->cols * sizeof(float);
}

chai_status chai_qmat_matmul_dequant(float *y, const float *x, const chai_qmat *w, int N,
                                     const chai_qepilogue *e, void *work) {
  chai_status st = check_args(y, x, w, N, "qmat matmul_dequant");
  if (st || N == 0) return st;
  if ((st = chai_blas_init())) return st;
  int R = w->rows, C = w->cols;
  if (w->format == CHAI_QF_F32) {
    chai_sgemm(false, true, N, R, C, 1.0f, x, C, chai_tensor_data(&w->t), C,
               e->accumulate ? 1.0f : 0.0f, y, R);
    dense_epilogue(y, N, R, e);
    return CHAI_OK;
  }
  int block = lowp_rows(R, C);
  size_t bytes = chai_qmat_dequant_work_bytes(w);
  float *scratch = work ? work : chai_alloc(bytes, "dequantized block");
  if (!scratch) return CHAI_ERR_NOMEM;
  for (int j0 = 0; j0 < R; j0 += block) {
    int r = R - j0 < block ? R - j0 : block;
    int parts = (int64_t)r * C >= (1 << 16) ? omp_get_max_threads() : 1;
#pragma omp parallel for num_threads(parts) schedule(static)
    for (int i = 0; i < r; i++)
      chai_qmat_dequant_rows(w, scratch + (size_t)i * C, j0 + i, j0 + i + 1);
    chai_sgemm(false, true, N, r, C, 1.0f, x, C, scratch, C, e->accumulate ? 1.0f : 0.0f, y + j0,
               R);
  }
  if (!work) chai_free(scratch, bytes);
  dense_epilogue(y, N, R, e);
  return CHAI_OK;
}

/* ---- the input gradient ---------------------------------------------------------------------- */

chai_status chai_qmat_matmul_backward_input(float *dx, const float *dy, const chai_qmat *w, int N,
                                            bool accumulate) {
  chai_status st = check_args(dx, dy, w, N, "qmat backward_input");
  if (st || N == 0) return st;
  st = chai_blas_init();
  if (st) return st;
  int R = w->rows, C = w->cols;
  float beta = accumulate ? 1.0f : 0.0f;
  if (w->format == CHAI_QF_F32) {
    chai_sgemm(false, false, N, C, R, 1.0f, dy, R, chai_tensor_data(&w->t), C, beta, dx, C);
    return CHAI_OK;
  }
  /* Blocks of rows dequantized into scratch that stays in cache: dx += dy[:, j0:j0+r] · W[j0:j0+r].
   */
  int block = lowp_rows(R, C);
  size_t bytes = (size_t)block * (size_t)C * sizeof(float);
  float *scratch = chai_alloc(bytes, "quantized backward block");
  if (!scratch) return CHAI_ERR_NOMEM;
  for (int j0 = 0; j0 < R; j0 += block) {
    int r = R - j0 < block ? R - j0 : block;
    int parts = (int64_t)r * C >= (1 << 16) ? omp_get_max_threads() : 1;
#pragma omp parallel for num_threads(parts) schedule(static)
    for (int i = 0; i < r; i++)
      chai_qmat_dequant_rows(w, scratch + (size_t)i * C, j0 + i, j0 + i + 1);
    chai_sgemm(false, false, N, C, r, 1.0f, dy + j0, R, scratch, C, beta, dx, C);
    beta = 1.0f;
  }
  chai_free(scratch, bytes);
  return CHAI_OK;
}
