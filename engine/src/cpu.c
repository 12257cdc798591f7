#include "chai/cpu.h"

#include <cpuid.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "chai/blas.h"

static chai_cpu_info info;
static int info_ready;
static chai_simd forced = (chai_simd)-1;

static void detect(void) {
  unsigned a, b, c, d;
  memset(&info, 0, sizeof info);
  if (__get_cpuid(0, &a, &b, &c, &d)) {
    memcpy(info.vendor + 0, &b, 4);
    memcpy(info.vendor + 4, &d, 4);
    memcpy(info.vendor + 8, &c, 4);
  }
  if (__get_cpuid(1, &a, &b, &c, &d)) {
    unsigned base_family = (a >> 8) & 0xf, base_model = (a >> 4) & 0xf;
    info.family = (int)base_family + (base_family == 0xf ? (int)((a >> 20) & 0xff) : 0);
    info.model =
        (int)(base_model | ((base_family == 0x6 || base_family == 0xf) ? ((a >> 12) & 0xf0) : 0));
  }
  __builtin_cpu_init();
  info.avx2 = __builtin_cpu_supports("avx2");
  info.fma = __builtin_cpu_supports("fma");
  info.avx512f = __builtin_cpu_supports("avx512f");
  info.avx512bw = __builtin_cpu_supports("avx512bw");
  info.avx512dq = __builtin_cpu_supports("avx512dq");
  info.avx512vl = __builtin_cpu_supports("avx512vl");
  info.avx512_vnni = __builtin_cpu_supports("avx512vnni");
  if (__get_cpuid(1, &a, &b, &c, &d)) info.f16c = (c >> 29) & 1;
  if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) {
    info.avx_vnni = (a >> 4) & 1;
    info.avx512_bf16 = (a >> 5) & 1;
  }
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    info.amx_bf16 = (d >> 22) & 1;
    info.amx_tile = (d >> 24) & 1;
    info.amx_int8 = (d >> 25) & 1;
  }
  /* The OS must save the wide registers too (XGETBV), or the instructions fault. */
  bool osxsave = __get_cpuid(1, &a, &b, &c, &d) && ((c >> 27) & 1);
  unsigned lo = 0, hi = 0;
  if (osxsave) __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 0x6) != 0x6) info.avx2 = info.fma = info.f16c = info.avx_vnni = false;
  if ((lo & 0xe6) != 0xe6)
    info.avx512f = info.avx512bw = info.avx512dq = info.avx512vl = info.avx512_bf16 =
        info.avx512_vnni = false;
  if (!info.avx512f) info.avx512_bf16 = false;
  /* AMX: tile config and tile data state (XCR0 bits 17 and 18), then Linux's per-process
   * permission for the 8 KB tile data (arch_prctl ARCH_REQ_XCOMP_PERM, kernel 5.16+); without it
   * the first tile instruction faults. A refusal leaves the AMX level unavailable. */
  if ((lo & 0x60000) != 0x60000) info.amx_tile = info.amx_int8 = info.amx_bf16 = false;
  if (!info.amx_tile) info.amx_int8 = info.amx_bf16 = false;
  if (info.amx_tile && info.amx_int8 && info.amx_bf16) {
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    info.amx_permitted = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
  }
}

const chai_cpu_info *chai_cpu_info_get(void) {
  if (!__atomic_load_n(&info_ready, __ATOMIC_ACQUIRE)) {
    detect();
    __atomic_store_n(&info_ready, 1, __ATOMIC_RELEASE);
  }
  return &info;
}

chai_simd chai_simd_best(void) {
  const chai_cpu_info *ci = chai_cpu_info_get();
  bool avx512 = ci->avx512f && ci->avx512bw && ci->avx512vl && ci->avx512dq && ci->fma;
  if (avx512 && ci->amx_tile && ci->amx_int8 && ci->amx_bf16 && ci->amx_permitted)
    return CHAI_SIMD_AMX;
  if (avx512) return CHAI_SIMD_AVX512;
  if (ci->avx2 && ci->fma) return CHAI_SIMD_AVX2;
  return CHAI_SIMD_REF;
}

chai_simd chai_simd_force(chai_simd s) {
  chai_simd best = chai_simd_best();
  forced = s > best ? best : s;
  return forced;
}

chai_simd chai_simd_level(void) {
  if ((int)forced >= 0) return forced;
  chai_simd best = chai_simd_best();
  const char *env = getenv("CHAI_CPU");
  chai_simd want = best;
  if (env && *env) {
    if (strcmp(env, "ref") == 0)
      want = CHAI_SIMD_REF;
    else if (strcmp(env, "avx2") == 0)
      want = CHAI_SIMD_AVX2;
    else if (strcmp(env, "avx512") == 0)
      want = CHAI_SIMD_AVX512;
    else if (strcmp(env, "amx") == 0)
      want = CHAI_SIMD_AMX;
  }
  forced = want > best ? best : want;
  return forced;
}

const char *chai_simd_name(chai_simd s) {
  switch (s) {
  case CHAI_SIMD_AMX: return "amx";
  case CHAI_SIMD_AVX512: return "avx512";
  case CHAI_SIMD_AVX2: return "avx2";
  default: return "ref";
  }
}

const char *chai_cpu_features(void) {
  static char buf[256];
  const chai_cpu_info *ci = chai_cpu_info_get();
  buf[0] = 0;
  struct {
    bool on;
    const char *name;
  } f[] = {{ci->avx2, "avx2"},
           {ci->fma, "fma"},
           {ci->f16c, "f16c"},
           {ci->avx512f, "avx512f"},
           {ci->avx512bw, "avx512bw"},
           {ci->avx512dq, "avx512dq"},
           {ci->avx512vl, "avx512vl"},
           {ci->avx512_vnni, "avx512vnni"},
           {ci->avx512_bf16, "avx512bf16"},
           {ci->avx_vnni, "avxvnni"},
           {ci->amx_tile, "amx-tile"},
           {ci->amx_int8, "amx-int8"},
           {ci->amx_bf16, "amx-bf16"}};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
    if (f[i].on) {
      if (buf[0]) strcat(buf, " ");
      strcat(buf, f[i].name);
    }
  return buf;
}

static int thread_count;

chai_status chai_threads(int n) {
  if (n < 1 || n > 1024) return chai_error(CHAI_ERR_ARG, "threads must be 1..1024, got %d", n);
  omp_set_num_threads(n);
  thread_count = n;
  if (chai_blas_init() == CHAI_OK) chai_blas_set_threads(n);
  return CHAI_OK;
}

int chai_threads_get(void) {
  return thread_count ? thread_count : omp_get_max_threads();
}
