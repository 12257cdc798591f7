/* A thread team held across a run of small parallel jobs.
 *
 * Decoding one token is about fifty matrix-vector products of a few hundred kilobytes each, and an
 * OpenMP parallel region costs ~3 µs to fork and join on this project's machines (2 threads,
 * libgomp): a tenth of a quantized step. chai_team_hold opens one region for the whole step; the
 * caller's thread runs the step and hands each parallel job to the region's other threads, which
 * spin for it (~0.5 µs a hand-over). Outside a hold, chai_team_run is a plain OpenMP region, so
 * code written on it runs the same either way. */
#ifndef CHAI_TEAM_H
#define CHAI_TEAM_H

#include "chai/error.h"

/* One thread's part of a job: t in 0..n-1, n the threads that take part. t equals
 * omp_get_thread_num() of the thread that runs it (per-thread scratch may be indexed by either). */
typedef void (*chai_team_fn)(void *ctx, int t, int n);

/* Runs fn(ctx, t, n) on n = min(threads, available) threads, t = 0 on the caller, and returns when
 * every part has returned (their writes are then visible to the caller). In a hold, on its
 * caller's thread: the held threads; elsewhere an OpenMP region of `threads` threads. threads <= 1
 * runs fn(ctx, 0, 1) on the caller with no region at all, and so does a job started by a part of
 * another (as a nested OpenMP region would). */
void chai_team_run(chai_team_fn fn, void *ctx, int threads);

/* item(ctx, i, t) for i = 0..count-1, each i once, on the threads of chai_team_run(.., threads),
 * each thread taking the next i as it comes free (OpenMP's schedule(dynamic, 1)); t is the
 * thread's part, for per-thread scratch. */
typedef void (*chai_team_item_fn)(void *ctx, long i, int t);
void chai_team_for(long count, chai_team_item_fn item, void *ctx, int threads);

/* Runs body(ctx) on the calling thread while omp_get_max_threads() - 1 other threads wait for its
 * chai_team_run jobs, and returns body's status. The waiting threads spin (yielding after a while),
 * so this is for a short, dense run of jobs: one decoded token. body runs directly, with no team,
 * when there is one thread, inside another hold or OpenMP region, or when OMP_WAIT_POLICY is
 * "passive" (the user asked that waiting threads sleep). OpenMP regions that body opens itself run
 * on its thread alone, so body's parallel work must go through chai_team_run. */
chai_status chai_team_hold(chai_status (*body)(void *ctx), void *ctx);

/* on = 0: chai_team_hold runs its body with no team from now on (1, the default: as above). For
 * tests and A/B measurements of the same build. */
void chai_team_allow(int on);

/* 1 when the calling thread holds a team (its chai_team_run jobs go to the held threads). */
int chai_team_held(void);

/* Whether a job of `work` multiply-adds is worth more than one thread: from `unheld_min` where a
 * job is an OpenMP fork and join (~3 µs), from CHAI_TEAM_HELD_MIN in a hold (a ~0.5 µs hand-over).
 * 2^15 measured on decode attention of opt-125m, Zen 5: from ~20 cached tokens, 1-4% a step. */
#define CHAI_TEAM_HELD_MIN (1 << 15)
static inline int chai_team_worth(double work, double unheld_min) {
  return work >= (chai_team_held() ? (double)CHAI_TEAM_HELD_MIN : unheld_min);
}

#endif
