/* The held thread team (engine/src/team.c): every part of every job runs once, on the thread its
 * t names, and its writes are visible to the caller when chai_team_run returns; a hold hands jobs
 * to its own threads and returns the body's status; a hold inside a hold, inside an OpenMP region,
 * with one thread or under OMP_WAIT_POLICY=passive (a second ctest entry runs this program so)
 * runs the body with no team; a job part that starts a job runs it alone; chai_team_for gives
 * every item once. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../engine/src/team.h"
#include "chai/cpu.h"
#include "check.h"

enum { MAX_T = 8, JOBS = 2000 };

typedef struct {
  int runs[MAX_T];   /* parts run, by t */
  int wrong_thread;  /* parts whose t was not omp_get_thread_num() */
  int n_seen[MAX_T]; /* n each part was given */
  long *data;        /* written by the parts, read by the caller */
  int len;
  long stamp;
} job;

static void part(void *ctx, int t, int n) {
  job *j = ctx;
  if (t < 0 || t >= MAX_T) return;
  j->runs[t]++;
  j->n_seen[t] = n;
  if (t != omp_get_thread_num()) j->wrong_thread++;
  for (int i = t; i < j->len; i += n)
    j->data[i] = j->stamp + i;
}

/* One job on `threads`: each of its n parts once, n <= threads and <= limit (exact: n is the
 * smaller of the two), every element written. */
static void check_job(int threads, int limit, bool exact) {
  long data[97];
  job j = {.data = data, .len = 97, .stamp = 1000 * threads};
  memset(data, 0, sizeof data);
  chai_team_run(part, &j, threads);
  int n = j.n_seen[0];
  CHECK(n >= 1 && n <= threads && n <= limit);
  if (exact) CHECK(n == (threads < limit ? threads : limit));
  for (int t = 0; t < MAX_T; t++)
    CHECK(j.runs[t] == (t < n ? 1 : 0));
  CHECK(j.wrong_thread == 0);
  int bad = 0;
  for (int i = 0; i < j.len; i++)
    bad += data[i] != j.stamp + i;
  CHECK(bad == 0);
}

/* chai_team_for: every item once, each on a thread t that is its omp thread number. */
typedef struct {
  int seen[300];
  int wrong_thread;
} items;

static void count_item(void *ctx, long i, int t) {
  items *it = ctx;
  it->seen[i]++; /* each i is taken by one thread: no race */
  if (t != omp_get_thread_num()) __atomic_fetch_add(&it->wrong_thread, 1, __ATOMIC_RELAXED);
}

static void check_for(void) {
  long counts[] = {0, 1, 2, 7, 300};
  for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++)
    for (int threads = 1; threads <= 3; threads++) {
      items it = {{0}, 0};
      chai_team_for(counts[c], count_item, &it, threads);
      int bad = 0;
      for (long i = 0; i < 300; i++)
        bad += it.seen[i] != (i < counts[c]);
      CHECK(bad == 0);
      CHECK(it.wrong_thread == 0);
    }
}

static chai_status for_in_hold(void *ctx) {
  (void)ctx;
  check_for();
  return CHAI_OK;
}

static void test_unheld(void) {
  CHECK(!chai_team_held());
  for (int threads = 1; threads <= 4; threads++)
    check_job(threads, threads, false);
  check_for();
}

/* A run of jobs in a hold, each reading what the one before wrote. */
typedef struct {
  int size;
  int held, jobs_ok, ones_ok;
} hold_ctx;

static void add_one(void *ctx, int t, int n) {
  long *v = ctx;
  for (int i = t; i < 64; i += n)
    v[i] += 1;
}

static chai_status many_jobs(void *ctx) {
  hold_ctx *h = ctx;
  h->held = chai_team_held();
  long v[64] = {0};
  int ok = 1;
  for (int r = 1; r <= JOBS; r++) {
    chai_team_run(add_one, v, r % 3 == 0 ? 1 : h->size);
    for (int i = 0; i < 64; i++)
      ok &= v[i] == r;
  }
  h->jobs_ok = ok;
  /* a single-thread job runs on the caller alone */
  job j = {.data = v, .len = 64};
  chai_team_run(part, &j, 1);
  h->ones_ok = j.runs[0] == 1 && j.n_seen[0] == 1 && j.runs[1] == 0;
  return CHAI_OK;
}

static chai_status fails(void *ctx) {
  (void)ctx;
  return chai_error(CHAI_ERR_ARG, "the body's own error");
}

static chai_status jobs_sized(void *ctx) {
  int *size = ctx;
  for (int threads = 1; threads <= 4; threads++)
    check_job(threads, *size, chai_team_held());
  return CHAI_OK;
}

/* A hold inside a hold: the body runs at once, and its jobs still go to the outer team. */
static chai_status nested(void *ctx) {
  hold_ctx *h = ctx;
  return chai_team_hold(many_jobs, h);
}

/* A part that starts a job of its own: that job runs on its thread alone. */
typedef struct {
  int inner_n[MAX_T];
} outer_job;
static void inner_part(void *ctx, int t, int n) {
  (void)t;
  *(int *)ctx = n;
}
static void outer_part(void *ctx, int t, int n) {
  (void)n;
  outer_job *o = ctx;
  if (t < MAX_T) chai_team_run(inner_part, &o->inner_n[t], 4);
}
static chai_status jobs_in_jobs(void *ctx) {
  outer_job *o = ctx;
  chai_team_run(outer_part, o, 2);
  return CHAI_OK;
}

static void test_hold(bool passive) {
  int threads = omp_get_max_threads();
  hold_ctx h = {.size = threads};
  CHECK_OK(chai_team_hold(many_jobs, &h));
  CHECK(h.held == (threads > 1 && !passive));
  CHECK(h.jobs_ok);
  CHECK(h.ones_ok);
  CHECK(!chai_team_held());
  int size = passive ? 4 : threads;
  CHECK_OK(chai_team_hold(jobs_sized, &size));
  CHECK_OK(chai_team_hold(for_in_hold, NULL));
  CHECK_ERR(chai_team_hold(fails, NULL), CHAI_ERR_ARG, "the body's own error");
  CHECK(!chai_team_held());
  hold_ctx hn = {.size = threads};
  CHECK_OK(chai_team_hold(nested, &hn));
  CHECK(hn.held == h.held && hn.jobs_ok && hn.ones_ok);
  outer_job o = {{0}};
  CHECK_OK(chai_team_hold(jobs_in_jobs, &o));
  CHECK(o.inner_n[0] == 1 && o.inner_n[1] == 1);
  /* inside an OpenMP region: no team */
  hold_ctx hr = {.size = threads};
  int in_region_held = -1;
#pragma omp parallel num_threads(2)
  {
#pragma omp master
    {
      CHECK_OK(chai_team_hold(many_jobs, &hr));
      in_region_held = hr.held;
    }
  }
  CHECK(in_region_held == 0 || omp_get_max_threads() < 2);
  CHECK(hr.jobs_ok);
  /* one thread: no team */
  CHECK_OK(chai_threads(1));
  hold_ctx h1 = {.size = 1};
  CHECK_OK(chai_team_hold(many_jobs, &h1));
  CHECK(!h1.held && h1.jobs_ok);
  CHECK_OK(chai_threads(threads));
}

int main(void) {
  const char *p = getenv("OMP_WAIT_POLICY");
  bool passive = p && strcasecmp(p, "passive") == 0;
  if (omp_get_max_threads() < 2) CHECK_OK(chai_threads(2));
  test_unheld();
  test_hold(passive);
  CHECK_OK(chai_threads(3)); /* a team of three */
  test_unheld();
  test_hold(passive);
  printf("team: %s, %d threads\n", passive ? "passive (no hold)" : "held", omp_get_max_threads());
  return chai_test_finish();
}
