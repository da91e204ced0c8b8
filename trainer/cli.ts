// The trainer's command line: `train` (the default) and `sync`, their options and usage text.
import { parseArgs } from 'node:util';

export const USAGE = `Usage:
  npm run trainer                                   train the job named by JOB_ID, JOB_TOKEN, API_URL
  npm run trainer -- --config FILE --dataset FILE   train offline (local mode), spooling predictions
  npm run trainer -- sync --spool FILE [--finish]   upload a spool file with JOB_TOKEN and API_URL

Options:
  --drain-timeout SECONDS   at the end, how long to wait for an unreachable server (default 120; sync: 30)
  --verbose                 print debug lines (each retry)
Environment: JOB_ID, JOB_TOKEN, API_URL; optional TRAINER_SPOOL_DIR (default ./data/spool),
TRAINER_HEARTBEAT_MS (default 3000), TRAINER_PARENT_PID (stop when that process dies).`;

export interface Cli {
  command: 'train' | 'sync' | 'help';
  config?: string;
  dataset?: string;
  spool?: string;
  finish: boolean;
  /** null: the command's default (120 s for a run, 30 s for sync). */
  drainTimeoutMs: number | null;
  verbose: boolean;
}

export function parseCli(argv: string[]): Cli {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      dataset: { type: 'string' },
      spool: { type: 'string' },
      finish: { type: 'boolean', default: false },
      'drain-timeout': { type: 'string' },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const command = positionals[0] ?? 'train';
  if (positionals.length > 1 || !['train', 'sync', 'help'].includes(command)) throw new UsageError(`Unknown command: ${positionals.join(' ')}`);
  const drain = values['drain-timeout'] === undefined ? null : Number(values['drain-timeout']);
  if (drain !== null && (!Number.isFinite(drain) || drain < 0)) throw new UsageError('--drain-timeout takes a number of seconds');
  return {
    command: values.help ? 'help' : (command as Cli['command']),
    ...(values.config !== undefined ? { config: values.config } : {}),
    ...(values.dataset !== undefined ? { dataset: values.dataset } : {}),
    ...(values.spool !== undefined ? { spool: values.spool } : {}),
    finish: values.finish,
    drainTimeoutMs: drain === null ? null : drain * 1000,
    verbose: values.verbose,
  };
}

/** A command line the trainer cannot act on; main prints the usage with it. */
export class UsageError extends Error {}
