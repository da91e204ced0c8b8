// Steps the browser journeys share: sign up through the UI, and the deploy form's controls.
import type { Page } from 'playwright-core';
import { TEST_PASSWORD, uniqueEmail } from '../../server/test-support/factories';

export const DESKTOP = { width: 1280, height: 860 };
export const PHONE = { width: 390, height: 844 };
export const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

export async function signUp(page: Page, baseUrl: string, prefix: string): Promise<string> {
  const email = uniqueEmail(prefix);
  await page.goto(`${baseUrl}/signup`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(TEST_PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByTestId('user-email').filter({ hasText: email }).waitFor();
  return email;
}

/** Signs an existing account in through the sign-in form and waits for the signed-in shell. */
export async function signIn(page: Page, baseUrl: string, email: string, password: string = TEST_PASSWORD): Promise<void> {
  await page.goto(`${baseUrl}/signin`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('user-email').filter({ hasText: email }).waitFor();
}

/** Opens the deploy form and waits until the example dataset is chosen and the defaults checked. */
export async function openNewJobForm(page: Page): Promise<void> {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'New job' }).click();
  await page.waitForURL(/\/jobs\/new$/);
  await page.getByLabel('Dataset', { exact: true }).locator('option', { hasText: 'Example: everyday facts' }).waitFor({ state: 'attached' });
  await page.getByTestId('form-status').getByText('Ready to deploy').waitFor();
}

export function jobIdFromUrl(url: string): string {
  const match = new RegExp(`/jobs/(${UUID})`).exec(url);
  if (!match?.[1]) throw new Error(`no job id in ${url}`);
  return match[1];
}

/** A tab of the job page, by its label. */
export function jobTab(page: Page, name: string) {
  return page.getByRole('navigation', { name: 'Job sections' }).getByRole('link', { name });
}
