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
export type SessionOutput = z.infer<typeof sessionOutput>;
