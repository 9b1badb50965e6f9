//! Incremental parsers for what a subscriber reads: the HTTP response head,
//! an optional chunked transfer coding, and the `text/event-stream` body
//! (WHATWG HTML, "Server-sent events", parsing an event stream).
//!
//! All of them take bytes in pieces of any size (the server may batch many
//! events into one write, or a line may be split across two reads) and copy
//! only the unfinished tail of a line.

/// One dispatched block of fields (ended by a blank line).
#[derive(Debug)]
pub struct Event<'a> {
    /// The `event:` field, or empty when absent (which means `message`).
    pub name: &'a [u8],
    /// The `data:` lines joined with `\n` (no trailing `\n`).
    pub data: &'a [u8],
    /// How many `data:` lines the block had (0: an id-only or empty block).
    pub data_lines: usize,
    /// The block's `id:` field, when it had one and it was a decimal number.
    #[allow(dead_code)]
    pub id: Option<u64>,
    /// Whether the block had an `id:` field at all.
    pub has_id: bool,
}

impl Event<'_> {
    /// The event type as the browser sees it (`message` when no `event:` field).
    pub fn kind(&self) -> &[u8] {
        if self.name.is_empty() {
            b"message"
        } else {
            self.name
        }
    }
}

#[derive(Default)]
pub struct SseParser {
    partial: Vec<u8>,
    skip_lf: bool,
    name: Vec<u8>,
    data: Vec<u8>,
    data_lines: usize,
    id: Option<u64>,
    has_id: bool,
    any_field: bool,
    /// The last `retry:` value seen.
    pub retry: Option<u64>,
    /// How many valid `retry:` fields were seen.
    pub retries: u64,
    /// Comment lines (`:` first) seen.
    pub comments: u64,
}

#[inline]
fn find_eol(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n' || c == b'\r')
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; calls `f` for every block ended by a blank line.
    /// Blocks with no field at all (a lone blank line) are not reported.
    pub fn feed<F: FnMut(&Event)>(&mut self, mut chunk: &[u8], f: &mut F) {
        if chunk.is_empty() {
            return;
        }
        if self.skip_lf {
            self.skip_lf = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        if !self.partial.is_empty() {
            match find_eol(chunk) {
                None => {
                    self.partial.extend_from_slice(chunk);
                    return;
                }
                Some(i) => {
                    let mut line = std::mem::take(&mut self.partial);
                    line.extend_from_slice(&chunk[..i]);
                    self.line(&line, f);
                    line.clear();
                    self.partial = line;
                    chunk = self.after_eol(chunk, i);
                }
            }
        }
        loop {
            match find_eol(chunk) {
                None => {
                    self.partial.extend_from_slice(chunk);
                    return;
                }
                Some(i) => {
                    self.line(&chunk[..i], f);
                    chunk = self.after_eol(chunk, i);
                }
            }
        }
    }

    #[inline]
    fn after_eol<'c>(&mut self, chunk: &'c [u8], i: usize) -> &'c [u8] {
        if chunk[i] == b'\r' {
            if i + 1 < chunk.len() {
                if chunk[i + 1] == b'\n' {
                    &chunk[i + 2..]
                } else {
                    &chunk[i + 1..]
                }
            } else {
                self.skip_lf = true;
                &chunk[i + 1..]
            }
        } else {
            &chunk[i + 1..]
        }
    }

    fn line<F: FnMut(&Event)>(&mut self, line: &[u8], f: &mut F) {
        if line.is_empty() {
            if self.any_field {
                f(&Event {
                    name: &self.name,
                    data: &self.data,
                    data_lines: self.data_lines,
                    id: self.id,
                    has_id: self.has_id,
                });
            }
            self.name.clear();
            self.data.clear();
            self.data_lines = 0;
            self.id = None;
            self.has_id = false;
            self.any_field = false;
            return;
        }
        if line[0] == b':' {
            self.comments += 1;
            return;
        }
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(p) => {
                let v = &line[p + 1..];
                (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.data_lines > 0 {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.data_lines += 1;
                self.any_field = true;
            }
            b"event" => {
                self.name.clear();
                self.name.extend_from_slice(value);
                self.any_field = true;
            }
            // An id with a NUL in it is ignored (WHATWG).
            b"id" if !value.contains(&0) => {
                self.has_id = true;
                self.id = parse_u64(value);
                self.any_field = true;
            }
            b"retry" => {
                if let Some(v) = parse_u64(value) {
                    self.retry = Some(v);
                    self.retries += 1;
                }
            }
            _ => {}
        }
    }
}

/// A decimal number of 1 to 19 digits, nothing else.
#[inline]
pub fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u64;
    }
    Some(v)
}

/// The status line and the few headers a client needs, from a complete head.
#[derive(Debug, Default, Clone)]
pub struct Head {
    pub status: u16,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub content_type: String,
    pub close: bool,
}

/// Where the head ends (index just past the blank line), if complete.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Parses a complete response head (`HTTP/1.x SSS reason` and headers).
pub fn parse_head(head: &[u8]) -> Result<Head, String> {
    let text = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {:?}", status_line));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {:?}", status_line))?;
    let mut h = Head {
        status,
        close: version == "HTTP/1.0",
        ..Head::default()
    };
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(format!("bad header line {:?}", line));
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            h.content_length = Some(
                v.parse()
                    .map_err(|_| format!("bad Content-Length {:?}", v))?,
            );
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            h.chunked = v.to_ascii_lowercase().contains("chunked");
        } else if k.eq_ignore_ascii_case("content-type") {
            h.content_type = v.to_string();
        } else if k.eq_ignore_ascii_case("connection") {
            let v = v.to_ascii_lowercase();
            if v.contains("close") {
                h.close = true;
            } else if v.contains("keep-alive") {
                h.close = false;
            }
        }
    }
    Ok(h)
}

/// Incremental decoder of the chunked transfer coding; hands out data slices.
#[derive(Debug, Default)]
pub struct Dechunker {
    state: CState,
    pub done: bool,
}

#[derive(Debug, Default, Clone, Copy)]
enum CState {
    #[default]
    Size0,
    Size(u64),
    Ext(u64),
    Data(u64),
    DataEnd,
    Trailer,
    TrailerLine,
}

impl Dechunker {
    pub fn feed<F: FnMut(&[u8])>(&mut self, mut b: &[u8], f: &mut F) -> Result<(), String> {
        while !b.is_empty() && !self.done {
            match self.state {
                CState::Size0 | CState::Size(_) => {
                    let n = match self.state {
                        CState::Size(n) => n,
                        _ => 0,
                    };
                    let c = b[0];
                    b = &b[1..];
                    let digit = (c as char).to_digit(16);
                    self.state = match (digit, c) {
                        (Some(d), _) => {
                            if n > (u64::MAX >> 8) {
                                return Err("chunk size too large".into());
                            }
                            CState::Size(n * 16 + d as u64)
                        }
                        (None, b'\r') => {
                            if matches!(self.state, CState::Size0) {
                                return Err("empty chunk size".into());
                            }
                            CState::Ext(n)
                        }
                        (None, b'\n') => self.end_of_size(n)?,
                        (None, b';') | (None, b' ') | (None, b'\t') => CState::Ext(n),
                        _ => return Err(format!("bad chunk size byte {:?}", c as char)),
                    };
                }
                CState::Ext(n) => {
                    let c = b[0];
                    b = &b[1..];
                    if c == b'\n' {
                        self.state = self.end_of_size(n)?;
                    }
                }
                CState::Data(rem) => {
                    let take = (rem.min(b.len() as u64)) as usize;
                    f(&b[..take]);
                    b = &b[take..];
                    let left = rem - take as u64;
                    self.state = if left == 0 {
                        CState::DataEnd
                    } else {
                        CState::Data(left)
                    };
                }
                CState::DataEnd => {
                    let c = b[0];
                    b = &b[1..];
                    match c {
                        b'\r' => {}
                        b'\n' => self.state = CState::Size0,
                        _ => return Err("missing CRLF after chunk data".into()),
                    }
                }
                CState::Trailer | CState::TrailerLine => {
                    // Trailer is empty lines-terminated; a blank line ends the body.
                    let c = b[0];
                    b = &b[1..];
                    match (self.state, c) {
                        (_, b'\r') => {}
                        (CState::Trailer, b'\n') => self.done = true,
                        (CState::TrailerLine, b'\n') => self.state = CState::Trailer,
                        _ => self.state = CState::TrailerLine,
                    }
                }
            }
        }
        Ok(())
    }

    fn end_of_size(&self, n: u64) -> Result<CState, String> {
        Ok(if n == 0 {
            CState::Trailer
        } else {
            CState::Data(n)
        })
    }
}

/// Incremental reader of HTTP responses with `Content-Length` (keep-alive and
/// pipelined responses to the publisher's requests).
#[derive(Default)]
pub struct ResponseReader {
    buf: Vec<u8>,
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub close: bool,
}

impl ResponseReader {
    pub fn push(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// The next complete response, if the buffer holds one.
    pub fn next(&mut self) -> Result<Option<Response>, String> {
        let Some(end) = head_end(&self.buf) else {
            if self.buf.len() > 64 * 1024 {
                return Err("response head over 64 KiB".into());
            }
            return Ok(None);
        };
        let head = parse_head(&self.buf[..end])?;
        if (100..200).contains(&head.status) {
            self.buf.drain(..end);
            return self.next();
        }
        if head.chunked {
            return Err("chunked response to a publish is not supported".into());
        }
        let len = match head.content_length {
            Some(l) => l as usize,
            None if head.status == 204 || head.status == 304 => 0,
            None => return Err(format!("response {} without Content-Length", head.status)),
        };
        if self.buf.len() < end + len {
            return Ok(None);
        }
        let body = self.buf[end..end + len].to_vec();
        self.buf.drain(..end + len);
        Ok(Some(Response {
            status: head.status,
            body,
            close: head.close,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Ev {
        name: String,
        data: String,
        lines: usize,
        id: Option<u64>,
        has_id: bool,
    }

    fn collect(p: &mut SseParser, pieces: &[&[u8]]) -> Vec<Ev> {
        let mut out = Vec::new();
        for piece in pieces {
            p.feed(piece, &mut |e: &Event| {
                out.push(Ev {
                    name: String::from_utf8_lossy(e.kind()).into_owned(),
                    data: String::from_utf8_lossy(e.data).into_owned(),
                    lines: e.data_lines,
                    id: e.id,
                    has_id: e.has_id,
                })
            });
        }
        out
    }

    const STREAM: &[u8] = b"retry: 2000\n\nevent: hello\ndata: {\"rooms\":[\"r\"],\"heartbeat_ms\":1000}\n\nid: 17\n\n: a comment\nid: 18\nevent: m\ndata: 1 123\n\nevent: heartbeat\ndata: {\"time\":5}\n\nid: 19\nevent: multi\ndata: a\ndata:b\ndata\n\ndata: plain\n\n";

    fn expected() -> Vec<Ev> {
        let e = |name: &str, data: &str, lines, id: Option<u64>, has_id| Ev {
            name: name.into(),
            data: data.into(),
            lines,
            id,
            has_id,
        };
        vec![
            e(
                "hello",
                "{\"rooms\":[\"r\"],\"heartbeat_ms\":1000}",
                1,
                None,
                false,
            ),
            e("message", "", 0, Some(17), true),
            e("m", "1 123", 1, Some(18), true),
            e("heartbeat", "{\"time\":5}", 1, None, false),
            e("multi", "a\nb\n", 3, Some(19), true),
            e("message", "plain", 1, None, false),
        ]
    }

    #[test]
    fn whole_stream_in_one_piece() {
        let mut p = SseParser::new();
        assert_eq!(collect(&mut p, &[STREAM]), expected());
        assert_eq!(p.retry, Some(2000));
        assert_eq!(p.retries, 1);
        assert_eq!(p.comments, 1);
    }

    #[test]
    fn every_split_point_and_byte_by_byte() {
        for cut in 0..=STREAM.len() {
            let mut p = SseParser::new();
            let got = collect(&mut p, &[&STREAM[..cut], &STREAM[cut..]]);
            assert_eq!(got, expected(), "cut at {}", cut);
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        let mut p = SseParser::new();
        assert_eq!(collect(&mut p, &bytes), expected());
    }

    #[test]
    fn crlf_and_cr_line_ends_split_anywhere() {
        let lf = String::from_utf8(STREAM.to_vec()).unwrap();
        for style in ["\r\n", "\r"] {
            let s = lf.replace('\n', style);
            let b = s.as_bytes();
            for cut in 0..=b.len() {
                let mut p = SseParser::new();
                assert_eq!(
                    collect(&mut p, &[&b[..cut], &b[cut..]]),
                    expected(),
                    "{:?} cut {}",
                    style,
                    cut
                );
            }
        }
    }

    #[test]
    fn no_dispatch_without_blank_line() {
        let mut p = SseParser::new();
        assert!(collect(&mut p, &[b"event: m\ndata: 1 2\n"]).is_empty());
        assert_eq!(collect(&mut p, &[b"\n"]).len(), 1);
        // lone blank lines dispatch nothing
        assert!(collect(&mut p, &[b"\n\n\n"]).is_empty());
    }

    #[test]
    fn bad_id_is_kept_as_present_but_unparsed() {
        let mut p = SseParser::new();
        let got = collect(&mut p, &[b"id: abc\ndata: x\n\n"]);
        assert_eq!(got[0].id, None);
        assert!(got[0].has_id);
    }

    #[test]
    fn parse_u64_works() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"1763786000000000"), Some(1763786000000000));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"99999999999999999999"), None);
    }

    #[test]
    fn head_parsing() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\nretry: 2000\n";
        let end = head_end(raw).unwrap();
        let h = parse_head(&raw[..end]).unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.content_type, "text/event-stream");
        assert!(!h.chunked);
        assert_eq!(&raw[end..], b"retry: 2000\n");
        let h = parse_head(
            b"HTTP/1.1 201 Created\r\ncontent-length: 9\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (h.status, h.content_length, h.chunked),
            (201, Some(9), true)
        );
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
        assert!(head_end(b"HTTP/1.1 200 OK\r\n").is_none());
    }

    #[test]
    fn dechunk_split_anywhere() {
        let raw = b"5\r\nhello\r\n3;ext=1\r\n, w\r\n4\r\norld\r\n0\r\n\r\n";
        for cut in 0..=raw.len() {
            let mut d = Dechunker::default();
            let mut out = Vec::new();
            d.feed(&raw[..cut], &mut |b| out.extend_from_slice(b))
                .unwrap();
            d.feed(&raw[cut..], &mut |b| out.extend_from_slice(b))
                .unwrap();
            assert_eq!(out, b"hello, world", "cut {}", cut);
            assert!(d.done);
        }
        let mut d = Dechunker::default();
        assert!(d.feed(b"zz\r\n", &mut |_| {}).is_err());
    }

    #[test]
    fn pipelined_responses() {
        let mut r = ResponseReader::default();
        let one = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n{\"id\":1}";
        let two = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{\"error\":\"x\"}";
        let mut all = one.to_vec();
        all.extend_from_slice(two);
        for cut in 0..=all.len() {
            let mut got = Vec::new();
            r.push(&all[..cut]);
            while let Some(x) = r.next().unwrap() {
                got.push(x);
            }
            r.push(&all[cut..]);
            while let Some(x) = r.next().unwrap() {
                got.push(x);
            }
            assert_eq!(got.len(), 2, "cut {}", cut);
            assert_eq!(
                (got[0].status, &got[0].body[..], got[0].close),
                (201, &b"{\"id\":1}"[..], false)
            );
            assert_eq!((got[1].status, got[1].close), (400, true));
        }
        let mut r = ResponseReader::default();
        r.push(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(r.next().unwrap().unwrap().status, 201);
        let mut r = ResponseReader::default();
        r.push(b"HTTP/1.1 200 OK\r\n\r\n");
        assert!(r.next().is_err());
    }
}
