/*
 * Dense kernels: matrix products through OpenBLAS's sgemm (tfjs's portable backends run the
 * transposed products of the backward pass at under 1 GFLOP/s), Adam and the weights' average in place,
 * the fused GELU + LayerNorm and its gradient, bias sums and broadcast arithmetic.
 */
#include "kernels.h"

/* c[m×n] = op(a)·op(b) + beta·c, row-major. */
static void product(bool ta, bool tb, int m, int n, int k, const float *a, const float *b, float beta, float *c) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a, ta ? m : k, b, tb ? k : n, beta, c, n);
}

/*
 * sgemm(transA, transB, m, n, k, a, b, c[, bias[, batches, strideA, strideB]]): c[m×n] = op(a)·op(b)
 * (+ bias on every row, or + an addend of c's shape), row-major, op(a) m×k, op(b) k×n; with `batches`,
 * that many products, the i-th reading a + i·strideA and b + i·strideB (a stride of 0 broadcasts) and
 * writing c + i·m·n. One call
 * for a batch: attention's per-head products are hundreds of small matrices, and a call per matrix
 * from JavaScript cost as much as the product.
 */
napi_value sgemm(napi_env env, napi_callback_info info) {
  ARGS(12);
  if (argc < 8) {
    napi_throw_error(env, NULL, "sgemm: 8 arguments expected");
    return NULL;
  }
  bool ta = flag(env, argv[0]), tb = flag(env, argv[1]);
  int m = (int)num(env, argv[2]), n = (int)num(env, argv[3]), k = (int)num(env, argv[4]);
  const int64_t batches = argc > 9 ? (int64_t)num(env, argv[9]) : 1;
  const int64_t sa = argc > 10 ? (int64_t)num(env, argv[10]) : 0, sb = argc > 11 ? (int64_t)num(env, argv[11]) : 0;
  size_t la = 0, lb = 0, lc = 0;
  float *a = f32(env, argv[5], &la), *b = f32(env, argv[6], &lb), *c = f32(env, argv[7], &lc);
  if (!a || !b || !c) return NULL;
  if (batches < 1 || sa < 0 || sb < 0 || la < (size_t)((batches - 1) * sa) + (size_t)m * k || lb < (size_t)((batches - 1) * sb) + (size_t)k * n ||
      lc < (size_t)batches * m * n) {
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
    if (lbias == (size_t)batches * m * n) /* an addend of c's shape (a residual) */
      memcpy(c, bias, sizeof(float) * lbias);
    else if (lbias == (size_t)n)
      for (int64_t i = 0; i < batches * m; i++)
        for (int j = 0; j < n; j++) c[(size_t)i * n + j] = bias[j];
    else {
      napi_throw_range_error(env, NULL, "sgemm: a bias is n values (one row) or one per output");
      return NULL;
    }
    beta = 1.0f;
  }
  if (batches == 1) {
    product(ta, tb, m, n, k, a, b, beta, c);
    return NULL;
  }
  /* Several products: the cores take whole products, each a one-thread sgemm (as the convolutions' chunks). */
  const int threads = omp_get_max_threads(), blasThreads = blas_get_threads();
  if (threads > 1) blas_set_threads(1);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && (double)batches * m * n * k > 1e6)
  for (int64_t i = 0; i < batches; i++)
    product(ta, tb, m, n, k, a + i * sa, b + i * sb, beta, c + i * m * n);
  if (threads > 1) blas_set_threads(blasThreads);
  return NULL;
}

/*
 * adam(ps, gs, ms, vs, lr, beta1, beta2, eps, correction1, correction2): one torch.optim.Adam update in
 * place of every parameter (arrays of Float32Arrays, p[i], g[i], m[i], v[i] of one length each):
 * m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²; p ← p − lr (m / c1) / (√(v / c2) + ε).
 * One call for all of them, cut into blocks the cores share: the U-net's 139 parameters are each too
 * small to split (36,864 values at most), and one at a time they left the second core idle.
 */
#define ADAM_BLOCK 16384
napi_value adam(napi_env env, napi_callback_info info) {
  ARGS(10);
  uint32_t counts[4] = {0, 0, 0, 0};
  for (int k = 0; k < 4; k++) {
    bool list = false;
    if (napi_is_array(env, argv[k], &list) != napi_ok || !list || napi_get_array_length(env, argv[k], &counts[k]) != napi_ok) {
      napi_throw_type_error(env, NULL, "adam: expected four arrays of Float32Arrays");
      return NULL;
    }
  }
  const uint32_t count = counts[0];
  if (counts[1] != count || counts[2] != count || counts[3] != count) {
    napi_throw_range_error(env, NULL, "adam: the arrays differ in length");
    return NULL;
  }
  float **arrays = (float **)malloc(sizeof(float *) * 4 * (count ? count : 1));
  int64_t *lengths = (int64_t *)malloc(sizeof(int64_t) * (count ? count : 1));
  if (!arrays || !lengths) {
    free(arrays);
    free(lengths);
    napi_throw_error(env, NULL, "adam: out of memory");
    return NULL;
  }
  int64_t blocks = 0;
  for (uint32_t i = 0; i < count; i++) {
    for (int k = 0; k < 4; k++) {
      napi_value element;
      size_t len = 0;
      if (napi_get_element(env, argv[k], i, &element) != napi_ok || !(arrays[4 * i + k] = f32(env, element, &len))) {
        free(arrays);
        free(lengths);
        return NULL; /* f32 threw */
      }
      if (k == 0) lengths[i] = (int64_t)len;
      else if ((int64_t)len != lengths[i]) {
        napi_throw_range_error(env, NULL, "adam: a parameter's arrays differ in length");
        free(arrays);
        free(lengths);
        return NULL;
      }
    }
    blocks += (lengths[i] + ADAM_BLOCK - 1) / ADAM_BLOCK;
  }
  /* block b of the whole: parameter first[b], from offset start[b] */
  int32_t *first = (int32_t *)malloc(sizeof(int32_t) * (blocks ? blocks : 1));
  int64_t *start = (int64_t *)malloc(sizeof(int64_t) * (blocks ? blocks : 1));
  if (!first || !start) {
    free(arrays);
    free(lengths);
    free(first);
    free(start);
    napi_throw_error(env, NULL, "adam: out of memory");
    return NULL;
  }
  int64_t b = 0, total = 0;
  for (uint32_t i = 0; i < count; i++) {
    for (int64_t o = 0; o < lengths[i]; o += ADAM_BLOCK, b++) {
      first[b] = (int32_t)i;
      start[b] = o;
    }
    total += lengths[i];
  }
  const float lr = (float)num(env, argv[4]), b1 = (float)num(env, argv[5]), b2 = (float)num(env, argv[6]);
  const float eps = (float)num(env, argv[7]);
  const float inv_c1 = (float)(1.0 / num(env, argv[8])), inv_c2 = (float)(1.0 / num(env, argv[9]));
#pragma omp parallel for schedule(static) if (total > 65536)
  for (int64_t k = 0; k < blocks; k++) {
    const int32_t i = first[k];
    float *p = arrays[4 * i], *g = arrays[4 * i + 1], *m = arrays[4 * i + 2], *v = arrays[4 * i + 3];
    const int64_t end = start[k] + ADAM_BLOCK < lengths[i] ? start[k] + ADAM_BLOCK : lengths[i];
    for (int64_t j = start[k]; j < end; j++) {
      const float gj = g[j];
      const float mj = b1 * m[j] + (1.0f - b1) * gj;
      const float vj = b2 * v[j] + (1.0f - b2) * gj * gj;
      m[j] = mj;
      v[j] = vj;
      p[j] -= lr * (mj * inv_c1) / (sqrtf(vj * inv_c2) + eps);
    }
  }
  free(arrays);
  free(lengths);
  free(first);
  free(start);
  return NULL;
}

/* lerp(shadow, p, d): shadow ← d·shadow + (1 − d)·p in place: one step of a moving average of weights. */
napi_value lerp(napi_env env, napi_callback_info info) {
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
napi_value gelu_layer_norm(napi_env env, napi_callback_info info) {
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
napi_value gelu_layer_norm_grad(napi_env env, napi_callback_info info) {
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
napi_value column_sums(napi_env env, napi_callback_info info) {
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

/* The loop of binary() below (its comment says the shapes), for other kernels too (conv's bias). */
void broadcast_binary(int op, const float *a, const float *b, float *out, int64_t lo, int64_t lb, int64_t outer, bool swap) {
  const int64_t inner = lb / outer, middle = lo / lb, block = middle * inner;
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
}

/*
 * binary(op, a, b, out, swap[, outer]): out = a op b for op 0 add, 1 subtract, 2 multiply; `swap`
 * computes b op a instead, for the broadcast operand on the left. out (and a) are [outer, middle,
 * inner] and b is [outer, inner], repeated over the middle: with outer = 1 (the default), b has out's
 * length, 1 (a scalar) or the length of out's trailing axes (a bias row); with outer > 1, b is a
 * per-image channel shift ([b, 1, 1, c] on [b, h, w, c]) or a row statistic ([r, 1] on [r, n]).
 */
napi_value binary(napi_env env, napi_callback_info info) {
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
  broadcast_binary(op, a, b, out, (int64_t)lo, (int64_t)lb, outer, swap);
  return NULL;
}

/* middleSums(x, outer, middle, inner, out): out[o, i] = Σ_m x[o, m, i] (a per-image channel sum, a row sum). */
napi_value middle_sums(napi_env env, napi_callback_info info) {
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
