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
//
// The check runs twice for a write: once in front of the procedure (podProcedure, so a dead
// token is refused before its input is even parsed, as always), and again inside the write's own
// transaction with the job's row locked (runGuardedWrite). jobs.cancel, pod.finish and
// jobs.rotateToken update that row, so they wait for a write in flight to commit, and a write
// that locks after them sees them: no row is stored after its job's end, and no write is
// acknowledged that a cancel acknowledged before it should have stopped (audit F13).
import { AppError } from '../errors';
import type { AppDeps } from '../app-deps';
import type { Credential } from '../trpc/context';
import type { JobTokenClaims } from '../auth/tokens';
import type { Db } from '../../db/client';
import { unsafeGetJobForToken } from '../../db/queries/jobs';
import { insertJobEventThrottled } from '../../db/queries/job-events';
import { isLiveStatus } from '#contract/statuses';
import type { JobStatus } from '../../db/schema';

/** How the token may act: `live` anything; `grace` and `upload` only as the pod procedures allow. */
export type PodAccess = 'live' | 'grace' | 'upload';

export interface PodScope {
  jobId: string;
  userId: string;
  status: JobStatus;
  access: PodAccess;
  /** The verified token's version and kind, for the re-check inside each write (podWriteGuard). */
  token: Pick<JobTokenClaims, 'tokenVersion' | 'upload'>;
}

type TokenJob = Awaited<ReturnType<typeof unsafeGetJobForToken>>;

/** Why a token with a good signature is refused: the answer, and the ledger event that records it. */
interface Refusal {
  error: AppError;
  event?: { jobId: string; reason: string; detail: Record<string, unknown> };
}

/**
 * Checks a job token against the job as it is now, and narrows it to the job's scope.
 *
 * @param credential the request's credential, as the context read it.
 * @returns the job, its owner and status, and how the token may act (live, grace, upload).
 * @throws AppError UNAUTHORIZED (no token, bad or expired token, missing job, ended job, revoked
 *   token; `reason` token_expired | job_missing | job_ended | token_revoked) or FORBIDDEN (a user
 *   session). Refusals of a well-signed token are recorded on the job's ledger, throttled.
 */
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
  const decision = decide(job, claims);
  if ('refusal' in decision) return refuse(deps, decision.refusal);
  return decision.scope;
}

/**
 * The same check as authorizePod, run inside a write's transaction with the job's row locked.
 * Pass it to the write; it throws to roll the write back, and runGuardedWrite turns that into
 * the refusal a later request would get.
 *
 * The lock is FOR NO KEY UPDATE, not FOR SHARE: shared lockers keep joining while jobs.cancel
 * waits for the row, so on PostgreSQL a write that began after the cancel (its rows stamped later
 * than the cancel's finished_at) could still lock the row first and commit before it (measured:
 * up to 600 rows stamped after finished_at in one race). An exclusive lock queues writes and the
 * cancel in turn. It does not conflict with the key-share locks of the rows' foreign keys, and a
 * job's prediction writes were one at a time already (insertPredictions' advisory lock).
 */
export type PodWriteGuard = (tx: Db) => Promise<void>;

/**
 * Runs a pod write whose transaction calls the guard before it writes: when the job ended, was
 * deleted or its token rotated since the request's first check, nothing is stored, the refusal
 * is recorded on the job's ledger, and the same AppError a later request would get is thrown.
 *
 * @param write receives the guard; must call it inside its transaction, before any write.
 * @throws AppError UNAUTHORIZED (reason job_ended | token_revoked | job_missing) as authorizePod.
 */
export async function runGuardedWrite<T>(deps: AppDeps, pod: PodScope, write: (guard: PodWriteGuard) => Promise<T>): Promise<T> {
  const claims = { jobId: pod.jobId, userId: pod.userId, ...pod.token };
  const guard: PodWriteGuard = async (tx) => {
    const job = await unsafeGetJobForToken(tx, { jobId: pod.jobId, graceSeconds: deps.config.finishedJobWriteGraceSeconds, lock: true });
    const decision = decide(job, claims);
    if ('refusal' in decision) throw new RefusedInTransaction(decision.refusal);
  };
  try {
    return await write(guard);
  } catch (error) {
    // The transaction has rolled back; the ledger entry is written outside it, or it would be lost too.
    if (error instanceof RefusedInTransaction) await refuse(deps, error.refusal);
    throw error;
  }
}

class RefusedInTransaction extends Error {
  constructor(readonly refusal: Refusal) {
    super(refusal.error.message);
  }
}

async function refuse(deps: AppDeps, refusal: Refusal): Promise<never> {
  if (refusal.event) await insertJobEventThrottled(deps.database.db, { jobId: refusal.event.jobId, kind: 'token_rejected', reason: refusal.event.reason, detail: refusal.event.detail });
  throw refusal.error;
}

/** The rules, as a function of the job row and the token: one place for both checks. */
function decide(job: TokenJob, claims: Pick<JobTokenClaims, 'jobId' | 'userId' | 'tokenVersion' | 'upload'>): { scope: PodScope } | { refusal: Refusal } {
  if (!job || job.userId !== claims.userId) {
    return { refusal: { error: new AppError('UNAUTHORIZED', 'The job this token was issued for no longer exists', { reason: 'job_missing' }) } };
  }
  const token = { tokenVersion: claims.tokenVersion, upload: claims.upload };
  const scope = (access: PodAccess) => ({ scope: { jobId: job.id, userId: job.userId, status: job.status, access, token } });
  const current = job.tokenVersion === claims.tokenVersion;
  // An upload token is issued for an ended job and bound to the version it was issued at: a
  // later rotation replaces it like any other token.
  if (claims.upload && current) return scope('upload');
  if (!isLiveStatus(job.status) && !claims.upload) {
    if (job.inWriteGrace && current) return scope('grace');
    return {
      refusal: {
        error: new AppError('UNAUTHORIZED', `The job has ended (${job.status}); its token no longer accepts writes`, { reason: 'job_ended' }),
        event: { jobId: job.id, reason: 'job_ended', detail: { status: job.status } },
      },
    };
  }
  if (!current) {
    return {
      refusal: {
        error: new AppError('UNAUTHORIZED', 'This job token was revoked (a newer token was issued); use the current one', { reason: 'token_revoked' }),
        event: { jobId: job.id, reason: 'revoked', detail: { tokenVersion: claims.tokenVersion, currentVersion: job.tokenVersion } },
      },
    };
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
