// Wire schema of diagnostics.job: ordered checks that explain, in plain words, why a job's
// predictions are missing (or that nothing is wrong), and the one-line root cause.
import { z } from 'zod';

export const CHECK_IDS = [
  'predictions_enabled',
  'trigger_can_fire',
  'pod_connected',
  'pod_mode',
  'token_rejections',
  'trigger_fired',
  'writes_persisted',
  'rows_rejected',
  'rows_replaced',
  'job_failure',
  'predictions_present',
] as const;
export type CheckId = (typeof CHECK_IDS)[number];

export const diagnosticCheck = z.object({
  id: z.enum(CHECK_IDS),
  status: z.enum(['pass', 'warn', 'fail']),
  title: z.string(),
  message: z.string(),
  /** What the user can do about it; empty when the check passes. */
  fix: z.string(),
});
export type DiagnosticCheck = z.infer<typeof diagnosticCheck>;

export const diagnosticsOutput = z.object({
  /** "healthy" when every check passes, "warning" when some only warn, "failing" when one fails. */
  status: z.enum(['healthy', 'warning', 'failing']),
  /** One line naming the first failing check (or the first warning), null when healthy. */
  rootCause: z.string().nullable(),
  /** The id of the check rootCause names. */
  rootCauseCheck: z.enum(CHECK_IDS).nullable(),
  checks: z.array(diagnosticCheck),
  checkedAt: z.string(),
});
export type DiagnosticsOutput = z.infer<typeof diagnosticsOutput>;
