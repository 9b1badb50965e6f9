//! Hooks a host program plugs into the loop: hear when streams open and
//! close, and decide on subscriptions and publishes (its own auth) without
//! forking the server.
//!
//! Hooks run on the loop's thread, inside the turn, one at a time: while
//! one runs, no other client is served. Keep them short (microseconds: a
//! map lookup, a counter, a message to another thread); never block on I/O,
//! a lock held elsewhere for long, or a channel that may be full. A hook
//! must not panic: a panic unwinds out of `run` or `poll_once`. Hooks are
//! `Send` so that a server can be built on one thread and run on another.

use std::net::SocketAddr;

/// What a request asks for, as far as an authoriser cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `GET /events`: open a stream.
    Subscribe,
    /// `POST /messages`: post a chat message.
    PostMessage,
    /// `POST /publish`: publish a custom event.
    Publish,
}

/// A request awaiting the authoriser's decision.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// What it asks for.
    pub kind: RequestKind,
    /// The path, still percent-encoded (`/events`, `/publish`, …).
    pub path: &'a str,
    /// The query string without `?`, still percent-encoded.
    pub query: &'a str,
    /// Every header as sent, in order (names as the client spelled them).
    pub headers: &'a [(String, String)],
    /// The rooms concerned (one for a publish, one or more for a stream).
    pub rooms: &'a [String],
    /// The client's address.
    pub peer: SocketAddr,
    /// Who the request is, with access control on (`--auth-secret`):
    /// `None` when every room is open.
    pub requester: Option<Requester<'a>>,
}

/// Who a request is, as its token says (access control on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requester<'a> {
    /// `agent`, `customer`, `anonymous` (no valid token) or `publisher`
    /// (the static publish token).
    pub role: &'a str,
    /// The token's display name (`sub`).
    pub user: Option<&'a str>,
    /// The rooms a customer's token grants; `None` for an agent (every
    /// room) and for requests without a token.
    pub rooms: Option<&'a [String]>,
}

impl RequestInfo<'_> {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter named `name`, percent-decoded (`+` is a
    /// space). A browser's `EventSource` cannot send headers, so a
    /// credential for a stream often comes this way.
    ///
    /// # Examples
    /// ```
    /// # use ssehub::hooks::{RequestInfo, RequestKind};
    /// let info = RequestInfo {
    ///     kind: RequestKind::Subscribe,
    ///     path: "/events",
    ///     query: "room=a&token=x%2By&room=b",
    ///     headers: &[],
    ///     rooms: &["a".to_string(), "b".to_string()],
    ///     peer: "127.0.0.1:9".parse().unwrap(),
    ///     requester: None,
    /// };
    /// assert_eq!(info.query_param("token").as_deref(), Some("x+y"));
    /// assert_eq!(info.query_params("room"), ["a", "b"]);
    /// assert_eq!(info.query_param("missing"), None);
    /// ```
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_params(name).into_iter().next()
    }

    /// Every value of the query parameter `name`, in order, percent-decoded.
    /// Pairs that do not decode are skipped (the server answers such a
    /// request 400 before asking).
    pub fn query_params(&self, name: &str) -> Vec<String> {
        crate::request::query_pairs(self.query)
            .filter_map(Result::ok)
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .collect()
    }
}

/// An authoriser's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on as usual.
    Allow,
    /// Go on, and tie the stream to `tag` (say a user id): a stream opened
    /// this way is reported with it in [`StreamNotice::tag`], when it opens
    /// and when it closes. Ignored for publishes.
    AllowAs(u64),
    /// Refuse with this status (e.g. 401 or 403) and message, sent as the
    /// JSON error `{"error": message}`.
    Deny {
        /// The status code, 400–599 (others are sent as 403).
        status: u16,
        /// Why, for the client.
        message: String,
    },
    /// Refuse like [`Decision::Deny`], with extra response headers such as
    /// `WWW-Authenticate` or `Retry-After`.
    DenyWith {
        /// The status code, 400–599 (others are sent as 403).
        status: u16,
        /// Why, for the client.
        message: String,
        /// Extra headers, as (name, value). Names must be tokens and values
        /// must not hold CR or LF; others are dropped.
        headers: Vec<(String, String)>,
    },
}

/// A stream opening or closing.
///
/// Only streams that really open are reported: a stream request refused by
/// validation or the authoriser, a `HEAD /events`, and one answered `busy`
/// because the house is full (the server's `max_clients`) are not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamNotice {
    /// `true` when it opened, `false` when it closed.
    pub opened: bool,
    /// Its rooms.
    pub rooms: Vec<String>,
    /// Subscribed with `role=agent`.
    pub agent: bool,
    /// The client's address.
    pub peer: SocketAddr,
    /// The value the authoriser allowed it with ([`Decision::AllowAs`]).
    pub tag: Option<u64>,
}

/// Called for each stream that opens or closes. `Send`, so a [`Server`]
/// holding it can be moved to the thread that runs it.
///
/// [`Server`]: crate::Server
pub type StreamHook = Box<dyn FnMut(&StreamNotice) + Send>;
/// Called for each subscription and publish; its [`Decision`] is final.
/// `Send` for the same reason.
pub type Authorizer = Box<dyn FnMut(&RequestInfo<'_>) -> Decision + Send>;
