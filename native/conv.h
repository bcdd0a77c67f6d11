/*
 * What the convolution files share (internal to native/): the geometry, the bias a forward pass adds,
 * and the algorithms conv.c dispatches to. conv.c: the N-API entry point and the choice between the
 * paths; conv_direct.c: direct loops for stride-1 layers; conv_narrow.c: direct loops into few output
 * channels; conv_winograd.c and conv_winograd_transforms.c: Winograd F(4x4, 3x3) (or F(2x2, 3x3)) tiles
 * for 3x3 stride-1 layers, on the direct kernels; conv_im2col.c: im2col + sgemm for everything else.
 */
#ifndef DIFFUSE_CONV_H
#define DIFFUSE_CONV_H

#include "kernels.h"

/*
 * Convolutions, NHWC, filter [kh, kw, in, out] (tfjs's layouts). The geometry comes as an Int32Array:
 * batch, inH, inW, inC, outH, outW, outC, kH, kW, strideH, strideW, padTop, padLeft, dilationH, dilationW.
 */
typedef struct {
  int64_t batch, inH, inW, inC, outH, outW, outC, kH, kW, sH, sW, padTop, padLeft, dH, dW;
} conv_geom;

static inline int64_t patch_size(const conv_geom *g) { return g->kH * g->kW * g->inC; }

/* What conv(mode, ...) computes: y, dx or dfilter. */
enum { CONV_FORWARD = 0, CONV_GRAD_INPUT = 1, CONV_GRAD_FILTER = 2 };

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

/* The direct loops read each image inside a zero frame: outH + kH - 1 rows of outW + kW - 1 pixels. */
static inline int64_t padded_height(const conv_geom *g) { return g->outH + g->kH - 1; }
static inline int64_t padded_width(const conv_geom *g) { return g->outW + g->kW - 1; }

/* Winograd's m x m tiles down and across an output image. */
static inline int64_t tiles_down(const conv_geom *g, int m) { return (g->outH + m - 1) / m; }
static inline int64_t tiles_across(const conv_geom *g, int m) { return (g->outW + m - 1) / m; }

/* Where tile t of the batch sits: its image, and its top-left output pixel. */
static inline void tile_place(const conv_geom *g, int m, int64_t t, int64_t *img, int64_t *oy, int64_t *ox) {
  const int64_t TW = tiles_across(g, m), per = tiles_down(g, m) * TW;
  *img = t / per, *oy = m * ((t % per) / TW), *ox = m * (t % TW);
}

/* How many of m rows (or columns) from `from` lie inside `size`. */
static inline int inside(int64_t from, int64_t size, int m) { return size - from < m ? (int)(size - from) : m; }

void add_bias(float *y, const conv_bias *bias, int64_t batch, int64_t P, int64_t C);

/* conv_direct.c */
void direct_forward_image(const conv_geom *g, const float *xp, const float *filter, float *y, const float *b, int64_t bp);
void direct_filter_grad_image(const conv_geom *g, const float *xp, const float *dy, float *dfilter);

/* conv_narrow.c */
bool narrow_eligible(const conv_geom *g);
void narrow_forward_image(const conv_geom *g, const float *xp, const float *ft, float *y);

/* conv_winograd.c */
int winograd_tile(const conv_geom *g);
bool conv_winograd(int mode, int m, const conv_geom *g, const float *a, const float *b, float *out, const conv_bias *bias);

/* conv_winograd_transforms.c */
void winograd_filter(int m, const float *f, int64_t S, float *U);
void winograd_filter_grad(int m, const float *dU, int64_t S, float *df);
void winograd_input(const conv_geom *g, int m, const float *x, int64_t first, int64_t n, float *V);

/* conv_im2col.c */
bool conv_im2col(int mode, const conv_geom *g, const float *a, const float *b, float *out, const conv_bias *bias);

#endif
