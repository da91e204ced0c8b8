// Acting as a pod over real HTTP in tests: raw posts with a job token, a write that must answer
// 200 and returns its data, a prediction row, and a fresh user with a manual job.
import { expect } from 'vitest';
import { createManualJob, createUser } from './factories';
import type { TestServer } from './server';

export type TrpcBody = { result?: { data: unknown }; error?: { message: string; data?: { field?: string | null } } };

export function podWrites(getServer: () => TestServer) {
  const post = (procedure: string, input: unknown, token: string) =>
    getServer().raw(procedure, { method: 'POST', body: JSON.stringify(input), token });
  return {
    post,
    /** POSTs `input` to a pod procedure, expects 200, and returns the answer's data. */
    async write<T>(procedure: string, input: unknown, token: string): Promise<T> {
      const res = await post(procedure, input, token);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return (res.body as TrpcBody).result?.data as T;
    },
    /** A signed-in user with a manual job: its token, env, and the user's typed client. */
    async setup() {
      const server = getServer();
      const user = await createUser(server.deps);
      const job = await createManualJob(server.deps, user.id);
      return { ...job, user, api: server.client(user.token) };
    },
  };
}

/** One prediction row as a pod sends it; texts derive from the key unless `prediction` is given. */
export const predictionRow = (epoch: number, step: number, sampleIndex: number, prediction = `guess ${step}/${sampleIndex}`) => ({
  epoch,
  step,
  sampleIndex,
  trigger: 'eval' as const,
  prompt: `prompt ${sampleIndex}`,
  groundTruth: `truth ${sampleIndex}`,
  prediction,
});
