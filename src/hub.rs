//! The hub: rooms, their subscribers, their retained history, the id
//! sequence and presence. It never sees a socket: subscribers are plain
//! numbers ([`SubscriberId`]) that the server maps to connections.
//!
//! A publish encodes its frame once; the server appends those same bytes
//! to the buffer of every id in [`Hub::subscribers`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::sse;

/// Who a subscriber is, as far as the hub knows: the server's token index.
pub type SubscriberId = usize;

/// One retained event.
#[derive(Debug, Clone)]
pub struct Retained {
    /// Its id in the one sequence.
    pub id: u64,
    /// The room it was published to.
    pub room: Arc<str>,
    /// The wire bytes of the event, shared by every recipient and replay.
    pub frame: Arc<[u8]>,
    /// The item as `GET /messages` and the journal show it (one JSON object).
    pub json: Arc<str>,
}

/// One room: who listens, and what it retains.
#[derive(Debug, Default)]
struct Room {
    /// Streams subscribed to the room, in no particular order; each
    /// subscription remembers its place here, so leaving is O(1).
    subscribers: Vec<SubscriberId>,
    /// How many of them are agents.
    agents: usize,
    /// The newest events, oldest first, at most `history` of them.
    history: VecDeque<Retained>,
    /// The highest id ever dropped from `history` (0 if none): a client
    /// asking for anything older than this has missed events.
    dropped_up_to: u64,
    /// Counts last announced by a `presence` event: (clients, agents).
    announced: (usize, usize),
    /// Other nodes' streams in the room, in a cluster: (clients, agents).
    remote: (usize, usize),
}

impl Room {
    /// The room's streams, on every node: (clients, agents).
    fn counts(&self) -> (usize, usize) {
        (
            self.subscribers.len() + self.remote.0,
            self.agents + self.remote.1,
        )
    }

    fn is_unused(&self) -> bool {
        self.subscribers.is_empty()
            && self.history.is_empty()
            && self.announced == (0, 0)
            && self.remote == (0, 0)
    }
}

/// One stream's subscription, kept by the hub under its id.
#[derive(Debug)]
pub struct Subscription {
    /// Its rooms, each with the stream's index in that room's subscriber list.
    places: Box<[(Arc<str>, u32)]>,
    /// Subscribed as an agent.
    pub agent: bool,
}

impl Subscription {
    /// The rooms, in the order subscribed.
    pub fn rooms(&self) -> impl Iterator<Item = &Arc<str>> {
        self.places.iter().map(|(room, _)| room)
    }
}

/// Rooms, subscribers, history and presence.
#[derive(Debug)]
pub struct Hub {
    /// Rooms by name.
    rooms: HashMap<Arc<str>, Room>,
    /// Subscriptions by subscriber id (ids are dense: the server's slots).
    subs: Vec<Option<Subscription>>,
    /// Events retained per room.
    history: usize,
    /// The newest id committed (or the log's last id at start): what
    /// `hello` and the id-only block announce. The log assigns ids; the
    /// hub only takes them.
    last_id: u64,
    /// Rooms whose counts changed since the last presence round.
    presence_dirty: Vec<Arc<str>>,
    /// Streams that resumed from an id this node has not reached yet (a
    /// cluster node a little behind the one the browser came from): the
    /// events up to that id are already the browser's, so they are not
    /// sent again when they arrive. Rare and short-lived, hence a list.
    ahead: Vec<Ahead>,
}

/// A stream that resumed ahead of this node; see [`Hub::subscribe_ahead`].
#[derive(Debug, Clone, Copy)]
struct Ahead {
    sub: SubscriberId,
    /// The client's Last-Event-ID: events up to it are not sent.
    seen_up_to: u64,
    /// After this, if the node has caught up with its log and still has
    /// not reached `seen_up_to`, that id was never issued (a made-up
    /// header) and the stream gets every event again.
    until: Instant,
}

/// The checks on a room name: 1–64 of `A-Z a-z 0-9 _ - .`.
pub fn valid_room(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `value` as a JSON string literal.
pub fn json_string(value: &str) -> String {
    serde_json::to_string(value).expect("strings always serialise")
}

impl Hub {
    /// An empty hub retaining `history` events per room; `last_id` is the
    /// log's newest id.
    pub fn new(history: usize, last_id: u64) -> Hub {
        Hub {
            rooms: HashMap::new(),
            subs: Vec::new(),
            history,
            last_id,
            presence_dirty: Vec::new(),
            ahead: Vec::new(),
        }
    }

    /// The newest id committed.
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    /// Subscribes `sub` (not yet subscribed) to `rooms`; presence for them is due.
    pub fn subscribe(&mut self, sub: SubscriberId, rooms: &[Arc<str>], agent: bool) {
        let mut places = Vec::with_capacity(rooms.len());
        for name in rooms {
            let name = self.room_name(name);
            let room = self.rooms.entry(name.clone()).or_default();
            places.push((name.clone(), room.subscribers.len() as u32));
            room.subscribers.push(sub);
            if agent {
                room.agents += 1;
            }
            self.presence_dirty.push(name);
        }
        if self.subs.len() <= sub {
            self.subs.resize_with(sub + 1, || None);
        }
        self.subs[sub] = Some(Subscription {
            places: places.into_boxed_slice(),
            agent,
        });
    }

    /// Marks the new subscriber `sub` as having seen every event up to
    /// `seen_up_to`, an id this node has not committed yet: those events
    /// are skipped for it when they arrive, until `until` at most (see
    /// [`forget_ahead`](Self::forget_ahead)).
    pub fn subscribe_ahead(&mut self, sub: SubscriberId, seen_up_to: u64, until: Instant) {
        self.ahead.push(Ahead {
            sub,
            seen_up_to,
            until,
        });
    }

    /// Whether some stream resumed ahead of event `id` (the loop then asks
    /// [`already_sent`](Self::already_sent) per subscriber).
    pub fn anyone_ahead_of(&self, id: u64) -> bool {
        self.ahead.iter().any(|a| id <= a.seen_up_to)
    }

    /// Whether subscriber `sub` already has event `id` from another node.
    pub fn already_sent(&self, sub: SubscriberId, id: u64) -> bool {
        self.ahead
            .iter()
            .any(|a| a.sub == sub && id <= a.seen_up_to)
    }

    /// Called after a broadcast: forgets the streams this node has caught
    /// up with, and, once `caught_up()` (the log has nothing older to
    /// deliver; asked only when some stream is ahead), those past their
    /// time whose id never came.
    pub fn forget_ahead(&mut self, now: Instant, caught_up: impl FnOnce() -> bool) {
        if self.ahead.is_empty() {
            return;
        }
        let caught_up = caught_up();
        let last_id = self.last_id;
        self.ahead
            .retain(|a| a.seen_up_to > last_id && !(caught_up && now >= a.until));
    }

    /// Removes `sub` from its rooms in O(rooms) whatever their sizes, and
    /// gives back what it was subscribed to; presence for them is due.
    pub fn unsubscribe(&mut self, sub: SubscriberId) -> Option<Subscription> {
        let subscription = self.subs.get_mut(sub)?.take()?;
        if !self.ahead.is_empty() {
            // Tokens are reused: the next stream under it starts clean.
            self.ahead.retain(|a| a.sub != sub);
        }
        for (name, at) in subscription.places.iter() {
            let Some(room) = self.rooms.get_mut(name) else {
                continue;
            };
            let at = *at as usize;
            room.subscribers.swap_remove(at);
            if subscription.agent {
                room.agents -= 1;
            }
            // The last subscriber moved into the hole: tell it where it is now.
            if let Some(&moved) = room.subscribers.get(at) {
                if let Some(Some(other)) = self.subs.get_mut(moved) {
                    if let Some(place) = other.places.iter_mut().find(|(r, _)| r == name) {
                        place.1 = at as u32;
                    }
                }
            }
            self.presence_dirty.push(name.clone());
        }
        Some(subscription)
    }

    /// The streams subscribed to `room`.
    pub fn subscribers(&self, room: &str) -> &[SubscriberId] {
        self.rooms
            .get(room)
            .map(|r| r.subscribers.as_slice())
            .unwrap_or(&[])
    }

    /// The room's name as the hub holds it, shared rather than copied.
    pub fn room_name(&self, room: &str) -> Arc<str> {
        match self.rooms.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => Arc::from(room),
        }
    }

    /// Retains a committed event (its id from the log); from now on it is
    /// replayed and announced.
    pub fn commit(&mut self, mut event: Retained) {
        self.last_id = self.last_id.max(event.id);
        event.room = self.room_name(&event.room);
        let history = self.history;
        let room = self.rooms.entry(event.room.clone()).or_default();
        if history == 0 {
            room.dropped_up_to = event.id;
        } else {
            if room.history.len() == history {
                let dropped = room.history.pop_front().expect("history is full");
                room.dropped_up_to = dropped.id;
            }
            room.history.push_back(event);
        }
    }

    /// This node's streams per room, as (room, clients, agents), for the
    /// other nodes of a cluster.
    pub fn local_counts(&self) -> Vec<(String, usize, usize)> {
        self.rooms
            .iter()
            .filter(|(_, r)| !r.subscribers.is_empty())
            .map(|(name, r)| (name.to_string(), r.subscribers.len(), r.agents))
            .collect()
    }

    /// Takes the other nodes' streams per room; rooms whose totals change
    /// get a presence round.
    pub fn set_remote(&mut self, remote: Vec<(String, (usize, usize))>) {
        let remote: HashMap<&str, (usize, usize)> = remote
            .iter()
            .map(|(room, counts)| (room.as_str(), *counts))
            .collect();
        for (name, room) in self.rooms.iter_mut() {
            let now = remote.get(&**name).copied().unwrap_or_default();
            if room.remote != now {
                room.remote = now;
                self.presence_dirty.push(name.clone());
            }
        }
        for (name, counts) in remote {
            if !self.rooms.contains_key(name) {
                let name: Arc<str> = Arc::from(name);
                let room = self.rooms.entry(name.clone()).or_default();
                room.remote = counts;
                self.presence_dirty.push(name);
            }
        }
    }

    /// Replaces every room's history with `events` (id order) and the
    /// `dropped` marks, and moves the sequence to `last_id`: a cluster
    /// node starting, or starting over. With `lost_up_to`, every room
    /// reports a gap to clients resuming from before that id.
    pub fn start_over(
        &mut self,
        events: Vec<Retained>,
        dropped: &[(String, u64)],
        last_id: u64,
        lost_up_to: Option<u64>,
    ) {
        // Events after the newest one this node saw may have been stored
        // and then lost with the store's data: a client that saw up to
        // `lost` (or less) may have missed some, so it gets a gap.
        let lost_mark = lost_up_to.map_or(0, |id| id + 1);
        for room in self.rooms.values_mut() {
            room.history.clear();
            room.dropped_up_to = room.dropped_up_to.max(lost_mark);
        }
        for event in events {
            self.commit(event);
        }
        for (room, id) in dropped {
            self.mark_dropped(room, *id);
        }
        if lost_up_to.is_some() {
            for room in self.rooms.values_mut() {
                room.dropped_up_to = room.dropped_up_to.max(lost_mark);
            }
        }
        self.advance_to(last_id);
    }

    /// Moves the announced id up to `id` (journal start-up: ids issued to
    /// events that were dropped since).
    pub fn advance_to(&mut self, id: u64) {
        self.last_id = self.last_id.max(id);
    }

    /// Commits a custom event with the next id (tests stand in for the log).
    #[cfg(test)]
    pub(crate) fn publish_event(
        &mut self,
        room: &str,
        name: &str,
        data: &str,
        time: u64,
    ) -> Retained {
        let event = crate::log::Draft::event(room, name, data, time).encode(self.last_id + 1);
        self.commit(event.clone());
        event
    }

    /// Commits a chat message with the next id (tests stand in for the log).
    #[cfg(test)]
    pub(crate) fn publish_message(
        &mut self,
        room: &str,
        user: &str,
        text: &str,
        time: u64,
    ) -> Retained {
        let event = crate::log::Draft::message(room, user, text, time).encode(self.last_id + 1);
        self.commit(event.clone());
        event
    }

    /// Writes what a new stream gets before live events: a `gap` event if
    /// events newer than `last_id` are gone, the retained events of `rooms`
    /// newer than `last_id` (all retained ones without it) in id order, and
    /// an id-only block if the last id sent is not the current one (with
    /// `announce`; a stream resuming ahead of this node gets none, as it
    /// must not move the client back). Returns how many events were
    /// replayed.
    pub fn replay(
        &self,
        rooms: &[Arc<str>],
        last_id: Option<u64>,
        announce: bool,
        out: &mut Vec<u8>,
    ) -> usize {
        let after = last_id.unwrap_or(0);
        let mut events: Vec<&Retained> = rooms
            .iter()
            .filter_map(|name| self.rooms.get(name))
            .flat_map(|room| room.history.iter().filter(|e| e.id > after))
            .collect();
        events.sort_unstable_by_key(|e| e.id);
        events.dedup_by_key(|e| e.id);
        if let Some(last_id) = last_id {
            let lost = rooms
                .iter()
                .filter_map(|name| self.rooms.get(name))
                .any(|room| room.dropped_up_to > last_id);
            if lost {
                let oldest = events.first().map_or(0, |e| e.id);
                let data = format!("{{\"last_event_id\":{last_id},\"oldest_retained\":{oldest}}}");
                sse::encode_parts(None, Some("gap"), &data, out);
            }
        }
        for event in &events {
            out.extend_from_slice(&event.frame);
        }
        let last_sent = events.last().map_or(last_id.unwrap_or(0), |e| e.id);
        if announce && last_sent != self.last_id {
            sse::encode_id_only(self.last_id, out);
        }
        events.len()
    }

    /// The retained items of `room` as a JSON array, oldest first: those
    /// with an id above `after`, the newest `limit` of them.
    pub fn history_json(&self, room: &str, after: u64, limit: Option<usize>) -> String {
        let Some(room) = self.rooms.get(room) else {
            return "[]".to_string();
        };
        let newer: Vec<&Retained> = room.history.iter().filter(|e| e.id > after).collect();
        let skip = limit.map_or(0, |k| newer.len().saturating_sub(k));
        let mut out = String::from("[");
        for (n, event) in newer[skip..].iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str(&event.json);
        }
        out.push(']');
        out
    }

    /// Every room with a retained event or an open stream, by name, as the
    /// JSON array of `GET /rooms`.
    pub fn rooms_json(&self) -> String {
        let mut names: Vec<&Arc<str>> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.counts().0 > 0 || !r.history.is_empty())
            .map(|(name, _)| name)
            .collect();
        names.sort();
        let mut out = String::from("[");
        for (n, name) in names.iter().enumerate() {
            let room = &self.rooms[*name];
            if n > 0 {
                out.push(',');
            }
            let (clients, agents) = room.counts();
            out.push_str(&format!(
                "{{\"room\":{},\"clients\":{},\"agents\":{},\"messages\":{},\"last_id\":{}}}",
                json_string(name),
                clients,
                agents,
                room.history.len(),
                room.history.back().map_or(0, |e| e.id)
            ));
        }
        out.push(']');
        out
    }

    /// Counts for the metrics page: (rooms, retained events).
    pub fn sizes(&self) -> (usize, usize) {
        (
            self.rooms.len(),
            self.rooms.values().map(|r| r.history.len()).sum(),
        )
    }

    /// The presence round: for each room whose counts changed since the
    /// last announcement, the room and its `presence` frame. Rooms left
    /// with nothing are forgotten afterwards.
    pub fn take_presence(&mut self) -> Vec<(Arc<str>, Vec<u8>)> {
        let mut due = std::mem::take(&mut self.presence_dirty);
        due.sort();
        due.dedup();
        let mut frames = Vec::new();
        for name in due {
            let Some(room) = self.rooms.get_mut(&name) else {
                continue;
            };
            let counts = room.counts();
            if counts != room.announced {
                room.announced = counts;
                let data = format!(
                    "{{\"room\":{},\"clients\":{},\"agents\":{}}}",
                    json_string(&name),
                    counts.0,
                    counts.1
                );
                let mut frame = Vec::new();
                sse::encode_parts(None, Some("presence"), &data, &mut frame);
                frames.push((name.clone(), frame));
            }
            if room.is_unused() {
                self.rooms.remove(&name);
            }
        }
        frames
    }

    /// Whether a presence round has anything to look at.
    pub fn presence_pending(&self) -> bool {
        !self.presence_dirty.is_empty()
    }

    /// Per room, the highest id dropped from its history, for rooms that
    /// dropped any, by name (journal compaction keeps them for `gap`).
    pub fn dropped_marks(&self) -> Vec<(Arc<str>, u64)> {
        let mut marks: Vec<(Arc<str>, u64)> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.dropped_up_to > 0)
            .map(|(name, r)| (name.clone(), r.dropped_up_to))
            .collect();
        marks.sort();
        marks
    }

    /// Records that `room` has dropped events up to `id` (journal start-up:
    /// what a compaction left out). Never moves a mark back.
    pub fn mark_dropped(&mut self, room: &str, id: u64) {
        let name = self.room_name(room);
        let room = self.rooms.entry(name).or_default();
        room.dropped_up_to = room.dropped_up_to.max(id);
    }

    /// The retained events of every room in id order (journal compaction).
    pub fn all_retained(&self) -> Vec<Retained> {
        let mut all: Vec<Retained> = self
            .rooms
            .values()
            .flat_map(|r| r.history.iter().cloned())
            .collect();
        all.sort_unstable_by_key(|e| e.id);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Draft;

    fn names(list: &[&str]) -> Vec<Arc<str>> {
        list.iter().map(|n| Arc::from(*n)).collect()
    }

    fn replay(hub: &Hub, rooms: &[&str], last: Option<u64>) -> String {
        let mut out = Vec::new();
        hub.replay(&names(rooms), last, true, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn room_names() {
        assert!(valid_room("lobby") && valid_room("a.b-c_D9") && valid_room(&"x".repeat(64)));
        assert!(
            !valid_room("")
                && !valid_room(&"x".repeat(65))
                && !valid_room("a b")
                && !valid_room("é")
        );
    }

    #[test]
    fn committed_events_take_the_logs_ids() {
        let mut hub = Hub::new(10, 100);
        assert_eq!(
            replay(&hub, &["a"], None),
            "id: 100\n\n",
            "nothing retained yet"
        );
        // The log skipped 101 (a refused publish burns its id).
        hub.commit(Draft::event("a", "e", "1", 0).encode(102));
        hub.commit(Draft::event("a", "e", "2", 0).encode(103));
        assert_eq!(hub.last_id(), 103);
        assert_eq!(
            replay(&hub, &["a"], Some(0)),
            "id: 102\nevent: e\ndata: 1\n\nid: 103\nevent: e\ndata: 2\n\n"
        );
    }

    /// A browser resumes on a cluster node with id 7 that it got from
    /// another node; this node has read up to 5. Nothing moves it back, 6
    /// and 7 are not sent to it again when they arrive, 8 is; the mark goes
    /// once the node reached 7, and with the token when it unsubscribes.
    #[test]
    fn a_stream_resuming_ahead_of_the_node_skips_what_it_has() {
        let mut hub = Hub::new(10, 5);
        let rooms = names(&["a"]);
        let mut out = Vec::new();
        hub.replay(&rooms, Some(7), false, &mut out);
        assert_eq!(out, b"", "no id-only block back to 5");
        let now = Instant::now();
        hub.subscribe(1, &rooms, false);
        hub.subscribe(2, &rooms, false);
        hub.subscribe_ahead(1, 7, now + std::time::Duration::from_secs(5));
        for id in 6..=8 {
            hub.commit(Draft::event("a", "e", "x", 0).encode(id));
            let to: Vec<_> = hub
                .subscribers("a")
                .iter()
                .filter(|&&sub| !(hub.anyone_ahead_of(id) && hub.already_sent(sub, id)))
                .copied()
                .collect();
            assert_eq!(to, if id <= 7 { vec![2] } else { vec![1, 2] }, "event {id}");
            hub.forget_ahead(now, || true);
        }
        assert!(!hub.anyone_ahead_of(0), "forgotten once 7 was reached");

        // A made-up id: skipped while the log may still bring it, forgotten
        // once the node is caught up and the patience is spent.
        hub.subscribe_ahead(2, 1_000_000, now + std::time::Duration::from_secs(5));
        hub.forget_ahead(now + std::time::Duration::from_secs(9), || false);
        assert!(hub.already_sent(2, 9), "the log is behind: still waiting");
        hub.forget_ahead(now + std::time::Duration::from_secs(4), || true);
        assert!(hub.already_sent(2, 9), "within its patience");
        hub.forget_ahead(now + std::time::Duration::from_secs(5), || true);
        assert!(!hub.already_sent(2, 9));

        // The token's next stream does not inherit the mark.
        hub.subscribe_ahead(1, 1_000_000, now);
        hub.unsubscribe(1);
        hub.subscribe(1, &rooms, false);
        assert!(!hub.already_sent(1, 9));
    }

    #[test]
    fn unsubscribing_keeps_every_other_place_right() {
        let mut hub = Hub::new(10, 0);
        let ab = names(&["a", "b"]);
        for sub in 0..6 {
            hub.subscribe(sub, &ab[..1 + sub % 2], sub == 3);
        }
        // Remove from the front and the middle: each removal moves the last
        // subscriber into the hole, whose recorded place must follow.
        for gone in [0, 2, 5, 3] {
            let subscription = hub.unsubscribe(gone).expect("was subscribed");
            assert_eq!(subscription.agent, gone == 3);
            assert!(hub.unsubscribe(gone).is_none(), "only once");
        }
        let mut a = hub.subscribers("a").to_vec();
        a.sort();
        assert_eq!(a, [1, 4]);
        assert_eq!(hub.subscribers("b"), [1]);
        for sub in [1, 4] {
            hub.unsubscribe(sub).expect("still subscribed");
        }
        assert!(hub.subscribers("a").is_empty() && hub.subscribers("b").is_empty());
        assert_eq!(hub.rooms_json(), "[]");
    }

    #[test]
    fn replay_merges_rooms_in_id_order_and_ends_on_current_id() {
        let mut hub = Hub::new(10, 0);
        hub.publish_event("a", "e", "1", 0);
        hub.publish_event("b", "e", "2", 0);
        hub.publish_event("c", "e", "3", 0);
        hub.publish_event("a", "e", "4", 0);
        let all = replay(&hub, &["a", "b"], None);
        assert_eq!(
            all,
            "id: 1\nevent: e\ndata: 1\n\nid: 2\nevent: e\ndata: 2\n\nid: 4\nevent: e\ndata: 4\n\n"
        );
        // Resuming after 2: only 4, no id-only block (4 is current).
        assert_eq!(
            replay(&hub, &["a", "b"], Some(2)),
            "id: 4\nevent: e\ndata: 4\n\n"
        );
        // Room b alone has nothing after 2: an id-only block moves the client on.
        assert_eq!(replay(&hub, &["b"], Some(2)), "id: 4\n\n");
        // Already current: nothing at all.
        assert_eq!(replay(&hub, &["b"], Some(4)), "");
    }

    #[test]
    fn gap_when_history_dropped_newer_events() {
        let mut hub = Hub::new(2, 0);
        for n in 1..=5 {
            hub.publish_event("a", "e", &n.to_string(), 0);
        }
        // Retained: 4, 5. Client last saw 2, so 3 is lost.
        assert_eq!(
            replay(&hub, &["a"], Some(2)),
            "event: gap\ndata: {\"last_event_id\":2,\"oldest_retained\":4}\n\n\
             id: 4\nevent: e\ndata: 4\n\nid: 5\nevent: e\ndata: 5\n\n"
        );
        // Client last saw 3: nothing newer was dropped, no gap.
        assert!(!replay(&hub, &["a"], Some(3)).contains("gap"));
    }

    #[test]
    fn history_zero_retains_nothing_but_reports_gaps() {
        let mut hub = Hub::new(0, 0);
        hub.publish_event("a", "e", "1", 0);
        assert_eq!(hub.history_json("a", 0, None), "[]");
        assert_eq!(
            replay(&hub, &["a"], Some(0)),
            "event: gap\ndata: {\"last_event_id\":0,\"oldest_retained\":0}\n\nid: 1\n\n"
        );
    }

    #[test]
    fn history_after_and_limit() {
        let mut hub = Hub::new(10, 0);
        for n in 1..=5 {
            hub.publish_event("a", "e", &n.to_string(), 0);
        }
        let ids = |json: String| -> Vec<u64> {
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_u64().unwrap())
                .collect()
        };
        assert_eq!(ids(hub.history_json("a", 0, None)), [1, 2, 3, 4, 5]);
        assert_eq!(ids(hub.history_json("a", 2, None)), [3, 4, 5]);
        assert_eq!(ids(hub.history_json("a", 0, Some(2))), [4, 5]);
        assert_eq!(ids(hub.history_json("a", 1, Some(0))), Vec::<u64>::new());
        assert_eq!(hub.history_json("nope", 0, None), "[]");
    }

    #[test]
    fn presence_is_coalesced_and_counts_agents() {
        let mut hub = Hub::new(10, 0);
        let a = names(&["a"]);
        hub.subscribe(1, &a, false);
        hub.subscribe(2, &a, true);
        hub.subscribe(3, &a, false);
        hub.unsubscribe(3);
        let frames = hub.take_presence();
        assert_eq!(frames.len(), 1);
        assert_eq!(
            String::from_utf8(frames[0].1.clone()).unwrap(),
            "event: presence\ndata: {\"room\":\"a\",\"clients\":2,\"agents\":1}\n\n"
        );
        // A join and a leave between rounds: counts unchanged, nothing sent.
        hub.subscribe(4, &a, false);
        hub.unsubscribe(4);
        assert!(hub.take_presence().is_empty());
        assert_eq!(
            hub.rooms_json(),
            "[{\"room\":\"a\",\"clients\":2,\"agents\":1,\"messages\":0,\"last_id\":0}]"
        );
        // Everyone leaves: a last presence, then the room is forgotten.
        hub.unsubscribe(1);
        hub.unsubscribe(2);
        assert_eq!(hub.take_presence().len(), 1);
        hub.subscribe(5, &a, false);
        hub.unsubscribe(5);
        hub.take_presence();
        assert_eq!(hub.rooms_json(), "[]");
        assert_eq!(hub.sizes(), (0, 0));
    }
}
