// Long prompts and predictions collapse to a few lines; one click shows the whole text.
import { useState } from 'react';

const COLLAPSED_CHARS = 180;

/** The first `max` UTF-16 units of `text`, one fewer where the cut would halve an emoji (a surrogate pair) into "�". */
function head(text: string, max: number): string {
  const last = text.charCodeAt(max - 1);
  return text.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
}

export function ExpandableText({ text, className }: { text: string; className?: string }) {
  const [open, setOpen] = useState(false);
  if (text.length === 0) return <span className="muted">(empty)</span>;
  if (text.length <= COLLAPSED_CHARS) return <span className={className}>{text}</span>;
  return (
    <span className={className}>
      {open ? text : `${head(text, COLLAPSED_CHARS).trimEnd()}…`}{' '}
      <button type="button" className="link-button" aria-expanded={open} onClick={() => setOpen(!open)}>
        {open ? 'Show less' : 'Show more'}
      </button>
    </span>
  );
}
