// Which launchers a server offers, from its environment: the defaults, LAUNCHERS, the settings
// each launcher needs (named when missing), and launchers.list, which shows settings but never
// a secret.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../env';
import { startTestServer, type TestServer } from '../test-support/server';
import { createDataset, createUser } from '../test-support/factories';
import { configProblems as problems } from '../test-support/config';

const RUNPOD = { RUNPOD_API_KEY: 'rp_secret_key_do_not_show', RUNPOD_IMAGE: 'ghcr.io/example/trainer:1', RUNPOD_GPU_TYPE: 'NVIDIA L4' };
const KUBERNETES = { KUBERNETES_ENABLED: 'true', KUBERNETES_IMAGE: 'registry.example/predictions:1.2', KUBECONFIG: '/nonexistent/kubeconfig' };

describe('launcher configuration', () => {
  it('offers local and manual by default, and kubernetes / runpod only when configured', () => {
    expect(loadConfig({}).launchers).toEqual({ enabled: ['local', 'manual'], local: { command: null }, kubernetes: null, runpod: null });
    expect(loadConfig(RUNPOD).launchers.enabled).toEqual(['local', 'manual', 'runpod']);
    expect(loadConfig(KUBERNETES).launchers.enabled).toEqual(['local', 'manual', 'kubernetes']);
    expect(loadConfig({ ...KUBERNETES, KUBERNETES_ENABLED: 'false' }).launchers.enabled).toEqual(['local', 'manual']);
  });

  it('LAUNCHERS lists exactly the launchers to offer', () => {
    expect(loadConfig({ LAUNCHERS: 'manual' }).launchers.enabled).toEqual(['manual']);
    expect(loadConfig({ ...RUNPOD, LAUNCHERS: 'manual, runpod' }).launchers.enabled).toEqual(['manual', 'runpod']);
    expect(problems({ LAUNCHERS: 'local,slurm' })[0]).toMatch(/^LAUNCHERS/);
    expect(problems({ ...KUBERNETES, LAUNCHERS: 'kubernetes', KUBERNETES_ENABLED: 'false' })).toEqual([
      'LAUNCHERS: lists kubernetes, but KUBERNETES_ENABLED is false',
    ]);
  });

  it('names each setting a wanted launcher lacks, and never echoes a value', () => {
    expect(problems({ KUBERNETES_ENABLED: 'true' })).toEqual([
      'KUBERNETES_IMAGE: required when the kubernetes launcher is enabled (the image that runs the trainer)',
    ]);
    const runpod = problems({ RUNPOD_API_KEY: 'rp_secret_key_do_not_show' });
    expect(runpod.map((p) => p.split(':')[0])).toEqual(['RUNPOD_IMAGE', 'RUNPOD_GPU_TYPE']);
    expect(runpod.join('\n')).not.toContain('rp_secret_key_do_not_show');
    expect(problems({ LAUNCHERS: 'runpod' }).map((p) => p.split(':')[0])).toEqual(['RUNPOD_API_KEY', 'RUNPOD_IMAGE', 'RUNPOD_GPU_TYPE']);
  });

  it('parses the Kubernetes settings, JSON ones included, with the defaults', () => {
    const k = loadConfig({
      ...KUBERNETES,
      KUBERNETES_NAMESPACE: 'ml',
      KUBERNETES_NODE_SELECTOR: '{"pool":"gpu"}',
      KUBERNETES_TOLERATIONS: '[{"key":"nvidia.com/gpu","operator":"Exists","effect":"NoSchedule"}]',
    }).launchers.kubernetes;
    expect(k).toMatchObject({
      kubeconfig: { kind: 'file', path: '/nonexistent/kubeconfig' },
      namespace: 'ml',
      gpuCount: 1,
      gpuResource: 'nvidia.com/gpu',
      nodeSelector: { pool: 'gpu' },
      tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
      command: ['node', '--import', 'tsx', 'trainer/main.ts'],
      ttlSecondsAfterFinished: 3600,
    });
    expect(loadConfig({ KUBERNETES_ENABLED: 'true', KUBERNETES_IMAGE: 'x', KUBERNETES_SERVICE_HOST: '10.0.0.1' }).launchers.kubernetes?.kubeconfig).toEqual({
      kind: 'in-cluster',
    });
    expect(loadConfig({ KUBERNETES_ENABLED: 'true', KUBERNETES_IMAGE: 'x' }).launchers.kubernetes?.kubeconfig).toEqual({ kind: 'home' });
    expect(problems({ ...KUBERNETES, KUBERNETES_TOLERATIONS: '{not json' })[0]).toMatch(/^KUBERNETES_TOLERATIONS: must be JSON/);
    expect(problems({ ...KUBERNETES, KUBERNETES_TOLERATIONS: '[{"operator":"Sometimes"}]' })[0]).toMatch(/^KUBERNETES_TOLERATIONS/);
    expect(problems({ ...KUBERNETES, KUBERNETES_NODE_SELECTOR: '{"pool":3}' })[0]).toMatch(/^KUBERNETES_NODE_SELECTOR/);
    expect(problems({ ...KUBERNETES, KUBERNETES_MEMORY: 'lots' })[0]).toMatch(/^KUBERNETES_MEMORY: must be a Kubernetes quantity/);
  });
});

describe('launchers.list', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ ...RUNPOD, ...KUBERNETES, RUNPOD_API_URL: 'http://127.0.0.1:9/v1', LOCAL_TRAINER_COMMAND: '["python3","train.py"]' });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('returns the configured launchers with their settings, and no secret', async () => {
    const user = await createUser(server.deps);
    const { items } = await server.client(user.token).launchers.list.query();
    expect(items.map((l) => l.name)).toEqual(['local', 'manual', 'kubernetes', 'runpod']);
    expect(items.find((l) => l.name === 'runpod')).toEqual({
      name: 'runpod',
      description: 'Runs each job on a RunPod GPU pod (1× NVIDIA L4).',
      settings: { image: 'ghcr.io/example/trainer:1', gpuTypes: 'NVIDIA L4', gpuCount: 1, cloudType: null, containerDiskInGb: 20 },
    });
    expect(items.find((l) => l.name === 'kubernetes')?.settings).toMatchObject({ namespace: 'default', image: 'registry.example/predictions:1.2', gpuCount: 1 });
    expect(items.find((l) => l.name === 'local')?.settings).toEqual({ customCommand: true });
    const text = JSON.stringify(items);
    for (const secret of ['rp_secret_key_do_not_show', '/nonexistent/kubeconfig', '127.0.0.1:9']) expect(text).not.toContain(secret);
  });

  it('is for signed-in users only', async () => {
    await expect(server.client().launchers.list.query()).rejects.toThrow(/Sign in first/);
  });

  it('jobs.validateConfig names a launcher this server does not offer', async () => {
    const other = await startTestServer({ LAUNCHERS: 'manual' }, { database: server.database });
    try {
      const user = await createUser(other.deps);
      const dataset = await createDataset(other.deps, user.id);
      const result = await other.client(user.token).jobs.validateConfig.query({ datasetId: dataset.id, launcher: 'local' });
      expect(result.problems).toContainEqual(
        expect.objectContaining({ field: 'launcher', message: 'The "local" launcher is not configured on this server.', fix: 'Choose one of: manual.' }),
      );
    } finally {
      await other.close();
    }
  });
});
