//! Fuzz target `resp`: the bytes Redis sends, cut into pieces the way TCP
//! may cut them, must give the same replies as the whole buffer.
//!
//! The input is the raw byte stream of one connection to Redis. It is
//! decoded the way a connection does (a read buffer, `Decoder::decode`,
//! drain what a reply used, next pipelined reply) from the whole input and
//! from several splits of it (at positions drawn from a hash of the input,
//! and one byte at a time for short inputs), and also with the stateless
//! `decode_with` on the whole buffer. All must agree on the replies, the
//! final error and what is left over, with the default limits and with
//! small ones that inputs of a few bytes reach. Each reply must re-encode
//! to the bytes it came from (an array of bulk strings through
//! `encode_command`, as a command), and the stream parsers must not panic
//! on it.
#![no_main]

mod split;

use libfuzzer_sys::fuzz_target;
use ssehub::resp::{
    decode_with, encode_command, encode_reply, parse_range, parse_xadd, parse_xread, Decoder,
    Limits, Reply, RespError, StreamId, EVENT_ID_LIMIT,
};

/// Small limits, so that short inputs reach every one of them.
const SMALL: Limits = Limits {
    max_bulk: 64,
    max_array: 8,
    max_depth: 3,
    max_line: 32,
};
/// Replies modelled per input; the rest of a long pipeline is ignored.
const MAX_REPLIES: usize = 64;

/// The replies, then how the stream ended: an error, or the number of
/// bytes left waiting for the rest of a reply.
type Outcome = (Vec<Reply>, Result<usize, RespError>);

/// The connection's loop: append each piece, take every complete reply.
fn incremental(pieces: &[&[u8]], limits: Limits) -> Outcome {
    let mut decoder = Decoder::new(limits);
    let mut buf: Vec<u8> = Vec::new();
    let mut replies = Vec::new();
    // What is left counts the pieces not fed yet when the cap is reached.
    let mut left: usize = pieces.iter().map(|p| p.len()).sum();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            if replies.len() == MAX_REPLIES {
                return (replies, Ok(left));
            }
            match decoder.decode(&buf) {
                Ok(Some((reply, used))) => {
                    assert!(
                        used > 0 && used <= buf.len(),
                        "used {used} of {}",
                        buf.len()
                    );
                    check_reply(&reply, &buf[..used]);
                    buf.drain(..used);
                    left -= used;
                    replies.push(reply);
                }
                Ok(None) => break,
                Err(e) => return (replies, Err(e)),
            }
        }
    }
    assert_eq!(left, buf.len());
    (replies, Ok(left))
}

/// The stateless function over the whole buffer, reply after reply.
fn whole(data: &[u8], limits: Limits) -> Outcome {
    let mut at = 0;
    let mut replies = Vec::new();
    loop {
        if replies.len() == MAX_REPLIES {
            return (replies, Ok(data.len() - at));
        }
        match decode_with(&data[at..], limits) {
            Ok(Some((reply, used))) => {
                assert!(used > 0 && at + used <= data.len());
                at += used;
                replies.push(reply);
            }
            Ok(None) => return (replies, Ok(data.len() - at)),
            Err(e) => return (replies, Err(e)),
        }
    }
}

/// Whether a simple string or error somewhere in `reply` had bytes that
/// were not UTF-8 (replaced, so not re-encoded to the same bytes).
fn lossy(reply: &Reply) -> bool {
    match reply {
        Reply::Simple(text) | Reply::Error(text) => text.contains('\u{fffd}'),
        Reply::Array(Some(items)) => items.iter().any(lossy),
        _ => false,
    }
}

fn check_reply(reply: &Reply, wire: &[u8]) {
    let mut again = Vec::new();
    encode_reply(reply, &mut again);
    if !lossy(reply) {
        assert_eq!(again, wire, "re-encoding {reply:?}");
    }
    // What encode_reply writes always decodes back to the same value (with
    // roomy lines: U+FFFD takes 3 bytes where the invalid byte took 1).
    let roomy = Limits {
        max_line: usize::MAX,
        ..Limits::DEFAULT
    };
    assert_eq!(
        decode_with(&again, roomy),
        Ok(Some((reply.clone(), again.len())))
    );

    if let Reply::Array(Some(items)) = reply {
        let args: Option<Vec<&[u8]>> = items
            .iter()
            .map(|item| match item {
                Reply::Bulk(Some(bytes)) => Some(bytes.as_slice()),
                _ => None,
            })
            .collect();
        if let Some(args) = args {
            let mut command = Vec::new();
            encode_command(&args, &mut command);
            assert_eq!(command, wire, "re-encoding {args:?} as a command");
        }
    }

    // The stream parsers take any reply; the ids they give map within bounds.
    let check_id = |id: StreamId| {
        if let Ok(event) = id.event_id() {
            assert!(event < EVENT_ID_LIMIT);
            assert_eq!(StreamId::from_event_id(event), id);
        }
    };
    if let Ok(id) = parse_xadd(reply.clone()) {
        check_id(id);
    }
    if let Ok(entries) = parse_range(reply.clone()) {
        entries.iter().for_each(|e| check_id(e.id));
    }
    if let Ok(streams) = parse_xread(reply.clone()) {
        streams
            .iter()
            .flat_map(|(_, entries)| entries)
            .for_each(|e| check_id(e.id));
    }
}


fn check(data: &[u8], limits: Limits) {
    let reference = incremental(&[data], limits);
    let stateless = whole(data, limits);
    assert_eq!(reference, stateless, "decoder vs decode_with");

    let cuts = split::cuts(data);
    for &cut in &cuts {
        let split = incremental(&[&data[..cut], &data[cut..]], limits);
        assert_eq!(split, reference, "split at {cut}");
    }
    if cuts.len() > 1 {
        let mut pieces: Vec<&[u8]> = Vec::new();
        let mut at = 0;
        for &cut in &cuts {
            pieces.push(&data[at..cut]);
            at = cut;
        }
        pieces.push(&data[at..]);
        assert_eq!(incremental(&pieces, limits), reference, "split at {cuts:?}");
    }
    if data.len() <= 600 {
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(incremental(&bytes, limits), reference, "byte at a time");
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, Limits::DEFAULT);
    check(data, SMALL);
});
