// The problems loadConfig reports for an environment (none: an empty list), for tests of settings.
import { ConfigError, loadConfig } from '../env';

export function configProblems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}
