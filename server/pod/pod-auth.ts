// Decides whether a job token may act right now: the signature and claims were checked when
// the context was built; here the job must still exist, be live, belong to the token's owner,
// and carry the token's version. Every refusal of a token with a good signature is recorded on
// that job's ledger (throttled), so the owner can see why a pod's writes stopped.
import { AppError } from '../errors';
import type { AppDeps } from '../deps';
import type { Credential } from '../trpc/context';
import { insertJobEventThrottled, LIVE_STATUSES, unsafeGetJobForToken } from '../../db/queries/jobs';
import type { JobStatus } from '../../db/schema';

export interface PodScope {
  jobId: string;
  userId: string;
  status: JobStatus;
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
  const job = await unsafeGetJobForToken(db, { jobId: claims.jobId });
  if (!job || job.userId !== claims.userId) {
    throw new AppError('UNAUTHORIZED', 'The job this token was issued for no longer exists', { reason: 'job_missing' });
  }
  if (!LIVE_STATUSES.includes(job.status)) {
    await insertJobEventThrottled(db, { jobId: job.id, kind: 'token_rejected', reason: 'job_ended', detail: { status: job.status } });
    throw new AppError('UNAUTHORIZED', `The job has ended (${job.status}); its token no longer accepts writes`, { reason: 'job_ended' });
  }
  if (job.tokenVersion !== claims.tokenVersion) {
    await insertJobEventThrottled(db, {
      jobId: job.id,
      kind: 'token_rejected',
      reason: 'revoked',
      detail: { tokenVersion: claims.tokenVersion, currentVersion: job.tokenVersion },
    });
    throw new AppError('UNAUTHORIZED', 'This job token was revoked (a newer token was issued); use the current one', { reason: 'token_revoked' });
  }
  return { jobId: job.id, userId: job.userId, status: job.status };
}
