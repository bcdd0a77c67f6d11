/*
 * Winograd's transforms into the products' operands (see conv_winograd.c): the filter's U = G g Gᵀ (and,
 * for the filter gradient, its adjoint dg = Gᵀ dU G) and the input patches' V = Bᵀ d B for a chunk of tiles.
 */
#include "conv.h"

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
void winograd_filter(int m, const float *f, int64_t S, float *U) {
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
void winograd_filter_grad(int m, const float *dU, int64_t S, float *df) {
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

/* The patch rows [r0, r1) inside the image for a patch from row y0 of an image of `size` rows (a rows in all). */
static inline void patch_span(int64_t y0, int64_t size, int A, int *r0, int *r1) {
  *r0 = y0 < 0 ? (int)-y0 : 0;
  *r1 = inside(y0, size, A);
}

/* A patch's transform, its rows and columns in the image given; interior patches get loops without checks. */
#define INPUT_TILE(m, SUFFIX, ...) \
  (m == 2 ? input_tile2_##SUFFIX(__VA_ARGS__) : input_tile4_##SUFFIX(__VA_ARGS__))

/* V[a², n, inC] ← Bᵀ d B for tiles [first, first + n), zeros for the patches' parts outside the image. */
void winograd_input(const conv_geom *g, int m, const float *x, int64_t first, int64_t n, float *V) {
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
