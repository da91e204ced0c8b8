// Who may create an account: auth.register and auth.signupPolicy. Kept apart from sign-in
// (auth.service.ts) because sign-up policy (open, by invitation, closed) and its throttling are a
// concern of their own. The first account on a server with no accounts may always register and
// becomes its administrator, so the README's quick start works under every policy.
import { AppError } from '../errors';
import type { AppDeps } from '../app-deps';
import type { RegisterInput, SessionOutput, SignupPolicyOutput } from '#contract/auth.schemas';
import { createAccount, invitationRefusal, noAccountsYet, type InvitationRefusal } from '../../db/queries/invitations';
import { hashPassword } from './passwords';
import { startSession, type RequestClient } from './auth.service';
import { hashInvitationSecret } from './invitations';
import { exampleDataset } from '../datasets/datasets.service';

const REFUSED: Record<InvitationRefusal, string> = {
  unknown: 'This invitation is not valid; check that the link was copied whole, or ask the administrator for a new one',
  used: 'This invitation has already been used; ask the administrator for a new one',
  revoked: 'This invitation was revoked; ask the administrator for a new one',
  expired: 'This invitation has expired; ask the administrator for a new one',
  other_email: 'This invitation is for another email address; register with the address it was sent to',
};

function refusal(why: InvitationRefusal): AppError {
  return new AppError('BAD_REQUEST', REFUSED[why], { field: 'invitation' });
}

const CLOSED = new AppError('FORBIDDEN', 'Sign-up is closed on this server; ask the administrator to create an account for you');
const INVITATION_REQUIRED = new AppError('BAD_REQUEST', 'Sign-up on this server is by invitation: open the invitation link an administrator sent you', {
  field: 'invitation',
});

/**
 * Creates an account and signs it in, under the server's SIGNUP policy (see createAccount for the
 * rules). Throws FORBIDDEN when sign-up is closed, BAD_REQUEST naming `invitation` when an
 * invitation is needed but missing, unknown, used, revoked, expired or bound to another email,
 * and CONFLICT naming `email` when the email is taken.
 */
export async function register(deps: AppDeps, input: RegisterInput, client?: RequestClient): Promise<SessionOutput> {
  // Per client address, before anything else (each call may hash a password); absent for server-side callers (tests, seeding).
  if (client) await deps.throttles.registerClient.consume(client.ip, (seconds) => `Too many sign-ups from this address; try again in ${seconds} seconds`);
  const db = deps.database.db;
  const policy = deps.config.signup;
  const invitationHash = input.invitation ? hashInvitationSecret(input.invitation) : null;
  // Cheap refusals before the (deliberately slow) password hash, so a closed or invite-only server
  // cannot be made to burn CPU by anyone without an invitation. The transaction decides again.
  if (policy !== 'open' && !(await noAccountsYet(db))) {
    if (policy === 'closed') throw CLOSED;
    if (!invitationHash) throw INVITATION_REQUIRED;
    const why = await invitationRefusal(db, { tokenHash: invitationHash, email: input.email });
    if (why) throw refusal(why);
  }
  const passwordHash = await hashPassword(input.password);
  // Every account starts with a dataset it can deploy at once, stored with it.
  const result = await createAccount(db, { email: input.email, passwordHash, policy, invitationHash, startingDatasets: [exampleDataset()] });
  switch (result.kind) {
    case 'closed':
      throw CLOSED;
    case 'invitation_required':
      throw INVITATION_REQUIRED;
    case 'invitation_refused':
      throw refusal(result.why);
    case 'email_taken':
      throw new AppError('CONFLICT', 'An account with this email already exists; sign in instead', { field: 'email' });
    case 'created':
      break;
  }
  return startSession(deps, result.user, client);
}

/** What the sign-in page needs to show the right form: the policy, and whether the next account is the first. */
export async function signupPolicy(deps: AppDeps): Promise<SignupPolicyOutput> {
  return { signup: deps.config.signup, firstAccount: await noAccountsYet(deps.database.db) };
}
