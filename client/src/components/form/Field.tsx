// A labelled form field with its hint and its problems in place, and the number input built on
// it. Used by the deploy form; any form whose problems carry a field path can use them.
import { useId, type ReactNode } from 'react';
import { ProblemList, type FormProblem } from './ProblemList';

/** What a field hands its control so the label, hint and problems are tied to it. */
export interface FieldControlProps {
  id: string;
  'aria-invalid': boolean;
  'aria-describedby': string | undefined;
}

export function Field({
  label,
  field,
  problems,
  hint,
  wide = false,
  children,
}: {
  wide?: boolean;
  label: string;
  field: string;
  problems: FormProblem[];
  hint?: string;
  children: (props: FieldControlProps) => ReactNode;
}) {
  const id = useId();
  const describedBy = [problems.length ? `${id}-problems` : null, hint ? `${id}-hint` : null].filter(Boolean).join(' ') || undefined;
  return (
    <div className={wide ? 'field field-wide' : 'field'} data-field={field}>
      <label htmlFor={id}>{label}</label>
      {children({ id, 'aria-invalid': problems.some((p) => p.severity === 'error'), 'aria-describedby': describedBy })}
      {hint && (
        <p className="hint" id={`${id}-hint`}>
          {hint}
        </p>
      )}
      <ProblemList problems={problems} id={`${id}-problems`} />
    </div>
  );
}

/** A number input in a Field; kept as text so a half-typed value is the user's, not NaN. */
export function NumberField({
  value,
  onChange,
  min,
  max,
  decimal = false,
  disabled = false,
  ...field
}: Omit<Parameters<typeof Field>[0], 'children'> & {
  value: string;
  onChange: (value: string) => void;
  min: number;
  max?: number;
  decimal?: boolean;
  disabled?: boolean;
}) {
  return (
    <Field {...field}>
      {(props) => (
        <input
          {...props}
          type="number"
          inputMode={decimal ? 'decimal' : 'numeric'}
          step={decimal ? 'any' : undefined}
          min={min}
          max={max}
          value={value}
          disabled={disabled}
          onChange={(e) => onChange(e.target.value)}
        />
      )}
    </Field>
  );
}
