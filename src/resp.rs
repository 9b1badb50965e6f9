//! RESP2, the Redis serialization protocol: commands to bytes, bytes to
//! [`Reply`] values, and the stream commands the Redis event log uses. No I/O.
//!
//! Incomplete input is a value (`Ok(None)`), not an error: the connection
//! waits for more bytes. A [`RespError`] means the byte stream cannot be
//! trusted any more, so the connection to Redis is closed and reopened.
//!
//! Everything a reply may claim before its bytes have arrived is bounded by
//! [`Limits`], so a corrupt or hostile peer cannot make the decoder allocate
//! more than the bytes it actually sent (times a small constant for the
//! [`Reply`] tree).

use std::fmt;

/// What one reply may claim before its bytes arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string, in bytes.
    pub max_bulk: usize,
    /// Most elements of one array.
    pub max_array: usize,
    /// Deepest nesting of arrays (a flat array is depth 1).
    pub max_depth: usize,
    /// Longest simple string or error line, in bytes.
    pub max_line: usize,
}

impl Limits {
    /// Redis allows 512 MiB bulk strings, but the event log stores bodies
    /// of at most `--max-body` (64 KiB by default), so a claim near Redis's
    /// own limit is far more likely a corrupt stream than a real value; a
    /// cluster node started with a larger `--max-body` raises `max_bulk` to
    /// match (`RedisLog::start`).
    /// XREAD and XRANGE replies nest 4 arrays deep.
    pub const DEFAULT: Limits = Limits {
        max_bulk: 64 << 20,
        max_array: 1 << 20,
        max_depth: 8,
        max_line: 64 << 10,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`: a status line. Bytes that are not UTF-8 are replaced by U+FFFD.
    Simple(String),
    /// `-ERR …`: an error reply, which answers one command and leaves the
    /// connection usable. Bytes that are not UTF-8 are replaced by U+FFFD.
    Error(String),
    /// `:N`
    Integer(i64),
    /// `$N` and N bytes; `None` is the null bulk `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*N` and N replies; `None` is the null array `*-1`.
    Array(Option<Vec<Reply>>),
}

/// Why a byte stream is not RESP2 within the [`Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespError {
    /// A reply starts with a byte other than `+ - : $ *`.
    UnknownType(u8),
    /// A line or a bulk string's payload is not followed by CRLF (a lone CR or LF).
    MissingCrlf,
    /// An integer or length is not canonical decimal (`0` or `-?[1-9][0-9]*`).
    InvalidInteger,
    /// An integer or length does not fit in an `i64`.
    IntegerOverflow,
    /// A bulk or array length is negative but not -1 (the null value).
    NegativeLength,
    /// A bulk string is longer than [`Limits::max_bulk`].
    BulkTooLong,
    /// An array has more elements than [`Limits::max_array`].
    ArrayTooLong,
    /// Arrays nest deeper than [`Limits::max_depth`].
    TooDeep,
    /// A simple string or error line is longer than [`Limits::max_line`].
    LineTooLong,
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::UnknownType(b) => write!(f, "unknown RESP type byte 0x{b:02x}"),
            RespError::MissingCrlf => f.write_str("RESP line not ended by CRLF"),
            RespError::InvalidInteger => f.write_str("RESP integer is not canonical decimal"),
            RespError::IntegerOverflow => f.write_str("RESP integer overflows 64 bits"),
            RespError::NegativeLength => f.write_str("RESP length is negative and not -1"),
            RespError::BulkTooLong => f.write_str("RESP bulk string over the limit"),
            RespError::ArrayTooLong => f.write_str("RESP array over the limit"),
            RespError::TooDeep => f.write_str("RESP arrays nested too deep"),
            RespError::LineTooLong => f.write_str("RESP line over the limit"),
        }
    }
}

impl std::error::Error for RespError {}

/// Appends `args` as one command (an array of bulk strings), so that a
/// loop turn's commands pipeline into one buffer and one write.
pub fn encode_command(args: &[&[u8]], out: &mut Vec<u8>) {
    out.reserve(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    push_header(b'*', args.len() as i64, out);
    for arg in args {
        push_header(b'$', arg.len() as i64, out);
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `reply` in its wire form, as a server would write it (for tests
/// and fake servers). CR and LF inside a simple string or error cannot be
/// written in RESP and become spaces, as Redis does in its error messages.
pub fn encode_reply(reply: &Reply, out: &mut Vec<u8>) {
    match reply {
        Reply::Simple(text) | Reply::Error(text) => {
            out.push(if matches!(reply, Reply::Simple(_)) {
                b'+'
            } else {
                b'-'
            });
            out.extend(
                text.bytes()
                    .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
            );
            out.extend_from_slice(b"\r\n");
        }
        Reply::Integer(n) => push_header(b':', *n, out),
        Reply::Bulk(None) => push_header(b'$', -1, out),
        Reply::Bulk(Some(bytes)) => {
            push_header(b'$', bytes.len() as i64, out);
            out.extend_from_slice(bytes);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Array(None) => push_header(b'*', -1, out),
        Reply::Array(Some(items)) => {
            push_header(b'*', items.len() as i64, out);
            for item in items {
                encode_reply(item, out);
            }
        }
    }
}

/// `kind`, `n` in decimal, CRLF, without going through `fmt`'s allocation.
fn push_header(kind: u8, n: i64, out: &mut Vec<u8>) {
    out.push(kind);
    if n < 0 {
        out.push(b'-');
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// Decodes the first reply of `buf` with [`Limits::DEFAULT`]: the reply and
/// the bytes it used, `None` if `buf` holds only part of it.
pub fn decode(buf: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
    Decoder::new(Limits::DEFAULT).decode(buf)
}

/// [`decode`] with other limits.
pub fn decode_with(buf: &[u8], limits: Limits) -> Result<Option<(Reply, usize)>, RespError> {
    Decoder::new(limits).decode(buf)
}

/// An incremental decoder that resumes where the previous call stopped, so
/// that a large reply arriving in many reads costs time in proportion to
/// its size, not to its size times the number of reads.
///
/// The contract: pass the same buffer, with bytes only appended, until a
/// reply (or an error) comes out; then remove the `used` bytes from its
/// front before the next call. After an error the decoder starts afresh,
/// though the connection's byte stream is beyond repair.
#[derive(Debug, Clone)]
pub struct Decoder {
    limits: Limits,
    /// Where the next element of the reply in progress starts.
    pos: usize,
    /// Arrays still open, outermost first: the elements so far, and how
    /// many the array declared.
    open: Vec<(Vec<Reply>, usize)>,
    /// Where the search for the current line's CRLF resumes, so a long
    /// line arriving byte by byte is scanned once.
    line_from: usize,
}

/// How a search for CRLF ended.
enum Line {
    /// The line's content ends at this index (the CR).
    End(usize),
    /// No CRLF yet; search again from this index when more bytes come.
    More(usize),
}

/// The longest canonical `i64`, `-9223372036854775808`, has 20 characters.
const MAX_NUMBER_LINE: usize = 20;

impl Decoder {
    /// A decoder with no reply in progress.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            pos: 0,
            open: Vec::new(),
            line_from: 0,
        }
    }

    /// Forgets the reply in progress (when the connection is replaced).
    pub fn reset(&mut self) {
        self.pos = 0;
        self.open.clear();
        self.line_from = 0;
    }

    /// Continues decoding the reply at the front of `buf`: the reply and
    /// the bytes it used, or `None` if `buf` holds only part of it.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
        if buf.len() < self.pos {
            // Not the buffer of the previous call: start over on this one.
            self.reset();
        }
        let result = self.step(buf);
        if !matches!(result, Ok(None)) {
            self.reset();
        }
        result
    }

    fn step(&mut self, buf: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
        loop {
            let Some(mut value) = self.element(buf)? else {
                return Ok(None);
            };
            // A complete value fills its array, which may complete it in
            // turn, up to the top.
            loop {
                match self.open.last_mut() {
                    None => return Ok(Some((value, self.pos))),
                    Some((items, want)) => {
                        items.push(value);
                        if items.len() < *want {
                            break;
                        }
                    }
                }
                match self.open.pop() {
                    Some((items, _)) => value = Reply::Array(Some(items)),
                    None => return Ok(None),
                }
            }
        }
    }

    /// The next value that is not an array being filled: `Some` when it is
    /// complete (then `pos` is past it), `None` when more bytes are needed.
    /// The headers of non-empty arrays on the way are pushed on `open`.
    fn element(&mut self, buf: &[u8]) -> Result<Option<Reply>, RespError> {
        loop {
            let Some(&kind) = buf.get(self.pos) else {
                return Ok(None);
            };
            let start = self.pos + 1;
            match kind {
                b'+' | b'-' => {
                    let from = self.line_from.max(start);
                    let end = match find_crlf(buf, start, from, self.limits.max_line)? {
                        Line::End(end) => end,
                        Line::More(resume) => {
                            self.line_from = resume;
                            return Ok(None);
                        }
                    };
                    let text = String::from_utf8_lossy(&buf[start..end]).into_owned();
                    self.pos = end + 2;
                    self.line_from = 0;
                    return Ok(Some(if kind == b'+' {
                        Reply::Simple(text)
                    } else {
                        Reply::Error(text)
                    }));
                }
                b':' => {
                    let Some((n, next)) = number_line(buf, start)? else {
                        return Ok(None);
                    };
                    self.pos = next;
                    return Ok(Some(Reply::Integer(n)));
                }
                b'$' => {
                    let Some((n, payload)) = number_line(buf, start)? else {
                        return Ok(None);
                    };
                    if n == -1 {
                        self.pos = payload;
                        return Ok(Some(Reply::Bulk(None)));
                    }
                    let len = checked_length(n, self.limits.max_bulk, RespError::BulkTooLong)?;
                    let end = payload.saturating_add(len);
                    let Some(tail) = buf.get(end..end.saturating_add(2)) else {
                        return Ok(None);
                    };
                    if tail != b"\r\n" {
                        return Err(RespError::MissingCrlf);
                    }
                    self.pos = end + 2;
                    return Ok(Some(Reply::Bulk(Some(buf[payload..end].to_vec()))));
                }
                b'*' => {
                    if self.open.len() >= self.limits.max_depth {
                        return Err(RespError::TooDeep);
                    }
                    let Some((n, next)) = number_line(buf, start)? else {
                        return Ok(None);
                    };
                    self.pos = next;
                    if n == -1 {
                        return Ok(Some(Reply::Array(None)));
                    }
                    let len = checked_length(n, self.limits.max_array, RespError::ArrayTooLong)?;
                    if len == 0 {
                        return Ok(Some(Reply::Array(Some(Vec::new()))));
                    }
                    // Reserve only what the bytes at hand can hold (an
                    // element takes at least 3 bytes), not what is claimed.
                    let room = (buf.len() - next) / 3;
                    self.open.push((Vec::with_capacity(len.min(room)), len));
                }
                other => return Err(RespError::UnknownType(other)),
            }
        }
    }
}

/// A length from the wire as a `usize` within `max`.
fn checked_length(n: i64, max: usize, too_long: RespError) -> Result<usize, RespError> {
    if n < 0 {
        return Err(RespError::NegativeLength);
    }
    match usize::try_from(n) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(too_long),
    }
}

/// Finds the CRLF ending the line whose content starts at `start`,
/// searching from `from`. At most `max` bytes of content are allowed.
fn find_crlf(buf: &[u8], start: usize, from: usize, max: usize) -> Result<Line, RespError> {
    let window_end = buf.len().min(start.saturating_add(max).saturating_add(1));
    let window = buf.get(from..window_end).unwrap_or(&[]);
    match window.iter().position(|&b| b == b'\r' || b == b'\n') {
        Some(i) => {
            let at = from + i;
            match (buf[at], buf.get(at + 1)) {
                (b'\r', Some(b'\n')) => Ok(Line::End(at)),
                (b'\r', None) => Ok(Line::More(at)),
                _ => Err(RespError::MissingCrlf),
            }
        }
        None if buf.len() > start.saturating_add(max) => Err(RespError::LineTooLong),
        None => Ok(Line::More(window_end.max(from))),
    }
}

/// The integer line starting at `start` and where the next element starts.
fn number_line(buf: &[u8], start: usize) -> Result<Option<(i64, usize)>, RespError> {
    match find_crlf(buf, start, start, MAX_NUMBER_LINE) {
        Ok(Line::End(end)) => Ok(Some((parse_integer(&buf[start..end])?, end + 2))),
        Ok(Line::More(_)) => Ok(None),
        // No canonical i64 is this long; say why this one is not a number.
        Err(RespError::LineTooLong) => Err(
            match parse_integer(&buf[start..start + MAX_NUMBER_LINE + 1]) {
                Err(e) => e,
                Ok(_) => RespError::IntegerOverflow,
            },
        ),
        Err(e) => Err(e),
    }
}

/// Canonical decimal, as Redis writes it: `0` or `-?[1-9][0-9]*`. Being
/// strict makes every accepted reply re-encode to the same bytes.
fn parse_integer(text: &[u8]) -> Result<i64, RespError> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let canonical = match digits {
        [] => false,
        [b'0'] => !negative,
        [first, ..] => *first != b'0',
    };
    if !canonical || !digits.iter().all(u8::is_ascii_digit) {
        return Err(RespError::InvalidInteger);
    }
    // Accumulated as a negative number, so that i64::MIN fits.
    let mut value: i64 = 0;
    for &d in digits {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_sub(i64::from(d - b'0')))
            .ok_or(RespError::IntegerOverflow)?;
    }
    if negative {
        Ok(value)
    } else {
        value.checked_neg().ok_or(RespError::IntegerOverflow)
    }
}

// ---------------------------------------------------------------------------
// Streams: the commands and replies of the Redis event log.

/// Appends `XADD key [MAXLEN ~ N] id field value …`. `id` is usually `b"*"`
/// (Redis picks the next id); `maxlen` trims the stream to about N entries
/// (`~` lets Redis trim whole nodes, which is much cheaper than exactly N).
/// Redis refuses an entry without fields.
pub fn xadd(
    key: &[u8],
    id: &[u8],
    maxlen: Option<u64>,
    fields: &[(&[u8], &[u8])],
    out: &mut Vec<u8>,
) {
    let maxlen = maxlen.map(|n| n.to_string());
    let mut args: Vec<&[u8]> = Vec::with_capacity(6 + 2 * fields.len());
    args.extend([b"XADD".as_slice(), key]);
    if let Some(n) = &maxlen {
        args.extend([b"MAXLEN".as_slice(), b"~", n.as_bytes()]);
    }
    args.push(id);
    for (field, value) in fields {
        args.extend([*field, *value]);
    }
    encode_command(&args, out);
}

/// Appends `XREAD [BLOCK ms] [COUNT n] STREAMS key… id…`, one `(key, id)`
/// pair per stream: entries after `id` (`b"$"`: only entries added from now
/// on). With `BLOCK` Redis answers a null array when the time runs out.
pub fn xread(
    block_ms: Option<u64>,
    count: Option<u64>,
    streams: &[(&[u8], &[u8])],
    out: &mut Vec<u8>,
) {
    let block = block_ms.map(|n| n.to_string());
    let count = count.map(|n| n.to_string());
    let mut args: Vec<&[u8]> = Vec::with_capacity(6 + 2 * streams.len());
    args.push(b"XREAD");
    if let Some(ms) = &block {
        args.extend([b"BLOCK".as_slice(), ms.as_bytes()]);
    }
    if let Some(n) = &count {
        args.extend([b"COUNT".as_slice(), n.as_bytes()]);
    }
    args.push(b"STREAMS");
    args.extend(streams.iter().map(|(key, _)| *key));
    args.extend(streams.iter().map(|(_, id)| *id));
    encode_command(&args, out);
}

/// Appends `XRANGE key start end [COUNT n]`: entries from `start` to `end`
/// inclusive, oldest first (`b"-"` and `b"+"` are the ends of the stream,
/// `(ID` excludes ID).
pub fn xrange(key: &[u8], start: &[u8], end: &[u8], count: Option<u64>, out: &mut Vec<u8>) {
    range_command(b"XRANGE", key, start, end, count, out);
}

/// Appends `XREVRANGE key end start [COUNT n]`: entries from `end` down to
/// `start`, newest first (Redis takes the larger bound first).
pub fn xrevrange(key: &[u8], end: &[u8], start: &[u8], count: Option<u64>, out: &mut Vec<u8>) {
    range_command(b"XREVRANGE", key, end, start, count, out);
}

fn range_command(
    name: &[u8],
    key: &[u8],
    first: &[u8],
    second: &[u8],
    count: Option<u64>,
    out: &mut Vec<u8>,
) {
    let count = count.map(|n| n.to_string());
    let mut args: Vec<&[u8]> = vec![name, key, first, second];
    if let Some(n) = &count {
        args.extend([b"COUNT".as_slice(), n.as_bytes()]);
    }
    encode_command(&args, out);
}

/// Event ids stay below this, so that JavaScript numbers (and JSON parsers
/// that use doubles) hold them exactly.
pub const EVENT_ID_LIMIT: u64 = 1 << 53;

/// A Redis stream id `MS-SEQ`: the milliseconds of the entry's time and a
/// sequence number within that millisecond. Ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds since the Unix epoch (Redis's clock, or the last id's
    /// when the clock went back).
    pub ms: u64,
    /// Entries added earlier in the same millisecond.
    pub seq: u64,
}

impl StreamId {
    /// Parses `MS-SEQ` (two decimal numbers) as Redis writes it.
    pub fn parse(text: &[u8]) -> Result<StreamId, StreamError> {
        let dash = text
            .iter()
            .position(|&b| b == b'-')
            .ok_or(StreamError::BadId)?;
        let number = |digits: &[u8]| -> Result<u64, StreamError> {
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(StreamError::BadId);
            }
            digits.iter().try_fold(0u64, |n, &d| {
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d - b'0')))
                    .ok_or(StreamError::BadId)
            })
        };
        Ok(StreamId {
            ms: number(&text[..dash])?,
            seq: number(&text[dash + 1..])?,
        })
    }

    /// The ssehub event id of this entry: `MS × 1000 + SEQ`.
    ///
    /// Redis gives each stream's entries strictly increasing ids, ordered
    /// by MS then SEQ. While SEQ < 1000 the mapping keeps that order
    /// strictly: an entry of a later millisecond maps to at least
    /// `(MS + 1) × 1000`, above anything of millisecond MS (at most
    /// `MS × 1000 + 999`), and within one millisecond a larger SEQ is a
    /// larger id. SEQ ≥ 1000 (over a thousand entries in one millisecond)
    /// would collide with the next millisecond, so it is refused and the
    /// writer must move on to the next millisecond instead.
    ///
    /// MS is a Unix time in milliseconds (about 1.8 × 10^12 in 2026), so
    /// the id is about 1.8 × 10^15, under 2^53 ≈ 9.007 × 10^15 until the
    /// year 2255; it is also the scheme ssehub uses without Redis (start
    /// time in ms × 1000), so ids keep increasing when a node switches.
    /// An id at or over 2^53 (a clock far off, or ids set by hand) is
    /// refused, as JavaScript could not represent it exactly.
    pub fn event_id(self) -> Result<u64, StreamError> {
        if self.seq >= 1000 {
            return Err(StreamError::SeqTooLarge);
        }
        match self
            .ms
            .checked_mul(1000)
            .and_then(|n| n.checked_add(self.seq))
        {
            Some(id) if id < EVENT_ID_LIMIT => Ok(id),
            _ => Err(StreamError::TooLarge),
        }
    }

    /// The stream id an event id came from (the inverse of
    /// [`event_id`](Self::event_id)), e.g. to resume after a
    /// `Last-Event-ID`.
    pub fn from_event_id(id: u64) -> StreamId {
        StreamId {
            ms: id / 1000,
            seq: id % 1000,
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One stream entry: its id and its field/value pairs in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// The entry's id.
    pub id: StreamId,
    /// Field/value pairs, as given to XADD.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One stream of an XREAD reply: its key and its entries, oldest first.
pub type StreamEntries = (Vec<u8>, Vec<StreamEntry>);

/// Why a stream reply or id cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// Redis answered the command with an error reply (its message).
    Redis(String),
    /// The reply does not have the shape of the command's answer (what was
    /// expected).
    Shape(&'static str),
    /// A stream id is not `MS-SEQ` with two decimal numbers that fit in 64 bits.
    BadId,
    /// SEQ ≥ 1000: `MS × 1000 + SEQ` would not stay increasing.
    SeqTooLarge,
    /// `MS × 1000 + SEQ` is 2^53 or more.
    TooLarge,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Redis(message) => write!(f, "redis: {message}"),
            StreamError::Shape(expected) => write!(f, "unexpected reply: expected {expected}"),
            StreamError::BadId => f.write_str("stream id is not MS-SEQ"),
            StreamError::SeqTooLarge => f.write_str("stream id has SEQ >= 1000"),
            StreamError::TooLarge => f.write_str("stream id maps to an event id >= 2^53"),
        }
    }
}

impl std::error::Error for StreamError {}

/// The elements of an array reply; an error reply becomes
/// [`StreamError::Redis`].
fn items(reply: Reply, expected: &'static str) -> Result<Option<Vec<Reply>>, StreamError> {
    match reply {
        Reply::Array(items) => Ok(items),
        Reply::Error(message) => Err(StreamError::Redis(message)),
        _ => Err(StreamError::Shape(expected)),
    }
}

fn bulk(reply: Reply, expected: &'static str) -> Result<Vec<u8>, StreamError> {
    match reply {
        Reply::Bulk(Some(bytes)) => Ok(bytes),
        _ => Err(StreamError::Shape(expected)),
    }
}

/// Parses the reply of XADD: the new entry's id.
pub fn parse_xadd(reply: Reply) -> Result<StreamId, StreamError> {
    match reply {
        Reply::Error(message) => Err(StreamError::Redis(message)),
        other => StreamId::parse(&bulk(other, "the id of the new entry")?),
    }
}

/// Parses the reply of XRANGE or XREVRANGE: the entries, in the reply's
/// order.
pub fn parse_range(reply: Reply) -> Result<Vec<StreamEntry>, StreamError> {
    const EXPECTED: &str = "an array of [id, [field, value, …]] entries";
    let entries = items(reply, EXPECTED)?.ok_or(StreamError::Shape(EXPECTED))?;
    entries
        .into_iter()
        .map(|entry| {
            let pair = items(entry, EXPECTED)?.ok_or(StreamError::Shape(EXPECTED))?;
            let [id, fields]: [Reply; 2] =
                pair.try_into().map_err(|_| StreamError::Shape(EXPECTED))?;
            let id = StreamId::parse(&bulk(id, EXPECTED)?)?;
            // Only XREADGROUP answers a null here (an entry deleted while
            // pending); read as no fields.
            let flat = items(fields, EXPECTED)?.unwrap_or_default();
            if flat.len() % 2 != 0 {
                return Err(StreamError::Shape(EXPECTED));
            }
            let mut fields = Vec::with_capacity(flat.len() / 2);
            let mut flat = flat.into_iter();
            while let (Some(field), Some(value)) = (flat.next(), flat.next()) {
                fields.push((bulk(field, EXPECTED)?, bulk(value, EXPECTED)?));
            }
            Ok(StreamEntry { id, fields })
        })
        .collect()
}

/// Parses the reply of XREAD: each stream that has entries, with its
/// entries oldest first. A null reply (BLOCK timed out, or nothing new)
/// is an empty list.
pub fn parse_xread(reply: Reply) -> Result<Vec<StreamEntries>, StreamError> {
    const EXPECTED: &str = "an array of [key, entries] pairs";
    let Some(streams) = items(reply, EXPECTED)? else {
        return Ok(Vec::new());
    };
    streams
        .into_iter()
        .map(|stream| {
            let pair = items(stream, EXPECTED)?.ok_or(StreamError::Shape(EXPECTED))?;
            let [key, entries]: [Reply; 2] =
                pair.try_into().map_err(|_| StreamError::Shape(EXPECTED))?;
            Ok((bulk(key, EXPECTED)?, parse_range(entries)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(bytes: &[u8]) -> Reply {
        Reply::Bulk(Some(bytes.to_vec()))
    }

    fn array(items: Vec<Reply>) -> Reply {
        Reply::Array(Some(items))
    }

    fn simple(text: &str) -> Reply {
        Reply::Simple(text.to_string())
    }

    /// Every reply type, each alone in the buffer.
    #[test]
    fn decodes_every_reply_type() {
        let cases: &[(&[u8], Reply)] = &[
            (b"+OK\r\n", simple("OK")),
            (b"+\r\n", simple("")),
            (b"-ERR wrong\r\n", Reply::Error("ERR wrong".into())),
            (b":0\r\n", Reply::Integer(0)),
            (b":-1\r\n", Reply::Integer(-1)),
            (b":1000\r\n", Reply::Integer(1000)),
            (b":9223372036854775807\r\n", Reply::Integer(i64::MAX)),
            (b":-9223372036854775808\r\n", Reply::Integer(i64::MIN)),
            (b"$5\r\nhello\r\n", bulk(b"hello")),
            (b"$0\r\n\r\n", bulk(b"")),
            (b"$4\r\na\r\nb\r\n", bulk(b"a\r\nb")),
            (b"$3\r\n\x00\xff\n\r\n", bulk(b"\x00\xff\n")),
            (b"$-1\r\n", Reply::Bulk(None)),
            (b"*-1\r\n", Reply::Array(None)),
            (b"*0\r\n", array(vec![])),
            (
                b"*3\r\n:1\r\n$1\r\nx\r\n+y\r\n",
                array(vec![Reply::Integer(1), bulk(b"x"), simple("y")]),
            ),
            (
                b"*2\r\n*2\r\n$1\r\na\r\n*0\r\n*1\r\n*-1\r\n",
                array(vec![
                    array(vec![bulk(b"a"), array(vec![])]),
                    array(vec![Reply::Array(None)]),
                ]),
            ),
            (
                b"*3\r\n$-1\r\n*-1\r\n-E\r\n",
                array(vec![
                    Reply::Bulk(None),
                    Reply::Array(None),
                    Reply::Error("E".into()),
                ]),
            ),
            // Not UTF-8: replaced, the stream stays usable.
            (b"+a\xffb\r\n", simple("a\u{fffd}b")),
        ];
        for (wire, want) in cases {
            assert_eq!(
                decode(wire),
                Ok(Some((want.clone(), wire.len()))),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    /// Every strict prefix of a reply is incomplete, not an error.
    #[test]
    fn every_prefix_is_incomplete() {
        let wire: &[u8] =
            b"*3\r\n$5\r\nhello\r\n*2\r\n:-42\r\n-ERR x\r\n*2\r\n$-1\r\n+long status line\r\n";
        assert!(matches!(decode(wire), Ok(Some((_, n))) if n == wire.len()));
        for cut in 0..wire.len() {
            assert_eq!(decode(&wire[..cut]), Ok(None), "prefix of {cut} bytes");
        }
    }

    /// Several replies back to back, as a pipeline's answers arrive.
    fn pipelined() -> (Vec<u8>, Vec<Reply>) {
        let replies = vec![
            simple("OK"),
            bulk(b"1700000000000-0"),
            Reply::Error(
                "WRONGTYPE Operation against a key holding the wrong kind of value".into(),
            ),
            Reply::Integer(7),
            Reply::Array(None),
            array(vec![array(vec![
                bulk(b"room:lobby"),
                array(vec![array(vec![
                    bulk(b"1700000000000-1"),
                    array(vec![
                        bulk(b"data"),
                        bulk(b"line 1\nline 2"),
                        bulk(b""),
                        bulk(b""),
                    ]),
                ])]),
            ])]),
            Reply::Bulk(None),
            bulk(b""),
        ];
        let mut wire = Vec::new();
        for reply in &replies {
            encode_reply(reply, &mut wire);
        }
        (wire, replies)
    }

    /// Drains every complete reply from a growing buffer, the way a
    /// connection does after each read.
    fn feed(pieces: &[&[u8]]) -> Vec<Reply> {
        let mut decoder = Decoder::new(Limits::DEFAULT);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in pieces {
            buf.extend_from_slice(piece);
            while let Some((reply, used)) = decoder.decode(&buf).expect("valid input") {
                buf.drain(..used);
                out.push(reply);
            }
        }
        assert!(buf.is_empty(), "bytes left over");
        out
    }

    #[test]
    fn pipelined_replies_back_to_back() {
        let (wire, replies) = pipelined();
        assert_eq!(feed(&[&wire]), replies);
        // The stateless function agrees, reply by reply.
        let mut at = 0;
        for reply in &replies {
            let (got, used) = decode(&wire[at..]).unwrap().unwrap();
            assert_eq!(&got, reply);
            at += used;
        }
        assert_eq!(at, wire.len());
    }

    #[test]
    fn every_split_point_gives_the_same_replies() {
        let (wire, replies) = pipelined();
        for cut in 0..=wire.len() {
            assert_eq!(
                feed(&[&wire[..cut], &wire[cut..]]),
                replies,
                "split at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(feed(&bytes), replies, "byte by byte");
        let threes: Vec<&[u8]> = wire.chunks(3).collect();
        assert_eq!(feed(&threes), replies, "three bytes at a time");
    }

    /// An error after good replies comes out after them, wherever the
    /// bytes were cut.
    #[test]
    fn an_error_is_found_at_every_split_point() {
        let wire: &[u8] = b"+OK\r\n*2\r\n:1\r\n:01\r\n+never\r\n";
        for cut in 0..=wire.len() {
            let mut decoder = Decoder::new(Limits::DEFAULT);
            let mut buf = Vec::new();
            let mut got = Vec::new();
            for piece in [&wire[..cut], &wire[cut..]] {
                buf.extend_from_slice(piece);
                loop {
                    match decoder.decode(&buf) {
                        Ok(Some((reply, used))) => {
                            buf.drain(..used);
                            got.push(Ok(reply));
                        }
                        Ok(None) => break,
                        Err(e) => {
                            got.push(Err(e));
                            break;
                        }
                    }
                }
                if matches!(got.last(), Some(Err(_))) {
                    break;
                }
            }
            assert_eq!(
                got,
                [Ok(simple("OK")), Err(RespError::InvalidInteger)],
                "split at {cut}"
            );
        }
    }

    /// Replies taken at a moving offset, the buffer drained once per read
    /// rather than once per reply.
    #[test]
    fn decoding_at_an_offset() {
        let (wire, replies) = pipelined();
        let mut decoder = Decoder::new(Limits::DEFAULT);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for read in wire.chunks(7) {
            buf.extend_from_slice(read);
            let mut at = 0;
            while let Some((reply, used)) = decoder.decode(&buf[at..]).unwrap() {
                at += used;
                got.push(reply);
            }
            buf.drain(..at);
        }
        assert_eq!(got, replies);
    }

    #[test]
    fn each_error_case() {
        let cases: &[(&[u8], RespError)] = &[
            (b"?x\r\n", RespError::UnknownType(b'?')),
            (b"\r\n", RespError::UnknownType(b'\r')),
            (b"*1\r\n!\r\n", RespError::UnknownType(b'!')),
            (b"+OK\n", RespError::MissingCrlf),
            (b"+OK\rX", RespError::MissingCrlf),
            (b":1\n", RespError::MissingCrlf),
            (b"$3\r\nabcde\r\n", RespError::MissingCrlf),
            (b"$3\r\nabc\n\r", RespError::MissingCrlf),
            (b":\r\n", RespError::InvalidInteger),
            (b":+1\r\n", RespError::InvalidInteger),
            (b":01\r\n", RespError::InvalidInteger),
            (b":-0\r\n", RespError::InvalidInteger),
            (b":-\r\n", RespError::InvalidInteger),
            (b":1 \r\n", RespError::InvalidInteger),
            (b"$x\r\n", RespError::InvalidInteger),
            (b":9223372036854775808\r\n", RespError::IntegerOverflow),
            (b":-9223372036854775809\r\n", RespError::IntegerOverflow),
            // Longer than any i64: refused before the line ends.
            (b":123456789012345678901", RespError::IntegerOverflow),
            (b"$99999999999999999999999999", RespError::IntegerOverflow),
            (b":12345678901234567890x", RespError::InvalidInteger),
            (b"$-2\r\n", RespError::NegativeLength),
            (b"*-5\r\n", RespError::NegativeLength),
            (b"$67108865\r\n", RespError::BulkTooLong),
            (b"$9223372036854775807\r\n", RespError::BulkTooLong),
            (b"*1048577\r\n", RespError::ArrayTooLong),
            (
                b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n",
                RespError::TooDeep,
            ),
        ];
        for (wire, want) in cases {
            assert_eq!(
                decode(wire),
                Err(*want),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
        // Eight levels are allowed.
        let deep = b"*1\r\n"
            .repeat(7)
            .into_iter()
            .chain(*b"*0\r\n")
            .collect::<Vec<u8>>();
        assert!(matches!(decode(&deep), Ok(Some(_))));
    }

    #[test]
    fn limits_are_parameters() {
        let small = Limits {
            max_bulk: 4,
            max_array: 2,
            max_depth: 1,
            max_line: 3,
        };
        type Used = Result<Option<usize>, RespError>;
        let cases: &[(&[u8], Used)] = &[
            (b"$4\r\nabcd\r\n", Ok(Some(10))),
            (b"$5\r\n", Err(RespError::BulkTooLong)),
            (b"*2\r\n:1\r\n:2\r\n", Ok(Some(12))),
            (b"*3\r\n", Err(RespError::ArrayTooLong)),
            (b"*1\r\n*0\r\n", Err(RespError::TooDeep)),
            (b"+abc\r\n", Ok(Some(6))),
            (b"-abc", Ok(None)),
            (b"+abcd", Err(RespError::LineTooLong)),
            (b"-abcd\r\n", Err(RespError::LineTooLong)),
        ];
        for (wire, want) in cases {
            let got = decode_with(wire, small).map(|r| r.map(|(_, used)| used));
            assert_eq!(&got, want, "{}", String::from_utf8_lossy(wire));
        }
    }

    /// A claimed length costs nothing until its bytes are there.
    #[test]
    fn claims_do_not_allocate() {
        let mut decoder = Decoder::new(Limits::DEFAULT);
        assert_eq!(decoder.decode(b"*1048576\r\n$67108864\r\nab"), Ok(None));
        assert!(decoder.open[0].0.capacity() < 16);
    }

    /// A long line trickling in is searched once, not once per byte.
    #[test]
    fn a_trickling_line_resumes_its_search() {
        let mut decoder = Decoder::new(Limits::DEFAULT);
        let mut buf = b"+".to_vec();
        for _ in 0..1000 {
            buf.push(b'a');
            assert_eq!(decoder.decode(&buf), Ok(None));
            assert_eq!(decoder.line_from, buf.len());
        }
        buf.push(b'\r');
        assert_eq!(decoder.decode(&buf), Ok(None));
        buf.push(b'\n');
        let (reply, used) = decoder.decode(&buf).unwrap().unwrap();
        assert_eq!((reply, used), (simple(&"a".repeat(1000)), 1003));
        // Reset after a reply: the next one starts at 0.
        assert_eq!(decoder.decode(b":5\r\n"), Ok(Some((Reply::Integer(5), 4))));
    }

    #[test]
    fn a_decoder_given_a_shorter_buffer_starts_over() {
        let mut decoder = Decoder::new(Limits::DEFAULT);
        assert_eq!(decoder.decode(b"*2\r\n:1\r\n"), Ok(None));
        assert_eq!(decoder.decode(b":7\r\n"), Ok(Some((Reply::Integer(7), 4))));
    }

    #[test]
    fn encodes_commands_appending() {
        let mut out = b"keep".to_vec();
        encode_command(&[b"PING"], &mut out);
        encode_command(&[b"SET", b"k", b"a\r\nb"], &mut out);
        encode_command(&[], &mut out);
        encode_command(&[b""], &mut out);
        assert_eq!(
            out,
            b"keep*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n*0\r\n*1\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn encoded_replies_decode_to_themselves() {
        let (wire, replies) = pipelined();
        let mut again = Vec::new();
        for reply in &replies {
            encode_reply(reply, &mut again);
        }
        assert_eq!(again, wire);
        let mut out = Vec::new();
        encode_reply(&Reply::Error("bad\r\nline".into()), &mut out);
        encode_reply(&Reply::Integer(i64::MIN), &mut out);
        assert_eq!(out, b"-bad  line\r\n:-9223372036854775808\r\n");
    }

    #[test]
    fn stream_commands() {
        let cases: Vec<(Vec<u8>, &[&[u8]])> = vec![
            (
                {
                    let mut out = Vec::new();
                    xadd(
                        b"s",
                        b"*",
                        Some(100),
                        &[(b"event", b"msg"), (b"data", b"hi")],
                        &mut out,
                    );
                    out
                },
                &[
                    b"XADD", b"s", b"MAXLEN", b"~", b"100", b"*", b"event", b"msg", b"data", b"hi",
                ],
            ),
            (
                {
                    let mut out = Vec::new();
                    xadd(b"s", b"5-0", None, &[(b"f", b"")], &mut out);
                    out
                },
                &[b"XADD", b"s", b"5-0", b"f", b""],
            ),
            (
                {
                    let mut out = Vec::new();
                    xread(
                        Some(2000),
                        Some(50),
                        &[(b"a", b"1-0"), (b"b", b"$")],
                        &mut out,
                    );
                    out
                },
                &[
                    b"XREAD", b"BLOCK", b"2000", b"COUNT", b"50", b"STREAMS", b"a", b"b", b"1-0",
                    b"$",
                ],
            ),
            (
                {
                    let mut out = Vec::new();
                    xread(None, None, &[(b"a", b"0")], &mut out);
                    out
                },
                &[b"XREAD", b"STREAMS", b"a", b"0"],
            ),
            (
                {
                    let mut out = Vec::new();
                    xrange(b"s", b"(1-2", b"+", Some(10), &mut out);
                    out
                },
                &[b"XRANGE", b"s", b"(1-2", b"+", b"COUNT", b"10"],
            ),
            (
                {
                    let mut out = Vec::new();
                    xrevrange(b"s", b"+", b"-", Some(1), &mut out);
                    xrevrange(b"s", b"+", b"-", None, &mut out);
                    out
                },
                &[b"XREVRANGE", b"s", b"+", b"-", b"COUNT", b"1"],
            ),
        ];
        for (got, args) in &cases {
            let mut want = Vec::new();
            encode_command(args, &mut want);
            assert!(got.starts_with(&want), "{}", String::from_utf8_lossy(got));
        }
        // The second XREVRANGE has no COUNT.
        let mut want = Vec::new();
        encode_command(&[b"XREVRANGE", b"s", b"+", b"-", b"COUNT", b"1"], &mut want);
        encode_command(&[b"XREVRANGE", b"s", b"+", b"-"], &mut want);
        assert_eq!(cases[5].0, want);
    }

    #[test]
    fn stream_ids() {
        type Parsed = Result<(u64, u64), StreamError>;
        let cases: &[(&[u8], Parsed, Result<u64, StreamError>)] = &[
            (b"0-1", Ok((0, 1)), Ok(1)),
            (
                b"1700000000000-0",
                Ok((1_700_000_000_000, 0)),
                Ok(1_700_000_000_000_000),
            ),
            (
                b"1700000000000-999",
                Ok((1_700_000_000_000, 999)),
                Ok(1_700_000_000_000_999),
            ),
            (
                b"1700000000000-1000",
                Ok((1_700_000_000_000, 1000)),
                Err(StreamError::SeqTooLarge),
            ),
            // The last millisecond below 2^53, and the first at it.
            (
                b"9007199254740-991",
                Ok((9_007_199_254_740, 991)),
                Ok((1 << 53) - 1),
            ),
            (
                b"9007199254740-992",
                Ok((9_007_199_254_740, 992)),
                Err(StreamError::TooLarge),
            ),
            (
                b"18446744073709551615-0",
                Ok((u64::MAX, 0)),
                Err(StreamError::TooLarge),
            ),
            (
                b"18446744073709551616-0",
                Err(StreamError::BadId),
                Err(StreamError::BadId),
            ),
            (b"5", Err(StreamError::BadId), Err(StreamError::BadId)),
            (b"5-", Err(StreamError::BadId), Err(StreamError::BadId)),
            (b"-5", Err(StreamError::BadId), Err(StreamError::BadId)),
            (b"1-2-3", Err(StreamError::BadId), Err(StreamError::BadId)),
            (b"1-+2", Err(StreamError::BadId), Err(StreamError::BadId)),
            (b"", Err(StreamError::BadId), Err(StreamError::BadId)),
        ];
        for (text, parsed, event) in cases {
            let got = StreamId::parse(text);
            assert_eq!(
                got.as_ref().map(|id| (id.ms, id.seq)),
                parsed.as_ref().map(|p| *p)
            );
            assert_eq!(&got.and_then(StreamId::event_id), event, "{text:?}");
        }
        let id = StreamId::parse(b"1700000000123-45").unwrap();
        assert_eq!(id.to_string(), "1700000000123-45");
        assert_eq!(StreamId::from_event_id(id.event_id().unwrap()), id);
    }

    /// Ordered stream ids map to ordered event ids, across millisecond
    /// boundaries too.
    #[test]
    fn event_ids_increase_with_stream_ids() {
        let ids: Vec<StreamId> = [(7, 0), (7, 1), (7, 999), (8, 0), (8, 998), (1000, 0)]
            .iter()
            .map(|&(ms, seq)| StreamId { ms, seq })
            .collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(
                pair[0].event_id().unwrap() < pair[1].event_id().unwrap(),
                "{pair:?}"
            );
        }
    }

    fn entry(id: &[u8], fields: &[&[u8]]) -> Reply {
        array(vec![
            bulk(id),
            array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    #[test]
    fn parses_stream_replies() {
        let range = array(vec![
            entry(b"1-0", &[b"event", b"message", b"data", b"{}"]),
            entry(b"1-1", &[]),
        ]);
        let want = vec![
            StreamEntry {
                id: StreamId { ms: 1, seq: 0 },
                fields: vec![
                    (b"event".to_vec(), b"message".to_vec()),
                    (b"data".to_vec(), b"{}".to_vec()),
                ],
            },
            StreamEntry {
                id: StreamId { ms: 1, seq: 1 },
                fields: vec![],
            },
        ];
        assert_eq!(parse_range(range.clone()), Ok(want.clone()));
        assert_eq!(parse_range(array(vec![])), Ok(vec![]));

        let read = array(vec![
            array(vec![bulk(b"a"), range]),
            array(vec![bulk(b"b"), array(vec![])]),
        ]);
        assert_eq!(
            parse_xread(read),
            Ok(vec![(b"a".to_vec(), want), (b"b".to_vec(), vec![])])
        );
        assert_eq!(parse_xread(Reply::Array(None)), Ok(vec![]));
        assert_eq!(parse_xadd(bulk(b"9-3")), Ok(StreamId { ms: 9, seq: 3 }));
    }

    #[test]
    fn stream_reply_errors() {
        let wrongtype = Reply::Error("WRONGTYPE x".into());
        assert_eq!(
            parse_xadd(wrongtype.clone()),
            Err(StreamError::Redis("WRONGTYPE x".into()))
        );
        assert_eq!(
            parse_range(wrongtype.clone()),
            Err(StreamError::Redis("WRONGTYPE x".into()))
        );
        assert_eq!(
            parse_xread(wrongtype),
            Err(StreamError::Redis("WRONGTYPE x".into()))
        );
        assert_eq!(parse_xadd(bulk(b"x")), Err(StreamError::BadId));
        assert_eq!(
            parse_range(array(vec![entry(b"nope", &[])])),
            Err(StreamError::BadId)
        );
        let shapes = [
            Reply::Integer(1),
            Reply::Array(None),
            array(vec![bulk(b"1-0")]),
            array(vec![array(vec![bulk(b"1-0")])]),
            array(vec![entry(b"1-0", &[b"odd"])]),
            array(vec![array(vec![simple("1-0"), array(vec![])])]),
            array(vec![array(vec![
                bulk(b"1-0"),
                array(vec![]),
                array(vec![]),
            ])]),
            array(vec![array(vec![
                bulk(b"1-0"),
                array(vec![Reply::Integer(1), bulk(b"v")]),
            ])]),
        ];
        for reply in shapes {
            assert!(
                matches!(parse_range(reply.clone()), Err(StreamError::Shape(_))),
                "{reply:?}"
            );
        }
        let bad_reads = [
            Reply::Bulk(None),
            array(vec![bulk(b"a")]),
            array(vec![array(vec![bulk(b"a")])]),
            array(vec![array(vec![Reply::Integer(1), array(vec![])])]),
        ];
        for reply in bad_reads {
            assert!(
                matches!(parse_xread(reply.clone()), Err(StreamError::Shape(_))),
                "{reply:?}"
            );
        }
    }
}
