// The pod's log: every line goes to the console at once (info/debug on stdout, warn/error on
// stderr, where the local launcher keeps the tail for the job's error) and into a bounded
// buffer that ships to `pod.log`, so the job page shows it and nobody needs a shell on the pod.
import { LOG_LINE_MAX, type LOG_LEVELS } from '#contract/pod.schemas';
import type { PodConnection, PodLogger } from './connection';
import { BatchShipper } from './shipper';

type LogLevel = (typeof LOG_LEVELS)[number];
export interface LogLine {
  level: LogLevel;
  message: string;
}

export interface ConsoleSink {
  out(text: string): void;
  err(text: string): void;
}

/** Writes unless the stream is gone (its reader died): a lost console line is no reason to stop. */
function writeLine(stream: NodeJS.WriteStream, text: string): void {
  if (stream.destroyed || !stream.writable) return;
  try {
    stream.write(`${text}\n`);
  } catch {
    // A pipe closed between the check and the write: the line is lost, the run goes on.
  }
}

export const processConsole: ConsoleSink = {
  out: (text) => writeLine(process.stdout, text),
  err: (text) => writeLine(process.stderr, text),
};

/**
 * The process that reads our stdout/stderr (the server's local launcher) may die before we do:
 * writing then fails with EPIPE, which Node raises as an 'error' event that would kill the
 * trainer, and with it every prediction not yet spooled. Training and spooling go on; only the
 * console is lost (the log still ships to the server, and the spool keeps every row).
 */
export function survivePipeLoss(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE' || error.code === 'ERR_STREAM_DESTROYED' || error.code === 'ECONNRESET') {
        stream.destroy();
        return;
      }
      throw error;
    });
  }
}

export interface ShippingLogger extends PodLogger {
  shipper: BatchShipper<LogLine>;
}

export function createPodLogger(options: {
  connection: PodConnection;
  console?: ConsoleSink;
  verbose?: boolean;
  intervalMs?: number;
  /** Secrets that must never appear in a line (the job token): replaced wherever they occur. */
  secrets?: readonly string[];
}): ShippingLogger {
  const sink = options.console ?? processConsole;
  const secrets = (options.secrets ?? []).filter((secret) => secret.length >= 8);
  // A last guard, not the first: no message is built with a secret in it. A server or library
  // message that echoed one back would still not reach the console or pod.log.
  const redact = (text: string) => secrets.reduce((out, secret) => out.split(secret).join('<redacted>'), text);
  const shipper = new BatchShipper<LogLine>({
    connection: options.connection,
    what: 'log lines',
    send: (api, lines) => api.pod.log.mutate({ lines }),
    maxItems: 500,
    maxBuffer: 5_000,
    intervalMs: options.intervalMs ?? 1_000,
    // Not through `write`: a line about failing to ship lines must not queue itself for shipping.
    report: (message, level) => (level === 'info' ? sink.out : sink.err)(`${new Date().toISOString()} [trainer] ${level === 'info' ? '' : `${level.toUpperCase()} `}${redact(message)}`),
    droppedNotice: (count) => ({ level: 'warn', message: `${count} log line(s) were dropped while the server could not take them (they are in the pod's console output).` }),
  });
  const write = (level: LogLevel, raw: string) => {
    const message = redact(raw);
    const stamp = new Date().toISOString();
    const text = `${stamp} [trainer] ${level === 'info' ? '' : `${level.toUpperCase()} `}${message}`;
    if (level === 'warn' || level === 'error') sink.err(text);
    else if (level === 'info' || options.verbose) sink.out(text);
    if (level !== 'debug' || options.verbose) shipper.push({ level, message: message.slice(0, LOG_LINE_MAX) });
  };
  return {
    shipper,
    debug: (message) => write('debug', message),
    info: (message) => write('info', message),
    warn: (message) => write('warn', message),
    error: (message) => write('error', message),
  };
}

/** A logger that keeps each line in memory as "level message": for driving a writer in tests and scenarios. */
export function memoryLogger(): { log: PodLogger; lines: string[] } {
  const lines: string[] = [];
  const log: PodLogger = {
    debug: (m) => lines.push(`debug ${m}`),
    info: (m) => lines.push(`info ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
    error: (m) => lines.push(`error ${m}`),
  };
  return { log, lines };
}
