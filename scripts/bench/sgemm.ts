/** OpenBLAS's sgemm on the addon: the machine's yardstick. */
import { loadNativeAddon } from '../../src/backend/addon';

/** OpenBLAS sgemm GFLOP/s for 1024³ on all cores, best of five after one warm-up. */
export function sgemmGflops(): number {
  const { product, flops } = sgemmProduct(1024);
  let best = Infinity;
  for (let r = 0; r < 6; r++) {
    const started = process.hrtime.bigint();
    product();
    if (r > 0) best = Math.min(best, Number(process.hrtime.bigint() - started) / 1e9);
  }
  return flops / best / 1e9;
}

/** One n³ sgemm on the addon (on its current thread count) and its FLOPs. */
export function sgemmProduct(n: number): { product: () => void; flops: number } {
  const native = loadNativeAddon()!;
  const a = new Float32Array(n * n).fill(0.5), b = new Float32Array(n * n).fill(0.25), c = new Float32Array(n * n);
  return { product: () => native.sgemm(false, false, n, n, n, a, b, c), flops: 2 * n ** 3 };
}
