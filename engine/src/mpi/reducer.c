/* The gradient reducer: float buffers packed into buckets whose sums over the ranks run while the
 * caller computes (chai/mpi.h). A bucket goes through two non-blocking collectives: an all-to-all
 * that brings each rank every rank's copy of its chunk, then (after the rank-order sum of that
 * chunk) an all-gather of the sums. MPI requires every rank to start collectives in the same
 * order, so the second phase of bucket k starts at a point fixed by bucket numbers alone: just
 * before bucket k + LAG starts its first phase (or in finish). Waiting is always for a request
 * already started, so no rank ever waits on something another rank has not begun. */
#include <string.h>
#include <time.h>

#include "chai/memory.h"
#include "mpi/mpi_internal.h"

#define NBUCKETS 4
#define LAG 2 /* buckets whose first phase may be in flight while another starts */

typedef struct segment {
  float *dst; /* the caller's buffer */
  size_t off; /* where it sits in the bucket */
  size_t n;
} segment;

enum { B_FREE, B_FILLING, B_EXCHANGE, B_GATHER };

typedef struct bucket {
  float *send;  /* cap floats: packed values, then the all-gathered sums */
  float *recv;  /* cap floats: every rank's copy of this rank's chunk */
  size_t len;   /* floats packed */
  size_t chunk; /* ⌈len/N⌉, fixed when the exchange starts */
  int state;
  uint64_t seq; /* the bucket's number in this round (from 0) */
#ifdef CHAI_WITH_MPI
  MPI_Request req;
#endif
  segment *segs;
  int nsegs, segcap;
} bucket;

struct chai_mpi_reducer {
  bool active; /* more than one rank when made: otherwise adds keep the values as they are */
  size_t cap;  /* floats per bucket, a multiple of the group size */
  bucket b[NBUCKETS];
  bucket *filling;
  uint64_t started;  /* buckets started this round */
  uint64_t gathered; /* buckets whose second phase has started this round */
  uint64_t round_floats;
  chai_mpi_reducer_stats stats;
};

chai_status chai_mpi_reducer_new(chai_mpi_reducer **out, size_t bucket_bytes) {
  *out = NULL;
  if (bucket_bytes < 4096)
    return chai_error(CHAI_ERR_ARG, "chai.mpi reducer: bucket size %zu bytes is below 4 KiB",
                      bucket_bytes);
  chai_mpi_reducer *r = chai_alloc(sizeof *r, "MPI reducer");
  if (!r) return CHAI_ERR_NOMEM;
  memset(r, 0, sizeof *r);
  r->active = mpi_active();
  if (!r->active) {
    *out = r;
    return CHAI_OK;
  }
  size_t N = (size_t)chai_mpi_size();
  r->cap = (bucket_bytes / sizeof(float) + N - 1) / N * N;
  for (int k = 0; k < NBUCKETS; k++) {
    bucket *b = &r->b[k];
    b->send = chai_alloc(r->cap * sizeof(float), "MPI reducer bucket");
    b->recv = chai_alloc(r->cap * sizeof(float), "MPI reducer bucket");
    if (!b->send || !b->recv) {
      chai_mpi_reducer_free(r);
      return chai_error_context(CHAI_ERR_NOMEM, "chai.mpi reducer: %d buckets of %zu bytes",
                                NBUCKETS, bucket_bytes);
    }
  }
  *out = r;
  return CHAI_OK;
}

#ifdef CHAI_WITH_MPI
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void wait_req(chai_mpi_reducer *r, bucket *b) {
  double t0 = now();
  mpi_check(MPI_Wait(&b->req, MPI_STATUS_IGNORE), "MPI_Wait (gradient bucket)");
  r->stats.wait_seconds += now() - t0;
}

/* Phase 1: the all-to-all of the packed, zero-padded bucket. */
static void start_exchange(chai_mpi_reducer *r, bucket *b) {
  size_t N = (size_t)chai_mpi_size();
  b->chunk = (b->len + N - 1) / N;
  memset(b->send + b->len, 0, (N * b->chunk - b->len) * sizeof(float));
  mpi_check(MPI_Ialltoall(b->send, (int)b->chunk, MPI_FLOAT, b->recv, (int)b->chunk, MPI_FLOAT,
                          MPI_COMM_WORLD, &b->req),
            "MPI_Ialltoall (gradient bucket)");
  b->state = B_EXCHANGE;
  b->seq = r->started++;
  r->stats.buckets++;
  r->stats.sent_bytes += 2 * (N - 1) * b->chunk * sizeof(float);
}

/* Phase 2: wait for the exchange, sum this rank's chunk in rank order, start the all-gather. */
static void start_gather(chai_mpi_reducer *r, bucket *b) {
  int N = chai_mpi_size(), me = chai_mpi_rank();
  wait_req(r, b);
  float *own = b->send + (size_t)me * b->chunk;
  for (size_t i = 0; i < b->chunk; i++) {
    float acc = b->recv[i];
    for (int p = 1; p < N; p++)
      acc += b->recv[(size_t)p * b->chunk + i];
    own[i] = acc;
  }
  mpi_check(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_FLOAT, b->send, (int)b->chunk, MPI_FLOAT,
                           MPI_COMM_WORLD, &b->req),
            "MPI_Iallgather (gradient bucket)");
  b->state = B_GATHER;
  r->gathered++;
}

/* Phase 3: wait for the sums and copy them back into the caller's buffers. */
static void complete(chai_mpi_reducer *r, bucket *b) {
  wait_req(r, b);
  for (int s = 0; s < b->nsegs; s++)
    memcpy(b->segs[s].dst, b->send + b->segs[s].off, b->segs[s].n * sizeof(float));
  b->state = B_FREE;
  b->len = 0;
  b->nsegs = 0;
}

static bucket *find_seq(chai_mpi_reducer *r, uint64_t seq) {
  for (int k = 0; k < NBUCKETS; k++)
    if (r->b[k].state == B_EXCHANGE && r->b[k].seq == seq) return &r->b[k];
  return NULL;
}

/* Starts phase 2 of every bucket older than `keep` buckets, in bucket order. */
static void advance(chai_mpi_reducer *r, uint64_t keep) {
  while (r->gathered + keep < r->started) {
    bucket *b = find_seq(r, r->gathered);
    CHAI_ASSERT(b != NULL);
    start_gather(r, b);
  }
}

/* Lets MPI move the requests in flight (no new collective starts here). */
static void poll(chai_mpi_reducer *r) {
  for (int k = 0; k < NBUCKETS; k++) {
    bucket *b = &r->b[k];
    if (b->state != B_EXCHANGE && b->state != B_GATHER) continue;
    int done = 0;
    /* a finished request becomes MPI_REQUEST_NULL: a later wait on it returns at once */
    mpi_check(MPI_Test(&b->req, &done, MPI_STATUS_IGNORE), "MPI_Test (gradient bucket)");
    if (done && b->state == B_GATHER) complete(r, b);
  }
}

/* A free bucket; when none is, the oldest gathering one is completed. That one exists: at most
 * LAG buckets are exchanging (start_bucket) and NBUCKETS > LAG. Only waits, so the moment this
 * happens (which depends on timing) never changes the order of collectives. */
static bucket *acquire(chai_mpi_reducer *r) {
  for (int k = 0; k < NBUCKETS; k++)
    if (r->b[k].state == B_FREE) return &r->b[k];
  bucket *oldest = NULL;
  for (int k = 0; k < NBUCKETS; k++)
    if (r->b[k].state == B_GATHER && (!oldest || r->b[k].seq < oldest->seq)) oldest = &r->b[k];
  CHAI_ASSERT(oldest != NULL);
  complete(r, oldest);
  return oldest;
}

static void start_bucket(chai_mpi_reducer *r, bucket *b) {
  advance(r, LAG - 1); /* fixed point for older buckets' second phase: before this one starts */
  start_exchange(r, b);
  r->filling = NULL;
}

static void add_segment(bucket *b, float *dst, size_t off, size_t n) {
  if (b->nsegs == b->segcap) {
    int cap = b->segcap ? 2 * b->segcap : 64;
    segment *s = chai_alloc((size_t)cap * sizeof *s, "MPI reducer segments");
    if (!s) chai_mpi_abort("out of memory for the gradient bucket's segment list", 1);
    if (b->nsegs) memcpy(s, b->segs, (size_t)b->nsegs * sizeof *s);
    if (b->segs) chai_free(b->segs, (size_t)b->segcap * sizeof *s);
    b->segs = s;
    b->segcap = cap;
  }
  b->segs[b->nsegs++] = (segment){dst, off, n};
}
#endif

void chai_mpi_reducer_add(chai_mpi_reducer *r, float *data, size_t n) {
  r->stats.floats += n;
  r->round_floats += n;
  if (!r->active) return;
#ifdef CHAI_WITH_MPI
  while (n > 0) {
    if (!r->filling) {
      r->filling = acquire(r);
      r->filling->state = B_FILLING;
    }
    bucket *b = r->filling;
    size_t take = r->cap - b->len < n ? r->cap - b->len : n;
    memcpy(b->send + b->len, data, take * sizeof(float));
    add_segment(b, data, b->len, take);
    b->len += take;
    data += take;
    n -= take;
    if (b->len == r->cap) start_bucket(r, b);
  }
  poll(r);
#else
  (void)data;
#endif
}

chai_status chai_mpi_reducer_finish(chai_mpi_reducer *r) {
  uint64_t total = r->round_floats;
  r->round_floats = 0;
  if (!r->active) return CHAI_OK;
#ifdef CHAI_WITH_MPI
  if (r->filling) start_bucket(r, r->filling); /* a filling bucket holds at least one value */
  advance(r, 0);
  for (int k = 0; k < NBUCKETS; k++)
    if (r->b[k].state == B_GATHER) complete(r, &r->b[k]);
  r->started = r->gathered = 0;
#endif
  return mpi_agree("chai.mpi gradient exchange", MPI_CALL_REDUCER_FINISH,
                   (int64_t[4]){(int64_t)total}, (const char *[4]){"number of values summed"});
}

void chai_mpi_reducer_free(chai_mpi_reducer *r) {
  if (!r) return;
#ifdef CHAI_WITH_MPI
  /* A round cut short (an error between add and finish): the requests already started must end
   * before their buffers go. Nothing new starts here. */
  for (int k = 0; r->active && k < NBUCKETS; k++)
    if (r->b[k].state == B_EXCHANGE || r->b[k].state == B_GATHER) wait_req(r, &r->b[k]);
#endif
  for (int k = 0; k < NBUCKETS; k++) {
    bucket *b = &r->b[k];
    if (b->send) chai_free(b->send, r->cap * sizeof(float));
    if (b->recv) chai_free(b->recv, r->cap * sizeof(float));
    if (b->segs) chai_free(b->segs, (size_t)b->segcap * sizeof *b->segs);
  }
  chai_free(r, sizeof *r);
}

void chai_mpi_reducer_get_stats(const chai_mpi_reducer *r, chai_mpi_reducer_stats *out) {
  *out = r->stats;
}
