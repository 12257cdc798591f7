/* The decode scheduler: matrix-vector products for one token, where the token's activations meet
 * every weight matrix and the work is pure streaming of the weights. The kernels are the quant
 * room's (chai_qmat_gemv_rows: f32, f16, bf16, int8, int4); this file shares a batch of matrices
 * that read the same x between threads. Rows go in blocks of 16 (a packed format's unit), and
 * each row is one thread's dot product in a fixed order, so results do not depend on the thread
 * count or on which thread computed a row. */
#include <omp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "model/opt_model.h"
#include "team.h"

/* Blocks [lo, hi) shared by two threads, one taking chunks from the front and the other from the
 * back, each claim a quarter of what is left (at least MIN_CLAIM blocks): the two meet wherever the
 * slower one has got to, and neither waits long for the other at the end. A fixed half each left
 * one thread idle for 3-7% of every decode step here (memory stalls differ between the cores from
 * one matrix to the next). Packed as lo << 32 | hi so that one compare-and-swap claims rows. */
#define MIN_CLAIM 1 /* blocks of 16 rows */
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

static int blocks(const opt_gemv_task *t) {
  return (t->w->rows + 15) / 16;
}

/* Blocks [b0, b1) of the tasks' blocks taken end to end. */
static void batch_rows(const opt_gemv_task *tasks, int n_tasks, const float *x, const chai_qact *xa,
                       int b0, int b1) {
  int base = 0;
  for (int i = 0; i < n_tasks && base < b1; base += blocks(&tasks[i]), i++) {
    int nb = blocks(&tasks[i]), R = tasks[i].w->rows;
    int a = b0 > base ? b0 - base : 0, b = b1 - base < nb ? b1 - base : nb;
    if (a >= b) continue;
    int r0 = a * 16, r1 = b * 16 < R ? b * 16 : R;
    chai_qmat_gemv_rows(tasks[i].y, tasks[i].w, x, xa, r0, r1, &tasks[i].e);
  }
}

typedef struct {
  const opt_gemv_task *tasks;
  int n_tasks;
  const float *x;
  const chai_qact *xa;
  int NB, nt;
  bool shared;
  _Atomic uint64_t spans[MAX_PAIRS];
} gemv_job;

/* Thread t of n: claims from its pair's segment, or a contiguous range. */
static void batch_part(void *ctx, int t, int n) {
  gemv_job *j = ctx;
  if (j->shared && n == j->nt) {
    int b0, b1;
    while (claim(&j->spans[t / 2], t % 2 == 0, &b0, &b1))
      batch_rows(j->tasks, j->n_tasks, j->x, j->xa, b0, b1);
  } else {
    int each = (j->NB + n - 1) / n;
    int b0 = t * each, b1 = b0 + each < j->NB ? b0 + each : j->NB;
    if (b0 < b1) batch_rows(j->tasks, j->n_tasks, j->x, j->xa, b0, b1);
  }
}

size_t opt_gemv_work_bytes(int C) {
  return chai_qact_bytes(1, C, true);
}

void opt_gemv_batch(const opt_gemv_task *tasks, int n_tasks, const float *x, void *work) {
  int NB = 0, C = tasks[0].w->cols;
  bool codes = false;
  int64_t work_elems = 0;
  for (int i = 0; i < n_tasks; i++) {
    NB += blocks(&tasks[i]);
    chai_qformat f = tasks[i].w->format;
    codes |= f == CHAI_QF_INT8 || f == CHAI_QF_INT4 || f == CHAI_QF_BF16;
    work_elems += (int64_t)tasks[i].w->rows * C;
  }
  /* The token once for the whole batch: 8-bit codes (and its bf16 copy) for packed matrices. */
  chai_qact xa = {0};
  if (codes) chai_qact_quantize(&xa, work, x, 1, C, true);
  /* Small matrices are not worth waking a second thread for. */
  int nt = work_elems >= (1 << 17) ? omp_get_max_threads() : 1;
  if (nt > NB) nt = NB;
  if (nt <= 1) {
    batch_rows(tasks, n_tasks, x, &xa, 0, NB);
    return;
  }
  /* Threads 2p and 2p+1 share segment p; an odd last thread has its segment alone. */
  gemv_job job = {tasks, n_tasks, x, &xa, NB, nt, .shared = (nt + 1) / 2 <= MAX_PAIRS};
  int pairs = (nt + 1) / 2, per = (NB + pairs - 1) / pairs;
  for (int p = 0; job.shared && p < pairs; p++) {
    uint64_t lo = (uint64_t)p * per, hi = lo + per < (uint64_t)NB ? lo + per : (uint64_t)NB;
    atomic_init(&job.spans[p], lo << 32 | hi);
  }
  /* a decode step holds a team (opt_kvcache.c): then this is a hand-over, not an OpenMP region */
  chai_team_run(batch_part, &job, nt);
}
