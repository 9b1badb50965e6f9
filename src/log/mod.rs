//! The event log: the one seam between publishing and storing.
//!
//! A publish becomes a [`Draft`] (room, body, time; no id yet). The log
//! takes drafts with [`EventLog::append`], makes them durable in its own
//! way when the loop calls [`EventLog::flush`] once per turn, and reports
//! each one's fate later through [`EventLog::settled`]: committed, with its
//! id and its encoded [`Retained`] form, or refused. Only committed events
//! are retained by the hub, broadcast, and acknowledged to their publisher;
//! a refused one is answered `503` and never seen by anyone.
//!
//! The log assigns ids, the hub takes them: a Redis stream assigns its ids
//! itself, so nothing upstream of the log may count them. Encoding an event
//! (SSE frame + JSON item) happens exactly once, in [`Draft::encode`], when
//! its id is known.
//!
//! Three implementations today:
//! - [`MemoryLog`]: no storage; ids continue from the start time in
//!   milliseconds × 1000, and every append is committed at once.
//! - [`JournalLog`] (`--journal FILE`): one JSON line per event, one write
//!   and one `fdatasync` per loop turn (group commit), read back on start.
//! - [`RedisLog`] (`--redis URL`): a Redis stream shared by every node of
//!   a cluster, which assigns the ids; a publish is acknowledged when Redis
//!   has it ([`Settled::Accepted`]) and delivered when the node reads it
//!   back from the stream ([`Settled::Committed`]).

use std::sync::Arc;

use crate::hub::{json_string, Hub, Retained};
use crate::sse;

pub mod journal;
mod memory;
mod redis;

pub use journal::JournalLog;
pub use memory::MemoryLog;
pub use redis::RedisLog;

/// What a publish carries before the log gives it an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// The room it goes to (already validated).
    pub room: String,
    /// A chat message or a custom event.
    pub body: Body,
    /// When it was published, in milliseconds since the Unix epoch.
    pub time: u64,
}

/// The two kinds of event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `POST /messages`: a `message` event with the JSON item as data.
    Message {
        /// Author.
        user: String,
        /// Text.
        text: String,
        /// `agent` or `customer` in private mode (from the token); `None`
        /// in open mode, where the item has no `role`.
        role: Option<Role>,
    },
    /// `POST /publish` or a handle: data sent as given (line ends already LF).
    Event {
        /// Event name.
        name: String,
        /// The data.
        data: String,
    },
}

/// Who wrote a message, in private mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A customer-service agent.
    Agent,
    /// A customer (or a device or script with a room token).
    Customer,
}

impl Role {
    /// As the message's JSON says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Customer => "customer",
        }
    }
}

impl Draft {
    /// A chat message of open mode (no role).
    #[cfg(test)]
    pub fn message(room: &str, user: &str, text: &str, time: u64) -> Draft {
        Draft::message_as(room, user, text, None, time)
    }

    /// A chat message, with its author's role in private mode.
    pub fn message_as(room: &str, user: &str, text: &str, role: Option<Role>, time: u64) -> Draft {
        Draft {
            room: room.to_string(),
            body: Body::Message {
                user: user.to_string(),
                text: text.to_string(),
                role,
            },
            time,
        }
    }

    /// A custom event.
    pub fn event(room: &str, name: &str, data: &str, time: u64) -> Draft {
        Draft {
            room: room.to_string(),
            body: Body::Event {
                name: name.to_string(),
                data: data.to_string(),
            },
            time,
        }
    }

    /// The event with id `id`: its wire frame (shared by every recipient
    /// and replay) and its JSON item (`GET /messages`, the journal).
    pub fn encode(&self, id: u64) -> Retained {
        let (json, frame) = match &self.body {
            Body::Message { user, text, role } => {
                let role = match role {
                    Some(role) => format!(",\"role\":\"{}\"", role.as_str()),
                    None => String::new(),
                };
                let json = format!(
                    "{{\"id\":{id},\"room\":{},\"user\":{},\"text\":{},\"time\":{}{role}}}",
                    json_string(&self.room),
                    json_string(user),
                    json_string(text),
                    self.time
                );
                let mut frame = Vec::with_capacity(json.len() + 40);
                sse::encode_parts(Some(id), Some("message"), &json, &mut frame);
                (json, frame)
            }
            Body::Event { name, data } => {
                let json = format!(
                    "{{\"id\":{id},\"room\":{},\"event\":{},\"data\":{},\"time\":{}}}",
                    json_string(&self.room),
                    json_string(name),
                    json_string(data),
                    self.time
                );
                let mut frame = Vec::with_capacity(data.len() + name.len() + 32);
                sse::encode_parts(Some(id), Some(name), data, &mut frame);
                (json, frame)
            }
        };
        Retained {
            id,
            room: Arc::from(self.room.as_str()),
            frame: Arc::from(frame),
            json: Arc::from(json),
        }
    }
}

/// What [`EventLog::append`] gives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Names the draft in [`Settled`] reports.
    pub ticket: u64,
    /// The event's id, when the log knows it at once (local logs do; a
    /// Redis stream tells it only once the write is acknowledged).
    pub id: Option<u64>,
}

/// The fate of an appended draft (or an event from elsewhere).
#[derive(Debug, Clone)]
pub enum Settled {
    /// Stored: retain, broadcast, acknowledge.
    Committed {
        /// The ticket of the append it answers; `None` for an event that
        /// another writer of a shared log stored.
        ticket: Option<u64>,
        /// The event, encoded once.
        event: Retained,
    },
    /// Not stored: answer its publisher `503` with `reason`; broadcast nothing.
    Refused {
        /// The ticket of the append it answers.
        ticket: u64,
        /// Why, for the publisher.
        reason: &'static str,
    },
    /// Stored with this id: answer the publisher now; the event itself
    /// arrives later as [`Settled::Committed`] (a shared log delivers every
    /// event, a node's own included, in the log's one order).
    Accepted {
        /// The ticket of the append it answers.
        ticket: u64,
        /// The event's id.
        id: u64,
    },
    /// Start over from the log's histories: retain `events` (id order) and
    /// the rooms' `dropped` marks; the sequence is at `last_id`. With
    /// `lost_up_to`, events up to that id may be gone for good (the store
    /// lost its data): every room then reports a gap to clients resuming
    /// from before it.
    Snapshot {
        /// The retained events of every room, in id order.
        events: Vec<Retained>,
        /// Per room, the highest id trimmed from its history.
        dropped: Vec<(String, u64)>,
        /// The newest id of the log.
        last_id: u64,
        /// The newest id this node had seen when the store lost its data.
        lost_up_to: Option<u64>,
    },
    /// Other nodes' open streams per room: (clients, agents).
    Presence(Vec<(String, (usize, usize))>),
}

/// Where published events are stored; see the module docs.
pub trait EventLog: Send {
    /// Queues `draft`; no I/O.
    fn append(&mut self, draft: Draft) -> Appended;

    /// Makes what was appended durable; called once per loop turn, after
    /// the turn's requests were read, so one write covers all of them.
    fn flush(&mut self);

    /// Moves every report known so far into `out`, in commit order.
    fn settled(&mut self, out: &mut Vec<Settled>);

    /// Whether appended drafts still wait for [`flush`](Self::flush) or
    /// for their reports (the loop then does not sleep).
    fn has_pending(&self) -> bool;

    /// The newest id issued (before the first event: the one just below it).
    fn last_id(&self) -> u64;

    /// Puts what the log holds back into a fresh `hub` (at start).
    fn load(&mut self, hub: &mut Hub);

    /// Gives the log a chance to shrink its storage to what `hub` retains.
    fn compact(&mut self, hub: &Hub) {
        let _ = hub;
    }

    /// Tells a shared log this node's open streams per room, as
    /// (room, clients, agents) — called about once a second.
    fn share_presence(&mut self, local: Vec<(String, usize, usize)>) {
        let _ = local;
    }

    /// Whether other processes publish into this log too (a cluster): a
    /// browser may then resume with an id this node has not read yet.
    fn is_shared(&self) -> bool {
        false
    }

    /// Whether the log's store can be reached (and, for a shared log, the
    /// node has caught up with it); `None` for a local log.
    fn healthy(&self) -> Option<bool> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_is_encoded_once_with_its_id() {
        let message = Draft::message("a", "ann", "hi \"there\"\n", 5).encode(101);
        assert_eq!(
            &*message.frame,
            b"id: 101\nevent: message\ndata: {\"id\":101,\"room\":\"a\",\"user\":\"ann\",\"text\":\"hi \\\"there\\\"\\n\",\"time\":5}\n\n"
        );
        let event = Draft::event("b", "reading", "t=1\nh=2", 6).encode(102);
        assert_eq!(
            &*event.frame,
            b"id: 102\nevent: reading\ndata: t=1\ndata: h=2\n\n"
        );
        assert_eq!(
            &*event.json,
            "{\"id\":102,\"room\":\"b\",\"event\":\"reading\",\"data\":\"t=1\\nh=2\",\"time\":6}"
        );
        assert_eq!((&*event.room, event.id), ("b", 102));
        let answer = Draft::message_as("c", "Sam", "hello", Some(Role::Agent), 7).encode(103);
        assert_eq!(
            &*answer.json,
            "{\"id\":103,\"room\":\"c\",\"user\":\"Sam\",\"text\":\"hello\",\"time\":7,\"role\":\"agent\"}"
        );
    }
}
