/**
 * `npm run bench`: training throughput, sampling time and peak memory of the seed model (w = 2048,
 * batch 128, Adam) on each available backend, beside the PyTorch reference in the same run; and the
 * training throughput of the 32-px convolutional U-net of the twin's shape (MNIST-32, batch 64) beside its PyTorch twin.
 * Each measurement runs in its own process so its peak RSS is its own. The U-net rows also give GFLOP/s:
 * FLOPs per image counted from the layer shapes of one forward pass (2 per multiply-add of every
 * convolution and matrix product; the norms, activations and adds left out), three times that per
 * training sample (forward, input gradient, weight gradient), beside OpenBLAS's sgemm on the same cores.
 * They count a 3x3 convolution's FLOPs as the direct definition does; diffuse's Winograd F(4x4, 3x3)
 * tiles do 4x fewer multiply-adds there, so its figure is the direct-equivalent rate (DIFFUSE_WINOGRAD=0
 * to compare).
 *
 *   npm run bench                       # blas and wasm (those available), and PyTorch if installed
 *   npm run bench -- --backends blas    # a subset; --no-torch skips the reference
 *   npm run bench -- --unet64           # also 64-px RGB U-nets (the twin's configuration and today's default)
 *   npm run bench -- --rounds-only       # only the rounds below (cores; sampling against the twin)
 *
 * With PyTorch, the U-net's sampling (64 images x 100 DDIM steps) is also timed in three rounds of
 * (ours, the twin's), each in a fresh process, and the bench prints the ratio per round and their median,
 * also over the rounds where the machine's cores were worth their count before and after (as below).
 *
 * With blas and `taskset`, the twin-shaped U-net also trains in five rounds of (all cores, then each
 * core alone: one thread, pinned), and the bench prints what all cores together are worth in one
 * core's throughput (the cores' mean), per round and the rounds' median, beside what the machine's
 * cores are worth for plain arithmetic in the same minute (see machineWorth in bench/cores.ts).
 *
 * This file reads the options, runs the parts and prints the figures and the summary; the parts are in
 * scripts/bench/: backend.ts (one backend's child process), unet.ts, sgemm.ts, cores.ts and torch.ts.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { defaultBackendEnv, selectBackend } from '../src/backend/select';
import { loadNativeAddon, nativeLoadError } from '../src/backend/addon';
import { REFERENCE, Result, UNET_REFERENCE, fullRounds, median } from './bench/common';
import { measure, runChild } from './bench/backend';
import { coresWorth, probeGflops } from './bench/cores';
import { SamplingRound, python, samplingRounds, torchBench, torchUnetBench, tunedCoretype } from './bench/torch';
import { measureUnet, measureUnetSampling } from './bench/unet';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--child') {
    console.log(JSON.stringify(await measure(args[1], +args[2], +args[3], +args[4], +args[5])));
    return;
  }
  if (args[0] === '--probe') {
    console.log(`probe_gflops ${probeGflops().toFixed(2)}`);
    return;
  }
  if (args[0] === '--unet-sample') {
    await selectBackend('blas', { ...defaultBackendEnv, log: () => {} });
    console.log(`unet_sample_s ${measureUnetSampling(100).toFixed(3)}`);
    return;
  }
  if (args[0] === '--unet-rate') {
    await selectBackend('blas', { ...defaultBackendEnv, log: () => {} });
    console.log(`unet_rate ${measureUnet(20).toFixed(1)}`); // availableParallelism() is 1 under taskset: no worker threads
    return;
  }
  const backendsArg = args.indexOf('--backends');
  const roundsOnly = args.includes('--rounds-only');
  const backends = roundsOnly ? [] : backendsArg >= 0 ? args[backendsArg + 1].split(',') : ['tensorflow', 'blas', 'wasm'];
  const results: Result[] = [];
  // The instruction set of the blas rows' kernels (the widest this CPU runs, or DIFFUSE_ISA's).
  console.log(`native_kernels ${loadNativeAddon()?.isa ?? `none (${nativeLoadError()})`}${process.env.DIFFUSE_ISA ? ' (DIFFUSE_ISA)' : ''}`);
  for (const b of backends) {
    const r = runChild(b, args.includes('--unet64'));
    if (!r || (b !== r.backend)) continue;
    results.push(r);
    console.log(`train_samples_per_s backend=${r.backend} ${r.trainSamplesPerSecond.toFixed(0)}`);
    console.log(`sample_64x1000_s backend=${r.backend} ${r.sampleSeconds.toFixed(1)}${r.sampleEstimated ? ' (extrapolated)' : ''}`);
    console.log(`peak_rss_mb backend=${r.backend} ${r.peakRssMb.toFixed(0)}`);
    console.log(`unet32_train_samples_per_s backend=${r.backend} ${r.unetTrainSamplesPerSecond?.toFixed(1)}`);
    if (r.unetSampleSeconds) console.log(`unet32_sample_64x100_s backend=${r.backend} ${r.unetSampleSeconds.toFixed(2)}`);
    if (r.unetForwardFlops) console.log(`unet32_forward_mflop_per_image ${(r.unetForwardFlops / 1e6).toFixed(1)}`);
    if (r.sgemmGflops) console.log(`sgemm_1024_gflops backend=${r.backend} ${r.sgemmGflops.toFixed(1)}`);
    if (r.unet64TwinSamplesPerSecond) console.log(`unet64rgb_twin_config_train_samples_per_s backend=${r.backend} ${r.unet64TwinSamplesPerSecond.toFixed(1)}`);
    if (r.unet64DefaultSamplesPerSecond) console.log(`unet64rgb_default_train_samples_per_s backend=${r.backend} ${r.unet64DefaultSamplesPerSecond.toFixed(1)}`);
  }
  const rounds = results.some((r) => r.backend === 'blas') || (roundsOnly && loadNativeAddon()) ? await coresWorth(5) : null;
  const worth = rounds ? median(rounds.map((r) => r.worth)) : null;
  const full = rounds?.length ? fullRounds(rounds, rounds[0].single.length) : [];
  if (rounds && worth) {
    const cores = rounds[0].single.length;
    rounds.forEach((r, i) => console.log(`unet32_train_samples_per_s backend=blas round=${i + 1} all_cores ${r.all.toFixed(1)} ${r.single.map((rate, core) => `one_core=${core} ${rate.toFixed(1)}`).join(' ')} worth ${r.worth.toFixed(2)} machine_worth ${r.machine.map((m) => m.toFixed(2)).join(' ')}`));
    console.log(`unet32_all_cores_worth_one_cores backend=blas ${worth.toFixed(2)} (median of ${rounds.length} rounds: ${rounds.map((r) => r.worth.toFixed(2)).join(', ')}; of ${cores} possible)`);
    console.log(`unet32_all_cores_worth_one_cores_full_rounds backend=blas ${full.length ? median(full.map((r) => r.worth)).toFixed(2) : '-'} (${full.length} of ${rounds.length} rounds with the machine's cores worth >= ${(0.95 * cores).toFixed(2)} before and after)`);
  }
  const references: Result[] = [];
  let sampling: SamplingRound[] = [];
  let samplingFull: SamplingRound[] = [];
  const py = args.includes('--no-torch') ? null : python();
  if (py && fs.existsSync(REFERENCE)) {
    const plain = roundsOnly ? null : torchBench(py, {}, 'torch');
    if (plain) {
      const unet = torchUnetBench(py, {});
      plain.unetTrainSamplesPerSecond = unet?.train;
      plain.unetSampleSeconds = unet?.sample;
      // The same model, so the same FLOPs: the twin's GFLOP/s use ours.
      plain.unetForwardFlops = results[0]?.unetForwardFlops;
      plain.unet64TwinForwardFlops = results[0]?.unet64TwinForwardFlops;
      if (args.includes('--unet64')) plain.unet64TwinSamplesPerSecond = torchUnetBench(py, {}, 64, 3)?.train;
    }
    // The same OpenBLAS kernel choice as ours (see src/backend/addon.ts), so the comparison is fair.
    const coretype = process.env.OPENBLAS_CORETYPE ?? tunedCoretype();
    const tuned = coretype && !roundsOnly ? torchBench(py, { OPENBLAS_CORETYPE: coretype }, `torch-${coretype}`) : null;
    for (const r of [plain, tuned]) {
      if (!r) continue;
      references.push(r);
      console.log(`train_samples_per_s backend=${r.backend} ${r.trainSamplesPerSecond.toFixed(0)}`);
      console.log(`sample_64x1000_s backend=${r.backend} ${r.sampleSeconds.toFixed(1)}`);
      console.log(`peak_rss_mb backend=${r.backend} ${r.peakRssMb.toFixed(0)}`);
    }
    for (const ours of results) {
      for (const ref of references) {
        console.log(`ratio_train backend=${ours.backend} vs=${ref.backend} ${(ours.trainSamplesPerSecond / ref.trainSamplesPerSecond).toFixed(2)}`);
        console.log(`ratio_sample_time backend=${ours.backend} vs=${ref.backend} ${(ours.sampleSeconds / ref.sampleSeconds).toFixed(2)}`);
        if (ours.unetTrainSamplesPerSecond && ref.unetTrainSamplesPerSecond) console.log(`ratio_unet32_train backend=${ours.backend} vs=${ref.backend} ${(ours.unetTrainSamplesPerSecond / ref.unetTrainSamplesPerSecond).toFixed(2)}`);
        if (ours.unetSampleSeconds && ref.unetSampleSeconds) console.log(`ratio_unet32_sample_time backend=${ours.backend} vs=${ref.backend} ${(ours.unetSampleSeconds / ref.unetSampleSeconds).toFixed(2)}`);
        if (ours.unet64TwinSamplesPerSecond && ref.unet64TwinSamplesPerSecond) console.log(`ratio_unet64rgb_train backend=${ours.backend} vs=${ref.backend} ${(ours.unet64TwinSamplesPerSecond / ref.unet64TwinSamplesPerSecond).toFixed(2)}`);
      }
    }
    if ((results.some((r) => r.backend === 'blas') || roundsOnly) && fs.existsSync(UNET_REFERENCE)) {
      sampling = await samplingRounds(py, 3);
      samplingFull = fullRounds(sampling, os.availableParallelism());
      sampling.forEach((r, i) => console.log(`unet32_sample_64x100_s round=${i + 1} blas ${r.ours.toFixed(2)} torch ${r.twin.toFixed(2)} ratio ${r.ratio.toFixed(2)} machine_worth ${r.machine.map((m) => m.toFixed(2)).join(' ')}`));
      if (sampling.length) {
        console.log(`ratio_unet32_sample_time_rounds backend=blas vs=torch ${median(sampling.map((r) => r.ratio)).toFixed(2)} (median of ${sampling.length} rounds)`);
        console.log(`ratio_unet32_sample_time_full_rounds backend=blas vs=torch ${samplingFull.length ? median(samplingFull.map((r) => r.ratio)).toFixed(2) : '-'} (${samplingFull.length} of ${sampling.length} rounds with the machine's cores worth >= ${(0.95 * os.availableParallelism()).toFixed(2)} before and after)`);
      }
    }
  } else if (!args.includes('--no-torch')) {
    console.error('PyTorch not found (apt-get install -y python3-torch python3-numpy libopenblas0-pthread): no reference');
  }
  const rows = [...results, ...references];
  const num = (v: number | undefined) => (v === undefined ? '-' : v.toFixed(1));
  const wide = args.includes('--unet64');
  // Training GFLOP/s: three forward passes' FLOPs per sample.
  const gflops = (sps?: number, flops?: number) => (sps && flops ? ((3 * flops * sps) / 1e9).toFixed(0) : '-');
  const seconds = (v?: number) => (v === undefined ? '-' : `${v.toFixed(1)} s`);
  if (rows.length) {
    console.log(`\n| backend | FC train samples/s | FC sample 64 x 1000 steps | peak RSS | U-net 32 px train samples/s (GFLOP/s) | U-net 32 px sample 64 x 100 DDIM |${wide ? ' U-net 64 px RGB (twin config) (GFLOP/s) | U-net 64 px RGB (default) (GFLOP/s) |' : ''}`);
    console.log(`|---|---:|---:|---:|---:|---:|${wide ? '---:|---:|' : ''}`);
    for (const r of rows) {
      const extra = wide ? ` ${num(r.unet64TwinSamplesPerSecond)} (${gflops(r.unet64TwinSamplesPerSecond, r.unet64TwinForwardFlops)}) | ${num(r.unet64DefaultSamplesPerSecond)} (${gflops(r.unet64DefaultSamplesPerSecond, r.unet64DefaultForwardFlops)}) |` : '';
      console.log(`| ${r.backend} | ${r.trainSamplesPerSecond.toFixed(0)} | ${r.sampleSeconds.toFixed(1)} s${r.sampleEstimated && !r.backend.startsWith('torch') ? ' (extrapolated)' : ''} | ${r.peakRssMb.toFixed(0)} MB | ${num(r.unetTrainSamplesPerSecond)} (${gflops(r.unetTrainSamplesPerSecond, r.unetForwardFlops)}) | ${seconds(r.unetSampleSeconds)} |${extra}`);
    }
  }
  if (rounds && worth) {
    const cores = rounds[0].single.length;
    console.log(`\nU-net 32 px training, all ${cores} cores against each core alone (pinned, one thread), in ${rounds.length} rounds: ${rounds.map((r) => `${r.all.toFixed(1)} vs ${r.single.map((x) => x.toFixed(1)).join(' / ')} samples/s (worth ${r.worth.toFixed(2)}; machine ${r.machine.map((m) => m.toFixed(2)).join(' / ')})`).join('; ')}. All cores together are worth ${worth.toFixed(2)} of one (the rounds' median)${full.length ? `, ${median(full.map((r) => r.worth)).toFixed(2)} in the ${full.length} rounds where the machine's cores were worth ${cores} (within 5%) for arithmetic` : `; in no round were the machine's cores worth ${cores} for arithmetic`} (machine: sgemm 256³ on one thread per core, all cores at once against each alone, before and after each round).`);
  }
  if (sampling.length) {
    console.log(`\nU-net 32 px sampling, 64 images x 100 DDIM steps, diffuse against the twin in ${sampling.length} rounds (each a process of ours, then the twin's): ${sampling.map((r) => `${r.ours.toFixed(2)} vs ${r.twin.toFixed(2)} s (${r.ratio.toFixed(2)}; machine ${r.machine.map((m) => m.toFixed(2)).join(' / ')})`).join('; ')}. diffuse takes ${median(sampling.map((r) => r.ratio)).toFixed(2)} of the twin's time (the rounds' median)${samplingFull.length ? `, ${median(samplingFull.map((r) => r.ratio)).toFixed(2)} in the ${samplingFull.length} rounds where the machine's cores were worth ${os.availableParallelism()} (within 5%)` : '; in no round were the machine\'s cores worth their count'}.`);
  }
  const sgemm = results.find((r) => r.sgemmGflops)?.sgemmGflops;
  if (sgemm) console.log(`\nOpenBLAS sgemm (1024³, all ${os.availableParallelism()} cores) on this machine: ${sgemm.toFixed(0)} GFLOP/s; U-net GFLOP/s count 3 forward passes per training sample (${((results[0]?.unetForwardFlops ?? 0) / 1e6).toFixed(0)} MFLOP per 32-px image forward), 3x3 convolutions at their direct FLOPs (diffuse's Winograd tiles do ${process.env.DIFFUSE_WINOGRAD === '2' ? '2.25x' : '4x'} fewer${process.env.DIFFUSE_WINOGRAD === '0' ? '; off in this run' : ''}).`);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
