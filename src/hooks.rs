//! Hooks a host program plugs into the loop: hear when streams open and
//! close, and decide on subscriptions and publishes (its own auth) without
//! forking the server.
//!
//! Hooks run on the loop's thread, inside the turn: keep them short.

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
}

impl RequestInfo<'_> {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An authoriser's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on as usual.
    Allow,
    /// Refuse with this status (e.g. 401 or 403) and message, sent as the
    /// JSON error `{"error": message}`.
    Deny {
        /// The status code, 400–599 (others are sent as 403).
        status: u16,
        /// Why, for the client.
        message: String,
    },
}

/// A stream opening or closing.
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
}

/// Called for each stream that opens or closes.
pub type StreamHook = Box<dyn FnMut(&StreamNotice)>;
/// Called for each subscription and publish; its [`Decision`] is final.
pub type Authorizer = Box<dyn FnMut(&RequestInfo<'_>) -> Decision>;
