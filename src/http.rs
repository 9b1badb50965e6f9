//! Request framing on one connection, as a pure state machine: bytes go in
//! through [`Framer::buffer`], and [`Framer::next`] says what they amount
//! to — a whole request, a head whose body is awaited, nothing yet, or a
//! failure. Pipelining, `Expect: 100-continue`, sized and chunked bodies and
//! every limit live here; sockets, time-outs and answers do not.

use crate::request::{self, parse_head, BodyFraming, ChunkedDecoder, Head, HttpError, Limits};

/// What the buffered bytes amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A complete request: its head and its (decoded) body.
    Request(Head, Vec<u8>),
    /// A head with a body arrived; the body is awaited. The caller gives
    /// the body its own time-out, and sends `100 Continue` if asked.
    BodyAwaited {
        /// The client sent `Expect: 100-continue` and waits for it.
        send_continue: bool,
    },
    /// Nothing complete: read more.
    NeedMore,
    /// The request can never be accepted: answer the error and close.
    Fail {
        /// What was wrong.
        error: HttpError,
        /// The request's `Origin`, if its head could be read (CORS headers
        /// still go on the error).
        origin: Option<String>,
    },
}

/// One connection's received bytes and where the current request stands.
#[derive(Debug, Default)]
pub struct Framer {
    /// Received bytes not yet consumed.
    buf: Vec<u8>,
    /// The head of the request whose body is awaited, if any.
    body_of: Option<Head>,
    /// The decoder of a chunked body in progress.
    chunked: Option<ChunkedDecoder>,
}

impl Framer {
    /// Where received bytes go (the caller bounds its length).
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Whether a request has begun: bytes wait, or a body is awaited. A
    /// time-out then answers 408; otherwise the connection was just idle.
    pub fn in_request(&self) -> bool {
        !self.buf.is_empty() || self.body_of.is_some()
    }

    /// Whether unconsumed bytes wait (a pipelined request has begun).
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next step over what has been received.
    pub fn next(&mut self, limits: Limits) -> Step {
        match self.body_of.take() {
            Some(head) => self.body(head, limits),
            None => self.head(limits),
        }
    }

    fn head(&mut self, limits: Limits) -> Step {
        if self.buf.is_empty() {
            return Step::NeedMore;
        }
        match parse_head(&self.buf, limits) {
            Ok(request::Parsed::Partial) => Step::NeedMore,
            Ok(request::Parsed::Complete(head, used)) => {
                self.buf.drain(..used);
                if head.body == BodyFraming::None {
                    return Step::Request(head, Vec::new());
                }
                let send_continue = head.expect_continue;
                self.body_of = Some(head);
                Step::BodyAwaited { send_continue }
            }
            // A head refused for its body or Expect is complete: its
            // Origin still earns CORS headers on the error.
            Err(error) => Step::Fail {
                error,
                origin: request::origin_of(&self.buf),
            },
        }
    }

    fn body(&mut self, head: Head, limits: Limits) -> Step {
        match head.body {
            BodyFraming::Length(n) if self.buf.len() >= n => {
                let body = self.buf.drain(..n).collect();
                Step::Request(head, body)
            }
            BodyFraming::Chunked => {
                let decoder = self.chunked.get_or_insert_with(Default::default);
                match decoder.feed(&self.buf, limits.max_body) {
                    Ok((used, done)) => {
                        self.buf.drain(..used);
                        if !done {
                            self.body_of = Some(head);
                            return Step::NeedMore;
                        }
                        let body = self.chunked.take().map(|d| d.into_body());
                        Step::Request(head, body.unwrap_or_default())
                    }
                    Err(error) => Step::Fail {
                        error,
                        origin: head.origin,
                    },
                }
            }
            _ => {
                self.body_of = Some(head);
                Step::NeedMore
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_head: 8192,
        max_body: 64,
    };

    /// What a connection that receives `input` in pieces of `split` bytes
    /// sees: the requests as "METHOD path body", `100` for each Continue,
    /// `FAIL status` for a failure.
    fn frame(input: &[u8], split: usize) -> Vec<String> {
        let mut framer = Framer::default();
        let mut seen = Vec::new();
        for piece in input.chunks(split) {
            framer.buffer().extend_from_slice(piece);
            loop {
                match framer.next(LIMITS) {
                    Step::Request(head, body) => seen.push(format!(
                        "{:?} {} {}",
                        head.method,
                        head.path,
                        String::from_utf8_lossy(&body)
                    )),
                    Step::BodyAwaited { send_continue } => {
                        if send_continue {
                            seen.push("100".into());
                        }
                    }
                    Step::NeedMore => break,
                    Step::Fail { error, .. } => {
                        seen.push(format!("FAIL {}", error.status()));
                        return seen;
                    }
                }
            }
        }
        seen
    }

    /// Every split of the input, from one byte at a time to all at once,
    /// must frame the same requests.
    #[track_caller]
    fn same_in_any_split(input: &[u8], expected: &[&str]) {
        for split in 1..=input.len() {
            assert_eq!(frame(input, split), expected, "split every {split} bytes");
        }
    }

    #[test]
    fn pipelined_requests_with_and_without_bodies() {
        same_in_any_split(
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
              POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
              GET /c HTTP/1.1\r\n\r\n",
            &["Get /a ", "Post /b hello", "Get /c "],
        );
    }

    #[test]
    fn chunked_bodies_and_continue() {
        same_in_any_split(
            b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n\
              3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\n\
              GET /after HTTP/1.1\r\n\r\n",
            &["100", "Post /p abcde", "Get /after "],
        );
    }

    #[test]
    fn limits_fail_at_the_same_point_in_any_split() {
        same_in_any_split(
            b"POST /p HTTP/1.1\r\nContent-Length: 65\r\n\r\n",
            &["FAIL 413"],
        );
        same_in_any_split(
            b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n",
            &["FAIL 413"],
        );
        same_in_any_split(
            b"GET /ok HTTP/1.1\r\n\r\n\x16\x03\x01\r\n\r\n",
            &["Get /ok ", "FAIL 400"],
        );
        same_in_any_split(
            b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            &["FAIL 400"],
        );
    }

    #[test]
    fn a_request_in_progress_is_known() {
        let mut framer = Framer::default();
        assert!(!framer.in_request());
        framer
            .buffer()
            .extend_from_slice(b"POST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(
            framer.next(LIMITS),
            Step::BodyAwaited {
                send_continue: false
            }
        );
        assert!(framer.in_request() && !framer.has_buffered());
        assert_eq!(framer.next(LIMITS), Step::NeedMore);
        framer.buffer().extend_from_slice(b"ok");
        assert!(matches!(framer.next(LIMITS), Step::Request(_, body) if body == b"ok"));
        assert!(!framer.in_request());
    }
}
