//! The application: a request and who asks for it in, an [`Outcome`] out —
//! an answer written, a stream opened, or a publish held for the event log.
//! It owns the hub, the log, the access rules, the page's files, the
//! metrics and the request log; it never sees a socket. What it commits is
//! handed to the server as broadcasts ([`App::take_committed`]): the server
//! is the one place where the hub's recipients meet connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{info, warn};

use crate::access::{Access, Who};
use crate::config::Config;
use crate::conn::Close;
use crate::hooks::{StreamHook, StreamNotice};
use crate::hub::{Hub, Retained};
use crate::log::{Draft, EventLog, Role, Settled};
use crate::metrics::{Gauges, Metrics};
use crate::request::{Head, HttpError, Method};
use crate::response::{self, Framing, Response};
use crate::router::{self, Action};
use crate::session::{Ask, Sessions};
use crate::sse;
use crate::static_files::{Lookup, StaticFiles};

/// `retry:` sent first on every stream, in milliseconds.
const STREAM_RETRY_MS: u64 = 2000;

/// How long a stream that resumed ahead of this cluster node may skip the
/// events it claims to have, once the node has caught up with the log: a
/// real id arrives within milliseconds; one that never comes was made up.
const AHEAD_PATIENCE: Duration = Duration::from_secs(5);

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Who is asking: the connection's token (a plain number) and address.
#[derive(Debug, Clone, Copy)]
pub struct Asker {
    /// The connection's token, the hub's subscriber id if it subscribes.
    pub token: usize,
    /// The client's address.
    pub peer: SocketAddr,
}

/// The server's state that answers depend on.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Open event streams.
    pub streams: usize,
    /// Open connections.
    pub connections: usize,
    /// A shutdown has begun: answers close their connections.
    pub shutting_down: bool,
    /// Connections closed since start, per [`Close::ALL`] reason.
    pub closed: [u64; Close::ALL.len()],
}

/// What became of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An answer was written; the connection stays open if `keep_alive`.
    Answered {
        /// Read the next request after it.
        keep_alive: bool,
    },
    /// The connection is now an event stream (preamble and replay written).
    Stream {
        /// When its token expires (seconds since the epoch): the stream is
        /// closed then. `None` without access control.
        expires: Option<u64>,
    },
    /// A publish waits for the event log; its answer comes with
    /// [`App::settle`], and later requests on the connection wait for it.
    Held,
}

/// An answer released by the log's verdict on a held publish.
#[derive(Debug)]
pub struct Released {
    /// The connection it is owed to.
    pub token: usize,
    /// The response, as bytes.
    pub bytes: Vec<u8>,
    /// Read the next request after it.
    pub keep_alive: bool,
}

/// A stream request, as the router and the authoriser left it.
struct StreamAsk<'a> {
    rooms: &'a [String],
    last_id: Option<u64>,
    agent: bool,
    /// The authoriser's tag for it.
    tag: Option<u64>,
    /// When its token expires (seconds since the epoch), in private mode.
    expires: Option<u64>,
}

/// The `201` a held publish is owed, and how to frame it.
#[derive(Debug)]
struct HeldReply {
    token: usize,
    /// `Some((room, time))` for a chat message, whose answer names them.
    message: Option<(String, u64)>,
    keep_alive: bool,
    minor_version: u8,
    cors_origin: Option<String>,
    cors_credentials: bool,
    /// The request line for the log (empty when info logging is off).
    logged_as: String,
}

/// Everything a server answers with; see the module docs.
pub struct App {
    /// The configuration.
    pub config: Config,
    /// Rooms, subscribers, history, presence.
    pub hub: Hub,
    /// Where published events are stored.
    log: Box<dyn EventLog>,
    /// Who may do what.
    pub access: Access,
    /// The page.
    statics: StaticFiles,
    /// The counters.
    pub metrics: Metrics,
    /// The host's stream open/close hook.
    pub stream_hook: Option<StreamHook>,
    /// The desk's session endpoints and their rate limits.
    sessions: Sessions,
    /// Answers owed to publishers, by the log's ticket.
    held: HashMap<u64, HeldReply>,
    /// The authoriser's tags of open streams, by token (only tagged ones).
    tags: HashMap<usize, u64>,
    /// Events committed since the last [`take_committed`](Self::take_committed).
    committed: Vec<Retained>,
    /// When the server started.
    started: Instant,
    /// Cheap randomness for the busy answer's retry.
    rng: u64,
    /// When this node last told a shared log its presence.
    presence_shared: Option<Instant>,
    /// The hub started over from the log: open streams must reconnect.
    resync: bool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("hub", &self.hub)
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl App {
    /// An app over `log` (its content loaded into a fresh hub).
    pub fn new(config: Config, statics: StaticFiles, mut log: Box<dyn EventLog>) -> App {
        let mut hub = Hub::new(config.history, log.last_id());
        log.load(&mut hub);
        App {
            access: Access::new(&config),
            hub,
            log,
            statics,
            metrics: Metrics::default(),
            stream_hook: None,
            sessions: Sessions::new(config.visitor_ttl),
            held: HashMap::new(),
            tags: HashMap::new(),
            committed: Vec::new(),
            started: Instant::now(),
            rng: unix_ms() | 1,
            presence_shared: None,
            resync: false,
            config,
        }
    }

    /// Answers one request from `who`, writing to `out`.
    pub fn request(
        &mut self,
        who: Asker,
        head: &Head,
        body: &[u8],
        load: Load,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let now_secs = unix_ms() / 1000;
        let id = self.access.identify(head, now_secs);
        let mut action = match self.access.gate(head, &id) {
            Ok(()) => router::route(head, body, self.access.private()),
            Err(refused) => Action::Reject(refused),
        };
        if let Err(refused) = self.access.permit(&action, &id) {
            action = Action::Reject(refused);
        }
        let tag = match self.access.ask_host(head, &action, who.peer, &id) {
            Ok(tag) => tag,
            Err(refused) => {
                action = Action::Reject(refused);
                None
            }
        };
        let cors = self.access.cors_origin(head.origin.as_deref());
        let framing = Framing {
            head_only: head.method == Method::Head,
            keep_alive: head.keep_alive && !load.shutting_down,
            minor_version: head.minor_version,
            cors_origin: cors.as_deref(),
            cors_credentials: self.access.cors_credentials(cors.as_deref()),
        };
        let session = |ask| Some(ask);
        let ask = match action {
            Action::StartSession { ref name } => session(Ask::Start(name.clone())),
            Action::Session => session(Ask::Info),
            Action::Login { ref token } => session(Ask::Login(token.clone())),
            Action::Logout => session(Ask::Logout),
            _ => None,
        };
        if let Some(ask) = ask {
            let secret = self.access.secret();
            let response = self.sessions.answer(
                ask,
                &id,
                head,
                client_address(head, who.peer),
                secret,
                Instant::now(),
                now_secs,
            );
            self.log_request(who, Some(head), response.status, "");
            return self.answer(&response, framing, out);
        }
        let response = match action {
            Action::Subscribe {
                rooms,
                last_id,
                agent,
            } => {
                let stream = StreamAsk {
                    rooms: &rooms,
                    last_id,
                    agent,
                    tag,
                    expires: id.who.claims().map(|claims| claims.exp),
                };
                return self.open_stream(who, head, stream, framing, load, out);
            }
            Action::Preflight => {
                self.log_request(who, Some(head), 204, "");
                response::write_preflight(framing, out);
                self.metrics.count_response(204);
                return Outcome::Answered {
                    keep_alive: framing.keep_alive,
                };
            }
            Action::PostMessage { room, user, text } => {
                // In private mode the author is the token's, with its role.
                let (user, role) = match &id.who {
                    Who::Agent(claims) => (claims.sub.clone(), Some(Role::Agent)),
                    Who::Customer(claims) => (claims.sub.clone(), Some(Role::Customer)),
                    _ => (user.unwrap_or_default(), None),
                };
                let time = unix_ms();
                let draft = Draft::message_as(&room, &user, &text, role, time);
                return self.hold(who, head, draft, Some((room, time)), framing);
            }
            Action::Publish { room, event, data } => {
                let draft = Draft::event(&room, &event, &data, unix_ms());
                return self.hold(who, head, draft, None, framing);
            }
            Action::Static => match self.statics.lookup(&head.path) {
                Lookup::Found { body, content_type } => Response {
                    status: 200,
                    content_type,
                    body: body.into_owned(),
                    extra_headers: Vec::new(),
                },
                Lookup::NotFound => Response::error(404, "not found"),
                Lookup::BadPath => Response::error(400, "bad path"),
            },
            Action::History { room, after, limit } => {
                Response::json(200, self.hub.history_json(&room, after, limit))
            }
            Action::Rooms => Response::json(200, self.hub.rooms_json()),
            Action::Health => Response::json(
                200,
                response::health_json(
                    self.started.elapsed().as_secs(),
                    load.streams,
                    load.connections,
                    self.hub.last_id(),
                    self.log.healthy(),
                ),
            ),
            Action::Metrics => Response::prometheus(self.render_metrics(load)),
            Action::Reject(response) => response,
            Action::StartSession { .. }
            | Action::Session
            | Action::Login { .. }
            | Action::Logout => {
                unreachable!("answered above")
            }
        };
        self.log_request(who, Some(head), response.status, "");
        self.answer(&response, framing, out)
    }

    /// Answers a request that can never be accepted (the connection closes).
    pub fn fail(&mut self, who: Asker, error: HttpError, origin: Option<&str>, out: &mut Vec<u8>) {
        let cors = self.access.cors_origin(origin);
        let framing = Framing {
            head_only: false,
            keep_alive: false,
            minor_version: 1,
            cors_origin: cors.as_deref(),
            cors_credentials: self.access.cors_credentials(cors.as_deref()),
        };
        self.log_request(who, None, error.status(), "");
        self.answer(
            &Response::error(error.status(), error.message()),
            framing,
            out,
        );
    }

    /// Answers a request whose head or body did not arrive in time.
    pub fn time_out(&mut self, who: Asker, out: &mut Vec<u8>) {
        info!("{} request timed out", who.peer);
        let framing = Framing {
            head_only: false,
            keep_alive: false,
            minor_version: 1,
            cors_origin: None,
            cors_credentials: false,
        };
        self.answer(&Response::error(408, "request timed out"), framing, out);
    }

    fn answer(&mut self, response: &Response, framing: Framing<'_>, out: &mut Vec<u8>) -> Outcome {
        response::write_response(response, framing, out);
        self.metrics.count_response(response.status);
        Outcome::Answered {
            keep_alive: framing.keep_alive,
        }
    }

    /// Appends a publish to the log; its answer waits for the verdict.
    fn hold(
        &mut self,
        who: Asker,
        head: &Head,
        draft: Draft,
        message: Option<(String, u64)>,
        framing: Framing<'_>,
    ) -> Outcome {
        let ticket = self.log.append(draft).ticket;
        let logged_as = if log::log_enabled!(log::Level::Info) {
            format!("{} \"{}\"", who.peer, request_line(head))
        } else {
            String::new()
        };
        self.held.insert(
            ticket,
            HeldReply {
                token: who.token,
                message,
                keep_alive: framing.keep_alive,
                minor_version: framing.minor_version,
                cors_origin: framing.cors_origin.map(str::to_string),
                cors_credentials: framing.cors_credentials,
                logged_as,
            },
        );
        Outcome::Held
    }

    /// Publishes from the host (a handle or the loop's thread); returns the
    /// id when the log knows it at once.
    pub fn publish(&mut self, draft: Draft) -> Option<u64> {
        self.log.append(draft).id
    }

    /// After a broadcast: streams that resumed ahead of this node stop
    /// skipping events once the node has reached their id (or, caught up
    /// with the log, waited [`AHEAD_PATIENCE`] for it in vain).
    pub fn forget_ahead(&mut self, now: Instant) {
        let log = &self.log;
        self.hub.forget_ahead(now, || log.healthy() != Some(false));
    }

    /// Takes the log's verdicts: committed events are retained and queued
    /// for broadcast, and the answers owed to their publishers go to
    /// `released` (`503` for refused ones). With `flush`, the log first
    /// makes this turn's appends durable (once per turn).
    pub fn settle(&mut self, flush: bool, released: &mut Vec<Released>) {
        if flush {
            self.log.flush();
        }
        let mut settled = Vec::new();
        self.log.settled(&mut settled);
        if settled.is_empty() {
            return;
        }
        for verdict in settled {
            // The publisher's answer: the event's id, or why it was refused.
            let (ticket, outcome) = match verdict {
                Settled::Committed { ticket, event } => {
                    self.metrics.events_published += 1;
                    let id = event.id;
                    self.hub.commit(event.clone());
                    self.committed.push(event);
                    let Some(ticket) = ticket else {
                        continue;
                    };
                    (ticket, Ok(id))
                }
                Settled::Accepted { ticket, id } => (ticket, Ok(id)),
                Settled::Refused { ticket, reason } => (ticket, Err(reason)),
                Settled::Snapshot {
                    events,
                    dropped,
                    last_id,
                    lost_up_to,
                } => {
                    self.hub.start_over(events, &dropped, last_id, lost_up_to);
                    self.resync = true;
                    continue;
                }
                Settled::Presence(remote) => {
                    self.hub.set_remote(remote);
                    continue;
                }
            };
            let Some(reply) = self.held.remove(&ticket) else {
                if let Err(reason) = outcome {
                    // A publish of the host's (a handle, Server::publish).
                    warn!("a publish was dropped: {reason}");
                }
                continue;
            };
            let response = match (outcome, &reply.message) {
                (Ok(id), Some((room, time))) => {
                    Response::json(201, response::created_message_json(id, room, *time))
                }
                (Ok(id), None) => Response::json(201, response::created_event_json(id)),
                (Err(reason), _) => Response::error(503, reason),
            };
            let mut bytes = Vec::with_capacity(256);
            let framing = Framing {
                head_only: false,
                keep_alive: reply.keep_alive,
                minor_version: reply.minor_version,
                cors_origin: reply.cors_origin.as_deref(),
                cors_credentials: reply.cors_credentials,
            };
            response::write_response(&response, framing, &mut bytes);
            self.metrics.count_response(response.status);
            if !reply.logged_as.is_empty() {
                info!("{} {}", reply.logged_as, response.status);
            }
            released.push(Released {
                token: reply.token,
                bytes,
                keep_alive: reply.keep_alive,
            });
        }
        self.log.compact(&self.hub);
    }

    /// Drops the answers owed to `token`, whose connection closed first.
    pub fn forget_held(&mut self, token: usize) {
        self.held.retain(|_, reply| reply.token != token);
    }

    /// Tells a shared log this node's streams per room (about once a
    /// second; more often is skipped).
    pub fn share_presence(&mut self) {
        if self.log.healthy().is_none() {
            return;
        }
        let now = Instant::now();
        if self
            .presence_shared
            .is_some_and(|at| now < at + std::time::Duration::from_millis(900))
        {
            return;
        }
        self.presence_shared = Some(now);
        self.log.share_presence(self.hub.local_counts());
    }

    /// Whether the hub started over since the last call (open streams must
    /// reconnect to resume against the new histories).
    pub fn take_resync(&mut self) -> bool {
        std::mem::take(&mut self.resync)
    }

    /// Whether the event log can take publishes and has the histories
    /// (always, for a local log).
    pub fn log_ready(&self) -> bool {
        self.log.healthy() != Some(false)
    }

    /// Whether the log has appends or verdicts waiting (no sleeping then).
    pub fn log_pending(&self) -> bool {
        self.log.has_pending()
    }

    /// The events committed since the last call, for the server to fan out.
    pub fn take_committed(&mut self) -> Vec<Retained> {
        std::mem::take(&mut self.committed)
    }

    /// A stream has closed: it leaves its rooms, and the host hears of it.
    pub fn stream_closed(&mut self, who: Asker) {
        let Some(subscription) = self.hub.unsubscribe(who.token) else {
            return;
        };
        let tag = self.tags.remove(&who.token);
        if let Some(hook) = self.stream_hook.as_mut() {
            hook(&StreamNotice {
                opened: false,
                rooms: subscription.rooms().map(|r| r.to_string()).collect(),
                agent: subscription.agent,
                peer: who.peer,
                tag,
            });
        }
    }

    /// The heartbeat frame of this moment.
    pub fn heartbeat_frame(&self) -> Vec<u8> {
        let mut frame = Vec::with_capacity(48);
        let data = format!("{{\"time\":{}}}", unix_ms());
        sse::encode_parts(None, Some("heartbeat"), &data, &mut frame);
        frame
    }

    fn open_stream(
        &mut self,
        who: Asker,
        head: &Head,
        ask: StreamAsk<'_>,
        framing: Framing<'_>,
        load: Load,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let StreamAsk {
            rooms,
            last_id,
            agent,
            tag,
            expires,
        } = ask;
        response::write_stream_head(
            head.minor_version,
            framing.cors_origin,
            framing.cors_credentials,
            out,
        );
        self.metrics.count_response(200);
        if framing.head_only {
            self.log_request(who, Some(head), 200, " (head of stream)");
            return Outcome::Answered { keep_alive: false };
        }
        if load.streams >= self.config.max_clients {
            // A browser's EventSource gives up for good on an error status,
            // so a full house answers 200 with a retry and closes.
            let retry_ms = self.spread_retry_ms();
            sse::encode_retry(retry_ms, out);
            let data = format!("{{\"retry_ms\":{retry_ms}}}");
            sse::encode_parts(None, Some("busy"), &data, out);
            self.metrics.busy_answers += 1;
            self.log_request(who, Some(head), 200, " busy (full house)");
            return Outcome::Answered { keep_alive: false };
        }
        let rooms: Vec<Arc<str>> = rooms.iter().map(|r| self.hub.room_name(r)).collect();
        sse::encode_retry(STREAM_RETRY_MS, out);
        let hello = response::hello_json(
            &rooms,
            agent,
            self.config.heartbeat.as_millis() as u64,
            self.hub.last_id(),
        );
        sse::encode_parts(None, Some("hello"), &hello, out);
        // A browser coming from another node of a cluster may hold an id
        // this node has not read from the log yet: it gets those events
        // from there, not again from here, and is not moved back.
        let ahead = last_id.filter(|&id| self.log.is_shared() && id > self.hub.last_id());
        let replayed = self.hub.replay(&rooms, last_id, ahead.is_none(), out);
        self.metrics.events_delivered += replayed as u64;
        self.hub.subscribe(who.token, &rooms, agent);
        if let Some(seen_up_to) = ahead {
            let until = Instant::now() + AHEAD_PATIENCE;
            self.hub.subscribe_ahead(who.token, seen_up_to, until);
        }
        self.metrics.streams_opened += 1;
        if let Some(tag) = tag {
            self.tags.insert(who.token, tag);
        }
        if let Some(hook) = self.stream_hook.as_mut() {
            hook(&StreamNotice {
                opened: true,
                rooms: rooms.iter().map(|r| r.to_string()).collect(),
                agent,
                peer: who.peer,
                tag,
            });
        }
        self.log_request(who, Some(head), 200, " stream");
        Outcome::Stream { expires }
    }

    /// A reconnection delay spread over 2–5 s, so that a crowd told to
    /// come back after a full house does not come back at once.
    pub fn spread_retry_ms(&mut self) -> u64 {
        // xorshift64: randomised so that a crowd does not come back at once.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        2000 + self.rng % 3000
    }

    /// The reconnection delay a stream gets at shutdown: spread over 1–4 s,
    /// so the browsers of a restarted server neither come back in the same
    /// second nor wait past 5 s (a restart usually takes under one).
    pub fn restart_retry_ms(&mut self) -> u64 {
        self.spread_retry_ms() - 1000
    }

    fn render_metrics(&self, load: Load) -> String {
        let (rooms, retained) = self.hub.sizes();
        let closed: Vec<(&str, u64)> = Close::ALL
            .iter()
            .zip(load.closed)
            .map(|(reason, n)| (reason.label(), n))
            .collect();
        self.metrics.render(
            Gauges {
                streams: load.streams,
                connections: load.connections,
                rooms,
                retained,
                last_id: self.hub.last_id(),
                uptime_secs: self.started.elapsed().as_secs(),
            },
            &closed,
        )
    }

    fn log_request(&self, who: Asker, head: Option<&Head>, status: u16, note: &str) {
        if !log::log_enabled!(log::Level::Info) {
            return;
        }
        match head {
            Some(head) => info!("{} \"{}\" {status}{note}", who.peer, request_line(head)),
            None => info!("{} (unparsable request) {status}{note}", who.peer),
        }
    }
}

/// The address a rate limit counts: the peer's, or, when the peer is on
/// this machine (the reverse proxy of contrib/), the last address of
/// `X-Forwarded-For`, which that proxy sets. A remote peer cannot claim an
/// address that way.
fn client_address(head: &Head, peer: SocketAddr) -> std::net::IpAddr {
    if !peer.ip().is_loopback() {
        return peer.ip();
    }
    head.headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("x-forwarded-for"))
        .filter_map(|(_, value)| value.rsplit(',').next())
        .filter_map(|last| last.trim().parse().ok())
        .next_back()
        .unwrap_or_else(|| peer.ip())
}

/// The query for the log, with the value of any parameter whose name
/// holds "token" hidden (tokens never belong in a URL, but a client may
/// put one there anyway, and logs are read by many).
fn loggable_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.to_ascii_lowercase().contains("token") => {
                format!("{name}=<hidden>")
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `METHOD /path?query HTTP/1.x`, for the log.
fn request_line(head: &Head) -> String {
    let method = match head.method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Options => "OPTIONS",
        Method::Other => "-",
    };
    let mark = if head.query.is_empty() { "" } else { "?" };
    format!(
        "{method} {}{mark}{} HTTP/1.{}",
        head.path,
        loggable_query(&head.query),
        head.minor_version
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Appended;
    use crate::request::{parse_head, Limits, Parsed};

    /// A log that refuses drafts whose data is `refuse`, commits the rest
    /// in append order on flush, and can hand in an event "from another
    /// node" (no ticket).
    #[derive(Default)]
    struct ScriptedLog {
        next: u64,
        pending: Vec<(u64, Draft)>,
        settled: Vec<Settled>,
        flushes: usize,
    }

    impl EventLog for ScriptedLog {
        fn append(&mut self, draft: Draft) -> Appended {
            self.next += 1;
            self.pending.push((self.next, draft));
            Appended {
                ticket: self.next,
                id: None,
            }
        }
        fn flush(&mut self) {
            self.flushes += 1;
            for (ticket, draft) in self.pending.drain(..) {
                let refused =
                    matches!(&draft.body, crate::log::Body::Event { data, .. } if data == "refuse");
                self.settled.push(if refused {
                    Settled::Refused {
                        ticket,
                        reason: "storage said no",
                    }
                } else {
                    Settled::Committed {
                        ticket: Some(ticket),
                        event: draft.encode(ticket * 10),
                    }
                });
            }
        }
        fn settled(&mut self, out: &mut Vec<Settled>) {
            out.append(&mut self.settled);
        }
        fn has_pending(&self) -> bool {
            !self.pending.is_empty() || !self.settled.is_empty()
        }
        fn last_id(&self) -> u64 {
            0
        }
        fn load(&mut self, _hub: &mut Hub) {}
    }

    fn app() -> App {
        App::new(
            Config::default(),
            StaticFiles::embedded(),
            Box::new(ScriptedLog::default()),
        )
    }

    fn publish(app: &mut App, token: usize, data: &str) -> Outcome {
        let raw = format!(
            "POST /publish?room=r HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            data.len()
        );
        let limits = Limits {
            max_head: 8192,
            max_body: 65536,
        };
        let Ok(Parsed::Complete(head, _)) = parse_head(raw.as_bytes(), limits) else {
            panic!("bad test request");
        };
        let who = Asker {
            token,
            peer: "127.0.0.1:9".parse().unwrap(),
        };
        let load = Load {
            streams: 0,
            connections: 1,
            shutting_down: false,
            closed: [0; Close::ALL.len()],
        };
        let mut out = Vec::new();
        let outcome = app.request(who, &head, data.as_bytes(), load, &mut out);
        assert!(out.is_empty(), "a held publish writes nothing yet");
        outcome
    }

    fn status(released: &Released) -> &str {
        std::str::from_utf8(&released.bytes[9..12]).unwrap()
    }

    #[test]
    fn publishes_wait_for_the_log_and_keep_its_order() {
        let mut app = app();
        for (token, data) in [(1, "one"), (2, "refuse"), (3, "three")] {
            assert_eq!(publish(&mut app, token, data), Outcome::Held);
        }
        let mut released = Vec::new();
        app.settle(false, &mut released);
        assert!(
            released.is_empty() && app.take_committed().is_empty(),
            "nothing before the flush"
        );
        app.settle(true, &mut released);
        let answers: Vec<(usize, &str)> = released.iter().map(|r| (r.token, status(r))).collect();
        assert_eq!(answers, [(1, "201"), (2, "503"), (3, "201")]);
        assert!(String::from_utf8_lossy(&released[0].bytes).ends_with("{\"id\":10}"));
        assert!(String::from_utf8_lossy(&released[1].bytes).contains("storage said no"));
        // Only committed events are broadcast and retained, in log order.
        let ids: Vec<u64> = app.take_committed().iter().map(|e| e.id).collect();
        assert_eq!(ids, [10, 30]);
        assert_eq!(app.hub.last_id(), 30);
        assert!(!app.hub.history_json("r", 0, None).contains("refuse"));
        assert_eq!(app.metrics.events_published, 2);
        assert_eq!(app.metrics.responses.get(&503), Some(&1));
    }

    #[test]
    fn tokens_in_a_query_never_reach_the_log() {
        assert_eq!(
            loggable_query("room=a&token=abc.def&access_token=x&b=1"),
            "room=a&token=<hidden>&access_token=<hidden>&b=1"
        );
        assert_eq!(loggable_query("room=a"), "room=a");
    }

    #[test]
    fn rate_limits_count_the_address_a_local_proxy_forwards() {
        let limits = Limits {
            max_head: 8192,
            max_body: 64,
        };
        let raw = b"POST /session HTTP/1.1\r\nX-Forwarded-For: 203.0.113.9, 198.51.100.7\r\n\r\n";
        let Ok(Parsed::Complete(head, _)) = parse_head(raw, limits) else {
            panic!("bad test request");
        };
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(client_address(&head, proxy).to_string(), "198.51.100.7");
        let remote: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        assert_eq!(
            client_address(&head, remote).to_string(),
            "192.0.2.1",
            "no spoofing"
        );
    }

    #[test]
    fn an_answer_owed_to_a_closed_connection_is_dropped() {
        let mut app = app();
        publish(&mut app, 7, "x");
        app.forget_held(7);
        let mut released = Vec::new();
        app.settle(true, &mut released);
        assert!(released.is_empty(), "nobody to answer");
        assert_eq!(
            app.take_committed().len(),
            1,
            "the event itself still counts"
        );
    }
}
