//! The `text/event-stream` encoder: events in, wire bytes out.
//!
//! Pure code: it never sees a socket. The server encodes each broadcast
//! frame once here and appends the same bytes to every recipient.
//!
//! ```
//! use ssehub::sse::{encode, Event};
//!
//! let event = Event::new("reading", "temp=21\nhum=40").unwrap().with_id(7);
//! let mut wire = Vec::new();
//! encode(&event, &mut wire);
//! assert_eq!(wire, b"id: 7\nevent: reading\ndata: temp=21\ndata: hum=40\n\n");
//! ```

use std::fmt;

/// Longest event name accepted, in characters (the contract's limit).
pub const MAX_EVENT_NAME_CHARS: usize = 64;

/// One event of the stream, checked so that it always encodes to a
/// well-formed frame: its name has no line end and no `:`, its id no NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `id:` field; `None` for events that must not move a client's
    /// `Last-Event-ID` (heartbeats, presence, hello).
    id: Option<u64>,
    /// The `event:` field; `None` means the default `message`.
    name: Option<String>,
    /// The payload; any line end (LF, CR, CRLF) starts a new `data:` line.
    data: String,
}

/// Why an [`Event`] could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventError {
    /// The name is empty or longer than [`MAX_EVENT_NAME_CHARS`] characters.
    NameLength,
    /// The name holds CR, LF or `:`, which would end or split the field.
    NameCharacter,
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::NameLength => write!(f, "event name must be 1-64 characters"),
            EventError::NameCharacter => {
                write!(f, "event name must not contain CR, LF or ':'")
            }
        }
    }
}

impl std::error::Error for EventError {}

/// Checks an event name against the contract: 1–64 characters, no CR, LF or `:`.
///
/// # Errors
/// [`EventError::NameLength`] or [`EventError::NameCharacter`].
pub fn check_event_name(name: &str) -> Result<(), EventError> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_EVENT_NAME_CHARS {
        return Err(EventError::NameLength);
    }
    if name.contains(['\r', '\n', ':']) {
        return Err(EventError::NameCharacter);
    }
    Ok(())
}

impl Event {
    /// An event named `name` carrying `data`, with no id yet.
    ///
    /// # Errors
    /// Returns [`EventError`] when the name breaks the contract's rules.
    ///
    /// # Examples
    /// ```
    /// use ssehub::sse::Event;
    /// assert!(Event::new("reading", "21").is_ok());
    /// assert!(Event::new("bad\nname", "21").is_err());
    /// ```
    pub fn new(name: &str, data: &str) -> Result<Event, EventError> {
        check_event_name(name)?;
        Ok(Event {
            id: None,
            name: Some(name.to_string()),
            data: data.to_string(),
        })
    }

    /// An unnamed event (a client sees it as `message`) carrying `data`.
    pub fn message(data: &str) -> Event {
        Event {
            id: None,
            name: None,
            data: data.to_string(),
        }
    }

    /// The same event with an `id:` field.
    pub fn with_id(mut self, id: u64) -> Event {
        self.id = Some(id);
        self
    }

    /// The event's id, if it has one.
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// The event's name, `None` for the default `message`.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The event's data as given.
    pub fn data(&self) -> &str {
        &self.data
    }
}

/// Appends the wire form of `event` to `out`.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    encode_parts(event.id, event.name.as_deref(), &event.data, out);
}

/// Appends one frame built from its parts to `out`. The caller has checked
/// `name` (see [`check_event_name`]); `data` may hold any line ends.
pub fn encode_parts(id: Option<u64>, name: Option<&str>, data: &str, out: &mut Vec<u8>) {
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        push_u64(id, out);
        out.push(b'\n');
    }
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in split_lines(data) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Appends a `retry: MS` line and its blank line.
pub fn encode_retry(ms: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"retry: ");
    push_u64(ms, out);
    out.extend_from_slice(b"\n\n");
}

/// Appends an id-only block (`id: N` and a blank line): it moves a client's
/// last event id without dispatching an event.
pub fn encode_id_only(id: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"id: ");
    push_u64(id, out);
    out.extend_from_slice(b"\n\n");
}

/// Turns CRLF and lone CR into LF, as a client will see the data.
pub fn normalize_line_ends(text: &str) -> String {
    if !text.contains('\r') {
        return text.to_string();
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Splits on LF, CR and CRLF; a trailing line end yields a trailing empty
/// line, so the client's `data` keeps its final `\n`.
fn split_lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(text)
            }
            Some(at) => {
                let skip = if text[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&text[at + skip..]);
                Some(&text[..at])
            }
        }
    })
}

fn push_u64(value: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut v = value;
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(id: Option<u64>, name: Option<&str>, data: &str) -> String {
        let mut out = Vec::new();
        encode_parts(id, name, data, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn encodes_line_ends_as_separate_data_lines() {
        let cases: &[(&str, &str)] = &[
            ("a", "data: a\n\n"),
            ("", "data: \n\n"),
            ("a\nb", "data: a\ndata: b\n\n"),
            ("a\rb", "data: a\ndata: b\n\n"),
            ("a\r\nb", "data: a\ndata: b\n\n"),
            ("a\n", "data: a\ndata: \n\n"),
            ("a\r\n\r\nb", "data: a\ndata: \ndata: b\n\n"),
            ("\r", "data: \ndata: \n\n"),
        ];
        for (data, expected) in cases {
            assert_eq!(wire(None, None, data), *expected, "data {data:?}");
        }
    }

    #[test]
    fn field_injection_stays_inside_data() {
        let out = wire(
            Some(5),
            Some("x"),
            "hi\nid: 99\nevent: evil\r\n\r\nretry: 1",
        );
        assert_eq!(
            out,
            "id: 5\nevent: x\ndata: hi\ndata: id: 99\ndata: event: evil\ndata: \ndata: retry: 1\n\n"
        );
    }

    #[test]
    fn ids_retry_and_id_only() {
        let mut out = Vec::new();
        encode_retry(2000, &mut out);
        encode_id_only(0, &mut out);
        encode_id_only(u64::MAX, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "retry: 2000\n\nid: 0\n\nid: 18446744073709551615\n\n"
        );
    }

    #[test]
    fn event_names_are_checked() {
        assert_eq!(check_event_name(""), Err(EventError::NameLength));
        assert_eq!(
            check_event_name(&"x".repeat(65)),
            Err(EventError::NameLength)
        );
        assert!(check_event_name(&"é".repeat(64)).is_ok());
        for bad in ["a\nb", "a\rb", "a:b"] {
            assert_eq!(check_event_name(bad), Err(EventError::NameCharacter));
        }
    }

    #[test]
    fn normalizes_line_ends() {
        assert_eq!(normalize_line_ends("a\r\nb\rc\n"), "a\nb\nc\n");
        assert_eq!(normalize_line_ends("plain"), "plain");
    }
}
