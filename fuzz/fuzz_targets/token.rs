//! Fuzz target `token`: no input makes the token code panic, and a token it
//! accepts is one it should accept.
//!
//! The first byte picks what the rest is:
//! - 0 (and any byte not listed): a token as a client would send it, given
//!   to `verify` as it is (invalid UTF-8 becomes U+FFFD).
//! - 1: a header and a payload, split at the first NUL byte, signed here
//!   with the target's secret, so that the fuzzer gets past the signature
//!   and reaches the header and claim checks (it could never forge one).
//! - 2: a token lifetime for `parse_ttl`.
//!
//! Whenever `verify` accepts, the claims must hold the contract's rules
//! (valid `sub` and rooms, `nbf <= now < exp`) and signing them again must
//! give a token that verifies to the same claims.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use ssehub::token::{self, Claims, Grant, MAX_TOKEN_LEN, MAX_TTL};

/// The secret the seeds in `corpus/token/` are signed with.
const SECRET: &[u8] = b"fuzz secret, at least 32 characters";
/// The target's clock: 2027-01-15; the seeds expire long after it.
const NOW: u64 = 1_800_000_000;

/// A token of this header and payload, signed with [`SECRET`] — written
/// here with the RustCrypto crates directly, not with the code under test.
fn forge(header: &[u8], payload: &[u8]) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(signed.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signed}.{signature}")
}

fn check(token: &str) {
    let Ok(claims) = token::verify(token, SECRET, NOW) else {
        return;
    };
    assert!(
        token.len() <= MAX_TOKEN_LEN,
        "{} bytes accepted",
        token.len()
    );
    assert!(token::valid_sub(&claims.sub), "sub {:?}", claims.sub);
    assert!(NOW < claims.exp, "expired token accepted: {claims:?}");
    assert!(
        claims.nbf.is_none_or(|nbf| nbf <= NOW),
        "not-yet-valid token accepted: {claims:?}"
    );
    if let Grant::Rooms(rooms) = &claims.grant {
        assert!(!rooms.is_empty(), "a token for no room accepted");
        for room in rooms {
            assert!(token::valid_room_name(room), "room {room:?}");
        }
    }
    let again = token::sign(&claims, SECRET);
    let same: Result<Claims, _> = token::verify(&again, SECRET, NOW);
    assert_eq!(same.as_ref(), Ok(&claims), "re-signed: {again}");
    assert!(
        token::verify(token, b"another secret of 32 characters!", NOW).is_err(),
        "accepted with another secret"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        1 => {
            let (header, payload) = match rest.iter().position(|&b| b == 0) {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &b""[..]),
            };
            check(&forge(header, payload));
        }
        2 => {
            let text = String::from_utf8_lossy(rest);
            if let Ok(ttl) = token::parse_ttl(&text) {
                assert!(!ttl.is_zero() && ttl <= MAX_TTL, "{text:?} gave {ttl:?}");
            }
        }
        _ => check(&String::from_utf8_lossy(rest)),
    }
});
