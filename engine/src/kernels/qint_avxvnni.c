/* int8/int4 products with AVX-VNNI (vpdpbusd ymm, VEX-encoded): CPUs that have it without AVX-512
 * (Alder Lake and later cores, Zen 5 forced to CHAI_CPU=avx2). The kernels are qint_256_impl.h. */
#define Q256_TGT __attribute__((target("avx2,fma,f16c,avxvnni")))
#define Q256_DPBUSD(acc, w, a) _mm256_dpbusd_avx_epi32(acc, w, a)
#define Q256_NAME(fmt, kind) chai_##fmt##_##kind##_avxvnni
#include "kernels/qint_256_impl.h"
