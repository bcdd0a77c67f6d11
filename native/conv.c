/*
 * 2-D convolutions (NHWC) and both their gradients: Winograd F(2x2, 3x3) tiles for 3x3 stride-1 layers,
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
 * Winograd F(2x2, 3x3) (Lavin & Gray 2015) for the 3x3 stride-1 layers: each 2x2 block of outputs
 * ("tile") comes from its 4x4 input patch d as Aᵀ [U ⊙ V] A with V = Bᵀ d B and the filter's U = G g Gᵀ,
 * where the sum over input channels of U ⊙ V is 16 independent products [tiles, inC] x [inC, outC], one
 * per point ξ of the 4x4 transform: 16 multiply-adds per tile and channel pair where the direct loops
 * do 36, 2.25x fewer. Those products run on the direct kernels above as 1x1 convolutions over a row of
 * tiles. The filter gradient is the same in reverse: dU_ξ = Σ_tiles V_ξᵀ (A dY Aᵀ)_ξ, then dg = Gᵀ dU G.
 * Tiles are numbered across the whole batch (image, tile row, tile) and go in chunks, so small images
 * share a chunk. DIFFUSE_WINOGRAD=0 turns it off (tests compare both paths).
 */
static bool winograd_eligible(const conv_geom *g) {
  const char *env = getenv("DIFFUSE_WINOGRAD");
  /* below 8 input channels the transforms cost more than the products save (3x slower at 1 and 3) */
  return g->kH == 3 && g->kW == 3 && g->inC >= 8 && !(env && env[0] == '0');
}
static int64_t tiles_down(const conv_geom *g) { return (g->outH + 1) / 2; }
static int64_t tiles_across(const conv_geom *g) { return (g->outW + 1) / 2; }

/* The 1x1 "convolution" of n tiles, inC to outC channels, that each transform point's product is. */
static conv_geom tile_product(const conv_geom *g, int64_t n) {
  return (conv_geom){1, 1, n, g->inC, 1, n, g->outC, 1, 1, 1, 1, 0, 0, 1, 1};
}

/*
 * Tiles per chunk: the chunk's V and M (16·n·(inC + outC) floats) about 128 KiB, so they stay in L2
 * between the transforms and the products (4x larger chunks ran 1.5-2x slower, 1.5x larger a few
 * percent slower); at least 18 tiles, as products of fewer rows ran up to 1.5x slower for 64-128
 * channels; a multiple of 6.
 */
static int64_t winograd_chunk(const conv_geom *g) {
  int64_t n = 2048 / (g->inC + g->outC);
  n = n < 18 ? 18 : n - n % 6;
  const int64_t all = g->batch * tiles_down(g) * tiles_across(g);
  return n > all ? all : n;
}

/* U[16, inC, outC] ← G g Gᵀ for every filter g[3, 3] of filter[3, 3, inC, outC]. */
static void winograd_filter(const float *f, int64_t S, float *U) {
  for (int64_t k = 0; k < S; k++) {
    float t[4][3];
    for (int b = 0; b < 3; b++) {
      const float g0 = f[b * S + k], g1 = f[(3 + b) * S + k], g2 = f[(6 + b) * S + k];
      t[0][b] = g0, t[1][b] = 0.5f * (g0 + g1 + g2), t[2][b] = 0.5f * (g0 - g1 + g2), t[3][b] = g2;
    }
    for (int a = 0; a < 4; a++) {
      U[(a * 4 + 0) * S + k] = t[a][0];
      U[(a * 4 + 1) * S + k] = 0.5f * (t[a][0] + t[a][1] + t[a][2]);
      U[(a * 4 + 2) * S + k] = 0.5f * (t[a][0] - t[a][1] + t[a][2]);
      U[(a * 4 + 3) * S + k] = t[a][2];
    }
  }
}

/* dfilter[3, 3, inC, outC] ← Gᵀ dU G for every dU[16, inC, outC] (the filter transform's adjoint). */
static void winograd_filter_grad(const float *dU, int64_t S, float *df) {
  for (int64_t k = 0; k < S; k++) {
    float t[3][4];
    for (int j = 0; j < 4; j++) {
      const float u0 = dU[j * S + k], u1 = dU[(4 + j) * S + k], u2 = dU[(8 + j) * S + k], u3 = dU[(12 + j) * S + k];
      t[0][j] = u0 + 0.5f * (u1 + u2), t[1][j] = 0.5f * (u1 - u2), t[2][j] = 0.5f * (u1 + u2) + u3;
    }
    for (int a = 0; a < 3; a++) {
      df[(a * 3 + 0) * S + k] = t[a][0] + 0.5f * (t[a][1] + t[a][2]);
      df[(a * 3 + 1) * S + k] = 0.5f * (t[a][1] - t[a][2]);
      df[(a * 3 + 2) * S + k] = 0.5f * (t[a][1] + t[a][2]) + t[a][3];
    }
  }
}

/*
 * Bᵀ d B of a 4x4 patch (rows `rs` apart, pixels C apart) into 16 planes `ps` apart, on `vecf` lanes of
 * channels (T = vecf) or one channel (T = float: input channels need not fill whole vectors).
 */
#define WINOGRAD_INPUT_TILE(T, LOAD, STORE, SUFFIX)                                                              \
  static inline void input_tile_##SUFFIX(const float *d, int64_t rs, int64_t C, float *v, int64_t ps) {          \
    T q[4][4];                                                                                                  \
    for (int b = 0; b < 4; b++) {                                                                               \
      const T r0 = LOAD(d + b * C), r1 = LOAD(d + rs + b * C), r2 = LOAD(d + 2 * rs + b * C), r3 = LOAD(d + 3 * rs + b * C); \
      q[0][b] = r0 - r2, q[1][b] = r1 + r2, q[2][b] = r2 - r1, q[3][b] = r1 - r3;                               \
    }                                                                                                           \
    for (int a = 0; a < 4; a++) {                                                                               \
      STORE(v + (a * 4 + 0) * ps, q[a][0] - q[a][2]);                                                           \
      STORE(v + (a * 4 + 1) * ps, q[a][1] + q[a][2]);                                                           \
      STORE(v + (a * 4 + 2) * ps, q[a][2] - q[a][1]);                                                           \
      STORE(v + (a * 4 + 3) * ps, q[a][1] - q[a][3]);                                                           \
    }                                                                                                           \
  }
#define LOAD1(p) (*(p))
#define STORE1(p, v) (*(p) = (v))
WINOGRAD_INPUT_TILE(vecf, loadv, storev, vec)
WINOGRAD_INPUT_TILE(float, LOAD1, STORE1, one)

/* Aᵀ m A of 16 planes `ps` apart into a tile's 2x2 outputs (rows `rs` apart), those inside the image. */
static inline void output_tile(const float *m, int64_t ps, float *o, int64_t rs, int64_t C, bool down, bool right) {
  vecf q[2][4];
  for (int b = 0; b < 4; b++) {
    const vecf m0 = loadv(m + b * ps), m1 = loadv(m + (4 + b) * ps), m2 = loadv(m + (8 + b) * ps), m3 = loadv(m + (12 + b) * ps);
    q[0][b] = m0 + m1 + m2, q[1][b] = m1 - m2 - m3;
  }
  storev(o, q[0][0] + q[0][1] + q[0][2]);
  if (right) storev(o + C, q[0][1] - q[0][2] - q[0][3]);
  if (down) {
    storev(o + rs, q[1][0] + q[1][1] + q[1][2]);
    if (right) storev(o + rs + C, q[1][1] - q[1][2] - q[1][3]);
  }
}

/* A dy Aᵀ of a tile's 2x2 gradients (zeros outside the image) into 16 planes `ps` apart. */
static inline void output_grad_tile(const float *o, int64_t rs, int64_t C, bool down, bool right, float *m, int64_t ps) {
  const vecf zero = {0};
  const vecf y00 = loadv(o), y01 = right ? loadv(o + C) : zero, y10 = down ? loadv(o + rs) : zero, y11 = down && right ? loadv(o + rs + C) : zero;
  const vecf r[4][2] = {{y00, y01}, {y00 + y10, y01 + y11}, {y00 - y10, y01 - y11}, {-y10, -y11}};
  for (int a = 0; a < 4; a++) {
    storev(m + (a * 4 + 0) * ps, r[a][0]);
    storev(m + (a * 4 + 1) * ps, r[a][0] + r[a][1]);
    storev(m + (a * 4 + 2) * ps, r[a][0] - r[a][1]);
    storev(m + (a * 4 + 3) * ps, -r[a][1]);
  }
}

/* Where tile t of the batch sits: its image, and its top-left output pixel. */
static inline void tile_place(const conv_geom *g, int64_t t, int64_t *img, int64_t *oy, int64_t *ox) {
  const int64_t TW = tiles_across(g), per = tiles_down(g) * TW;
  *img = t / per, *oy = 2 * ((t % per) / TW), *ox = 2 * (t % TW);
}

/* V[16, n, inC] ← Bᵀ d B for tiles [first, first + n); patches crossing the image's edge go through `edge`. */
static void winograd_input(const conv_geom *g, const float *x, int64_t first, int64_t n, float *V, float *edge) {
  const int64_t C = g->inC, ps = n * C;
  for (int64_t i = 0; i < n; i++) {
    int64_t img, oy, ox;
    tile_place(g, first + i, &img, &oy, &ox);
    const int64_t y0 = oy - g->padTop, x0 = ox - g->padLeft;
    const float *d = x + ((img * g->inH + y0) * g->inW + x0) * C;
    int64_t rs = g->inW * C;
    if (y0 < 0 || x0 < 0 || y0 + 4 > g->inH || x0 + 4 > g->inW) {
      for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
          const int64_t iy = y0 + a, ix = x0 + b;
          float *e = edge + (a * 4 + b) * C;
          if (iy < 0 || iy >= g->inH || ix < 0 || ix >= g->inW) memset(e, 0, sizeof(float) * C);
          else memcpy(e, x + ((img * g->inH + iy) * g->inW + ix) * C, sizeof(float) * C);
        }
      d = edge, rs = 4 * C;
    }
    int64_t c = 0;
    for (; c + VW <= C; c += VW) input_tile_vec(d + c, rs, C, V + i * C + c, ps);
    for (; c < C; c++) input_tile_one(d + c, rs, C, V + i * C + c, ps);
  }
}

/* y's tiles [first, first + n) ← Aᵀ M A from M[16, n, outC]; outputs past the image's edge dropped. */
static void winograd_output(const conv_geom *g, const float *M, int64_t first, int64_t n, float *y) {
  const int64_t C = g->outC, ps = n * C, rs = g->outW * C;
  for (int64_t i = 0; i < n; i++) {
    int64_t img, oy, ox;
    tile_place(g, first + i, &img, &oy, &ox);
    float *o = y + ((img * g->outH + oy) * g->outW + ox) * C;
    const bool down = oy + 1 < g->outH, right = ox + 1 < g->outW;
    for (int64_t c = 0; c < C; c += VW) output_tile(M + i * C + c, ps, o + c, rs, C, down, right); /* C % 16 == 0 */
  }
}

/* dM[16, n, outC] ← A dY Aᵀ for tiles [first, first + n) of dy (zeros past the image's edge). */
static void winograd_output_grad(const conv_geom *g, const float *dy, int64_t first, int64_t n, float *dM) {
  const int64_t C = g->outC, ps = n * C, rs = g->outW * C;
  for (int64_t i = 0; i < n; i++) {
    int64_t img, oy, ox;
    tile_place(g, first + i, &img, &oy, &ox);
    const float *o = dy + ((img * g->outH + oy) * g->outW + ox) * C;
    const bool down = oy + 1 < g->outH, right = ox + 1 < g->outW;
    for (int64_t c = 0; c < C; c += VW) output_grad_tile(o + c, rs, C, down, right, dM + i * C + c, ps);
  }
}

/*
 * conv_winograd(mode, g, a, b, out) for the forward pass (a = x, b = filter, out = y) or the filter
 * gradient (a = x, b = dy, out = dfilter); outC % 16 == 0. False when out of memory.
 */
static bool conv_winograd(int mode, const conv_geom *g, const float *a, const float *b, float *out) {
  const int64_t S = g->inC * g->outC, chunk = winograd_chunk(g), all = g->batch * tiles_down(g) * tiles_across(g);
  const int64_t chunks = (all + chunk - 1) / chunk, scratch = 16 * chunk * (g->inC + g->outC) + 16 * g->inC;
  const int threads = chunks > 1 ? omp_get_max_threads() : 1;
  float *buffers = (float *)malloc(sizeof(float) * threads * scratch);
  /* the filter's transform, or the filter gradient's transformed sums, one per thread */
  float *U = (float *)calloc((size_t)(mode == CONV_GRAD_FILTER ? threads : 1) * 16 * S, sizeof(float));
  if (!buffers || !U) {
    free(buffers);
    free(U);
    return false;
  }
  if (mode == CONV_FORWARD) winograd_filter(b, S, U);
#pragma omp parallel num_threads(threads)
  {
    const int id = omp_get_thread_num();
    float *V = buffers + (int64_t)id * scratch, *M = V + 16 * chunk * g->inC, *edge = M + 16 * chunk * g->outC;
    float *dU = mode == CONV_GRAD_FILTER ? U + (int64_t)id * 16 * S : NULL;
#pragma omp for schedule(static)
    for (int64_t k = 0; k < chunks; k++) {
      const int64_t first = k * chunk, n = first + chunk > all ? all - first : chunk;
      const conv_geom p = tile_product(g, n);
      winograd_input(g, a, first, n, V, edge);
      if (mode == CONV_GRAD_FILTER) {
        winograd_output_grad(g, b, first, n, M);
        for (int xi = 0; xi < 16; xi++) direct_filter_grad_image(&p, V + xi * n * g->inC, M + xi * n * g->outC, dU + xi * S);
      } else {
        for (int xi = 0; xi < 16; xi++) direct_forward_image(&p, V + xi * n * g->inC, U + xi * S, M + xi * n * g->outC);
        winograd_output(g, M, first, n, out);
      }
    }
  }
  if (mode == CONV_GRAD_FILTER) {
    for (int t = 1; t < threads; t++)
      for (int64_t i = 0; i < 16 * S; i++) U[i] += U[(size_t)t * 16 * S + i];
    winograd_filter_grad(U, S, out);
  }
  free(buffers);
  free(U);
  return true;
}

/*
 * The direct path for one mode, or false where it does not apply (strides, dilations, channel counts
 * that are not multiples of 16, or of 8 for the filter gradient's inputs). The input gradient is the
 * forward convolution of dy with the filter turned 180° and its channel axes swapped. 3x3 filters on
 * 8+ input channels go through Winograd's tiles.
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
  if (winograd_eligible(&fg)) {
    const bool done = conv_winograd(mode == CONV_GRAD_FILTER ? CONV_GRAD_FILTER : CONV_FORWARD, &fg, a, filter, out);
    free(turned);
    return done;
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
