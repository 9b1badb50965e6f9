// The bundled page at a private customer-service desk (`--auth-secret`):
// customers in conversations of their own, agents behind a login, tokens
// renewed before they run out. Each test starts its own server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  browserSuite, newContext, textOf, waitText, shot, openPage, openTab, waitFor, waitLive, messageIds, messageTexts,
  sendFromPage, assertNoDuplicates, mintToken, privateArgs,
} from './support.mjs';

const suite = browserSuite();
const startServer = (...more) => suite.startServer(privateArgs(...more));

/** GET /session as the page's browser context sees it (its cookie). */
const sessionOf = (page) => page.evaluate(() => fetch('session', { cache: 'no-store' }).then((r) => r.json()));

/** A customer's page, live in their own conversation; `room` is it. */
async function customer(srv, opts) {
  const c = await openPage(suite.browser, `${srv.base}/`, opts);
  await waitLive(c.page);
  const s = await sessionOf(c.page);
  assert.equal(s.role, 'customer');
  assert.equal(s.private, true);
  return { ...c, room: s.rooms[0] };
}

test('a customer is in a conversation of their own at once, keeps it across reloads and tabs, and sees no other', async () => {
  const srv = await startServer();
  const a = await customer(srv);
  assert.match(a.room, /^v-[A-Za-z0-9_-]{22,}$/);
  // No room list, no way to open another room.
  assert.equal(await a.page.getByTestId('rooms').isVisible(), false, 'no room list');
  assert.equal(await a.page.getByRole('button', { name: 'Open a new room' }).isVisible(), false);
  assert.equal(await a.page.locator('#room-name').textContent(), 'Your conversation');
  await waitFor(async () => /offline/.test(await textOf(a.page, 'agent-status')), { what: 'agents offline' });

  await a.page.getByTestId('name').fill('Carla');
  await waitFor(async () => (await sessionOf(a.page)).user === 'Carla', { what: 'the name in the token' });
  await sendFromPage(a.page, 'Hello, my parcel is late');
  await waitText(a.page, 'Hello, my parcel is late');
  assert.deepEqual(await a.page.$$eval('[data-testid="message"] .author', (els) => els.map((e) => e.textContent)), ['Carla']);
  assert.equal(await a.page.locator('[data-testid="message"].own').count(), 1, 'own message marked');
  await shot(a.page, 'private-customer');
  await a.page.setViewportSize({ width: 360, height: 740 });
  assert.equal(await a.page.evaluate(() => document.scrollingElement.scrollWidth <= innerWidth), true, 'nothing sticks out at phone width');
  await shot(a.page, 'private-customer-phone');
  await a.page.setViewportSize({ width: 1280, height: 800 });

  // A reload keeps the conversation (the cookie), its history and the name.
  await a.page.reload();
  await waitLive(a.page);
  await waitText(a.page, 'Hello, my parcel is late');
  assert.equal((await sessionOf(a.page)).rooms[0], a.room);
  assert.equal(await a.page.getByTestId('name').inputValue(), 'Carla');

  // A second tab of the same browser: the same conversation, over the shared stream.
  const tab = await openTab(a.context, `${srv.base}/`);
  await waitLive(tab.page);
  await waitText(tab.page, 'Hello, my parcel is late');
  await sendFromPage(tab.page, 'from my second tab');
  await waitText(a.page, 'from my second tab');
  assert.equal(await a.page.evaluate(() => window.__streams.open) + await tab.page.evaluate(() => window.__streams.open), 1,
    'the tabs share one stream');

  // Another browser: another conversation, none of the first one's messages, no way in.
  const b = await customer(srv);
  assert.notEqual(b.room, a.room);
  await sendFromPage(b.page, 'I am someone else');
  await waitText(b.page, 'I am someone else');
  assert.deepEqual(await messageTexts(b.page), ['I am someone else']);
  await b.page.evaluate((room) => { location.hash = '#' + room; }, a.room);
  const peek = await b.page.evaluate((room) => fetch('messages?room=' + room).then((r) => r.status), a.room);
  assert.equal(peek, 403, 'another conversation is not readable');
  assert.equal(await b.page.evaluate(() => fetch('rooms').then((r) => r.status)), 403, 'no room list for customers');
  await sendFromPage(b.page, 'still mine');
  await waitText(b.page, 'still mine');
  assert.deepEqual(await messageTexts(b.page), ['I am someone else', 'still mine']);
  assert.deepEqual(await messageTexts(a.page), ['Hello, my parcel is late', 'from my second tab']);
  for (const p of [a, tab, b]) assert.deepEqual(p.errors, []);
  await a.context.close();
  await b.context.close();
});

test('an agent logs in with a token, answers a customer, and logs out', async () => {
  const srv = await startServer();
  const c = await customer(srv);
  await c.page.getByTestId('name').fill('Carla');
  await waitFor(async () => (await sessionOf(c.page)).user === 'Carla', { what: 'the name in the token' });
  await sendFromPage(c.page, 'Where is order 1234?');
  await waitText(c.page, 'Where is order 1234?');
  await waitFor(async () => /offline/.test(await textOf(c.page, 'agent-status')), { what: 'agents offline' });

  // The login form first; a wrong token says so.
  const agent = await openPage(suite.browser, `${srv.base}/?agent`, { viewport: { width: 1280, height: 800 } });
  const a = agent.page;
  await waitFor(() => a.getByTestId('login-token').isVisible(), { what: 'the login form' });
  assert.equal(await a.getByTestId('rooms').isVisible(), false, 'nothing of the console before login');
  await shot(a, 'private-agent-login');
  await a.getByTestId('login-token').fill('not-a-token');
  await a.getByTestId('login').click();
  await waitFor(async () => /not valid/.test(await a.locator('#login-error').textContent()), { what: 'the wrong-token error' });
  assert.equal(await a.getByTestId('login-token').isVisible(), true);

  await a.getByTestId('login-token').fill(mintToken('--user', 'Sam', '--agent'));
  await a.getByTestId('login').click();
  await waitLive(a);
  assert.equal(await a.getByTestId('login-token').isVisible(), false);
  assert.match(await a.locator('#account').textContent(), /Sam/);

  // The customer's conversation, unanswered, with its unread count.
  const entry = a.locator(`[data-testid="room"][data-room="${c.room}"]`);
  await waitFor(() => entry.count(), { what: 'the conversation in the agent list' });
  await waitFor(async () => (await entry.getByTestId('unread').textContent()) === '1', { what: 'unread 1' });
  assert.match(await entry.textContent(), /Carla: Where is order 1234\?/);
  await waitFor(async () => /\bonline\b/.test(await textOf(c.page, 'agent-status')), { timeout: 6000, what: 'the customer sees an agent online' });

  await entry.locator('button').click();
  await waitText(a, 'Where is order 1234?');
  await waitFor(async () => (await entry.getByTestId('unread').textContent()) === '0', { what: 'unread reset' });
  await sendFromPage(a, 'It left the warehouse today.');
  await waitText(c.page, 'It left the warehouse today.');
  const answer = c.page.locator('[data-testid="message"]', { hasText: 'It left the warehouse today.' });
  assert.equal(await answer.getAttribute('data-role'), 'agent');
  assert.match(await answer.getAttribute('class'), /\bby-agent\b/);
  assert.equal(await answer.getByTestId('agent-badge').textContent(), 'Agent');
  assert.equal(await answer.locator('.author').textContent(), 'Sam', "the author is the token's name");
  // The customer's own message is no agent's.
  assert.equal(await c.page.locator('[data-testid="message"][data-role="customer"] [data-testid="agent-badge"]').count(), 0);
  await waitFor(async () => (await messageIds(a)).length === 2, { what: 'both messages in the agent view' });
  assertNoDuplicates(await messageIds(a));
  await shot(a, 'private-agent');
  await a.setViewportSize({ width: 360, height: 740 });
  assert.equal(await a.evaluate(() => document.scrollingElement.scrollWidth <= innerWidth), true, 'nothing sticks out at phone width');
  await shot(a, 'private-agent-phone');
  await a.setViewportSize({ width: 1280, height: 800 });
  await shot(c.page, 'private-customer-answered');

  // The cookie keeps the agent logged in: no form after a reload.
  await a.reload();
  await waitLive(a);
  assert.equal(await a.getByTestId('login-token').isVisible(), false);

  await a.getByTestId('logout').click();
  await waitFor(() => a.getByTestId('login-token').isVisible(), { what: 'the login form after logout' });
  assert.equal((await sessionOf(a)).role, 'anonymous');
  assert.deepEqual(agent.errors, []);
  assert.deepEqual(c.errors, []);
  await agent.context.close();
  await c.context.close();
});

test('unread counts mean unanswered; a late customer tab sees the agent online; agent tabs log out together', async () => {
  const srv = await startServer();
  const c = await customer(srv);
  await sendFromPage(c.page, 'first question');
  await sendFromPage(c.page, 'second question');
  await waitFor(async () => (await messageTexts(c.page)).length === 2, { what: 'two questions' });

  const agent = await openPage(suite.browser, `${srv.base}/?agent`);
  const a = agent.page;
  await waitFor(() => a.getByTestId('login-token').isVisible(), { what: 'the login form' });
  await a.getByTestId('login-token').fill(mintToken('--user', 'Sam', '--agent'));
  await a.getByTestId('login-token').press('Enter');
  await waitLive(a);
  const entry = a.locator(`[data-testid="room"][data-room="${c.room}"]`);
  const unread = () => entry.getByTestId('unread').textContent();
  await waitFor(async () => (await unread()) === '2', { what: 'unread 2' });

  // Another agent answers (elsewhere): nothing is left unanswered; a new question is.
  const kim = mintToken('--user', 'Kim', '--agent');
  const r = await srv.request('POST', '/messages', { room: c.room, text: 'Kim here, looking into it' }, { Authorization: `Bearer ${kim}` });
  assert.equal(r.status, 201);
  await waitFor(async () => (await unread()) === '0', { what: 'answered: unread 0' });
  await sendFromPage(c.page, 'thanks Kim, one more thing');
  await waitFor(async () => (await unread()) === '1', { what: 'unread 1 after the answer' });

  // A customer tab opened now learns of the agent from the tab holding the stream.
  await waitFor(async () => /\bonline\b/.test(await textOf(c.page, 'agent-status')), { timeout: 6000, what: 'agent online' });
  const late = await openTab(c.context, `${srv.base}/`);
  await waitLive(late.page);
  await waitFor(async () => /\bonline\b/.test(await textOf(late.page, 'agent-status')), { timeout: 6000, what: 'agent online in the late tab' });
  await waitFor(async () => (await late.page.locator('[data-testid="message"].by-agent .author').allTextContents()).join() === 'Kim',
    { what: "Kim's answer marked in the late tab" });

  // A second agent tab needs no login; logging out in one logs out both.
  const second = await openTab(agent.context, `${srv.base}/?agent`);
  await waitLive(second.page);
  assert.equal(await second.page.getByTestId('login-token').isVisible(), false);
  await a.getByTestId('logout').click();
  for (const p of [a, second.page]) {
    await waitFor(() => p.getByTestId('login-token').isVisible(), { what: 'the login form in every agent tab' });
  }
  for (const e of [agent.errors, second.errors, c.errors, late.errors]) assert.deepEqual(e, []);
  await agent.context.close();
  await c.context.close();
});

test('an agent cookie on the customer page leads to the console; a customer token is no agent login', async () => {
  const srv = await startServer();
  const context = await newContext(suite.browser);
  const { page: p, errors } = await openTab(context, `${srv.base}/?agent`);
  await waitFor(() => p.getByTestId('login-token').isVisible(), { what: 'the login form' });
  await p.getByTestId('login-token').fill(mintToken('--user', 'Carla', '--room', 'v-somewhere'));
  await p.getByTestId('login').click();
  await waitFor(async () => /not an agent/.test(await p.locator('#login-error').textContent()), { what: 'the not-an-agent error' });
  assert.equal((await sessionOf(p)).role, 'anonymous', 'the customer token was not kept');

  await p.getByTestId('login-token').fill(mintToken('--user', 'Sam', '--agent'));
  await p.getByTestId('login').click();
  await waitLive(p);
  await p.goto(`${srv.base}/`);
  await waitFor(() => new URL(p.url()).searchParams.has('agent'), { what: 'the redirect to the console' });
  await waitLive(p);
  assert.equal((await sessionOf(p)).role, 'agent', 'the agent is still logged in');
  assert.deepEqual(errors, []);
  await context.close();
});

test('a customer token is renewed before it runs out: the same conversation, nothing missed', async () => {
  // Visitors' tokens live 5 s: the page renews them every 2-3 s and reopens its stream.
  const srv = await startServer('--visitor-ttl', '5s');
  const c = await customer(srv);
  const first = await sessionOf(c.page);
  const agentToken = mintToken('--user', 'Sam', '--agent');
  const sent = [];
  const end = Date.now() + 13000; // more than two lifetimes of a token
  for (let i = 0; Date.now() < end; i += 1) {
    const r = await srv.request('POST', '/messages', { room: c.room, text: `answer ${i}` }, { Authorization: `Bearer ${agentToken}` });
    assert.equal(r.status, 201);
    sent.push(`answer ${i}`);
    await new Promise((resolve) => setTimeout(resolve, 400)); // pacing the sender, not waiting for the page
  }
  await waitFor(async () => (await messageTexts(c.page)).length === sent.length, { what: 'every answer' });
  assert.deepEqual(await messageTexts(c.page), sent, 'every answer once, in order');
  assertNoDuplicates(await messageIds(c.page));
  const now = await sessionOf(c.page);
  assert.equal(now.rooms[0], c.room, 'the same conversation');
  assert.ok(now.expires > first.expires, 'the token was re-issued');
  assert.ok(await c.page.evaluate(() => window.__streams.opened) >= 3, 'the stream was reopened with each new token');
  assert.match(await textOf(c.page, 'status'), /\blive\b/);
  assert.equal(await c.page.locator('#notice').isVisible(), false, 'no notice of a new conversation');
  assert.deepEqual(c.errors, []);
  await c.context.close();
});

test('a stream the server closes at its token\'s expiry comes back by itself with the renewed cookie, nothing missed', async () => {
  const srv = await startServer('--visitor-ttl', '4s');
  const c = await customer(srv);
  // The page's own renewals fail (as if its timers slept); the cookie is
  // renewed beside it (the same browser context), so the stream the page
  // opened outlives its token only through the browser's reconnect.
  await c.page.route('**/session', (route) => (route.request().method() === 'POST' ? route.abort() : route.continue()));
  const agentToken = mintToken('--user', 'Sam', '--agent');
  const sent = [];
  const end = Date.now() + 10000;
  for (let i = 0; Date.now() < end; i += 1) {
    const renewed = await c.context.request.post(`${srv.base}/session`);
    assert.equal(renewed.status(), 200, 'the same conversation, re-issued');
    const r = await srv.request('POST', '/messages', { room: c.room, text: `answer ${i}` }, { Authorization: `Bearer ${agentToken}` });
    assert.equal(r.status, 201);
    sent.push(`answer ${i}`);
    await new Promise((resolve) => setTimeout(resolve, 500)); // pacing the sender, not waiting for the page
  }
  await waitFor(async () => (await messageTexts(c.page)).length === sent.length, { what: 'every answer' });
  assert.deepEqual(await messageTexts(c.page), sent, 'every answer once, in order');
  const hellos = await c.page.evaluate(() => window.__streams.events.filter(([, type]) => type === 'hello').length);
  assert.ok(hellos >= 2, `the stream was closed at expiry and came back (${hellos} hellos)`);
  await waitLive(c.page);
  assert.equal((await sessionOf(c.page)).rooms[0], c.room, 'the same conversation');
  assert.deepEqual(c.errors, []);
  await c.context.close();
});

test('a token that ran out while nobody renewed it: the tabs move to one new conversation by themselves and say so', async () => {
  const srv = await startServer('--visitor-ttl', '3s');
  const c = await customer(srv);
  const tab = await openTab(c.context, `${srv.base}/`);
  await waitLive(tab.page);
  let block = true;
  await c.context.route('**/session', (route) => (block && route.request().method() === 'POST' ? route.abort() : route.continue()));
  // Past the expiry the server closes the stream and refuses it without a token.
  await waitFor(async () => (await sessionOf(c.page)).role === 'anonymous', { timeout: 8000, what: 'the token to run out' });
  await waitFor(async () => !/\blive\b/.test(await textOf(c.page, 'status')), { timeout: 8000, what: 'the stream to be closed' });
  block = false;
  await waitFor(async () => (await sessionOf(c.page)).role === 'customer', { timeout: 15000, what: 'a new session' });
  const room = (await sessionOf(c.page)).rooms[0];
  assert.notEqual(room, c.room, 'a new conversation');
  for (const p of [c.page, tab.page]) {
    await waitLive(p, 20000);
    await waitFor(async () => /new conversation/.test(await p.locator('#notice').textContent()), { timeout: 20000, what: 'the notice' });
  }
  await sendFromPage(c.page, 'hello again');
  await waitText(tab.page, 'hello again', 20000);
  await waitLive(c.page);
  assert.equal((await sessionOf(c.page)).rooms[0], room, 'one new conversation for both tabs');
  assert.deepEqual(c.errors, []);
  assert.deepEqual(tab.errors, []);
  await c.context.close();
});
