/*
 * Native kernels for diffuse's `blas` backend: matrix products through OpenBLAS's sgemm (the tfjs
 * portable backends run the transposed products of the backward pass at under 1 GFLOP/s), and fused
 * element-wise kernels (GELU + LayerNorm forward and backward, Adam) split over the cores with OpenMP.
 * Every function works on Float32Arrays in place; shapes are checked on the JS side.
 */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <cblas.h>
#include <omp.h>
#include <pmmintrin.h>
#include <xmmintrin.h>

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

static float *f32(napi_env env, napi_value v, size_t *length) {
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

static int32_t *i32(napi_env env, napi_value v, size_t *length) {
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

static double num(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

static bool flag(napi_env env, napi_value v) {
  bool b = false;
  napi_get_value_bool(env, v, &b);
  return b;
}

/*
 * sgemm(transA, transB, m, n, k, a, b, c[, bias]): c[m×n] = op(a)·op(b) (+ bias on every row), row-major,
 * op(a) m×k, op(b) k×n.
 */
static napi_value sgemm(napi_env env, napi_callback_info info) {
  ARGS(9);
  if (argc < 8) {
    napi_throw_error(env, NULL, "sgemm: 8 arguments expected");
    return NULL;
  }
  bool ta = flag(env, argv[0]), tb = flag(env, argv[1]);
  int m = (int)num(env, argv[2]), n = (int)num(env, argv[3]), k = (int)num(env, argv[4]);
  size_t la = 0, lb = 0, lc = 0;
  float *a = f32(env, argv[5], &la), *b = f32(env, argv[6], &lb), *c = f32(env, argv[7], &lc);
  if (!a || !b || !c) return NULL;
  if (la < (size_t)m * k || lb < (size_t)k * n || lc < (size_t)m * n) {
    napi_throw_range_error(env, NULL, "sgemm: array too small for its shape");
    return NULL;
  }
  float beta = 0.0f;
  napi_valuetype bias_type = napi_undefined;
  if (argc > 8) napi_typeof(env, argv[8], &bias_type);
  if (bias_type == napi_object) {
    size_t lbias = 0;
    const float *bias = f32(env, argv[8], &lbias);
    if (!bias) return NULL;
    if (lbias != (size_t)n) {
      napi_throw_range_error(env, NULL, "sgemm: bias length differs from n");
      return NULL;
    }
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++) c[(size_t)i * n + j] = bias[j];
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a,
              ta ? m : k, b, tb ? k : n, beta, c, n);
  return NULL;
}

/*
 * adam(p, g, m, v, lr, beta1, beta2, eps, correction1, correction2): one torch.optim.Adam update in place:
 * m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²; p ← p − lr (m / c1) / (√(v / c2) + ε).
 */
static napi_value adam(napi_env env, napi_callback_info info) {
  ARGS(10);
  size_t lp = 0, lg = 0, lm = 0, lv = 0;
  float *p = f32(env, argv[0], &lp), *g = f32(env, argv[1], &lg), *m = f32(env, argv[2], &lm), *v = f32(env, argv[3], &lv);
  if (!p || !g || !m || !v) return NULL;
  if (lg != lp || lm != lp || lv != lp) {
    napi_throw_range_error(env, NULL, "adam: arrays differ in length");
    return NULL;
  }
  const float lr = (float)num(env, argv[4]), b1 = (float)num(env, argv[5]), b2 = (float)num(env, argv[6]);
  const float eps = (float)num(env, argv[7]);
  const float inv_c1 = (float)(1.0 / num(env, argv[8])), inv_c2 = (float)(1.0 / num(env, argv[9]));
  const int64_t n = (int64_t)lp;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) {
    const float gi = g[i];
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= lr * (mi * inv_c1) / (sqrtf(vi * inv_c2) + eps);
  }
  return NULL;
}

/* lerp(shadow, p, d): shadow ← d·shadow + (1 − d)·p in place: one step of a moving average of weights. */
static napi_value lerp(napi_env env, napi_callback_info info) {
  ARGS(3);
  size_t ls = 0, lp = 0;
  float *shadow = f32(env, argv[0], &ls);
  const float *p = f32(env, argv[1], &lp);
  if (!shadow || !p) return NULL;
  if (ls != lp) {
    napi_throw_range_error(env, NULL, "lerp: arrays differ in length");
    return NULL;
  }
  const float d = (float)num(env, argv[2]);
  const int64_t n = (int64_t)ls;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) shadow[i] = d * shadow[i] + (1.0f - d) * p[i];
  return NULL;
}

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
 */
static inline float exp_f(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float t = x * 1.44269504088896341f;
  const float k = rintf(t);
  const float f = (t - k) * 0.69314718055994531f; /* 2^(t−k) = e^f */
  float p = 1.0f / 720.0f;
  p = p * f + 1.0f / 120.0f;
  p = p * f + 1.0f / 24.0f;
  p = p * f + 1.0f / 6.0f;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  union {
    float f;
    int32_t i;
  } scale = {.i = ((int32_t)k + 127) << 23};
  return p * scale.f;
}

static inline float gelu_f(float x) { return 0.5f * x * (1.0f + erf_f(x * 0.70710678118654752f)); }

/* d/dx x·Φ(x) = Φ(x) + x·φ(x) */
static inline float gelu_grad_f(float x) {
  return 0.5f * (1.0f + erf_f(x * 0.70710678118654752f)) + x * 0.39894228040143268f * exp_f(-0.5f * x * x);
}

/* One row of geluLayerNorm; returns its rstd. (restrict pointers in a plain function let the loops vectorize.) */
static float gelu_layer_norm_row(const float *restrict x, const float *restrict gamma, const float *restrict beta, int64_t cols,
                                 float *restrict y, float *restrict h) {
  float sum = 0; /* float sums vectorize; over a few thousand values they lose ~1e-6 relative */
  for (int64_t c = 0; c < cols; c++) {
    h[c] = gelu_f(x[c]);
    sum += h[c];
  }
  const float mu = sum / cols;
  float sq = 0;
  for (int64_t c = 0; c < cols; c++) sq += (h[c] - mu) * (h[c] - mu);
  const float rs = 1.0f / sqrtf(sq / cols + LN_EPS);
  for (int64_t c = 0; c < cols; c++) {
    h[c] = (h[c] - mu) * rs;
    y[c] = h[c] * gamma[c] + beta[c];
  }
  return rs;
}

/* One row of the input gradient of geluLayerNorm. */
static void gelu_layer_norm_grad_row(const float *restrict dy, const float *restrict x, const float *restrict h,
                                     const float *restrict gamma, float rs, int64_t cols, float *restrict dx) {
  float sum_g = 0, sum_gh = 0;
  for (int64_t c = 0; c < cols; c++) {
    sum_g += dy[c] * gamma[c];
    sum_gh += dy[c] * gamma[c] * h[c];
  }
  const float mean_g = sum_g / cols, mean_gh = sum_gh / cols;
  for (int64_t c = 0; c < cols; c++) dx[c] = rs * (dy[c] * gamma[c] - mean_g - h[c] * mean_gh) * gelu_grad_f(x[c]);
}

/* out[c0..c1) = Σ_r a[r, c] (· b[r, c] when b is given): column sums over a range of columns, rows in memory order. */
static void column_sums_range(const float *restrict a, const float *restrict b, int64_t rows, int64_t cols, int64_t c0, int64_t c1,
                              float *restrict out) {
  for (int64_t c = c0; c < c1; c++) out[c] = 0;
  for (int64_t r = 0; r < rows; r++) {
    const float *restrict ar = a + r * cols;
    if (b) {
      const float *restrict br = b + r * cols;
      for (int64_t c = c0; c < c1; c++) out[c] += ar[c] * br[c];
    } else {
      for (int64_t c = c0; c < c1; c++) out[c] += ar[c];
    }
  }
}

/*
 * geluLayerNorm(x, gamma, beta, rows, cols, y, xhat, rstd): per row, a = GELU(x),
 * x̂ = (a − mean(a)) / √(var(a) + ε), y = x̂·γ + β. x̂ and rstd = 1/√(var + ε) are saved for the backward pass.
 */
static napi_value gelu_layer_norm(napi_env env, napi_callback_info info) {
  ARGS(8);
  const float *x = f32(env, argv[0], NULL), *gamma = f32(env, argv[1], NULL), *beta = f32(env, argv[2], NULL);
  const int64_t rows = (int64_t)num(env, argv[3]), cols = (int64_t)num(env, argv[4]);
  float *y = f32(env, argv[5], NULL), *xhat = f32(env, argv[6], NULL), *rstd = f32(env, argv[7], NULL);
  if (!x || !gamma || !beta || !y || !xhat || !rstd) return NULL;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) rstd[r] = gelu_layer_norm_row(x + r * cols, gamma, beta, cols, y + r * cols, xhat + r * cols);
  return NULL;
}

/*
 * geluLayerNormGrad(dy, x, xhat, gamma, rstd, rows, cols, dx, dgamma, dbeta): the gradients of the above:
 * dβ = Σ_rows dy, dγ = Σ_rows dy·x̂, and with g = dy·γ, da = rstd·(g − mean(g) − x̂·mean(g·x̂)),
 * dx = da·GELU′(x).
 */
static napi_value gelu_layer_norm_grad(napi_env env, napi_callback_info info) {
  ARGS(10);
  const float *dy = f32(env, argv[0], NULL), *x = f32(env, argv[1], NULL), *xhat = f32(env, argv[2], NULL);
  const float *gamma = f32(env, argv[3], NULL), *rstd = f32(env, argv[4], NULL);
  const int64_t rows = (int64_t)num(env, argv[5]), cols = (int64_t)num(env, argv[6]);
  float *dx = f32(env, argv[7], NULL), *dgamma = f32(env, argv[8], NULL), *dbeta = f32(env, argv[9], NULL);
  if (!dy || !x || !xhat || !gamma || !rstd || !dx || !dgamma || !dbeta) return NULL;
#pragma omp parallel
  {
#pragma omp for schedule(static) nowait
    for (int64_t r = 0; r < rows; r++) gelu_layer_norm_grad_row(dy + r * cols, x + r * cols, xhat + r * cols, gamma, rstd[r], cols, dx + r * cols);
    /* dγ and dβ: each thread owns a range of columns. */
    const int threads = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t c0 = cols * id / threads, c1 = cols * (id + 1) / threads;
    column_sums_range(dy, xhat, rows, cols, c0, c1, dgamma);
    column_sums_range(dy, NULL, rows, cols, c0, c1, dbeta);
  }
  return NULL;
}

/* columnSums(x, rows, cols, out): out[c] = Σ_r x[r, c], the gradient of a bias broadcast over rows. */
static napi_value column_sums(napi_env env, napi_callback_info info) {
  ARGS(4);
  const float *x = f32(env, argv[0], NULL);
  const int64_t rows = (int64_t)num(env, argv[1]), cols = (int64_t)num(env, argv[2]);
  float *out = f32(env, argv[3], NULL);
  if (!x || !out) return NULL;
#pragma omp parallel if (rows * cols > 65536)
  {
    const int threads = omp_get_num_threads(), id = omp_get_thread_num();
    column_sums_range(x, NULL, rows, cols, cols * id / threads, cols * (id + 1) / threads, out);
  }
  return NULL;
}

/*
 * binary(op, a, b, out, swap[, outer]): out = a op b for op 0 add, 1 subtract, 2 multiply; `swap`
 * computes b op a instead, for the broadcast operand on the left. out (and a) are [outer, middle,
 * inner] and b is [outer, inner], repeated over the middle: with outer = 1 (the default), b has out's
 * length, 1 (a scalar) or the length of out's trailing axes (a bias row); with outer > 1, b is a
 * per-image channel shift ([b, 1, 1, c] on [b, h, w, c]) or a row statistic ([r, 1] on [r, n]).
 */
static napi_value binary(napi_env env, napi_callback_info info) {
  ARGS(6);
  const int op = (int)num(env, argv[0]);
  size_t la = 0, lb = 0, lo = 0;
  const float *a = f32(env, argv[1], &la), *b = f32(env, argv[2], &lb);
  float *out = f32(env, argv[3], &lo);
  const bool swap = flag(env, argv[4]);
  const int64_t outer = argc > 5 ? (int64_t)num(env, argv[5]) : 1;
  if (!a || !b || !out) return NULL;
  if (la != lo || lb == 0 || outer < 1 || lb % outer != 0 || lo % lb != 0) {
    napi_throw_range_error(env, NULL, "binary: shapes do not broadcast");
    return NULL;
  }
  const int64_t inner = (int64_t)lb / outer, middle = (int64_t)lo / (int64_t)lb, block = middle * inner;
  const float sign = swap ? -1.0f : 1.0f;
#pragma omp parallel for if (lo > 65536 && outer > 1)
  for (int64_t o = 0; o < outer; o++) {
    const float *bo = b + o * inner;
    /* Walk each block as `middle` rows of `inner` values so the inner loop has no index arithmetic. */
    for (int64_t row = o * block; row < (o + 1) * block; row += inner) {
      const float *ar = a + row;
      float *r = out + row;
      if (inner == 1) {
        const float bv = bo[0];
        for (int64_t i = 0; i < middle; i++) r[i] = op == 0 ? ar[i] + bv : op == 1 ? sign * (ar[i] - bv) : ar[i] * bv;
        break;
      }
      switch (op) {
        case 0: for (int64_t i = 0; i < inner; i++) r[i] = ar[i] + bo[i]; break;
        case 1: for (int64_t i = 0; i < inner; i++) r[i] = sign * (ar[i] - bo[i]); break;
        default: for (int64_t i = 0; i < inner; i++) r[i] = ar[i] * bo[i]; break;
      }
    }
  }
  return NULL;
}

/* middleSums(x, outer, middle, inner, out): out[o, i] = Σ_m x[o, m, i] (a per-image channel sum, a row sum). */
static napi_value middle_sums(napi_env env, napi_callback_info info) {
  ARGS(5);
  size_t lx = 0, lo = 0;
  const float *x = f32(env, argv[0], &lx);
  const int64_t outer = (int64_t)num(env, argv[1]), middle = (int64_t)num(env, argv[2]), inner = (int64_t)num(env, argv[3]);
  float *out = f32(env, argv[4], &lo);
  if (!x || !out) return NULL;
  if ((int64_t)lx != outer * middle * inner || (int64_t)lo != outer * inner) {
    napi_throw_range_error(env, NULL, "middleSums: array lengths do not match the shape");
    return NULL;
  }
#pragma omp parallel for if (lx > 65536)
  for (int64_t o = 0; o < outer; o++) {
    float *acc = out + o * inner;
    const float *xo = x + o * middle * inner;
    if (inner == 1) {
      float s = 0;
      for (int64_t m = 0; m < middle; m++) s += xo[m];
      acc[0] = s;
      continue;
    }
    for (int64_t i = 0; i < inner; i++) acc[i] = 0;
    for (int64_t m = 0; m < middle; m++)
      for (int64_t i = 0; i < inner; i++) acc[i] += xo[m * inner + i];
  }
  return NULL;
}

/*
 * Convolutions, NHWC, filter [kh, kw, in, out] (tfjs's layouts): direct loops (below) where they apply,
 * else im2col + sgemm. The geometry comes as an Int32Array: batch, inH, inW, inC, outH, outW, outC, kH,
 * kW, strideH, strideW, padTop, padLeft, dilationH, dilationW. Images go in chunks so the patch matrix
 * stays a few MiB.
 */
typedef struct {
  int64_t batch, inH, inW, inC, outH, outW, outC, kH, kW, sH, sW, padTop, padLeft, dH, dW;
} conv_geom;

static bool read_geom(napi_env env, napi_value v, conv_geom *g) {
  size_t len = 0;
  const int32_t *d = i32(env, v, &len);
  if (!d) return false;
  if (len != 15) {
    napi_throw_type_error(env, NULL, "conv: expected 15 geometry numbers");
    return false;
  }
  *g = (conv_geom){d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14]};
  return true;
}

static int64_t patch_size(const conv_geom *g) { return g->kH * g->kW * g->inC; }

/* Images per chunk: patch matrices of about 256 K floats (1 MiB, cache-sized; one image of a 32-px U-net). */
static int64_t chunk_images(const conv_geom *g) {
  const int64_t per = g->outH * g->outW * patch_size(g);
  const int64_t n = (1 << 18) / (per > 0 ? per : 1);
  return n < 1 ? 1 : n > g->batch ? g->batch : n;
}

/* cols[n·outH·outW, kH·kW·inC] ← the patches of images [first, first + n). */
static void im2col(const conv_geom *g, const float *x, int64_t first, int64_t n, float *cols) {
  const int64_t K = patch_size(g), rows = n * g->outH * g->outW;
#pragma omp parallel for if (rows * K > 65536)
  for (int64_t r = 0; r < rows; r++) {
    const int64_t img = first + r / (g->outH * g->outW), oy = (r / g->outW) % g->outH, ox = r % g->outW;
    float *dst = cols + r * K;
    for (int64_t ky = 0; ky < g->kH; ky++) {
      const int64_t iy = oy * g->sH + ky * g->dH - g->padTop;
      for (int64_t kx = 0; kx < g->kW; kx++) {
        const int64_t ix = ox * g->sW + kx * g->dW - g->padLeft;
        float *d = dst + (ky * g->kW + kx) * g->inC;
        if (iy < 0 || iy >= g->inH || ix < 0 || ix >= g->inW) {
          for (int64_t c = 0; c < g->inC; c++) d[c] = 0.0f;
        } else {
          const float *src = x + ((img * g->inH + iy) * g->inW + ix) * g->inC;
          for (int64_t c = 0; c < g->inC; c++) d[c] = src[c];
        }
      }
    }
  }
}

/* dx of images [first, first + n) += the patches' gradients put back where they came from. */
static void col2im(const conv_geom *g, const float *cols, int64_t first, int64_t n, float *dx) {
  const int64_t K = patch_size(g);
#pragma omp parallel for if (n > 1)
  for (int64_t i = 0; i < n; i++) {
    const int64_t img = first + i;
    for (int64_t oy = 0; oy < g->outH; oy++) {
      for (int64_t ox = 0; ox < g->outW; ox++) {
        const float *src = cols + ((i * g->outH + oy) * g->outW + ox) * K;
        for (int64_t ky = 0; ky < g->kH; ky++) {
          const int64_t iy = oy * g->sH + ky * g->dH - g->padTop;
          if (iy < 0 || iy >= g->inH) continue;
          for (int64_t kx = 0; kx < g->kW; kx++) {
            const int64_t ix = ox * g->sW + kx * g->dW - g->padLeft;
            if (ix < 0 || ix >= g->inW) continue;
            float *d = dx + ((img * g->inH + iy) * g->inW + ix) * g->inC;
            const float *s = src + (ky * g->kW + kx) * g->inC;
            for (int64_t c = 0; c < g->inC; c++) d[c] += s[c];
          }
        }
      }
    }
  }
}

/*
 * Direct stride-1 convolutions for the U-net's layers, 3-4x faster than im2col + sgemm there: those
 * products have only 16-128 output channels, too few for sgemm's blocking, and im2col copies every input
 * value k·k times. Output channels go 16 at a time in one vector (GCC's vector extension: one AVX-512
 * register, or two AVX2 ones), eight pixels of a row at a time, so each filter row loaded serves eight
 * multiply-adds. Each image is first copied into a zero-padded buffer, so the loops need no bounds checks.
 */
enum { CONV_FORWARD = 0, CONV_GRAD_INPUT = 1, CONV_GRAD_FILTER = 2 };

typedef float vec16 __attribute__((vector_size(64)));
static inline vec16 load16(const float *p) {
  vec16 v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void store16(float *p, vec16 v) { memcpy(p, &v, sizeof v); }

enum { DIRECT_PIXELS = 8 };

static bool direct_eligible(const conv_geom *g) { return g->sH == 1 && g->sW == 1 && g->dH == 1 && g->dW == 1; }
static int64_t padded_height(const conv_geom *g) { return g->outH + g->kH - 1; }
static int64_t padded_width(const conv_geom *g) { return g->outW + g->kW - 1; }

/* xp ← image `img` of x inside a zero frame: padTop rows above, padLeft columns to the left. */
static void pad_image(const conv_geom *g, const float *x, int64_t img, float *xp) {
  const int64_t PH = padded_height(g), PW = padded_width(g), C = g->inC;
  memset(xp, 0, sizeof(float) * PH * PW * C);
  for (int64_t iy = 0; iy < g->inH; iy++) {
    const int64_t py = iy + g->padTop;
    if (py < 0 || py >= PH) continue;
    const int64_t first = g->padLeft < 0 ? -g->padLeft : 0, last = g->inW < PW - g->padLeft ? g->inW : PW - g->padLeft;
    if (last > first) memcpy(xp + (py * PW + first + g->padLeft) * C, x + ((img * g->inH + iy) * g->inW + first) * C, sizeof(float) * (last - first) * C);
  }
}

/*
 * y[outH, outW, outC] ← one padded image convolved with filter [kH, kW, inC, outC]; outC % 16 == 0.
 * Output channels go 32 at a time where they can (two vectors share each input value loaded), else 16.
 */
static void direct_forward_image(const conv_geom *g, const float *xp, const float *filter, float *y) {
  const int64_t PW = padded_width(g), CI = g->inC, CO = g->outC;
  for (int64_t oy = 0; oy < g->outH; oy++) {
    for (int64_t co = 0; co < CO;) {
      const bool pair = co + 32 <= CO;
      int64_t ox = 0;
      for (; ox + DIRECT_PIXELS <= g->outW; ox += DIRECT_PIXELS) {
        vec16 acc[DIRECT_PIXELS], acc2[DIRECT_PIXELS];
        for (int p = 0; p < DIRECT_PIXELS; p++) acc[p] = acc2[p] = (vec16){0};
        for (int64_t ky = 0; ky < g->kH; ky++)
          for (int64_t kx = 0; kx < g->kW; kx++) {
            const float *src = xp + ((oy + ky) * PW + ox + kx) * CI, *w = filter + (ky * g->kW + kx) * CI * CO + co;
            if (pair) {
              for (int64_t ci = 0; ci < CI; ci++) {
                const vec16 wv = load16(w + ci * CO), wv2 = load16(w + ci * CO + 16);
                for (int p = 0; p < DIRECT_PIXELS; p++) {
                  const float v = src[p * CI + ci];
                  acc[p] += wv * v;
                  acc2[p] += wv2 * v;
                }
              }
            } else {
              for (int64_t ci = 0; ci < CI; ci++) {
                const vec16 wv = load16(w + ci * CO);
                for (int p = 0; p < DIRECT_PIXELS; p++) acc[p] += wv * src[p * CI + ci];
              }
            }
          }
        for (int p = 0; p < DIRECT_PIXELS; p++) {
          store16(y + (oy * g->outW + ox + p) * CO + co, acc[p]);
          if (pair) store16(y + (oy * g->outW + ox + p) * CO + co + 16, acc2[p]);
        }
      }
      for (; ox < g->outW; ox++) /* the row's last few pixels, 16 channels at a time */
        for (int64_t c = co; c < co + (pair ? 32 : 16); c += 16) {
          vec16 acc = (vec16){0};
          for (int64_t ky = 0; ky < g->kH; ky++)
            for (int64_t kx = 0; kx < g->kW; kx++) {
              const float *src = xp + ((oy + ky) * PW + ox + kx) * CI, *w = filter + (ky * g->kW + kx) * CI * CO + c;
              for (int64_t ci = 0; ci < CI; ci++) acc += load16(w + ci * CO) * src[ci];
            }
          store16(y + (oy * g->outW + ox) * CO + c, acc);
        }
      co += pair ? 32 : 16;
    }
  }
}

/*
 * dfilter[kH, kW, inC, outC] += one padded image's patches × its dy; inC % 8 == 0, outC % 16 == 0.
 * Eight input channels by 16 (or 32) output channels stay in registers over all of the image's pixels.
 */
static void direct_filter_grad_image(const conv_geom *g, const float *xp, const float *dy, float *dfilter) {
  const int64_t PW = padded_width(g), CI = g->inC, CO = g->outC;
  for (int64_t ky = 0; ky < g->kH; ky++)
    for (int64_t kx = 0; kx < g->kW; kx++)
      for (int64_t ci = 0; ci < CI; ci += 8)
        for (int64_t co = 0; co < CO;) {
          const bool pair = co + 32 <= CO;
          vec16 acc[8], acc2[8];
          for (int c = 0; c < 8; c++) acc[c] = acc2[c] = (vec16){0};
          for (int64_t oy = 0; oy < g->outH; oy++) {
            const float *src = xp + ((oy + ky) * PW + kx) * CI + ci, *d = dy + oy * g->outW * CO + co;
            if (pair) {
              for (int64_t ox = 0; ox < g->outW; ox++) {
                const vec16 dv = load16(d + ox * CO), dv2 = load16(d + ox * CO + 16);
                for (int c = 0; c < 8; c++) {
                  const float v = src[ox * CI + c];
                  acc[c] += dv * v;
                  acc2[c] += dv2 * v;
                }
              }
            } else {
              for (int64_t ox = 0; ox < g->outW; ox++) {
                const vec16 dv = load16(d + ox * CO);
                for (int c = 0; c < 8; c++) acc[c] += dv * src[ox * CI + c];
              }
            }
          }
          float *out = dfilter + ((ky * g->kW + kx) * CI + ci) * CO + co;
          for (int c = 0; c < 8; c++) {
            store16(out + c * CO, load16(out + c * CO) + acc[c]);
            if (pair) store16(out + c * CO + 16, load16(out + c * CO + 16) + acc2[c]);
          }
          co += pair ? 32 : 16;
        }
}

/*
 * The direct path for one mode, or false where it does not apply (strides, dilations, channel counts
 * that are not multiples of 16, or of 8 for the filter gradient's inputs). The input gradient is the
 * forward convolution of dy with the filter turned 180° and its channel axes swapped.
 */
static bool conv_direct(int mode, const conv_geom *g, const float *a, const float *b, float *out) {
  if (!direct_eligible(g)) return false;
  if (mode == CONV_FORWARD && g->outC % 16 != 0) return false;
  if (mode == CONV_GRAD_INPUT && g->inC % 16 != 0) return false;
  if (mode == CONV_GRAD_FILTER && (g->inC % 8 != 0 || g->outC % 16 != 0)) return false;
  conv_geom fg = *g; /* the forward convolution that runs */
  const float *filter = b;
  float *turned = NULL;
  if (mode == CONV_GRAD_INPUT) {
    fg = (conv_geom){g->batch, g->outH, g->outW, g->outC, g->inH, g->inW, g->inC, g->kH, g->kW, 1, 1, g->kH - 1 - g->padTop, g->kW - 1 - g->padLeft, 1, 1};
    turned = (float *)malloc(sizeof(float) * g->kH * g->kW * g->inC * g->outC);
    if (!turned) return false;
    for (int64_t ky = 0; ky < g->kH; ky++)
      for (int64_t kx = 0; kx < g->kW; kx++)
        for (int64_t ci = 0; ci < g->inC; ci++)
          for (int64_t co = 0; co < g->outC; co++)
            turned[(((g->kH - 1 - ky) * g->kW + (g->kW - 1 - kx)) * g->outC + co) * g->inC + ci] = b[((ky * g->kW + kx) * g->inC + ci) * g->outC + co];
    filter = turned;
  }
  const int64_t padLen = padded_height(&fg) * padded_width(&fg) * fg.inC, fLen = g->kH * g->kW * g->inC * g->outC;
  const int threads = fg.batch > 1 ? omp_get_max_threads() : 1;
  float *pads = (float *)malloc(sizeof(float) * threads * padLen);
  float *partial = mode == CONV_GRAD_FILTER && threads > 1 ? (float *)calloc((size_t)(threads - 1) * fLen, sizeof(float)) : NULL;
  if (!pads || (mode == CONV_GRAD_FILTER && threads > 1 && !partial)) {
    free(turned);
    free(pads);
    free(partial);
    return false;
  }
  if (mode == CONV_GRAD_FILTER)
    for (int64_t i = 0; i < fLen; i++) out[i] = 0.0f;
#pragma omp parallel num_threads(threads)
  {
    const int id = omp_get_thread_num();
    float *myPad = pads + (int64_t)id * padLen;
    float *myFilter = id == 0 ? out : partial + (int64_t)(id - 1) * fLen;
#pragma omp for schedule(static)
    for (int64_t img = 0; img < fg.batch; img++) {
      pad_image(&fg, a, img, myPad);
      if (mode == CONV_GRAD_FILTER)
        direct_filter_grad_image(&fg, myPad, b + img * fg.outH * fg.outW * fg.outC, myFilter);
      else
        direct_forward_image(&fg, myPad, filter, out + img * fg.outH * fg.outW * fg.outC);
    }
  }
  for (int t = 0; partial && t < threads - 1; t++)
    for (int64_t i = 0; i < fLen; i++) out[i] += partial[(size_t)t * fLen + i];
  free(turned);
  free(pads);
  free(partial);
  return true;
}


/*
 * conv(mode, geom, a, b, out):
 *   forward:      a = x, b = filter, out = y [batch, outH, outW, outC]
 *   grad input:   a = dy, b = filter, out = dx [batch, inH, inW, inC]
 *   grad filter:  a = x, b = dy, out = dfilter [kH, kW, inC, outC]
 */
static napi_value conv(napi_env env, napi_callback_info info) {
  ARGS(5);
  const int mode = (int)num(env, argv[0]);
  conv_geom g;
  if (!read_geom(env, argv[1], &g)) return NULL;
  size_t la = 0, lb = 0, lo = 0;
  const float *a = f32(env, argv[2], &la), *b = f32(env, argv[3], &lb);
  float *out = f32(env, argv[4], &lo);
  if (!a || !b || !out) return NULL;
  const int64_t K = patch_size(&g), P = g.outH * g.outW;
  const size_t xLen = g.batch * g.inH * g.inW * g.inC, yLen = g.batch * P * g.outC, fLen = K * g.outC;
  const bool ok = mode == CONV_FORWARD     ? la == xLen && lb == fLen && lo == yLen
                  : mode == CONV_GRAD_INPUT ? la == yLen && lb == fLen && lo == xLen
                                            : la == xLen && lb == yLen && lo == fLen;
  if (!ok) {
    napi_throw_range_error(env, NULL, "conv: array lengths do not match the geometry");
    return NULL;
  }
  if (conv_direct(mode, &g, a, b, out)) return NULL;
  const int64_t chunk = chunk_images(&g), chunks = (g.batch + chunk - 1) / chunk;
  /*
   * The chunks go to the OpenMP threads, each with its own patch matrix and a one-thread sgemm: these
   * products are small (16-64 output channels), and splitting each of them over the cores made a U-net
   * step slower than one core alone. The filter gradient sums over chunks: one partial sum per thread.
   */
  const int threads = chunks > 1 ? omp_get_max_threads() : 1;
  const int blasThreads = openblas_get_num_threads();
  float *cols = (float *)malloc(sizeof(float) * threads * chunk * P * K);
  float *partial = mode == CONV_GRAD_FILTER && threads > 1 ? (float *)calloc((size_t)(threads - 1) * fLen, sizeof(float)) : NULL;
  if (!cols || (mode == CONV_GRAD_FILTER && threads > 1 && !partial)) {
    free(cols);
    free(partial);
    napi_throw_error(env, NULL, "conv: out of memory");
    return NULL;
  }
  if (mode == CONV_GRAD_INPUT)
    for (size_t i = 0; i < xLen; i++) out[i] = 0.0f;
  if (mode == CONV_GRAD_FILTER)
    for (size_t i = 0; i < fLen; i++) out[i] = 0.0f;
  if (threads > 1) openblas_set_num_threads(1);
#pragma omp parallel num_threads(threads)
  {
    const int id = omp_get_thread_num();
    float *myCols = cols + (int64_t)id * chunk * P * K;
    float *myFilter = id == 0 ? out : partial + (int64_t)(id - 1) * fLen;
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
      const int64_t first = c * chunk, n = first + chunk > g.batch ? g.batch - first : chunk, rows = n * P;
      if (mode == CONV_FORWARD) {
        im2col(&g, a, first, n, myCols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, g.outC, K, 1.0f, myCols, K, b, g.outC, 0.0f, out + first * P * g.outC, g.outC);
      } else if (mode == CONV_GRAD_FILTER) {
        im2col(&g, a, first, n, myCols);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, g.outC, rows, 1.0f, myCols, K, b + first * P * g.outC, g.outC, 1.0f, myFilter, g.outC);
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, K, g.outC, 1.0f, a + first * P * g.outC, g.outC, b, g.outC, 0.0f, myCols, K);
        col2im(&g, myCols, first, n, out);
      }
    }
  }
  if (threads > 1) openblas_set_num_threads(blasThreads);
  for (int t = 0; partial && t < threads - 1; t++)
    for (size_t i = 0; i < fLen; i++) out[i] += partial[(size_t)t * fLen + i];
  free(cols);
  free(partial);
  return NULL;
}

/*
 * groupNorm(x, gamma, beta, batch, pixels, channels, groups, y, xhat, rstd): for each image and group
 * of channels/groups channels, normalize over its pixels × channels; y = x̂·γ[c] + β[c]. x̂ and each
 * (image, group)'s 1/σ are kept for the gradient.
 */
static napi_value group_norm(napi_env env, napi_callback_info info) {
  ARGS(10);
  const float *x = f32(env, argv[0], NULL), *gamma = f32(env, argv[1], NULL), *beta = f32(env, argv[2], NULL);
  const int64_t B = (int64_t)num(env, argv[3]), P = (int64_t)num(env, argv[4]), C = (int64_t)num(env, argv[5]), G = (int64_t)num(env, argv[6]);
  float *y = f32(env, argv[7], NULL), *xhat = f32(env, argv[8], NULL), *rstd = f32(env, argv[9], NULL);
  if (!x || !gamma || !beta || !y || !xhat || !rstd) return NULL;
  const int64_t cg = C / G;
  /* One image per thread, its rows read whole (per-channel sums, then grouped): groups of a few
     channels read strided were 5x slower. */
#pragma omp parallel for if (B * P * C > 65536)
  for (int64_t b = 0; b < B; b++) {
    const float *xb = x + b * P * C;
    double *acc = (double *)calloc(C, sizeof(double));
    float *mean = (float *)malloc(C * sizeof(float)), *r = (float *)malloc(C * sizeof(float));
    for (int64_t p = 0; p < P; p++)
      for (int64_t c = 0; c < C; c++) acc[c] += xb[p * C + c];
    for (int64_t g = 0; g < G; g++) {
      double s = 0;
      for (int64_t c = g * cg; c < (g + 1) * cg; c++) s += acc[c];
      for (int64_t c = g * cg; c < (g + 1) * cg; c++) mean[c] = (float)(s / (double)(P * cg));
    }
    for (int64_t c = 0; c < C; c++) acc[c] = 0;
    for (int64_t p = 0; p < P; p++)
      for (int64_t c = 0; c < C; c++) {
        const float d = xb[p * C + c] - mean[c];
        acc[c] += d * d;
      }
    for (int64_t g = 0; g < G; g++) {
      double s = 0;
      for (int64_t c = g * cg; c < (g + 1) * cg; c++) s += acc[c];
      const float rg = (float)(1.0 / sqrt(s / (double)(P * cg) + 1e-5));
      rstd[b * G + g] = rg;
      for (int64_t c = g * cg; c < (g + 1) * cg; c++) r[c] = rg;
    }
    for (int64_t p = 0; p < P; p++) {
      const int64_t off = (b * P + p) * C;
      for (int64_t c = 0; c < C; c++) {
        const float h = (x[off + c] - mean[c]) * r[c];
        xhat[off + c] = h;
        y[off + c] = h * gamma[c] + beta[c];
      }
    }
    free(acc);
    free(mean);
    free(r);
  }
  return NULL;
}

/* Gradients of groupNorm: dx, and dγ, dβ summed over images and pixels. */
static napi_value group_norm_grad(napi_env env, napi_callback_info info) {
  ARGS(11);
  const float *dy = f32(env, argv[0], NULL), *xhat = f32(env, argv[1], NULL), *gamma = f32(env, argv[2], NULL), *rstd = f32(env, argv[3], NULL);
  const int64_t B = (int64_t)num(env, argv[4]), P = (int64_t)num(env, argv[5]), C = (int64_t)num(env, argv[6]), G = (int64_t)num(env, argv[7]);
  float *dx = f32(env, argv[8], NULL), *dgamma = f32(env, argv[9], NULL), *dbeta = f32(env, argv[10], NULL);
  if (!dy || !xhat || !gamma || !rstd || !dx || !dgamma || !dbeta) return NULL;
  const int64_t cg = C / G;
  const double n = (double)(P * cg);
  /* Per image: Σ dx̂ and Σ dx̂·x̂ over each group (dx̂ = dy·γ), from per-channel sums of whole rows; and
     the image's share of dγ, dβ, summed after. */
  double *partial = (double *)calloc(2 * B * C, sizeof(double));
#pragma omp parallel for if (B * P * C > 65536)
  for (int64_t b = 0; b < B; b++) {
    double *sumD = (double *)calloc(2 * C, sizeof(double)), *sumDX = sumD + C;
    double *dg = partial + 2 * b * C, *db = dg + C;
    float *meanD = (float *)malloc(3 * C * sizeof(float)), *meanDX = meanD + C, *r = meanD + 2 * C;
    for (int64_t p = 0; p < P; p++) {
      const int64_t off = (b * P + p) * C;
      for (int64_t c = 0; c < C; c++) {
        const float d = dy[off + c] * gamma[c];
        sumD[c] += d;
        sumDX[c] += d * xhat[off + c];
        dg[c] += dy[off + c] * xhat[off + c];
        db[c] += dy[off + c];
      }
    }
    for (int64_t g = 0; g < G; g++) {
      double sd = 0, sdx = 0;
      for (int64_t c = g * cg; c < (g + 1) * cg; c++) sd += sumD[c], sdx += sumDX[c];
      for (int64_t c = g * cg; c < (g + 1) * cg; c++) meanD[c] = (float)(sd / n), meanDX[c] = (float)(sdx / n), r[c] = rstd[b * G + g];
    }
    for (int64_t p = 0; p < P; p++) {
      const int64_t off = (b * P + p) * C;
      for (int64_t c = 0; c < C; c++) dx[off + c] = r[c] * (dy[off + c] * gamma[c] - meanD[c] - xhat[off + c] * meanDX[c]);
    }
    free(sumD);
    free(meanD);
  }
  for (int64_t c = 0; c < C; c++) {
    double dg = 0, db = 0;
    for (int64_t b = 0; b < B; b++) dg += partial[2 * b * C + c], db += partial[(2 * b + 1) * C + c];
    dgamma[c] = (float)dg;
    dbeta[c] = (float)db;
  }
  free(partial);
  return NULL;
}

/* softmaxRows(x, cols, y): y = softmax of each row of `cols` values. */
static napi_value softmax_rows(napi_env env, napi_callback_info info) {
  ARGS(3);
  size_t len = 0;
  const float *x = f32(env, argv[0], &len);
  const int64_t n = (int64_t)num(env, argv[1]);
  float *y = f32(env, argv[2], NULL);
  if (!x || !y) return NULL;
  const int64_t rows = n > 0 ? (int64_t)len / n : 0;
#pragma omp parallel for if ((int64_t)len > 65536)
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * n;
    float *yr = y + r * n;
    float max = xr[0], sum = 0;
    for (int64_t i = 1; i < n; i++) max = xr[i] > max ? xr[i] : max;
    for (int64_t i = 0; i < n; i++) sum += yr[i] = expf(xr[i] - max);
    const float inv = 1.0f / sum;
    for (int64_t i = 0; i < n; i++) yr[i] *= inv;
  }
  return NULL;
}

/*
 * copyRuns(src, srcFirst, srcStrides, out, outFirst, outStrides, outer, run): for every index i of the
 * `outer` shape (Int32Arrays, row-major), copies `run` contiguous values from srcFirst + Σ i·srcStrides
 * to outFirst + Σ i·outStrides: slices, concatenations and transposes that keep the last axis.
 */
static napi_value copy_runs(napi_env env, napi_callback_info info) {
  ARGS(8);
  size_t srcLen = 0, outLen = 0, rank = 0, r2 = 0, r3 = 0;
  const float *src = f32(env, argv[0], &srcLen);
  float *out = f32(env, argv[3], &outLen);
  if (!src || !out) return NULL;
  const int64_t srcFirst = (int64_t)num(env, argv[1]), outFirst = (int64_t)num(env, argv[4]), run = (int64_t)num(env, argv[7]);
  const int32_t *ss = i32(env, argv[2], &rank), *os = i32(env, argv[5], &r2), *outer = i32(env, argv[6], &r3);
  if (!ss || !os || !outer) return NULL;
  if (r2 != rank || r3 != rank) {
    napi_throw_range_error(env, NULL, "copyRuns: strides and shape differ in rank");
    return NULL;
  }
  int64_t count = 1, maxSrc = srcFirst, maxOut = outFirst;
  for (size_t a = 0; a < rank; a++) {
    count *= outer[a];
    if (outer[a] > 0) maxSrc += (int64_t)(outer[a] - 1) * ss[a], maxOut += (int64_t)(outer[a] - 1) * os[a];
  }
  if (count > 0 && (srcFirst < 0 || outFirst < 0 || maxSrc + run > (int64_t)srcLen || maxOut + run > (int64_t)outLen)) {
    napi_throw_range_error(env, NULL, "copyRuns: a run falls outside its array");
    return NULL;
  }
#pragma omp parallel for if (count * run > 65536)
  for (int64_t r = 0; r < count; r++) {
    int64_t rest = r, from = srcFirst, to = outFirst;
    for (int64_t a = (int64_t)rank - 1; a >= 0; a--) {
      const int64_t i = rest % outer[a];
      rest /= outer[a];
      from += i * ss[a];
      to += i * os[a];
    }
    memcpy(out + to, src + from, run * sizeof(float));
  }
  return NULL;
}

/* silu(x, y): y = x·σ(x); siluGrad(dy, x, dx): dx = dy·σ(x)·(1 + x·(1 − σ(x))). */
static napi_value silu(napi_env env, napi_callback_info info) {
  ARGS(2);
  size_t n = 0;
  const float *x = f32(env, argv[0], &n);
  float *y = f32(env, argv[1], NULL);
  if (!x || !y) return NULL;
#pragma omp parallel for simd if (n > 65536)
  for (size_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + exp_f(-x[i]));
  return NULL;
}

static napi_value silu_grad(napi_env env, napi_callback_info info) {
  ARGS(3);
  size_t n = 0;
  const float *dy = f32(env, argv[0], &n), *x = f32(env, argv[1], NULL);
  float *dx = f32(env, argv[2], NULL);
  if (!dy || !x || !dx) return NULL;
#pragma omp parallel for simd if (n > 65536)
  for (size_t i = 0; i < n; i++) {
    const float sig = 1.0f / (1.0f + exp_f(-x[i]));
    dx[i] = dy[i] * sig * (1.0f + x[i] * (1.0f - sig));
  }
  return NULL;
}

/*
 * Subnormal floats (below 1.2e-38) take the slow path of the FPU, 10-100x per operation. Training makes
 * them: GELU of a large negative input and its gradient underflow, and a 1e-3 learning rate pushes
 * inputs there, which made steps 6x slower. Flush them to zero on this thread and in the threads it
 * starts from now on (OpenMP's, OpenBLAS's), which inherit the setting. (JS on this thread sees it too:
 * float arithmetic below 1e-308 flushes to zero, which nothing in diffuse relies on.)
 */
extern int blas_thread_shutdown_(void) __attribute__((weak)); /* OpenBLAS's pthreads build has it */

static void flush_subnormals(void) {
  _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
  _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
  /* OpenBLAS started its worker threads when it loaded, before this: stop them, and its next product
     starts new ones from this thread, with its setting (the path OpenBLAS takes after a fork). */
  if (blas_thread_shutdown_) blas_thread_shutdown_();
}

static napi_value init(napi_env env, napi_value exports) {
  flush_subnormals();
  /*
   * Keep freed tensor buffers (up to 32 MiB each) in malloc's heap instead of returning them to the
   * system: otherwise every training step maps fresh pages for its tensors and pays a page fault per 4 KiB.
   */
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  napi_property_descriptor props[] = {
      {"sgemm", NULL, sgemm, NULL, NULL, NULL, napi_default, NULL},
      {"adam", NULL, adam, NULL, NULL, NULL, napi_default, NULL},
      {"lerp", NULL, lerp, NULL, NULL, NULL, napi_default, NULL},
      {"geluLayerNorm", NULL, gelu_layer_norm, NULL, NULL, NULL, napi_default, NULL},
      {"geluLayerNormGrad", NULL, gelu_layer_norm_grad, NULL, NULL, NULL, napi_default, NULL},
      {"columnSums", NULL, column_sums, NULL, NULL, NULL, napi_default, NULL},
      {"binary", NULL, binary, NULL, NULL, NULL, napi_default, NULL},
      {"conv", NULL, conv, NULL, NULL, NULL, napi_default, NULL},
      {"groupNorm", NULL, group_norm, NULL, NULL, NULL, napi_default, NULL},
      {"silu", NULL, silu, NULL, NULL, NULL, napi_default, NULL},
      {"siluGrad", NULL, silu_grad, NULL, NULL, NULL, napi_default, NULL},
      {"groupNormGrad", NULL, group_norm_grad, NULL, NULL, NULL, napi_default, NULL},
      {"middleSums", NULL, middle_sums, NULL, NULL, NULL, napi_default, NULL},
      {"softmaxRows", NULL, softmax_rows, NULL, NULL, NULL, napi_default, NULL},
      {"copyRuns", NULL, copy_runs, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
