// The RunPod launcher against a local HTTP server standing in for RunPod's REST API (pods:
// create, get, terminate), enabled the way an operator enables it: RUNPOD_API_KEY and friends.
// Asserts the exact requests, and that RunPod's refusals end up as the job's error.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../test-support/server';
import { createDataset, createUser } from '../test-support/factories';
import { insertJob, setLauncherRef } from '../../db/queries/jobs';
import { listJobEvents } from '../../db/queries/job-events';
import { jobConfig } from '#contract/job-config';
import { until } from '../test-support/wait';

interface Recorded {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: unknown;
}

function fakeRunpod() {
  const requests: Recorded[] = [];
  const pods = new Map<string, { id: string; desiredStatus: string; lastStatusChange?: string }>();
  const refuse: { create?: { status: number; body: string } } = {};
  let ids = 0;
  const server: Server = createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => {
      const path = new URL(req.url ?? '/', 'http://fake').pathname;
      requests.push({ method: req.method ?? '', path, headers: req.headers, body: text ? (JSON.parse(text) as unknown) : undefined });
      const send = (status: number, payload?: unknown) => {
        res.writeHead(status, payload === undefined ? {} : { 'content-type': 'application/json' });
        res.end(payload === undefined ? undefined : JSON.stringify(payload));
      };
      if (req.headers.authorization !== 'Bearer rp_test_key_0123456789') return send(401, { error: 'invalid api key' });
      if (path === '/v1/pods' && req.method === 'POST') {
        if (refuse.create) {
          res.writeHead(refuse.create.status, { 'content-type': 'application/json' });
          return res.end(refuse.create.body);
        }
        const pod = { id: `pod${++ids}abc`, desiredStatus: 'RUNNING' };
        pods.set(pod.id, pod);
        return send(201, { ...pod, imageName: (JSON.parse(text) as { imageName: string }).imageName });
      }
      const m = path.match(/^\/v1\/pods\/([^/]+)$/);
      const pod = m ? pods.get(m[1]!) : undefined;
      if (!m || !pod) return send(404, { error: 'pod not found' });
      if (req.method === 'GET') return send(200, pod);
      if (req.method === 'DELETE') {
        pods.delete(pod.id);
        return send(200);
      }
      send(405, { error: 'method not allowed' });
    });
  });
  return {
    requests,
    pods,
    refuse,
    /** The requests other than the launcher's status reads; with a pod id, only those about that pod (and creates). */
    calls: (podId?: string) => requests.filter((r) => r.method !== 'GET' && (!podId || r.method === 'POST' || r.path === `/v1/pods/${podId}`)),
    async listen(): Promise<string> {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const API_KEY = 'rp_test_key_0123456789';
let runpod: ReturnType<typeof fakeRunpod>;
let server: TestServer;

beforeAll(async () => {
  runpod = fakeRunpod();
  const url = await runpod.listen();
  server = await startTestServer({
    RUNPOD_API_KEY: API_KEY,
    RUNPOD_API_URL: `${url}/v1`,
    RUNPOD_IMAGE: 'ghcr.io/example/predictions-trainer:1.2',
    RUNPOD_GPU_TYPE: 'NVIDIA GeForce RTX 4090, NVIDIA RTX A6000',
    RUNPOD_CLOUD_TYPE: 'SECURE',
    RUNPOD_POLL_SECONDS: '1',
  });
});
afterAll(async () => {
  await server?.close();
  await runpod?.close();
});
beforeEach(async () => {
  await server.database.truncate();
  runpod.requests.length = 0;
  runpod.pods.clear();
  delete runpod.refuse.create;
});

async function deployRunpodJob() {
  const user = await createUser(server.deps);
  const dataset = await createDataset(server.deps, user.id);
  const api = server.client(user.token);
  const { job, pod } = await api.jobs.deploy.mutate({ name: 'on runpod', config: { datasetId: dataset.id, launcher: 'runpod' } });
  return { user, api, job, pod };
}

describe('runpod launcher', () => {
  it('creates one pod with the image, GPU types and the three pod variables, authorised by the API key', async () => {
    const { user, job, pod } = await deployRunpodJob();
    expect(job.status).toBe('starting');
    expect(pod).toBeNull();
    const creates = runpod.calls().filter((c) => c.method === 'POST');
    expect(creates).toHaveLength(1);
    const create = creates[0];
    expect(create).toMatchObject({ method: 'POST', path: '/v1/pods' });
    expect(create!.headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(create!.headers['content-type']).toBe('application/json');
    expect(create!.body).toEqual({
      name: `predictions-${job.id}`,
      imageName: 'ghcr.io/example/predictions-trainer:1.2',
      gpuTypeIds: ['NVIDIA GeForce RTX 4090', 'NVIDIA RTX A6000'],
      gpuCount: 1,
      containerDiskInGb: 20,
      cloudType: 'SECURE',
      dockerStartCmd: ['node', '--import', 'tsx', 'trainer/main.ts'],
      env: { JOB_ID: job.id, JOB_TOKEN: expect.any(String), API_URL: server.deps.config.publicUrl },
    });
    // RunPod keeps env in the pod definition; the token there is this job's alone and works only while it is live.
    const token = (create!.body as { env: { JOB_TOKEN: string } }).env.JOB_TOKEN;
    await server.client(token).pod.heartbeat.mutate({ status: 'running' });
    expect((await server.client(user.token).jobs.get.query({ jobId: job.id })).status).toBe('running');
  });

  it('cancel terminates the pod', async () => {
    const { api, job } = await deployRunpodJob();
    const [podId] = [...runpod.pods.keys()];
    runpod.requests.length = 0;
    await api.jobs.cancel.mutate({ jobId: job.id });
    expect(runpod.calls(podId).map((c) => `${c.method} ${c.path}`)).toEqual([`DELETE /v1/pods/${podId}`]);
    expect(runpod.pods.has(podId!)).toBe(false);
  });

  it('a pod that stops while its job is live fails the job with why, and is terminated', async () => {
    const { api, job } = await deployRunpodJob();
    const [pod] = [...runpod.pods.values()];
    pod!.desiredStatus = 'EXITED';
    pod!.lastStatusChange = 'Exited by container: exit code 137';
    const failed = await until(() => api.jobs.get.query({ jobId: job.id }), (j) => j.status === 'failed');
    expect(failed.error).toBe(`The RunPod pod ${pod!.id} stopped before the job finished (Exited by container: exit code 137).`);
    await until(async () => runpod.pods.size, (n) => n === 0);
    expect(runpod.calls(pod!.id).map((c) => `${c.method} ${c.path}`)).toEqual(['POST /v1/pods', `DELETE /v1/pods/${pod!.id}`]);
    expect(runpod.requests.some((r) => r.method === 'GET' && r.path === `/v1/pods/${pod!.id}`)).toBe(true);
  });

  it('terminates the pod once its job has finished, so it stops costing money', async () => {
    const { api, job } = await deployRunpodJob();
    const token = (runpod.calls()[0]!.body as { env: { JOB_TOKEN: string } }).env.JOB_TOKEN;
    const [podId] = [...runpod.pods.keys()];
    await server.client(token).pod.finish.mutate({ status: 'completed' });
    await until(async () => runpod.pods.size, (n) => n === 0);
    expect(runpod.calls(podId).map((c) => `${c.method} ${c.path}`)).toEqual(['POST /v1/pods', `DELETE /v1/pods/${podId}`]);
    expect((await api.jobs.get.query({ jobId: job.id })).status).toBe('completed');
  });

  it("puts RunPod's refusal on the job as its error (4xx with RunPod's message, 5xx with its text), never the key", async () => {
    runpod.refuse.create = {
      status: 400,
      body: JSON.stringify({ error: 'There are no longer any instances available with the requested specifications. Please refresh and try again.', status: 400 }),
    };
    const { user, job } = await deployRunpodJob();
    expect(job.status).toBe('failed');
    expect(job.error).toBe(
      'Launcher runpod failed: RunPod refused to create a pod (HTTP 400): There are no longer any instances available with the requested specifications. Please refresh and try again.',
    );
    const events = await listJobEvents(server.database.db, { userId: user.id, jobId: job.id });
    expect(events.filter((e) => e.kind === 'launcher_error')).toEqual([
      expect.objectContaining({ detail: expect.objectContaining({ launcher: 'runpod', message: expect.stringContaining('no longer any instances') }) }),
    ]);

    runpod.refuse.create = { status: 502, body: `upstream error while handling key ${API_KEY}` };
    const { job: second } = await deployRunpodJob();
    expect(second.error).toBe('Launcher runpod failed: RunPod refused to create a pod (HTTP 502): upstream error while handling key [redacted]');
  });

  it('an instance that did not create the pod (its creator gone) finds it and records its end', async () => {
    // A live job whose pod was created by an instance that no longer runs.
    const user = await createUser(server.deps);
    const dataset = await createDataset(server.deps, user.id);
    const config = jobConfig.parse({ datasetId: dataset.id, launcher: 'runpod' });
    const { id: jobId } = await insertJob(server.database.db, { userId: user.id, datasetId: dataset.id, name: 'orphan', launcher: 'runpod', config, status: 'running' });
    await setLauncherRef(server.database.db, { jobId, userId: user.id, launcherRef: 'podorphan1', launcherOwner: 'gone-instance' });
    runpod.pods.set('podorphan1', { id: 'podorphan1', desiredStatus: 'RUNNING' });

    const other = await startTestServer(
      { RUNPOD_API_KEY: API_KEY, RUNPOD_API_URL: server.deps.config.launchers.runpod?.apiUrl ?? '', RUNPOD_IMAGE: 'img', RUNPOD_GPU_TYPE: 'NVIDIA A40', RUNPOD_POLL_SECONDS: '1' },
      { database: server.database },
    );
    try {
      await until(async () => runpod.requests.filter((r) => r.method === 'GET' && r.path === '/v1/pods/podorphan1').length, (n) => n > 0);
      runpod.pods.set('podorphan1', { id: 'podorphan1', desiredStatus: 'EXITED', lastStatusChange: 'Exited by user' });
      const job = await until(() => server.client(user.token).jobs.get.query({ jobId }), (j) => j.status !== 'running');
      expect(job.status).toBe('failed');
      expect(job.error).toMatch(/RunPod pod podorphan1 stopped before the job finished \(Exited by user\)/);
      // The job ends before the launcher's DELETE goes out: wait for it rather than race it.
      const calls = await until(() => runpod.calls('podorphan1'), (all) => all.some((c) => c.method === 'DELETE'), 'the launcher to delete the pod');
      expect(calls).toContainEqual(expect.objectContaining({ method: 'DELETE', path: '/v1/pods/podorphan1' }));
    } finally {
      await other.close();
    }
  });
});
