// The Python callback's contract block is generated from contract: this fails when the
// committed block is stale (a limit, trigger, variable or reason changed on the server side).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FIELD_LIMITS } from '#contract/pod.schemas';
import { CALLBACK_FILE, GENERATE_COMMAND, renderContractBlock, withContractBlock } from './gen_contract';

describe('the generated pod contract of the Python callback', () => {
  it('is up to date with contract', () => {
    const committed = readFileSync(CALLBACK_FILE, 'utf8');
    const fresh = withContractBlock(committed);
    expect(committed === fresh, `trainer/python/predictions_callback.py holds a stale contract block: run \`${GENERATE_COMMAND}\``).toBe(true);
  });

  it('carries the contract values, and a changed value makes the committed block stale', () => {
    const block = renderContractBlock();
    expect(block).toContain(`FIELD_LIMITS = {"prompt": ${FIELD_LIMITS.prompt}, "groundTruth": ${FIELD_LIMITS.groundTruth}, "prediction": ${FIELD_LIMITS.prediction}}`);
    expect(block).toContain('ERROR_REASONS = ("token_expired", "token_revoked", "job_ended", "job_missing", "database_unavailable")');
    const edited = readFileSync(CALLBACK_FILE, 'utf8').replace('BATCH_MAX_ROWS = ', 'BATCH_MAX_ROWS = 1 + ');
    expect(withContractBlock(edited)).not.toBe(edited);
  });

  it('is the only place the callback defines those values', () => {
    const source = readFileSync(CALLBACK_FILE, 'utf8');
    const outside = source.replace(renderContractBlock(), '');
    for (const name of ['ENV_VARS', 'TRIGGERS', 'FIELD_LIMITS', 'BATCH_MAX_ROWS', 'LOG_LINE_MAX', 'NON_FINITE_VALUES', 'ERROR_REASONS']) {
      expect(outside, name).not.toMatch(new RegExp(`^${name}\\s*=`, 'm'));
    }
  });
});
