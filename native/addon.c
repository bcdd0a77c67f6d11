/*
 * The addon's entry point: the process-wide float and allocator settings, the choice of one compiled
 * set of kernels for this CPU (native/isa.h), and the kernels by name.
 */
#define ISA _dispatch /* this file is compiled once; it names the sets it chooses from itself */
#include "kernels.h"
#include <stdio.h>
#if defined(__x86_64__) || defined(_M_X64)
#include <pmmintrin.h>
#include <xmmintrin.h>
#endif
#ifdef __GLIBC__
#include <malloc.h>
#endif

/*
 * Subnormal floats (below 1.2e-38) take the slow path of the FPU, 10-100x per operation. Training makes
 * them: GELU of a large negative input and its gradient underflow, and a 1e-3 learning rate pushes
 * inputs there, which made steps 6x slower. Flush them to zero on this thread and in the threads it
 * starts from now on (OpenMP's, OpenBLAS's), which inherit the setting. (JS on this thread sees it too:
 * float arithmetic below 1e-308 flushes to zero, which nothing in diffuse relies on.)
 */
extern int blas_thread_shutdown_(void) __attribute__((weak)); /* OpenBLAS's pthreads build has it */

static void flush_subnormals(void) {
#if defined(__x86_64__) || defined(_M_X64)
  _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
  _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
#elif defined(__aarch64__)
  uint64_t fpcr;
  __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
  __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr | (1ull << 24))); /* FZ: flush subnormal inputs and results */
#endif
  /* OpenBLAS started its worker threads when it loaded, before this: stop them, and its next product
     starts new ones from this thread, with its setting (the path OpenBLAS takes after a fork). */
  if (blas_thread_shutdown_) blas_thread_shutdown_();
}

/*
 * setThreads(n): the OpenMP team size of the calling thread's kernels and OpenBLAS's thread count
 * (process-wide); returns the calling thread's previous team size. Data-parallel training runs one
 * kernel thread per JS thread, each on its share of the batch.
 */
static napi_value set_threads(napi_env env, napi_callback_info info) {
  ARGS(1);
  const int n = (int)num(env, argv[0]);
  const int before = omp_get_max_threads();
  if (n >= 1) {
    omp_set_num_threads(n);
    blas_set_threads(n);
  }
  napi_value out;
  CHECK(napi_create_int32(env, before, &out));
  return out;
}

/* The compiled sets, widest first, with what the CPU needs for each. */
extern const kernel_entry diffuse_kernels_generic[];
#ifdef DIFFUSE_X86_SETS
extern const kernel_entry diffuse_kernels_avx512[], diffuse_kernels_avx2[];
#endif
typedef struct {
  const char *name;
  const kernel_entry *kernels;
  bool (*supported)(void);
} kernel_set;

#ifdef DIFFUSE_X86_SETS
/* The instruction sets binding.gyp compiles for: -march=x86-64-v4 and -march=x86-64-v3. */
static bool has_avx512(void) {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx2") &&
         __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
}
static bool has_avx2(void) {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") &&
         __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("f16c");
}
#endif
static bool always(void) { return true; }

static const kernel_set SETS[] = {
#ifdef DIFFUSE_X86_SETS
    {"avx512", diffuse_kernels_avx512, has_avx512},
    {"avx2", diffuse_kernels_avx2, has_avx2},
#endif
    {"generic", diffuse_kernels_generic, always},
};
#define SET_COUNT (sizeof(SETS) / sizeof(SETS[0]))

/*
 * The widest set this CPU runs, or the one DIFFUSE_ISA names (avx512, avx2 or generic: to compare the
 * paths, or to rule one out). NULL, with the reason in `why`, where the named one is unknown or
 * cannot run here.
 */
static const kernel_set *choose_set(char *why, size_t size) {
#ifdef DIFFUSE_X86_SETS
  __builtin_cpu_init();
#endif
  const char *wanted = getenv("DIFFUSE_ISA");
  if (wanted && *wanted) {
    for (size_t i = 0; i < SET_COUNT; i++) {
      if (strcmp(SETS[i].name, wanted) != 0) continue;
      if (SETS[i].supported()) return &SETS[i];
      snprintf(why, size, "DIFFUSE_ISA=%s: this CPU lacks those instructions", wanted);
      return NULL;
    }
    int n = snprintf(why, size, "DIFFUSE_ISA=%s: not one of this build's sets (", wanted);
    for (size_t i = 0; i < SET_COUNT && n > 0 && (size_t)n < size; i++) n += snprintf(why + n, size - n, i ? ", %s" : "%s", SETS[i].name);
    if (n > 0 && (size_t)n < size) snprintf(why + n, size - n, ")");
    return NULL;
  }
  for (size_t i = 0; i < SET_COUNT; i++)
    if (SETS[i].supported()) return &SETS[i];
  return &SETS[SET_COUNT - 1];
}

static napi_value init(napi_env env, napi_value exports) {
  char why[160] = "";
  const kernel_set *set = choose_set(why, sizeof why);
  if (!set) {
    napi_throw_error(env, NULL, why);
    return NULL;
  }
  flush_subnormals();
#ifdef __GLIBC__
  /*
   * Keep freed tensor buffers (up to 32 MiB each) in malloc's heap instead of returning them to the
   * system: otherwise every training step maps fresh pages for its tensors and pays a page fault per 4 KiB.
   */
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
  for (const kernel_entry *k = set->kernels; k->name; k++) {
    napi_value fn;
    CHECK(napi_create_function(env, k->name, NAPI_AUTO_LENGTH, k->fn, NULL, &fn));
    CHECK(napi_set_named_property(env, exports, k->name, fn));
  }
  napi_value fn, isa;
  CHECK(napi_create_function(env, "setThreads", NAPI_AUTO_LENGTH, set_threads, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "setThreads", fn));
  CHECK(napi_create_string_utf8(env, set->name, NAPI_AUTO_LENGTH, &isa));
  CHECK(napi_set_named_property(env, exports, "isa", isa));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
