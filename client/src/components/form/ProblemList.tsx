// A field's problems (errors and warnings), each with its fix, read out by screen readers.

/** One problem as jobs.validateConfig reports it: which field, how bad, what to do. */
export interface FormProblem {
  severity: 'error' | 'warning';
  field: string;
  message: string;
  fix: string;
}

export function ProblemList({ problems, id }: { problems: FormProblem[]; id: string }) {
  if (problems.length === 0) return null;
  return (
    <ul className="problems" id={id}>
      {problems.map((problem, index) => (
        <li key={index} className={`problem problem-${problem.severity}`} data-testid={`problem-${problem.severity}`}>
          <span className="problem-icon" aria-hidden="true">
            {problem.severity === 'error' ? '✕' : '!'}
          </span>
          <span>
            <span className="visually-hidden">{problem.severity === 'error' ? 'Error: ' : 'Warning: '}</span>
            {problem.message}
            {problem.fix && <span className="problem-fix"> {problem.fix}</span>}
          </span>
        </li>
      ))}
    </ul>
  );
}
