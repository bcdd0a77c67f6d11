/*
 * 2-D convolutions (NHWC) and both their gradients: Winograd F(4x4, 3x3) tiles for 3x3 stride-1 layers,
 * direct loops for other stride-1 layers, else im2col + sgemm.
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
enum { DIRECT_PIXELS = 8, GRAD_CHANNELS = 8, BLOCKS = 2 };
#else
enum { DIRECT_PIXELS = 6, GRAD_CHANNELS = 6, BLOCKS = 1 };
#endif
enum { NV = 16 / VW }; /* vectors (kernels.h's vecf) per 16 output channels */

static bool direct_eligible(const conv_geom *g) { return g->sH == 1 && g->sW == 1 && g->dH == 1 && g->dW == 1; }
static int64_t padded_height(const conv_geom *g) { return g->outH + g->kH - 1; }
static int64_t padded_width(const conv_geom *g) { return g->outW + g->kW - 1; }

/*
 * What a forward pass adds to y[img, pixel, c]: v[img·image + pixel·pixel + c]. Strides (0, 0): a bias
 * per channel; (outC, 0): a shift per image and channel (the U-net's time embedding); (P·outC, outC): an
 * addend of y's shape (a residual). Added as the outputs are stored (the direct loops start their sums
 * from it), so y is not read and written twice.
 */
typedef struct {
  const float *v;
  int64_t image, pixel;
} conv_bias;

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
static void direct_forward_image(const conv_geom *g, const float *xp, const float *filter, float *y, const float *b, int64_t bp) {
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
 * Few output channels (the U-net's last layer: 1 or 3, or 12 on 2x2 patches): each output value is the
 * dot product of the filter with its kH runs of kW·inC contiguous padded values; NARROW_PIXELS pixels
 * of a row by NARROW_OUTPUTS channels at a time, so each vector loaded serves several multiply-adds.
 * `ft` is the filter per output channel, [outC][kH, kW, inC]. (im2col copied every input value kH·kW times for a product one column wide.)
 */
enum { NARROW_PIXELS = 4, NARROW_OUTPUTS = 3 };
static bool narrow_eligible(const conv_geom *g) { return g->outC < 16 && (g->kW * g->inC) % VW == 0; }

/* `outputs` (≤ NARROW_OUTPUTS) output channels from co of `pixels` pixels from ox: their sums in 12 registers. */
static inline __attribute__((always_inline)) void narrow_tile(const conv_geom *g, const float *xp, const float *ft, float *y, int64_t oy, int64_t ox, int64_t co, const int pixels, const int outputs) {
  const int64_t PW = padded_width(g), CI = g->inC, RUN = g->kW * CI, F = g->kH * RUN;
  vecf acc[NARROW_PIXELS][NARROW_OUTPUTS];
  for (int p = 0; p < pixels; p++)
    for (int o = 0; o < outputs; o++) acc[p][o] = (vecf){0};
  for (int64_t ky = 0; ky < g->kH; ky++) {
    const float *src = xp + ((oy + ky) * PW + ox) * CI, *wk = ft + co * F + ky * RUN;
    for (int64_t j = 0; j < RUN; j += VW) {
      vecf wv[NARROW_OUTPUTS];
      for (int o = 0; o < outputs; o++) wv[o] = loadv(wk + o * F + j);
      for (int p = 0; p < pixels; p++) {
        const vecf v = loadv(src + p * CI + j);
        for (int o = 0; o < outputs; o++) acc[p][o] += v * wv[o];
      }
    }
  }
  for (int p = 0; p < pixels; p++)
    for (int o = 0; o < outputs; o++) {
      float sum = 0;
      for (int i = 0; i < VW; i++) sum += acc[p][o][i];
      y[(oy * g->outW + ox + p) * g->outC + co + o] = sum;
    }
}

static void narrow_row(const conv_geom *g, const float *xp, const float *ft, float *y, int64_t oy, int64_t co, const int outputs) {
  int64_t ox = 0;
  for (; ox + NARROW_PIXELS <= g->outW; ox += NARROW_PIXELS) narrow_tile(g, xp, ft, y, oy, ox, co, NARROW_PIXELS, outputs);
  for (; ox < g->outW; ox++) narrow_tile(g, xp, ft, y, oy, ox, co, 1, outputs);
}

static void narrow_forward_image(const conv_geom *g, const float *xp, const float *ft, float *y) {
  for (int64_t oy = 0; oy < g->outH; oy++)
    for (int64_t co = 0; co < g->outC; co += NARROW_OUTPUTS) {
      const int64_t left = g->outC - co; /* each count a constant, so the sums stay in registers */
      if (left >= NARROW_OUTPUTS) narrow_row(g, xp, ft, y, oy, co, NARROW_OUTPUTS);
      else if (left == 2) narrow_row(g, xp, ft, y, oy, co, 2);
      else narrow_row(g, xp, ft, y, oy, co, 1);
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
 * Winograd's minimal filtering (Lavin & Gray 2015) for the 3x3 stride-1 layers, in tiles of m x m
 * outputs, F(m x m, 3x3) with m = 4 (or 2): each tile comes from its a x a input patch d (a = m + 2) as
 * Aᵀ [U ⊙ V] A with V = Bᵀ d B and the filter's U = G g Gᵀ, where the sum over input channels of U ⊙ V
 * is a² independent products [tiles, inC] x [inC, outC], one per point ξ of the transform: a²/m²
 * multiply-adds per output and channel pair where the direct loops do 9 (2.25 for m = 4, 4 for m = 2).
 * Those products run on the direct kernels above as 1x1 convolutions over a row of tiles. The filter
 * gradient is the same in reverse: dU_ξ = Σ_tiles V_ξᵀ (A dY Aᵀ)_ξ, then dg = Gᵀ dU G. Tiles are
 * numbered across the whole batch (image, tile row, tile) and go in chunks, so small images share a
 * chunk. DIFFUSE_WINOGRAD=0 turns the tiles off, =2 picks m = 2 (tests compare all three paths).
 */
static int winograd_tile(const conv_geom *g) {
  const char *env = getenv("DIFFUSE_WINOGRAD");
  /* below 8 input channels the transforms cost more than the products save (3x slower at 1 and 3) */
  if (g->kH != 3 || g->kW != 3 || g->inC < 8 || (env && env[0] == '0')) return 0;
  return env && env[0] == '2' ? 2 : 4;
}
static int64_t tiles_down(const conv_geom *g, int m) { return (g->outH + m - 1) / m; }
static int64_t tiles_across(const conv_geom *g, int m) { return (g->outW + m - 1) / m; }

/* The 1x1 "convolution" of n tiles, inC to outC channels, that each transform point's product is. */
static conv_geom tile_product(const conv_geom *g, int64_t n) {
  return (conv_geom){1, 1, n, g->inC, 1, n, g->outC, 1, 1, 1, 1, 0, 0, 1, 1};
}

/*
 * Tiles per chunk: the chunk's V and M (a²·n·(inC + outC) floats) about 128 KiB, so they stay in L2
 * between the transforms and the products (4x larger chunks ran 1.5-2x slower); at least 30 tiles, as
 * products of fewer rows ran slower for 64-128 channels (18-30 measured within noise for F(4x4), 12
 * worse); a multiple of 6.
 */
static int64_t winograd_chunk(const conv_geom *g, int m) {
  int64_t n = 32768 / ((m + 2) * (m + 2)) / (g->inC + g->outC);
  n = n < 30 ? 30 : n - n % 6;
  const int64_t all = g->batch * tiles_down(g, m) * tiles_across(g, m);
  return n > all ? all : n;
}

/* G g of a filter column g (3 values) into a = m + 2 values: the filter transform along one axis. */
static inline void g_apply(int m, const vecf *g, vecf *t) {
  if (m == 2) {
    t[0] = g[0], t[1] = 0.5f * (g[0] + g[1] + g[2]), t[2] = 0.5f * (g[0] - g[1] + g[2]), t[3] = g[2];
  } else { /* G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1] */
    const vecf p = g[0] * (1.0f / 24) + g[2] * (1.0f / 6), q = g[1] * (1.0f / 12);
    t[0] = g[0] * 0.25f, t[1] = (g[0] + g[1] + g[2]) * (-1.0f / 6), t[2] = (g[0] - g[1] + g[2]) * (-1.0f / 6);
    t[3] = p + q, t[4] = p - q, t[5] = g[2];
  }
}

/* Gᵀ u of a = m + 2 values into 3: the filter transform's adjoint along one axis. */
static inline void gt_apply(int m, const vecf *u, vecf *r) {
  if (m == 2) {
    r[0] = u[0] + 0.5f * (u[1] + u[2]), r[1] = 0.5f * (u[1] - u[2]), r[2] = 0.5f * (u[1] + u[2]) + u[3];
  } else {
    r[0] = u[0] * 0.25f - (u[1] + u[2]) * (1.0f / 6) + (u[3] + u[4]) * (1.0f / 24);
    r[1] = (u[2] - u[1]) * (1.0f / 6) + (u[3] - u[4]) * (1.0f / 12);
    r[2] = (u[3] + u[4] - u[1] - u[2]) * (1.0f / 6) + u[5];
  }
}

/*
 * The filter transforms go through blocks of FB filters (a block's 9 + a² planes stay in L1): written
 * straight to the a² planes, S floats apart, every store missed L1 (the planes alias in its sets)
 * and F(4x4)'s transform of a 128 → 128 layer took longer than its products.
 */
enum { FB = 64 };

/* U[a², inC, outC] ← G g Gᵀ for every filter g[3, 3] of filter[3, 3, inC, outC]; S = inC·outC, a multiple of 16. */
static void winograd_filter(int m, const float *f, int64_t S, float *U) {
  const int A = m + 2;
  float in[9][FB], out[36][FB];
  for (int64_t k0 = 0; k0 < S; k0 += FB) {
    const int64_t kn = S - k0 < FB ? S - k0 : FB;
    for (int i = 0; i < 9; i++) memcpy(in[i], f + i * S + k0, sizeof(float) * kn);
    for (int64_t kk = 0; kk < kn; kk += VW) {
      vecf t[6][3];
      for (int b = 0; b < 3; b++) {
        vecf g[3], r[6];
        for (int a = 0; a < 3; a++) g[a] = loadv(in[a * 3 + b] + kk);
        g_apply(m, g, r);
        for (int a = 0; a < A; a++) t[a][b] = r[a];
      }
      for (int a = 0; a < A; a++) {
        vecf r[6];
        g_apply(m, t[a], r);
        for (int j = 0; j < A; j++) storev(out[a * A + j] + kk, r[j]);
      }
    }
    for (int xi = 0; xi < A * A; xi++) memcpy(U + xi * S + k0, out[xi], sizeof(float) * kn);
  }
}

/* dfilter[3, 3, inC, outC] ← Gᵀ dU G for every dU[a², inC, outC] (the filter transform's adjoint). */
static void winograd_filter_grad(int m, const float *dU, int64_t S, float *df) {
  const int A = m + 2;
  float in[36][FB], out[9][FB];
  for (int64_t k0 = 0; k0 < S; k0 += FB) {
    const int64_t kn = S - k0 < FB ? S - k0 : FB;
    for (int xi = 0; xi < A * A; xi++) memcpy(in[xi], dU + xi * S + k0, sizeof(float) * kn);
    for (int64_t kk = 0; kk < kn; kk += VW) {
      vecf t[3][6];
      for (int j = 0; j < A; j++) {
        vecf u[6], r[3];
        for (int i = 0; i < A; i++) u[i] = loadv(in[i * A + j] + kk);
        gt_apply(m, u, r);
        for (int a = 0; a < 3; a++) t[a][j] = r[a];
      }
      for (int a = 0; a < 3; a++) {
        vecf r[3];
        gt_apply(m, t[a], r);
        for (int b = 0; b < 3; b++) storev(out[a * 3 + b] + kk, r[b]);
      }
    }
    for (int i = 0; i < 9; i++) memcpy(df + i * S + k0, out[i], sizeof(float) * kn);
  }
}

/*
 * Bᵀ d B of an a x a patch (its top-left value at x + o, rows `rs` apart, pixels C apart) into a² planes
 * `ps` apart, on `vecf` lanes of channels (T = vecf) or one channel (T = float: input channels need not
 * fill whole vectors). Only rows [r0, r1) and columns [c0, c1) of the patch are read, the rest are the
 * zero padding: patches crossing the image's edge (44% of a 32-px image's 4x4 tiles) need no copy of
 * their own (copying them pixel by pixel cost three times the transform).
 */
#define WINOGRAD_INPUT_TILES(T, LOAD, STORE, SUFFIX)                                                            \
  static inline __attribute__((always_inline)) void input_tile2_##SUFFIX(const float *x, int64_t o, int64_t rs, int64_t C, float *v, int64_t ps, int r0, int r1, int c0, int c1) { \
    T q[4][4];                                                                                                  \
    for (int b = 0; b < 4; b++) {                                                                               \
      T r[4];                                                                                                   \
      for (int i = 0; i < 4; i++) r[i] = i >= r0 && i < r1 && b >= c0 && b < c1 ? LOAD(x + o + i * rs + b * C) : (T){0}; \
      q[0][b] = r[0] - r[2], q[1][b] = r[1] + r[2], q[2][b] = r[2] - r[1], q[3][b] = r[1] - r[3];               \
    }                                                                                                           \
    for (int a = 0; a < 4; a++) {                                                                               \
      STORE(v + (a * 4 + 0) * ps, q[a][0] - q[a][2]);                                                           \
      STORE(v + (a * 4 + 1) * ps, q[a][1] + q[a][2]);                                                           \
      STORE(v + (a * 4 + 2) * ps, q[a][2] - q[a][1]);                                                           \
      STORE(v + (a * 4 + 3) * ps, q[a][1] - q[a][3]);                                                           \
    }                                                                                                           \
  }                                                                                                             \
  /* Bᵀ = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1] */            \
  static inline __attribute__((always_inline)) void input_tile4_##SUFFIX(const float *x, int64_t o, int64_t rs, int64_t C, float *v, int64_t ps, int r0, int r1, int c0, int c1) { \
    T q[6][6];                                                                                                  \
    for (int b = 0; b < 6; b++) {                                                                               \
      T r[6];                                                                                                   \
      for (int i = 0; i < 6; i++) r[i] = i >= r0 && i < r1 && b >= c0 && b < c1 ? LOAD(x + o + i * rs + b * C) : (T){0}; \
      const T s13 = r[3] - 4 * r[1], s24 = r[4] - 4 * r[2], d13 = 2 * (r[3] - r[1]), d24 = r[4] - r[2];          \
      q[0][b] = 4 * r[0] - 5 * r[2] + r[4], q[1][b] = s13 + s24, q[2][b] = s24 - s13;                           \
      q[3][b] = d13 + d24, q[4][b] = d24 - d13, q[5][b] = 4 * r[1] - 5 * r[3] + r[5];                           \
    }                                                                                                           \
    for (int a = 0; a < 6; a++) {                                                                               \
      const T *r = q[a];                                                                                        \
      const T s13 = r[3] - 4 * r[1], s24 = r[4] - 4 * r[2], d13 = 2 * (r[3] - r[1]), d24 = r[4] - r[2];          \
      STORE(v + (a * 6 + 0) * ps, 4 * r[0] - 5 * r[2] + r[4]);                                                  \
      STORE(v + (a * 6 + 1) * ps, s13 + s24);                                                                   \
      STORE(v + (a * 6 + 2) * ps, s24 - s13);                                                                   \
      STORE(v + (a * 6 + 3) * ps, d13 + d24);                                                                   \
      STORE(v + (a * 6 + 4) * ps, d24 - d13);                                                                   \
      STORE(v + (a * 6 + 5) * ps, 4 * r[1] - 5 * r[3] + r[5]);                                                  \
    }                                                                                                           \
  }
#define LOAD1(p) (*(p))
#define STORE1(p, v) (*(p) = (v))
WINOGRAD_INPUT_TILES(vecf, loadv, storev, vec)
WINOGRAD_INPUT_TILES(float, LOAD1, STORE1, one)

/* y[batch, P, C] += the bias, in one pass after loops that stored no bias. */
static void add_bias(float *y, const conv_bias *bias, int64_t batch, int64_t P, int64_t C) {
  if (bias->pixel) broadcast_binary(0, y, bias->v, y, batch * P * C, batch * P * C, 1, false);
  else if (bias->image) broadcast_binary(0, y, bias->v, y, batch * P * C, batch * C, batch, false);
  else broadcast_binary(0, y, bias->v, y, batch * P * C, C, 1, false);
}

/*
 * Aᵀ m A of 16 planes `ps` apart into a tile's 2x2 outputs (rows `rs` apart), the `rows` x `cols` inside
 * the image, plus `bias` where given: its value for output (a, j) at bias + a·brs + j·bcs (strides 0 for
 * a bias per channel, the output's own for an addend of y's shape).
 */
static inline void output_tile2(const float *m, int64_t ps, float *o, int64_t rs, int64_t C, int rows, int cols, const float *bias, int64_t brs, int64_t bcs) {
  vecf q[2][4];
  for (int b = 0; b < 4; b++) {
    const vecf m0 = loadv(m + b * ps), m1 = loadv(m + (4 + b) * ps), m2 = loadv(m + (8 + b) * ps), m3 = loadv(m + (12 + b) * ps);
    q[0][b] = m0 + m1 + m2, q[1][b] = m1 - m2 - m3;
  }
  for (int a = 0; a < rows; a++) {
    const vecf r0 = q[a][0] + q[a][1] + q[a][2], r1 = q[a][1] - q[a][2] - q[a][3];
    storev(o + a * rs, bias ? r0 + loadv(bias + a * brs) : r0);
    if (cols > 1) storev(o + a * rs + C, bias ? r1 + loadv(bias + a * brs + bcs) : r1);
  }
}

/* Aᵀ u of a 6-vector (Aᵀ = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]). */
#define AT6(u, r)                                                                          \
  do {                                                                                     \
    const vecf p12 = u[1] + u[2], m12 = u[1] - u[2], p34 = u[3] + u[4], m34 = u[3] - u[4]; \
    r[0] = u[0] + p12 + p34, r[1] = m12 + 2 * m34, r[2] = p12 + 4 * p34;                   \
    r[3] = m12 + 8 * m34 + u[5];                                                           \
  } while (0)

/* Aᵀ m A of 36 planes `ps` apart into a tile's 4x4 outputs, the `rows` x `cols` inside the image, plus `bias` where given (as output_tile2). */
static inline void output_tile4(const float *m, int64_t ps, float *o, int64_t rs, int64_t C, int rows, int cols, const float *bias, int64_t brs, int64_t bcs) {
  vecf q[4][6];
  for (int b = 0; b < 6; b++) {
    vecf u[6], r[4];
    for (int i = 0; i < 6; i++) u[i] = loadv(m + (i * 6 + b) * ps);
    AT6(u, r);
    for (int a = 0; a < 4; a++) q[a][b] = r[a];
  }
  for (int a = 0; a < rows; a++) {
    vecf r[4];
    AT6(q[a], r);
    for (int j = 0; j < cols; j++) storev(o + a * rs + j * C, bias ? r[j] + loadv(bias + a * brs + j * bcs) : r[j]);
  }
}

/* A dy Aᵀ of a tile's 2x2 gradients (zeros outside the image) into 16 planes `ps` apart. */
static inline void output_grad_tile2(const float *o, int64_t rs, int64_t C, int rows, int cols, float *m, int64_t ps) {
  const vecf zero = {0};
  const vecf y00 = loadv(o), y01 = cols > 1 ? loadv(o + C) : zero, y10 = rows > 1 ? loadv(o + rs) : zero, y11 = rows > 1 && cols > 1 ? loadv(o + rs + C) : zero;
  const vecf r[4][2] = {{y00, y01}, {y00 + y10, y01 + y11}, {y00 - y10, y01 - y11}, {-y10, -y11}};
  for (int a = 0; a < 4; a++) {
    storev(m + (a * 4 + 0) * ps, r[a][0]);
    storev(m + (a * 4 + 1) * ps, r[a][0] + r[a][1]);
    storev(m + (a * 4 + 2) * ps, r[a][0] - r[a][1]);
    storev(m + (a * 4 + 3) * ps, -r[a][1]);
  }
}

/* A y of a 4-vector (A = (Aᵀ)ᵀ: rows y0; Σy; y0-y1+y2-y3; y0+2y1+4y2+8y3; y0-2y1+4y2-8y3; y3). */
#define A6(y, r)                                                                      \
  do {                                                                                \
    const vecf e = y[0] + y[2], o1 = y[1] + y[3], e4 = y[0] + 4 * y[2], o4 = 2 * y[1] + 8 * y[3]; \
    r[0] = y[0], r[1] = e + o1, r[2] = e - o1, r[3] = e4 + o4, r[4] = e4 - o4, r[5] = y[3];  \
  } while (0)

/* A dy Aᵀ of a tile's 4x4 gradients (zeros outside the image) into 36 planes `ps` apart. */
static inline void output_grad_tile4(const float *o, int64_t rs, int64_t C, int rows, int cols, float *m, int64_t ps) {
  const vecf zero = {0};
  vecf q[6][4]; /* A applied down each column */
  for (int b = 0; b < 4; b++) {
    vecf y[4], r[6];
    for (int a = 0; a < 4; a++) y[a] = a < rows && b < cols ? loadv(o + a * rs + b * C) : zero;
    A6(y, r);
    for (int a = 0; a < 6; a++) q[a][b] = r[a];
  }
  for (int a = 0; a < 6; a++) {
    vecf r[6];
    A6(q[a], r);
    for (int j = 0; j < 6; j++) storev(m + (a * 6 + j) * ps, r[j]);
  }
}

/* Where tile t of the batch sits: its image, and its top-left output pixel. */
static inline void tile_place(const conv_geom *g, int m, int64_t t, int64_t *img, int64_t *oy, int64_t *ox) {
  const int64_t TW = tiles_across(g, m), per = tiles_down(g, m) * TW;
  *img = t / per, *oy = m * ((t % per) / TW), *ox = m * (t % TW);
}

/* How many of m rows (or columns) from `from` lie inside `size`. */
static inline int inside(int64_t from, int64_t size, int m) { return size - from < m ? (int)(size - from) : m; }

/* The patch rows [r0, r1) inside the image for a patch from row y0 of an image of `size` rows (a rows in all). */
static inline void patch_span(int64_t y0, int64_t size, int A, int *r0, int *r1) {
  *r0 = y0 < 0 ? (int)-y0 : 0;
  *r1 = inside(y0, size, A);
}

/* A patch's transform, its rows and columns in the image given; interior patches get loops without checks. */
#define INPUT_TILE(m, SUFFIX, ...) \
  (m == 2 ? input_tile2_##SUFFIX(__VA_ARGS__) : input_tile4_##SUFFIX(__VA_ARGS__))

/* V[a², n, inC] ← Bᵀ d B for tiles [first, first + n), zeros for the patches' parts outside the image. */
static void winograd_input(const conv_geom *g, int m, const float *x, int64_t first, int64_t n, float *V) {
  const int64_t C = g->inC, ps = n * C, A = m + 2, rs = g->inW * C;
  for (int64_t i = 0; i < n; i++) {
    int64_t img, oy, ox;
    tile_place(g, m, first + i, &img, &oy, &ox);
    const int64_t y0 = oy - g->padTop, x0 = ox - g->padLeft, o = ((img * g->inH + y0) * g->inW + x0) * C;
    int r0, r1, c0, c1;
    patch_span(y0, g->inH, (int)A, &r0, &r1);
    patch_span(x0, g->inW, (int)A, &c0, &c1);
    float *v = V + i * C;
    int64_t c = 0;
    if (r0 == 0 && c0 == 0 && r1 == A && c1 == A) {
      for (; c + VW <= C; c += VW) INPUT_TILE(m, vec, x, o + c, rs, C, v + c, ps, 0, (int)A, 0, (int)A);
      for (; c < C; c++) INPUT_TILE(m, one, x, o + c, rs, C, v + c, ps, 0, (int)A, 0, (int)A);
    } else {
      for (; c + VW <= C; c += VW) INPUT_TILE(m, vec, x, o + c, rs, C, v + c, ps, r0, r1, c0, c1);
      for (; c < C; c++) INPUT_TILE(m, one, x, o + c, rs, C, v + c, ps, r0, r1, c0, c1);
    }
  }
}

/* y's tiles [first, first + n) ← Aᵀ M A (+ bias where given) from M[a², n, outC]; outputs past the image's edge dropped. */
static void winograd_output(const conv_geom *g, int m, const float *M, int64_t first, int64_t n, float *y, const conv_bias *bias) {
  const int64_t C = g->outC, ps = n * C, rs = g->outW * C;
  const int64_t brs = bias ? g->outW * bias->pixel : 0, bcs = bias ? bias->pixel : 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t img, oy, ox;
    tile_place(g, m, first + i, &img, &oy, &ox);
    float *o = y + ((img * g->outH + oy) * g->outW + ox) * C;
    const float *b = bias ? bias->v + img * bias->image + (oy * g->outW + ox) * bias->pixel : NULL;
    const int rows = inside(oy, g->outH, m), cols = inside(ox, g->outW, m);
    for (int64_t c = 0; c < C; c += VW) /* C % 16 == 0 */
      if (m == 2) output_tile2(M + i * C + c, ps, o + c, rs, C, rows, cols, b ? b + c : NULL, brs, bcs);
      else output_tile4(M + i * C + c, ps, o + c, rs, C, rows, cols, b ? b + c : NULL, brs, bcs);
  }
}

/* dM[a², n, outC] ← A dY Aᵀ for tiles [first, first + n) of dy (zeros past the image's edge). */
static void winograd_output_grad(const conv_geom *g, int m, const float *dy, int64_t first, int64_t n, float *dM) {
  const int64_t C = g->outC, ps = n * C, rs = g->outW * C;
  for (int64_t i = 0; i < n; i++) {
    int64_t img, oy, ox;
    tile_place(g, m, first + i, &img, &oy, &ox);
    const float *o = dy + ((img * g->outH + oy) * g->outW + ox) * C;
    const int rows = inside(oy, g->outH, m), cols = inside(ox, g->outW, m);
    for (int64_t c = 0; c < C; c += VW)
      if (m == 2) output_grad_tile2(o + c, rs, C, rows, cols, dM + i * C + c, ps);
      else output_grad_tile4(o + c, rs, C, rows, cols, dM + i * C + c, ps);
  }
}

/*
 * conv_winograd(mode, m, g, a, b, out, bias) for the forward pass (a = x, b = filter, out = y, plus the
 * bias where given, as the outputs are stored) or the filter gradient (a = x, b = dy, out = dfilter), in
 * m x m tiles; outC % 16 == 0. False when out of memory.
 */
static bool conv_winograd(int mode, int m, const conv_geom *g, const float *a, const float *b, float *out, const conv_bias *bias) {
  const int64_t P = (m + 2) * (m + 2); /* transform points */
  const int64_t S = g->inC * g->outC, chunk = winograd_chunk(g, m), all = g->batch * tiles_down(g, m) * tiles_across(g, m);
  const int64_t chunks = (all + chunk - 1) / chunk, scratch = P * chunk * (g->inC + g->outC);
  const int threads = chunks > 1 ? omp_get_max_threads() : 1;
  float *buffers = (float *)malloc(sizeof(float) * threads * scratch);
  /* the filter's transform (written whole), or the filter gradient's transformed sums, one per thread (from 0) */
  const size_t sizeU = (size_t)(mode == CONV_GRAD_FILTER ? threads : 1) * P * S;
  float *U = mode == CONV_GRAD_FILTER ? (float *)calloc(sizeU, sizeof(float)) : (float *)malloc(sizeU * sizeof(float));
  if (!buffers || !U) {
    free(buffers);
    free(U);
    return false;
  }
  if (mode == CONV_FORWARD) winograd_filter(m, b, S, U);
#pragma omp parallel num_threads(threads)
  {
    const int id = omp_get_thread_num();
    float *V = buffers + (int64_t)id * scratch, *M = V + P * chunk * g->inC;
    float *dU = mode == CONV_GRAD_FILTER ? U + (int64_t)id * P * S : NULL;
#pragma omp for schedule(static)
    for (int64_t k = 0; k < chunks; k++) {
      const int64_t first = k * chunk, n = first + chunk > all ? all - first : chunk;
      const conv_geom p = tile_product(g, n);
      winograd_input(g, m, a, first, n, V);
      if (mode == CONV_GRAD_FILTER) {
        winograd_output_grad(g, m, b, first, n, M);
        for (int64_t xi = 0; xi < P; xi++) direct_filter_grad_image(&p, V + xi * n * g->inC, M + xi * n * g->outC, dU + xi * S);
      } else {
        for (int64_t xi = 0; xi < P; xi++) direct_forward_image(&p, V + xi * n * g->inC, U + xi * S, M + xi * n * g->outC, NULL, 0);
        winograd_output(g, m, M, first, n, out, bias);
      }
    }
  }
  if (mode == CONV_GRAD_FILTER) {
    for (int t = 1; t < threads; t++)
      for (int64_t i = 0; i < P * S; i++) U[i] += U[(size_t)t * P * S + i];
    winograd_filter_grad(m, U, S, out);
  }
  free(buffers);
  free(U);
  return true;
}

/*
 * The direct path for one mode, or false where it does not apply (strides, dilations, output channels
 * that are neither a multiple of 16 nor fewer than 16, or the filter gradient's channels not multiples of
 * 8 and 16). The input gradient is the forward convolution of dy with the filter turned 180° and its
 * channel axes swapped. 3x3 filters on 8+ input channels into multiples of 16 go through Winograd's tiles.
 * A forward pass's `bias` (else NULL) is added as the tiles are stored, or in one pass after the loops.
 */
static bool conv_direct(int mode, const conv_geom *g, const float *a, const float *b, float *out, const conv_bias *bias) {
  if (!direct_eligible(g)) return false;
  if (mode == CONV_GRAD_FILTER && (g->inC % 8 != 0 || g->outC % 16 != 0)) return false;
  conv_geom fg = *g; /* the forward convolution that runs */
  if (mode == CONV_GRAD_INPUT)
    fg = (conv_geom){g->batch, g->outH, g->outW, g->outC, g->inH, g->inW, g->inC, g->kH, g->kW, 1, 1, g->kH - 1 - g->padTop, g->kW - 1 - g->padLeft, 1, 1};
  const bool narrow = mode != CONV_GRAD_FILTER && fg.outC % 16 != 0;
  if (narrow && !narrow_eligible(&fg)) return false;
  const float *filter = b;
  float *turned = NULL;
  if (mode == CONV_GRAD_INPUT) {
    turned = (float *)malloc(sizeof(float) * g->kH * g->kW * g->inC * g->outC);
    if (!turned) return false;
    for (int64_t ky = 0; ky < g->kH; ky++)
      for (int64_t kx = 0; kx < g->kW; kx++)
        for (int64_t ci = 0; ci < g->inC; ci++)
          for (int64_t co = 0; co < g->outC; co++)
            turned[(((g->kH - 1 - ky) * g->kW + (g->kW - 1 - kx)) * g->outC + co) * g->inC + ci] = b[((ky * g->kW + kx) * g->inC + ci) * g->outC + co];
    filter = turned;
  }
  if (narrow) { /* the filter per output channel, [outC][kH, kW, inC] */
    float *ft = (float *)malloc(sizeof(float) * fg.kH * fg.kW * fg.inC * fg.outC);
    if (!ft) {
      free(turned);
      return false;
    }
    for (int64_t i = 0; i < fg.kH * fg.kW * fg.inC; i++)
      for (int64_t co = 0; co < fg.outC; co++) ft[co * fg.kH * fg.kW * fg.inC + i] = filter[i * fg.outC + co];
    free(turned);
    filter = turned = ft;
  }
  const int tile = narrow ? 0 : winograd_tile(&fg);
  if (tile > 0) {
    const bool done = conv_winograd(mode == CONV_GRAD_FILTER ? CONV_GRAD_FILTER : CONV_FORWARD, tile, &fg, a, filter, out, bias);
    free(turned);
    return done;
  }
  /* a 1x1 filter without padding reads each image as it is: no frame to add, no padded copy */
  const bool inPlace = fg.kH == 1 && fg.kW == 1 && fg.padTop == 0 && fg.padLeft == 0;
  const int64_t padLen = inPlace ? 0 : padded_height(&fg) * padded_width(&fg) * fg.inC, fLen = g->kH * g->kW * g->inC * g->outC;
  const int threads = fg.batch > 1 ? omp_get_max_threads() : 1;
  float *pads = (float *)malloc(sizeof(float) * (threads * padLen + 1));
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
      const float *in = inPlace ? a + img * fg.inH * fg.inW * fg.inC : myPad;
      if (!inPlace) pad_image(&fg, a, img, myPad);
      if (mode == CONV_GRAD_FILTER)
        direct_filter_grad_image(&fg, in, b + img * fg.outH * fg.outW * fg.outC, myFilter);
      else if (narrow)
        narrow_forward_image(&fg, in, filter, out + img * fg.outH * fg.outW * fg.outC);
      else
        direct_forward_image(&fg, in, filter, out + img * fg.outH * fg.outW * fg.outC, bias ? bias->v + img * bias->image : NULL, bias ? bias->pixel : 0);
    }
  }
  for (int t = 0; partial && t < threads - 1; t++)
    for (int64_t i = 0; i < fLen; i++) out[i] += partial[(size_t)t * fLen + i];
  if (bias && narrow) add_bias(out, bias, fg.batch, fg.outH * fg.outW, fg.outC); /* the direct loops started from it */
  free(turned);
  free(pads);
  free(partial);
  return true;
}

/*
 * conv(mode, geom, a, b, out[, bias]):
 *   forward:      a = x, b = filter, out = y [batch, outH, outW, outC] (+ bias: FusedConv2D's [outC], a
 *                 per-image shift [batch, outC], or an addend of y's shape, e.g. a residual)
 *   grad input:   a = dy, b = filter, out = dx [batch, inH, inW, inC]
 *   grad filter:  a = x, b = dy, out = dfilter [kH, kW, inC, outC]
 */
napi_value conv(napi_env env, napi_callback_info info) {
  ARGS(6);
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
  conv_bias addend, *bias = NULL; /* forward only (checked below): added as the Winograd tiles are stored, else in a pass after */
  if (argc > 5) {
    size_t lbias = 0;
    addend.v = f32(env, argv[5], &lbias);
    if (!addend.v) return NULL;
    const int64_t C = g.outC, lb = (int64_t)lbias;
    if (mode != CONV_FORWARD || (lb != C && lb != g.batch * C && lb != (int64_t)yLen)) {
      napi_throw_range_error(env, NULL, "conv: a bias is one value per output channel, per image and channel, or per output value of the forward pass");
      return NULL;
    }
    const bool perChannel = lb == C, perImage = !perChannel && lb == g.batch * C; /* else y's shape */
    addend.image = perChannel ? 0 : perImage ? C : P * C;
    addend.pixel = perChannel || perImage ? 0 : C;
    bias = &addend;
  }
  if (conv_direct(mode, &g, a, b, out, bias)) return NULL;
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
  if (bias) add_bias(out, bias, g.batch, P, g.outC);
  free(cols);
  free(partial);
  return NULL;
}
