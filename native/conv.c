/*
 * 2-D convolutions (NHWC) and both their gradients: the N-API entry point and the choice of path.
 * Winograd F(4x4, 3x3) tiles for 3x3 stride-1 layers (conv_winograd.c), direct loops for other stride-1
 * layers (conv_direct.c; conv_narrow.c into few output channels), else im2col + sgemm (conv_im2col.c).
 */
#include "conv.h"

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

static bool direct_eligible(const conv_geom *g) { return g->sH == 1 && g->sW == 1 && g->dH == 1 && g->dW == 1; }

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

/* y[batch, P, C] += the bias, in one pass after loops that stored no bias. */
void add_bias(float *y, const conv_bias *bias, int64_t batch, int64_t P, int64_t C) {
  if (bias->pixel) broadcast_binary(0, y, bias->v, y, batch * P * C, batch * P * C, 1, false);
  else if (bias->image) broadcast_binary(0, y, bias->v, y, batch * P * C, batch * C, batch, false);
  else broadcast_binary(0, y, bias->v, y, batch * P * C, C, 1, false);
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
  if (!conv_im2col(mode, &g, a, b, out, bias)) napi_throw_error(env, NULL, "conv: out of memory");
  return NULL;
}
