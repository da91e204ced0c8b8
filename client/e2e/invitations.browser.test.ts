// Joining by invitation (SIGNUP=invite, the default) through the built SPA served by the real
// server, in headless Chromium: the first account is told it becomes the administrator, creates
// an invitation on the Invitations page, and a new browser (another person) registers through
// the link; without a link the sign-up page says one is needed, and a used link is refused in place.
import { expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { describeBrowser, screenshot, useBrowserApp } from '../../server/test-support/browser';
import type { TestServer } from '../../server/test-support/server';
import { TEST_PASSWORD, uniqueEmail } from '../../server/test-support/factories';

describeBrowser('invitations in the browser', () => {
  let server: TestServer;
  let browser: Browser;
  // An empty value is "not set": the server's own default policy (invite), not the tests' open one.
  useBrowserApp(
    (started, launched) => {
      server = started;
      browser = launched;
    },
    { SIGNUP: '' },
  );

  it('the administrator creates an invitation; a new browser registers through its link, once', { timeout: 90_000 }, async () => {
    expect(server.deps.config.signup).toBe('invite');
    const viewport = { width: 1280, height: 800 };

    // The first account: no invitation needed, and the page says what it becomes.
    const adminContext = await browser.newContext({ viewport });
    const admin = await adminContext.newPage();
    const adminEmail = uniqueEmail('admin');
    await admin.goto(`${server.url}/`);
    await admin.getByRole('link', { name: 'Create an account' }).click();
    await admin.getByTestId('signup-notice').filter({ hasText: 'it becomes the administrator' }).waitFor();
    await admin.getByLabel('Email').fill(adminEmail);
    await admin.getByLabel('Password').fill(TEST_PASSWORD);
    await admin.getByRole('button', { name: 'Create account' }).click();
    await admin.getByTestId('user-email').filter({ hasText: adminEmail }).waitFor();

    await admin.getByRole('link', { name: 'Invitations' }).click();
    await admin.getByRole('heading', { name: 'Invitations', level: 1 }).waitFor();
    await admin.getByText('No invitations yet.').waitFor();
    await admin.getByRole('button', { name: 'Create invitation link' }).click();
    const link = (await admin.getByTestId('invitation-link').locator('code').textContent()) ?? '';
    expect(link).toMatch(new RegExp(`^${server.deps.config.publicUrl}/register\\?invitation=[\\w-]{43}$`));
    await admin.getByTestId('invitation-row').filter({ hasText: 'Pending' }).waitFor();
    await screenshot(admin, 'invitations-created');

    // Someone else, in a browser of their own: without the link, sign-up says a link is needed.
    const guestContext = await browser.newContext({ viewport });
    const guest = await guestContext.newPage();
    await guest.goto(`${server.url}/signup`);
    await guest.getByTestId('signup-notice').filter({ hasText: 'Sign-up on this server is by invitation' }).waitFor();
    expect(await guest.getByRole('button', { name: 'Create account' }).count()).toBe(0);

    // With the link, they register and are signed in, as an ordinary user.
    const invitedEmail = uniqueEmail('invited');
    await guest.goto(link.replace(server.deps.config.publicUrl, server.url));
    await guest.getByTestId('signup-notice').filter({ hasText: 'You are signing up with an invitation' }).waitFor();
    await guest.getByLabel('Email').fill(invitedEmail);
    await guest.getByLabel('Password').fill(TEST_PASSWORD);
    await guest.getByRole('button', { name: 'Create account' }).click();
    await guest.getByTestId('user-email').filter({ hasText: invitedEmail }).waitFor();
    expect(new URL(guest.url()).pathname).toBe('/');
    expect(await guest.getByRole('link', { name: 'Invitations' }).count()).toBe(0);
    await guest.goto(`${server.url}/admin/invitations`);
    await guest.getByRole('alert').filter({ hasText: 'Only an administrator of this server may do this' }).waitFor();
    expect(await guest.getByRole('button', { name: 'Create invitation link' }).count()).toBe(0);
    await guestContext.close();

    // The same link again, in yet another browser: refused where the form is.
    const lateContext = await browser.newContext({ viewport });
    const late = await lateContext.newPage();
    await late.goto(link.replace(server.deps.config.publicUrl, server.url));
    await late.getByLabel('Email').fill(uniqueEmail('late'));
    await late.getByLabel('Password').fill(TEST_PASSWORD);
    await late.getByRole('button', { name: 'Create account' }).click();
    await late.getByRole('alert').filter({ hasText: 'This invitation has already been used' }).waitFor();
    await screenshot(late, 'invitations-used-link');
    await lateContext.close();

    // The administrator sees who used it.
    await admin.reload();
    await admin.getByTestId('invitation-row').filter({ hasText: 'Used' }).filter({ hasText: invitedEmail }).waitFor();
    await screenshot(admin, 'invitations-used');
    await adminContext.close();
  });
});
