// Sessions in the browser (audit F7): one user signed in from two browsers; "Sign out everywhere"
// in one sends the other to the sign-in page, saying why, on its very next request. Also the
// account page's password form (errors in place) and sessions list.
import { expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { describeBrowser, screenshot, useBrowserApp } from '../../server/test-support/browser';
import type { TestServer } from '../../server/test-support/server';
import { createUser, TEST_PASSWORD } from '../../server/test-support/factories';
import { DESKTOP, signIn } from './support';

describeBrowser('sessions in the browser', () => {
  let server: TestServer;
  let browser: Browser;
  useBrowserApp(
    (started, launched) => {
      server = started;
      browser = launched;
    },
    { SIGNUP: 'open' },
  );

  async function signedInBrowser(email: string): Promise<Page> {
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await context.newPage();
    await signIn(page, server.url, email);
    return page;
  }

  it('"Sign out everywhere" in one browser sends the other to sign-in on its next request', async () => {
    const user = await createUser(server.deps);
    const first = await signedInBrowser(user.email);
    const second = await signedInBrowser(user.email);
    try {
      // The account page: the sessions of this user (sign-up, and the two browsers), this one marked.
      await first.getByTestId('user-email').click();
      await first.waitForURL(/\/account$/);
      await first.getByRole('heading', { name: 'Account' }).waitFor();
      await expect.poll(() => first.getByTestId('session-row').count()).toBe(3);
      await first.getByText('This browser').waitFor();

      // A wrong current password is said next to its field, and ends nothing.
      await first.getByLabel('Current password').fill('not my password');
      await first.getByLabel('New password').fill('a brand new passphrase 42');
      await first.getByRole('button', { name: 'Change password' }).click();
      await first.locator('#current-password-error').filter({ hasText: 'The current password is incorrect' }).waitFor();
      await screenshot(first, 'account-page');

      await first.getByRole('button', { name: 'Sign out everywhere' }).click();
      await first.getByRole('heading', { name: 'Sign in' }).waitFor();

      // The other browser still shows its page; its next request is refused and it signs out.
      await second.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'New job' }).click();
      await second.getByRole('heading', { name: 'Sign in' }).waitFor();
      await second.getByTestId('session-ended').filter({ hasText: 'Your session has ended; sign in again' }).waitFor();
      expect(await second.evaluate(() => localStorage.getItem('predictions.session'))).toBeNull();
      await screenshot(second, 'session-ended');
    } finally {
      await first.context().close();
      await second.context().close();
    }
  });

  it('live streams open with a stream ticket; the session token never appears in a URL', async () => {
    const user = await createUser(server.deps);
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await context.newPage();
    const urls: string[] = [];
    page.on('request', (request) => urls.push(request.url()));
    try {
      await page.goto(`${server.url}/signin`);
      await page.getByLabel('Email').fill(user.email);
      await page.getByLabel('Password').fill(TEST_PASSWORD);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByTestId('user-email').filter({ hasText: user.email }).waitFor();
      // The jobs list follows job updates live (jobs.onUpdate).
      await expect.poll(() => urls.some((url) => url.includes('/trpc/jobs.onUpdate') && url.includes('connectionParams'))).toBe(true);
      const token = await page.evaluate(() => localStorage.getItem('predictions.session'));
      expect(token).toBeTruthy();
      const stream = urls.find((url) => url.includes('/trpc/jobs.onUpdate')) ?? '';
      const params = JSON.parse(new URL(stream).searchParams.get('connectionParams') ?? '{}') as Record<string, string>;
      expect(Object.keys(params)).toEqual(['ticket']);
      expect(urls.filter((url) => url.includes(token ?? '(none)'))).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('"Sign out" revokes the session on the server, not only in this browser', async () => {
    const user = await createUser(server.deps);
    const page = await signedInBrowser(user.email);
    try {
      const token = await page.evaluate(() => localStorage.getItem('predictions.session'));
      expect((await server.raw('auth.me', { token: token ?? '' })).status).toBe(200);
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByRole('heading', { name: 'Sign in' }).waitFor();
      await expect.poll(async () => (await server.raw('auth.me', { token: token ?? '' })).status).toBe(401);
    } finally {
      await page.context().close();
    }
  });
});
