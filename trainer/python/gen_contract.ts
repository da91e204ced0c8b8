// Generates the pod contract block of the Python callback (trainer/python/predictions_callback.py)
// from contract, so the callback never carries a hand-kept copy of a limit, a trigger, a
// variable name or an error reason. The block sits inside the callback's one file on purpose:
// users copy that single file next to their training script.
//
//   npx tsx trainer/python/gen_contract.ts          rewrites the block in place
//
// gen_contract.test.ts renders it again in memory and fails, naming that command, when the
// committed file is stale.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  FIELD_LIMITS,
  heartbeatInput,
  LOG_LEVELS,
  LOG_LINE_MAX,
  METRIC_NAME_MAX,
  NON_FINITE_VALUES,
  POD_ENV_VARS,
  LOG_BATCH_MAX,
  POD_BATCH_MAX_BYTES,
  POD_ERROR_REASONS,
  PREDICTION_BATCH_MAX,
  STEP_NOT_GLOBAL,
} from '#contract/pod.schemas';
import { PREDICTION_TRIGGERS } from '#contract/triggers';

export const CALLBACK_FILE = path.join(import.meta.dirname, 'predictions_callback.py');
export const GENERATE_COMMAND = 'npx tsx trainer/python/gen_contract.ts';
const BEGIN = '# --- BEGIN GENERATED CONTRACT';
const END = '# --- END GENERATED CONTRACT ---';


const py = (value: unknown): string => JSON.stringify(value);
const tuple = (values: readonly string[]): string => `(${values.map(py).join(', ')}${values.length === 1 ? ',' : ''})`;

/** The generated block, first line to last, as it must appear in the callback. */
export function renderContractBlock(): string {
  const lines = [
    `${BEGIN} (${GENERATE_COMMAND} writes it from contract; do not edit by hand) ---`,
    `ENV_VARS = ${tuple(POD_ENV_VARS)}`,
    `TRIGGERS = ${tuple(PREDICTION_TRIGGERS)}`,
    `FIELD_LIMITS = {${Object.entries(FIELD_LIMITS).map(([name, limit]) => `${py(name)}: ${limit}`).join(', ')}}`,
    `BATCH_MAX_ROWS = ${PREDICTION_BATCH_MAX}`,
    `BATCH_MAX_BYTES = ${POD_BATCH_MAX_BYTES}`,
    `METRIC_NAME_MAX = ${METRIC_NAME_MAX}`,
    `LOG_LEVELS = ${tuple(LOG_LEVELS)}`,
    `LOG_LINE_MAX = ${LOG_LINE_MAX}`,
    `LOG_BATCH_MAX = ${LOG_BATCH_MAX}`,
    `HEARTBEAT_STATUSES = ${tuple(heartbeatInput.shape.status.unwrap().options)}`,
    `NON_FINITE_VALUES = ${tuple(NON_FINITE_VALUES)}`,
    `ERROR_REASONS = ${tuple(POD_ERROR_REASONS)}`,
    `STEP_NOT_GLOBAL = ${py(STEP_NOT_GLOBAL)}`,
    END,
  ];
  return lines.join('\n');
}

/** `source` with its generated block replaced by the current one. */
export function withContractBlock(source: string): string {
  const start = source.indexOf(BEGIN);
  const stop = source.indexOf(END);
  if (start < 0 || stop < start) throw new Error(`${CALLBACK_FILE} has no generated contract block (${BEGIN} ... ${END})`);
  return source.slice(0, start) + renderContractBlock() + source.slice(stop + END.length);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const before = readFileSync(CALLBACK_FILE, 'utf8');
  const after = withContractBlock(before);
  if (after !== before) writeFileSync(CALLBACK_FILE, after);
  console.log(after === before ? `${CALLBACK_FILE}: contract already up to date` : `${CALLBACK_FILE}: contract block rewritten`);
}
