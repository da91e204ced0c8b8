// Wire schemas for accounts, shared by server and SPA (zod only: no server-only imports here).
import { z } from 'zod';

export const PASSWORD_MIN = 10;
export const PASSWORD_MAX = 256;

export const email = z
  .string()
  .trim()
  .max(254, 'Email must be at most 254 characters')
  .pipe(z.email('Enter a valid email address'))
  .transform((value) => value.toLowerCase());

export const credentialsInput = z.object({
  email,
  password: z
    .string()
    .min(PASSWORD_MIN, `Password must be at least ${PASSWORD_MIN} characters`)
    .max(PASSWORD_MAX, `Password must be at most ${PASSWORD_MAX} characters`),
});
export type CredentialsInput = z.infer<typeof credentialsInput>;

export const publicUser = z.object({ id: z.uuid(), email: z.string(), createdAt: z.string() });
export type PublicUser = z.infer<typeof publicUser>;

export const sessionOutput = z.object({ token: z.string(), user: publicUser });

/** Who may create an account (env SIGNUP): anyone, holders of an invitation, or nobody. */
export const SIGNUP_POLICIES = ['open', 'invite', 'closed'] as const;
export type SignupPolicy = (typeof SIGNUP_POLICIES)[number];

/** An invitation's secret as it travels in the link (base64url of 32 random bytes: 43 characters). */
export const INVITATION_SECRET_MAX = 128;

/** auth.register: credentials, plus the invitation secret from the link when SIGNUP=invite. */
export const registerInput = credentialsInput.extend({
  invitation: z.string().trim().min(1, 'invitation is empty').max(INVITATION_SECRET_MAX, `invitation must be at most ${INVITATION_SECRET_MAX} characters`).optional(),
});
export type RegisterInput = z.infer<typeof registerInput>;

/** auth.signupPolicy: which form the sign-in page shows; firstAccount: the next account becomes the administrator. */
export const signupPolicyOutput = z.object({ signup: z.enum(SIGNUP_POLICIES), firstAccount: z.boolean() });
export type SignupPolicyOutput = z.infer<typeof signupPolicyOutput>;

/** auth.me: the public user and whether they administer this server (invitations). */
export const meOutput = publicUser.extend({ isAdmin: z.boolean() });
export type MeOutput = z.infer<typeof meOutput>;
export type SessionOutput = z.infer<typeof sessionOutput>;

// Sessions (server-side, revocable) and stream tickets: auth.logout, auth.logoutEverywhere,
// auth.changePassword, auth.sessions, auth.revokeSession, auth.streamTicket.
const passwordField = (name: string) =>
  z
    .string()
    .min(PASSWORD_MIN, `${name} must be at least ${PASSWORD_MIN} characters`)
    .max(PASSWORD_MAX, `${name} must be at most ${PASSWORD_MAX} characters`);

export const changePasswordInput = z.object({
  // The current password is only compared, never stored: any length up to the maximum may be tried.
  currentPassword: z.string().min(1, 'Enter your current password').max(PASSWORD_MAX, `Current password must be at most ${PASSWORD_MAX} characters`),
  newPassword: passwordField('New password'),
});
export type ChangePasswordInput = z.infer<typeof changePasswordInput>;

/** How many sessions were revoked by auth.logout / auth.logoutEverywhere / auth.changePassword. */
export const revokedOutput = z.object({ revokedSessions: z.number().int().min(0) });
export type RevokedOutput = z.infer<typeof revokedOutput>;

/** The most sessions auth.sessions lists (newest first). */
export const SESSIONS_LIST_MAX = 100;

export const sessionInfo = z.object({
  id: z.uuid(),
  createdAt: z.string(),
  lastUsedAt: z.string(),
  userAgent: z.string().nullable(),
  /** The session this request was made with. */
  current: z.boolean(),
});
export const sessionsOutput = z.array(sessionInfo);
export type SessionInfo = z.infer<typeof sessionInfo>;

export const revokeSessionInput = z.object({ sessionId: z.uuid('sessionId must be a session id (uuid)') });

/** auth.streamTicket: the subscription the ticket is for, as tRPC names it ("predictions.onNew"). */
export const streamTicketInput = z.object({
  path: z
    .string()
    .max(100, 'path must be at most 100 characters')
    .regex(/^[A-Za-z]+(\.[A-Za-z]+)+$/, 'path must be a procedure path such as predictions.onNew'),
});
export const streamTicketOutput = z.object({ ticket: z.string(), expiresAt: z.string() });
export type StreamTicketOutput = z.infer<typeof streamTicketOutput>;
