// Helpers for the browser tests: start the ssehub binary on port 0, launch
// Debian's Chromium through playwright-core, and wait for things with deadlines.
import { execFileSync, spawn } from 'node:child_process';
import { before, after } from 'node:test';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
export const SCREENSHOTS = path.join(REPO, 'target', 'screenshots');

/** The server binary: $SSEHUB_BIN (relative to the current directory) or target/release/ssehub. */
export const BIN = process.env.SSEHUB_BIN
  ? path.resolve(process.env.SSEHUB_BIN)
  : path.join(REPO, 'target', 'release', 'ssehub');

/** $SSEHUB_WWW serves that folder with --www (page development without a rebuild); unset: the embedded page. */
const WWW = process.env.SSEHUB_WWW ? path.resolve(process.env.SSEHUB_WWW) : null;

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** A secret for private-mode servers (`--auth-secret`, at least 32 characters). */
export const AUTH_SECRET = 'browser tests: a secret of more than 32 characters';

/** Arguments that start a server in private mode, with `more` after them. */
export const privateArgs = (...more) => ['--auth-secret', AUTH_SECRET, ...more];

/** A token minted by the binary itself: `ssehub token ARGS --auth-secret AUTH_SECRET`. */
export function mintToken(...args) {
  return execFileSync(BIN, ['token', ...args, '--auth-secret', AUTH_SECRET], { encoding: 'utf8', timeout: 10000 }).trim();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `fn` until it returns a truthy value (which is returned) or the deadline
 * passes (then throws with `what` and the last value or error).
 */
export async function waitFor(fn, { timeout = 10000, interval = 50, what = 'condition' } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    }
    await sleep(interval);
  }
}

/**
 * A running ssehub. `start(args, port)` spawns the binary with `--bind
 * 127.0.0.1:PORT` (0 = any) and resolves once its "listening on" line names the port.
 */
export class Server {
  constructor(args = []) {
    this.args = args;
    this.proc = null;
    this.port = 0;
    this.log = '';
  }

  get base() { return `http://127.0.0.1:${this.port}`; }

  async start(port = this.port) {
    if (!fs.existsSync(BIN)) throw new Error(`ssehub binary not found at ${BIN} (build it, or set SSEHUB_BIN)`);
    const args = ['--bind', `127.0.0.1:${port}`, ...(WWW ? ['--www', WWW] : []), ...this.args];
    const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    this.exited = exited;
    const onData = (chunk) => { this.log += chunk.toString(); };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    const deadline = Date.now() + 10000;
    for (;;) {
      const m = /listening on http:\/\/([^\s/]+):(\d+)\//.exec(this.log);
      if (m) {
        this.port = Number(m[2]);
        return this;
      }
      const done = await Promise.race([exited, sleep(20).then(() => null)]);
      if (done) throw new Error(`ssehub exited (${JSON.stringify(done)}) before listening:\n${this.log}`);
      if (Date.now() > deadline) throw new Error(`ssehub did not log "listening on http://HOST:PORT/" within 10 s:\n${this.log}`);
    }
  }

  /** Sends a signal (SIGSTOP / SIGCONT / SIGKILL …). */
  signal(sig) { this.proc.kill(sig); }

  /** Kills the process (SIGKILL by default) and waits until it is gone. */
  async kill(sig = 'SIGKILL') {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGCONT');
    this.proc.kill(sig);
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(t);
  }

  async stop() { await this.kill('SIGTERM'); }

  /** fetch() against the server; JSON bodies are sent and parsed. */
  async request(method, urlPath, body, headers = {}) {
    const init = { method, headers: { ...headers } };
    if (body !== undefined) {
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
      if (typeof body !== 'string') init.headers['Content-Type'] = 'application/json';
    }
    const res = await fetch(this.base + urlPath, init);
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    return { status: res.status, headers: res.headers, text, json };
  }

  /** POST /messages; throws unless 201. */
  async post(room, user, text, headers = {}) {
    const r = await this.request('POST', '/messages', { room, user, text }, headers);
    if (r.status !== 201) throw new Error(`POST /messages → ${r.status} ${r.text}`);
    return r.json;
  }

  /**
   * Opens a raw stream (a plain http request to /events) and keeps it open;
   * resolves once the response head arrived. `close()` ends it.
   */
  holdStream(query = 'room=holder') {
    return new Promise((resolve, reject) => {
      let data = '';
      const req = http.get(`${this.base}/events?${query}`, (res) => {
        res.setEncoding('utf8');
        res.on('data', (c) => { data += c; });
        res.on('error', () => {});
        resolve({ status: res.statusCode, text: () => data, close: () => req.destroy() });
      });
      req.on('error', reject);
    });
  }
}

/**
 * A TCP proxy in front of a server that a test can cut: `cut()` drops every
 * connection, `blocked = true` refuses new ones (accepted, then closed at once),
 * like a network that went away. `heads` keeps each request head seen.
 */
export class Proxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.blocked = false;
    this.sockets = new Set();
    this.heads = [];
  }

  get base() { return `http://127.0.0.1:${this.port}`; }

  async start() {
    this.server = net.createServer((client) => {
      if (this.blocked) { client.destroy(); return; }
      const upstream = net.connect(this.targetPort, '127.0.0.1');
      this.sockets.add(client);
      this.sockets.add(upstream);
      // Every request head, not only a connection's first: the browser reuses
      // kept-alive connections, an EventSource's included.
      let seen = '';
      client.on('data', (c) => {
        seen += c.toString('latin1');
        for (;;) {
          const line = /(?:GET|HEAD|POST|PUT|DELETE|OPTIONS) \S+ HTTP\/1\.[01]\r\n/.exec(seen);
          if (!line) { seen = seen.slice(-2048); break; }
          const end = seen.indexOf('\r\n\r\n', line.index);
          if (end < 0) { seen = seen.slice(line.index); break; }
          this.heads.push(seen.slice(line.index, end + 4));
          seen = seen.slice(end + 4);
        }
      });
      client.pipe(upstream).pipe(client);
      const done = () => {
        client.destroy(); upstream.destroy();
        this.sockets.delete(client); this.sockets.delete(upstream);
      };
      for (const s of [client, upstream]) { s.on('error', done); s.on('close', done); }
    });
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = this.server.address().port;
    return this;
  }

  cut() { for (const s of this.sockets) s.destroy(); }

  close() {
    this.cut();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * Debian's Chromium, headless. Playwright gives each launch a fresh temporary
 * --user-data-dir itself (it rejects one in `args`).
 */
export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (run.sh does)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-dev-shm-usage',
    ],
  });
}

/**
 * A new isolated context: a browser profile of its own (its own storage,
 * locks, BroadcastChannels and connection pool). Each page in it counts its
 * EventSources in `window.__streams`, so tests can check "one stream".
 */
export async function newContext(browser, { viewport = { width: 1280, height: 800 }, colorScheme = 'light' } = {}) {
  const context = await browser.newContext({ viewport, colorScheme });
  await context.addInitScript(() => {
    const Native = window.EventSource;
    // events: [stream number, type] of the control events each stream received.
    window.__streams = { opened: 0, open: 0, maxOpen: 0, urls: [], events: [] };
    class Counting extends Native {
      constructor(url, init) {
        super(url, init);
        const s = window.__streams;
        s.opened += 1; s.open += 1; s.maxOpen = Math.max(s.maxOpen, s.open); s.urls.push(String(url));
        this.__counted = true;
        const n = s.opened;
        for (const type of ['hello', 'gap', 'busy', 'heartbeat']) {
          this.addEventListener(type, () => s.events.push([n, type]));
        }
      }
      close() {
        if (this.__counted) { this.__counted = false; window.__streams.open -= 1; }
        super.close();
      }
    }
    window.EventSource = Counting;
  });
  return context;
}

/**
 * A new tab in `context`. `errors` collects page errors and unexpected
 * dialogs so a test can assert the page ran cleanly.
 */
export async function openTab(context, url, { timeout = 30000 } = {}) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('dialog', (d) => { errors.push('unexpected dialog: ' + d.message()); d.dismiss().catch(() => {}); });
  await page.goto(url, { timeout });
  return { page, errors };
}

/**
 * One Chromium for a test file and the servers its tests start, all gone
 * when the file's tests end. `suite.browser` is set before the first test;
 * `suite.startServer(args, port)` starts a server (on a free port by default).
 */
export function browserSuite() {
  const servers = [];
  const suite = {
    browser: null,
    startServer(args = [], port = 0) {
      const s = new Server(args);
      servers.push(s);
      return s.start(port);
    },
  };
  before(async () => { suite.browser = await launchBrowser(); });
  after(async () => {
    await suite.browser?.close();
    await Promise.all(servers.map((s) => s.kill()));
  });
  return suite;
}

/** A new isolated context with one tab. */
export async function openPage(browser, url, opts) {
  const context = await newContext(browser, opts);
  const tab = await openTab(context, url);
  return { context, ...tab };
}

/** Status text of the page (the connection indicator). */
export const statusText = (page) => page.getByTestId('status').textContent();

export async function waitLive(page, timeout = 10000) {
  await waitFor(async () => /\blive\b/.test(await statusText(page)), { timeout, what: 'status "live"' });
}

/** The ids of the messages shown in the page, in DOM order. */
export function messageIds(page) {
  return page.$$eval('[data-testid="message"]', (els) => els.map((e) => e.dataset.id));
}

/** The texts of the messages shown, in DOM order. */
export function messageTexts(page) {
  return page.$$eval('[data-testid="message"] .text', (els) => els.map((e) => e.textContent));
}

/** The text of the element with `data-testid` `testid`. */
export const textOf = (page, testid) => page.getByTestId(testid).textContent();

/** Waits until a message with exactly `text` is shown. */
export const waitText = (page, text, timeout = 10000) =>
  waitFor(async () => (await messageTexts(page)).includes(text), { timeout, what: `message ${JSON.stringify(text)}` });

/** Saves a screenshot of a state worth a look under target/screenshots/. */
export async function shot(page, name) {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`) });
}

/** Types into the composer and presses Enter. */
export async function sendFromPage(page, text) {
  await page.getByTestId('text').fill(text);
  await page.getByTestId('text').press('Enter');
}

export function assertNoDuplicates(ids) {
  const seen = new Set();
  for (const id of ids) {
    if (seen.has(id)) throw new Error(`message id ${id} shown twice: ${ids.join(',')}`);
    seen.add(id);
  }
}

export function tmpDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
