/*
 * Native kernels for diffuse's `blas` backend: matrix products through OpenBLAS's sgemm (the tfjs
 * portable backends run the transposed products of the backward pass at under 1 GFLOP/s), and fused
 * element-wise kernels (GELU + LayerNorm forward and backward, Adam) split over the cores with OpenMP.
 * Every function works on Float32Arrays in place; shapes are checked on the JS side.
 */
#include <malloc.h>
#include <math.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <cblas.h>
#include <omp.h>

#define CHECK(call)                                                                   \
  do {                                                                                \
    if ((call) != napi_ok) {                                                          \
      napi_throw_error(env, NULL, "diffuse_native: bad argument in " #call);          \
      return NULL;                                                                    \
    }                                                                                 \
  } while (0)

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
  size_t argc = 9;
  napi_value argv[9];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
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
  size_t argc = 10;
  napi_value argv[10];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
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
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
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
  size_t argc = 8;
  napi_value argv[8];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
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
  size_t argc = 10;
  napi_value argv[10];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
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
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
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
 * binary(op, a, b, out, bSize): out = a op b for op 0 add, 1 subtract, 2 multiply; b has out's length,
 * or 1 (a scalar), or the length of out's last axis (a row broadcast over the leading axes); `swap`
 * computes b op a instead, for the broadcast operand on the left.
 */
static napi_value binary(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  const int op = (int)num(env, argv[0]);
  size_t la = 0, lb = 0, lo = 0;
  const float *a = f32(env, argv[1], &la), *b = f32(env, argv[2], &lb);
  float *out = f32(env, argv[3], &lo);
  const bool swap = flag(env, argv[4]);
  if (!a || !b || !out) return NULL;
  if (la != lo || lb == 0 || lo % lb != 0) {
    napi_throw_range_error(env, NULL, "binary: shapes do not broadcast");
    return NULL;
  }
  const int64_t n = (int64_t)lo, m = (int64_t)lb;
  const float sign = swap ? -1.0f : 1.0f;
  /* b repeats every m values: walk out as rows of m so the inner loop has no index arithmetic. */
  for (int64_t row = 0; row < n; row += m) {
    const float *ar = a + row;
    float *o = out + row;
    if (m == 1) {
      const float bv = b[0];
      for (int64_t i = 0; i < n; i++) o[i] = op == 0 ? ar[i] + bv : op == 1 ? sign * (ar[i] - bv) : ar[i] * bv;
      break;
    }
    switch (op) {
      case 0: for (int64_t i = 0; i < m; i++) o[i] = ar[i] + b[i]; break;
      case 1: for (int64_t i = 0; i < m; i++) o[i] = sign * (ar[i] - b[i]); break;
      default: for (int64_t i = 0; i < m; i++) o[i] = ar[i] * b[i]; break;
    }
  }
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
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
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
