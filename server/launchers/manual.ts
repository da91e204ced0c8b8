// The manual launcher: starts nothing. The user gets the pod's three variables and a command
// line once, at deploy (or after rotating the token), and runs the trainer on any machine.
import type { Launcher } from './types';

export function createManualLauncher(): Launcher {
  return {
    name: 'manual',
    description: 'You run the trainer yourself, on any machine, with the three variables shown once.',
    async start() {
      return { ref: null, revealEnv: true };
    },
    async cancel() {
      // Nothing to stop: the token is revoked, so the pod's next call is refused.
    },
  };
}
