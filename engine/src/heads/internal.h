/* Helpers shared by the heads/ sources (not part of the public API). */
#ifndef CHAI_HEADS_INTERNAL_H
#define CHAI_HEADS_INTERNAL_H

#include <stdint.h>

/* A seed for the independent stream (a, b) of `seed` (splitmix64 finaliser of the mix). */
uint64_t chai_heads_stream(uint64_t seed, uint64_t a, uint64_t b);

#endif
