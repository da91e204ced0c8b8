// The manual launcher's pod environment (job id, job token, API URL) and the commands that
// start the trainer with it. The token is never retrievable again, so the dialog says so.
import type { RouterOutputs } from '../../api/client';
import { formatDateTime } from '../lib/format';
import { CopyButton } from './CopyButton';
import { Modal } from './Modal';

type PodEnv = RouterOutputs['jobs']['rotateToken'];

export function PodEnvDialog({ pod, onClose, closeLabel }: { pod: PodEnv; onClose: () => void; closeLabel: string }) {
  const envBlock = Object.entries(pod.env)
    .map(([name, value]) => `${name}=${value}`)
    .join('\n');
  return (
    <Modal title="Start your pod" onClose={onClose} wide>
      <p className="notice notice-warn" role="note" data-testid="token-once-notice">
        <strong>This token is shown only once.</strong> Copy it now; if you lose it, issue a new one from the job page
        (the old one stops working).
      </p>
      <p className="muted">
        Run the trainer wherever you have a GPU, with these three variables. The token can write to this job only and
        expires {formatDateTime(pod.tokenExpiresAt)}.
      </p>
      <div className="env-head">
        <h3>Environment</h3>
        <CopyButton value={envBlock} label="all three variables" text="Copy all three" />
      </div>
      <div className="env-list">
        {Object.entries(pod.env).map(([name, value]) => (
          <div className="env-row" key={name}>
            <code className="env-name">{name}</code>
            <code className="env-value" data-testid={`env-${name}`}>
              {value}
            </code>
            <CopyButton value={value} label={name} />
          </div>
        ))}
      </div>
      <div className="copy-block">
        <div className="copy-block-head">
          <h3>TypeScript trainer</h3>
          <CopyButton value={pod.command} label="trainer command" />
        </div>
        <pre>{pod.command}</pre>
      </div>
      <div className="copy-block">
        <div className="copy-block-head">
          <h3>Hugging Face Trainer (Python callback)</h3>
          <CopyButton value={pod.pythonCommand} label="Python command" />
        </div>
        <pre>{pod.pythonCommand}</pre>
      </div>
      <div className="modal-actions">
        <button type="button" className="button-primary" onClick={onClose}>
          {closeLabel}
        </button>
      </div>
    </Modal>
  );
}
