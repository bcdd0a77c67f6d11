/*
 * Few output channels (the U-net's last layer: 1 or 3, or 12 on 2x2 patches): each output value is the
 * dot product of the filter with its kH runs of kW·inC contiguous padded values; NARROW_PIXELS pixels
 * of a row by NARROW_OUTPUTS channels at a time, so each vector loaded serves several multiply-adds.
 * `ft` is the filter per output channel, [outC][kH, kW, inC]. (im2col copied every input value kH·kW times for a product one column wide.)
 */
#include "conv.h"

enum { NARROW_PIXELS = 4, NARROW_OUTPUTS = 3 };
bool narrow_eligible(const conv_geom *g) { return g->outC < 16 && (g->kW * g->inC) % VW == 0; }

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

void narrow_forward_image(const conv_geom *g, const float *xp, const float *ft, float *y) {
  for (int64_t oy = 0; oy < g->outH; oy++)
    for (int64_t co = 0; co < g->outC; co += NARROW_OUTPUTS) {
      const int64_t left = g->outC - co; /* each count a constant, so the sums stay in registers */
      if (left >= NARROW_OUTPUTS) narrow_row(g, xp, ft, y, oy, co, NARROW_OUTPUTS);
      else if (left == 2) narrow_row(g, xp, ft, y, oy, co, 2);
      else narrow_row(g, xp, ft, y, oy, co, 1);
    }
}
