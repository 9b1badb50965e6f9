//! Who may do what, decided in one place: the `--publish-token`, CORS
//! origins, and the host's authoriser. The router only says what a request
//! is; this module says whether it may happen.

use std::net::SocketAddr;

use crate::config::Config;
use crate::hooks::{Authorizer, Decision, RequestInfo, RequestKind};
use crate::request::{Head, Method};
use crate::response::Response;
use crate::router::Action;

/// The access rules of one server.
pub struct Access {
    /// `--publish-token`: publishes need `Authorization: Bearer TOKEN`.
    publish_token: Option<String>,
    /// `--cors-origin` values (`*` allows any origin).
    cors_origins: Vec<String>,
    /// The host's authoriser for subscriptions and publishes.
    authorizer: Option<Authorizer>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("publish_token", &self.publish_token.as_ref().map(|_| "…"))
            .field("cors_origins", &self.cors_origins)
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
            authorizer: None,
        }
    }

    /// Lets the host decide on subscriptions and publishes.
    pub fn set_authorizer(&mut self, authorizer: Authorizer) {
        self.authorizer = Some(authorizer);
    }

    /// The checks that come before a request is even routed: a publish
    /// without the right token is refused before its body is looked at.
    pub fn gate(&self, head: &Head) -> Result<(), Response> {
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

/// `Authorization: Bearer TOKEN` against the `--publish-token`, if one is set.
pub fn check_publish_token(head: &Head, token: Option<&str>) -> Result<(), Response> {
    let Some(token) = token else {
        return Ok(());
    };
    let given = head
        .authorization
        .as_deref()
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim);
    match given {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{parse_head, Limits, Parsed};

    fn head(raw: &str) -> Head {
        let limits = Limits {
            max_head: 8192,
            max_body: 65536,
        };
        match parse_head(raw.as_bytes(), limits) {
            Ok(Parsed::Complete(head, _)) => head,
            other => panic!("{other:?}"),
        }
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
                .gate(&head(raw))
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
        assert!(open.gate(&head("POST /publish HTTP/1.1\r\n\r\n")).is_ok());
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
        let refused = rules.ask_host(&h, &publish, peer).expect_err("refused");
        assert_eq!(refused.status, 403, "a status outside 400-599 becomes 403");
        assert_eq!(rules.ask_host(&h, &Action::Rooms, peer), Ok(None));
        let subscribe = Action::Subscribe {
            rooms: vec!["r".into()],
            last_id: None,
            agent: false,
        };
        assert_eq!(rules.ask_host(&h, &subscribe, peer), Ok(None));
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
        assert_eq!(rules.ask_host(&good, &subscribe, peer), Ok(Some(42)));
        let bad = head("GET /events?key=bad HTTP/1.1\r\n\r\n");
        let refusal = rules.ask_host(&bad, &subscribe, peer).expect_err("refused");
        assert_eq!(refusal.status, 401);
        let names: Vec<&str> = refusal
            .extra_headers
            .iter()
            .map(|(n, _)| n.as_ref())
            .collect();
        assert_eq!(names, ["WWW-Authenticate", "Retry-After"]);
    }
}
