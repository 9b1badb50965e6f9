//! HTTP/1.x request heads and bodies: bytes in, [`Head`] or an
//! [`HttpError`] out, with every limit enforced. No I/O.
//!
//! Incomplete input is a value ([`Parsed::Partial`]), not an error: the
//! connection waits for more bytes. Only an [`HttpError`] ends a request,
//! and only on its own connection.

/// Most header lines one request may carry.
const MAX_HEADERS: usize = 64;
/// Longest chunk-size line (with extensions) accepted in a chunked body.
const MAX_CHUNK_LINE: usize = 1024;

/// The request method, as far as the router cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`: answered like `GET`, without the body.
    Head,
    /// `POST`
    Post,
    /// `OPTIONS`: CORS preflight.
    Options,
    /// Anything else (`PUT`, `DELETE`, …): answered 405 on API paths.
    Other,
}

/// How the request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no `Content-Length`, not chunked).
    None,
    /// `Content-Length: N`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// The parts of a request head the server uses, copied out of the buffer so
/// that the buffer can be reused at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The method.
    pub method: Method,
    /// The path, still percent-encoded, without the query.
    pub path: String,
    /// The query string after `?`, still percent-encoded (empty if none).
    pub query: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// How the body is framed.
    pub body: BodyFraming,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// The connection stays open after the response.
    pub keep_alive: bool,
    /// `Last-Event-ID` header, trimmed.
    pub last_event_id: Option<String>,
    /// `Origin` header, for CORS.
    pub origin: Option<String>,
    /// `Authorization` header: the `--publish-token` or an access token.
    pub authorization: Option<String>,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// Every header as sent, for hooks that need more than the above.
    pub headers: Vec<(String, String)>,
}

/// Why a request could not be accepted; each maps to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Malformed request line, header or chunk: answer 400 and close.
    BadRequest(&'static str),
    /// Header block over the limit: answer 431 and close.
    HeadersTooLarge,
    /// Request target over the limit: answer 414 and close.
    UriTooLong,
    /// Declared or received body over `--max-body`: answer 413 and close.
    BodyTooLarge,
    /// An `Expect` other than `100-continue`: answer 417 and close.
    ExpectationFailed,
    /// A transfer coding other than chunked, or HTTP/2 and beyond: answer 501 and close.
    NotImplemented(&'static str),
}

impl HttpError {
    /// The status code this error is answered with.
    pub fn status(self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::HeadersTooLarge => 431,
            HttpError::UriTooLong => 414,
            HttpError::BodyTooLarge => 413,
            HttpError::ExpectationFailed => 417,
            HttpError::NotImplemented(_) => 501,
        }
    }

    /// The message put in the JSON error body.
    pub fn message(self) -> &'static str {
        match self {
            HttpError::BadRequest(why) => why,
            HttpError::HeadersTooLarge => "request header block is too large",
            HttpError::UriTooLong => "request target is too long",
            HttpError::BodyTooLarge => "request body is too large",
            HttpError::ExpectationFailed => "only Expect: 100-continue is supported",
            HttpError::NotImplemented(why) => why,
        }
    }
}

/// The result of looking at the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole head: the head and the number of bytes it used.
    Complete(Head, usize),
    /// Not a whole head yet; read more.
    Partial,
}

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest header block in bytes (request line included).
    pub max_head: usize,
    /// Largest body in bytes.
    pub max_body: usize,
}

/// Parses a request head from the start of `buf`.
///
/// # Errors
/// An [`HttpError`] when the bytes can never become an acceptable request.
pub fn parse_head(buf: &[u8], limits: Limits) -> Result<Parsed, HttpError> {
    // Tolerate blank lines before a request (RFC 9112 2.2): some clients
    // send a stray CRLF after a POST body.
    let skip = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let buf_tail = &buf[skip..];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let status = match req.parse(buf_tail) {
        Ok(status) => status,
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge),
        Err(httparse::Error::Version) => {
            return Err(if looks_like_http2(buf_tail) {
                HttpError::NotImplemented("HTTP/2 is not supported; use HTTP/1.1")
            } else {
                HttpError::BadRequest("malformed request line")
            })
        }
        Err(httparse::Error::Token) | Err(httparse::Error::Status) => {
            return Err(HttpError::BadRequest("malformed request line"))
        }
        Err(_) => return Err(HttpError::BadRequest("malformed header")),
    };
    let used = match status {
        httparse::Status::Complete(used) => used + skip,
        httparse::Status::Partial => {
            if buf.len() >= limits.max_head {
                return Err(too_large_kind(buf_tail, limits.max_head));
            }
            return Ok(Parsed::Partial);
        }
    };
    if used > limits.max_head {
        return Err(too_large_kind(buf_tail, limits.max_head));
    }
    let head = head_of(&req, limits)?;
    Ok(Parsed::Complete(head, used))
}

/// Turns httparse's view of a complete head into a [`Head`].
fn head_of(req: &httparse::Request<'_, '_>, limits: Limits) -> Result<Head, HttpError> {
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "OPTIONS" => Method::Options,
        _ => Method::Other,
    };
    let minor_version = req.version.unwrap_or(1);
    let (path, query) = split_target(req.path.unwrap_or("/"))?;
    let mut head = Head {
        method,
        path,
        query,
        minor_version,
        body: BodyFraming::None,
        expect_continue: false,
        keep_alive: minor_version >= 1,
        last_event_id: None,
        origin: None,
        authorization: None,
        content_type: None,
        headers: Vec::with_capacity(req.headers.len()),
    };
    let mut framing = Framing::default();
    for header in req.headers.iter() {
        let value = std::str::from_utf8(header.value)
            .map_err(|_| HttpError::BadRequest("header value is not UTF-8"))?
            .trim();
        read_header(&mut head, &mut framing, header.name, value)?;
        head.headers
            .push((header.name.to_string(), value.to_string()));
    }
    head.body = framing.body(limits)?;
    if head.expect_continue && minor_version == 0 {
        // HTTP/1.0 clients cannot take a 100 response; ignore the header.
        head.expect_continue = false;
    }
    Ok(head)
}

/// What the headers say about the body's framing.
#[derive(Default)]
struct Framing {
    content_length: Option<usize>,
    chunked: bool,
}

impl Framing {
    fn body(&self, limits: Limits) -> Result<BodyFraming, HttpError> {
        // A message with both is a smuggling attempt (RFC 9112 6.3): refuse it.
        match (self.chunked, self.content_length) {
            (true, Some(_)) => Err(HttpError::BadRequest(
                "both Content-Length and Transfer-Encoding",
            )),
            (true, None) => Ok(BodyFraming::Chunked),
            (false, Some(0)) | (false, None) => Ok(BodyFraming::None),
            (false, Some(n)) if n > limits.max_body => Err(HttpError::BodyTooLarge),
            (false, Some(n)) => Ok(BodyFraming::Length(n)),
        }
    }
}

/// Applies one header to the head (the ones the server acts on).
fn read_header(
    head: &mut Head,
    framing: &mut Framing,
    name: &str,
    value: &str,
) -> Result<(), HttpError> {
    let is = |wanted: &str| name.eq_ignore_ascii_case(wanted);
    if is("content-length") {
        let n = parse_content_length(value)?;
        if framing.content_length.is_some_and(|old| old != n) {
            return Err(HttpError::BadRequest("conflicting Content-Length headers"));
        }
        framing.content_length = Some(n);
    } else if is("transfer-encoding") {
        for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if coding.eq_ignore_ascii_case("chunked") {
                framing.chunked = true;
            } else if !coding.eq_ignore_ascii_case("identity") {
                return Err(HttpError::NotImplemented(
                    "only the chunked transfer coding is supported",
                ));
            }
        }
    } else if is("connection") {
        for token in value.split(',').map(str::trim) {
            if token.eq_ignore_ascii_case("close") {
                head.keep_alive = false;
            } else if token.eq_ignore_ascii_case("keep-alive") && head.minor_version == 0 {
                head.keep_alive = true;
            }
        }
    } else if is("expect") {
        if !value.eq_ignore_ascii_case("100-continue") {
            return Err(HttpError::ExpectationFailed);
        }
        head.expect_continue = true;
    } else if is("last-event-id") {
        head.last_event_id = Some(value.to_string());
    } else if is("origin") {
        head.origin = Some(value.to_string());
    } else if is("authorization") {
        head.authorization = Some(value.to_string());
    } else if is("content-type") {
        head.content_type = Some(value.to_string());
    }
    Ok(())
}

/// The `Origin` header of a complete head in `buf`, even one that
/// [`parse_head`] refuses for its body or `Expect` (so the error can carry
/// CORS headers).
pub fn origin_of(buf: &[u8]) -> Option<String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let start = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    req.parse(&buf[start..]).ok()?.is_complete().then_some(())?;
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("origin"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(|v| v.trim().to_string())
}

/// A header block that never ended: blame the request line when it alone
/// fills the block.
fn too_large_kind(buf: &[u8], max_head: usize) -> HttpError {
    let line_len = buf.iter().position(|b| *b == b'\n').unwrap_or(buf.len());
    if line_len >= max_head {
        HttpError::UriTooLong
    } else {
        HttpError::HeadersTooLarge
    }
}

fn looks_like_http2(buf: &[u8]) -> bool {
    buf.starts_with(b"PRI * HTTP/2")
}

fn parse_content_length(value: &str) -> Result<usize, HttpError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::BadRequest("invalid Content-Length"));
    }
    // Values too large for usize are certainly over any body limit.
    Ok(value.parse::<usize>().unwrap_or(usize::MAX))
}

fn split_target(target: &str) -> Result<(String, String), HttpError> {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (target, ""),
    };
    // Absolute form (`GET http://host/path`) is allowed by RFC 9112 for
    // requests to servers too; keep only the path.
    let path = if let Some(rest) = path
        .strip_prefix("http://")
        .or_else(|| path.strip_prefix("https://"))
    {
        match rest.find('/') {
            Some(at) => &rest[at..],
            None => "/",
        }
    } else {
        path
    };
    if path == "*" {
        return Ok(("*".to_string(), query.to_string()));
    }
    if !path.starts_with('/') {
        return Err(HttpError::BadRequest("request target must start with '/'"));
    }
    Ok((path.to_string(), query.to_string()))
}

/// Incremental decoder for `Transfer-Encoding: chunked` bodies.
///
/// Bytes are fed as they arrive and consumed as far as they go, so a body
/// trickled one byte at a time is still decoded in linear time.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    /// Where in the chunk grammar the decoder stands.
    state: ChunkState,
    /// The body decoded so far.
    body: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside chunk data, this many bytes left.
    Data(usize),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: trailer lines until a blank line.
    Trailer,
    /// The body is complete.
    Done,
}

impl ChunkedDecoder {
    /// Consumes as much of `input` as it can; returns the bytes consumed and,
    /// once the last chunk and trailer have arrived, `true`.
    ///
    /// # Errors
    /// [`HttpError::BadRequest`] on a malformed chunk, [`HttpError::BodyTooLarge`]
    /// once the decoded body passes `max_body`.
    pub fn feed(&mut self, input: &[u8], max_body: usize) -> Result<(usize, bool), HttpError> {
        let mut at = 0;
        loop {
            match self.state {
                ChunkState::Done => return Ok((at, true)),
                ChunkState::Size => {
                    let Some(line) = take_line(&input[at..])? else {
                        return Ok((at, false));
                    };
                    at += line.len() + 1;
                    let size = parse_chunk_size(line)?;
                    if self.body.len().saturating_add(size) > max_body {
                        return Err(HttpError::BodyTooLarge);
                    }
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    let take = left.min(input.len() - at);
                    if take == 0 {
                        return Ok((at, false));
                    }
                    self.body.extend_from_slice(&input[at..at + take]);
                    at += take;
                    self.state = if take == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take)
                    };
                }
                ChunkState::DataEnd => {
                    let Some(line) = take_line(&input[at..])? else {
                        return Ok((at, false));
                    };
                    if !(line.is_empty() || line == b"\r") {
                        return Err(HttpError::BadRequest("chunk data longer than its size"));
                    }
                    at += line.len() + 1;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(line) = take_line(&input[at..])? else {
                        return Ok((at, false));
                    };
                    at += line.len() + 1;
                    if line.is_empty() || line == b"\r" {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
    }

    /// The decoded body, once [`feed`](Self::feed) has returned `true`.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

/// The next line without its LF (a CR before it stays), or `None` if the
/// line has not ended yet.
fn take_line(input: &[u8]) -> Result<Option<&[u8]>, HttpError> {
    match input.iter().position(|b| *b == b'\n') {
        Some(end) if end > MAX_CHUNK_LINE => Err(HttpError::BadRequest("chunk line too long")),
        Some(end) => Ok(Some(&input[..end])),
        None if input.len() > MAX_CHUNK_LINE => Err(HttpError::BadRequest("chunk line too long")),
        None => Ok(None),
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<usize, HttpError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let rest = &line[digits_end..];
    if digits_end == 0
        || digits_end > 15
        || !(rest.is_empty() || rest[0] == b';' || rest[0] == b' ' || rest[0] == b'\t')
    {
        return Err(HttpError::BadRequest("invalid chunk size"));
    }
    let text = std::str::from_utf8(&line[..digits_end]).expect("hex digits are ASCII");
    usize::from_str_radix(text, 16).map_err(|_| HttpError::BadRequest("invalid chunk size"))
}

/// Decodes `%XX` escapes and, when `plus_is_space`, `+` as a space (query
/// strings). Returns `None` on a bad escape or invalid UTF-8.
pub fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' => {
                let hex = bytes.get(at + 1..at + 3)?;
                let hi = (hex[0] as char).to_digit(16)?;
                let lo = (hex[1] as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                at += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                at += 1;
            }
            other => {
                out.push(other);
                at += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The decoded `name=value` pairs of a query string, in order. A pair that
/// does not decode is returned as `Err` so the router can answer 400.
pub fn query_pairs(query: &str) -> impl Iterator<Item = Result<(String, String), ()>> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match (percent_decode(name, true), percent_decode(value, true)) {
            (Some(name), Some(value)) => Ok((name, value)),
            _ => Err(()),
        }
    })
}

/// Parses a complete head from `raw` with generous limits (tests only).
#[cfg(test)]
pub(crate) fn test_head(raw: &str) -> Head {
    let limits = Limits {
        max_head: 8192,
        max_body: 65536,
    };
    match parse_head(raw.as_bytes(), limits) {
        Ok(Parsed::Complete(head, _)) => head,
        other => panic!("not a complete head: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_head: 8192,
        max_body: 100,
    };

    fn head(bytes: &[u8]) -> (Head, usize) {
        match parse_head(bytes, LIMITS) {
            Ok(Parsed::Complete(head, used)) => (head, used),
            other => panic!("expected a complete head, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_simple_get() {
        let raw =
            b"GET /events?room=a&room=b HTTP/1.1\r\nHost: x\r\nLast-Event-ID:  42 \r\n\r\nrest";
        let (h, used) = head(raw);
        assert_eq!(used, raw.len() - 4);
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.path, "/events");
        assert_eq!(h.query, "room=a&room=b");
        assert!(h.keep_alive);
        assert_eq!(h.last_event_id.as_deref(), Some("42"));
        assert_eq!(h.body, BodyFraming::None);
    }

    #[test]
    fn partial_heads_wait_for_more() {
        for cut in [0, 1, 5, 20, 26] {
            let raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
            assert_eq!(
                parse_head(&raw[..cut], LIMITS),
                Ok(Parsed::Partial),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!head(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(
            head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .0
                .keep_alive
        );
    }

    #[test]
    fn body_framing_and_limits() {
        assert_eq!(
            head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").0.body,
            BodyFraming::Length(5)
        );
        assert_eq!(
            head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
                .0
                .body,
            BodyFraming::Chunked
        );
        let cases: &[(&[u8], u16)] = &[
            (b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 413),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                413,
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            (b"POST / HTTP/1.1\r\nExpect: something\r\n\r\n", 417),
            (b"GARBAGE\r\n\r\n", 400),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
            (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
            (b"GET nopath HTTP/1.1\r\n\r\n", 400),
        ];
        for (raw, status) in cases {
            let got = parse_head(raw, LIMITS).map(|_| ()).unwrap_err().status();
            assert_eq!(got, *status, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn oversized_heads_are_refused() {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        while raw.len() < 9000 {
            raw.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(parse_head(&raw, LIMITS), Err(HttpError::HeadersTooLarge));
        let long_uri = format!("GET /{} HTTP/1.1\r\n", "a".repeat(9000));
        assert_eq!(
            parse_head(long_uri.as_bytes(), LIMITS),
            Err(HttpError::UriTooLong)
        );
    }

    #[test]
    fn absolute_form_and_leading_blank_lines() {
        let (h, _) = head(b"\r\nGET http://example.com/rooms?x=1 HTTP/1.1\r\n\r\n");
        assert_eq!(h.path, "/rooms");
        assert_eq!(h.query, "x=1");
    }

    #[test]
    fn chunked_bodies_decode_in_any_split() {
        let raw = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for split in 0..raw.len() {
            let mut dec = ChunkedDecoder::default();
            let (used1, done1) = dec.feed(&raw[..split], 100).unwrap();
            assert!(!done1 || split >= raw.len() - 4);
            let mut rest = raw[used1..].to_vec();
            let (used2, done2) = dec.feed(&rest, 100).unwrap();
            rest.drain(..used2);
            assert!(done1 || done2, "split {split}");
            assert_eq!(rest, b"NEXT");
            assert_eq!(dec.into_body(), b"hello world");
        }
    }

    #[test]
    fn chunked_errors() {
        let mut dec = ChunkedDecoder::default();
        assert_eq!(
            dec.feed(b"zz\r\n", 100),
            Err(HttpError::BadRequest("invalid chunk size"))
        );
        let mut dec = ChunkedDecoder::default();
        assert_eq!(dec.feed(b"65\r\n", 100), Err(HttpError::BodyTooLarge));
        let mut dec = ChunkedDecoder::default();
        assert!(dec.feed(b"2\r\nabc\r\n", 100).is_err());
        let mut dec = ChunkedDecoder::default();
        assert!(dec.feed(&[b'1'; 2000], 100).is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c", true).as_deref(), Some("a b c"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%e9", false), None);
        assert_eq!(percent_decode("%c3%a9", false).as_deref(), Some("é"));
        let pairs: Vec<_> = query_pairs("room=a&&x&room=b%20c").collect();
        assert_eq!(
            pairs,
            vec![
                Ok(("room".into(), "a".into())),
                Ok(("x".into(), "".into())),
                Ok(("room".into(), "b c".into()))
            ]
        );
    }
}
