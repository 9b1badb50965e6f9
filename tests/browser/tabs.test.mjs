// Many tabs of the page in one browser (one Playwright context: one profile,
// one connection pool limited to 6 connections per host over HTTP/1.1).
// The tabs share one stream: one tab holds it and relays to the others.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  browserSuite, newContext, waitText, openTab, waitFor, waitLive, messageIds, messageTexts,
  sendFromPage, assertNoDuplicates, SCREENSHOTS,
} from './support.mjs';

const suite = browserSuite();
const { startServer } = suite;

const streams = (page) => page.evaluate(() => window.__streams);
const roomOf = (page) => page.locator('#room-name').textContent();

/**
 * Opens `rooms.length` tabs one after another in one context, tab i in room
 * rooms[i]. Without sharing, the 7th tab's page would never load (six
 * EventSources hold every connection), so a short load time-out fails fast.
 */
async function openTabs(context, base, rooms) {
  const tabs = [];
  for (const room of rooms) {
    const tab = await openTab(context, `${base}/#${room}`, { timeout: 15000 });
    tabs.push({ ...tab, room });
  }
  for (const t of tabs) {
    await waitLive(t.page, 15000);
    assert.equal(await roomOf(t.page), t.room, 'each tab shows its own room');
  }
  return tabs;
}

/** The tabs holding an open EventSource. */
async function holders(tabs) {
  const out = [];
  for (const t of tabs) if ((await streams(t.page)).open > 0) out.push(t);
  return out;
}

test('8 tabs in one browser go live over one stream; a message from one tab reaches the tabs of its room', async () => {
  const srv = await startServer();
  const context = await newContext(suite.browser);
  try {
    const rooms = ['lobby', 'lobby', 'lobby', 'help', 'lobby', 'lobby', 'help', 'lobby'];
    const tabs = await openTabs(context, srv.base, rooms);

    const held = await holders(tabs);
    assert.equal(held.length, 1, 'exactly one tab holds an EventSource');
    assert.equal((await streams(held[0].page)).open, 1);
    // That one stream carries the rooms of every tab.
    await waitFor(async () => {
      const url = (await streams(held[0].page)).urls.at(-1);
      return /[?&]room=lobby(&|$)/.test(url) && /[?&]room=help(&|$)/.test(url);
    }, { what: 'the shared stream to carry lobby and help' });

    // A tab that does not hold the stream sends; every lobby tab shows it, no help tab does.
    const sender = tabs.find((t) => t !== held[0] && t.room === 'lobby');
    await sender.page.getByTestId('name').fill('Tess');
    await sendFromPage(sender.page, 'hello from one tab');
    const helpSender = tabs.find((t) => t !== held[0] && t.room === 'help');
    await helpSender.page.getByTestId('name').fill('Hal');
    await sendFromPage(helpSender.page, 'a help question');
    for (const t of tabs) {
      if (t.room === 'lobby') {
        await waitText(t.page, 'hello from one tab');
        assert.deepEqual(await messageTexts(t.page), ['hello from one tab'], `lobby tab ${tabs.indexOf(t)}`);
      } else {
        await waitText(t.page, 'a help question');
        assert.deepEqual(await messageTexts(t.page), ['a help question'], `help tab ${tabs.indexOf(t)}`);
      }
      assertNoDuplicates(await messageIds(t.page));
    }

    // A message posted elsewhere (another browser) arrives live in every tab of its room.
    const other = await srv.post('lobby', 'Bob', 'from outside');
    for (const t of tabs.filter((x) => x.room === 'lobby')) {
      await waitText(t.page, 'from outside');
      assert.ok((await messageIds(t.page)).includes(String(other.id)));
    }
    // A tab opens a room with a past: it shows its history, then its live messages,
    // through the stream of another tab.
    for (let i = 1; i <= 3; i++) await srv.post('billing', 'Ann', `billing ${i}`);
    const mover = tabs.find((t) => t !== held[0] && t !== sender && t.room === 'lobby');
    await mover.page.evaluate(() => { location.hash = '#billing'; });
    await waitFor(async () => (await roomOf(mover.page)) === 'billing', { what: 'the tab to switch to billing' });
    await waitText(mover.page, 'billing 3');
    await waitFor(async () => /[?&]room=billing(&|$)/.test((await streams(held[0].page)).urls.at(-1)),
      { what: 'the shared stream to carry billing' });
    await waitLive(mover.page);
    await srv.post('billing', 'Ann', 'billing live');
    await waitText(mover.page, 'billing live');
    assert.deepEqual(await messageTexts(mover.page), ['billing 1', 'billing 2', 'billing 3', 'billing live']);
    assertNoDuplicates(await messageIds(mover.page));
    assert.equal((await streams(mover.page)).opened, 0, 'the tab never opened a stream of its own');
    assert.ok(!(await messageTexts(sender.page)).some((t) => t.startsWith('billing')), 'other tabs keep their own room');

    fs.mkdirSync(SCREENSHOTS, { recursive: true });
    await sender.page.screenshot({ path: path.join(SCREENSHOTS, 'tabs-follower.png') });
    // Still one stream in the whole browser.
    let open = 0;
    for (const t of tabs) open += (await streams(t.page)).open;
    assert.equal(open, 1, 'one EventSource across all tabs');
    for (const t of tabs) assert.deepEqual(t.errors, [], `tab ${tabs.indexOf(t)} ran cleanly`);
  } finally {
    await context.close();
  }
});

/**
 * Closes the tab holding the stream; checks that another takes over within
 * a few seconds, resuming with lastEventId, and that the messages posted
 * meanwhile show once in every remaining tab of their room.
 */
async function handover(srv, tabs) {
  // (An election over the channel may take a moment to settle on one.)
  const [leader] = await waitFor(async () => {
    const h = await holders(tabs);
    return h.length === 1 ? h : null;
  }, { timeout: 5000, what: 'exactly one tab holding the stream' });
  const before1 = await srv.post('lobby', 'Bob', 'before');
  const before2 = await srv.post('help', 'Bob', 'help before');
  for (const t of tabs) await waitText(t.page, t.room === 'lobby' ? 'before' : 'help before');

  const rest = tabs.filter((t) => t !== leader);
  await leader.page.close();
  // Posted while the stream's tab is gone and before another took over.
  const during = await srv.post('lobby', 'Bob', 'during the handover');
  const duringHelp = await srv.post('help', 'Bob', 'help during the handover');

  const t0 = Date.now();
  const [next] = await waitFor(async () => {
    const h = await holders(rest);
    return h.length ? h : null;
  }, { timeout: 5000, what: 'another tab to take the stream over' });
  const took = Date.now() - t0;
  const url = (await streams(next.page)).urls.at(-1);
  const resumeFrom = Number((/[?&]lastEventId=(\d+)/.exec(url) || [])[1]);
  assert.ok(resumeFrom >= Math.max(before1.id, before2.id), `the new stream resumes after what was shown (${url})`);
  assert.match(url, /[?&]room=lobby(&|$)/);
  assert.match(url, /[?&]room=help(&|$)/);

  const afterLobby = await srv.post('lobby', 'Bob', 'after');
  for (const t of rest) {
    await waitLive(t.page, 10000);
    if (t.room === 'lobby') {
      await waitText(t.page, 'after');
      assert.deepEqual(await messageTexts(t.page), ['before', 'during the handover', 'after'], `lobby tab ${tabs.indexOf(t)}`);
      const ids = await messageIds(t.page);
      assert.deepEqual(ids, [before1.id, during.id, afterLobby.id].map(String));
    } else {
      await waitText(t.page, 'help during the handover');
      assert.deepEqual(await messageTexts(t.page), ['help before', 'help during the handover'], `help tab ${tabs.indexOf(t)}`);
      assert.ok((await messageIds(t.page)).includes(String(duringHelp.id)));
    }
    assertNoDuplicates(await messageIds(t.page));
  }

  // Sending still works from a tab that does not hold the stream.
  const sender = rest.find((t) => t !== next && t.room === 'lobby');
  await sender.page.getByTestId('name').fill('Uma');
  await sendFromPage(sender.page, 'sent after the handover');
  for (const t of rest.filter((x) => x.room === 'lobby')) await waitText(t.page, 'sent after the handover');

  assert.equal((await holders(rest)).length, 1, 'still one stream');
  assert.equal((await streams(next.page)).open, 1);
  assert.ok(took < 5000, `taken over within a few seconds (${took} ms)`);
  for (const t of rest) assert.deepEqual(t.errors, [], `tab ${tabs.indexOf(t)} ran cleanly`);
}

test('closing the tab that holds the stream: another takes over and resumes with lastEventId, nothing lost or shown twice', async () => {
  const srv = await startServer();
  const context = await newContext(suite.browser);
  try {
    const tabs = await openTabs(context, srv.base, ['lobby', 'lobby', 'help', 'lobby', 'lobby', 'help', 'lobby', 'lobby']);
    await handover(srv, tabs);
  } finally {
    await context.close();
  }
});

test('without Web Locks (plain http:// on a LAN) the tabs elect the holder over BroadcastChannel', async () => {
  const srv = await startServer();
  const context = await newContext(suite.browser);
  try {
    // Web Locks exist only in secure contexts: take them away, as on http://192.168.x.y.
    await context.addInitScript(() => { Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined }); });
    const tabs = await openTabs(context, srv.base, ['lobby', 'help', 'lobby', 'lobby', 'help', 'lobby', 'lobby', 'lobby']);
    assert.equal(await tabs[0].page.evaluate(() => navigator.locks), undefined);
    await handover(srv, tabs);
  } finally {
    await context.close();
  }
});

test('agent tabs share a role=agent stream of their own beside the customer tabs of the same browser', async () => {
  const srv = await startServer();
  const context = await newContext(suite.browser);
  try {
    const customers = await openTabs(context, srv.base, ['lobby', 'lobby', 'lobby']);
    const agents = [];
    for (let i = 0; i < 4; i++) agents.push(await openTab(context, `${srv.base}/?agent#lobby`, { timeout: 15000 }));
    for (const a of agents) await waitLive(a.page, 15000);

    const agentHolders = await holders(agents);
    assert.equal(agentHolders.length, 1, 'one stream for the agent tabs');
    assert.match((await streams(agentHolders[0].page)).urls.at(-1), /[?&]role=agent(&|$)/);
    const customerHolders = await holders(customers);
    assert.equal(customerHolders.length, 1, 'one stream for the customer tabs');
    assert.doesNotMatch((await streams(customerHolders[0].page)).urls.at(-1), /role=agent/);

    // The customers see the agent online (the shared agent stream counts as one agent).
    for (const c of customers) {
      await waitFor(async () => /\bonline\b/.test(await c.page.getByTestId('agent-status').textContent()),
        { timeout: 8000, what: 'agent online in a customer tab' });
    }
    // A new room with a message shows up with its unread count in every agent tab.
    await srv.post('refunds', 'Carol', 'where is my refund?');
    for (const a of agents) {
      const room = a.page.locator('[data-testid="room"][data-room="refunds"]');
      await waitFor(async () => (await room.count()) && (await room.getByTestId('unread').textContent()) === '1',
        { timeout: 10000, what: 'refunds with 1 unread in an agent tab' });
    }
    // An agent answers from a tab that does not hold the agents' stream; the other agent tabs show it.
    const answering = agents.find((a) => a !== agentHolders[0]);
    await answering.page.locator('[data-testid="room"][data-room="refunds"] button').click();
    await waitText(answering.page, 'where is my refund?');
    await sendFromPage(answering.page, 'It went out today.');
    const watching = agents.find((a) => a !== answering);
    await watching.page.locator('[data-testid="room"][data-room="refunds"] button').click();
    await waitText(watching.page, 'It went out today.');
    assert.deepEqual(await messageTexts(watching.page), ['where is my refund?', 'It went out today.']);
    for (const t of [...customers, ...agents]) assert.deepEqual(t.errors, []);
  } finally {
    await context.close();
  }
});

test('server restarted: every tab of the shared stream goes back to live and loses nothing', async () => {
  const srv = await startServer();
  const context = await newContext(suite.browser);
  try {
    const tabs = await openTabs(context, srv.base, ['lobby', 'lobby', 'lobby', 'lobby', 'lobby', 'lobby', 'lobby']);
    await srv.post('lobby', 'Bob', 'before the restart');
    for (const t of tabs) await waitText(t.page, 'before the restart');

    const port = srv.port;
    await srv.kill('SIGKILL');
    for (const t of tabs) {
      await waitFor(async () => /reconnecting/.test(await t.page.getByTestId('status').textContent()),
        { timeout: 8000, what: `tab ${tabs.indexOf(t)} to show "reconnecting"` });
    }
    const again = await startServer([], port);
    await again.post('lobby', 'Bob', 'while the page reconnects');
    for (const t of tabs) {
      await waitLive(t.page, 15000);
      await waitText(t.page, 'while the page reconnects');
    }
    await again.post('lobby', 'Bob', 'after the restart');
    for (const t of tabs) {
      await waitText(t.page, 'after the restart');
      assert.deepEqual(await messageTexts(t.page), ['before the restart', 'while the page reconnects', 'after the restart']);
      assertNoDuplicates(await messageIds(t.page));
      assert.deepEqual(t.errors, []);
    }
    assert.equal((await holders(tabs)).length, 1, 'still one stream');
  } finally {
    await context.close();
  }
});

test('without BroadcastChannel each tab keeps a stream of its own', async () => {
  const srv = await startServer();
  const context = await newContext(suite.browser);
  try {
    await context.addInitScript(() => { delete window.BroadcastChannel; });
    const tabs = await openTabs(context, srv.base, ['lobby', 'lobby']);
    for (const t of tabs) assert.equal((await streams(t.page)).open, 1, 'a stream per tab');
    await srv.post('lobby', 'Bob', 'to both');
    for (const t of tabs) {
      await waitText(t.page, 'to both');
      assert.deepEqual(await messageTexts(t.page), ['to both']);
      assert.deepEqual(t.errors, []);
    }
  } finally {
    await context.close();
  }
});
