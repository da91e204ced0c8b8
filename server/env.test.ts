import { describe, expect, it } from 'vitest';
import { loadConfig } from './env';
import { configProblems as problems } from './test-support/config';

describe('loadConfig', () => {
  it('defaults to PGlite under ./data on port 3000', () => {
    const config = loadConfig({});
    expect(config.port).toBe(3000);
    expect(config.database).toEqual({ kind: 'pglite', dataDir: './data/pglite' });
    expect(config.publicUrl).toBeNull();
  });

  it('switches to Postgres with DATABASE_URL', () => {
    const config = loadConfig({ DATABASE_URL: 'postgres://u@db:5432/app' });
    expect(config.database).toMatchObject({ kind: 'postgres', url: 'postgres://u@db:5432/app' });
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ DATABASE_URL: '', PORT: '' }).database.kind).toBe('pglite');
  });

  it('names each bad variable', () => {
    expect(problems({ PORT: 'eighty' })[0]).toMatch(/^PORT:/);
    expect(problems({ DATABASE_URL: 'mysql://x' })[0]).toMatch(/^DATABASE_URL: must be a postgres/);
    expect(problems({ SESSION_SECRET: 'short' })[0]).toMatch(/^SESSION_SECRET: must be at least 32 characters/);
  });

  it('cannot have its body limit disabled by a bad setting', () => {
    for (const value of ['0', '-1', 'Infinity', 'unlimited', String(2 ** 40)]) {
      expect(problems({ MAX_BODY_BYTES: value })[0]).toMatch(/^MAX_BODY_BYTES:/);
    }
  });

  it('lets a completed job write for an hour by default, for as long as FINISHED_JOB_WRITE_GRACE_SECONDS says, or not at all', () => {
    expect(loadConfig({}).finishedJobWriteGraceSeconds).toBe(3600);
    expect(loadConfig({ FINISHED_JOB_WRITE_GRACE_SECONDS: '600' }).finishedJobWriteGraceSeconds).toBe(600);
    expect(loadConfig({ FINISHED_JOB_WRITE_GRACE_SECONDS: '0' }).finishedJobWriteGraceSeconds).toBe(0);
    for (const value of ['-1', '1.5', 'forever']) {
      expect(problems({ FINISHED_JOB_WRITE_GRACE_SECONDS: value })[0]).toMatch(/^FINISHED_JOB_WRITE_GRACE_SECONDS:/);
    }
  });

  it('never echoes a secret value in its message', () => {
    const secretish = 'hunter2-but-short';
    expect(problems({ JOB_TOKEN_SECRET: secretish }).join('\n')).not.toContain(secretish);
  });
});
