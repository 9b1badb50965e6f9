//! The desk's session endpoints (`--auth-secret`): a visitor's private
//! room and token (`POST /session`), who a request is (`GET /session`),
//! an agent's login and logout. The token travels as an `HttpOnly`,
//! `SameSite=Strict` cookie; the per-address rate limits live here.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::access::{Identity, RateLimit, Who, COOKIE};
use crate::config::Secret;
use crate::hub::json_string;
use crate::request::Head;
use crate::response::Response;
use crate::token::{self, Claims, Grant};

/// New visitor rooms per client address per minute.
const NEW_ROOMS_PER_MINUTE: u32 = 10;
/// Failed logins per client address per minute.
const FAILED_LOGINS_PER_MINUTE: u32 = 10;

/// What the session endpoints answer one request.
#[derive(Debug)]
pub enum Ask {
    /// `POST /session`, with the name the body gives.
    Start(Option<String>),
    /// `GET /session`.
    Info,
    /// `POST /login` with a token.
    Login(String),
    /// `POST /logout`.
    Logout,
}

/// The session endpoints' state: the rate limits.
#[derive(Debug)]
pub struct Sessions {
    visitor_ttl: Duration,
    new_rooms: RateLimit,
    failed_logins: RateLimit,
}

impl Sessions {
    /// Visitors' tokens live `visitor_ttl`.
    pub fn new(visitor_ttl: Duration) -> Sessions {
        Sessions {
            visitor_ttl,
            new_rooms: RateLimit::per_minute(NEW_ROOMS_PER_MINUTE),
            failed_logins: RateLimit::per_minute(FAILED_LOGINS_PER_MINUTE),
        }
    }

    /// Answers `ask` from `id` at `peer`. Without a secret (open mode)
    /// there are no sessions: `GET /session` says so, the rest is 404.
    #[allow(clippy::too_many_arguments)]
    pub fn answer(
        &mut self,
        ask: Ask,
        id: &Identity,
        head: &Head,
        peer: IpAddr,
        secret: Option<&Secret>,
        now: Instant,
        now_secs: u64,
    ) -> Response {
        let Some(secret) = secret else {
            return match ask {
                Ask::Info => Response::json(200, info_json(&Who::Open)),
                _ => Response::error(404, "access control is off (no --auth-secret)"),
            };
        };
        let secure = forwarded_https(head);
        match ask {
            Ask::Info => Response::json(200, info_json(&id.who)),
            Ask::Logout => {
                Response::json(204, "").with_header("Set-Cookie", set_cookie("", 0, secure))
            }
            Ask::Login(presented) => {
                if let Err(wait) = self.failed_logins.check(peer, now) {
                    return too_many(wait, "too many failed logins; try again later");
                }
                match token::verify(&presented, secret.as_bytes(), now_secs) {
                    Ok(claims) => {
                        let max_age = claims.exp.saturating_sub(now_secs);
                        Response::json(204, "")
                            .with_header("Set-Cookie", set_cookie(&presented, max_age, secure))
                    }
                    Err(_) => {
                        self.failed_logins.count(peer, now);
                        Response::error(401, "that token is not valid here")
                    }
                }
            }
            Ask::Start(name) => self.start(name, id, peer, secret, secure, now, now_secs),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        name: Option<String>,
        id: &Identity,
        peer: IpAddr,
        secret: &Secret,
        secure: bool,
        now: Instant,
        now_secs: u64,
    ) -> Response {
        let ttl = self.visitor_ttl.as_secs();
        let renewed = now_secs.saturating_add(ttl);
        // A customer keeps their rooms (the same conversation across
        // reloads and tabs); anyone else starts a new one. A visitor's
        // token is renewed; a host's keeps the end the host gave it.
        let (status, user, rooms, exp, visitor) = match &id.who {
            Who::Customer(Claims {
                sub,
                grant: Grant::Rooms(rooms),
                exp,
                visitor,
                ..
            }) => (
                200,
                name.unwrap_or_else(|| sub.clone()),
                rooms.clone(),
                if *visitor { renewed } else { *exp },
                *visitor,
            ),
            _ => {
                if let Err(wait) = self.new_rooms.check(peer, now) {
                    return too_many(wait, "too many new conversations; try again later");
                }
                let room = match token::random_room() {
                    Ok(room) => room,
                    Err(e) => {
                        log::error!("no randomness for a new room: {e}");
                        return Response::error(500, "cannot start a conversation now");
                    }
                };
                self.new_rooms.count(peer, now);
                let user = name.unwrap_or_else(|| "visitor".into());
                (201, user, vec![room], renewed, true)
            }
        };
        let claims = Claims {
            sub: user.clone(),
            exp,
            nbf: None,
            iat: Some(now_secs),
            grant: Grant::Rooms(rooms.clone()),
            visitor,
        };
        let token = token::sign(&claims, secret.as_bytes());
        let body = format!(
            "{{\"room\":{},\"token\":{},\"user\":{},\"expires\":{}}}",
            json_string(&rooms[0]),
            json_string(&token),
            json_string(&user),
            claims.exp.saturating_mul(1000)
        );
        let max_age = exp.saturating_sub(now_secs);
        Response::json(status, body).with_header("Set-Cookie", set_cookie(&token, max_age, secure))
    }
}

/// `GET /session`'s body for `who`.
fn info_json(who: &Who) -> String {
    let (user, rooms, expires) = match who {
        Who::Customer(claims) => {
            let rooms = match &claims.grant {
                Grant::Rooms(rooms) => {
                    let list: Vec<String> = rooms.iter().map(|r| json_string(r)).collect();
                    format!("[{}]", list.join(","))
                }
                Grant::Agent => "null".into(),
            };
            (
                json_string(&claims.sub),
                rooms,
                claims.exp.saturating_mul(1000).to_string(),
            )
        }
        // An agent's rooms are all of them: null, as in "no limit".
        Who::Agent(claims) => (
            json_string(&claims.sub),
            "null".into(),
            claims.exp.saturating_mul(1000).to_string(),
        ),
        _ => ("null".into(), "[]".into(), "null".into()),
    };
    // The static publish token is no person: `anonymous`, as the contract's
    // three roles go, and said apart by `publisher`.
    let (role, publisher) = match who {
        Who::Publisher => ("anonymous", ",\"publisher\":true"),
        _ => (who.role(), ""),
    };
    format!(
        "{{\"role\":\"{role}\",\"user\":{user},\"rooms\":{rooms},\"expires\":{expires},\"private\":{}{publisher}}}",
        *who != Who::Open
    )
}

/// The cookie that carries `token` for `max_age` seconds (0 clears it).
fn set_cookie(token: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}")
}

/// The request came through a TLS proxy (`X-Forwarded-Proto: https`).
fn forwarded_https(head: &Head) -> bool {
    head.headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("x-forwarded-proto") && value.eq_ignore_ascii_case("https")
    })
}

fn too_many(wait_secs: u64, message: &str) -> Response {
    Response::error(429, message).with_header("Retry-After", wait_secs.to_string())
}
