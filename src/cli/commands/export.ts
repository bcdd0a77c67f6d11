/**
 * `diffuse export` (a page that samples in the browser, or safetensors for PyTorch), `diffuse import`
 * (safetensors back into a checkpoint) and `diffuse serve DIR`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { BackendChoice, selectBackend } from '../../backend/select';
import { OptionError, UserError } from '../../errors';
import { checkpointExists, loadCheckpoint, samplingPrefix, saveCheckpoint } from '../../io/checkpoint';
import { checkOutputFile } from '../../files';
import { RunLock } from '../../io/runLock';
import { readSafetensors, writeSafetensors } from '../../io/safetensors';
import { fromTorchTensors, toTorchTensors } from '../../io/torchWeights';
import { Trainer } from '../../training/trainer';
import { exportWeb } from '../../web/export';
import { serveStatic } from '../../web/serve';
import { guideFrom } from '../../pipeline/load';
import { DEFAULTS } from '../../config/defaults';
import { backendOption, integer, positiveNumber } from '../options';

export function exportCommand(log: (m: string) => void): Command {
  return new Command('export')
    .description("write a checkpoint's model in another form: --web DIR, a static page that samples it in the browser; --safetensors FILE, its weights for PyTorch")
    .option('--checkpoint <dir>', 'checkpoint directory', 'checkpoints')
    .option('--web <dir>', 'folder for the page, its script and the model (created if needed)')
    .option('--safetensors <file>', 'the weights (and their average) under PyTorch names and layouts, the run record in the metadata')
    .option('--guide <checkpoint>', 'with --web: the page samples with autoguidance by this weaker checkpoint of the same run (as sample --guide)')
    .option('--guidance <w>', `with --guide: its weight (default: ${DEFAULTS.sampling.guidance})`, positiveNumber)
    .option('--overwrite', 'replace the --safetensors file if it exists (refused otherwise)', false)
    .addHelpText('after', '\nExamples:\n  $ diffuse export --checkpoint runs/small --web site\n  $ diffuse serve site\n  $ diffuse export --checkpoint runs/unet32/epoch-0010 --guide runs/unet32/epoch-0003 --web site\n  $ diffuse export --checkpoint runs/small --safetensors small.safetensors')
    .action((opts) => {
      if (!opts.web && !opts.safetensors) throw new UserError('export needs --web DIR or --safetensors FILE');
      const guide = guideFrom(opts);
      if (guide && !opts.web) throw new OptionError('guide', 'guides the page of --web DIR (safetensors hold one model)');
      if (opts.safetensors) {
        checkOutputFile(opts.safetensors);
        if (pathExists(opts.safetensors) && !opts.overwrite) throw new UserError(`${opts.safetensors} already exists; pass --overwrite to replace it, or choose another file`);
      }
      if (opts.web) {
        const { files, bytes } = exportWeb(opts.checkpoint, opts.web, guide);
        log(`wrote ${files.length} files (${(bytes / 1e6).toFixed(1)} MB) to ${path.resolve(opts.web)}; serve it with: diffuse serve ${opts.web}`);
      }
      if (opts.safetensors) {
        const { meta, tensors } = loadCheckpoint(opts.checkpoint);
        const torch = toTorchTensors(meta, tensors);
        writeSafetensors(opts.safetensors, torch.tensors, torch.metadata);
        log(`wrote ${path.resolve(opts.safetensors)} (${torch.tensors.size} tensors, epoch ${meta.training.epoch})`);
      }
    });
}

/** Whether anything (a file, or a link even where it points nowhere) is at `file`. */
function pathExists(file: string): boolean {
  try {
    fs.lstatSync(file);
    return true;
  } catch {
    return false;
  }
}

export function importCommand(log: (m: string) => void): Command {
  return new Command('import')
    .description('make a checkpoint from a safetensors file written by diffuse export or diffuse_torch (Adam starts afresh)')
    .argument('<file>', 'the .safetensors file')
    .option('--out <dir>', 'checkpoint directory to write', 'checkpoints')
    .option('--overwrite', 'replace a checkpoint already in --out', false)
    .addOption(backendOption())
    .action(async (file: string, opts) => {
      const { tensors, metadata } = readSafetensors(file);
      await selectBackend(opts.backend as BackendChoice); // before any tensor exists (checking builds the model)
      const { record, arrays } = fromTorchTensors(file, tensors, metadata);
      const lock = RunLock.acquire(opts.out);
      try {
        if (checkpointExists(opts.out) && !opts.overwrite) throw new UserError(`${opts.out} already holds a checkpoint; pass --overwrite to replace it, or choose another --out`);
        const trainer = new Trainer(record, arrays);
        try {
          saveCheckpoint(opts.out, trainer.checkpointMeta(record.training.loss), trainer.tensors());
        } finally {
          trainer.dispose();
        }
      } finally {
        lock.release();
      }
      log(`imported ${file} into ${path.resolve(opts.out)} (${record.model.kind}, epoch ${record.training.epoch}${samplingPrefix(arrays) === 'ema/' ? ', with the averaged weights' : ''})`);
    });
}

export function serveCommand(log: (m: string) => void): Command {
  return new Command('serve')
    .description('serve a folder (an exported page) on http://127.0.0.1 until stopped')
    .argument('<dir>', 'the folder')
    .option('--port <n>', 'port (0 = any free one)', integer(0, 'a port number'), 8080)
    .action(async (dir: string, opts) => {
      if (!fs.existsSync(path.join(dir, 'index.html'))) throw new UserError(`${dir} has no index.html (export a page with: diffuse export --web ${dir})`);
      const server = await serveStatic(dir, opts.port).catch((e: NodeJS.ErrnoException) => {
        throw new UserError(`cannot serve on port ${opts.port}: ${e.code ?? e.message}`);
      });
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : opts.port;
      log(`serving ${path.resolve(dir)} at http://127.0.0.1:${port}/ (Ctrl-C to stop)`);
      await new Promise<void>((resolve) => process.once('SIGINT', () => server.close(() => resolve())));
    });
}
