/*
 * Strided run copies: the slices, splits, concatenations and transposes of the U-net.
 */
#include "kernels.h"

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
