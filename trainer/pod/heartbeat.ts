// Heartbeats: every few seconds the pod tells the server its status, mode, which variables it
// had (names → booleans), where training is, the writer's counters and how often the trigger
// fired. The job page and diagnostics are built from these. One beat in flight at a time; a
// failed beat is just late, never retried in a burst.
import type { HeartbeatInput } from '#contract/pod.schemas';
import { classifyPodError } from './api';
import type { PodConnection, PodLogger } from './connection';

export class Heartbeat {
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<boolean> | null = null;
  private failing = false;
  beats = 0;

  constructor(
    private readonly options: {
      connection: PodConnection;
      intervalMs: number;
      snapshot(): HeartbeatInput;
      log: PodLogger;
    },
  ) {}

  start(): void {
    if (this.timer) return;
    void this.beat();
    this.timer = setInterval(() => void this.beat(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Sends one heartbeat now (or joins the one in flight); true when the server took it. */
  beat(): Promise<boolean> {
    this.inFlight ??= this.send().finally(() => {
      this.inFlight = null;
    });
    return this.inFlight;
  }

  /** Waits for the beat in flight, then sends a fresh one with the latest numbers. */
  /**
   * The last heartbeat, with the final counters; false when it could not be sent within
   * `timeoutMs` (a server that hangs must not hold the pod's exit for a full request timeout).
   */
  async final(timeoutMs = 5_000): Promise<boolean> {
    this.stop();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
      timer.unref();
    });
    const sent = (async () => {
      if (this.inFlight) await this.inFlight;
      return this.beat();
    })();
    try {
      return await Promise.race([sent, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async send(): Promise<boolean> {
    const api = this.options.connection.api;
    if (!api || !this.options.connection.usable) return false;
    try {
      await api.pod.heartbeat.mutate(this.options.snapshot());
      this.beats++;
      if (this.failing) this.options.log.info('Heartbeats reach the server again.');
      this.failing = false;
      return true;
    } catch (error) {
      const failure = classifyPodError(error);
      if (failure.action === 'unauthorized') {
        this.options.connection.refuse(failure.message, failure.reason);
        this.options.log.error(`The server refused the job token on a heartbeat (HTTP 401: ${failure.message}). The job page will stop updating.`);
      } else if (!this.failing) {
        this.failing = true;
        this.options.log.warn(`A heartbeat did not reach the server (${failure.message}); training continues and heartbeats keep trying.`);
      }
      return false;
    }
  }
}
