// Sign up and sign in through the built SPA served by the real server, in headless Chromium.
import { expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { describeBrowser, screenshot, useBrowserApp } from '../../server/test-support/browser';
import type { TestServer } from '../../server/test-support/server';
import { TEST_PASSWORD, uniqueEmail } from '../../server/test-support/factories';

describeBrowser('accounts in the browser', () => {
  let server: TestServer;
  let browser: Browser;
  useBrowserApp((started, launched) => {
    server = started;
    browser = launched;
  });

  it('signs up, stays signed in across a reload, signs out and signs back in', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const email = uniqueEmail('browser');
    await page.goto(`${server.url}/`);
    await page.getByRole('link', { name: 'Create an account' }).click();
    await page.waitForURL(/\/signup$/);

    // The server's validation message appears next to the field.
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill('short');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByText('Password must be at least 10 characters').waitFor();
    await screenshot(page, 'auth-signup-error');

    await page.getByLabel('Password').fill(TEST_PASSWORD);
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByTestId('user-email').filter({ hasText: email }).waitFor();
    expect(new URL(page.url()).pathname).toBe('/');
    await screenshot(page, 'auth-signed-in');

    await page.reload();
    await page.getByTestId('user-email').filter({ hasText: email }).waitFor();

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();

    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill('wrong password 1');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'Email or password is incorrect' }).waitFor();
    await screenshot(page, 'auth-signin-error');

    await page.getByLabel('Password').fill(TEST_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByTestId('user-email').filter({ hasText: email }).waitFor();
    await page.close();
  });
});
