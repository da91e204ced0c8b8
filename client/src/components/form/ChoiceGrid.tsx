// Radio choices shown as cards (launchers, triggers): a title, what the choice does, its settings.

/** Radio choices as cards: a title, what the choice does, and optionally its settings. */
export function ChoiceGrid<T extends string>({
  name,
  value,
  choices,
  onChange,
}: {
  name: string;
  value: T;
  choices: { value: T; title: string; explain: string; settings?: string }[];
  onChange: (value: T) => void;
}) {
  return (
    <div className="choice-grid">
      {choices.map((choice) => (
        <label key={choice.value} className={value === choice.value ? 'choice choice-selected' : 'choice'}>
          <input type="radio" name={name} value={choice.value} checked={value === choice.value} onChange={() => onChange(choice.value)} />
          <span>
            <span className="choice-title">{choice.title}</span>
            <span className="choice-explain">{choice.explain}</span>
            {choice.settings && <span className="choice-settings">{choice.settings}</span>}
          </span>
        </label>
      ))}
    </div>
  );
}
