// Audit F16: what a pod or a signed-in user sends is bounded, with a 400
// that names the field and the limit, and what the server holds per user is capped.
// - heartbeat `env`: a 7 MB report (150 000 names) was stored, and jobs.list then took 1 s;
// - pod.log: lines per call and characters per line;
// - live streams: 300 idle streams of one user cost 61 MB and 23 queries/s.
import { describe, expect, it } from 'vitest';
import { useTestServer, type TestServer } from '../test-support/server';
import { podWrites } from '../test-support/pod-writes';
import { createManualJob, createUser } from '../test-support/factories';
import { until } from '../test-support/wait';
import { LOG_BATCH_MAX, LOG_LINE_MAX, POD_ENV_ENTRIES_MAX, POD_ENV_NAME_MAX } from '#contract/pod.schemas';
import { listJobs } from '../../db/queries/jobs';

const STREAM_CAP = 3;
let server: TestServer;
useTestServer((started) => (server = started), { MAX_LIVE_STREAMS_PER_USER: String(STREAM_CAP) });
const pod = podWrites(() => server);

type ErrorBody = { error?: { message: string; data?: { field?: string | null; code?: string; httpStatus?: number } } };
const errorOf = (body: unknown) => (body as ErrorBody).error;

const envOf = (count: number, name = (i: number) => `VAR_${i}`) => Object.fromEntries(Array.from({ length: count }, (_, i) => [name(i), true]));

describe('pod.heartbeat env (F16)', () => {
  it(`takes up to ${POD_ENV_ENTRIES_MAX} printable names of up to ${POD_ENV_NAME_MAX} characters`, async () => {
    const { token } = await pod.setup();
    const env = { ...envOf(POD_ENV_ENTRIES_MAX - 1), ['N'.repeat(POD_ENV_NAME_MAX)]: false };
    await pod.write('pod.heartbeat', { env }, token);
  });

  it('refuses more names than the limit with a 400 naming env and the limit', async () => {
    const { token } = await pod.setup();
    const res = await pod.post('pod.heartbeat', { env: envOf(POD_ENV_ENTRIES_MAX + 1) }, token);
    expect(res.status).toBe(400);
    expect(errorOf(res.body)?.data?.field).toBe('env');
    expect(errorOf(res.body)?.message).toContain(`env holds at most ${POD_ENV_ENTRIES_MAX} variables`);
  });

  it('refuses the 7 MB report of the audit, storing nothing', async () => {
    const { token, jobId, api } = await pod.setup();
    const env = envOf(150_000, (i) => `SOME_LONGISH_VARIABLE_NAME_${i}`);
    const res = await pod.post('pod.heartbeat', { env }, token);
    expect(res.status).toBe(400);
    expect((await api.jobs.get.query({ jobId })).podReport).toBeNull();
  });

  it.each([
    ['too long', 'N'.repeat(POD_ENV_NAME_MAX + 1)],
    ['with a line break', 'JOB\nID'],
    ['with a space', 'JOB ID'],
    ['with a control character', 'JOB\u0007ID'],
    ['empty', ''],
  ])('refuses a name %s with a 400 naming env and the limit', async (_case, name) => {
    const { token } = await pod.setup();
    const res = await pod.post('pod.heartbeat', { env: { JOB_ID: true, [name]: true } }, token);
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(errorOf(res.body)?.data?.field).toBe('env');
    expect(errorOf(res.body)?.message).toContain(`env names must be 1 to ${POD_ENV_NAME_MAX} printable characters`);
  });
});

describe('jobs.list and the pod report (F16)', () => {
  it('reads only the progress from the pod report, not its env or counters', async () => {
    const { token, user } = await pod.setup();
    await pod.write('pod.heartbeat', { env: envOf(POD_ENV_ENTRIES_MAX), epoch: 1, step: 7, totalSteps: 40, counters: { generated: 5, persisted: 5, spooled: 0, rejected: 0 } }, token);
    const [job] = await listJobs(server.database.db, { userId: user.id, limit: 10 });
    expect(job?.podReport).toEqual({ epoch: 1, step: 7, totalSteps: 40 });
    const listed = await pod.setup().then(() => server.client(user.token).jobs.list.query({ limit: 10 }));
    expect(listed.items.find((item) => item.progress.step === 7)?.progress).toEqual({ epoch: 1, step: 7, totalSteps: 40 });
  });
});

describe('pod.log (F16)', () => {
  it(`takes ${LOG_BATCH_MAX} lines of ${LOG_LINE_MAX} characters, and refuses one line more or one character more, naming the limit`, async () => {
    const { token } = await pod.setup();
    const line = (message: string) => ({ level: 'info', message });
    const full = Array.from({ length: LOG_BATCH_MAX }, () => line('x'.repeat(LOG_LINE_MAX)));
    expect(await pod.write('pod.log', { lines: full }, token)).toEqual({ accepted: LOG_BATCH_MAX });

    const tooMany = await pod.post('pod.log', { lines: [...full.slice(1), line('a'), line('b')] }, token);
    expect(tooMany.status).toBe(400);
    expect(errorOf(tooMany.body)?.data?.field).toBe('lines');
    expect(errorOf(tooMany.body)?.message).toContain(String(LOG_BATCH_MAX));

    const tooLong = await pod.post('pod.log', { lines: [line('x'.repeat(LOG_LINE_MAX + 1))] }, token);
    expect(tooLong.status).toBe(400);
    expect(errorOf(tooLong.body)?.data?.field).toBe('lines.0.message');
    expect(errorOf(tooLong.body)?.message).toContain(String(LOG_LINE_MAX));
  });
});

describe('live streams per user (F16)', () => {
  /**
   * Opens predictions.onNew over SSE. tRPC answers a subscription 200 and sends a refusal as a
   * `serialized-error` event; `refusal()` reads up to it. The stream stays open until `close()`.
   */
  async function openStream(token: string, jobId: string) {
    const controller = new AbortController();
    const res = await fetch(`${server.url}/trpc/predictions.onNew?input=${encodeURIComponent(JSON.stringify({ jobId }))}`, {
      headers: { accept: 'text/event-stream', authorization: `Bearer ${token}` },
      signal: controller.signal,
    });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    return {
      async refusal(): Promise<{ message: string; data: { code: string; httpStatus: number } }> {
        let text = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`the stream ended without a refusal: ${text}`);
          text += new TextDecoder().decode(value);
          const match = /event: serialized-error\ndata: (.*)\n/.exec(text);
          if (match?.[1]) return JSON.parse(match[1]) as { message: string; data: { code: string; httpStatus: number } };
        }
      },
      close: () => {
        controller.abort();
        reader.cancel().catch(() => undefined);
      },
    };
  }
  const slotsOf = (userId: string, n: number) => until(() => server.deps.live.openStreams(userId), (open) => open === n, `${n} open streams`);

  it(`refuses the stream past MAX_LIVE_STREAMS_PER_USER (${STREAM_CAP}) with TOO_MANY_REQUESTS naming the limit, and frees a slot when a stream ends`, async () => {
    const { user, jobId } = await pod.setup();
    const open = [];
    for (let i = 0; i < STREAM_CAP; i++) open.push(await openStream(user.token, jobId));
    await slotsOf(user.id, STREAM_CAP);

    const refused = await openStream(user.token, jobId);
    const error = await refused.refusal();
    expect(error.data).toMatchObject({ code: 'TOO_MANY_REQUESTS', httpStatus: 429 });
    expect(error.message).toContain(`MAX_LIVE_STREAMS_PER_USER = ${STREAM_CAP}`);
    expect(error.message).toContain('close other tabs');
    refused.close();
    expect(server.deps.live.openStreams(user.id)).toBe(STREAM_CAP);

    // Another user is not held back by this one's streams.
    const other = await createUser(server.deps);
    const otherJob = await createManualJob(server.deps, other.id);
    const theirs = await openStream(other.token, otherJob.jobId);
    await slotsOf(other.id, 1);
    theirs.close();

    // The client goes away: its slot comes back, and a new stream opens.
    open.pop()?.close();
    await slotsOf(user.id, STREAM_CAP - 1);
    open.push(await openStream(user.token, jobId));
    await slotsOf(user.id, STREAM_CAP);
    for (const stream of open) stream.close();
    await slotsOf(user.id, 0);
  });

  it('keeps no slot for a stream refused before it opened (a job id that is not yours)', async () => {
    const owner = await createUser(server.deps);
    const { jobId } = await createManualJob(server.deps, owner.id);
    const stranger = await createUser(server.deps);
    for (let i = 0; i < STREAM_CAP + 2; i++) {
      const stream = await openStream(stranger.token, jobId);
      expect((await stream.refusal()).data.code).toBe('NOT_FOUND');
      stream.close();
    }
    expect(server.deps.live.openStreams(stranger.id)).toBe(0);
  });
});
