// Decides whether a job token may act right now: the signature and claims were checked when
// the context was built; here the job must still exist, belong to the token's owner, carry the
// token's version, and be live, or be in one of the two states where an ended job still takes
// writes (docs/decisions/0004-late-predictions.md, 0005-upload-tokens.md):
// - `grace`: the job completed (pod.finish) less than FINISHED_JOB_WRITE_GRACE_SECONDS ago and
//   this is its token: rows produced after training ended (evaluate() after train()) still land;
// - `upload`: an upload token issued by jobs.rotateToken for the ended job: writes only, so a
//   spool a pod kept can always be synced.
// Every refusal of a token with a good signature is recorded on that job's ledger (throttled),
// so the owner can see why a pod's writes stopped.
import { AppError } from '../errors';
import type { AppDeps } from '../deps';
import type { Credential } from '../trpc/context';
import { insertJobEventThrottled, LIVE_STATUSES, unsafeGetJobForToken } from '../../db/queries/jobs';
import type { JobStatus } from '../../db/schema';

/** How the token may act: `live` anything; `grace` and `upload` only as the pod procedures allow. */
export type PodAccess = 'live' | 'grace' | 'upload';

export interface PodScope {
  jobId: string;
  userId: string;
  status: JobStatus;
  access: PodAccess;
}

export async function authorizePod(deps: AppDeps, credential: Credential): Promise<PodScope> {
  const db = deps.database.db;
  if (credential.kind === 'none') {
    throw new AppError('UNAUTHORIZED', 'Pod procedures need the job token: send Authorization: Bearer $JOB_TOKEN');
  }
  if (credential.kind === 'user' || (credential.kind === 'rejected' && credential.audience === 'user')) {
    throw new AppError('FORBIDDEN', 'A user session cannot write as a pod; use the job token from the deploy');
  }
  if (credential.kind === 'rejected') {
    if (credential.reason === 'expired' && credential.claims) {
      const expiredAt = credential.claims.expiresAt.toISOString();
      await insertJobEventThrottled(db, { jobId: credential.claims.jobId, kind: 'token_rejected', reason: 'expired', detail: { expiredAt } });
      throw new AppError('UNAUTHORIZED', `The job token expired at ${expiredAt}; rotate the token (jobs.rotateToken) and restart the pod`, { reason: 'token_expired' });
    }
    throw new AppError('UNAUTHORIZED', 'The job token is not valid for this server (bad signature or malformed)');
  }

  const { claims } = credential;
  const job = await unsafeGetJobForToken(db, { jobId: claims.jobId, graceSeconds: deps.config.finishedJobWriteGraceSeconds });
  if (!job || job.userId !== claims.userId) {
    throw new AppError('UNAUTHORIZED', 'The job this token was issued for no longer exists', { reason: 'job_missing' });
  }
  const scope = (access: PodAccess): PodScope => ({ jobId: job.id, userId: job.userId, status: job.status, access });
  const current = job.tokenVersion === claims.tokenVersion;
  // An upload token is issued for an ended job and bound to the version it was issued at: a
  // later rotation replaces it like any other token.
  if (claims.upload && current) return scope('upload');
  if (!LIVE_STATUSES.includes(job.status) && !claims.upload) {
    if (job.inWriteGrace && current) return scope('grace');
    await insertJobEventThrottled(db, { jobId: job.id, kind: 'token_rejected', reason: 'job_ended', detail: { status: job.status } });
    throw new AppError('UNAUTHORIZED', `The job has ended (${job.status}); its token no longer accepts writes`, { reason: 'job_ended' });
  }
  if (!current) {
    await insertJobEventThrottled(db, {
      jobId: job.id,
      kind: 'token_rejected',
      reason: 'revoked',
      detail: { tokenVersion: claims.tokenVersion, currentVersion: job.tokenVersion },
    });
    throw new AppError('UNAUTHORIZED', 'This job token was revoked (a newer token was issued); use the current one', { reason: 'token_revoked' });
  }
  return scope('live');
}

/**
 * For the procedures that act on the job rather than write to it (heartbeat, finish): an upload
 * token may not, and says why in words a person running `sync` by mistake can act on.
 */
export function refuseUploadToken(pod: PodScope, procedure: 'pod.heartbeat' | 'pod.finish'): void {
  if (pod.access !== 'upload') return;
  throw new AppError(
    'FORBIDDEN',
    `This is an upload token for a job that has ended (${pod.status}): it may only upload predictions, metrics and logs (trainer sync), so ${procedure} is refused. To train again, deploy a new job.`,
    { reason: 'job_ended' },
  );
}
