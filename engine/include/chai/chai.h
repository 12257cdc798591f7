/* chai — the whole public C API. */
#ifndef CHAI_CHAI_H
#define CHAI_CHAI_H

#include "chai/blas.h"
#include "chai/checkpoint.h"
#include "chai/cpu.h"
#include "chai/error.h"
#include "chai/file.h"
#include "chai/half.h"
#include "chai/hub.h"
#include "chai/memory.h"
#include "chai/npy.h"
#include "chai/ops.h"
#include "chai/quant.h"
#include "chai/rng.h"
#include "chai/sha256.h"
#include "chai/tensor.h"
#include "chai/tokenizer.h"
#include "chai/train.h"

/* "0.1.0" */
const char *chai_version(void);

#endif
