/* Shared by the MPI room (mpi.c: the group and the small collectives, allreduce.c: the ordered
 * sum, reducer.c: gradient buckets). Not public. */
#ifndef CHAI_MPI_INTERNAL_H
#define CHAI_MPI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chai/mpi.h"

#ifdef CHAI_WITH_MPI
#include <mpi.h>

/* Ends every rank (chai_mpi_abort) when rc is not MPI_SUCCESS, naming `call` and MPI's message. */
void mpi_check(int rc, const char *call);
#endif

/* Whether collectives communicate: MPI is up and the group has more than one rank. */
bool mpi_active(void);

/* The collectives a caller can get wrong, as named in errors. */
typedef enum mpi_call {
  MPI_CALL_BARRIER = 1,
  MPI_CALL_ALLREDUCE,
  MPI_CALL_BROADCAST,
  MPI_CALL_ALLGATHER,
  MPI_CALL_GATHER_LENGTHS,
  MPI_CALL_GATHER_BYTES,
  MPI_CALL_REDUCER_FINISH,
} mpi_call;

/* Every rank describes its call as `call` and four numbers (what[0..3] name them, NULL for unused
 * ones); CHAI_ERR_ARG on every rank when any rank differs, naming the first difference with two
 * ranks (1-based, as users count) and their values. A no-op without an active group. */
chai_status mpi_agree(const char *fname, mpi_call call, const int64_t v[4],
                      const char *const what[4]);

/* Elements per collective call: counts must fit MPI's int. */
#define MPI_SEGMENT ((size_t)1 << 26)

#endif
