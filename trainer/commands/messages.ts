// Lines the trainer prints in more than one command: the local-mode banner and the exact `sync`
// commands that upload a spool.
import path from 'node:path';
import type { TrainerEnv } from '../env';

export function missingNote(env: TrainerEnv): string {
  return env.missing.length === 0 ? 'none' : env.missing.join(',');
}

/** The line every summary carries while a variable is missing: loud, names only. */
export function localModeBanner(env: TrainerEnv): string {
  const notSet = env.missing.filter((name) => !env.unusable.includes(name));
  const parts = [
    ...(notSet.length > 0 ? [`${notSet.join(', ')} ${notSet.length === 1 ? 'is' : 'are'} not set`] : []),
    ...(env.unusable.length > 0 ? [`${env.unusable.join(', ')} ${env.unusable.length === 1 ? 'is' : 'are'} set but unusable`] : []),
  ];
  return `LOCAL MODE: ${parts.join('; ')}`;
}

export function syncCommand(file: string, env: TrainerEnv, finish: boolean): string {
  const vars = ['JOB_TOKEN', 'API_URL'].filter((name) => !(name === 'JOB_TOKEN' ? env.presence.JOB_TOKEN : env.presence.API_URL));
  const prefix = vars.map((name) => `${name}=<${name === 'JOB_TOKEN' ? "the job's token" : 'the server URL'}>`).join(' ');
  return `${prefix ? `${prefix} ` : ''}npm run trainer -- sync --spool ${path.resolve(file)}${finish ? ' --finish' : ''}`;
}

/** The sync command for a user who must first get a new token (the URL's origin only: it may embed credentials). */
export function resyncCommand(file: string, env: TrainerEnv): string {
  const origin = env.apiUrl ? new URL(env.apiUrl).origin : '<the server URL>';
  return `API_URL=${origin} npm run trainer -- sync --spool ${path.resolve(file)}`;
}
