/* A thread team held across a run of small parallel jobs (see team.h). The holding thread posts
 * a job by bumping a generation counter; the held threads spin on it, run their part and count
 * themselves done; the holder runs part 0 and waits for that count. One job is in flight at a time,
 * so the job's fields are plain memory ordered by the counters' release/acquire pairs. */
#include "team.h"

#include <omp.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <strings.h>

/* Pauses before a waiting thread starts yielding its core: ~0.1-0.3 ms, longer than the gaps
 * between a decode step's jobs (attention, norms) but short enough not to starve a thread that
 * shares the core when the machine is oversubscribed. */
#define SPINS_BEFORE_YIELD 8192

typedef struct {
  _Alignas(64) _Atomic unsigned gen; /* bumped to post a job or the end */
  chai_team_fn fn;                   /* the job: written before gen is bumped */
  void *ctx;
  int n;
  bool stop;
  bool busy; /* a job is in flight (the holder's own part may start another: it runs alone) */
  _Alignas(64) _Atomic int done; /* held threads finished with the current job */
  int size;                      /* threads in the team, the holder included */
} team;

static _Thread_local team *held;
static _Atomic int allowed = 1;

static void relax(unsigned *spins) {
  if (++*spins < SPINS_BEFORE_YIELD) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else {
    sched_yield();
  }
}

/* A held thread: run each posted job's part t until the end is posted. */
static void serve(team *tm, int t) {
  unsigned seen = 0;
  for (;;) {
    unsigned g, spins = 0;
    while ((g = atomic_load_explicit(&tm->gen, memory_order_acquire)) == seen)
      relax(&spins);
    seen = g;
    if (tm->stop) return;
    if (t < tm->n) tm->fn(tm->ctx, t, tm->n);
    atomic_fetch_add_explicit(&tm->done, 1, memory_order_release);
  }
}

void chai_team_run(chai_team_fn fn, void *ctx, int threads) {
  team *tm = held;
  if (threads <= 1 || (tm && (tm->size <= 1 || tm->busy))) {
    fn(ctx, 0, 1);
    return;
  }
  if (!tm) {
#pragma omp parallel num_threads(threads)
    fn(ctx, omp_get_thread_num(), omp_get_num_threads());
    return;
  }
  tm->busy = true;
  tm->fn = fn;
  tm->ctx = ctx;
  tm->n = threads < tm->size ? threads : tm->size;
  atomic_store_explicit(&tm->done, 0, memory_order_relaxed);
  atomic_fetch_add_explicit(&tm->gen, 1, memory_order_release);
  fn(ctx, 0, tm->n);
  unsigned spins = 0;
  while (atomic_load_explicit(&tm->done, memory_order_acquire) != tm->size - 1)
    relax(&spins);
  tm->busy = false;
}

typedef struct {
  chai_team_item_fn item;
  void *ctx;
  long count;
  _Atomic long next;
} for_job;

static void for_part(void *ctx, int t, int n) {
  for_job *j = ctx;
  (void)n;
  for (long i; (i = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->count;)
    j->item(j->ctx, i, t);
}

void chai_team_for(long count, chai_team_item_fn item, void *ctx, int threads) {
  for_job job = {item, ctx, count, 0};
  chai_team_run(for_part, &job, threads);
}

static bool passive_waits(void) {
  static _Atomic int passive = -1; /* the environment, read once */
  int v = atomic_load_explicit(&passive, memory_order_relaxed);
  if (v < 0) {
    const char *p = getenv("OMP_WAIT_POLICY");
    v = p && strcasecmp(p, "passive") == 0;
    atomic_store_explicit(&passive, v, memory_order_relaxed);
  }
  return v;
}

chai_status chai_team_hold(chai_status (*body)(void *ctx), void *ctx) {
  int threads = omp_get_max_threads();
  if (held || threads < 2 || omp_in_parallel() || passive_waits() ||
      !atomic_load_explicit(&allowed, memory_order_relaxed))
    return body(ctx);
  team tm = {.size = 1};
  chai_status st = CHAI_OK;
#pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num();
    if (t == 0) {
      tm.size = omp_get_num_threads();
      held = &tm;
      st = body(ctx);
      held = NULL;
      tm.stop = true;
      atomic_fetch_add_explicit(&tm.gen, 1, memory_order_release);
    } else {
      serve(&tm, t);
    }
  }
  return st;
}

int chai_team_held(void) {
  return held != NULL;
}

void chai_team_allow(int on) {
  atomic_store_explicit(&allowed, on != 0, memory_order_relaxed);
}
