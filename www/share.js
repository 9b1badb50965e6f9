// The tabs of one browser share one stream. Over HTTP/1.1 a browser opens at
// most 6 connections to a host, so one EventSource per tab would leave the
// 7th tab without even its page. One tab, the leader (it holds the Web Lock
// "ssehub-stream"), holds the EventSource for the rooms of every tab and
// relays each event over a BroadcastChannel; the others announce their rooms
// there. When the leader closes, the lock passes to another tab, which
// resumes after the last id relayed: nothing is missed, and a message seen
// twice is dropped by its id.
//
// Web Locks exist only in secure contexts, and a page on a LAN is mostly
// plain http://: there the tabs elect the leader over the channel itself (the
// oldest tab wins; a tab that hears no leader for a while takes over).
// Without BroadcastChannel each tab has its own stream, as before.
import { Stream } from './stream.js';
import { fitRooms } from './env.js';

const ANNOUNCE_MS = 15000; // a tab repeats its rooms this often...
const STALE_MS = 60000; // ...and the leader forgets a tab not heard for this long (it crashed)
// Election without Web Locks: a leader says something at least every second
// (a relayed heartbeat or a ping); silent this long, it is taken to be gone.
const LEADER_SILENT_MS = 3500;
const FIRST_WAIT_MS = 600; // a new tab listens this long for a leader before leading itself

/** A stream of the page's events: shared when the browser allows, else this tab's own. */
export function createFeed({ agent, onEvent, onStatus }) {
  if (typeof BroadcastChannel !== 'function') {
    return new Stream({ agent, onEvent, onStatus });
  }
  return new SharedFeed({ agent, onEvent, onStatus });
}

class SharedFeed {
  constructor({ agent, onEvent, onStatus }) {
    this.agent = agent;
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    // Sorts by start time: in an election the oldest tab wins, as it likely stays longest.
    this.id = Date.now().toString(36).padStart(9, '0') + '-' + Math.random().toString(36).slice(2);
    this.mine = []; // this tab's rooms
    this.tabs = new Map(); // every other tab's rooms: id -> {rooms, seen}
    this.stream = null; // while this tab leads
    this.leaderId = null;
    this.last = null; // the leader's stream as last heard: {status, heartbeatMs, rooms, lastId}
    this.heard = 0; // when the leader last said something
    this.shown = ''; // the status this tab shows, "status|why"
    this.greeted = false;
    this.covered = new Set(); // this tab's rooms the leader's stream carries, their history loaded
    // The leader's last presence per room: a tab that joins later hears it at
    // once (a private desk's customer cannot poll GET /rooms for the counts).
    this.presence = new Map();
    this.announced = 0;
    this.posted = 0;
    this.unionTimer = 0;
    this.locked = !!navigator.locks; // false: elected over the channel

    // Agents' streams say role=agent: agent tabs share among themselves.
    const suffix = agent ? '-agent' : '';
    this.channel = new BroadcastChannel('ssehub' + suffix);
    this.channel.onmessage = (e) => this.receive(e.data);
    if (this.locked) {
      // The lock is held until the tab goes away; then the next tab waiting gets it.
      navigator.locks.request('ssehub-stream' + suffix, () => new Promise(() => this.lead()))
        .catch(() => { this.locked = false; this.claim(); });
    } else {
      setTimeout(() => this.claim(), FIRST_WAIT_MS);
    }
    this.announce(); // a leader answers with its state
    addEventListener('pagehide', () => this.post({ t: 'bye' }));
    addEventListener('pageshow', (e) => { if (e.persisted) this.announce(); });
    setInterval(() => this.tick(), 1000);
  }

  /** Whether this tab holds the stream. */
  get leading() { return !!this.stream; }

  get heartbeatMs() {
    return this.stream ? this.stream.heartbeatMs : this.last ? this.last.heartbeatMs : 0;
  }

  setRooms(names) {
    this.mine = names;
    if (this.stream) this.syncUnion();
    else this.announce();
    if (this.last) this.cover(this.last.rooms);
  }

  overdue(why) { if (this.stream) this.stream.overdue(why); }

  kick(why) { if (this.stream) this.stream.kick(why); }

  /** The cookie holds a renewed token: the tab holding the stream reopens it with that. */
  renewed() { if (this.stream) this.stream.renewed(); }

  post(msg) {
    this.posted = Date.now();
    try { this.channel.postMessage({ ...msg, from: this.id }); } catch { /* the page is going away */ }
  }

  /** Without a lock: leads unless a leader was heard lately. */
  claim() {
    if (this.stream || this.locked || Date.now() - this.heard < LEADER_SILENT_MS) return;
    this.lead();
  }

  /** Two leaders (elected at once): the younger hands over to the older. */
  yieldTo(msg) {
    if (msg.from > this.id) {
      this.post({ t: 'state', state: this.snapshot() }); // so that it hears of us at once
      return false;
    }
    this.stream.close();
    this.stream = null;
    this.announce();
    return true;
  }

  announce() {
    this.announced = Date.now();
    this.post({ t: 'rooms', rooms: this.mine });
  }

  receive(msg) {
    if (!msg || typeof msg !== 'object') return;
    switch (msg.t) {
      case 'rooms': {
        const known = this.tabs.has(msg.from);
        this.tabs.set(msg.from, { rooms: Array.isArray(msg.rooms) ? msg.rooms : [], seen: Date.now() });
        // A new tab learns of the others, so that all agree which is the oldest.
        if (!known && !this.stream) this.announce();
        if (this.stream) {
          this.syncUnion();
          this.post({ t: 'state', state: this.snapshot() });
          if (!known) {
            for (const data of this.presence.values()) this.post({ t: 'event', ev: { type: 'presence', data }, state: this.snapshot() });
          }
        }
        break;
      }
      case 'bye':
        this.tabs.delete(msg.from);
        if (this.stream) this.syncUnion();
        else if (msg.from === this.leaderId) this.leaderGone();
        break;
      case 'leader':
        if (this.stream && !this.yieldTo(msg)) break;
        this.leaderId = msg.from;
        this.heard = Date.now();
        this.announce(); // the new leader learns every tab's rooms
        break;
      case 'state':
      case 'event':
        if (!msg.state) break;
        if (!this.stream || this.yieldTo(msg)) this.fromLeader(msg);
        break;
      default:
    }
  }

  leaderGone() {
    this.show('reconnecting', 'the tab holding the stream closed');
    if (this.locked) return; // the lock passes on by itself
    // The oldest tab left takes over at once; the others only if it does not.
    const oldest = [...this.tabs.keys(), this.id].sort()[0];
    this.heard = oldest === this.id ? 0 : Date.now() - LEADER_SILENT_MS + 1500;
    this.claim();
  }

  fromLeader(msg) {
    this.leaderId = msg.from;
    this.last = msg.state;
    this.heard = Date.now();
    if (msg.t === 'event') {
      if (msg.ev.type === 'hello') this.greeted = true;
      this.deliver(msg.ev);
    }
    if (!this.greeted && msg.state.status === 'live') {
      // Joined a live stream, this tab missed its hello: unread counts start from now.
      this.greeted = true;
      this.onEvent({ type: 'hello', lastId: msg.state.lastId });
    }
    this.cover(msg.state.rooms);
    this.show(msg.state.status, msg.why);
    // A hidden tab's timers may sleep for a minute; relayed events still arrive.
    if (Date.now() - this.announced > ANNOUNCE_MS) this.announce();
  }

  /** Passes an event on to this tab, unless it is a message of another tab's room. */
  deliver(ev) {
    if (ev.type === 'message') {
      let room = null;
      try { room = JSON.parse(ev.data).room; } catch { /* a bare /publish body: the page rereads its rooms */ }
      if (typeof room === 'string' && !this.mine.includes(room)) return;
    }
    this.onEvent(ev);
  }

  /**
   * A room of this tab whose events start reaching it (the leader's stream
   * now carries it) needs what came before from GET /messages. Asked only
   * now, the answer overlaps the stream instead of leaving a hole.
   */
  cover(carried) {
    const on = new Set(carried);
    for (const n of this.covered) if (!on.has(n) || !this.mine.includes(n)) this.covered.delete(n);
    const fresh = this.mine.filter((n) => on.has(n) && !this.covered.has(n));
    for (const n of fresh) this.covered.add(n);
    if (fresh.length) this.onEvent({ type: 'history', rooms: fresh });
  }

  show(status, why) {
    const key = status + '|' + (why || '');
    if (key === this.shown) return;
    this.shown = key;
    this.onStatus(status, why);
  }

  lead() {
    // Resume where the last leader's relays ended; its replay fills the hole
    // between its last relay and this stream.
    this.stream = new Stream({
      agent: this.agent,
      lastId: this.last ? this.last.lastId : 0,
      onEvent: (ev) => this.relay(ev),
      onStatus: (status, why) => this.relayStatus(status, why),
    });
    this.leaderId = this.id;
    this.post({ t: 'leader' });
    this.syncUnion();
  }

  snapshot() {
    const s = this.stream;
    return { status: s.status, heartbeatMs: s.heartbeatMs, rooms: s.rooms, lastId: s.lastId };
  }

  relay(ev) {
    // Each tab loads the history its rooms lack itself (see cover).
    if (ev.type === 'history') return;
    if (ev.type === 'presence') {
      try { this.presence.set(JSON.parse(ev.data).room, ev.data); } catch { /* not one to keep */ }
    }
    this.post({ t: 'event', ev, state: this.snapshot() });
    this.deliver(ev);
  }

  relayStatus(status, why) {
    const state = this.snapshot();
    this.post({ t: 'state', state, why });
    this.last = state;
    this.cover(state.rooms);
    this.show(status, why);
  }

  /** The leader's stream carries the rooms of every tab, its own first. */
  syncUnion() {
    clearTimeout(this.unionTimer);
    // Tabs announce in bursts (a new leader, several tabs opening): one new stream.
    this.unionTimer = setTimeout(() => {
      if (!this.stream) return; // handed over meanwhile
      const all = [...this.mine];
      for (const t of this.tabs.values()) all.push(...t.rooms);
      const names = fitRooms(all);
      if (names.length) this.stream.setRooms(names);
    }, 60);
  }

  tick() {
    const now = Date.now();
    if (this.stream) {
      let forgot = false;
      for (const [id, t] of this.tabs) if (now - t.seen > STALE_MS) { this.tabs.delete(id); forgot = true; }
      if (forgot) this.syncUnion();
      // Heard of, the leader is not replaced (heartbeats may be off).
      if (!this.locked && now - this.posted > 1000) this.post({ t: 'state', state: this.snapshot() });
      return;
    }
    if (now - this.announced > ANNOUNCE_MS) this.announce();
    this.claim();
    // The leader's own watchdog reports a silent server; this notices a silent leader.
    const s = this.last;
    if (s && s.status === 'live' && s.heartbeatMs > 0 && now - this.heard > 3 * s.heartbeatMs + 1000) {
      this.show('reconnecting', 'no word from the tab holding the stream');
    }
  }
}
