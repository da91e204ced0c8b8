// Upload a JSONL dataset from a file: the browser reads the text, datasets.upload checks every
// line and names the bad ones ("line 7: …"), shown here beside the file input.
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useId, useState, type FormEvent } from 'react';
import { errorDetails, type RouterOutputs } from '../../api/client';
import { useTRPC } from '../lib/trpc';

const MAX_BYTES = 5 * 1024 * 1024;

export function DatasetUpload({ onUploaded }: { onUploaded: (dataset: RouterOutputs['datasets']['list'][number]) => void }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const id = useId();
  const [name, setName] = useState('');
  const [file, setFile] = useState<File | null>(null);
  const [readError, setReadError] = useState<string | null>(null);
  const upload = useMutation(
    trpc.datasets.upload.mutationOptions({
      onSuccess: async (dataset) => {
        await queryClient.invalidateQueries({ queryKey: trpc.datasets.list.queryKey() });
        onUploaded(dataset);
      },
    }),
  );
  const details = upload.error ? errorDetails(upload.error) : null;
  const errorFor = (field: string) => details?.fieldErrors?.[field]?.[0] ?? (details?.field === field ? details.message : undefined);
  const fileError = readError ?? errorFor('jsonl');
  const nameError = errorFor('name');
  const otherError = details && !fileError && !nameError ? details.message : undefined;

  // A nested <form> is not allowed inside the job form, so this is a group with its own button.
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setReadError(null);
    if (!file) {
      setReadError('Choose a .jsonl file first.');
      return;
    }
    if (file.size > MAX_BYTES) {
      setReadError(`The file is ${(file.size / 1024 / 1024).toFixed(1)} MB; the limit is 5 MB.`);
      return;
    }
    let jsonl: string;
    try {
      jsonl = await file.text();
    } catch {
      setReadError('The browser could not read that file.');
      return;
    }
    upload.mutate({ name: name.trim() || file.name.replace(/\.[^.]+$/, ''), jsonl });
  };

  return (
    <div className="upload" role="group" aria-labelledby={`${id}-title`}>
      <h3 id={`${id}-title`}>Upload a dataset</h3>
      <p className="hint">
        One JSON object per line: <code>{'{"prompt": "…", "completion": "…"}'}</code>. At least 2 rows, up to 5 MB.
      </p>
      <label htmlFor={`${id}-file`}>JSONL file</label>
      <input
        id={`${id}-file`}
        type="file"
        accept=".jsonl,.json,.ndjson,.txt,application/jsonl,application/x-ndjson"
        aria-invalid={Boolean(fileError)}
        aria-describedby={fileError ? `${id}-file-error` : undefined}
        onChange={(e) => {
          const chosen = e.target.files?.[0] ?? null;
          setFile(chosen);
          setReadError(null);
          upload.reset();
          if (chosen && !name) setName(chosen.name.replace(/\.[^.]+$/, ''));
        }}
      />
      {fileError && (
        <div className="field-error" id={`${id}-file-error`} role="alert" data-testid="upload-error">
          {/^line \d+:/.test(fileError) ? (
            <>
              <p className="upload-error-head">The file has lines that are not dataset rows:</p>
              <ul className="upload-error-lines">
                {fileError.split(/; (?=line \d+:|and \d+ more)/).map((problem) => (
                  <li key={problem}>{problem}</li>
                ))}
              </ul>
            </>
          ) : (
            fileError
          )}
        </div>
      )}
      <label htmlFor={`${id}-name`}>Dataset name</label>
      <input
        id={`${id}-name`}
        type="text"
        value={name}
        maxLength={120}
        onChange={(e) => setName(e.target.value)}
        aria-invalid={Boolean(nameError)}
        aria-describedby={nameError ? `${id}-name-error` : undefined}
      />
      {nameError && (
        <p className="field-error" id={`${id}-name-error`}>
          {nameError}
        </p>
      )}
      {otherError && (
        <p className="form-error" role="alert">
          {otherError}
        </p>
      )}
      <button type="button" className="button-quiet" onClick={(e) => void submit(e)} disabled={upload.isPending}>
        {upload.isPending ? 'Uploading…' : 'Upload dataset'}
      </button>
    </div>
  );
}
