/*
 * Strided run copies: the slices, splits, concatenations and transposes of the U-net.
 */
#include "kernels.h"

/* n floats from src to dst: short runs inline (a memcpy call costs about as much as copying 64 bytes). */
static inline void copy_floats(float *dst, const float *src, int64_t n) {
  if (n > 64) {
    memcpy(dst, src, n * sizeof(float));
    return;
  }
  for (; n >= 8; n -= 8, dst += 8, src += 8) memcpy(dst, src, 8 * sizeof(float));
  if (n >= 4) memcpy(dst, src, 4 * sizeof(float)), n -= 4, dst += 4, src += 4;
  if (n >= 2) memcpy(dst, src, 2 * sizeof(float)), n -= 2, dst += 2, src += 2;
  if (n >= 1) *dst = *src;
}

/*
 * copyRuns(src, srcFirst, srcStrides, out, outFirst, outStrides, outer, run): for every index i of the
 * `outer` shape (Int32Arrays, row-major), copies `run` contiguous values from srcFirst + Σ i·srcStrides
 * to outFirst + Σ i·outStrides: slices, concatenations and transposes that keep the last axis.
 */
napi_value copy_runs(napi_env env, napi_callback_info info) {
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
  if (count == 0) return NULL;
  /* Each thread takes a contiguous block of runs and steps through the outer indices like an odometer:
     a division per axis per run (the index's digits) cost more than the copy for the U-net's concats,
     whose runs are a pixel's 16-64 channels. */
#pragma omp parallel if (count * run > 65536)
  {
    const int64_t threads = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t begin = count * id / threads, end = count * (id + 1) / threads;
    int64_t idx[rank + 1], from = srcFirst, to = outFirst, rest = begin;
    for (int64_t a = (int64_t)rank - 1; a >= 0; a--) {
      idx[a] = rest % outer[a];
      rest /= outer[a];
      from += idx[a] * ss[a];
      to += idx[a] * os[a];
    }
    for (int64_t r = begin; r < end; r++) {
      copy_floats(out + to, src + from, run);
      for (int64_t a = (int64_t)rank - 1; a >= 0; a--) { /* the next index */
        from += ss[a], to += os[a];
        if (++idx[a] < outer[a]) break;
        from -= outer[a] * ss[a], to -= outer[a] * os[a];
        idx[a] = 0;
      }
    }
  }
  return NULL;
}

/*
 * upsample2x(x, geom [B, H, W, C], out): nearest-neighbour 2x upsampling of NHWC images, out[b, y, x]
 * = x[b, ⌊y/2⌋, ⌊x/2⌋] (tfjs's rule for exact doubling without aligned corners); upsample2xGrad(dy,
 * geom, out) sums each 2x2 block of dy into the pixel it came from. (tfjs's cpu kernels compute a
 * source coordinate per value in JavaScript: an eighth of a small U-net's step.)
 */
static bool upsample_args(napi_env env, napi_value *argv, const float **src, float **out, int64_t g[4], bool grad) {
  size_t srcLen = 0, outLen = 0, n = 0;
  *src = f32(env, argv[0], &srcLen);
  const int32_t *geom = i32(env, argv[1], &n);
  *out = f32(env, argv[2], &outLen);
  if (!*src || !geom || !*out) return false;
  if (n != 4) {
    napi_throw_range_error(env, NULL, "upsample2x: geometry is [batch, height, width, channels]");
    return false;
  }
  for (int a = 0; a < 4; a++) g[a] = geom[a];
  const size_t small = (size_t)(g[0] * g[1] * g[2] * g[3]);
  if ((grad ? outLen : srcLen) != small || (grad ? srcLen : outLen) != 4 * small) {
    napi_throw_range_error(env, NULL, "upsample2x: array sizes do not match the geometry");
    return false;
  }
  return true;
}

/* One row r of the small images: its pixels doubled into output rows 2y and 2y + 1, or (grad) each 2x2 block of dy summed. */
static napi_value upsample(napi_env env, napi_callback_info info, bool grad) {
  ARGS(3);
  const float *src;
  float *out;
  int64_t g[4];
  if (!upsample_args(env, argv, &src, &out, g, grad)) return NULL;
  const int64_t rows = g[0] * g[1], W = g[2], C = g[3];
#pragma omp parallel for if (rows * W * C > 65536)
  for (int64_t r = 0; r < rows; r++) {
    if (!grad) {
      const float *in = src + r * W * C;
      float *o = out + r * 4 * W * C;
      for (int64_t i = 0; i < W; i++) {
        memcpy(o + 2 * i * C, in + i * C, C * sizeof(float));
        memcpy(o + (2 * i + 1) * C, in + i * C, C * sizeof(float));
      }
      memcpy(o + 2 * W * C, o, 2 * W * C * sizeof(float));
      continue;
    }
    const float *top = src + r * 4 * W * C, *bottom = top + 2 * W * C;
    float *o = out + r * W * C;
    for (int64_t i = 0; i < W; i++)
      for (int64_t c = 0; c < C; c++)
        o[i * C + c] = (top[2 * i * C + c] + top[(2 * i + 1) * C + c]) + (bottom[2 * i * C + c] + bottom[(2 * i + 1) * C + c]);
  }
  return NULL;
}

napi_value upsample2x(napi_env env, napi_callback_info info) { return upsample(env, info, false); }

napi_value upsample2x_grad(napi_env env, napi_callback_info info) { return upsample(env, info, true); }
