// The signed-in session: a token kept in localStorage so it survives reloads, observable by React.
// The token stands for a session row on the server; when the server says that session has ended
// (signed out elsewhere, password changed, revoked), endSession forgets the token and keeps the
// server's message for the sign-in page to show.
import { useSyncExternalStore } from 'react';

const KEY = 'predictions.session';
const listeners = new Set<() => void>();
/** Why the last session ended without the user signing out here (shown on the sign-in page); null otherwise. */
let endedMessage: string | null = null;

export function getToken(): string | null {
  try {
    return localStorage.getItem(KEY);
  } catch {
    return null;
  }
}

/** Stores the token of a new session (null: the user signed out here); clears any "session ended" message. */
export function setToken(token: string | null): void {
  endedMessage = null;
  store(token);
}

/** Forgets the token because the server ended the session, keeping `message` for the sign-in page. */
export function endSession(message: string): void {
  endedMessage = message;
  store(null);
}

function store(token: string | null): void {
  try {
    if (token) localStorage.setItem(KEY, token);
    else localStorage.removeItem(KEY);
  } catch {
    // Storage refused (private mode, quota): the session lasts as long as the page.
  }
  for (const listener of listeners) listener();
}

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  const onStorage = (event: StorageEvent) => event.key === KEY && listener();
  window.addEventListener('storage', onStorage);
  return () => {
    listeners.delete(listener);
    window.removeEventListener('storage', onStorage);
  };
}

export function useToken(): string | null {
  return useSyncExternalStore(subscribe, getToken, () => null);
}

/** The server's message when the session ended on its own (e.g. "Your session has ended; sign in again"), else null. */
export function useSessionEndedMessage(): string | null {
  return useSyncExternalStore(subscribe, () => endedMessage, () => null);
}
