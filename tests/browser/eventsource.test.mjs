// A real EventSource client (the `eventsource` npm package, a WHATWG-compliant
// implementation for Node) against the ssehub binary.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { EventSource } from 'eventsource';
import { Server, waitFor } from './support.mjs';

let server;
const sources = [];

before(async () => {
  server = await new Server(['--heartbeat', '1']).start(0);
});

after(async () => {
  for (const es of sources) es.close();
  await server?.stop();
});

/** Opens an EventSource and records every event of the given types. */
function listen(url, types, init) {
  const es = new EventSource(url, init);
  sources.push(es);
  const events = [];
  for (const type of types) {
    es.addEventListener(type, (e) => events.push({ type, data: e.data, lastEventId: e.lastEventId }));
  }
  return { es, events, of: (type) => events.filter((e) => e.type === type) };
}

const messagesOf = (l) => l.of('message').map((e) => ({ ...JSON.parse(e.data), lastEventId: e.lastEventId }));

test('hello arrives first and describes the stream', async () => {
  const l = listen(`${server.base}/events?room=es-hello`, ['hello', 'message', 'heartbeat']);
  await waitFor(() => l.events.length > 0, { what: 'the first event' });
  assert.equal(l.events[0].type, 'hello', 'the first event is hello');
  const hello = JSON.parse(l.events[0].data);
  assert.deepEqual(hello.rooms, ['es-hello']);
  assert.equal(hello.role, 'customer');
  assert.equal(hello.heartbeat_ms, 1000);
  assert.ok(Number.isSafeInteger(hello.last_id) && hello.last_id >= 0, `last_id is an integer: ${hello.last_id}`);
  assert.equal(l.events[0].lastEventId, '', 'hello carries no id');
  await waitFor(() => l.of('heartbeat').length > 0, { timeout: 4000, what: 'a heartbeat' });
  const beat = l.of('heartbeat')[0];
  assert.ok(Number.isSafeInteger(JSON.parse(beat.data).time), 'heartbeat data has a time');
  l.es.close();
});

test('a posted message arrives with its data and lastEventId', async () => {
  const l = listen(`${server.base}/events?room=es-msg`, ['hello', 'message']);
  await waitFor(() => l.of('hello').length, { what: 'hello' });
  const sent = await server.post('es-msg', 'Zoë', 'multi\nline "quoted" <b>text</b> ✓');
  await waitFor(() => l.of('message').length, { what: 'the message' });
  const [m] = messagesOf(l);
  assert.equal(m.id, sent.id);
  assert.equal(m.lastEventId, String(sent.id), 'event id = message id');
  assert.equal(m.room, 'es-msg');
  assert.equal(m.user, 'Zoë');
  assert.equal(m.text, 'multi\nline "quoted" <b>text</b> ✓');
  assert.equal(m.time, sent.time);
  l.es.close();
});

test('Last-Event-ID (header and query) replays exactly the missed events of the subscribed rooms', async () => {
  const room = 'es-resume';
  const first = await server.post(room, 'a', 'before the drop');
  const missed = [];
  for (let i = 1; i <= 3; i++) missed.push(await server.post(room, 'a', `missed ${i}`));
  await server.post('es-elsewhere', 'a', 'another room: never replayed here');

  // Header form, as a browser sends it when it reconnects.
  const withHeader = listen(`${server.base}/events?room=${room}`, ['hello', 'message', 'heartbeat'], {
    fetch: (url, init) => fetch(url, { ...init, headers: { ...init.headers, 'Last-Event-ID': String(first.id) } }),
  });
  // Query form, for a first connection that cannot set headers.
  const withQuery = listen(`${server.base}/events?room=${room}&lastEventId=${first.id}`, ['hello', 'message', 'heartbeat']);

  for (const l of [withHeader, withQuery]) {
    // A heartbeat comes after the replay: by then everything replayed is in.
    await waitFor(() => l.of('heartbeat').length, { timeout: 4000, what: 'a heartbeat after the replay' });
    const got = messagesOf(l);
    assert.deepEqual(got.map((m) => m.id), missed.map((m) => m.id), 'exactly the missed ids, in order');
    assert.deepEqual(got.map((m) => m.text), ['missed 1', 'missed 2', 'missed 3']);
    assert.deepEqual(got.map((m) => m.lastEventId), missed.map((m) => String(m.id)));
  }
  // And live after the replay, without a gap.
  const live = await server.post(room, 'a', 'live');
  for (const l of [withHeader, withQuery]) {
    await waitFor(() => messagesOf(l).some((m) => m.id === live.id), { what: 'the live message' });
    assert.equal(messagesOf(l).length, 4);
    l.es.close();
  }
});

test('after a dropped connection the client reconnects by itself and Last-Event-ID fills the hole', async () => {
  const room = 'es-drop';
  // A TCP proxy we can cut, standing in for a flaky network.
  const sockets = new Set();
  const heads = [];
  const proxy = net.createServer((client) => {
    const upstream = net.connect(server.port, '127.0.0.1');
    sockets.add(client); sockets.add(upstream);
    let head = '';
    client.on('data', (c) => { if (!head.includes('\r\n\r\n')) { head += c.toString('latin1'); if (head.includes('\r\n\r\n')) heads.push(head); } });
    client.pipe(upstream).pipe(client);
    const done = () => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream); };
    client.on('error', done); upstream.on('error', done); client.on('close', done); upstream.on('close', done);
  });
  await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
  try {
    const l = listen(`http://127.0.0.1:${proxy.address().port}/events?room=${room}`, ['hello', 'message']);
    await waitFor(() => l.of('hello').length, { what: 'hello through the proxy' });
    const before = await server.post(room, 'a', 'seen');
    await waitFor(() => messagesOf(l).length === 1, { what: 'the first message' });

    for (const s of sockets) s.destroy(); // the drop
    const during = [await server.post(room, 'a', 'sent while down 1'), await server.post(room, 'a', 'sent while down 2')];

    await waitFor(() => l.of('hello').length === 2, { timeout: 8000, what: 'the reconnect (second hello)' });
    await waitFor(() => messagesOf(l).length >= 3, { what: 'the missed messages' });
    assert.match(heads[1], new RegExp(`\\r\\nlast-event-id: ${before.id}\\r\\n`, 'i'), 'the reconnect sent Last-Event-ID');
    assert.deepEqual(messagesOf(l).map((m) => m.id), [before.id, ...during.map((m) => m.id)], 'nothing lost, nothing twice');
    l.es.close();
  } finally {
    for (const s of sockets) s.destroy();
    proxy.close();
  }
});
