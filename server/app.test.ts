// The HTTP shell around tRPC: health, body limit, batch cap, gzip, headers, no leaks.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './test-support/server';
import { TEST_PASSWORD, uniqueEmail } from './test-support/factories';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ MAX_BODY_BYTES: String(64 * 1024), MAX_BATCH_CALLS: '4' });
});
afterAll(async () => {
  await server?.close();
});

type ErrorBody = { error: { message: string; data: { code: string; httpStatus: number } } };

describe('the HTTP shell', () => {
  it('answers /health once migrated, naming the database', async () => {
    const res = await fetch(`${server.url}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok', db: server.database.kind });
  });

  it('sets security headers and hides the framework', async () => {
    const res = await fetch(`${server.url}/health`);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('x-frame-options')).toBe('SAMEORIGIN');
    expect(res.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(res.headers.get('x-powered-by')).toBeNull();
  });

  it('answers an oversized body with 413 and the limit', async () => {
    const res = await server.raw('auth.login', {
      method: 'POST',
      body: JSON.stringify({ email: 'a@b.co', password: 'x'.repeat(70 * 1024) }),
    });
    expect(res.status).toBe(413);
    expect((res.body as ErrorBody).error.message).toMatch(/exceeds the 65536-byte limit/);
  });

  it('applies the limit after decompression, so a gzip bomb is refused', async () => {
    const bomb = gzipSync(Buffer.from(JSON.stringify({ email: 'a@b.co', password: 'x'.repeat(1024 * 1024) })));
    expect(bomb.length).toBeLessThan(64 * 1024);
    const res = await server.raw('auth.login', { method: 'POST', body: bomb, headers: { 'content-encoding': 'gzip' } });
    expect(res.status).toBe(413);
  });

  it('accepts a gzip body', async () => {
    const body = gzipSync(Buffer.from(JSON.stringify({ email: uniqueEmail(), password: TEST_PASSWORD })));
    const res = await server.raw('auth.register', { method: 'POST', body, headers: { 'content-encoding': 'gzip' } });
    expect(res.status).toBe(200);
  });

  it('answers corrupt gzip with 400, not 500', async () => {
    const res = await server.raw('auth.login', {
      method: 'POST',
      body: Buffer.from('definitely not gzip'),
      headers: { 'content-encoding': 'gzip' },
    });
    expect(res.status).toBe(400);
    expect((res.body as ErrorBody).error.message).toMatch(/could not be read/);
  });

  it('refuses a batch longer than the cap before running any call', async () => {
    const paths = Array.from({ length: 5 }, () => 'auth.me').join(',');
    const res = await server.raw(paths, { query: '?batch=1&input=%7B%7D' });
    expect(res.status).toBe(400);
    expect(JSON.stringify(res.body)).toMatch(/Batch call exceeds maximum size/);
  });

  it('answers an unknown procedure with 404', async () => {
    const res = await server.raw('nope.nothing');
    expect(res.status).toBe(404);
  });

  it('never sends a stack trace', async () => {
    const res = await server.raw('auth.login', { method: 'POST', body: '{' });
    expect(JSON.stringify(res.body)).not.toMatch(/stack|at .*\.ts:\d+/);
  });
});

describe('the web app files', () => {
  let spaServer: TestServer;
  let spaDir: string;
  beforeAll(async () => {
    spaDir = await mkdtemp(path.join(tmpdir(), 'spa-'));
    await mkdir(path.join(spaDir, 'assets'));
    await writeFile(path.join(spaDir, 'index.html'), '<!doctype html><title>t</title>');
    await writeFile(path.join(spaDir, 'assets', 'app.js'), `console.log(${JSON.stringify('x'.repeat(20_000))});`);
    spaServer = await startTestServer({}, { spaDir });
  });
  afterAll(async () => {
    await spaServer?.close();
    await rm(spaDir, { recursive: true, force: true });
  });

  it('gzips assets for browsers that accept it, and sends them plain to those that do not', async () => {
    const gzipped = await fetch(`${spaServer.url}/assets/app.js`, { headers: { 'accept-encoding': 'gzip' } });
    expect(gzipped.headers.get('content-encoding')).toBe('gzip');
    expect((await gzipped.text()).length).toBeGreaterThan(20_000);
    const plain = await fetch(`${spaServer.url}/assets/app.js`, { headers: { 'accept-encoding': 'identity' } });
    expect(plain.headers.get('content-encoding')).toBeNull();
  });

  it('serves index.html for any app path, so shared job links open', async () => {
    const res = await fetch(`${spaServer.url}/jobs/00000000-0000-0000-0000-000000000000/compare`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('<title>t</title>');
  });
});
