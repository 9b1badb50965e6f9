// The bundled page in a real browser (Debian's Chromium via playwright-core),
// against the real ssehub binary. Each test starts its own server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  Proxy, browserSuite, openPage, textOf, waitText, shot, waitFor, waitLive, statusText, messageIds, messageTexts,
  sendFromPage, assertNoDuplicates, SCREENSHOTS,
} from './support.mjs';

const suite = browserSuite();
const { startServer } = suite;

async function page(url, opts) {
  const p = await openPage(suite.browser, url, opts);
  return p;
}

const streams = (page) => page.evaluate(() => window.__streams);

test('two pages chat both ways; Enter sends, Shift+Enter adds a line; the name is remembered', async () => {
  const srv = await startServer();
  const a = await page(`${srv.base}/`);
  const b = await page(`${srv.base}/`);
  await waitLive(a.page);
  await waitLive(b.page);
  assert.equal(await a.page.getByTestId('messages').count(), 1);

  await a.page.getByTestId('name').fill('Alice');
  await b.page.getByTestId('name').fill('Bob');

  await sendFromPage(a.page, 'Hello from Alice');
  await waitText(b.page, 'Hello from Alice');

  const text = b.page.getByTestId('text');
  await text.fill('');
  await text.pressSequentially('line one');
  await text.press('Shift+Enter');
  await text.pressSequentially('line two');
  assert.equal(await text.inputValue(), 'line one\nline two', 'Shift+Enter adds a line and does not send');
  await text.press('Enter');
  await waitText(a.page, 'line one\nline two');
  assert.equal(await text.inputValue(), '', 'the box is emptied after sending');

  for (const p of [a.page, b.page]) {
    await waitFor(async () => (await messageIds(p)).length === 2, { what: 'two messages' });
    assert.deepEqual(await messageTexts(p), ['Hello from Alice', 'line one\nline two']);
    assertNoDuplicates(await messageIds(p));
  }
  assert.deepEqual(await messageIds(a.page), await messageIds(b.page), 'both pages show the same ids in the same order');

  // Own messages are set apart; authors are shown.
  const own = (p) => p.$$eval('[data-testid="message"]', (els) => els.map((e) => e.classList.contains('own')));
  assert.deepEqual(await own(a.page), [true, false]);
  assert.deepEqual(await own(b.page), [false, true]);
  assert.deepEqual(await a.page.$$eval('[data-testid="message"] .author', (els) => els.map((e) => e.textContent)), ['Alice', 'Bob']);

  // One EventSource per tab.
  for (const p of [a.page, b.page]) assert.equal((await streams(p)).maxOpen, 1);

  // A new visit: the name is remembered and the history is shown once.
  await a.page.reload();
  await waitLive(a.page);
  assert.equal(await a.page.getByTestId('name').inputValue(), 'Alice');
  await waitFor(async () => (await messageIds(a.page)).length === 2, { what: 'history after reload' });
  assertNoDuplicates(await messageIds(a.page));
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
});

test('HTML in a message stays text and runs no script; long texts and names wrap', async () => {
  const srv = await startServer();
  const { page: p, errors } = await page(`${srv.base}/`, { viewport: { width: 360, height: 740 } });
  await waitLive(p);
  const payload = `<img src=x onerror="window.__pwned='img'"><script>window.__pwned='script'</script><b>bold</b> &amp; <a href="javascript:window.__pwned='a'">link</a>`;
  await p.getByTestId('name').fill('<i>Mallory</i>');
  await sendFromPage(p, payload);
  const longName = 'N'.repeat(64);
  await srv.post('lobby', longName, 'W'.repeat(3000));
  await srv.post('lobby', 'Eve', `<svg onload="window.__pwned='svg'"></svg>`);
  await waitFor(async () => (await messageIds(p)).length === 3, { what: 'three messages' });

  const texts = await messageTexts(p);
  assert.equal(texts[0], payload, 'the text is shown exactly as typed');
  assert.equal(texts[2], `<svg onload="window.__pwned='svg'"></svg>`);
  const authors = await p.$$eval('[data-testid="message"] .author', (els) => els.map((e) => e.textContent));
  assert.deepEqual(authors, ['<i>Mallory</i>', longName, 'Eve']);
  const injected = await p.$$eval('[data-testid="messages"] :is(img, script, b, i, a, svg:not([aria-hidden]), iframe)', (els) => els.length);
  assert.equal(injected, 0, 'no element was created from message data');
  assert.equal(await p.evaluate(() => window.__pwned), undefined, 'no script ran');

  // Nothing sticks out sideways at phone width.
  const overflow = await p.evaluate(() => {
    const out = [];
    const root = document.scrollingElement;
    if (root.scrollWidth > window.innerWidth) out.push(`page ${root.scrollWidth} > ${window.innerWidth}`);
    const box = document.querySelector('[data-testid="messages"]');
    if (box.scrollWidth > box.clientWidth) out.push(`messages ${box.scrollWidth} > ${box.clientWidth}`);
    for (const m of document.querySelectorAll('[data-testid="message"]')) {
      const r = m.getBoundingClientRect();
      if (r.right > window.innerWidth + 0.5) out.push(`message ${m.dataset.id} right edge ${r.right}`);
      for (const c of m.querySelectorAll('.text, .author')) if (c.scrollWidth > c.clientWidth + 1) out.push(`${c.className} of ${m.dataset.id} overflows`);
    }
    return out;
  });
  assert.deepEqual(overflow, []);
  assert.deepEqual(errors, []);
});

test('server killed and restarted on the same port: the page goes live again and loses nothing', async () => {
  const srv = await startServer();
  const { page: p, errors } = await page(`${srv.base}/`);
  await waitLive(p);
  await p.getByTestId('name').fill('Rita');
  await srv.post('lobby', 'Bob', 'before 1');
  await sendFromPage(p, 'before 2');
  await waitFor(async () => (await messageIds(p)).length === 2, { what: 'two messages before the restart' });

  const port = srv.port;
  await srv.kill('SIGKILL');
  await waitFor(async () => !/\blive\b/.test(await statusText(p)), { timeout: 8000, what: 'status leaves "live"' });
  assert.match(await statusText(p), /reconnecting/);
  await shot(p, 'state-reconnecting');

  const again = await startServer([], port);
  // A second client writes while the page is still reconnecting.
  const after = await again.post('lobby', 'Bob', 'after restart');
  await waitLive(p, 15000);
  await waitText(p, 'after restart');
  await sendFromPage(p, 'and from the page');
  await waitText(p, 'and from the page');

  const ids = await messageIds(p);
  assertNoDuplicates(ids);
  assert.deepEqual(await messageTexts(p), ['before 1', 'before 2', 'after restart', 'and from the page']);
  assert.ok(ids.includes(String(after.id)));
  assert.equal((await streams(p)).open, 1, 'still exactly one open stream');
  assert.deepEqual(errors, []);
});

test('the watchdog notices a silent stream and resumes with lastEventId', async () => {
  const srv = await startServer(['--heartbeat', '1']);
  const { page: p, errors } = await page(`${srv.base}/`);
  await waitLive(p);
  const first = await srv.post('lobby', 'Bob', 'before the silence');
  await waitText(p, 'before the silence');
  const opened = (await streams(p)).opened;

  srv.signal('SIGSTOP'); // the TCP stream stays open but goes silent
  try {
    const t0 = Date.now();
    await waitFor(async () => !/\blive\b/.test(await statusText(p)), { timeout: 8000, what: 'the watchdog to leave "live"' });
    const took = Date.now() - t0;
    assert.ok(took >= 1500, `not before the heartbeats are overdue (${took} ms)`);
    assert.match(await statusText(p), /reconnecting/);
  } finally {
    srv.signal('SIGCONT');
  }
  await waitLive(p, 15000);
  const s = await streams(p);
  assert.ok(s.opened > opened, 'a new stream was opened');
  assert.match(s.urls.at(-1), new RegExp(`lastEventId=(\\d+)`), 'it resumes from the last id');
  assert.ok(Number(/lastEventId=(\d+)/.exec(s.urls.at(-1))[1]) >= first.id);
  assert.equal(s.open, 1);

  await srv.post('lobby', 'Bob', 'after the silence');
  await waitText(p, 'after the silence');
  assertNoDuplicates(await messageIds(p));
  assert.deepEqual(await messageTexts(p), ['before the silence', 'after the silence']);
  assert.deepEqual(errors, []);
});

test('agent view: a new room appears with its unread count; the agent answers; the customer sees the agent online', async () => {
  const srv = await startServer();
  const customer = await page(`${srv.base}/`);
  await waitLive(customer.page);
  await waitFor(async () => /offline/.test(await textOf(customer.page, 'agent-status')), { what: 'agent offline' });

  const agent = await page(`${srv.base}/?agent`);
  await waitLive(agent.page);
  await waitFor(async () => /\bonline\b/.test(await textOf(customer.page, 'agent-status')), { timeout: 6000, what: 'customer sees an agent online' });

  // The customer opens a new room by name and writes twice.
  const c = customer.page;
  await c.getByTestId('name').fill('Carol');
  await c.getByRole('button', { name: 'Open a new room' }).click();
  await c.getByLabel('Room name').fill('billing');
  await c.getByLabel('Room name').press('Enter');
  await waitFor(async () => (await c.locator('#room-name').textContent()) === 'billing', { what: 'room switched' });
  await waitLive(c);
  await sendFromPage(c, 'I was charged twice');
  await waitText(c, 'I was charged twice');
  await sendFromPage(c, 'order 1234');
  await waitText(c, 'order 1234');

  const a = agent.page;
  const billing = a.locator('[data-testid="room"][data-room="billing"]');
  await waitFor(() => billing.count(), { timeout: 10000, what: 'billing in the agent list' });
  await waitFor(async () => (await billing.getByTestId('unread').textContent()) === '2', { timeout: 10000, what: 'unread 2' });
  assert.match(await billing.textContent(), /order 1234/, 'the newest message is shown');

  await billing.locator('button').click();
  await waitFor(async () => (await messageTexts(a)).length === 2, { what: 'the room history in the agent view' });
  assert.deepEqual(await messageTexts(a), ['I was charged twice', 'order 1234']);
  await waitFor(async () => (await billing.getByTestId('unread').textContent()) === '0', { what: 'unread reset' });

  await a.getByTestId('name').fill('Sam (agent)');
  await sendFromPage(a, 'Sorry Carol, refunded.');
  await waitText(c, 'Sorry Carol, refunded.');
  await waitFor(async () => /\bonline\b/.test(await textOf(c, 'agent-status')), { timeout: 6000, what: 'agent online in billing' });
  assert.equal((await streams(a)).open, 1, 'the agent uses one stream for every room');
  assert.equal((await streams(c)).open, 1);
  assert.deepEqual(customer.errors, []);
  assert.deepEqual(agent.errors, []);
});

test('switching rooms keeps one stream and its place; unread counts on other rooms', async () => {
  const srv = await startServer();
  const { page: p, errors } = await page(`${srv.base}/#help`);
  await waitLive(p);
  await srv.post('help', 'Bob', 'in help');
  await waitText(p, 'in help');
  await p.locator('[data-testid="room"][data-room="lobby"] button').click();
  await waitFor(async () => (await streams(p)).urls.at(-1).includes('room=lobby'), { what: 'the stream to carry lobby' });
  await waitLive(p);
  assert.deepEqual(await messageTexts(p), [], 'lobby is empty');

  const later = await srv.post('help', 'Bob', 'while you were in lobby');
  const help = p.locator('[data-testid="room"][data-room="help"]');
  await waitFor(async () => (await help.getByTestId('unread').textContent()) === '1', { what: 'help unread 1' });

  await help.locator('button').click();
  await waitText(p, 'while you were in lobby');
  assert.deepEqual(await messageTexts(p), ['in help', 'while you were in lobby']);
  assert.ok((await messageIds(p)).includes(String(later.id)));
  const s = await streams(p);
  assert.equal(s.maxOpen, 1, 'never two streams at once');
  assert.match(s.urls.at(-1), /room=help/);
  assert.match(s.urls.at(-1), /room=lobby/);
  assert.deepEqual(errors, []);
});

test('the busy event shows "server full, retrying" and the page gets in later', async () => {
  const srv = await startServer(['--max-clients', '1']);
  const hold = await srv.holdStream('room=holder');
  await waitFor(() => hold.text().includes('hello'), { what: 'the held stream to be accepted' });
  const { page: p, errors } = await page(`${srv.base}/`);
  await waitFor(async () => /server full, retrying/.test(await statusText(p)), { timeout: 8000, what: '"server full, retrying"' });
  await shot(p, 'state-busy');
  hold.close();
  await waitLive(p, 20000);
  assert.deepEqual(errors, []);
});

test('a gap tells the user older messages were missed and reloads the history', async () => {
  const srv = await startServer(['--history', '3']);
  // The page talks through a proxy we can cut, like a network that drops.
  const proxy = await new Proxy(srv.port).start();
  try {
    const { page: p, errors } = await page(`${proxy.base}/`);
    await waitLive(p);

    // Not a gap for the user: joining a busy room while live (its history comes from GET /messages).
    for (let i = 1; i <= 5; i++) await srv.post('busy-room', 'Ann', `b${i}`);
    await p.evaluate(() => { location.hash = '#busy-room'; });
    await waitText(p, 'b5');
    await waitFor(async () => (await streams(p)).urls.at(-1).includes('room=busy-room'), { what: 'the stream to carry busy-room' });
    // A heartbeat comes after the gap and the replay: by then the page has seen them.
    const current = (await streams(p)).opened;
    await waitFor(async () => (await streams(p)).events.some(([n, t]) => n === current && t === 'heartbeat'), { what: 'a heartbeat on the new stream' });
    assert.ok((await streams(p)).events.some(([n, t]) => n === current && t === 'gap'), 'the server did send a gap for the joined room');
    assert.equal(await p.locator('#notice').isVisible(), false, 'no "missed" notice for a room just joined');
    assert.deepEqual(await messageTexts(p), ['b3', 'b4', 'b5']);
    await p.evaluate(() => { location.hash = '#lobby'; });
    await waitFor(async () => (await p.locator('#room-name').textContent()) === 'lobby', { what: 'back in lobby' });

    await srv.post('lobby', 'Bob', 'm1');
    await waitText(p, 'm1');

    proxy.blocked = true;
    proxy.cut();
    await waitFor(async () => !/\blive\b/.test(await statusText(p)), { timeout: 8000, what: 'status leaves live when the network drops' });
    // Five messages while away; the server keeps only the newest three.
    for (let i = 2; i <= 6; i++) await srv.post('lobby', 'Bob', `m${i}`);
    proxy.blocked = false;

    await waitLive(p, 15000);
    await waitFor(() => p.locator('#notice').isVisible(), { timeout: 8000, what: 'the gap notice' });
    assert.match(await p.locator('#notice').textContent(), /missed/);
    await waitText(p, 'm6');
    assert.deepEqual(await messageTexts(p), ['m1', 'm4', 'm5', 'm6'], 'what was retained is shown, once each');
    assertNoDuplicates(await messageIds(p));
    const resumed = proxy.heads.filter((h) => h.startsWith('GET /events')).at(-1);
    assert.match(resumed, /(last-event-id: \d+|lastEventId=\d+)/i, 'the page resumed from its last id');
    await shot(p, 'state-gap-notice');
    assert.deepEqual(errors, []);
  } finally {
    await proxy.close();
  }
});

test('publish token is asked once; 401, 400 and 413 are shown next to the form', async () => {
  const srv = await startServer(['--publish-token', 's3cret', '--max-body', '2000']);
  const { page: p, errors } = await page(`${srv.base}/`);
  await waitLive(p);
  await p.getByTestId('name').fill('Dana');
  await sendFromPage(p, 'hello with a token');
  await waitFor(() => p.getByLabel('Publish token').isVisible(), { what: 'the token field' });
  assert.match(await p.locator('#form-error').textContent(), /401/);
  await shot(p, 'state-token-asked');
  assert.deepEqual(await messageTexts(p), []);

  await p.getByLabel('Publish token').fill('s3cret');
  await p.getByRole('button', { name: 'Use token' }).click();
  await waitText(p, 'hello with a token');
  await sendFromPage(p, 'second, no question asked');
  await waitText(p, 'second, no question asked');
  assert.equal(await p.getByLabel('Publish token').isVisible(), false);

  // A 400 (a name the server refuses) is shown too; the browser's own length limit is lifted for it.
  await p.getByTestId('name').evaluate((e) => e.removeAttribute('maxlength'));
  await p.getByTestId('name').fill('n'.repeat(65));
  await sendFromPage(p, 'name too long');
  await waitFor(async () => /400/.test(await p.locator('#form-error').textContent()), { what: 'the 400 error' });
  assert.equal(await p.getByTestId('text').inputValue(), 'name too long', 'the text is kept');
  await p.getByTestId('name').fill('Dana');

  const big = 'y'.repeat(3000);
  await sendFromPage(p, big);
  await waitFor(async () => /413/.test(await p.locator('#form-error').textContent()), { what: 'the 413 error' });
  assert.equal(await p.getByTestId('text').inputValue(), big, 'the text is kept');
  await shot(p, 'state-error-413');
  assert.equal((await messageTexts(p)).length, 2);
  assert.deepEqual(errors, []);
});

test('events from /publish are shown as text, live and in the history', async () => {
  const srv = await startServer();
  const { page: p, errors } = await page(`${srv.base}/`);
  await waitLive(p);
  const r1 = await srv.request('POST', '/publish?room=lobby', 'temp=21\r\nhum=40 <b>%</b>', { 'Content-Type': 'text/plain' });
  assert.equal(r1.status, 201, r1.text);
  await waitText(p, 'temp=21\nhum=40 <b>%</b>');
  const r2 = await srv.request('POST', '/publish?room=lobby&event=reading', 'door=open', { 'Content-Type': 'text/plain' });
  assert.equal(r2.status, 201, r2.text);
  // A named event reaches the page through the room's history (here: a new visit).
  await p.reload();
  await waitLive(p);
  await waitText(p, 'door=open');
  assert.deepEqual(await messageIds(p), [String(r1.json.id), String(r2.json.id)]);
  const authors = await p.$$eval('[data-testid="message"] .author', (els) => els.map((e) => e.textContent));
  assert.deepEqual(authors, ['message', 'reading']);
  assert.equal(await p.$$eval('[data-testid="messages"] b', (els) => els.length), 0);
  assert.deepEqual(errors, []);
});

test('keyboard only, with labelled controls', async () => {
  const srv = await startServer();
  const { page: p, errors } = await page(`${srv.base}/`);
  await waitLive(p);
  // Every control has an accessible name; the regions have roles.
  assert.equal(await p.getByRole('textbox', { name: 'Your name' }).getAttribute('data-testid'), 'name');
  assert.equal(await p.getByRole('textbox', { name: 'Message' }).getAttribute('data-testid'), 'text');
  assert.equal(await p.getByRole('button', { name: 'Send' }).getAttribute('data-testid'), 'send');
  assert.equal(await p.getByRole('status').getAttribute('data-testid'), 'status');
  assert.equal(await p.getByRole('log', { name: 'Messages' }).getAttribute('data-testid'), 'messages');
  const unlabelled = await p.$$eval('input, textarea, button', (els) => els
    .filter((e) => !e.closest('[hidden]'))
    .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
    .map((e) => e.outerHTML));
  assert.deepEqual(unlabelled, []);

  // Tab to the skip link, jump to the message box, type the name with Shift+Tab.
  await p.keyboard.press('Tab');
  assert.equal(await p.evaluate(() => document.activeElement.className), 'skip');
  await p.keyboard.press('Enter');
  assert.equal(await p.evaluate(() => document.activeElement.dataset.testid), 'text');
  assert.equal(await p.evaluate(() => location.hash), '#lobby', 'the skip link does not change the room');
  await p.keyboard.press('Shift+Tab');
  assert.equal(await p.evaluate(() => document.activeElement.dataset.testid), 'name');
  await p.keyboard.type('Kay');
  await p.keyboard.press('Tab');
  await p.keyboard.type('typed without a mouse');
  await p.keyboard.press('Enter');
  await waitText(p, 'typed without a mouse');

  // Open a room from the keyboard: the "+" button, type a name, Enter.
  await p.getByRole('button', { name: 'Open a new room' }).focus();
  await p.keyboard.press('Enter');
  assert.equal(await p.evaluate(() => document.activeElement.id), 'new-room-name');
  await p.keyboard.type('keys');
  await p.keyboard.press('Enter');
  await waitFor(async () => (await p.locator('#room-name').textContent()) === 'keys', { what: 'room "keys"' });
  assert.equal(await p.evaluate(() => document.activeElement.dataset.testid), 'text', 'focus goes to the message box');
  // And back with the room list's button.
  await p.locator('[data-room="lobby"] button').focus();
  await p.keyboard.press('Enter');
  await waitFor(async () => (await p.locator('#room-name').textContent()) === 'lobby', { what: 'back in lobby' });
  assert.deepEqual(await messageTexts(p), ['typed without a mouse']);
  assert.deepEqual(errors, []);
});

test('screenshots: phone 360 px and desktop 1440 px, light and dark', async () => {
  const srv = await startServer();
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  const t0 = Date.now();
  await srv.post('lobby', 'Maya', 'Hi! My order #4821 has not arrived yet — it has been a week.');
  await srv.post('lobby', 'Sam (support)', 'Hello Maya, sorry about that. Let me check the tracking for you.');
  await srv.post('lobby', 'Sam (support)', 'It is at the local depot and goes out for delivery tomorrow morning.');
  await srv.post('lobby', 'Maya', 'Great, thanks!\nCan I change the delivery address?');
  await srv.post('lobby', 'Léon', 'A long one: https://example.invalid/' + 'a-very-long-path-segment-'.repeat(6));
  await srv.post('billing', 'Ahmed', 'Invoice for March is missing VAT number');
  await srv.post('returns', 'Kim', 'How do I return a gift?');
  const agent = await page(`${srv.base}/?agent#lobby`, { viewport: { width: 1440, height: 900 } });
  await waitLive(agent.page);
  await srv.post('billing', 'Ahmed', 'Could you resend it, please?');
  await waitFor(async () => (await agent.page.locator('[data-room="billing"] [data-testid="unread"]').textContent()) === '1', { what: 'unread in billing' });

  const shots = [];
  for (const [label, viewport] of [['phone', { width: 360, height: 740 }], ['desktop', { width: 1440, height: 900 }]]) {
    for (const colorScheme of ['light', 'dark']) {
      const { page: p, errors } = await page(`${srv.base}/#lobby`, { viewport, colorScheme });
      await p.evaluate(() => localStorage.setItem('ssehub.name', 'Maya'));
      await p.reload();
      await waitLive(p);
      await waitFor(async () => (await messageIds(p)).length === 5, { what: 'history' });
      await waitFor(async () => /\bonline\b/.test(await textOf(p, 'agent-status')), { what: 'agent online' });
      await p.getByTestId('text').fill('Yes please, to my office: 12 Harbour Street');
      const overflow = await p.evaluate(() => document.scrollingElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${label}/${colorScheme}: the page is ${overflow}px wider than the screen`);
      for (const id of ['status', 'rooms', 'messages', 'name', 'text', 'send', 'agent-status']) {
        const box = await p.getByTestId(id).boundingBox();
        assert.ok(box && box.width > 0 && box.x >= 0 && box.x + box.width <= viewport.width + 1 && box.y >= 0 && box.y + box.height <= viewport.height + 1,
          `${label}/${colorScheme}: ${id} is on screen (${JSON.stringify(box)})`);
      }
      const file = path.join(SCREENSHOTS, `customer-${label}-${colorScheme}.png`);
      await p.screenshot({ path: file });
      shots.push(file);
      assert.deepEqual(errors, []);

      const ap = agent.page;
      await waitFor(async () => /[1-9]\d* customers? here/.test(await textOf(ap, 'agent-status')), { what: 'the agent to count the customer' });
      await ap.setViewportSize(viewport);
      await ap.emulateMedia({ colorScheme });
      await waitFor(() => ap.locator('[data-testid="room"][data-room="returns"]').count(), { what: 'rooms in the agent view' });
      const afile = path.join(SCREENSHOTS, `agent-${label}-${colorScheme}.png`);
      await ap.screenshot({ path: afile });
      shots.push(afile);
    }
  }
  for (const f of shots) assert.ok(fs.statSync(f).size > 5000, `${f} was written`);
  assert.ok(Date.now() - t0 < 60000);
});
