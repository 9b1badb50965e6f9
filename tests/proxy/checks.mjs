// The checks of tests/proxy/run.sh, through each proxy over HTTP/2 with TLS.
// run.sh starts ssehub, the echo server and the proxies, then runs
//
//   PROXIES='[{"name":"nginx","url":"https://127.0.0.1:P","echo":"https://127.0.0.1:Q"}, …]' \
//   CHROMIUM=/usr/bin/chromium node checks.mjs
//
// where `url` proxies to ssehub and `echo` is the same shipped config proxying
// to echo.py. Prints one line per check: "PASS name: what (detail)" or
// "FAIL name: what (why)"; run.sh counts them. Every wait has a deadline.
// Exits 1 if any check failed.
import http2 from 'node:http2';
import { performance } from 'node:perf_hooks';

const PROXIES = JSON.parse(process.env.PROXIES || '[]');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const LATENCY_MS = 100;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
const fmt = (ms) => `${ms.toFixed(1)} ms`;

function deadline(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

/** Polls `fn` every 5 ms until it returns something truthy, or throws after `ms`. */
async function until(fn, ms, what) {
  const end = now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

let failed = 0;
/**
 * Runs one check and prints its line. A check that failed only on timing (a
 * TimingError) is run once more: on a machine whose cores are shared, a stall
 * of a few hundred ms happens, while a proxy that buffers fails every time.
 * The first attempt's numbers are then part of the line.
 */
async function run(name, what, fn) {
  let first;
  for (let attempt = 1; ; attempt++) {
    try {
      const detail = await fn();
      const retried = first ? `; first attempt: ${first.message}` : '';
      console.log(`PASS ${name}: ${what}${detail || retried ? ` (${detail || ''}${retried})` : ''}`);
      return;
    } catch (e) {
      if (attempt === 1 && e instanceof TimingError) {
        first = e;
        continue;
      }
      failed++;
      const retried = first ? `; first attempt: ${first.message}` : '';
      console.log(`FAIL ${name}: ${what} (${e && e.message ? e.message : e}${retried})`);
      return;
    }
  }
}

class TimingError extends Error {}

/** An HTTP/2 session over TLS (self-signed certificate accepted); fails unless ALPN chose h2. */
async function connect(url) {
  const session = http2.connect(url, { rejectUnauthorized: false });
  session.on('error', () => {});
  await deadline(new Promise((resolve, reject) => {
    session.once('connect', resolve);
    session.once('error', reject);
  }), 3000, `HTTP/2 connection to ${url}`);
  check(session.alpnProtocol === 'h2', `ALPN chose ${session.alpnProtocol}, not h2`);
  return session;
}

/** One request with its whole body: {status, headers, body}. */
async function request(session, method, path, { headers = {}, body } = {}) {
  const req = session.request({ ':method': method, ':path': path, ...headers });
  req.setEncoding('utf8');
  let text = '';
  req.on('data', (c) => { text += c; });
  const result = deadline(new Promise((resolve, reject) => {
    let head;
    req.once('response', (h) => { head = h; });
    req.once('end', () => resolve({ status: head && head[':status'], headers: head || {}, body: text }));
    req.once('error', reject);
  }), 3000, `${method} ${path}`);
  req.end(body);
  return result;
}

async function publish(session, room, event, body) {
  const res = await request(session, 'POST', `/publish?room=${room}&event=${event}`, {
    headers: { 'content-type': 'text/plain' }, body,
  });
  check(res.status === 201, `POST /publish: ${res.status} ${res.body}`);
  return JSON.parse(res.body).id;
}

/**
 * An event stream read as it arrives. `events` holds every parsed event as
 * {t, id, event, data} with t its arrival time (performance.now()).
 */
function openStream(session, path, headers = {}) {
  const s = { events: [], head: null, t0: now(), ended: false };
  const req = session.request({ ':method': 'GET', ':path': path, ...headers });
  s.req = req;
  req.setEncoding('utf8');
  let buf = '';
  let cur = { data: [] };
  req.on('response', (h) => { s.head = h; });
  req.on('data', (chunk) => {
    const t = now();
    buf += chunk;
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (cur.data.length || cur.event || cur.id !== undefined) {
          s.events.push({ t, id: cur.id, event: cur.event || 'message', data: cur.data.join('\n') });
        }
        cur = { data: [] };
        continue;
      }
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') cur.data.push(value);
      else if (field === 'event') cur.event = value;
      else if (field === 'id') cur.id = value;
    }
  });
  req.on('end', () => { s.ended = true; });
  req.on('error', () => { s.ended = true; });
  s.close = () => req.close(http2.constants.NGHTTP2_CANCEL);
  return s;
}

/** Judges delivery times: every one within LATENCY_MS, or a TimingError. */
function latencies(ms) {
  const sorted = [...ms].sort((a, b) => a - b);
  const late = ms.filter((t) => t >= LATENCY_MS);
  if (late.length) throw new TimingError(`${late.length} of ${ms.length} over ${LATENCY_MS} ms: ${ms.map(fmt).join(', ')}`);
  const median = sorted[Math.floor(sorted.length / 2)];
  return `${ms.length} events, median ${fmt(median)}, max ${fmt(sorted[sorted.length - 1])}`;
}

const uniq = () => Math.random().toString(36).slice(2, 10);

async function checkProxy(p) {
  const session = await connect(p.url).catch((e) => e);
  if (session instanceof Error) {
    await run(p.name, 'HTTP/2 over TLS', () => { throw session; });
    return;
  }
  const room = `proxy-${p.name}-${uniq()}`;
  let stream;

  await run(p.name, 'stream over HTTP/2: 200 text/event-stream, not compressed, hello at once', async () => {
    stream = openStream(session, `/events?room=${room}`, { 'accept-encoding': 'gzip, deflate, br' });
    const h = await until(() => stream.head, 1000, 'the response headers');
    check(h[':status'] === 200, `status ${h[':status']}`);
    check(String(h['content-type']).startsWith('text/event-stream'), `content-type ${h['content-type']}`);
    check(!h['content-encoding'], `content-encoding ${h['content-encoding']}`);
    const hello = await until(() => stream.events.find((e) => e.event === 'hello'), 1000, 'the hello event');
    return `h2, hello after ${fmt(hello.t - stream.t0)}`;
  });
  if (!stream || !stream.head) return;

  await run(p.name, `publish → event through the proxy within ${LATENCY_MS} ms`, async () => {
    const lat = [];
    for (let n = 0; n < 10; n++) {
      const body = `probe ${n} ${uniq()}`;
      const t0 = now();
      const id = await publish(session, room, 'probe', body);
      const ev = await until(() => stream.events.find((e) => e.data === body), 2000, `event "${body}"`);
      check(ev.event === 'probe' && ev.id === String(id), `got event ${ev.event} id ${ev.id}, published id ${id}`);
      lat.push(ev.t - t0);
    }
    return latencies(lat);
  });

  await run(p.name, 'heartbeats about every second (3 within 3.5 s of opening)', async () => {
    const beats = await until(() => {
      const b = stream.events.filter((e) => e.event === 'heartbeat');
      return b.length >= 3 && b;
    }, Math.max(0, stream.t0 + 3500 - now()), '3 heartbeats');
    const gaps = beats.slice(1, 3).map((b, i) => (b.t - beats[i].t) / 1000);
    check(gaps.every((g) => g > 0.5 && g < 1.5), `gaps ${gaps.map((g) => g.toFixed(2)).join(', ')} s: delivered in bursts`);
    return `3 after ${((beats[2].t - stream.t0) / 1000).toFixed(2)} s, gaps ${gaps.map((g) => g.toFixed(2)).join(', ')} s`;
  });
  stream.close();

  await run(p.name, 'resume: Last-Event-ID: N gives exactly the events after N', async () => {
    const r = `resume-${p.name}-${uniq()}`;
    const ids = [];
    for (const body of ['one', 'two', 'three']) ids.push(String(await publish(session, r, 'step', body)));
    const s = openStream(session, `/events?room=${r}`, { 'last-event-id': ids[0] });
    try {
      // The replay comes before anything live, so the first heartbeat marks its end.
      await until(() => s.events.some((e) => e.event === 'heartbeat'), 2500, 'a heartbeat after the replay');
      // Every event with an id and data (an id-only block, which moves only
      // the client's last id, is no event).
      const got = s.events.filter((e) => e.id !== undefined && e.data !== '');
      const want = [{ id: ids[1], data: 'two' }, { id: ids[2], data: 'three' }];
      const have = got.map((e) => ({ id: e.id, data: e.data }));
      check(JSON.stringify(have) === JSON.stringify(want),
        `after ${ids[0]} expected ${JSON.stringify(want)}, got ${JSON.stringify(have)}`);
      return `after ${ids[0]}: ${have.map((e) => e.id).join(', ')}`;
    } finally {
      s.close();
    }
  });
  session.close();

  const echo = await connect(p.echo).catch((e) => e);
  if (echo instanceof Error) {
    await run(p.name, 'HTTP/2 over TLS to the echo upstream', () => { throw echo; });
    return;
  }

  await run(p.name, 'unbuffered even without X-Accel-Buffering, never gzipped (echo upstream)', async () => {
    const s = openStream(echo, '/events?sse=1', { 'accept-encoding': 'gzip, deflate, br' });
    try {
      const h = await until(() => s.head, 1000, 'the response headers');
      check(!h['content-encoding'], `content-encoding ${h['content-encoding']}`);
      await until(() => s.ended || s.events.length >= 5, 3000, '5 events from echo.py');
      check(s.events.length === 5, `${s.events.length} events`);
      // Each event carries the wall-clock time echo.py wrote it.
      const delays = s.events.map((e) => performance.timeOrigin + e.t - Number(e.data.split(' ')[1]) * 1000);
      return `5 events 200 ms apart: ${latencies(delays)}`;
    } finally {
      s.close();
    }
  });

  await run(p.name, 'X-Forwarded-Proto https, X-Forwarded-For the client, Last-Event-ID passed (echo upstream)', async () => {
    const res = await request(echo, 'GET', '/events?room=lobby', {
      headers: { 'last-event-id': '42', 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'http' },
    });
    check(res.status === 200, `status ${res.status}`);
    const h = JSON.parse(res.body).headers;
    check(h['x-forwarded-proto'] === 'https', `X-Forwarded-Proto: ${h['x-forwarded-proto']}`);
    check(h['x-forwarded-for'] === '127.0.0.1', `X-Forwarded-For: ${h['x-forwarded-for']} (client forged 203.0.113.9)`);
    check(h['last-event-id'] === '42', `Last-Event-ID: ${h['last-event-id']}`);
    return `proto ${h['x-forwarded-proto']}, for ${h['x-forwarded-for']}, last-event-id ${h['last-event-id']}`;
  });

  await run(p.name, 'HTTP/1.1 with keep-alive to the upstream (echo upstream)', async () => {
    const a = JSON.parse((await request(echo, 'GET', '/messages?room=lobby')).body);
    const b = JSON.parse((await request(echo, 'GET', '/healthz')).body);
    check(a.version === 'HTTP/1.1', `upstream request was ${a.version}`);
    check(!/close/i.test(a.headers.connection || ''), `Connection: ${a.headers.connection}`);
    check(a.port === b.port, `two requests came on two upstream connections (ports ${a.port}, ${b.port})`);
    return `${a.version}, both requests on upstream port ${a.port}`;
  });
  echo.close();
}

async function checkBrowser(browser, p) {
  await run(p.name, 'the page in Chromium over HTTP/2 goes live and shows a message posted meanwhile', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    try {
      const page = await context.newPage();
      const t0 = now();
      await page.goto(`${p.url}/`, { timeout: 10000 });
      const status = page.getByTestId('status');
      await status.filter({ hasText: 'live' }).waitFor({ timeout: 10000 });
      const live = now() - t0;
      const proto = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
      check(proto === 'h2', `page loaded over ${proto}`);
      const text = `through ${p.name} ${uniq()}`;
      const session = await connect(p.url);
      const t1 = now();
      try {
        const res = await request(session, 'POST', '/messages', {
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ room: 'lobby', user: 'proxy-test', text }),
        });
        check(res.status === 201, `POST /messages: ${res.status} ${res.body}`);
      } finally {
        session.close();
      }
      await page.getByTestId('message').filter({ hasText: text }).first().waitFor({ timeout: 5000 });
      return `${proto}, live after ${fmt(live)}, message shown ${fmt(now() - t1)} after posting`;
    } finally {
      await context.close();
    }
  });
}

for (const p of PROXIES) {
  await checkProxy(p).catch((e) => run(p.name, 'checks', () => { throw e; }));
}

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  for (const p of PROXIES) await run(p.name, 'the page in Chromium', () => { throw new Error(`playwright-core: ${e.message}`); });
}
if (chromium) {
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 20000,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--ignore-certificate-errors'],
    });
    for (const p of PROXIES) await checkBrowser(browser, p);
  } catch (e) {
    await run('chromium', 'launch', () => { throw e; });
  } finally {
    if (browser) await browser.close().catch(() => {});
  }
}
// run.sh counts the lines and prints the totals.
process.exit(failed ? 1 : 0);
