// "/jobs/new": the deploy form. The configuration is checked by jobs.validateConfig as it
// changes (debounced), each problem shown beside the setting it names; deploy stays disabled
// while any error stands. A manual job's pod environment is shown once, right after deploy.
import { keepPreviousData, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useMemo, useState, type FormEvent } from 'react';
import { errorDetails, type RouterInputs, type RouterOutputs } from '../../api/client';
import type { EvalStrategy, SampleFrequency } from '#contract/job-config';
import { ChoiceGrid } from '../components/form/ChoiceGrid';
import { Field, NumberField } from '../components/form/Field';
import { ProblemList } from '../components/form/ProblemList';
import { PodEnvDialog } from '../components/PodEnvDialog';
import { Loading, QueryError } from '../components/QueryError';
import { TRIGGER_LABEL } from '../lib/format';
import { useDebounced } from '../lib/hooks';
import { navigate } from '../lib/router';
import { useTRPC } from '../lib/trpc';
import { DatasetUpload } from './DatasetUpload';
import { buildConfig, defaultName, FORM_FIELDS, INITIAL, LAUNCHER_TITLES, launcherSettings, type FormState, type Problem } from './new-job/form-model';

const TRIGGER_CHOICES: { value: SampleFrequency; explain: string }[] = [
  { value: 'eval', explain: 'Samples right after the trainer evaluates, so scores and predictions line up. Needs evaluation on.' },
  { value: 'epoch', explain: 'Samples once per pass over the training data, whether or not evaluation runs.' },
  { value: 'steps', explain: 'Samples every N optimizer steps, independent of evaluation: finer-grained curves.' },
];

const EVAL_CHOICES: { value: EvalStrategy; label: string }[] = [
  { value: 'epoch', label: 'At the end of each epoch' },
  { value: 'steps', label: 'Every N steps' },
  { value: 'no', label: 'No evaluation' },
];

export function NewJobPage() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [form, setForm] = useState<FormState>(() => ({ ...INITIAL, name: defaultName() }));
  const [uploading, setUploading] = useState(false);
  const [deployed, setDeployed] = useState<RouterOutputs['jobs']['deploy'] | null>(null);
  const set = <K extends keyof FormState>(key: K, value: FormState[K]) => setForm((old) => ({ ...old, [key]: value }));

  const datasets = useQuery(trpc.datasets.list.queryOptions());
  const launchers = useQuery(trpc.launchers.list.queryOptions());
  const offered = launchers.data?.items;
  useEffect(() => {
    // The default (local) may be switched off on this server: pick the first one it offers.
    const first = offered?.[0];
    if (first && !offered.some((l) => l.name === form.launcher)) setForm((old) => ({ ...old, launcher: first.name }));
  }, [offered, form.launcher]);
  const firstDataset = datasets.data?.[0]?.id;
  useEffect(() => {
    if (firstDataset && !form.datasetId) setForm((old) => ({ ...old, datasetId: firstDataset }));
  }, [firstDataset, form.datasetId]);

  const { config, local } = useMemo(() => buildConfig(form), [form]);
  const configKey = JSON.stringify(config);
  const debouncedKey = useDebounced(configKey, 300);
  const debounced = useMemo(() => JSON.parse(debouncedKey) as Record<string, unknown>, [debouncedKey]);
  const validation = useQuery({
    ...trpc.jobs.validateConfig.queryOptions(debounced),
    enabled: Boolean(debounced.datasetId),
    placeholderData: keepPreviousData,
  });
  const checked = validation.isSuccess && !validation.isPlaceholderData && debouncedKey === configKey;

  const deploy = useMutation(
    trpc.jobs.deploy.mutationOptions({
      onSuccess: (result) => {
        void queryClient.invalidateQueries({ queryKey: trpc.jobs.list.infiniteQueryKey() });
        if (result.pod) setDeployed(result);
        else navigate(`/jobs/${result.job.id}`);
      },
    }),
  );
  const deployError = deploy.error ? errorDetails(deploy.error) : null;
  const deployField = deployError?.field?.replace(/^config\./, '') ?? null;

  const problems: Problem[] = [...local, ...(validation.data?.problems ?? [])];
  if (!form.name.trim()) problems.push({ severity: 'error', field: 'name', message: 'Give the job a name.', fix: '' });
  if (deployError && deployField && FORM_FIELDS.has(deployField)) {
    problems.push({ severity: 'error', field: deployField, message: deployError.message, fix: '' });
  }
  const forField = (field: string) => problems.filter((p) => p.field === field);
  const elsewhere = problems.filter((p) => !FORM_FIELDS.has(p.field));
  const errorCount = problems.filter((p) => p.severity === 'error').length;
  const warningCount = problems.length - errorCount;
  const canDeploy = checked && errorCount === 0 && !deploy.isPending && Boolean(form.datasetId);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (!canDeploy) return;
    deploy.mutate({ name: form.name.trim(), config: config as RouterInputs['jobs']['deploy']['config'] });
  };

  const selectedDataset = datasets.data?.find((d) => d.id === form.datasetId);

  return (
    <>
      <div className="page-head">
        <div>
          <h1>New training job</h1>
          <p className="muted">Choose the data, how it trains and when to sample predictions. Problems show up as you type.</p>
        </div>
      </div>
      <form className="job-form" onSubmit={submit} noValidate aria-label="New training job">
        {elsewhere.length > 0 && (
          <div className="panel">
            <ProblemList problems={elsewhere} id="problems-general" />
          </div>
        )}
        <section className="panel" aria-labelledby="section-job">
          <h2 id="section-job">Job</h2>
          <Field label="Name" field="name" problems={forField('name')}>
            {(props) => <input {...props} type="text" value={form.name} maxLength={120} onChange={(e) => set('name', e.target.value)} />}
          </Field>
          <div className="field">
            <div className="field-label-row">
              <label htmlFor="dataset">Dataset</label>
              <button type="button" className="link-button" onClick={() => setUploading(!uploading)} aria-expanded={uploading}>
                {uploading ? 'Cancel upload' : 'Upload a JSONL file…'}
              </button>
            </div>
            {datasets.isPending ? (
              <Loading label="Loading datasets…" />
            ) : datasets.isError ? (
              <QueryError error={datasets.error} what="Datasets" onRetry={() => void datasets.refetch()} />
            ) : datasets.data.length === 0 ? (
              <p className="muted">You have no datasets yet: upload one.</p>
            ) : (
              <select
                id="dataset"
                value={form.datasetId}
                onChange={(e) => set('datasetId', e.target.value)}
                aria-invalid={forField('datasetId').some((p) => p.severity === 'error')}
                aria-describedby="dataset-problems"
              >
                {datasets.data.map((dataset) => (
                  <option key={dataset.id} value={dataset.id}>
                    {dataset.name} ({dataset.rowCount.toLocaleString()} rows)
                  </option>
                ))}
              </select>
            )}
            <ProblemList problems={forField('datasetId')} id="dataset-problems" />
            {uploading && (
              <DatasetUpload
                onUploaded={(dataset) => {
                  set('datasetId', dataset.id);
                  setUploading(false);
                }}
              />
            )}
          </div>
          <fieldset className="choices">
            <legend>Where it runs</legend>
            {launchers.isPending ? (
              <Loading label="Loading launchers…" />
            ) : launchers.isError ? (
              <QueryError error={launchers.error} what="Launchers" onRetry={() => void launchers.refetch()} />
            ) : (
              <ChoiceGrid
                name="launcher"
                value={form.launcher}
                onChange={(launcher) => set('launcher', launcher)}
                choices={launchers.data.items.map((launcher) => ({
                  value: launcher.name,
                  title: LAUNCHER_TITLES[launcher.name],
                  explain: launcher.description,
                  settings: launcherSettings(launcher),
                }))}
              />
            )}
            <ProblemList problems={forField('launcher')} id="launcher-problems" />
          </fieldset>
        </section>

        <section className="panel" aria-labelledby="section-training">
          <h2 id="section-training">Training</h2>
          <div className="field-grid">
            <NumberField label="Epochs" field="training.epochs" problems={forField('training.epochs')} value={form.epochs} onChange={(v) => set('epochs', v)} min={1} />
            <NumberField label="Batch size" field="training.batchSize" problems={forField('training.batchSize')} value={form.batchSize} onChange={(v) => set('batchSize', v)} min={1} />
            <NumberField label="Learning rate" field="training.learningRate" problems={forField('training.learningRate')} value={form.learningRate} onChange={(v) => set('learningRate', v)} min={0} decimal />
            <NumberField label="Seed" field="training.seed" problems={forField('training.seed')} value={form.seed} onChange={(v) => set('seed', v)} min={0} />
          </div>
          <div className="field-grid">
            <Field
              wide
              label="Evaluation"
              field="training.evalStrategy"
              problems={forField('training.evalStrategy')}
              hint="When the trainer measures loss on held-out rows (Hugging Face eval_strategy)."
            >
              {(props) => (
                <select {...props} value={form.evalStrategy} onChange={(e) => set('evalStrategy', e.target.value as EvalStrategy)}>
                  {EVAL_CHOICES.map((choice) => (
                    <option key={choice.value} value={choice.value}>
                      {choice.label}
                    </option>
                  ))}
                </select>
              )}
            </Field>
            {form.evalStrategy === 'steps' && (
              <NumberField label="Evaluate every N steps" field="training.evalSteps" problems={forField('training.evalSteps')} value={form.evalSteps} onChange={(v) => set('evalSteps', v)} min={1} />
            )}
          </div>
          <p className="total-steps" data-testid="total-steps" aria-live="polite">
            {validation.data?.totalSteps != null ? (
              <>
                This job runs <strong>{validation.data.totalSteps.toLocaleString()}</strong> optimizer steps
                {selectedDataset ? ` over ${selectedDataset.rowCount.toLocaleString()} rows` : ''}.
              </>
            ) : (
              <span className="muted">Total steps appear once the settings are valid.</span>
            )}
          </p>
        </section>

        <section className="panel" aria-labelledby="section-predictions">
          <h2 id="section-predictions">Predictions</h2>
          <label className="checkbox">
            <input type="checkbox" checked={form.predictionsEnabled} onChange={(e) => set('predictionsEnabled', e.target.checked)} />
            Sample predictions while training
          </label>
          <ProblemList problems={forField('predictions.enabled')} id="enabled-problems" />
          <fieldset className="choices" disabled={!form.predictionsEnabled} aria-describedby="trigger-problems">
            <legend>When to sample</legend>
            <ChoiceGrid
              name="sampleFrequency"
              value={form.sampleFrequency}
              onChange={(frequency) => set('sampleFrequency', frequency)}
              choices={TRIGGER_CHOICES.map((choice) => ({ ...choice, title: TRIGGER_LABEL[choice.value] }))}
            />
            <ProblemList problems={forField('predictions.sampleFrequency')} id="trigger-problems" />
          </fieldset>
          <div className="field-grid">
            {form.sampleFrequency === 'steps' && (
              <NumberField label="Sample every N steps" field="predictions.stepInterval" problems={forField('predictions.stepInterval')} value={form.stepInterval} onChange={(v) => set('stepInterval', v)} min={1} disabled={!form.predictionsEnabled} />
            )}
            <NumberField label="Samples each time" field="predictions.sampleCount" problems={forField('predictions.sampleCount')} hint="The same held-out rows every time, so epochs compare." value={form.sampleCount} onChange={(v) => set('sampleCount', v)} min={1} max={100} disabled={!form.predictionsEnabled} />
            <NumberField label="Max new tokens" field="predictions.maxNewTokens" problems={forField('predictions.maxNewTokens')} value={form.maxNewTokens} onChange={(v) => set('maxNewTokens', v)} min={1} max={512} disabled={!form.predictionsEnabled} />
          </div>
        </section>

        <div className="form-actions">
          <div className="form-status" aria-live="polite" data-testid="form-status">
            {validation.isError ? (
              <QueryError error={validation.error} what="The check of these settings" onRetry={() => void validation.refetch()} />
            ) : !form.datasetId ? (
              <span className="muted">{datasets.isPending ? 'Loading datasets…' : 'Choose or upload a dataset first.'}</span>
            ) : !checked ? (
              <span className="muted">Checking the settings…</span>
            ) : errorCount > 0 ? (
              <span className="text-fail">
                {errorCount === 1 ? '1 problem stops' : `${errorCount} problems stop`} this job from deploying; see the red notes above.
              </span>
            ) : warningCount > 0 ? (
              <span className="text-warn">Ready to deploy, with {warningCount === 1 ? 'one warning' : `${warningCount} warnings`}.</span>
            ) : (
              <span className="text-pass">Ready to deploy.</span>
            )}
            {deployError && !(deployField && FORM_FIELDS.has(deployField)) && (
              <p className="form-error" role="alert">
                {deployError.message}
              </p>
            )}
          </div>
          <button type="submit" className="button-primary" disabled={!canDeploy}>
            {deploy.isPending ? 'Deploying…' : 'Deploy job'}
          </button>
        </div>
      </form>
      {deployed?.pod && (
        <PodEnvDialog pod={deployed.pod} closeLabel="Go to the job page" onClose={() => navigate(`/jobs/${deployed.job.id}`)} />
      )}
    </>
  );
}
