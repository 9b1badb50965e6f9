//! The router: a parsed request in, an [`Action`] out, with the contract's
//! validation done here. No I/O and no state: the server carries the
//! action out.

use crate::hub::valid_room;
use crate::request::{query_pairs, Head, Method};
use crate::response::Response;
use crate::sse::check_event_name;

/// The room used when a request names none.
pub const DEFAULT_ROOM: &str = "lobby";
/// Longest `user`, in characters.
pub const MAX_USER_CHARS: usize = 64;
/// Longest `text`, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;
/// Most rooms one stream may subscribe to.
pub const MAX_STREAM_ROOMS: usize = 64;

/// What the server should do with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open an event stream on these rooms.
    Subscribe {
        /// The rooms, deduplicated, in the order given.
        rooms: Vec<String>,
        /// Resume after this id (header first, then the query parameters).
        last_id: Option<u64>,
        /// `role=agent`.
        agent: bool,
    },
    /// Broadcast a chat message.
    PostMessage {
        /// Room to post to.
        room: String,
        /// Author as the body names it; `None` in private mode, where the
        /// author is the token's.
        user: Option<String>,
        /// Text of the message.
        text: String,
    },
    /// Broadcast a custom event.
    Publish {
        /// Room to publish to.
        room: String,
        /// Event name.
        event: String,
        /// The body with line ends normalised to LF.
        data: String,
    },
    /// Answer a room's retained history.
    History {
        /// The room.
        room: String,
        /// Only ids above this.
        after: u64,
        /// Only the newest this many.
        limit: Option<usize>,
    },
    /// Answer the room list.
    Rooms,
    /// Answer the health check.
    Health,
    /// Answer the Prometheus metrics.
    Metrics,
    /// Answer a CORS preflight.
    Preflight,
    /// Serve a file of the page (the server looks the path up).
    Static,
    /// `POST /session`: start or keep a visitor's conversation.
    StartSession {
        /// The visitor's display name, if the body gives one.
        name: Option<String>,
    },
    /// `GET /session`: who the request is.
    Session,
    /// `POST /login`: set this token as the cookie.
    Login {
        /// The token from the body.
        token: String,
    },
    /// `POST /logout`: clear the cookie.
    Logout,
    /// Answer with this error response.
    Reject(Response),
}

/// Routes one request: what it asks for, checked for shape. Whether it may
/// happen is `access`'s decision. In `private` mode (`--auth-secret`) a
/// message's author comes from its token, so the body's `user` is ignored.
pub fn route(head: &Head, body: &[u8], private: bool) -> Action {
    if head.method == Method::Options {
        return Action::Preflight;
    }
    let allow = match head.path.as_str() {
        "/events" | "/rooms" | "/healthz" | "/metrics" => "GET, HEAD, OPTIONS",
        "/messages" => "GET, HEAD, POST, OPTIONS",
        "/publish" => "POST, OPTIONS",
        "/session" => "GET, HEAD, POST, OPTIONS",
        "/login" | "/logout" => "POST, OPTIONS",
        _ => {
            return match head.method {
                Method::Get | Method::Head => Action::Static,
                _ => method_not_allowed("GET, HEAD, OPTIONS"),
            }
        }
    };
    let read = matches!(head.method, Method::Get | Method::Head);
    let result = match (head.path.as_str(), read, head.method) {
        ("/events", true, _) => subscribe(head),
        ("/messages", true, _) => history(head),
        ("/rooms", true, _) => Ok(Action::Rooms),
        ("/healthz", true, _) => Ok(Action::Health),
        ("/metrics", true, _) => Ok(Action::Metrics),
        ("/messages", false, Method::Post) => post_message(head, body, private),
        ("/publish", false, Method::Post) => publish(head, body),
        ("/session", true, _) => Ok(Action::Session),
        ("/session", false, Method::Post) => start_session(head, body),
        ("/login", false, Method::Post) => login(head, body),
        ("/logout", false, Method::Post) => Ok(Action::Logout),
        _ => return method_not_allowed(allow),
    };
    result.unwrap_or_else(Action::Reject)
}

fn method_not_allowed(allow: &'static str) -> Action {
    Action::Reject(Response::error(405, "method not allowed").with_header("Allow", allow))
}

fn bad(message: &str) -> Response {
    Response::error(400, message)
}

/// The query's pairs, or a 400 if one does not decode.
fn pairs(head: &Head) -> Result<Vec<(String, String)>, Response> {
    query_pairs(&head.query)
        .collect::<Result<Vec<_>, ()>>()
        .map_err(|()| bad("query string is not valid percent-encoded UTF-8"))
}

fn check_room(room: &str) -> Result<(), Response> {
    if valid_room(room) {
        Ok(())
    } else {
        Err(bad("room must be 1-64 characters of A-Z a-z 0-9 _ - ."))
    }
}

fn subscribe(head: &Head) -> Result<Action, Response> {
    let mut rooms: Vec<String> = Vec::new();
    let mut query_last_id = None;
    let mut agent = false;
    for (name, value) in pairs(head)? {
        match name.as_str() {
            "room" => {
                check_room(&value)?;
                if !rooms.contains(&value) {
                    rooms.push(value);
                }
            }
            "lastEventId" | "last_event_id" => query_last_id = parse_last_id(&value),
            "role" => match value.as_str() {
                "agent" => agent = true,
                "customer" | "" => agent = false,
                _ => return Err(bad("role must be 'agent' or 'customer'")),
            },
            _ => {}
        }
    }
    if rooms.len() > MAX_STREAM_ROOMS {
        return Err(bad("too many rooms for one stream (at most 64)"));
    }
    if rooms.is_empty() {
        rooms.push(DEFAULT_ROOM.to_string());
    }
    // The header wins: a browser reconnecting keeps the URL it started with,
    // and the header carries the newer id.
    let header_last_id = head.last_event_id.as_deref().and_then(parse_last_id);
    Ok(Action::Subscribe {
        rooms,
        last_id: header_last_id.or(query_last_id),
        agent,
    })
}

/// A last event id is a decimal number; anything else counts as absent.
fn parse_last_id(value: &str) -> Option<u64> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn history(head: &Head) -> Result<Action, Response> {
    let mut room = DEFAULT_ROOM.to_string();
    let mut after = 0;
    let mut limit = None;
    for (name, value) in pairs(head)? {
        match name.as_str() {
            "room" => {
                check_room(&value)?;
                room = value;
            }
            "after" => {
                after = value
                    .parse()
                    .map_err(|_| bad("after must be a whole number"))?
            }
            "limit" => {
                limit = Some(
                    value
                        .parse()
                        .map_err(|_| bad("limit must be a whole number"))?,
                )
            }
            _ => {}
        }
    }
    Ok(Action::History { room, after, limit })
}

/// A JSON body's object, or the 415 / 400 it earns. An empty body is an
/// empty object when `empty_ok`, whatever its `Content-Type`.
fn json_object(
    head: &Head,
    body: &[u8],
    empty_ok: bool,
) -> Result<serde_json::Map<String, serde_json::Value>, Response> {
    // An optional body left out is no body of the wrong type (`curl -d ''`
    // sends one with a form type).
    if empty_ok && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    if let Some(content_type) = &head.content_type {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media != "application/json" && !media.ends_with("+json") {
            return Err(Response::error(
                415,
                "Content-Type must be application/json",
            ));
        }
    }
    match serde_json::from_slice(body) {
        Ok(serde_json::Value::Object(object)) => Ok(object),
        _ => Err(bad("body must be a JSON object")),
    }
}

/// A string field of a JSON object: absent (or null), a string, or a 400.
fn string_field<'a>(
    object: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<&'a str>, Response> {
    match object.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(bad(&format!("'{name}' must be a string"))),
    }
}

fn check_user(user: &str, name: &str) -> Result<(), Response> {
    let chars = user.chars().count();
    if chars == 0 || chars > MAX_USER_CHARS {
        return Err(bad(&format!("'{name}' must be 1-64 characters")));
    }
    Ok(())
}

fn post_message(head: &Head, body: &[u8], private: bool) -> Result<Action, Response> {
    let object = json_object(head, body, false)?;
    let field = |name: &str| string_field(&object, name);
    let room = field("room")?.unwrap_or(DEFAULT_ROOM).to_string();
    check_room(&room)?;
    let user = if private {
        None
    } else {
        Some(field("user")?.ok_or_else(|| bad("'user' is required"))?)
    };
    let text = field("text")?.ok_or_else(|| bad("'text' is required"))?;
    if let Some(user) = user {
        check_user(user, "user")?;
    }
    let text_chars = text.chars().count();
    if text_chars == 0 || text_chars > MAX_TEXT_CHARS {
        return Err(bad("'text' must be 1-4000 characters"));
    }
    Ok(Action::PostMessage {
        room,
        user: user.map(str::to_string),
        text: text.to_string(),
    })
}

fn start_session(head: &Head, body: &[u8]) -> Result<Action, Response> {
    let object = json_object(head, body, true)?;
    let name = string_field(&object, "name")?;
    if let Some(name) = name {
        check_user(name, "name")?;
    }
    Ok(Action::StartSession {
        name: name.map(str::to_string),
    })
}

/// Anything but a JSON body with a string `token` is a login with no token,
/// which fails (401) and counts against the address like a wrong one.
fn login(head: &Head, body: &[u8]) -> Result<Action, Response> {
    let token = json_object(head, body, false).ok().and_then(|object| {
        string_field(&object, "token")
            .ok()
            .flatten()
            .map(str::to_string)
    });
    Ok(Action::Login {
        token: token.unwrap_or_default(),
    })
}

fn publish(head: &Head, body: &[u8]) -> Result<Action, Response> {
    let mut room = DEFAULT_ROOM.to_string();
    let mut event = "message".to_string();
    for (name, value) in pairs(head)? {
        match name.as_str() {
            "room" => {
                check_room(&value)?;
                room = value;
            }
            "event" => {
                check_event_name(&value).map_err(|e| bad(&e.to_string()))?;
                event = value;
            }
            _ => {}
        }
    }
    if body.is_empty() {
        return Err(bad("body must not be empty"));
    }
    let text = std::str::from_utf8(body).map_err(|_| bad("body must be UTF-8 text"))?;
    Ok(Action::Publish {
        room,
        event,
        data: crate::sse::normalize_line_ends(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::test_head as head;

    fn status(action: &Action) -> u16 {
        match action {
            Action::Reject(r) => r.status,
            _ => 200,
        }
    }

    #[test]
    fn subscribe_parameters() {
        let h = head("GET /events?room=a&room=b&room=a&lastEventId=7&role=agent HTTP/1.1\r\n\r\n");
        assert_eq!(
            route(&h, b"", false),
            Action::Subscribe {
                rooms: vec!["a".into(), "b".into()],
                last_id: Some(7),
                agent: true
            }
        );
        let h = head("GET /events?last_event_id=3 HTTP/1.1\r\nLast-Event-ID: 9\r\n\r\n");
        assert_eq!(
            route(&h, b"", false),
            Action::Subscribe {
                rooms: vec!["lobby".into()],
                last_id: Some(9),
                agent: false
            }
        );
        let h = head("GET /events HTTP/1.1\r\nLast-Event-ID: abc\r\n\r\n");
        assert!(matches!(
            route(&h, b"", false),
            Action::Subscribe { last_id: None, .. }
        ));
    }

    #[test]
    fn status_table() {
        let json = "Content-Type: application/json\r\n";
        type Case<'a> = (&'a str, &'a str, &'a [u8], Option<&'a str>, u16);
        let cases: &[Case<'_>] = &[
            ("GET /events?room=bad%20room", "", b"", None, 400),
            ("GET /events?room=%zz", "", b"", None, 400),
            ("GET /events?role=boss", "", b"", None, 400),
            ("POST /events", "", b"", None, 405),
            ("DELETE /messages", "", b"", None, 405),
            ("GET /publish", "", b"", None, 405),
            ("PUT /index.html", "", b"", None, 405),
            ("GET /messages?after=x", "", b"", None, 400),
            ("GET /messages?limit=-1", "", b"", None, 400),
            ("GET /messages?room=a&after=1&limit=2", "", b"", None, 200),
            (
                "POST /messages",
                json,
                br#"{"user":"a","text":"b"}"#,
                None,
                200,
            ),
            (
                "POST /messages",
                "",
                br#"{"user":"a","text":"b"}"#,
                None,
                200,
            ),
            (
                "POST /messages",
                "Content-Type: text/plain\r\n",
                br#"{"user":"a","text":"b"}"#,
                None,
                415,
            ),
            // POST /session's body is optional: none is fine whatever its
            // type says (curl -d ''), a form is not JSON.
            (
                "POST /session",
                "Content-Type: application/x-www-form-urlencoded\r\n",
                b"",
                None,
                200,
            ),
            (
                "POST /session",
                "Content-Type: application/x-www-form-urlencoded\r\n",
                b"name=x",
                None,
                415,
            ),
            ("POST /messages", json, br#"{"user":"a"}"#, None, 400),
            (
                "POST /messages",
                json,
                br#"{"user":"","text":"b"}"#,
                None,
                400,
            ),
            (
                "POST /messages",
                json,
                br#"{"user":1,"text":"b"}"#,
                None,
                400,
            ),
            (
                "POST /messages",
                json,
                br#"{"room":"x y","user":"a","text":"b"}"#,
                None,
                400,
            ),
            ("POST /messages", json, br#"[1]"#, None, 400),
            ("POST /messages", json, b"not json", None, 400),
            (
                "POST /messages",
                json,
                br#"{"user":"a","text":"b"}"#,
                Some("t"),
                401,
            ),
            ("POST /publish?event=", "", b"x", None, 400),
            ("POST /publish?event=a:b", "", b"x", None, 400),
            ("POST /publish", "", b"", None, 400),
            ("POST /publish", "", b"\xff", None, 400),
            (
                "POST /publish",
                "Authorization: Bearer nope\r\n",
                b"x",
                Some("t"),
                401,
            ),
            (
                "POST /publish",
                "Authorization: Bearer t\r\n",
                b"x",
                Some("t"),
                200,
            ),
            ("GET /anything/else", "", b"", None, 200),
        ];
        for (line, headers, body, token, expected) in cases {
            let h = head(&format!("{line} HTTP/1.1\r\n{headers}\r\n"));
            assert_eq!(
                status(
                    &crate::access::check_publish_token(&h, *token)
                        .map_or_else(Action::Reject, |()| route(&h, body, false))
                ),
                *expected,
                "{line} {headers:?}"
            );
        }
    }

    #[test]
    fn text_length_counts_characters() {
        let json = |text: &str| format!(r#"{{"user":"u","text":"{text}"}}"#);
        let h = head("POST /messages HTTP/1.1\r\n\r\n");
        assert_eq!(
            status(&route(&h, json(&"é".repeat(4000)).as_bytes(), false)),
            200
        );
        assert_eq!(
            status(&route(&h, json(&"é".repeat(4001)).as_bytes(), false)),
            400
        );
    }

    #[test]
    fn publish_normalises_line_ends() {
        let h = head("POST /publish?room=s&event=reading HTTP/1.1\r\n\r\n");
        assert_eq!(
            route(&h, b"a\r\nb\rc\n", false),
            Action::Publish {
                room: "s".into(),
                event: "reading".into(),
                data: "a\nb\nc\n".into()
            }
        );
    }

    #[test]
    fn wrong_method_names_allowed_ones() {
        let h = head("PUT /publish HTTP/1.1\r\n\r\n");
        let Action::Reject(r) = route(&h, b"", false) else {
            panic!()
        };
        assert_eq!(
            r.extra_headers,
            vec![("Allow".into(), "POST, OPTIONS".to_string())]
        );
    }
}
