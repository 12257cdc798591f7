/* Matrix-vector products for decoding, where one token's activations meet every weight matrix:
 * y (OC) = epilogue(W (OC,C) · x (C)), W row-major in f32, f16 or bf16. The rows are shared
 * between threads here; each row is the quant room's streaming kernel (chai_rows_gemv), one
 * thread's dot product in a fixed order, so results do not depend on the thread count or on which
 * thread computed the row. */
#include <omp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "model/opt_model.h"
#include "quant/qkernels.h"

/* The row kernels live in the quant room (kernels/rows_gemv.c, quant/qref.c). */
void opt_gemv_rows(float *y, const void *W, chai_dtype dt, const float *x, int C, int r0, int r1,
                   const opt_gemv_epilogue *e) {
  chai_rows_gemv(y, W, dt, x, C, r0, r1, e);
}

void opt_gemv_rows_ref(float *y, const void *W, chai_dtype dt, const float *x, int C, int r0,
                       int r1, const opt_gemv_epilogue *e) {
  chai_rows_gemv_ref(y, W, dt, x, C, r0, r1, e);
}

/* Rows [lo, hi) shared by two threads, one taking chunks from the front and the other from the
 * back, each claim a quarter of what is left (at least MIN_CLAIM rows): the two meet wherever the
 * slower one has got to, and neither waits long for the other at the end. A fixed half each left
 * one thread idle for 3-7% of every decode step here (memory stalls differ between the cores from
 * one matrix to the next). Packed as lo << 32 | hi so that one compare-and-swap claims rows. */
#define MIN_CLAIM 8
static bool claim(_Atomic uint64_t *span, bool front, int *r0, int *r1) {
  uint64_t cur = atomic_load_explicit(span, memory_order_relaxed), next;
  uint32_t lo, hi, k;
  do {
    lo = (uint32_t)(cur >> 32), hi = (uint32_t)cur;
    if (lo >= hi) return false;
    k = (hi - lo) / 4 > MIN_CLAIM ? (hi - lo) / 4 : MIN_CLAIM;
    if (k > hi - lo) k = hi - lo;
    next = front ? (uint64_t)(lo + k) << 32 | hi : (uint64_t)lo << 32 | (hi - k);
  } while (!atomic_compare_exchange_weak_explicit(span, &cur, next, memory_order_relaxed,
                                                  memory_order_relaxed));
  *r0 = (int)(front ? lo : hi - k);
  *r1 = (int)(front ? lo + k : hi);
  return true;
}

/* Threads beyond this many run the plain contiguous split (no claims). */
#define MAX_PAIRS 32

/* Rows [r0, r1) of the tasks' rows taken end to end. */
static void batch_rows(const opt_gemv_task *tasks, int n_tasks, const float *x, int C, int r0,
                       int r1) {
  int base = 0;
  for (int i = 0; i < n_tasks && base < r1; base += tasks[i].OC, i++) {
    int a = r0 > base ? r0 - base : 0, b = r1 - base < tasks[i].OC ? r1 - base : tasks[i].OC;
    if (a < b) opt_gemv_rows(tasks[i].y, tasks[i].W, tasks[i].dt, x, C, a, b, &tasks[i].e);
  }
}

void opt_gemv_batch(const opt_gemv_task *tasks, int n_tasks, const float *x, int C) {
  int OC = 0;
  for (int i = 0; i < n_tasks; i++)
    OC += tasks[i].OC;
  /* Small matrices are not worth waking a second thread for. */
  int64_t work = (int64_t)OC * C;
  int nt = work >= (1 << 17) ? omp_get_max_threads() : 1;
  if (nt > OC / 4) nt = OC / 4 > 0 ? OC / 4 : 1;
  if (nt <= 1) {
    batch_rows(tasks, n_tasks, x, C, 0, OC);
    return;
  }
  /* Threads 2p and 2p+1 share segment p; an odd last thread has its segment alone. */
  int pairs = (nt + 1) / 2;
  bool shared = pairs <= MAX_PAIRS;
  _Atomic uint64_t spans[MAX_PAIRS];
  int per = (OC + pairs - 1) / pairs;
  for (int p = 0; shared && p < pairs; p++) {
    uint64_t lo = (uint64_t)p * per, hi = lo + per < (uint64_t)OC ? lo + per : (uint64_t)OC;
    atomic_init(&spans[p], lo << 32 | hi);
  }
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num(), n = omp_get_num_threads();
    if (shared && n == nt) {
      int r0, r1;
      while (claim(&spans[t / 2], t % 2 == 0, &r0, &r1))
        batch_rows(tasks, n_tasks, x, C, r0, r1);
    } else { /* contiguous ranges, multiples of 4 rows */
      int each = ((OC + n - 1) / n + 3) & ~3;
      int r0 = t * each, r1 = r0 + each < OC ? r0 + each : OC;
      if (r0 < r1) batch_rows(tasks, n_tasks, x, C, r0, r1);
    }
  }
}
