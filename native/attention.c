/*
 * Multi-head self-attention, O = softmax(scale·Q Kᵀ) V per head, and its gradient, without the
 * attention matrices: each query row's scores live in a row-sized scratch and are recomputed in the
 * backward pass from the row's log-sum-exp (as FlashAttention does). At 16 px (256 tokens) those
 * matrices were 256 KiB per image and head, written, softmaxed and multiplied back through memory.
 *
 * Layout: q, k, v, o [batch, tokens, channels] with head h in channels [h·d, (h + 1)·d), d =
 * channels / heads; lse [batch, heads, tokens]. The geometry comes as an Int32Array: batch, tokens,
 * channels, heads. Each (image, head) goes to one thread; its keys and values are first copied
 * transposed ([d, tokens], contiguous over tokens) so the score loops run along tokens; query rows go
 * in blocks (QROWS below).
 */
#include "kernels.h"

/*
 * Tokens go in vectors of VW floats (kernels.h: one register of the set compiled), a head's transposed keys
 * and values padded to whole vectors. A head's channels go in vectors of VW, then of AW (heads of 8 or
 * 24 channels stay in vectors). Lane by lane the sums are the same whatever the width.
 */
typedef struct {
  int64_t B, N, C, H, D;
} attn_geom;

static bool read_attn(napi_env env, napi_value v, attn_geom *g) {
  size_t len = 0;
  const int32_t *d = i32(env, v, &len);
  if (!d) return false;
  if (len != 4 || d[0] < 1 || d[1] < 1 || d[3] < 1 || d[2] % d[3] != 0) {
    napi_throw_range_error(env, NULL, "attention: geometry is [batch, tokens, channels, heads], heads dividing channels");
    return false;
  }
  *g = (attn_geom){d[0], d[1], d[2], d[3], d[2] / d[3]};
  return true;
}

static bool sized(napi_env env, size_t len, size_t want) {
  if (len == want) return true;
  napi_throw_range_error(env, NULL, "attention: an array's size does not match the geometry");
  return false;
}

static int64_t padded(int64_t n) { return (n + VW - 1) / VW * VW; }

/* t[c·NP + j] ← x[(b·N + j)·C + h·D + c]: head h of image b, transposed; zeros past N. */
static void gather_transposed(const attn_geom *g, const float *x, int64_t b, int64_t h, float *t) {
  const int64_t NP = padded(g->N);
  for (int64_t j = 0; j < g->N; j++) {
    const float *row = x + (b * g->N + j) * g->C + h * g->D;
    for (int64_t c = 0; c < g->D; c++) t[c * NP + j] = row[c];
  }
  for (int64_t c = 0; c < g->D; c++)
    for (int64_t j = g->N; j < NP; j++) t[c * NP + j] = 0.0f;
}

/*
 * Blocks of QROWS query rows: each key vector loaded serves QROWS rows' scores,
 * and each value row QROWS rows' sums, so the sums are independent chains instead of one chain per
 * row waiting on its multiply-add's latency (one row at a time ran at ~17 GFLOP/s).
 */
enum { QROWS = 6 };

/*
 * s[r·NP + j] ← scale · q_r·k_j for `rows` query rows `qs` floats apart (rows a constant where called);
 * `qk` takes the scaled rows, [D][QROWS], so the loop over keys only loads them.
 */
static inline __attribute__((always_inline)) void scores_rows(const attn_geom *g, const float *q, int64_t qs, const float *kt, float scale, float *qk, float *s, const int rows) {
  const int64_t NP = padded(g->N), D = g->D;
  for (int64_t c = 0; c < D; c++)
    for (int r = 0; r < rows; r++) qk[c * QROWS + r] = q[r * qs + c] * scale;
  int64_t j = 0;
  for (; j + 2 * VW <= NP; j += 2 * VW) { /* two key vectors per scaled query value loaded */
    vecf acc[QROWS][2];
    for (int r = 0; r < rows; r++) acc[r][0] = acc[r][1] = (vecf){0};
    for (int64_t c = 0; c < D; c++) {
      const vecf k0 = loadv(kt + c * NP + j), k1 = loadv(kt + c * NP + j + VW);
      for (int r = 0; r < rows; r++) {
        const float qc = qk[c * QROWS + r];
        acc[r][0] += qc * k0, acc[r][1] += qc * k1;
      }
    }
    for (int r = 0; r < rows; r++) storev(s + r * NP + j, acc[r][0]), storev(s + r * NP + j + VW, acc[r][1]);
  }
  if (j < NP) {
    vecf acc[QROWS];
    for (int r = 0; r < rows; r++) acc[r] = (vecf){0};
    for (int64_t c = 0; c < D; c++) {
      const vecf kv = loadv(kt + c * NP + j);
      for (int r = 0; r < rows; r++) acc[r] += qk[c * QROWS + r] * kv;
    }
    for (int r = 0; r < rows; r++) storev(s + r * NP + j, acc[r]);
  }
}

static inline vecf vmax(vecf a, vecf b) {
  vecf m;
  for (int i = 0; i < VW; i++) m[i] = a[i] > b[i] ? a[i] : b[i];
  return m;
}

/* The largest of x[0..n), a vector at a time (a scalar loop's compare chain was 15% of the kernel). */
static inline float row_max(const float *x, int64_t n) {
  float max = x[0];
  int64_t j = 0;
  if (n >= VW) {
    vecf m = loadv(x);
    for (j = VW; j + VW <= n; j += VW) m = vmax(m, loadv(x + j));
    for (int i = 0; i < VW; i++) max = m[i] > max ? m[i] : max;
  }
  for (; j < n; j++) max = x[j] > max ? x[j] : max;
  return max;
}

/*
 * o_r[c] ← inv[r] · Σ_j p[r·NP + j] v_j[c] for `rows` rows (o and v rows C floats apart), nv vectors of
 * W channels from c0: one function per vector type T (W floats, loads LD, stores ST).
 */
#define VALUE_SUMS(T, W, LD, ST, SUFFIX)                                                                                     \
  static inline __attribute__((always_inline)) void value_sums_##SUFFIX(const attn_geom *g, const float *p, const float *v, \
                                                                        const float *inv, float *o, int64_t c0,              \
                                                                        const int rows, const int nv) {                      \
    const int64_t NP = padded(g->N), C = g->C;                                                                               \
    T acc[QROWS][2];                                                                                                         \
    for (int r = 0; r < rows; r++)                                                                                           \
      for (int u = 0; u < nv; u++) acc[r][u] = (T){0};                                                                       \
    for (int64_t j = 0; j < g->N; j++) {                                                                                     \
      T vj[2];                                                                                                               \
      for (int u = 0; u < nv; u++) vj[u] = LD(v + j * C + c0 + u * W);                                                      \
      for (int r = 0; r < rows; r++) {                                                                                       \
        const float pr = p[r * NP + j];                                                                                      \
        for (int u = 0; u < nv; u++) acc[r][u] += pr * vj[u];                                                                \
      }                                                                                                                      \
    }                                                                                                                        \
    for (int r = 0; r < rows; r++)                                                                                           \
      for (int u = 0; u < nv; u++) ST(o + r * C + c0 + u * W, acc[r][u] * inv[r]);                                          \
  }
VALUE_SUMS(av, AW, lda, sta, a)
VALUE_SUMS(vecf, VW, loadv, storev, v)

/*
 * value_sums over all D channels: vectors of 2·VW and VW (16 floats on AVX-512: a head of 16 channels
 * took two 8-float multiply-adds per key and row), then of 2·AW and AW (heads of 8 or 24), then one
 * channel at a time. Each channel's sum is the same in every width.
 */
static inline __attribute__((always_inline)) void all_value_sums(const attn_geom *g, const float *p, const float *v, const float *inv, float *o, const int rows) {
  const int64_t NP = padded(g->N), C = g->C, D = g->D;
  int64_t c0 = 0;
  for (; c0 + 2 * VW <= D; c0 += 2 * VW) value_sums_v(g, p, v, inv, o, c0, rows, 2);
  if (c0 + VW <= D) value_sums_v(g, p, v, inv, o, c0, rows, 1), c0 += VW;
  for (; c0 + 2 * AW <= D; c0 += 2 * AW) value_sums_a(g, p, v, inv, o, c0, rows, 2);
  if (c0 + AW <= D) value_sums_a(g, p, v, inv, o, c0, rows, 1), c0 += AW;
  for (; c0 < D; c0++)
    for (int r = 0; r < rows; r++) {
      float acc = 0;
      for (int64_t j = 0; j < g->N; j++) acc += p[r * NP + j] * v[j * C + c0];
      o[r * C + c0] = acc * inv[r];
    }
}

/*
 * Attention of `rows` query rows of one (image, head): o and lse of rows [i, i + rows). q, v, o point at
 * the head's first token; p is QROWS·(NP + D) floats of scratch.
 */
static inline __attribute__((always_inline)) void attend_rows(const attn_geom *g, const float *q, const float *kt, const float *v, float scale, float *p, float *o, float *lse, int64_t i, const int rows) {
  const int64_t N = g->N, NP = padded(N), C = g->C;
  float inv[QROWS];
  scores_rows(g, q + i * C, C, kt, scale, p + QROWS * NP, p, rows);
  for (int r = 0; r < rows; r++) {
    float *pr = p + r * NP, max = row_max(pr, N), sum = 0;
    for (int64_t j = 0; j < N; j++) pr[j] = exp_f(pr[j] - max);
    for (int64_t j = 0; j < N; j++) sum += pr[j];
    inv[r] = 1.0f / sum;
    lse[i + r] = max + logf(sum);
  }
  all_value_sums(g, p, v, inv, o + i * C, rows);
}

static void attend_head(const attn_geom *g, const float *q, const float *kt, const float *v, float scale, float *p, float *o, float *lse) {
  int64_t i = 0;
  for (; i + QROWS <= g->N; i += QROWS) attend_rows(g, q, kt, v, scale, p, o, lse, i, QROWS);
  switch (g->N - i) {
    case 5: attend_rows(g, q, kt, v, scale, p, o, lse, i, 5); break;
    case 4: attend_rows(g, q, kt, v, scale, p, o, lse, i, 4); break;
    case 3: attend_rows(g, q, kt, v, scale, p, o, lse, i, 3); break;
    case 2: attend_rows(g, q, kt, v, scale, p, o, lse, i, 2); break;
    case 1: attend_rows(g, q, kt, v, scale, p, o, lse, i, 1); break;
  }
}

/*
 * The gradient of `rows` query rows [i, i + rows) of one (image, head), as attention_grad's comment
 * says, by blocks: dv and dk (transposed, [D][NP]) read and written once per block, not once per row.
 * q, dO, o, k, dq point at the head's first token; p is QROWS·(2·NP + D) floats of scratch.
 */
static inline __attribute__((always_inline)) void attend_grad_rows(const attn_geom *g, const float *q, const float *dO, const float *o, const float *k, const float *kt, const float *vt, const float *lse, float scale, float *p, float *dkt, float *dvt, float *dq, int64_t i, const int rows) {
  const int64_t N = g->N, NP = padded(N), C = g->C, D = g->D;
  float *ds = p + QROWS * NP, *qk = ds + QROWS * NP;
  float Di[QROWS], one[QROWS];
  for (int r = 0; r < QROWS; r++) one[r] = 1.0f;
  scores_rows(g, q + i * C, C, kt, scale, qk, p, rows);
  scores_rows(g, dO + i * C, C, vt, 1.0f, qk, ds, rows); /* dp_j = dO_i·v_j */
  for (int r = 0; r < rows; r++) {
    float *pr = p + r * NP, *dr = ds + r * NP;
    const float l = lse[i + r];
    for (int64_t j = 0; j < N; j++) pr[j] = exp_f(pr[j] - l);
    for (int64_t j = N; j < NP; j++) pr[j] = 0;
    float d = 0;
    for (int64_t c = 0; c < D; c++) d += dO[(i + r) * C + c] * o[(i + r) * C + c];
    Di[r] = d;
    for (int64_t j = 0; j < NP; j++) dr[j] = (scale * pr[j]) * (dr[j] - Di[r]);
  }
  for (int64_t c = 0; c < D; c++)
    for (int64_t j = 0; j < NP; j += VW) {
      vecf dv = loadv(dvt + c * NP + j), dk = loadv(dkt + c * NP + j);
      for (int r = 0; r < rows; r++) {
        dv += dO[(i + r) * C + c] * loadv(p + r * NP + j);
        dk += q[(i + r) * C + c] * loadv(ds + r * NP + j);
      }
      storev(dvt + c * NP + j, dv), storev(dkt + c * NP + j, dk);
    }
  all_value_sums(g, ds, k, one, dq + i * C, rows); /* dq_i = Σ_j ds_j k_j */
}

static void attend_grad_head(const attn_geom *g, const float *q, const float *dO, const float *o, const float *k, const float *kt, const float *vt, const float *lse, float scale, float *p, float *dkt, float *dvt, float *dq) {
  int64_t i = 0;
  for (; i + QROWS <= g->N; i += QROWS) attend_grad_rows(g, q, dO, o, k, kt, vt, lse, scale, p, dkt, dvt, dq, i, QROWS);
  switch (g->N - i) {
    case 5: attend_grad_rows(g, q, dO, o, k, kt, vt, lse, scale, p, dkt, dvt, dq, i, 5); break;
    case 4: attend_grad_rows(g, q, dO, o, k, kt, vt, lse, scale, p, dkt, dvt, dq, i, 4); break;
    case 3: attend_grad_rows(g, q, dO, o, k, kt, vt, lse, scale, p, dkt, dvt, dq, i, 3); break;
    case 2: attend_grad_rows(g, q, dO, o, k, kt, vt, lse, scale, p, dkt, dvt, dq, i, 2); break;
    case 1: attend_grad_rows(g, q, dO, o, k, kt, vt, lse, scale, p, dkt, dvt, dq, i, 1); break;
  }
}

/* `per` floats of scratch for each thread that will share `pairs` (image, head) pairs; NULL (thrown) when out of memory. */
static float *thread_scratch(napi_env env, int64_t pairs, int64_t per, int *threads) {
  *threads = pairs > 1 ? omp_get_max_threads() : 1;
  float *scratch = (float *)malloc(sizeof(float) * *threads * per);
  if (!scratch) napi_throw_error(env, NULL, "attention: out of memory");
  return scratch;
}

/* attention(q, k, v, geom, scale, o, lse) */
napi_value attention(napi_env env, napi_callback_info info) {
  ARGS(7);
  attn_geom g;
  if (!read_attn(env, argv[3], &g)) return NULL;
  size_t lq = 0, lk = 0, lv = 0, lo = 0, ll = 0;
  const float *q = f32(env, argv[0], &lq), *k = f32(env, argv[1], &lk), *v = f32(env, argv[2], &lv);
  const float scale = (float)num(env, argv[4]);
  float *o = f32(env, argv[5], &lo), *lse = f32(env, argv[6], &ll);
  if (!q || !k || !v || !o || !lse) return NULL;
  const size_t all = (size_t)(g.B * g.N * g.C);
  if (!sized(env, lq, all) || !sized(env, lk, all) || !sized(env, lv, all) || !sized(env, lo, all) || !sized(env, ll, (size_t)(g.B * g.H * g.N)))
    return NULL;
  const int64_t N = g.N, NP = padded(N), D = g.D, pairs = g.B * g.H, per = D * NP + QROWS * (NP + D);
  int threads;
  float *scratch = thread_scratch(env, pairs, per, &threads);
  if (!scratch) return NULL;
#pragma omp parallel num_threads(threads)
  {
    float *kt = scratch + (int64_t)omp_get_thread_num() * per, *p = kt + D * NP;
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < pairs; bh++) {
      const int64_t b = bh / g.H, h = bh % g.H, head = b * N * g.C + h * D;
      gather_transposed(&g, k, b, h, kt);
      attend_head(&g, q + head, kt, v + head, scale, p, o + head, lse + bh * N);
    }
  }
  free(scratch);
  return NULL;
}

/*
 * attentionGrad(dO, q, k, v, o, lse, geom, scale, dq, dk, dv): per query row i, with p_j = exp(s_j −
 * lse_i) recomputed, D_i = dO_i·o_i: dv_j += p_j dO_i; ds_j = p_j (dO_i·v_j − D_i); dq_i = scale Σ_j
 * ds_j k_j; dk_j += scale ds_j q_i.
 */
napi_value attention_grad(napi_env env, napi_callback_info info) {
  ARGS(11);
  attn_geom g;
  if (!read_attn(env, argv[6], &g)) return NULL;
  size_t ld = 0, lq = 0, lk = 0, lv = 0, lo = 0, ll = 0, l1 = 0, l2 = 0, l3 = 0;
  const float *dO = f32(env, argv[0], &ld), *q = f32(env, argv[1], &lq), *k = f32(env, argv[2], &lk), *v = f32(env, argv[3], &lv);
  const float *o = f32(env, argv[4], &lo), *lse = f32(env, argv[5], &ll);
  const float scale = (float)num(env, argv[7]);
  float *dq = f32(env, argv[8], &l1), *dk = f32(env, argv[9], &l2), *dv = f32(env, argv[10], &l3);
  if (!dO || !q || !k || !v || !o || !lse || !dq || !dk || !dv) return NULL;
  const size_t all = (size_t)(g.B * g.N * g.C);
  if (!sized(env, ld, all) || !sized(env, lq, all) || !sized(env, lk, all) || !sized(env, lv, all) || !sized(env, lo, all) ||
      !sized(env, ll, (size_t)(g.B * g.H * g.N)) || !sized(env, l1, all) || !sized(env, l2, all) || !sized(env, l3, all))
    return NULL;
  const int64_t N = g.N, NP = padded(N), D = g.D, pairs = g.B * g.H, per = 4 * D * NP + QROWS * (2 * NP + D);
  int threads;
  float *scratch = thread_scratch(env, pairs, per, &threads);
  if (!scratch) return NULL;
#pragma omp parallel num_threads(threads)
  {
    float *kt = scratch + (int64_t)omp_get_thread_num() * per, *vt = kt + D * NP, *dkt = vt + D * NP, *dvt = dkt + D * NP;
    float *p = dvt + D * NP;
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < pairs; bh++) {
      const int64_t b = bh / g.H, h = bh % g.H;
      gather_transposed(&g, k, b, h, kt);
      gather_transposed(&g, v, b, h, vt);
      for (int64_t x = 0; x < 2 * D * NP; x++) dkt[x] = 0; /* dkt and dvt */
      const int64_t head = b * N * g.C + h * D;
      attend_grad_head(&g, q + head, dO + head, o + head, k + head, kt, vt, lse + bh * N, scale, p, dkt, dvt, dq + head);
      for (int64_t j = 0; j < N; j++) {
        const int64_t at = (b * N + j) * g.C + h * D;
        for (int64_t c = 0; c < D; c++) dk[at + c] = dkt[c * NP + j], dv[at + c] = dvt[c * NP + j];
      }
    }
  }
  free(scratch);
  return NULL;
}
