// Lint: typescript-eslint's recommended rules, plus the house rules a reviewer would otherwise
// have to catch by eye (no `any`, process.env read only by the config modules).
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'data/**', 'node_modules/**', 'test-results/**', 'bench/out/**', 'trainer/python/**/*.py', 'trainer/python/.venv/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'env', message: 'Read configuration in server/env.ts (or trainer/env.ts) and pass it down.' },
      ],
    },
  },
  // Import direction, held by the linter: the contract depends on nothing of ours; the database
  // layer, the trainer and the web app reach the server only through the contract (and the SPA
  // through the router type in client/api). Tests may use the server's test support.
  {
    files: ['contract/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/server/**', '**/db/**', '**/client/**', '**/trainer/**', '**/bench/**'], message: 'contract/ is the bottom layer: it imports only zod and itself.' }] }],
    },
  },
  {
    files: ['db/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/server/**', '**/client/**', '**/trainer/**'], message: 'db/ imports nothing from server/: what both need lives in contract/ (#contract/*).' }] }],
    },
  },
  {
    files: ['trainer/**/*.ts'],
    ignores: ['trainer/**/*.test.ts', 'trainer/python/tests/**'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/server/**', '**/db/**', '**/client/src/**'], message: 'The trainer is a pod: it reaches the server only through the contract (#contract/*) and the typed client (client/api).' }] }],
    },
  },
  {
    files: ['client/src/**/*.{ts,tsx}'],
    ignores: ['client/src/**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/server/**', '**/db/**', '**/trainer/**'], message: 'The web app imports the contract (#contract/*) and the router type (client/api), nothing else of the server.' }] }],
    },
  },
  {
    files: ['**/*.test.ts', 'server/env.ts', 'trainer/env.ts', 'server/test-support/test-env.ts', 'bench/**', 'drizzle.config.ts', 'server/launchers/local.ts'],
    rules: { 'no-restricted-properties': 'off' },
  },
);
