// The trainer's environment: mode, missing variables by name (never by value), defaults.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readTrainerEnv } from './env';

const ALL = { JOB_ID: 'job-1', JOB_TOKEN: 'secret-token', API_URL: 'http://server:3000/' };

describe('readTrainerEnv', () => {
  it('is cloud mode with all three variables, and applies the defaults', () => {
    const env = readTrainerEnv(ALL);
    expect(env).toMatchObject({ mode: 'cloud', missing: [], canConnect: true, apiUrl: 'http://server:3000', heartbeatMs: 3000, parentPid: null, problems: [] });
    expect(env.spoolDir).toBe(path.resolve('./data/spool'));
  });

  it('names each missing variable, in order, and is local mode', () => {
    const env = readTrainerEnv({ JOB_TOKEN: 'secret-token', API_URL: '  ' });
    expect(env.mode).toBe('local');
    expect(env.missing).toEqual(['JOB_ID', 'API_URL']);
    expect(env.presence).toEqual({ JOB_ID: false, JOB_TOKEN: true, API_URL: false });
    expect(env.canConnect).toBe(false);
  });

  it('can still connect with the token and URL when only JOB_ID is missing (the token names the job)', () => {
    const env = readTrainerEnv({ JOB_TOKEN: 'secret-token', API_URL: 'https://example.test' });
    expect(env).toMatchObject({ mode: 'local', missing: ['JOB_ID'], canConnect: true });
  });

  it('treats an unusable API_URL as missing, without echoing it', () => {
    const env = readTrainerEnv({ ...ALL, API_URL: 'ftp://user:hunter2@host' });
    expect(env.missing).toEqual(['API_URL']);
    expect(env.problems.join(' ')).toMatch(/API_URL is set but is not an http\(s\) URL/);
    expect(env.problems.join(' ')).not.toContain('hunter2');
  });

  it('reads the optional settings, and says which ones it ignored', () => {
    const env = readTrainerEnv({ ...ALL, TRAINER_SPOOL_DIR: '/tmp/spool', TRAINER_PARENT_PID: '1234', TRAINER_HEARTBEAT_MS: '500' });
    expect(env).toMatchObject({ spoolDir: '/tmp/spool', parentPid: 1234, heartbeatMs: 500 });
    const bad = readTrainerEnv({ ...ALL, TRAINER_PARENT_PID: 'x', TRAINER_HEARTBEAT_MS: '-1' });
    expect(bad).toMatchObject({ parentPid: null, heartbeatMs: 3000 });
    expect(bad.problems).toHaveLength(2);
  });
});
