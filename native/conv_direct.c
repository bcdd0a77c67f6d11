/*
 * Direct stride-1 convolutions for the U-net's layers, 3-5x faster than im2col + sgemm there: those
 * products have only 16-128 output channels, too few for sgemm's blocking, and im2col copies every input
 * value k·k times. Output channels go 16 (or 32) at a time in vectors of the machine's width, a few
 * pixels of a row at a time, so each filter row loaded serves several multiply-adds. Each image is first
 * copied into a zero-padded buffer (conv.c), so the loops need no bounds checks.
 */
#include "conv.h"

/*
 * Register blocking by vector width. AVX-512 (32 registers of 16 floats): eight pixels (or input
 * channels) by 32 output channels in 16 registers. AVX2 (16 registers of 8): six by 16 in twelve, enough
 * independent sums to cover the multiply-add's latency (eight measured 45.6 GFLOP/s on one Zen 3 core,
 * twelve 59-69). (GCC's 16-float vectors on AVX2, with AVX-512's blocking, spilled to memory on every
 * multiply-add: 40x slower on a Zen 3 machine.)
 */
#ifdef __AVX512F__
enum { DIRECT_PIXELS = 8, GRAD_CHANNELS = 8, BLOCKS = 2 };
#else
enum { DIRECT_PIXELS = 6, GRAD_CHANNELS = 6, BLOCKS = 1 };
#endif
enum { NV = 16 / VW }; /* vectors (kernels.h's vecf) per 16 output channels */

/*
 * y[outH, outW, outC] ← one padded image convolved with filter [kH, kW, inC, outC] for the output
 * channels [co, co + 16·blocks), `pixels` pixels of row oy from ox (pixels and blocks are constants
 * where it is called, so the accumulators stay in registers); the sums start from the image's bias `b`
 * where given (pixel p's at b + p·bp: bp 0 for one per channel, outC for an addend of y's shape).
 */
static inline __attribute__((always_inline)) void direct_forward_tile(const conv_geom *g, const float *xp, const float *filter, float *y, const float *b, int64_t bp, int64_t oy, int64_t ox, int64_t co, const int pixels, const int blocks) {
  const int64_t PW = padded_width(g), CI = g->inC, CO = g->outC;
  vecf acc[DIRECT_PIXELS][BLOCKS * NV];
  for (int p = 0; p < pixels; p++)
    for (int j = 0; j < blocks * NV; j++) acc[p][j] = b ? loadv(b + (oy * g->outW + ox + p) * bp + co + j * VW) : (vecf){0};
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
static void direct_forward_rest(const conv_geom *g, const float *xp, const float *filter, float *y, const float *b, int64_t bp, int64_t oy, int64_t ox, int64_t co, int pixels, const int blocks) {
  switch (pixels) {
#define REST(n) \
  case n: direct_forward_tile(g, xp, filter, y, b, bp, oy, ox, co, n, blocks); break;
    REST(1) REST(2) REST(3) REST(4) REST(5) REST(6) REST(7)
#undef REST
  }
}

/* y ← one padded image convolved with the filter; outC % 16 == 0. */
void direct_forward_image(const conv_geom *g, const float *xp, const float *filter, float *y, const float *b, int64_t bp) {
  const int64_t CO = g->outC;
  for (int64_t oy = 0; oy < g->outH; oy++)
    for (int64_t co = 0; co < CO;) {
      const int blocks = co + 16 * BLOCKS <= CO ? BLOCKS : 1;
      int64_t ox = 0;
      if (blocks == BLOCKS)
        for (; ox + DIRECT_PIXELS <= g->outW; ox += DIRECT_PIXELS) direct_forward_tile(g, xp, filter, y, b, bp, oy, ox, co, DIRECT_PIXELS, BLOCKS);
      else
        for (; ox + DIRECT_PIXELS <= g->outW; ox += DIRECT_PIXELS) direct_forward_tile(g, xp, filter, y, b, bp, oy, ox, co, DIRECT_PIXELS, 1);
      if (ox < g->outW) {
        if (blocks == BLOCKS) direct_forward_rest(g, xp, filter, y, b, bp, oy, ox, co, (int)(g->outW - ox), BLOCKS);
        else direct_forward_rest(g, xp, filter, y, b, bp, oy, ox, co, (int)(g->outW - ox), 1);
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

void direct_filter_grad_image(const conv_geom *g, const float *xp, const float *dy, float *dfilter) {
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
