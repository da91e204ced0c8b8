// Signing keys: from the environment when set, otherwise generated once and kept in DATA_DIR
// (mode 0600) so sessions and job tokens survive a restart. Never logged, never hard-coded.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { AppConfig } from './env';

export interface Secrets {
  session: Uint8Array;
  jobToken: Uint8Array;
}

const storedSecrets = z.object({ session: z.string().min(32), jobToken: z.string().min(32) });

export async function resolveSecrets(config: Pick<AppConfig, 'secrets' | 'dataDir'>): Promise<Secrets> {
  const encode = (value: string) => new TextEncoder().encode(value);
  const { session, jobToken } = config.secrets;
  if (session && jobToken) return { session: encode(session), jobToken: encode(jobToken) };

  const file = path.join(config.dataDir, 'secrets.json');
  const stored = await readStored(file);
  const generated = stored ?? {
    session: randomBytes(48).toString('base64url'),
    jobToken: randomBytes(48).toString('base64url'),
  };
  if (!stored) {
    await mkdir(config.dataDir, { recursive: true });
    await writeFile(file, JSON.stringify(generated), { mode: 0o600, flag: 'wx' }).catch(async (error: NodeJS.ErrnoException) => {
      // Another instance sharing DATA_DIR won the race: use what it wrote.
      if (error.code !== 'EEXIST') throw error;
    });
  }
  const final = (await readStored(file)) ?? generated;
  return { session: encode(session ?? final.session), jobToken: encode(jobToken ?? final.jobToken) };
}

async function readStored(file: string): Promise<z.infer<typeof storedSecrets> | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const parsed = storedSecrets.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`${file} is not a valid secrets file; remove it to generate new keys`);
  return parsed.data;
}

/** This instance's stable identity, generated once per data directory. */
export async function resolveInstanceId(dataDir: string): Promise<string> {
  const file = path.join(dataDir, 'instance-id');
  try {
    const existing = (await readFile(file, 'utf8')).trim();
    if (existing) return existing;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await mkdir(dataDir, { recursive: true });
  const id = `instance-${randomBytes(8).toString('hex')}`;
  await writeFile(file, id, { flag: 'wx' }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  return (await readFile(file, 'utf8')).trim();
}
