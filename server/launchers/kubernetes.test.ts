// The Kubernetes launcher against a local HTTP server that speaks the Kubernetes API for exactly
// the calls the launcher makes, reached through a real kubeconfig and the real client library.
// Each test asserts the requests themselves: no token in the Job spec, the token in the Secret,
// labels, GPU resources, node selector, tolerations, owner reference, deletes on cancel.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type * as K8s from '@kubernetes/client-node';
import { startTestServer, type TestServer } from '../test-support/server';
import { createDataset, createUser } from '../test-support/factories';
import { listJobEvents } from '../../db/queries/job-events';
import { createLauncherRegistry } from './registry';
import { until } from '../test-support/wait';

interface Recorded {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  body: unknown;
}
type Json = Record<string, unknown>;

/** Just enough of the Kubernetes API: Secrets and Jobs in namespaces, by name, list by one label. */
function fakeKubernetes() {
  const requests: Recorded[] = [];
  const jobs = new Map<string, Json>();
  const secrets = new Map<string, Json>();
  const refuse: { jobCreate?: { code: number; message: string; reason: string } } = {};
  let uids = 0;
  const status = (code: number, reason: string, message: string) => ({ kind: 'Status', apiVersion: 'v1', status: 'Failure', message, reason, code });

  const server: Server = createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://fake');
      const body = text ? (JSON.parse(text) as unknown) : undefined;
      requests.push({ method: req.method ?? '', path: url.pathname, query: Object.fromEntries(url.searchParams), headers: req.headers, body });
      const send = (code: number, payload: unknown) => {
        res.writeHead(code, { 'content-type': 'application/json' });
        res.end(JSON.stringify(payload));
      };
      const key = (ns: string, name: string) => `${ns}/${name}`;
      let m: RegExpMatchArray | null;
      if ((m = url.pathname.match(/^\/api\/v1\/namespaces\/([^/]+)\/secrets$/)) && req.method === 'POST') {
        const secret = body as { metadata: Json };
        const stored = { ...secret, metadata: { ...secret.metadata, uid: `secret-uid-${++uids}` } };
        secrets.set(key(m[1]!, String(secret.metadata.name)), stored);
        return send(201, stored);
      }
      if ((m = url.pathname.match(/^\/api\/v1\/namespaces\/([^/]+)\/secrets\/([^/]+)$/))) {
        const k = key(m[1]!, m[2]!);
        const stored = secrets.get(k);
        if (!stored) return send(404, status(404, 'NotFound', `secrets "${m[2]}" not found`));
        if (req.method === 'DELETE') {
          secrets.delete(k);
          return send(200, { kind: 'Status', apiVersion: 'v1', status: 'Success' });
        }
        if (req.method === 'PATCH') {
          for (const op of body as Array<{ op: string; path: string; value: unknown }>) {
            if (op.op === 'add' && op.path === '/metadata/ownerReferences') (stored.metadata as Json).ownerReferences = op.value;
          }
          return send(200, stored);
        }
      }
      if ((m = url.pathname.match(/^\/apis\/batch\/v1\/namespaces\/([^/]+)\/jobs$/))) {
        if (req.method === 'POST') {
          if (refuse.jobCreate) return send(refuse.jobCreate.code, status(refuse.jobCreate.code, refuse.jobCreate.reason, refuse.jobCreate.message));
          const job = body as { metadata: Json };
          const stored = { ...job, metadata: { ...job.metadata, uid: `job-uid-${++uids}` }, status: {} };
          jobs.set(key(m[1]!, String(job.metadata.name)), stored);
          return send(201, stored);
        }
        if (req.method === 'GET') {
          const [labelKey, labelValue] = (url.searchParams.get('labelSelector') ?? '').split('=');
          const items = [...jobs.entries()]
            .filter(([k]) => k.startsWith(`${m![1]}/`))
            .map(([, job]) => job)
            .filter((job) => ((job.metadata as Json).labels as Record<string, string>)[labelKey ?? ''] === labelValue);
          return send(200, { apiVersion: 'batch/v1', kind: 'JobList', metadata: { resourceVersion: '1' }, items });
        }
      }
      if ((m = url.pathname.match(/^\/apis\/batch\/v1\/namespaces\/([^/]+)\/jobs\/([^/]+)$/)) && req.method === 'DELETE') {
        if (!jobs.delete(key(m[1]!, m[2]!))) return send(404, status(404, 'NotFound', `jobs.batch "${m[2]}" not found`));
        return send(200, { kind: 'Status', apiVersion: 'v1', status: 'Success' });
      }
      send(404, status(404, 'NotFound', `the fake does not serve ${req.method} ${url.pathname}`));
    });
  });

  return {
    requests,
    jobs,
    secrets,
    refuse,
    /** The requests other than the launcher's periodic list of Jobs. */
    calls: () => requests.filter((r) => !(r.method === 'GET' && r.path.endsWith('/jobs'))),
    setConditions(namespace: string, name: string, conditions: Json[]) {
      const job = jobs.get(`${namespace}/${name}`);
      if (!job) throw new Error(`no job ${namespace}/${name}`);
      job.status = { conditions };
    },
    async listen(): Promise<string> {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const ENV = {
  SESSION_SECRET: 's'.repeat(40),
  JOB_TOKEN_SECRET: 'j'.repeat(40),
  KUBERNETES_ENABLED: 'true',
  KUBERNETES_NAMESPACE: 'training',
  KUBERNETES_IMAGE: 'registry.example/predictions:1.2',
  KUBERNETES_GPU_COUNT: '2',
  KUBERNETES_MEMORY: '16Gi',
  KUBERNETES_NODE_SELECTOR: '{"cloud.google.com/gke-accelerator":"nvidia-l4"}',
  KUBERNETES_TOLERATIONS: '[{"key":"nvidia.com/gpu","operator":"Exists","effect":"NoSchedule"}]',
  KUBERNETES_TTL_SECONDS_AFTER_FINISHED: '600',
  KUBERNETES_POLL_SECONDS: '1',
};

let kube: ReturnType<typeof fakeKubernetes>;
let server: TestServer;
let kubeConfig: (k8s: typeof K8s) => K8s.KubeConfig;

beforeAll(async () => {
  kube = fakeKubernetes();
  const apiServer = await kube.listen();
  // A kubeconfig as kubectl would have it, pointing at the fake API server.
  kubeConfig = (k8s) => {
    const kc = new k8s.KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: apiServer, skipTLSVerify: true }],
      users: [{ name: 'launcher', token: 'kube-api-token' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'launcher' }],
      currentContext: 'fake',
    });
    return kc;
  };
  server = await startTestServer(ENV, { launchers: (deps) => createLauncherRegistry(deps, { kubeConfig }) });
});
afterAll(async () => {
  await server?.close();
  await kube?.close();
});
beforeEach(async () => {
  await server.database.truncate();
  kube.requests.length = 0;
  kube.jobs.clear();
  kube.secrets.clear();
  delete kube.refuse.jobCreate;
});

async function deployKubernetesJob(target: TestServer = server) {
  const user = await createUser(target.deps);
  const dataset = await createDataset(target.deps, user.id);
  const api = target.client(user.token);
  const { job, pod } = await api.jobs.deploy.mutate({ name: 'on the cluster', config: { datasetId: dataset.id, launcher: 'kubernetes' } });
  return { user, api, job, pod, names: { job: `predictions-${job.id}`, secret: `predictions-${job.id}-token` } };
}

describe('kubernetes launcher', () => {
  it('creates a Secret holding the job token, then a Job that only references it, then ties the Secret to the Job', async () => {
    const { user, job, pod, names } = await deployKubernetesJob();
    expect(job.status).toBe('starting');
    expect(pod).toBeNull(); // the token is never shown to the user for a launcher that starts the pod itself

    const calls = kube.calls();
    expect(calls.map((c) => `${c.method} ${c.path}`)).toEqual([
      'POST /api/v1/namespaces/training/secrets',
      'POST /apis/batch/v1/namespaces/training/jobs',
      `PATCH /api/v1/namespaces/training/secrets/${names.secret}`,
    ]);
    for (const c of calls) expect(c.headers.authorization).toBe('Bearer kube-api-token');

    const labels = { 'app.kubernetes.io/managed-by': 'predictions-server', 'predictions/job-id': job.id, 'predictions/user-id': user.id };
    const secret = calls[0]!.body as { stringData: { JOB_TOKEN: string } };
    expect(secret).toEqual({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: names.secret, namespace: 'training', labels },
      type: 'Opaque',
      stringData: { JOB_TOKEN: expect.stringMatching(/^ey[\w-]+\.[\w-]+\.[\w-]+$/) },
    });
    const token = secret.stringData.JOB_TOKEN;

    const jobBody = calls[1]!.body;
    expect(JSON.stringify(jobBody)).not.toContain(token);
    expect(jobBody).toEqual({
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: names.job, namespace: 'training', labels },
      spec: {
        backoffLimit: 0,
        ttlSecondsAfterFinished: 600,
        template: {
          metadata: { labels },
          spec: {
            restartPolicy: 'Never',
            automountServiceAccountToken: false,
            nodeSelector: { 'cloud.google.com/gke-accelerator': 'nvidia-l4' },
            tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
            containers: [
              {
                name: 'trainer',
                image: 'registry.example/predictions:1.2',
                command: ['node', '--import', 'tsx', 'trainer/main.ts'],
                env: [
                  { name: 'JOB_ID', value: job.id },
                  { name: 'API_URL', value: server.deps.config.publicUrl },
                  { name: 'JOB_TOKEN', valueFrom: { secretKeyRef: { name: names.secret, key: 'JOB_TOKEN' } } },
                ],
                resources: {
                  requests: { 'nvidia.com/gpu': '2', memory: '16Gi' },
                  limits: { 'nvidia.com/gpu': '2', memory: '16Gi' },
                },
                securityContext: { allowPrivilegeEscalation: false },
              },
            ],
          },
        },
      },
    });

    const jobUid = (kube.jobs.get(`training/${names.job}`)?.metadata as { uid: string }).uid;
    expect(calls[2]!.headers['content-type']).toBe('application/json-patch+json');
    expect(calls[2]!.body).toEqual([
      { op: 'add', path: '/metadata/ownerReferences', value: [{ apiVersion: 'batch/v1', kind: 'Job', name: names.job, uid: jobUid }] },
    ]);

    // The Secret's token is a working job token: the pod can report with it.
    await server.client(token).pod.heartbeat.mutate({ status: 'running' });
    const running = await server.client(user.token).jobs.get.query({ jobId: job.id });
    expect(running.status).toBe('running');
  });

  it('cancel deletes the Job (background propagation) and its Secret', async () => {
    const { api, job, names } = await deployKubernetesJob();
    kube.requests.length = 0;
    const cancelled = await api.jobs.cancel.mutate({ jobId: job.id });
    expect(cancelled.status).toBe('cancelled');
    const deletes = kube.calls().map((c) => ({ method: c.method, path: c.path, query: c.query }));
    expect(deletes).toEqual([
      { method: 'DELETE', path: `/apis/batch/v1/namespaces/training/jobs/${names.job}`, query: { propagationPolicy: 'Background' } },
      { method: 'DELETE', path: `/api/v1/namespaces/training/secrets/${names.secret}`, query: {} },
    ]);
    expect(kube.jobs.has(`training/${names.job}`) || kube.secrets.has(`training/${names.secret}`)).toBe(false);
  });

  it('fails the training job with the message of a Failed condition, and removes the Secret', async () => {
    const { api, job, names } = await deployKubernetesJob();
    kube.setConditions('training', names.job, [
      { type: 'FailureTarget', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' },
      { type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' },
    ]);
    const failed = await until(() => api.jobs.get.query({ jobId: job.id }), (j) => j.status === 'failed');
    expect(failed.status).toBe('failed');
    expect(failed.error).toContain('The Kubernetes Job failed (BackoffLimitExceeded: Job has reached the specified backoff limit)');
    await until(async () => kube.secrets.has(`training/${names.secret}`), (present) => !present);
    expect(kube.secrets.has(`training/${names.secret}`)).toBe(false);
  });

  it('a Complete Job whose trainer never reported the end fails the job; one that did stays completed', async () => {
    const silent = await deployKubernetesJob();
    const reported = await deployKubernetesJob();
    const token = (kube.secrets.get(`training/${reported.names.secret}`)?.stringData as { JOB_TOKEN: string }).JOB_TOKEN;
    await server.client(token).pod.finish.mutate({ status: 'completed' });
    for (const { names } of [silent, reported]) kube.setConditions('training', names.job, [{ type: 'Complete', status: 'True' }]);

    const failed = await until(() => silent.api.jobs.get.query({ jobId: silent.job.id }), (j) => j.status !== 'starting');
    expect(failed.status).toBe('failed');
    expect(failed.error).toBe('The trainer exited without reporting the end of training');
    expect((await reported.api.jobs.get.query({ jobId: reported.job.id })).status).toBe('completed');
  });

  it("puts Kubernetes' refusal on the job as its error, and removes the Secret it had created", async () => {
    kube.refuse.jobCreate = {
      code: 403,
      reason: 'Forbidden',
      message: 'jobs.batch is forbidden: User "system:serviceaccount:predictions:server" cannot create resource "jobs" in API group "batch" in the namespace "training"',
    };
    const { user, job, names } = await deployKubernetesJob();
    expect(job.status).toBe('failed');
    expect(job.error).toBe(
      `Launcher kubernetes failed: Kubernetes refused to create the Job ${names.job} (HTTP 403): jobs.batch is forbidden: User "system:serviceaccount:predictions:server" cannot create resource "jobs" in API group "batch" in the namespace "training"`,
    );
    expect(kube.calls().map((c) => `${c.method} ${c.path}`)).toEqual([
      'POST /api/v1/namespaces/training/secrets',
      'POST /apis/batch/v1/namespaces/training/jobs',
      `DELETE /api/v1/namespaces/training/secrets/${names.secret}`,
    ]);
    expect(kube.secrets.has(`training/${names.secret}`)).toBe(false);
    const events = await listJobEvents(server.database.db, { userId: user.id, jobId: job.id });
    expect(events.filter((e) => e.kind === 'launcher_error')).toHaveLength(1);
  });

  it('instances that did not start a Job (after a restart, or others) still see it end, and the end is recorded once', async () => {
    const launchers = (deps: TestServer['deps']) => createLauncherRegistry(deps, { kubeConfig });
    const first = await startTestServer(ENV, { database: server.database, launchers });
    const { user, job, names } = await deployKubernetesJob(first);
    await first.close(); // the instance that started the Job is gone
    const lists = () => kube.requests.filter((r) => r.method === 'GET' && r.path.endsWith('/jobs')).length;
    const listedBefore = lists();
    // Two instances start afterwards; each finds the live Job by its labels when it starts.
    const others = [await startTestServer(ENV, { database: server.database, launchers }), await startTestServer(ENV, { database: server.database, launchers })];
    try {
      // Each instance lists the Jobs it manages as it starts; both have once two lists arrived.
      await until(lists, (n) => n >= listedBefore + 2, 'both instances to list the Jobs');
      const listedAtEnd = lists();
      kube.setConditions('training', names.job, [{ type: 'Failed', status: 'True', reason: 'DeadlineExceeded', message: 'Job was active longer than specified deadline' }]);
      const api = server.client(user.token);
      const failed = await until(() => api.jobs.get.query({ jobId: job.id }), (j) => j.status === 'failed');
      expect(failed.error).toContain('DeadlineExceeded: Job was active longer than specified deadline');
      // An instance stops following a Job once a list shows it ended, so two lists since the end
      // are one from each instance: both have seen the failed Job.
      await until(lists, (n) => n >= listedAtEnd + 2, 'both instances to see the end');
      const exits = (await listJobEvents(server.database.db, { userId: user.id, jobId: job.id })).filter((e) => e.kind === 'pod_exited');
      expect(exits).toHaveLength(1);
    } finally {
      await Promise.all(others.map((o) => o.close()));
    }
  });
});
