//! Responses as bytes: status line, headers and body, and the preamble of
//! an event stream. Pure code: the caller appends the bytes to a
//! connection's output buffer.

use std::borrow::Cow;
use std::io::Write;
use std::sync::Arc;

use crate::hub::json_string;

/// The reason phrase of the status codes the server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        402 => "Payment Required",
        406 => "Not Acceptable",
        409 => "Conflict",
        410 => "Gone",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ if (400..500).contains(&status) => "Client Error",
        _ if (500..600).contains(&status) => "Server Error",
        _ => "Unknown",
    }
}

/// One response that is not a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// The body (also its `Content-Length`, even for `HEAD`).
    pub body: Vec<u8>,
    /// Headers beyond the usual ones, e.g. `Allow` or `WWW-Authenticate`.
    pub extra_headers: Vec<(Cow<'static, str>, String)>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: body.into(),
            extra_headers: Vec::new(),
        }
    }

    /// A JSON error: `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Response {
        let body = serde_json::json!({ "error": message }).to_string();
        Response::json(status, body)
    }

    /// A `200` in the Prometheus text format.
    pub fn prometheus(text: String) -> Response {
        Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: text.into_bytes(),
            extra_headers: Vec::new(),
        }
    }

    /// The same response with one more header.
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<String>,
    ) -> Response {
        self.extra_headers.push((name.into(), value.into()));
        self
    }
}

/// Per-request facts that shape the headers of any response.
#[derive(Debug, Clone, Copy)]
pub struct Framing<'a> {
    /// `HEAD` request: headers only.
    pub head_only: bool,
    /// The connection stays open after this response.
    pub keep_alive: bool,
    /// HTTP minor version of the request, echoed in the status line.
    pub minor_version: u8,
    /// The allowed `Origin` to echo in CORS headers, if any.
    pub cors_origin: Option<&'a str>,
    /// Add `Access-Control-Allow-Credentials: true` to the CORS headers.
    pub cors_credentials: bool,
}

/// Appends `response` as bytes to `out`.
pub fn write_response(response: &Response, framing: Framing<'_>, out: &mut Vec<u8>) {
    status_line(response.status, framing.minor_version, out);
    // 204 carries no content, so neither its type nor a Content-Length
    // (RFC 9110 8.6); everything else has both.
    if response.status != 204 {
        let _ = write!(out, "Content-Type: {}\r\n", response.content_type);
        let _ = write!(out, "Content-Length: {}\r\n", response.body.len());
    }
    for (name, value) in &response.extra_headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    cors_headers(framing.cors_origin, framing.cors_credentials, out);
    connection_header(framing.keep_alive, framing.minor_version, out);
    out.extend_from_slice(b"\r\n");
    if !framing.head_only && response.status != 204 {
        out.extend_from_slice(&response.body);
    }
}

/// Appends the headers that open an event stream (the body follows as events).
pub fn write_stream_head(
    minor_version: u8,
    cors_origin: Option<&str>,
    cors_credentials: bool,
    out: &mut Vec<u8>,
) {
    status_line(200, minor_version, out);
    out.extend_from_slice(
        b"Content-Type: text/event-stream\r\n\
          Cache-Control: no-cache, no-transform\r\n\
          X-Accel-Buffering: no\r\n",
    );
    cors_headers(cors_origin, cors_credentials, out);
    // A stream is read until the server closes it; HTTP/1.0 clients need
    // no chunking, and HTTP/1.1 clients learn that the body ends with the
    // connection.
    out.extend_from_slice(b"Connection: close\r\n\r\n");
}

/// Appends the `100 Continue` interim response.
pub fn write_continue(out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
}

/// Appends a CORS preflight answer: `204` with the allow headers when the
/// origin is allowed, without them otherwise.
pub fn write_preflight(framing: Framing<'_>, out: &mut Vec<u8>) {
    status_line(204, framing.minor_version, out);
    if framing.cors_origin.is_some() {
        cors_headers(framing.cors_origin, framing.cors_credentials, out);
        out.extend_from_slice(
            b"Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n\
              Access-Control-Allow-Headers: Last-Event-ID, Content-Type, Authorization\r\n\
              Access-Control-Max-Age: 600\r\n",
        );
    }
    connection_header(framing.keep_alive, framing.minor_version, out);
    out.extend_from_slice(b"\r\n");
}

fn status_line(status: u16, minor_version: u8, out: &mut Vec<u8>) {
    let _ = write!(
        out,
        "HTTP/1.{} {} {}\r\n",
        minor_version.min(1),
        status,
        reason(status)
    );
}

fn cors_headers(origin: Option<&str>, credentials: bool, out: &mut Vec<u8>) {
    if let Some(origin) = origin {
        let _ = write!(
            out,
            "Access-Control-Allow-Origin: {origin}\r\nVary: Origin\r\n"
        );
        if credentials {
            out.extend_from_slice(b"Access-Control-Allow-Credentials: true\r\n");
        }
    }
}

fn connection_header(keep_alive: bool, minor_version: u8, out: &mut Vec<u8>) {
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if minor_version == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
}

/// `GET /healthz`'s body.
/// `redis` is the cluster's store: up, down, or `None` without one.
pub fn health_json(
    uptime_s: u64,
    streams: usize,
    connections: usize,
    last_id: u64,
    redis: Option<bool>,
) -> String {
    let redis = match redis {
        Some(true) => ",\"redis\":\"up\"",
        Some(false) => ",\"redis\":\"down\"",
        None => "",
    };
    format!(
        "{{\"status\":\"ok\",\"version\":\"{}\",\"uptime_s\":{uptime_s},\"streams\":{streams},\"connections\":{connections},\"last_id\":{last_id}{redis}}}",
        env!("CARGO_PKG_VERSION"),
    )
}

/// The `201` body of a chat message: `{"id","room","time"}`.
pub fn created_message_json(id: u64, room: &str, time: u64) -> String {
    format!(
        "{{\"id\":{id},\"room\":{},\"time\":{time}}}",
        json_string(room)
    )
}

/// The `201` body of a published event: `{"id"}`.
pub fn created_event_json(id: u64) -> String {
    format!("{{\"id\":{id}}}")
}

/// The `hello` event's data.
pub fn hello_json(rooms: &[Arc<str>], agent: bool, heartbeat_ms: u64, last_id: u64) -> String {
    let rooms: Vec<String> = rooms.iter().map(|r| json_string(r)).collect();
    format!(
        "{{\"rooms\":[{}],\"role\":\"{}\",\"heartbeat_ms\":{heartbeat_ms},\"last_id\":{last_id}}}",
        rooms.join(","),
        if agent { "agent" } else { "customer" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing() -> Framing<'static> {
        Framing {
            head_only: false,
            keep_alive: true,
            minor_version: 1,
            cors_origin: None,
            cors_credentials: false,
        }
    }

    #[test]
    fn json_error_bytes() {
        let mut out = Vec::new();
        write_response(&Response::error(404, "no such room"), framing(), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n{\"error\":\"no such room\"}"
        );
    }

    #[test]
    fn head_keeps_length_but_drops_body() {
        let mut out = Vec::new();
        let f = Framing {
            head_only: true,
            keep_alive: false,
            minor_version: 0,
            cors_origin: Some("http://a"),
            cors_credentials: false,
        };
        write_response(&Response::json(200, "[]"), f, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
             Access-Control-Allow-Origin: http://a\r\nVary: Origin\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn preflight_without_origin_has_no_cors() {
        let mut out = Vec::new();
        write_preflight(framing(), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 204 No Content\r\n\r\n"
        );
    }

    #[test]
    fn stream_head_bytes() {
        let mut out = Vec::new();
        write_stream_head(1, None, false, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"));
        assert!(text.contains("Cache-Control: no-cache, no-transform\r\n"));
        assert!(text.contains("X-Accel-Buffering: no\r\n"));
        assert!(!text.contains("Content-Length"));
    }
}
