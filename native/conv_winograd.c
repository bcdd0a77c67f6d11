/*
 * Winograd's minimal filtering (Lavin & Gray 2015) for the 3x3 stride-1 layers, in tiles of m x m
 * outputs, F(m x m, 3x3) with m = 4 (or 2): each tile comes from its a x a input patch d (a = m + 2) as
 * Aᵀ [U ⊙ V] A with V = Bᵀ d B and the filter's U = G g Gᵀ, where the sum over input channels of U ⊙ V
 * is a² independent products [tiles, inC] x [inC, outC], one per point ξ of the transform: a²/m²
 * multiply-adds per output and channel pair where the direct loops do 9 (2.25 for m = 4, 4 for m = 2).
 * Those products run on the direct kernels (conv_direct.c) as 1x1 convolutions over a row of tiles. The
 * filter gradient is the same in reverse: dU_ξ = Σ_tiles V_ξᵀ (A dY Aᵀ)_ξ, then dg = Gᵀ dU G. Tiles are
 * numbered across the whole batch (image, tile row, tile) and go in chunks, so small images share a
 * chunk. DIFFUSE_WINOGRAD=0 turns the tiles off, =2 picks m = 2 (tests compare all three paths).
 *
 * This file: the choice of m, the chunks, the output transforms and the loop over chunks; the filter's
 * and the input patches' transforms are in conv_winograd_transforms.c. The output transforms stay beside
 * the loop they are inlined into: in a file of their own F(2x2)'s were not inlined, and -ffast-math
 * rounded the out-of-line copy differently (other results to the last bit).
 */
#include "conv.h"

int winograd_tile(const conv_geom *g) {
  const char *env = getenv("DIFFUSE_WINOGRAD");
  /* below 8 input channels the transforms cost more than the products save (3x slower at 1 and 3) */
  if (g->kH != 3 || g->kW != 3 || g->inC < 8 || (env && env[0] == '0')) return 0;
  return env && env[0] == '2' ? 2 : 4;
}

/* The 1x1 "convolution" of n tiles, inC to outC channels, that each transform point's product is. */
static conv_geom tile_product(const conv_geom *g, int64_t n) {
  return (conv_geom){1, 1, n, g->inC, 1, n, g->outC, 1, 1, 1, 1, 0, 0, 1, 1};
}

/*
 * Tiles per chunk: the chunk's V and M (a²·n·(inC + outC) floats) about 128 KiB, so they stay in L2
 * between the transforms and the products (4x larger chunks ran 1.5-2x slower); at least 30 tiles, as
 * products of fewer rows ran slower for 64-128 channels; a multiple of 6.
 */
static int64_t winograd_chunk(const conv_geom *g, int m) {
  int64_t n = 32768 / ((m + 2) * (m + 2)) / (g->inC + g->outC);
  n = n < 30 ? 30 : n - n % 6;
  const int64_t all = g->batch * tiles_down(g, m) * tiles_across(g, m);
  return n > all ? all : n;
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
bool conv_winograd(int mode, int m, const conv_geom *g, const float *a, const float *b, float *out, const conv_bias *bias) {
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
