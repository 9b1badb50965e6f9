//! Fuzz target `request`: the bytes a client sends, cut into pieces the way
//! TCP may cut them, must give the same requests as the whole buffer.
//!
//! The input is the raw byte stream of one connection. A small model of the
//! server's request loop (`process_buffered` in `src/server.rs`: a read
//! buffer, `parse_head`, then a `Content-Length` or chunked body, then the
//! next pipelined request) is run on the whole input and on several splits
//! of it (at positions drawn from a hash of the input, and one byte at a
//! time for short inputs). Every run must produce the same requests, bodies
//! and final error, and nothing may panic. Along the way it checks that
//! `parse_head` on a growing buffer only ever goes Partial → the whole
//! buffer's answer, and routes each request (the router is pure) so that
//! query and path decoding are fuzzed too.
#![no_main]

mod split;

use libfuzzer_sys::fuzz_target;
use ssehub::request::{
    parse_head, percent_decode, query_pairs, BodyFraming, ChunkedDecoder, Head, HttpError, Limits,
    Parsed,
};

/// Small limits, so that inputs of a few KiB reach every limit.
const LIMITS: Limits = Limits {
    max_head: 1024,
    max_body: 512,
};
/// Requests modelled per input; the rest of a long pipeline is ignored.
const MAX_REQUESTS: usize = 16;

/// What the connection did with the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// A complete request and its body.
    Request(Head, Vec<u8>),
    /// The connection ends with this error (the server answers and closes).
    Error(HttpError),
}

/// Where the modelled connection stands between pieces.
#[derive(Default)]
struct Conn {
    /// Received, not yet used.
    buf: Vec<u8>,
    /// The head whose body is awaited.
    body_of: Option<Head>,
    /// The chunked decoder in progress.
    chunked: Option<ChunkedDecoder>,
    /// What happened so far.
    steps: Vec<Step>,
    /// An error ended the connection, or enough requests were seen.
    finished: bool,
}

impl Conn {
    /// Appends one piece and uses as much of the buffer as possible, as the
    /// server does after each read.
    fn feed(&mut self, piece: &[u8]) {
        if self.finished {
            return;
        }
        self.buf.extend_from_slice(piece);
        loop {
            if self.steps.len() >= MAX_REQUESTS {
                self.finished = true;
                return;
            }
            if let Some(head) = self.body_of.take() {
                let body = match head.body {
                    BodyFraming::Length(n) if self.buf.len() >= n => {
                        self.buf.drain(..n).collect::<Vec<u8>>()
                    }
                    BodyFraming::Chunked => {
                        let decoder = self.chunked.get_or_insert_with(Default::default);
                        match decoder.feed(&self.buf, LIMITS.max_body) {
                            Ok((used, done)) => {
                                assert!(used <= self.buf.len(), "decoder used more than it had");
                                self.buf.drain(..used);
                                if !done {
                                    self.body_of = Some(head);
                                    return;
                                }
                                let body = self.chunked.take().expect("decoder").into_body();
                                assert!(body.len() <= LIMITS.max_body, "body over the limit");
                                body
                            }
                            Err(e) => {
                                self.fail(e);
                                return;
                            }
                        }
                    }
                    BodyFraming::None => {
                        unreachable!("a head without a body never waits for one")
                    }
                    BodyFraming::Length(_) => {
                        self.body_of = Some(head);
                        return;
                    }
                };
                self.request(head, body);
                continue;
            }
            if self.buf.is_empty() {
                return;
            }
            match parse_head(&self.buf, LIMITS) {
                Ok(Parsed::Partial) => return,
                Ok(Parsed::Complete(head, used)) => {
                    assert!(used > 0 && used <= self.buf.len(), "bad used {used}");
                    assert!(used <= LIMITS.max_head, "head over the limit accepted");
                    self.buf.drain(..used);
                    match head.body {
                        BodyFraming::None => self.request(head, Vec::new()),
                        BodyFraming::Length(n) => {
                            assert!(n > 0 && n <= LIMITS.max_body, "length {n} accepted");
                            self.body_of = Some(head);
                        }
                        BodyFraming::Chunked => self.body_of = Some(head),
                    }
                }
                Err(e) => {
                    self.fail(e);
                    return;
                }
            }
        }
    }

    fn request(&mut self, head: Head, body: Vec<u8>) {
        exercise(&head, &body);
        self.steps.push(Step::Request(head, body));
    }

    fn fail(&mut self, e: HttpError) {
        // Every error maps to a status and a message for the JSON body.
        assert!((400..=599).contains(&e.status()));
        assert!(!e.message().is_empty());
        self.steps.push(Step::Error(e));
        self.finished = true;
    }

    /// Everything observable once the input has been fed: the steps, and
    /// whether the connection still waits for a head or a body.
    fn outcome(self) -> (Vec<Step>, bool, bool) {
        let waiting_body = self.body_of.is_some();
        let leftover = !self.buf.is_empty() && !self.finished;
        (self.steps, waiting_body, leftover)
    }
}

/// The pure code a parsed request reaches next must not panic either.
fn exercise(head: &Head, body: &[u8]) {
    let _ = percent_decode(&head.path, false);
    for pair in query_pairs(&head.query) {
        let _ = pair;
    }
    // Open mode, and private mode (where a message's author is the token's).
    let _ = ssehub::router::route(head, body, false);
    let _ = ssehub::router::route(head, body, true);
}

/// Whether two errors are the same answer. A request that is both over a
/// size limit and malformed further on may be refused for either reason,
/// depending on how much of it had arrived when the limit was hit, so a
/// limit error (413, 414, 431) matches any error.
fn same_error(a: HttpError, b: HttpError) -> bool {
    let limit = |e: HttpError| matches!(e.status(), 413 | 414 | 431);
    a == b || limit(a) || limit(b)
}

/// Whether two runs did the same, up to [`same_error`].
fn same_outcome(a: &(Vec<Step>, bool, bool), b: &(Vec<Step>, bool, bool)) -> bool {
    a.1 == b.1
        && a.2 == b.2
        && a.0.len() == b.0.len()
        && a.0.iter().zip(&b.0).all(|pair| match pair {
            (Step::Error(x), Step::Error(y)) => same_error(*x, *y),
            (x, y) => x == y,
        })
}

fn run(pieces: &[&[u8]]) -> (Vec<Step>, bool, bool) {
    let mut conn = Conn::default();
    for piece in pieces {
        conn.feed(piece);
    }
    conn.outcome()
}


/// Checks that `parse_head` on every prefix of the first head is Partial
/// until the whole buffer's answer appears, then stays that answer.
fn check_prefixes(data: &[u8], cuts: &[usize]) {
    let whole = parse_head(data, LIMITS);
    for &cut in cuts {
        let part = parse_head(&data[..cut], LIMITS);
        match (&whole, &part) {
            (_, Ok(Parsed::Partial)) => {}
            (Ok(Parsed::Complete(h, used)), Ok(Parsed::Complete(h2, used2))) => {
                assert!(cut >= *used, "complete before its end");
                assert_eq!((h, used), (h2, used2), "prefix {cut} differs");
            }
            (Err(e), Err(e2)) => assert!(same_error(*e, *e2), "prefix {cut}: {e2:?}, whole: {e:?}"),
            _ => panic!(
                "prefix of {cut} bytes gives {part:?}, the whole {} bytes give {whole:?}",
                data.len()
            ),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = run(&[data]);

    let cuts = split::cuts(data);
    check_prefixes(data, &cuts);

    // Two pieces at each cut, then all the cuts at once.
    for &cut in &cuts {
        let split = run(&[&data[..cut], &data[cut..]]);
        assert!(
            same_outcome(&whole, &split),
            "split at {cut}: {split:?}, whole: {whole:?}"
        );
    }
    if cuts.len() > 1 {
        let mut pieces: Vec<&[u8]> = Vec::new();
        let mut at = 0;
        for &cut in &cuts {
            pieces.push(&data[at..cut]);
            at = cut;
        }
        pieces.push(&data[at..]);
        let split = run(&pieces);
        assert!(
            same_outcome(&whole, &split),
            "split at {cuts:?}: {split:?}, whole: {whole:?}"
        );
    }
    // A trickling client: one byte at a time (short inputs only, as each
    // byte re-parses the buffer, like the server does).
    if data.len() <= 600 {
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        let split = run(&bytes);
        assert!(
            same_outcome(&whole, &split),
            "byte at a time: {split:?}, whole: {whole:?}"
        );
    }
});
