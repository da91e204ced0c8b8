// Throttling of sign-in, sign-up and password changes, shared by every server instance on one
// database: counts live in the `rate_limits` table through rate-limiter-flexible's Drizzle store,
// whose consume is one INSERT … ON CONFLICT DO UPDATE … RETURNING. That statement is atomic, so
// requests sent together are counted one after another: an attempt takes its point *before* the
// password is checked, and at most `points` attempts per window are ever checked, however many
// arrive at once and on however many instances (audit F2).
import { RateLimiterDrizzle, RateLimiterRes } from 'rate-limiter-flexible';
import { AppError } from '../errors';
import type { Db } from '../../db/client';
import { rateLimits } from '../../db/schema';

/** A limit: at most `points` attempts per `windowSeconds`, counted from the first attempt of the window. */
export interface RateLimitRule {
  points: number;
  windowSeconds: number;
}

/** The limits this server applies; one definition, used by deps and quoted by the tests. */
export const RATE_LIMITS = {
  /** Sign-in attempts per account (a correct password clears it). */
  loginAccount: { points: 10, windowSeconds: 15 * 60 },
  /** Failed sign-in attempts per client address (a correct password gives its point back). */
  loginClient: { points: 50, windowSeconds: 15 * 60 },
  /** Sign-ups per client address: each hashes a password, and answers say whether an email is taken. */
  registerClient: { points: 20, windowSeconds: 60 * 60 },
} as const satisfies Record<string, RateLimitRule>;

/** One named limit over the shared table; keys are stored as `<name>:<key>` (e.g. `login:account:a@b.c`). */
export interface Throttle {
  /**
   * Takes one point for `key`. Throws AppError TOO_MANY_REQUESTS (429, Retry-After in seconds)
   * when the key is over its limit: the caller must then do nothing more. Database failures
   * propagate as they are (the tRPC layer answers 503 for an unreachable database).
   */
  consume(key: string, message: (retryAfterSeconds: number) => string): Promise<void>;
  /** Gives one point back (a successful attempt that should not count against a shared address). */
  reward(key: string): Promise<void>;
  /** Forgets the key (a correct password ends an account's lockout window). */
  reset(key: string): Promise<void>;
}

export interface Throttles {
  loginAccount: Throttle;
  loginClient: Throttle;
  registerClient: Throttle;
}

/** The throttles of RATE_LIMITS over `db`; every instance on the same database shares their counts. */
export function createThrottles(db: Db, rules: Record<keyof Throttles, RateLimitRule> = RATE_LIMITS): Throttles {
  return {
    // Only one limiter sweeps expired rows (it is one table); the others would repeat the same DELETE.
    loginAccount: createThrottle(db, 'login:account', rules.loginAccount, true),
    loginClient: createThrottle(db, 'login:client', rules.loginClient, false),
    registerClient: createThrottle(db, 'register:client', rules.registerClient, false),
  };
}

function createThrottle(db: Db, name: string, rule: RateLimitRule, sweeper: boolean): Throttle {
  const limiter = new RateLimiterDrizzle({
    storeClient: db,
    schema: rateLimits,
    keyPrefix: name,
    points: rule.points,
    duration: rule.windowSeconds,
    clearExpiredByTimeout: sweeper,
  });
  return {
    async consume(key, message) {
      try {
        await limiter.consume(key);
      } catch (rejection) {
        // The library rejects with a RateLimiterRes when over the limit, with an Error when the store fails.
        if (!(rejection instanceof RateLimiterRes)) throw rejection;
        const retryAfterSeconds = Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
        throw new AppError('TOO_MANY_REQUESTS', message(retryAfterSeconds), { retryAfterSeconds });
      }
    },
    async reward(key) {
      await limiter.reward(key);
    },
    async reset(key) {
      await limiter.delete(key);
    },
  };
}
