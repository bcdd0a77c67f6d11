/** `diffuse export --web DIR` and `diffuse serve DIR`: a checkpoint's model as a page that samples in the browser. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { UserError } from '../../errors';
import { exportWeb } from '../../web/export';
import { serveStatic } from '../../web/serve';
import { integer } from '../options';

export function exportCommand(log: (m: string) => void): Command {
  return new Command('export')
    .description('write a checkpoint\'s model in another form: --web DIR, a static page that samples it in the browser')
    .option('--checkpoint <dir>', 'checkpoint directory', 'checkpoints')
    .requiredOption('--web <dir>', 'folder for the page, its script and the model (created if needed)')
    .addHelpText('after', '\nExamples:\n  $ diffuse export --checkpoint runs/small --web site\n  $ diffuse serve site')
    .action((opts) => {
      const { files, bytes } = exportWeb(opts.checkpoint, opts.web);
      log(`wrote ${files.length} files (${(bytes / 1e6).toFixed(1)} MB) to ${path.resolve(opts.web)}; serve it with: diffuse serve ${opts.web}`);
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
