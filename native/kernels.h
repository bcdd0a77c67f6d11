/*
 * What every kernel file of diffuse's native addon shares: the N-API argument helpers, branch-free
 * float math that vectorizes, and the kernels addon.c registers. Every kernel works on Float32Arrays in
 * place; shapes are checked on the JS side (src/backend/blasBackend.ts).
 */
#ifndef DIFFUSE_KERNELS_H
#define DIFFUSE_KERNELS_H

#include "isa.h"
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>

/* Any CBLAS: Apple's Accelerate on macOS, else OpenBLAS (or another, through pkg-config: native/cblas.js).
   Only OpenBLAS's own thread count can be set; the others keep theirs. */
#ifdef __APPLE__
#include <Accelerate/Accelerate.h>
#else
#include <cblas.h>
#endif
#ifdef OPENBLAS_VERSION
static inline int blas_get_threads(void) { return openblas_get_num_threads(); }
static inline void blas_set_threads(int n) { openblas_set_num_threads(n); }
#else
static inline int blas_get_threads(void) { return 1; }
static inline void blas_set_threads(int n) { (void)n; }
#endif

/* Without OpenMP (Apple's clang) every kernel runs on its calling thread: data-parallel training still
   keeps each core busy, with a JS thread of its own. */
#ifdef _OPENMP
#include <omp.h>
#else
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_num_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
static inline void omp_set_num_threads(int n) { (void)n; }
#endif

#define CHECK(call)                                                                   \
  do {                                                                                \
    if ((call) != napi_ok) {                                                          \
      napi_throw_error(env, NULL, "diffuse_native: bad argument in " #call);          \
      return NULL;                                                                    \
    }                                                                                 \
  } while (0)

/* Declares argv[n] (and argc, the count given) for a function taking up to n arguments. */
#define ARGS(n)         \
  size_t argc = (n);    \
  napi_value argv[(n)]; \
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL))

static inline float *f32(napi_env env, napi_value v, size_t *length) {
  napi_typedarray_type type;
  size_t len;
  void *data;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, &len, &data, &buffer, &offset) != napi_ok || type != napi_float32_array) {
    napi_throw_type_error(env, NULL, "diffuse_native: expected a Float32Array");
    return NULL;
  }
  if (length) *length = len;
  return (float *)data;
}

static inline int32_t *i32(napi_env env, napi_value v, size_t *length) {
  napi_typedarray_type type;
  size_t len;
  void *data;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, &len, &data, &buffer, &offset) != napi_ok || type != napi_int32_array) {
    napi_throw_type_error(env, NULL, "diffuse_native: expected an Int32Array");
    return NULL;
  }
  if (length) *length = len;
  return (int32_t *)data;
}

static inline double num(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

static inline bool flag(napi_env env, napi_value v) {
  bool b = false;
  napi_get_value_bool(env, v, &b);
  return b;
}

/* A vector type T of W floats with unaligned load LD and store ST. */
#define FLOAT_VECTOR(T, W, LD, ST)                             \
  typedef float T __attribute__((vector_size((W) * 4)));       \
  static inline T LD(const float *p) {                         \
    T v;                                                       \
    memcpy(&v, p, sizeof v);                                   \
    return v;                                                  \
  }                                                            \
  static inline void ST(float *p, T v) { memcpy(p, &v, sizeof v); }

/*
 * Vectors of VW floats, one register of the set being compiled: 16 with AVX-512, 8 with AVX, else 4
 * (SSE, NEON). Wider than a register, GCC splits the operations into scalars (the generic set ran the
 * U-net 17x slower than the AVX2 one with 8-float vectors on SSE2).
 */
#if defined(__AVX512F__)
#define VW 16
#elif defined(__AVX__)
#define VW 8
#else
#define VW 4
#endif
FLOAT_VECTOR(vecf, VW, loadv, storev)

/* Vectors of AW floats, at most 8 (AVX2's width): heads of 8 or 24 channels; the norms' channel sums (measured ~10% slower in 16-float vectors). */
#if VW < 8
#define AW VW
#else
#define AW 8
#endif
FLOAT_VECTOR(av, AW, lda, sta)

#define LN_EPS 1e-5f

/*
 * erf as a rational function of x on [-4, 4] (outside it erf is ±1 in float32): the approximation used
 * by Eigen and XLA, accurate to a few ulp. Unlike libm's erff it has no branches, so loops over it vectorize.
 */
static inline float erf_f(float x) {
  x = x < -4.0f ? -4.0f : (x > 4.0f ? 4.0f : x); /* not fminf/fmaxf: gcc 12 does not vectorize those here */
  const float x2 = x * x;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 + -2.10102402082508e-06f;
  p = p * x2 + -5.69250639462346e-05f;
  p = p * x2 + -7.34990630326855e-04f;
  p = p * x2 + -2.95459980854025e-03f;
  p = p * x2 + -1.60960333262415e-02f;
  float q = -1.45660718464996e-05f;
  q = q * x2 + -2.13374055278905e-04f;
  q = q * x2 + -1.68282697438203e-03f;
  q = q * x2 + -7.37332916720468e-03f;
  q = q * x2 + -1.42647390514189e-02f;
  return x * p / q;
}

/*
 * e^x as 2^k · 2^f with k = round(x·log2 e) and |f| ≤ 1/2, 2^f by its Taylor series to degree 6
 * (relative error about 1e-7 on that range). Branch-free, so it vectorizes where libm's expf does not.
 * Below −87 it is e^−87; overflow (k > 127, also x·log2 e past int32, which converts to INT32_MIN) makes
 * 2^k infinite; NaN stays NaN. The upper end is clamped on the integer k: float selects at both ends
 * compiled to four compares and three blends per vector, a third of the whole function.
 */
static inline float exp_f(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float t = x * 1.44269504088896341f;
  const float k = rintf(t);
  const float f = (t - k) * 0.69314718055994531f; /* 2^(t−k) = e^f */
  const uint32_t ku = (uint32_t)(int32_t)k;
  const uint32_t kc = ku + 126u > 254u ? 128u : ku; /* k in [−126, 128] as it is, else 128 (2^128 = ∞) */
  /* Estrin's scheme: four dependent multiply-adds where Horner's has seven (e^x alone over a vector of
     8: 8.7 → 8.3 cycles on Zen 3; the multiply-add ports, not the chain, bound the rest) */
  const float f2 = f * f;
  const float hi = (1.0f / 24.0f + f * (1.0f / 120.0f)) + f2 * (1.0f / 720.0f);
  const float p = (1.0f + f) + f2 * ((0.5f + f * (1.0f / 6.0f)) + f2 * hi);
  union {
    float f;
    uint32_t i;
  } scale = {.i = (kc + 127u) << 23};
  return p * scale.f;
}


napi_value sgemm(napi_env env, napi_callback_info info);
napi_value adam(napi_env env, napi_callback_info info);
napi_value lerp(napi_env env, napi_callback_info info);
napi_value gelu_layer_norm(napi_env env, napi_callback_info info);
napi_value gelu_layer_norm_grad(napi_env env, napi_callback_info info);
napi_value column_sums(napi_env env, napi_callback_info info);
napi_value binary(napi_env env, napi_callback_info info);
void broadcast_binary(int op, const float *a, const float *b, float *out, int64_t lo, int64_t lb, int64_t outer, bool swap);
napi_value middle_sums(napi_env env, napi_callback_info info);
napi_value conv(napi_env env, napi_callback_info info);
napi_value group_norm(napi_env env, napi_callback_info info);
napi_value group_norm_grad(napi_env env, napi_callback_info info);
napi_value softmax_rows(napi_env env, napi_callback_info info);
napi_value softmax_rows_grad(napi_env env, napi_callback_info info);
napi_value copy_runs(napi_env env, napi_callback_info info);
napi_value upsample2x(napi_env env, napi_callback_info info);
napi_value attention(napi_env env, napi_callback_info info);
napi_value attention_grad(napi_env env, napi_callback_info info);
napi_value upsample2x_grad(napi_env env, napi_callback_info info);
napi_value silu(napi_env env, napi_callback_info info);
napi_value silu_grad(napi_env env, napi_callback_info info);

/* One compiled set of kernels by their JS names, ended by a NULL name (native/table.c). */
typedef struct {
  const char *name;
  napi_callback fn;
} kernel_entry;
extern const kernel_entry diffuse_kernels[];

#endif
