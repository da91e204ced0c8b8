// The deploy form's model without a browser: what the form sends, and what it refuses itself.
import { describe, expect, it } from 'vitest';
import { jobConfig } from '#contract/job-config';
import { buildConfig, defaultName, INITIAL, launcherSettings, type FormState, type LauncherInfo } from './form-model';

const form = (changes: Partial<FormState> = {}): FormState => ({ ...INITIAL, name: 'run', datasetId: '00000000-0000-4000-8000-000000000001', ...changes });

describe('buildConfig', () => {
  it('turns the untouched form into a config the contract accepts with its own defaults', () => {
    const { config, local } = buildConfig(form());
    expect(local).toEqual([]);
    const parsed = jobConfig.parse(config);
    const defaults = jobConfig.parse({ datasetId: config.datasetId, launcher: 'local' });
    expect(parsed.training).toEqual(defaults.training);
    expect(parsed.predictions).toEqual(defaults.predictions);
  });

  it('names each field whose text is not a number, and leaves it out of the config', () => {
    const { config, local } = buildConfig(form({ epochs: '', batchSize: '2.5', learningRate: 'fast' }));
    expect(local.map((p) => [p.field, p.message])).toEqual([
      ['training.epochs', 'Enter a value.'],
      ['training.batchSize', '"2.5" is not a whole number.'],
      ['training.learningRate', '"fast" is not a number.'],
    ]);
    expect(local.every((p) => p.severity === 'error')).toBe(true);
    expect(config.training).not.toHaveProperty('epochs');
    expect(config.training).not.toHaveProperty('learningRate');
  });

  it('accepts a decimal learning rate in exponent form, and refuses Infinity', () => {
    expect(buildConfig(form({ learningRate: '3e-4' })).config.training).toMatchObject({ learningRate: 0.0003 });
    expect(buildConfig(form({ learningRate: 'Infinity' })).local).toHaveLength(1);
  });

  it('sends evalSteps and stepInterval only with the strategy that uses them', () => {
    const epoch = buildConfig(form({ evalStrategy: 'epoch', evalSteps: '50', sampleFrequency: 'eval', stepInterval: '7' })).config;
    expect(epoch.training).not.toHaveProperty('evalSteps');
    expect(epoch.predictions).not.toHaveProperty('stepInterval');
    const steps = buildConfig(form({ evalStrategy: 'steps', evalSteps: '50', sampleFrequency: 'steps', stepInterval: '7' })).config;
    expect(steps.training).toMatchObject({ evalStrategy: 'steps', evalSteps: 50 });
    expect(steps.predictions).toMatchObject({ sampleFrequency: 'steps', stepInterval: 7 });
  });

  it('leaves an empty "every N steps" to the server, which names it (the form does not guess)', () => {
    const { config, local } = buildConfig(form({ evalStrategy: 'steps', evalSteps: '  ' }));
    expect(local).toEqual([]);
    expect(config.training).not.toHaveProperty('evalSteps');
  });
});

describe('defaultName', () => {
  it('is "run" and the local date and time, zero-padded', () => {
    expect(defaultName(new Date(2026, 0, 5, 7, 3))).toBe('run 2026-01-05 07:03');
  });
});

describe('launcherSettings', () => {
  it('lists the set values in a line and leaves out empty, null and boolean ones', () => {
    const kubernetes: LauncherInfo = { name: 'kubernetes', description: '', settings: { image: 'ghcr.io/x:1', gpuCount: 1, memory: null, cpu: '', enabled: true } };
    const line = launcherSettings(kubernetes);
    expect(line).toBe('image ghcr.io/x:1 · gpuCount 1');
  });
});
