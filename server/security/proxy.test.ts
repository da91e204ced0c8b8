// Audit F9: behind a proxy, the client address the throttles count is the one the trusted proxy
// saw, never one the client wrote. TRUST_PROXY is Express's own `trust proxy` with a hop count
// (or proxy addresses); `true`, which trusts the left-most X-Forwarded-For entry, is refused.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../env';
import { RATE_LIMITS } from '../auth/rate-limit';
import { uniqueEmail } from '../test-support/factories';
import { useTestServer, type TestServer } from '../test-support/server';

const CLIENT_LIMIT = RATE_LIMITS.loginClient.points;

async function loginVia(server: TestServer, forwardedFor: string): Promise<number> {
  const response = await fetch(`${server.url}/trpc/auth.login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-forwarded-for': forwardedFor },
    body: JSON.stringify({ email: uniqueEmail('proxy'), password: 'wrong password 123' }),
  });
  await response.arrayBuffer();
  return response.status;
}

describe('TRUST_PROXY=1 (one proxy in front, which appends the address it saw)', () => {
  let server: TestServer;
  useTestServer((started) => (server = started), { TRUST_PROXY: '1' });

  it(`a client rotating the left-most X-Forwarded-For entry is still one client: at most ${CLIENT_LIMIT} passwords checked`, async () => {
    // What the client sends, then what the proxy appends: the client's real address, 198.51.100.7.
    const statuses = await Promise.all(
      Array.from({ length: CLIENT_LIMIT + 20 }, (_, i) => loginVia(server, `203.0.113.${i % 250}, 198.51.100.7`)),
    );
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(CLIENT_LIMIT);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(20);
  }, 120_000);

  it('another address seen by the proxy is another client, with its own limit', async () => {
    const first = await Promise.all(Array.from({ length: CLIENT_LIMIT }, () => loginVia(server, '198.51.100.8')));
    expect(first.every((s) => s === 401)).toBe(true);
    expect(await loginVia(server, '198.51.100.8')).toBe(429);
    expect(await loginVia(server, '198.51.100.9')).toBe(401);
  }, 120_000);
});

describe('TRUST_PROXY parsing', () => {
  const parse = (value: string) => loadConfig({ TRUST_PROXY: value }).trustProxy;

  it('takes a hop count, 0 (the default) meaning no proxy', () => {
    expect(loadConfig({}).trustProxy).toBe(0);
    expect(parse('0')).toBe(0);
    expect(parse('2')).toBe(2);
    expect(parse('false')).toBe(0);
  });

  it('takes a comma-separated list of proxy addresses and subnets', () => {
    expect(parse('10.0.0.1, 10.1.0.0/16,loopback, fd00::/8')).toEqual(['10.0.0.1', '10.1.0.0/16', 'loopback', 'fd00::/8']);
  });

  it('refuses true, naming the variable and saying to give the number of proxies', () => {
    expect(() => parse('true')).toThrow(ConfigError);
    expect(() => parse('true')).toThrow(/TRUST_PROXY: .*number of proxies/);
  });

  it('refuses what is neither a count nor addresses', () => {
    expect(() => parse('yes')).toThrow(/TRUST_PROXY: must be a number of proxy hops/);
    expect(() => parse('10.0.0.0/99')).toThrow(/TRUST_PROXY/);
    expect(() => parse('1000')).toThrow(/TRUST_PROXY: must be at most 32 proxy hops/);
  });
});
