/** The `diffuse` command line: the program, its commands (./commands/), and how errors end a run. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, CommanderError } from 'commander';
import { OptionError, UserError } from '../errors';
import { flushNotices } from '../progress';
import { denoiseCommand } from './commands/denoise';
import { editCommand, inpaintCommand, interpolateCommand, invertCommand } from './commands/edit';
import { evaluateCommand } from './commands/evaluate';
import { exportCommand, importCommand, serveCommand } from './commands/export';
import { sampleCommand } from './commands/sample';
import { trainCommand } from './commands/train';
import { EXIT, flagOf } from './options';

const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string };

function log(message: string): void {
  flushNotices();
  process.stderr.write(message + '\n');
}

export function buildProgram(): Command {
  const program = new Command()
    .name('diffuse')
    .description('Train and sample denoising diffusion models (DDPM) on TensorFlow.js')
    .version(pkg.version)
    .option('--verbose', 'print stack traces on errors')
    .exitOverride() // main() sets the exit code: 2 for every usage error, as for other user errors
    .addHelpText('after', '\nExamples:\n  $ diffuse train --epochs 1000\n  $ diffuse sample --n 64 --out grid.png\n  $ diffuse evaluate --checkpoint checkpoints --n 1000');
  // Subcommands built apart do not inherit settings, so each gets the exit override itself.
  for (const command of [trainCommand(log), sampleCommand(log), evaluateCommand(), denoiseCommand(log), invertCommand(log), interpolateCommand(log), inpaintCommand(log), editCommand(log), exportCommand(log), importCommand(log), serveCommand(log)]) program.addCommand(command.exitOverride());
  return program;
}


export async function main(argv = process.argv): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // commander has printed its one line (or the help, or the version)
      process.exitCode = e.exitCode === 0 ? EXIT.ok : EXIT.user;
      return;
    }
    const { text, code } = errorReport(e, argv.includes('--verbose'));
    process.stderr.write(text); // the first line; a notice still held (which backend) no longer matters
    process.exitCode = code;
    return;
  }
  flushNotices();
}

/** What to print for an error that ended a command, and the exit code: a user error is one line; anything else is a bug. */
export function errorReport(e: unknown, verbose: boolean): { text: string; code: number } {
  const user = e instanceof UserError;
  const code = user ? EXIT.user : EXIT.internal;
  if (verbose && e instanceof Error) return { text: (e.stack ?? String(e)) + '\n', code };
  if (e instanceof OptionError) return { text: `diffuse: error: ${flagOf(e.option)} ${e.detail}\n`, code };
  if (user) return { text: `diffuse: error: ${e.message}\n`, code };
  return { text: `diffuse: internal error: ${e instanceof Error ? e.message : String(e)} (a bug in diffuse; --verbose prints where)\n`, code };
}
