// What a run stored, compared with what its trigger schedules: both as sorted
// "epoch/step/sampleIndex/trigger" keys, so a missing, extra or doubled row shows in the diff.
import { eq } from 'drizzle-orm';
import type { Db } from '../../db/client';
import { trainingPredictions } from '../../db/schema';
import type { JobConfig } from '#contract/job-config';
import { expectedPredictionKeys, type PredictionKey } from '../../trainer/demo-model/schedule';

export const predictionKey = (k: PredictionKey) => `${k.epoch}/${k.step}/${k.sampleIndex}/${k.trigger}`;

export async function storedPredictionKeys(db: Db, jobId: string): Promise<string[]> {
  const rows = await db
    .select({ epoch: trainingPredictions.epoch, step: trainingPredictions.step, sampleIndex: trainingPredictions.sampleIndex, trigger: trainingPredictions.trigger })
    .from(trainingPredictions)
    .where(eq(trainingPredictions.jobId, jobId));
  return rows.map(predictionKey).sort();
}

export function expectedKeysFor(config: Pick<JobConfig, 'training' | 'predictions'>, datasetRows: number): string[] {
  return expectedPredictionKeys(config, datasetRows).map(predictionKey).sort();
}
