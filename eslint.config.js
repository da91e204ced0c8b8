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
  {
    files: ['**/*.test.ts', 'server/env.ts', 'trainer/env.ts', 'server/test-support/test-env.ts', 'bench/**', 'drizzle.config.ts', 'server/launchers/local.ts'],
    rules: { 'no-restricted-properties': 'off' },
  },
);
