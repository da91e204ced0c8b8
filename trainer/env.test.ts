// The trainer's environment: mode, missing variables by name (never by value), defaults.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readTrainerEnv } from './env';

/** A JWT-shaped job token (the server checks the signature; the trainer only its shape). */
function jwt(payload: object): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'HS256', typ: 'JWT' })}.${part(payload)}.${Buffer.from('signature-bytes-here').toString('base64url')}`;
}
const TOKEN = jwt({ aud: 'pod', sub: '00000000-0000-4000-8000-000000000001', exp: 2_000_000_000 });
const ALL = { JOB_ID: 'job-1', JOB_TOKEN: TOKEN, API_URL: 'http://server:3000/' };

describe('readTrainerEnv', () => {
  it('is cloud mode with all three variables, and applies the defaults', () => {
    const env = readTrainerEnv(ALL);
    expect(env).toMatchObject({ mode: 'cloud', missing: [], canConnect: true, apiUrl: 'http://server:3000', heartbeatMs: 3000, parentPid: null, problems: [] });
    expect(env.spoolDir).toBe(path.resolve('./data/spool'));
  });

  it('names each missing variable, in order, and is local mode', () => {
    const env = readTrainerEnv({ JOB_TOKEN: TOKEN, API_URL: '  ' });
    expect(env.mode).toBe('local');
    expect(env.missing).toEqual(['JOB_ID', 'API_URL']);
    expect(env.presence).toEqual({ JOB_ID: false, JOB_TOKEN: true, API_URL: false });
    expect(env.canConnect).toBe(false);
  });

  it('can still connect with the token and URL when only JOB_ID is missing (the token names the job)', () => {
    const env = readTrainerEnv({ JOB_TOKEN: TOKEN, API_URL: 'https://example.test' });
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

  it('trims every pod variable: a token read from a file with its trailing newline works', () => {
    const env = readTrainerEnv({ JOB_ID: ' job-1\n', JOB_TOKEN: `${TOKEN}\n`, API_URL: '\thttp://server:3000\r\n' });
    expect(env).toMatchObject({ mode: 'cloud', jobId: 'job-1', jobToken: TOKEN, apiUrl: 'http://server:3000', problems: [] });
  });

  it.each([
    ['not three parts', 'abc.def'],
    ['not base64url', 'abc.d$f.ghi'],
    ['a payload that is not JSON', `${TOKEN.split('.')[0]}.${Buffer.from('not json').toString('base64url')}.sig`],
    ['a payload without aud', jwt({ sub: 'job' })],
    ['a payload without sub', jwt({ aud: 'pod' })],
  ])('a JOB_TOKEN that is not a job token (%s) is a configuration error naming JOB_TOKEN, never its value: local mode', (_what, token) => {
    const env = readTrainerEnv({ ...ALL, JOB_TOKEN: token });
    expect(env).toMatchObject({ mode: 'local', jobToken: null, canConnect: false, unusable: ['JOB_TOKEN'], missing: ['JOB_TOKEN'] });
    expect(env.problems).toHaveLength(1);
    expect(env.problems[0]).toMatch(/^JOB_TOKEN is set but/);
    expect(env.problems[0]).not.toContain(token);
  });

  it.each([
    ['JOB_TOKEN', `${TOKEN.slice(0, 20)}\n${TOKEN.slice(20)}`, /JOB_TOKEN contains a control character/],
    ['JOB_TOKEN', `${TOKEN}é€`, /JOB_TOKEN contains characters outside Latin-1/],
    ['JOB_ID', 'job\u00001', /JOB_ID contains a control character/],
    ['JOB_ID', '../../etc', /JOB_ID is set but is not a job id/],
    ['API_URL', 'http://server:3000/\u2028x', /API_URL contains characters outside Latin-1/],
  ] as const)('%s that cannot be sent in a header (or used as a file name) is named as a configuration problem', (name, value, message) => {
    const env = readTrainerEnv({ ...ALL, [name]: value });
    expect(env.unusable).toEqual([name]);
    expect(env.missing).toContain(name);
    expect(env.problems.join(' ')).toMatch(message);
    if (name === 'JOB_TOKEN') expect(env.problems.join(' ')).not.toContain(TOKEN.slice(0, 20));
  });
});
