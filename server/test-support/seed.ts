// Bulk test data written straight into the table with generate_series: seconds for 100 000
// rows, where the API would take minutes. Rows are laid out like a real job's: `samples`
// predictions per trigger fire, `firesPerEpoch` fires per epoch, steps increasing.
import { sql } from 'drizzle-orm';
import type { Db } from '../../db/client';
import { unsafeRebuildEpochStats } from '../../db/queries/predictions';

export async function seedPredictions(
  db: Db,
  params: { jobId: string; userId: string; count: number; samples?: number; firesPerEpoch?: number; stepsPerFire?: number },
): Promise<void> {
  const samples = params.samples ?? 10;
  const firesPerEpoch = params.firesPerEpoch ?? 4;
  const stepsPerFire = params.stepsPerFire ?? 5;
  await db.execute(sql`
    insert into training_predictions (job_id, user_id, epoch, step, sample_index, trigger, prompt, ground_truth, prediction)
    select ${params.jobId}, ${params.userId},
           1 + (g / ${samples}) / ${firesPerEpoch},
           ((g / ${samples}) + 1) * ${stepsPerFire},
           g % ${samples},
           'eval',
           'prompt for sample ' || (g % ${samples}),
           'truth ' || (g % ${samples}),
           'guess ' || g
    from generate_series(0, ${params.count - 1}) as g`);
  await unsafeRebuildEpochStats(db, { jobId: params.jobId });
}
