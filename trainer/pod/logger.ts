// The pod's log: every line goes to the console at once (info/debug on stdout, warn/error on
// stderr, where the local launcher keeps the tail for the job's error) and into a bounded
// buffer that ships to `pod.log`, so the job page shows it and nobody needs a shell on the pod.
import { LOG_LINE_MAX, type LOG_LEVELS } from '../../server/contract/pod.schemas';
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

export const processConsole: ConsoleSink = {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
};

export interface ShippingLogger extends PodLogger {
  shipper: BatchShipper<LogLine>;
}

export function createPodLogger(options: { connection: PodConnection; console?: ConsoleSink; verbose?: boolean; intervalMs?: number }): ShippingLogger {
  const sink = options.console ?? processConsole;
  const shipper = new BatchShipper<LogLine>({
    connection: options.connection,
    what: 'log lines',
    send: (api, lines) => api.pod.log.mutate({ lines }),
    maxItems: 500,
    maxBuffer: 5_000,
    intervalMs: options.intervalMs ?? 1_000,
    // Not through `write`: a line about failing to ship lines must not queue itself for shipping.
    report: (message, level) => (level === 'info' ? sink.out : sink.err)(`${new Date().toISOString()} [trainer] ${level === 'info' ? '' : `${level.toUpperCase()} `}${message}`),
    droppedNotice: (count) => ({ level: 'warn', message: `${count} log line(s) were dropped while the server could not take them (they are in the pod's console output).` }),
  });
  const write = (level: LogLevel, message: string) => {
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
