// Accessibility of the bundled page, checked by axe-core inside the browser:
// the customer's and the agent's views in open mode, and at a private desk
// (`--auth-secret`) the customer's view, the agent's login form and the
// agent's console; each at 360 px and 1440 px wide, light and dark. Any
// violation of impact "serious" or "critical" fails, with its rule, its impact
// and the elements it names. Each test starts its own server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import axe from 'axe-core';
import {
  browserSuite, openPage, textOf, waitText, waitFor, waitLive, messageTexts, sendFromPage, mintToken, privateArgs, SCREENSHOTS,
} from './support.mjs';

const suite = browserSuite();
const { startServer } = suite;

async function open(url, opts) {
  const p = await openPage(suite.browser, url, opts);
  return p;
}


const FAILING = new Set(['serious', 'critical']);
const WIDTHS = [360, 1440];
const SCHEMES = ['light', 'dark'];

/**
 * Runs axe-core on the page as it is now; resolves to every violation as
 * { id, impact, help, targets: [selector …] }.
 */
async function axeViolations(page) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) {
    await page.addScriptTag({ content: axe.source });
  }
  return page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      // The selectors; for a contrast, the colours and ratio axe measured.
      targets: v.nodes.map((n) => {
        const d = n.any.concat(n.all, n.none).map((c) => c.data).find((x) => x && x.contrastRatio);
        const sel = n.target.map(String).join(' ');
        return d ? `${sel}  (${d.fgColor} on ${d.bgColor}: ${d.contrastRatio}, needs ${d.expectedContrastRatio})` : sel;
      }),
    }));
  });
}

/**
 * Checks `page` (already showing `view`) at each width and colour scheme:
 * `ready(page)` waits until the view is complete again after a resize. Every
 * serious or critical violation is returned (for `expectNone`, so that a
 * test lists all of them); lesser ones are only reported as diagnostics.
 */
async function audit(t, page, view, ready = async () => {}) {
  const failures = [];
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  for (const width of WIDTHS) {
    for (const colorScheme of SCHEMES) {
      await page.setViewportSize({ width, height: width < 720 ? 740 : 900 });
      await page.emulateMedia({ colorScheme });
      await waitFor(() => page.evaluate((s) => matchMedia(`(prefers-color-scheme: ${s})`).matches, colorScheme),
        { what: `colour scheme ${colorScheme}` });
      await ready(page);
      const where = `${view} ${width}px ${colorScheme}`;
      await page.screenshot({ path: path.join(SCREENSHOTS, `a11y-${view}-${width}-${colorScheme}.png`) });
      for (const v of await axeViolations(page)) {
        const line = `${where}: ${v.id} (${v.impact}) — ${v.help}\n    ${v.targets.join('\n    ')}`;
        if (FAILING.has(v.impact)) failures.push(line);
        else t.diagnostic(line);
      }
    }
  }
  return failures;
}

/** Fails, printing each one, if there are any violations. */
function expectNone(failures) {
  assert.ok(failures.length === 0,
    `axe-core found ${failures.length} serious or critical violation(s):\n${failures.join('\n')}`);
}

// ---- open mode ----

async function openDesk() {
  const srv = await startServer();
  await srv.post('lobby', 'Maya', 'Hi! My order #4821 has not arrived yet.');
  await srv.post('lobby', 'Sam (support)', 'Hello Maya, let me check the tracking for you.');
  await srv.post('billing', 'Ahmed', 'Invoice for March is missing the VAT number');
  await srv.post('returns', 'Kim', 'How do I return a gift?');
  return srv;
}

test('open mode, customer view: no serious or critical violations', async (t) => {
  const srv = await openDesk();
  const agent = await open(`${srv.base}/?agent#lobby`);
  await waitLive(agent.page);
  const { page, errors } = await open(`${srv.base}/#lobby`);
  await page.evaluate(() => localStorage.setItem('ssehub.name', 'Maya'));
  await page.reload();
  await waitLive(page);
  await waitFor(async () => (await messageTexts(page)).length === 2, { what: 'the history' });
  await sendFromPage(page, 'Can I change the delivery address?');
  await waitText(page, 'Can I change the delivery address?');
  await waitFor(async () => /\bonline\b/.test(await textOf(page, 'agent-status')), { what: 'agent online' });
  expectNone(await audit(t, page, 'customer', () => waitLive(page)));
  assert.deepEqual(errors, []);
});

test('open mode, agent view: no serious or critical violations', async (t) => {
  const srv = await openDesk();
  const { page, errors } = await open(`${srv.base}/?agent#lobby`);
  await waitLive(page);
  await srv.post('billing', 'Ahmed', 'Could you resend it, please?');
  await waitFor(async () => (await page.locator('[data-room="billing"] [data-testid="unread"]').textContent()) === '1',
    { what: 'unread in billing' });
  await waitFor(() => page.locator('[data-testid="room"][data-room="returns"]').count(), { what: 'rooms in the agent view' });
  await page.getByTestId('name').fill('Sam (support)');
  await sendFromPage(page, 'It goes out for delivery tomorrow.');
  await waitText(page, 'It goes out for delivery tomorrow.');
  expectNone(await audit(t, page, 'agent', () => waitLive(page)));
  assert.deepEqual(errors, []);
});

// ---- private mode (--auth-secret) ----

test('private mode: customer view, agent login form and agent console have no serious or critical violations', async (t) => {
  const srv = await startServer(privateArgs());
  const failures = [];

  // The customer, with a question the agent answers below.
  const c = await open(`${srv.base}/`);
  await waitLive(c.page);
  await c.page.getByTestId('name').fill('Carla');
  await waitFor(() => c.page.evaluate(() => fetch('session', { cache: 'no-store' }).then((r) => r.json()).then((s) => s.user === 'Carla')),
    { what: 'the name in the token' });
  await sendFromPage(c.page, 'Where is order 1234?');
  await waitText(c.page, 'Where is order 1234?');

  // The agent's login form, then with the error a wrong token gives.
  const agent = await open(`${srv.base}/?agent`);
  const a = agent.page;
  await waitFor(() => a.getByTestId('login-token').isVisible(), { what: 'the login form' });
  failures.push(...await audit(t, a, 'private-login'));
  await a.getByTestId('login-token').fill('not-a-token');
  await a.getByTestId('login').click();
  await waitFor(async () => /not valid/.test(await a.locator('#login-error').textContent()), { what: 'the wrong-token error' });
  failures.push(...await audit(t, a, 'private-login-error'));

  // The console after login, in the customer's conversation, answering it.
  await a.getByTestId('login-token').fill(mintToken('--user', 'Sam', '--agent'));
  await a.getByTestId('login').click();
  await waitLive(a);
  const entry = a.locator('[data-testid="room"]', { hasText: 'Where is order 1234?' });
  await waitFor(() => entry.count(), { what: 'the conversation in the agent list' });
  await entry.locator('button').click();
  await waitText(a, 'Where is order 1234?');
  await sendFromPage(a, 'It left the warehouse today.');
  await waitText(a, 'It left the warehouse today.');
  failures.push(...await audit(t, a, 'private-agent', () => waitLive(a)));

  await waitText(c.page, 'It left the warehouse today.');
  await waitFor(async () => /\bonline\b/.test(await textOf(c.page, 'agent-status')), { timeout: 6000, what: 'agent online' });
  failures.push(...await audit(t, c.page, 'private-customer', () => waitLive(c.page)));

  expectNone(failures);
  assert.deepEqual(agent.errors, []);
  assert.deepEqual(c.errors, []);
});
