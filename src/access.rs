//! Who may do what, decided in one place: who a request is (its token),
//! the `--publish-token`, the rooms and role a token grants, CORS origins
//! and cross-site requests, and the host's authoriser. The router only says
//! what a request is; this module says whether it may happen.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::config::{Config, Secret};
use crate::hooks::{Authorizer, Decision, RequestInfo, RequestKind, Requester};
use crate::request::{Head, Method};
use crate::response::Response;
use crate::router::Action;
use crate::token::{self, Claims, Grant};

/// The cookie that carries a browser's token.
pub const COOKIE: &str = "ssehub_token";

/// Who a request is, as far as access control knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// No `--auth-secret`: every room is open to everyone.
    Open,
    /// Access control is on and the request has no valid token.
    Anonymous,
    /// A customer (or a device or script): these rooms only.
    Customer(Claims),
    /// An agent: every room.
    Agent(Claims),
    /// The static `--publish-token`: `POST /publish` only.
    Publisher,
}

impl Who {
    fn from_claims(claims: Claims) -> Who {
        match claims.grant {
            Grant::Agent => Who::Agent(claims),
            Grant::Rooms(_) => Who::Customer(claims),
        }
    }

    /// The role's name, as `GET /session` and the authoriser see it.
    pub fn role(&self) -> &'static str {
        match self {
            Who::Open | Who::Anonymous => "anonymous",
            Who::Customer(_) => "customer",
            Who::Agent(_) => "agent",
            Who::Publisher => "publisher",
        }
    }

    /// The token's claims, if a token was presented.
    pub fn claims(&self) -> Option<&Claims> {
        match self {
            Who::Customer(claims) | Who::Agent(claims) => Some(claims),
            _ => None,
        }
    }

    /// Whether this requester may read and write `room`.
    fn has_room(&self, room: &str) -> bool {
        match self {
            Who::Open | Who::Agent(_) => true,
            Who::Customer(claims) => match &claims.grant {
                Grant::Rooms(rooms) => rooms.iter().any(|r| r == room),
                Grant::Agent => true,
            },
            Who::Anonymous | Who::Publisher => false,
        }
    }
}

/// Who a request is, and how it said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Who.
    pub who: Who,
    /// The token came in the cookie (so a cross-site form could send it).
    pub by_cookie: bool,
}

/// At most `limit` events per address per window (a minute).
#[derive(Debug)]
pub struct RateLimit {
    limit: u32,
    window: Duration,
    /// Per address: when its window started, and its count in it.
    seen: HashMap<IpAddr, (Instant, u32)>,
    /// When old windows were last forgotten.
    pruned: Option<Instant>,
}

/// The address a limit counts: an IPv6 address by its /64, which one
/// subscriber usually holds whole (else each of its addresses would get
/// an allowance of its own).
fn counted(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into())
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("mapped")),
        v4 => v4,
    }
}

impl RateLimit {
    /// `limit` a minute per address.
    pub fn per_minute(limit: u32) -> RateLimit {
        RateLimit {
            limit,
            window: Duration::from_secs(60),
            seen: HashMap::new(),
            pruned: None,
        }
    }

    /// `Err(seconds to wait)` when `ip` has used its allowance; does not count.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        match self.seen.get(&counted(ip)) {
            Some(&(start, count)) if now < start + self.window && count >= self.limit => {
                let left = (start + self.window).saturating_duration_since(now);
                Err(left.as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    /// Counts one event for `ip`.
    pub fn count(&mut self, ip: IpAddr, now: Instant) {
        // Forget old windows, at most once a window (not on every request
        // of a crowd), so the map stays as small as the recent addresses.
        let window = self.window;
        if self.seen.len() > 10_000 && self.pruned.is_none_or(|at| now >= at + window) {
            self.seen.retain(|_, (start, _)| now < *start + window);
            self.pruned = Some(now);
        }
        let entry = self.seen.entry(counted(ip)).or_insert((now, 0));
        if now >= entry.0 + self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

/// The access rules of one server.
pub struct Access {
    /// `--publish-token`: publishes need `Authorization: Bearer TOKEN`.
    publish_token: Option<String>,
    /// `--cors-origin` values (`*` allows any origin).
    cors_origins: Vec<String>,
    /// `--auth-secret`: a private desk when set.
    secret: Option<Secret>,
    /// The host's authoriser for subscriptions and publishes.
    authorizer: Option<Authorizer>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("publish_token", &self.publish_token.as_ref().map(|_| "…"))
            .field("cors_origins", &self.cors_origins)
            .field("private", &self.secret.is_some())
            .field("authorizer", &self.authorizer.is_some())
            .finish()
    }
}

impl Access {
    /// The rules `config` asks for.
    pub fn new(config: &Config) -> Access {
        Access {
            publish_token: config.publish_token.clone(),
            cors_origins: config.cors_origins.clone(),
            secret: config.auth_secret.clone(),
            authorizer: None,
        }
    }

    /// Whether access control is on (`--auth-secret`).
    pub fn private(&self) -> bool {
        self.secret.is_some()
    }

    /// The signing secret, in private mode.
    pub fn secret(&self) -> Option<&Secret> {
        self.secret.as_ref()
    }

    /// Who the request is: from `Authorization: Bearer`, else the cookie;
    /// never from the query string (URLs end up in logs). A token that does
    /// not verify counts as none.
    pub fn identify(&self, head: &Head, now_secs: u64) -> Identity {
        let Some(secret) = &self.secret else {
            return Identity {
                who: Who::Open,
                by_cookie: false,
            };
        };
        let anonymous = |by_cookie| Identity {
            who: Who::Anonymous,
            by_cookie,
        };
        if let Some(bearer) = bearer(head) {
            if let Some(publish) = &self.publish_token {
                if constant_time_eq(bearer.as_bytes(), publish.as_bytes()) {
                    return Identity {
                        who: Who::Publisher,
                        by_cookie: false,
                    };
                }
            }
            return match token::verify(bearer, secret.as_bytes(), now_secs) {
                Ok(claims) => Identity {
                    who: Who::from_claims(claims),
                    by_cookie: false,
                },
                Err(_) => anonymous(false),
            };
        }
        match cookie(head, COOKIE) {
            Some(value) => match token::verify(value, secret.as_bytes(), now_secs) {
                Ok(claims) => Identity {
                    who: Who::from_claims(claims),
                    by_cookie: true,
                },
                Err(_) => anonymous(true),
            },
            None => anonymous(false),
        }
    }

    /// Private mode, before routing: a cookie-borne `POST` from a foreign
    /// page is refused (no cross-site request forgery), and an endpoint
    /// that needs a token is refused without one before it is routed.
    fn private_gate(&self, head: &Head, id: &Identity) -> Result<(), Response> {
        if head.method == Method::Post && id.by_cookie {
            if let Some(origin) = head.origin.as_deref() {
                let listed = self.cors_origins.iter().any(|o| o == origin);
                if !listed && !same_origin(head, origin) {
                    return Err(Response::error(403, "cross-site request refused"));
                }
            }
        }
        let read = matches!(head.method, Method::Get | Method::Head);
        let needs_token = match head.path.as_str() {
            "/events" | "/rooms" => read,
            "/messages" => read || head.method == Method::Post,
            "/publish" => head.method == Method::Post,
            _ => false,
        };
        let publisher_here = id.who == Who::Publisher && head.path == "/publish";
        let anonymous = matches!(id.who, Who::Anonymous | Who::Publisher) && !publisher_here;
        if needs_token && anonymous {
            return Err(unauthorized("a valid token is needed"));
        }
        Ok(())
    }

    /// Private mode, after routing: the rooms and role the token grants.
    pub fn permit(&self, action: &Action, id: &Identity) -> Result<(), Response> {
        if !self.private() {
            return Ok(());
        }
        let forbidden = |message: &str| Err(Response::error(403, message));
        match action {
            Action::Subscribe { rooms, agent, .. } => {
                if *agent && !matches!(id.who, Who::Agent(_)) {
                    return forbidden("role=agent needs an agent's token");
                }
                match rooms.iter().find(|room| !id.who.has_room(room)) {
                    Some(_) => forbidden("that room is not yours"),
                    None => Ok(()),
                }
            }
            Action::PostMessage { room, .. } | Action::History { room, .. } => {
                if id.who.has_room(room) {
                    Ok(())
                } else {
                    forbidden("that room is not yours")
                }
            }
            Action::Publish { room, event, data } => {
                if !(id.who == Who::Publisher || id.who.has_room(room)) {
                    return forbidden("that room is not yours");
                }
                // A `message` event reads as a chat message; a role on one
                // comes from a token only through POST /messages, else a
                // customer could pass for an agent answering.
                if event == "message" && matches!(id.who, Who::Customer(_)) && claims_a_role(data) {
                    return forbidden(
                        "a message event from a room token may not carry a \"role\"; chat messages go through POST /messages",
                    );
                }
                Ok(())
            }
            Action::Rooms => match id.who {
                Who::Agent(_) => Ok(()),
                _ => forbidden("the list of rooms is for agents"),
            },
            _ => Ok(()),
        }
    }

    /// Whether CORS answers to `cors_origin` carry
    /// `Access-Control-Allow-Credentials` (private mode, a listed origin;
    /// `*` never gets credentials).
    pub fn cors_credentials(&self, cors_origin: Option<&str>) -> bool {
        self.private() && cors_origin.is_some_and(|o| o != "*")
    }

    /// Lets the host decide on subscriptions and publishes.
    pub fn set_authorizer(&mut self, authorizer: Authorizer) {
        self.authorizer = Some(authorizer);
    }

    /// The checks that come before a request is even routed: a publish
    /// without the right token is refused before its body is looked at.
    pub fn gate(&self, head: &Head, id: &Identity) -> Result<(), Response> {
        if self.private() {
            return self.private_gate(head, id);
        }
        let publishes =
            head.method == Method::Post && matches!(head.path.as_str(), "/messages" | "/publish");
        if publishes {
            check_publish_token(head, self.publish_token.as_deref())
        } else {
            Ok(())
        }
    }

    /// The value of `Access-Control-Allow-Origin` for a request from
    /// `origin`, if that origin is allowed.
    pub fn cors_origin(&self, origin: Option<&str>) -> Option<String> {
        let origin = origin?;
        let allowed = &self.cors_origins;
        if allowed.iter().any(|o| o == "*") {
            Some("*".to_string())
        } else if allowed.iter().any(|o| o == origin) {
            Some(origin.to_string())
        } else {
            None
        }
    }

    /// The host's verdict on a subscription or publish: allowed (with the
    /// host's tag, if it gave one) or the refusal to answer with.
    pub fn ask_host(
        &mut self,
        head: &Head,
        action: &Action,
        peer: SocketAddr,
        id: &Identity,
    ) -> Result<Option<u64>, Response> {
        let Some(authorize) = self.authorizer.as_mut() else {
            return Ok(None);
        };
        let (kind, rooms) = match action {
            Action::Subscribe { rooms, .. } => (RequestKind::Subscribe, rooms.clone()),
            Action::PostMessage { room, .. } => (RequestKind::PostMessage, vec![room.clone()]),
            Action::Publish { room, .. } => (RequestKind::Publish, vec![room.clone()]),
            _ => return Ok(None),
        };
        let info = RequestInfo {
            kind,
            path: &head.path,
            query: &head.query,
            headers: &head.headers,
            rooms: &rooms,
            peer,
            requester: (id.who != Who::Open).then(|| Requester {
                role: id.who.role(),
                user: id.who.claims().map(|c| c.sub.as_str()),
                rooms: match id.who.claims().map(|c| &c.grant) {
                    Some(Grant::Rooms(rooms)) => Some(rooms.as_slice()),
                    _ => None,
                },
            }),
        };
        let (status, message, headers) = match authorize(&info) {
            Decision::Allow => return Ok(None),
            Decision::AllowAs(tag) => return Ok(Some(tag)),
            Decision::Deny { status, message } => (status, message, Vec::new()),
            Decision::DenyWith {
                status,
                message,
                headers,
            } => (status, message, headers),
        };
        let status = if (400..600).contains(&status) {
            status
        } else {
            403
        };
        let mut refusal = Response::error(status, &message);
        for (name, value) in headers {
            if is_token(&name) && !value.contains(['\r', '\n']) {
                refusal = refusal.with_header(name, value);
            } else {
                log::warn!("authoriser: dropped a malformed header {name:?}");
            }
        }
        Err(refusal)
    }
}

/// The token of `Authorization: Bearer TOKEN`, if any.
fn bearer(head: &Head) -> Option<&str> {
    head.authorization
        .as_deref()
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// The value of cookie `name` from the request's `Cookie` headers.
fn cookie<'a>(head: &'a Head, name: &str) -> Option<&'a str> {
    head.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
        .flat_map(|(_, value)| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim())
}

/// Whether `origin` is this server's own, as the request's `Host` names it.
fn same_origin(head: &Head, origin: &str) -> bool {
    let host = head
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.as_str());
    let Some(host) = host else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

/// `Authorization: Bearer TOKEN` against the `--publish-token`, if one is set.
pub fn check_publish_token(head: &Head, token: Option<&str>) -> Result<(), Response> {
    let Some(token) = token else {
        return Ok(());
    };
    match bearer(head) {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(unauthorized("wrong publish token")),
        None => Err(unauthorized("missing 'Authorization: Bearer TOKEN'")),
    }
}

/// An HTTP header name: 1 or more token characters (RFC 9110 5.6.2).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn unauthorized(message: &str) -> Response {
    Response::error(401, message).with_header("WWW-Authenticate", "Bearer realm=\"ssehub\"")
}

/// Compares without stopping at the first difference, so response timing
/// does not tell how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `data` is a JSON object with a `"role"`, as a chat message of
/// the private desk has.
fn claims_a_role(data: &str) -> bool {
    serde_json::from_slice::<serde_json::Value>(data.as_bytes())
        .is_ok_and(|value| value.get("role").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::test_head as head;

    const OPEN: Identity = Identity {
        who: Who::Open,
        by_cookie: false,
    };

    /// Ten a minute per address; an IPv6 /64 is one address (its other
    /// addresses share the count), an IPv4 and its mapped IPv6 form too;
    /// the next window starts afresh.
    #[test]
    fn rate_limits_count_an_ipv6_subnet_as_one_address() {
        let mut limit = RateLimit::per_minute(10);
        let now = Instant::now();
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        for n in 0..10 {
            assert_eq!(limit.check(ip(&format!("2001:db8::{n:x}")), now), Ok(()));
            limit.count(ip(&format!("2001:db8::{n:x}")), now);
        }
        assert_eq!(limit.check(ip("2001:db8::ffff:1"), now), Err(60));
        assert_eq!(
            limit.check(ip("2001:db8:0:1::1"), now),
            Ok(()),
            "another /64"
        );
        for _ in 0..10 {
            limit.count(ip("192.0.2.7"), now);
        }
        assert!(limit.check(ip("::ffff:192.0.2.7"), now).is_err());
        let later = now + Duration::from_secs(60);
        assert_eq!(limit.check(ip("2001:db8::1"), later), Ok(()));
    }

    fn access(token: Option<&str>, origins: &[&str]) -> Access {
        Access::new(&Config {
            publish_token: token.map(str::to_string),
            cors_origins: origins.iter().map(|o| o.to_string()).collect(),
            ..Config::default()
        })
    }

    #[test]
    fn the_publish_token_guards_only_publishes() {
        let guarded = access(Some("t"), &[]);
        let status = |raw: &str| {
            guarded
                .gate(&head(raw), &OPEN)
                .err()
                .map_or(200, |response| response.status)
        };
        assert_eq!(status("POST /messages HTTP/1.1\r\n\r\n"), 401);
        assert_eq!(
            status("POST /publish HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n"),
            401
        );
        assert_eq!(
            status("POST /publish HTTP/1.1\r\nAuthorization: Bearer tt\r\n\r\n"),
            401
        );
        assert_eq!(
            status("POST /publish HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\n"),
            200
        );
        assert_eq!(
            status("POST /publish HTTP/1.1\r\nAuthorization: bearer t \r\n\r\n"),
            200
        );
        assert_eq!(status("GET /events HTTP/1.1\r\n\r\n"), 200);
        assert_eq!(status("OPTIONS /publish HTTP/1.1\r\n\r\n"), 200);
        let open = access(None, &[]);
        assert!(open
            .gate(&head("POST /publish HTTP/1.1\r\n\r\n"), &OPEN)
            .is_ok());
    }

    #[test]
    fn cors_origins() {
        let listed = access(None, &["https://a.example"]);
        assert_eq!(
            listed.cors_origin(Some("https://a.example")).as_deref(),
            Some("https://a.example")
        );
        assert_eq!(listed.cors_origin(Some("https://b.example")), None);
        assert_eq!(listed.cors_origin(None), None);
        let any = access(None, &["*"]);
        assert_eq!(
            any.cors_origin(Some("https://b.example")).as_deref(),
            Some("*")
        );
        assert_eq!(
            access(None, &[]).cors_origin(Some("https://a.example")),
            None
        );
    }

    #[test]
    fn the_host_decides_on_subscriptions_and_publishes_only() {
        let mut rules = access(None, &[]);
        rules.set_authorizer(Box::new(|request: &RequestInfo<'_>| match request.kind {
            RequestKind::Publish => Decision::Deny {
                status: 200,
                message: "no".into(),
            },
            _ => Decision::Allow,
        }));
        let peer = "127.0.0.1:1".parse().unwrap();
        let h = head("POST /publish HTTP/1.1\r\n\r\n");
        let publish = Action::Publish {
            room: "r".into(),
            event: "e".into(),
            data: "d".into(),
        };
        let refused = rules
            .ask_host(&h, &publish, peer, &OPEN)
            .expect_err("refused");
        assert_eq!(refused.status, 403, "a status outside 400-599 becomes 403");
        assert_eq!(rules.ask_host(&h, &Action::Rooms, peer, &OPEN), Ok(None));
        let subscribe = Action::Subscribe {
            rooms: vec!["r".into()],
            last_id: None,
            agent: false,
        };
        assert_eq!(rules.ask_host(&h, &subscribe, peer, &OPEN), Ok(None));
    }

    #[test]
    fn refusals_carry_well_formed_headers_and_allowances_a_tag() {
        let mut rules = access(None, &[]);
        rules.set_authorizer(Box::new(|request: &RequestInfo<'_>| {
            match request.query_param("key").as_deref() {
                Some("good") => Decision::AllowAs(42),
                _ => Decision::DenyWith {
                    status: 401,
                    message: "a key is needed".into(),
                    headers: vec![
                        ("WWW-Authenticate".into(), "Key".into()),
                        ("Retry-After".into(), "5".into()),
                        ("Bad Name".into(), "x".into()),
                        ("X-Split".into(), "a\r\nInjected: yes".into()),
                    ],
                },
            }
        }));
        let peer = "127.0.0.1:1".parse().unwrap();
        let subscribe = Action::Subscribe {
            rooms: vec!["r".into()],
            last_id: None,
            agent: false,
        };
        let good = head("GET /events?key=good HTTP/1.1\r\n\r\n");
        assert_eq!(rules.ask_host(&good, &subscribe, peer, &OPEN), Ok(Some(42)));
        let bad = head("GET /events?key=bad HTTP/1.1\r\n\r\n");
        let refusal = rules
            .ask_host(&bad, &subscribe, peer, &OPEN)
            .expect_err("refused");
        assert_eq!(refusal.status, 401);
        let names: Vec<&str> = refusal
            .extra_headers
            .iter()
            .map(|(n, _)| n.as_ref())
            .collect();
        assert_eq!(names, ["WWW-Authenticate", "Retry-After"]);
    }
}
