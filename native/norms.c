/*
 * GroupNorm and its gradient, row softmax, SiLU and its gradient.
 */
#include "kernels.h"

enum { RUN = 64 }; /* rows summed in float before the sums go into double */

/*
 * Per-channel Σa and Σa·b over rows [p0, p1) of two images' [P, C] values into s[C], q[C] (float): Σx
 * and Σx² for the norm (b = a), Σg and Σg·x̂ for its gradient. Where C is a multiple of 8, eight
 * channels at a time over four rows at once, in registers: summing into s[c] in memory made each row
 * wait for the last one's store (a 4.5-cycle chain per vector).
 */
static void channel_sums(const float *a, const float *b, int64_t p0, int64_t p1, int64_t C, float *s, float *q) {
  if (C % AW != 0) {
    for (int64_t c = 0; c < C; c++) s[c] = 0, q[c] = 0;
    for (int64_t p = p0; p < p1; p++)
#pragma omp simd
      for (int64_t c = 0; c < C; c++) {
        s[c] += a[p * C + c];
        q[c] += a[p * C + c] * b[p * C + c];
      }
    return;
  }
  for (int64_t c = 0; c < C; c += AW) {
    av s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, q0 = {0}, q1 = {0}, q2 = {0}, q3 = {0};
    int64_t p = p0;
    for (; p + 4 <= p1; p += 4) {
      const float *ap = a + p * C + c, *bp = b + p * C + c;
      const av a0 = lda(ap), a1 = lda(ap + C), a2 = lda(ap + 2 * C), a3 = lda(ap + 3 * C);
      s0 += a0, s1 += a1, s2 += a2, s3 += a3;
      q0 += a0 * lda(bp), q1 += a1 * lda(bp + C), q2 += a2 * lda(bp + 2 * C), q3 += a3 * lda(bp + 3 * C);
    }
    for (; p < p1; p++) {
      const av a0 = lda(a + p * C + c);
      s0 += a0, q0 += a0 * lda(b + p * C + c);
    }
    const av st = (s0 + s1) + (s2 + s3), qt = (q0 + q1) + (q2 + q3);
    sta(s + c, st);
    sta(q + c, qt);
  }
}

/*
 * One image's per-channel statistics, grouped: mean[c] and r[c] = 1/σ of channel c's group, and each
 * group's 1/σ in rstd[G]. Σx and Σx² go in float over runs of 64 pixels, then into double: the variance
 * as E[x²] − E[x]² loses to cancellation only digits float32 does not have.
 */
static void image_stats(const float *xb, int64_t P, int64_t C, int64_t G, float *mean, float *r, float *rstd) {
  double *sum = (double *)calloc(2 * C, sizeof(double)), *squares = sum + C;
  float *s = (float *)malloc(2 * C * sizeof(float)), *q = s + C;
  for (int64_t p0 = 0; p0 < P; p0 += RUN) {
    channel_sums(xb, xb, p0, p0 + RUN < P ? p0 + RUN : P, C, s, q);
    for (int64_t c = 0; c < C; c++) sum[c] += s[c], squares[c] += q[c];
  }
  const int64_t cg = C / G;
  for (int64_t g = 0; g < G; g++) {
    double t = 0, t2 = 0;
    for (int64_t c = g * cg; c < (g + 1) * cg; c++) t += sum[c], t2 += squares[c];
    const double n = (double)(P * cg), mu = t / n, var = t2 / n - mu * mu;
    const float rg = (float)(1.0 / sqrt((var > 0 ? var : 0) + 1e-5));
    rstd[g] = rg;
    for (int64_t c = g * cg; c < (g + 1) * cg; c++) mean[c] = (float)mu, r[c] = rg;
  }
  free(sum);
  free(s);
}

/*
 * y = (x − mean)·scale[c] + β[c] (x̂·γ + β, scale = r·γ), SiLU'd where `act`, and x̂ = (x − mean)·r kept where `keep`: one
 * pass, a row of channels at a time. keep and act are constants where it is called, so each of the four
 * loops vectorizes on its own.
 */
static inline __attribute__((always_inline)) void normalize_image(const float *xb, int64_t P, int64_t C, const float *mean, const float *r, const float *scale, const float *beta, float *yb, float *hb, const bool keep, const bool act) {
  for (int64_t p = 0; p < P; p++) {
    const float *xr = xb + p * C;
    float *yr = yb + p * C;
#pragma omp simd
    for (int64_t c = 0; c < C; c++) {
      const float z = (xr[c] - mean[c]) * scale[c] + beta[c];
      if (keep) hb[p * C + c] = (xr[c] - mean[c]) * r[c];
      yr[c] = act ? z / (1.0f + exp_f(-z)) : z;
    }
  }
}

/*
 * groupNorm(x, gamma, beta, batch, pixels, channels, groups, y, xhat, rstd[, silu]): for each image and
 * group of channels/groups channels, normalize over its pixels × channels; y = x̂·γ[c] + β[c], or with
 * `silu` SiLU of that (the U-net's norm-then-activation in one pass, without the normalized tensor in
 * memory). x̂ and each (image, group)'s 1/σ are kept for the gradient; an empty xhat is not written
 * (sampling: no gradient, one output stream fewer).
 */
napi_value group_norm(napi_env env, napi_callback_info info) {
  ARGS(11);
  const bool act = argc > 10 && flag(env, argv[10]);
  const float *x = f32(env, argv[0], NULL), *gamma = f32(env, argv[1], NULL), *beta = f32(env, argv[2], NULL);
  const int64_t B = (int64_t)num(env, argv[3]), P = (int64_t)num(env, argv[4]), C = (int64_t)num(env, argv[5]), G = (int64_t)num(env, argv[6]);
  size_t keptLen = 0;
  float *y = f32(env, argv[7], NULL), *xhat = f32(env, argv[8], &keptLen), *rstd = f32(env, argv[9], NULL);
  bool thrown = false;
  napi_is_exception_pending(env, &thrown);
  /* an empty Float32Array may have no data pointer: xhat is NULL then without an error */
  if (thrown || !x || !gamma || !beta || !y || !rstd) return NULL;
  const bool keep = keptLen > 0;
  if (keep && keptLen != (size_t)(B * P * C)) {
    napi_throw_range_error(env, NULL, "groupNorm: xhat is empty or the size of x");
    return NULL;
  }
#pragma omp parallel for if (B * P * C > 65536)
  for (int64_t b = 0; b < B; b++) {
    float *mean = (float *)malloc(3 * C * sizeof(float)), *r = mean + C, *scale = r + C;
    image_stats(x + b * P * C, P, C, G, mean, r, rstd + b * G);
    for (int64_t c = 0; c < C; c++) scale[c] = r[c] * gamma[c];
    const float *xb = x + b * P * C;
    float *yb = y + b * P * C, *hb = keep ? xhat + b * P * C : NULL;
    if (keep && act)
      normalize_image(xb, P, C, mean, r, scale, beta, yb, hb, true, true);
    else if (keep)
      normalize_image(xb, P, C, mean, r, scale, beta, yb, hb, true, false);
    else if (act)
      normalize_image(xb, P, C, mean, r, scale, beta, yb, hb, false, true);
    else
      normalize_image(xb, P, C, mean, r, scale, beta, yb, hb, false, false);
    free(mean);
  }
  return NULL;
}

/*
 * Gradients of groupNorm: dx, and dγ, dβ summed over images and pixels; with `silu` (then beta given)
 * of the fused norm and SiLU, the SiLU's gradient taken first at z = x̂·γ + β, recomputed (it is kept in
 * dx between the two passes).
 */
napi_value group_norm_grad(napi_env env, napi_callback_info info) {
  ARGS(13);
  const bool act = argc > 12 && flag(env, argv[12]);
  const float *beta = act ? f32(env, argv[11], NULL) : NULL;
  if (act && !beta) return NULL;
  const float *dy = f32(env, argv[0], NULL), *xhat = f32(env, argv[1], NULL), *gamma = f32(env, argv[2], NULL), *rstd = f32(env, argv[3], NULL);
  const int64_t B = (int64_t)num(env, argv[4]), P = (int64_t)num(env, argv[5]), C = (int64_t)num(env, argv[6]), G = (int64_t)num(env, argv[7]);
  float *dx = f32(env, argv[8], NULL), *dgamma = f32(env, argv[9], NULL), *dbeta = f32(env, argv[10], NULL);
  if (!dy || !xhat || !gamma || !rstd || !dx || !dgamma || !dbeta) return NULL;
  const int64_t cg = C / G;
  const double n = (double)(P * cg);
  /* Per image: Σ dx̂ and Σ dx̂·x̂ over each group (dx̂ = dy·γ: γ[c] times the channel's Σg and Σg·x̂),
     and the image's share of dγ = Σg·x̂ and dβ = Σg, summed over images after. */
  double *partial = (double *)calloc(2 * B * C, sizeof(double));
#pragma omp parallel for if (B * P * C > 65536)
  for (int64_t b = 0; b < B; b++) {
    double *dg = partial + 2 * b * C, *db = dg + C;
    float *meanD = (float *)malloc(5 * C * sizeof(float)), *meanDX = meanD + C, *r = meanD + 2 * C, *s = meanD + 3 * C, *q = meanD + 4 * C;
    const int64_t img = b * P * C;
    /* g: the gradient at the norm's output (dy, or through the SiLU; then kept in dx for the second pass) */
    const float *g = act ? dx : dy;
    if (act) /* a pass of its own, as in the forward */
      for (int64_t p = 0; p < P; p++) {
        const int64_t off = img + p * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) {
          const float z = xhat[off + c] * gamma[c] + beta[c], sg = 1.0f / (1.0f + exp_f(-z));
          dx[off + c] = dy[off + c] * sg * (1.0f + z * (1.0f - sg));
        }
      }
    for (int64_t p0 = 0; p0 < P; p0 += RUN) {
      channel_sums(g + img, xhat + img, p0, p0 + RUN < P ? p0 + RUN : P, C, s, q);
      for (int64_t c = 0; c < C; c++) db[c] += s[c], dg[c] += q[c];
    }
    for (int64_t k = 0; k < G; k++) {
      double sd = 0, sdx = 0;
      for (int64_t c = k * cg; c < (k + 1) * cg; c++) sd += gamma[c] * db[c], sdx += gamma[c] * dg[c];
      for (int64_t c = k * cg; c < (k + 1) * cg; c++) meanD[c] = (float)(sd / n), meanDX[c] = (float)(sdx / n), r[c] = rstd[b * G + k];
    }
    for (int64_t p = 0; p < P; p++) {
      const int64_t off = img + p * C;
#pragma omp simd
      for (int64_t c = 0; c < C; c++) dx[off + c] = r[c] * (g[off + c] * gamma[c] - meanD[c] - xhat[off + c] * meanDX[c]);
    }
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
napi_value softmax_rows(napi_env env, napi_callback_info info) {
  ARGS(4);
  size_t len = 0;
  const float *x = f32(env, argv[0], &len);
  const int64_t n = (int64_t)num(env, argv[1]);
  float *y = f32(env, argv[2], NULL);
  const float scale = argc > 3 ? (float)num(env, argv[3]) : 1.0f;
  if (!x || !y) return NULL;
  const int64_t rows = n > 0 ? (int64_t)len / n : 0;
#pragma omp parallel for if ((int64_t)len > 65536)
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * n;
    float *yr = y + r * n;
    float max = xr[0], sum = 0;
    for (int64_t i = 1; i < n; i++) max = xr[i] > max ? xr[i] : max;
    /* softmax(scale·x) with scale > 0: the row's largest scaled value is scale·max. */
    /* exp_f vectorizes where libm's expf did not (7x slower for attention's 256-long rows) */
    for (int64_t i = 0; i < n; i++) yr[i] = exp_f(scale * (xr[i] - max));
    for (int64_t i = 0; i < n; i++) sum += yr[i];
    const float inv = 1.0f / sum;
    for (int64_t i = 0; i < n; i++) yr[i] *= inv;
  }
  return NULL;
}

/*
 * softmaxRowsGrad(dy, y, n, scale, dx): the gradient of y = softmax(scale·x) over rows of n, in one pass
 * per row: dx = scale·y·(dy − Σ dy·y). (tfjs composes it from four whole-tensor ops.)
 */
napi_value softmax_rows_grad(napi_env env, napi_callback_info info) {
  ARGS(5);
  size_t len = 0, ly = 0, lx = 0;
  const float *dy = f32(env, argv[0], &len), *y = f32(env, argv[1], &ly);
  const int64_t n = (int64_t)num(env, argv[2]);
  const float scale = (float)num(env, argv[3]);
  float *dx = f32(env, argv[4], &lx);
  if (!dy || !y || !dx) return NULL;
  if (ly != len || lx != len || n <= 0 || len % (size_t)n != 0) {
    napi_throw_range_error(env, NULL, "softmaxRowsGrad: lengths do not match");
    return NULL;
  }
  const int64_t rows = (int64_t)len / n;
#pragma omp parallel for if ((int64_t)len > 65536)
  for (int64_t r = 0; r < rows; r++) {
    const float *dr = dy + r * n, *yr = y + r * n;
    float *xr = dx + r * n;
    float dot = 0;
    for (int64_t i = 0; i < n; i++) dot += dr[i] * yr[i];
    for (int64_t i = 0; i < n; i++) xr[i] = scale * yr[i] * (dr[i] - dot);
  }
  return NULL;
}


/* silu(x, y): y = x·σ(x); siluGrad(dy, x, dx): dx = dy·σ(x)·(1 + x·(1 − σ(x))). */
napi_value silu(napi_env env, napi_callback_info info) {
  ARGS(2);
  size_t n = 0;
  const float *x = f32(env, argv[0], &n);
  float *y = f32(env, argv[1], NULL);
  if (!x || !y) return NULL;
#pragma omp parallel for simd if (n > 65536)
  for (size_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + exp_f(-x[i]));
  return NULL;
}

napi_value silu_grad(napi_env env, napi_callback_info info) {
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
