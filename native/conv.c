/*
 * 2-D convolutions (NHWC) and both their gradients: direct loops for stride 1, else im2col + sgemm.
 */
#include "kernels.h"

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
 * Direct stride-1 convolutions for the U-net's layers, 3-5x faster than im2col + sgemm there: those
 * products have only 16-128 output channels, too few for sgemm's blocking, and im2col copies every input
 * value k·k times. Output channels go 16 (or 32) at a time in vectors of the machine's width, a few
 * pixels of a row at a time, so each filter row loaded serves several multiply-adds. Each image is first
 * copied into a zero-padded buffer, so the loops need no bounds checks.
 */
enum { CONV_FORWARD = 0, CONV_GRAD_INPUT = 1, CONV_GRAD_FILTER = 2 };

/*
 * Register blocking by vector width. AVX-512 (32 registers of 16 floats): eight pixels (or input
 * channels) by 32 output channels in 16 registers. AVX2 (16 registers of 8): six by 16 in twelve, enough
 * independent sums to cover the multiply-add's latency (eight measured 45.6 GFLOP/s on one Zen 3 core,
 * twelve 59-69). (GCC's 16-float vectors on AVX2, with AVX-512's blocking, spilled to memory on every
 * multiply-add: 40x slower on a Zen 3 machine.)
 */
#ifdef __AVX512F__
#define VW 16
enum { DIRECT_PIXELS = 8, GRAD_CHANNELS = 8, BLOCKS = 2 };
#else
#define VW 8
enum { DIRECT_PIXELS = 6, GRAD_CHANNELS = 6, BLOCKS = 1 };
#endif
typedef float vecf __attribute__((vector_size(VW * 4)));
enum { NV = 16 / VW }; /* vectors per 16 output channels */
static inline vecf loadv(const float *p) {
  vecf v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void storev(float *p, vecf v) { memcpy(p, &v, sizeof v); }

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
 * y[outH, outW, outC] ← one padded image convolved with filter [kH, kW, inC, outC] for the output
 * channels [co, co + 16·blocks), `pixels` pixels of row oy from ox (pixels and blocks are constants
 * where it is called, so the accumulators stay in registers).
 */
static inline __attribute__((always_inline)) void direct_forward_tile(const conv_geom *g, const float *xp, const float *filter, float *y, int64_t oy, int64_t ox, int64_t co, const int pixels, const int blocks) {
  const int64_t PW = padded_width(g), CI = g->inC, CO = g->outC;
  vecf acc[DIRECT_PIXELS][BLOCKS * NV];
  for (int p = 0; p < pixels; p++)
    for (int j = 0; j < blocks * NV; j++) acc[p][j] = (vecf){0};
  for (int64_t ky = 0; ky < g->kH; ky++)
    for (int64_t kx = 0; kx < g->kW; kx++) {
      const float *src = xp + ((oy + ky) * PW + ox + kx) * CI, *w = filter + (ky * g->kW + kx) * CI * CO + co;
      for (int64_t ci = 0; ci < CI; ci++) {
        vecf wv[BLOCKS * NV];
        for (int j = 0; j < blocks * NV; j++) wv[j] = loadv(w + ci * CO + j * VW);
        for (int p = 0; p < pixels; p++) {
          const float v = src[p * CI + ci];
          for (int j = 0; j < blocks * NV; j++) acc[p][j] += wv[j] * v;
        }
      }
    }
  for (int p = 0; p < pixels; p++)
    for (int j = 0; j < blocks * NV; j++) storev(y + (oy * g->outW + ox + p) * CO + co + j * VW, acc[p][j]);
}

/* The last `pixels` (< DIRECT_PIXELS) pixels of a row, each count its own unrolled tile. */
static void direct_forward_rest(const conv_geom *g, const float *xp, const float *filter, float *y, int64_t oy, int64_t ox, int64_t co, int pixels, const int blocks) {
  switch (pixels) {
#define REST(n) \
  case n: direct_forward_tile(g, xp, filter, y, oy, ox, co, n, blocks); break;
    REST(1) REST(2) REST(3) REST(4) REST(5) REST(6) REST(7)
#undef REST
  }
}

/* y ← one padded image convolved with the filter; outC % 16 == 0. */
static void direct_forward_image(const conv_geom *g, const float *xp, const float *filter, float *y) {
  const int64_t CO = g->outC;
  for (int64_t oy = 0; oy < g->outH; oy++)
    for (int64_t co = 0; co < CO;) {
      const int blocks = co + 16 * BLOCKS <= CO ? BLOCKS : 1;
      int64_t ox = 0;
      if (blocks == BLOCKS)
        for (; ox + DIRECT_PIXELS <= g->outW; ox += DIRECT_PIXELS) direct_forward_tile(g, xp, filter, y, oy, ox, co, DIRECT_PIXELS, BLOCKS);
      else
        for (; ox + DIRECT_PIXELS <= g->outW; ox += DIRECT_PIXELS) direct_forward_tile(g, xp, filter, y, oy, ox, co, DIRECT_PIXELS, 1);
      if (ox < g->outW) {
        if (blocks == BLOCKS) direct_forward_rest(g, xp, filter, y, oy, ox, co, (int)(g->outW - ox), BLOCKS);
        else direct_forward_rest(g, xp, filter, y, oy, ox, co, (int)(g->outW - ox), 1);
      }
      co += 16 * blocks;
    }
}

/*
 * dfilter[kH, kW, inC, outC] += one padded image's patches × its dy; inC % 8 == 0, outC % 16 == 0.
 * GRAD_CHANNELS input channels by 16·BLOCKS output channels stay in registers over the image's pixels.
 */
static inline __attribute__((always_inline)) void direct_filter_grad_tile(const conv_geom *g, const float *xp, const float *dy, float *dfilter, int64_t ky, int64_t kx, int64_t ci, int64_t co, const int channels, const int blocks) {
  const int64_t PW = padded_width(g), CI = g->inC, CO = g->outC;
  vecf acc[GRAD_CHANNELS][BLOCKS * NV];
  for (int c = 0; c < channels; c++)
    for (int j = 0; j < blocks * NV; j++) acc[c][j] = (vecf){0};
  for (int64_t oy = 0; oy < g->outH; oy++) {
    const float *src = xp + ((oy + ky) * PW + kx) * CI + ci, *d = dy + oy * g->outW * CO + co;
    for (int64_t ox = 0; ox < g->outW; ox++) {
      vecf dv[BLOCKS * NV];
      for (int j = 0; j < blocks * NV; j++) dv[j] = loadv(d + ox * CO + j * VW);
      for (int c = 0; c < channels; c++) {
        const float v = src[ox * CI + c];
        for (int j = 0; j < blocks * NV; j++) acc[c][j] += dv[j] * v;
      }
    }
  }
  float *out = dfilter + ((ky * g->kW + kx) * CI + ci) * CO + co;
  for (int c = 0; c < channels; c++)
    for (int j = 0; j < blocks * NV; j++) storev(out + c * CO + j * VW, loadv(out + c * CO + j * VW) + acc[c][j]);
}

/* A tile of `channels` (≤ GRAD_CHANNELS) input channels, each count its own unrolled tile. */
static void direct_filter_grad_some(const conv_geom *g, const float *xp, const float *dy, float *dfilter, int64_t ky, int64_t kx, int64_t ci, int64_t co, int channels, const int blocks) {
  switch (channels) {
#define SOME(n) \
  case n: direct_filter_grad_tile(g, xp, dy, dfilter, ky, kx, ci, co, n, blocks); break;
    SOME(1) SOME(2) SOME(3) SOME(4) SOME(5) SOME(6) SOME(7) SOME(8)
#undef SOME
  }
}

static void direct_filter_grad_image(const conv_geom *g, const float *xp, const float *dy, float *dfilter) {
  const int64_t CI = g->inC, CO = g->outC;
  for (int64_t ky = 0; ky < g->kH; ky++)
    for (int64_t kx = 0; kx < g->kW; kx++)
      for (int64_t ci = 0; ci < CI; ci += GRAD_CHANNELS) {
        const int channels = ci + GRAD_CHANNELS <= CI ? GRAD_CHANNELS : (int)(CI - ci);
        for (int64_t co = 0; co < CO;) {
          if (co + 16 * BLOCKS <= CO) {
            if (channels == GRAD_CHANNELS) direct_filter_grad_tile(g, xp, dy, dfilter, ky, kx, ci, co, GRAD_CHANNELS, BLOCKS);
            else direct_filter_grad_some(g, xp, dy, dfilter, ky, kx, ci, co, channels, BLOCKS);
            co += 16 * BLOCKS;
          } else {
            direct_filter_grad_some(g, xp, dy, dfilter, ky, kx, ci, co, channels, 1);
            co += 16;
          }
        }
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
napi_value conv(napi_env env, napi_callback_info info) {
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
