/*
 * The convolutions the direct loops do not take (strides, dilations, output channels neither a multiple
 * of 16 nor fewer than 16, a filter gradient's channels not multiples of 8 and 16): each image's patches
 * copied into a matrix [outH·outW, kH·kW·inC] (im2col), then one sgemm with the filter. Images go in
 * chunks so the patch matrix stays a few MiB.
 */
#include "conv.h"

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
 * conv_im2col(mode, g, a, b, out, bias), as conv() (conv.c) takes them: any geometry; the bias, where
 * given, is added in one pass after the products. False when out of memory.
 */
bool conv_im2col(int mode, const conv_geom *g, const float *a, const float *b, float *out, const conv_bias *bias) {
  const int64_t K = patch_size(g), P = g->outH * g->outW;
  const size_t xLen = g->batch * g->inH * g->inW * g->inC, fLen = K * g->outC;
  const int64_t chunk = chunk_images(g), chunks = (g->batch + chunk - 1) / chunk;
  /*
   * The chunks go to the OpenMP threads, each with its own patch matrix and a one-thread sgemm: these
   * products are small (16-64 output channels), and splitting each of them over the cores made a U-net
   * step slower than one core alone. The filter gradient sums over chunks: one partial sum per thread.
   */
  const int threads = chunks > 1 ? omp_get_max_threads() : 1;
  const int blasThreads = blas_get_threads();
  float *cols = (float *)malloc(sizeof(float) * threads * chunk * P * K);
  float *partial = mode == CONV_GRAD_FILTER && threads > 1 ? (float *)calloc((size_t)(threads - 1) * fLen, sizeof(float)) : NULL;
  if (!cols || (mode == CONV_GRAD_FILTER && threads > 1 && !partial)) {
    free(cols);
    free(partial);
    return false;
  }
  if (mode == CONV_GRAD_INPUT)
    for (size_t i = 0; i < xLen; i++) out[i] = 0.0f;
  if (mode == CONV_GRAD_FILTER)
    for (size_t i = 0; i < fLen; i++) out[i] = 0.0f;
  if (threads > 1) blas_set_threads(1);
#pragma omp parallel num_threads(threads)
  {
    const int id = omp_get_thread_num();
    float *myCols = cols + (int64_t)id * chunk * P * K;
    float *myFilter = id == 0 ? out : partial + (int64_t)(id - 1) * fLen;
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
      const int64_t first = c * chunk, n = first + chunk > g->batch ? g->batch - first : chunk, rows = n * P;
      if (mode == CONV_FORWARD) {
        im2col(g, a, first, n, myCols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, g->outC, K, 1.0f, myCols, K, b, g->outC, 0.0f, out + first * P * g->outC, g->outC);
      } else if (mode == CONV_GRAD_FILTER) {
        im2col(g, a, first, n, myCols);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, g->outC, rows, 1.0f, myCols, K, b + first * P * g->outC, g->outC, 1.0f, myFilter, g->outC);
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, K, g->outC, 1.0f, a + first * P * g->outC, g->outC, b, g->outC, 0.0f, myCols, K);
        col2im(g, myCols, first, n, out);
      }
    }
  }
  if (threads > 1) blas_set_threads(blasThreads);
  for (int t = 0; partial && t < threads - 1; t++)
    for (size_t i = 0; i < fLen; i++) out[i] += partial[(size_t)t * fLen + i];
  if (bias) add_bias(out, bias, g->batch, P, g->outC);
  free(cols);
  free(partial);
  return true;
}
