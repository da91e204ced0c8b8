// What every part of the pod shares about its link to the server: the typed client (or none,
// offline) and whether the server has refused the job token. A 401 anywhere (writer, heartbeat,
// log shipper) means no call with this token will succeed again, so everyone stops sending.
import type { PodApi } from './api';

export interface PodLogger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export class PodConnection {
  private refusal: string | null = null;
  private refusalReason: string | null = null;
  private readonly listeners: ((message: string, reason: string | null) => void)[] = [];

  constructor(readonly api: PodApi | null) {}

  /** True while calls may be sent: there is a server and it has not refused the token. */
  get usable(): boolean {
    return this.api !== null && this.refusal === null;
  }

  get tokenRefused(): string | null {
    return this.refusal;
  }

  /** The server's machine-readable cause of the refusal (`job_ended` when the job was cancelled or ended). */
  get tokenRefusedReason(): string | null {
    return this.refusalReason;
  }

  /** Records the first refusal and tells the listeners once. */
  refuse(message: string, reason: string | null = null): void {
    if (this.refusal !== null) return;
    this.refusal = message;
    this.refusalReason = reason;
    for (const listener of this.listeners) listener(message, reason);
  }

  onRefused(listener: (message: string, reason: string | null) => void): void {
    this.listeners.push(listener);
  }
}
