//! Fuzz target `sse_roundtrip`: any text published as an event reaches an
//! `EventSource` as exactly that text (line ends normalised to LF), and
//! nothing in it can inject a field.
//!
//! The input, as UTF-8 (invalid bytes become U+FFFD), is normalised with
//! `normalize_line_ends`, encoded with `encode_parts(Some(id), Some("e"), …)`
//! and parsed back by a small decoder written here from the WHATWG HTML
//! standard (9.2.6, "Interpreting an event stream"), independent of the
//! server's code: the frame must dispatch exactly one event whose data is
//! the normalised text, type `e` and last event id `id`; every line of the
//! frame must be an `id`, `event` or `data` field. The same holds for the
//! raw text encoded without normalising first, and for an event name taken
//! from the input whenever `check_event_name` accepts it.
#![no_main]

mod split;

use libfuzzer_sys::fuzz_target;
use ssehub::sse::{check_event_name, encode, encode_parts, normalize_line_ends, Event};

/// One dispatched event, as a browser's `MessageEvent` would carry it.
#[derive(Debug, PartialEq, Eq)]
struct Dispatched {
    /// `event.type` (`message` when no `event:` field came).
    kind: String,
    /// `event.data`.
    data: String,
    /// `event.lastEventId`.
    last_id: String,
}

/// What the decoder saw, beyond the events.
#[derive(Debug, Default)]
struct Decoded {
    events: Vec<Dispatched>,
    /// Field names of every non-blank, non-comment line, in order.
    fields: Vec<String>,
    /// The stream's reconnection time, if a `retry:` set it.
    retry: Option<u64>,
    /// Text after the last line end (an incomplete line, never processed).
    unterminated: String,
}

/// Splits a stream into lines the way the standard does: a line ends at
/// CRLF, a lone LF or a lone CR. The text after the last line end is
/// returned separately (a decoder waits for its end).
fn lines(stream: &str) -> (Vec<&str>, &str) {
    let mut out = Vec::new();
    let bytes = stream.as_bytes();
    let mut start = 0;
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'\r' => {
                out.push(&stream[start..at]);
                at += if bytes.get(at + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = at;
            }
            b'\n' => {
                out.push(&stream[start..at]);
                at += 1;
                start = at;
            }
            _ => at += 1,
        }
    }
    (out, &stream[start..])
}

/// The standard's event-stream interpretation (for web browsers).
fn decode(stream: &str) -> Decoded {
    // A leading BOM is skipped once.
    let stream = stream.strip_prefix('\u{FEFF}').unwrap_or(stream);
    let (lines, unterminated) = lines(stream);
    let mut decoded = Decoded {
        unterminated: unterminated.to_string(),
        ..Decoded::default()
    };
    let mut data = String::new();
    let mut kind = String::new();
    let mut last_id_buffer = String::new();
    for line in lines {
        if line.is_empty() {
            // Dispatch: the source's last event id becomes the buffer's.
            if data.is_empty() {
                kind.clear();
                continue;
            }
            if data.ends_with('\n') {
                data.pop();
            }
            decoded.events.push(Dispatched {
                kind: if kind.is_empty() {
                    "message".to_string()
                } else {
                    std::mem::take(&mut kind)
                },
                data: std::mem::take(&mut data),
                last_id: last_id_buffer.clone(),
            });
            kind.clear();
            continue;
        }
        if line.starts_with(':') {
            continue; // a comment
        }
        let (field, value) = match line.find(':') {
            Some(at) => {
                let value = &line[at + 1..];
                (&line[..at], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (line, ""),
        };
        decoded.fields.push(field.to_string());
        match field {
            "event" => kind = value.to_string(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            // An id with NUL is ignored; retry takes only digits.
            "id" if !value.contains('\0') => last_id_buffer = value.to_string(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                decoded.retry = value.parse().ok();
            }
            _ => {}
        }
    }
    decoded
}

/// Decodes one encoded frame and checks it carries exactly `expected`.
fn check_frame(frame: &[u8], id: u64, kind: &str, expected: &str) {
    let text = std::str::from_utf8(frame).expect("a frame of UTF-8 input is UTF-8");
    assert!(
        text.ends_with("\n\n"),
        "frame must end with a blank line: {text:?}"
    );
    assert!(!text.starts_with('\u{FEFF}'), "frame starts with a BOM");
    let decoded = decode(text);
    assert_eq!(decoded.unterminated, "", "frame has an unended line");
    assert_eq!(decoded.retry, None, "frame sets retry: {text:?}");
    for field in &decoded.fields {
        assert!(
            matches!(field.as_str(), "id" | "event" | "data"),
            "frame carries a {field:?} field: {text:?}"
        );
    }
    assert_eq!(
        decoded.events,
        vec![Dispatched {
            kind: kind.to_string(),
            data: expected.to_string(),
            last_id: id.to_string(),
        }],
        "frame {text:?}"
    );
    // Exactly one id and one event line, first; data lines after them.
    let ids = decoded.fields.iter().filter(|f| *f == "id").count();
    let kinds = decoded.fields.iter().filter(|f| *f == "event").count();
    assert_eq!((ids, kinds), (1, 1), "frame {text:?}");
}


fuzz_target!(|bytes: &[u8]| {
    let input = String::from_utf8_lossy(bytes);
    let id = split::hash(bytes);

    let normalised = normalize_line_ends(&input);
    assert!(!normalised.contains('\r'), "normalised text keeps a CR");
    assert_eq!(
        normalize_line_ends(&normalised),
        normalised,
        "normalising is not idempotent"
    );

    let mut frame = Vec::new();
    encode_parts(Some(id), Some("e"), &normalised, &mut frame);
    check_frame(&frame, id, "e", &normalised);

    // The encoder splits CR, LF and CRLF itself: raw text gives the same event.
    let mut raw_frame = Vec::new();
    encode_parts(Some(id), Some("e"), &input, &mut raw_frame);
    assert_eq!(
        raw_frame, frame,
        "raw and normalised text encode differently"
    );

    // An event name from the input, whenever the contract's check accepts it.
    let name: String = input
        .split(['\r', '\n'])
        .next()
        .unwrap_or("")
        .chars()
        .take(70)
        .collect();
    match Event::new(&name, &normalised) {
        Ok(event) => {
            assert!(check_event_name(&name).is_ok());
            let event = event.with_id(id);
            let mut named = Vec::new();
            encode(&event, &mut named);
            // The encoder's own space after `event:` is the one the decoder
            // strips, so even a name that starts with a space survives.
            check_frame(&named, id, &name, &normalised);
        }
        Err(_) => assert!(check_event_name(&name).is_err()),
    }
});
