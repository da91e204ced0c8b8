// Server messages mark commands with backticks (`npm run trainer -- sync`); show them as code.
import type { ReactNode } from 'react';

export function withInlineCode(text: string): ReactNode[] {
  return text.split('`').map((part, i) =>
    i % 2 === 1 ? (
      <code key={i} className="inline-code">
        {part}
      </code>
    ) : (
      part
    ),
  );
}
