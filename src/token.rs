//! Access-control tokens: JSON Web Tokens (RFC 7519) signed with HMAC-SHA-256
//! (`HS256`), the only algorithm accepted. Pure code: the caller supplies the
//! secret and the clock, so every rule is tested without a server.
//!
//! A token's claims are `sub` (a display name), `exp` (required), optional
//! `nbf` and `iat`, and `ssehub`, which grants either every room as an agent
//! (`{"agent": true}`) or a list of rooms (`{"rooms": ["R", …]}`, with
//! `"visitor": true` on the tokens `POST /session` issues to visitors). A
//! host site can mint the same tokens with any JWT library and the same
//! secret.
//!
//! [`verify`] is strict, since it faces anything a client sends: a token
//! over [`MAX_TOKEN_LEN`] bytes is refused before it is decoded, the three
//! parts must be unpadded base64url, the header's `alg` must be exactly
//! `HS256` whatever else it says, the signature is compared in constant
//! time before the claims are even parsed, and `exp` is enforced with no
//! leeway. It returns an error for every malformed input, never a panic.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde_json::{Map, Value};

use crate::hub::valid_room;

/// Longest token accepted, in bytes; longer ones are refused undecoded.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest `sub`, in characters (the same limit as a message's `user`).
pub const MAX_SUB_CHARS: usize = 64;
/// Shortest secret the command line accepts, in characters.
pub const MIN_SECRET_CHARS: usize = 32;
/// Longest lifetime [`parse_ttl`] accepts: ten years, which is enough for a
/// device and catches a slipped digit.
pub const MAX_TTL: Duration = Duration::from_secs(3650 * 86_400);

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The header every token this module signs carries.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The bearer's display name, 1–[`MAX_SUB_CHARS`] characters.
    pub sub: String,
    /// Expiry, in seconds since the Unix epoch; invalid from this second on.
    pub exp: u64,
    /// Not valid before this second, if set.
    pub nbf: Option<u64>,
    /// When the token was issued, if set (informational).
    pub iat: Option<u64>,
    /// What the token grants.
    pub grant: Grant,
    /// A visitor's own conversation, as `POST /session` issues it
    /// (`"visitor": true` beside the rooms): re-issuing it renews it for
    /// another `--visitor-ttl`. Any other token keeps its `exp` when
    /// re-issued, so a host's short-lived token never becomes a long one.
    pub visitor: bool,
}

/// What a token grants: the `ssehub` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// `{"agent": true}`: every room, `role=agent`, the list of rooms.
    Agent,
    /// `{"rooms": [..]}`: reading and writing these rooms only (at least one).
    Rooms(Vec<String>),
}

/// Why a token was refused. Every variant means `401` to a client; the
/// variants exist for logs and tests, and never carry any of the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_LEN`] bytes.
    TooLong,
    /// Not three unpadded base64url parts, or a header or payload that is
    /// not a JSON object.
    Malformed,
    /// The header's `alg` is not `HS256`, its `typ` is not `JWT`, or it
    /// names critical extensions (`crit`).
    Header,
    /// The signature does not match the secret.
    Signature,
    /// A claim is missing, of the wrong type or out of range (`sub`, `exp`,
    /// `nbf`, `iat`, `ssehub`).
    Claims,
    /// `exp` has been reached.
    Expired,
    /// `nbf` has not been reached yet.
    NotYetValid,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenError::TooLong => "token too long",
            TokenError::Malformed => "malformed token",
            TokenError::Header => "token header is not HS256",
            TokenError::Signature => "bad token signature",
            TokenError::Claims => "bad token claims",
            TokenError::Expired => "token expired",
            TokenError::NotYetValid => "token not yet valid",
        })
    }
}

impl std::error::Error for TokenError {}

/// Whether `sub` is a valid display name: 1–[`MAX_SUB_CHARS`] characters.
pub fn valid_sub(sub: &str) -> bool {
    (1..=MAX_SUB_CHARS).contains(&sub.chars().count())
}

/// Whether `name` is a valid room name: 1–64 of `A-Z a-z 0-9 _ - .`.
pub fn valid_room_name(name: &str) -> bool {
    valid_room(name)
}

/// Signs `claims` with `secret` as an HS256 JWT.
///
/// The claims are written as given; [`verify`] refuses a token whose `sub`
/// or rooms are invalid, so callers check them first with [`valid_sub`]
/// and [`valid_room_name`].
///
/// # Examples
/// ```
/// use ssehub::token::{sign, verify, Claims, Grant};
/// let claims = Claims {
///     sub: "Ada".into(),
///     exp: 2_000_000_000,
///     nbf: None,
///     iat: None,
///     grant: Grant::Rooms(vec!["support".into()]),
///     visitor: false,
/// };
/// let token = sign(&claims, b"a secret of at least 32 characters");
/// assert_eq!(verify(&token, b"a secret of at least 32 characters", 1_900_000_000), Ok(claims));
/// ```
pub fn sign(claims: &Claims, secret: &[u8]) -> String {
    let mut payload = Map::new();
    payload.insert("sub".into(), Value::from(claims.sub.as_str()));
    payload.insert("exp".into(), Value::from(claims.exp));
    if let Some(nbf) = claims.nbf {
        payload.insert("nbf".into(), Value::from(nbf));
    }
    if let Some(iat) = claims.iat {
        payload.insert("iat".into(), Value::from(iat));
    }
    let grant = match &claims.grant {
        Grant::Agent => serde_json::json!({ "agent": true }),
        Grant::Rooms(rooms) if claims.visitor => {
            serde_json::json!({ "rooms": rooms, "visitor": true })
        }
        Grant::Rooms(rooms) => serde_json::json!({ "rooms": rooms }),
    };
    payload.insert("ssehub".into(), grant);
    let mut token = URL_SAFE_NO_PAD.encode(HEADER);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(Value::Object(payload).to_string(), &mut token);
    let signature = mac(secret, token.as_bytes()).finalize().into_bytes();
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    token
}

/// Checks `token` against `secret` at `now_secs` (seconds since the Unix
/// epoch) and returns its claims.
///
/// # Errors
/// A [`TokenError`] for a token that is too long, malformed, not `HS256`,
/// wrongly signed, has bad claims, has expired (`now_secs >= exp`) or is
/// not yet valid (`now_secs < nbf`).
pub fn verify(token: &str, secret: &[u8], now_secs: u64) -> Result<Claims, TokenError> {
    let payload = verified_payload(token, secret)?;
    let claims = claims_of(&payload).ok_or(TokenError::Claims)?;
    if now_secs >= claims.exp {
        return Err(TokenError::Expired);
    }
    if claims.nbf.is_some_and(|nbf| now_secs < nbf) {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

/// A new visitor room: `v-` and 22 base64url characters, 128 bits from the
/// operating system's random source, so that nobody can guess another
/// visitor's room.
///
/// # Errors
/// The OS's random source failed (nothing sensible can be made up then).
pub fn random_room() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| std::io::Error::other(format!("no random bytes from the OS: {e}")))?;
    let mut room = String::from("v-");
    URL_SAFE_NO_PAD.encode_string(bytes, &mut room);
    Ok(room)
}

/// Parses a token lifetime: whole seconds, or a number with `s`, `m`, `h`
/// or `d` (`30s`, `15m`, `12h`, `30d`), more than zero and at most
/// [`MAX_TTL`].
///
/// # Errors
/// A message saying what was expected, for the caller to put after the
/// flag's name.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use ssehub::token::parse_ttl;
/// assert_eq!(parse_ttl("12h"), Ok(Duration::from_secs(12 * 3600)));
/// assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
/// assert!(parse_ttl("1w").is_err());
/// ```
pub fn parse_ttl(value: &str) -> Result<Duration, String> {
    let expected = || format!("expected a duration such as 30s, 15m, 12h or 30d, got '{value}'");
    let (digits, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => value.split_at(at),
        None => (value, "s"),
    };
    let scale: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(expected()),
    };
    // Digits only: `parse` alone would also take a leading `+`.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected());
    }
    let too_long = || format!("at most {}d, got '{value}'", MAX_TTL.as_secs() / 86_400);
    let secs = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(too_long)?;
    if secs == 0 {
        return Err(format!("must be longer than 0, got '{value}'"));
    }
    if secs > MAX_TTL.as_secs() {
        return Err(too_long());
    }
    Ok(Duration::from_secs(secs))
}

fn mac(secret: &[u8], signed: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(signed);
    mac
}

/// The token's payload as JSON, once its form, header and signature have
/// passed; the claims in it are not checked yet.
fn verified_payload(token: &str, secret: &[u8]) -> Result<Map<String, Value>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    check_header(&json_object(header)?)?;
    let signature = decode(signature)?;
    let signed = &token[..header.len() + 1 + payload.len()];
    mac(secret, signed.as_bytes())
        .verify_slice(&signature)
        .map_err(|_| TokenError::Signature)?;
    json_object(payload)
}

fn decode(part: &str) -> Result<Vec<u8>, TokenError> {
    // The engine refuses `=`, `+`, `/` and non-zero trailing bits, so each
    // token has exactly one spelling.
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)
}

fn json_object(part: &str) -> Result<Map<String, Value>, TokenError> {
    match serde_json::from_slice(&decode(part)?) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(TokenError::Malformed),
    }
}

fn check_header(header: &Map<String, Value>) -> Result<(), TokenError> {
    // Only the algorithm the secret is meant for: never `none`, never one
    // chosen by whoever wrote the token.
    if header.get("alg") != Some(&Value::from("HS256")) {
        return Err(TokenError::Header);
    }
    // `typ` is a media type, compared without case (RFC 7519 5.1).
    let jwt = |typ: &Value| typ.as_str().is_some_and(|t| t.eq_ignore_ascii_case("JWT"));
    if header.get("typ").is_some_and(|typ| !jwt(typ)) {
        return Err(TokenError::Header);
    }
    // RFC 7515 4.1.11: an extension marked critical that we do not
    // implement (we implement none) makes the token invalid.
    if header.contains_key("crit") {
        return Err(TokenError::Header);
    }
    Ok(())
}

/// The claims, or `None` if one is missing, of the wrong type or invalid.
fn claims_of(payload: &Map<String, Value>) -> Option<Claims> {
    let sub = payload.get("sub")?.as_str().filter(|s| valid_sub(s))?;
    // Rounded towards the safe side: expire early, become valid late.
    let exp = numeric_date(payload.get("exp")?, false)?;
    let nbf = match payload.get("nbf") {
        None => None,
        Some(value) => Some(numeric_date(value, true)?),
    };
    let iat = match payload.get("iat") {
        None => None,
        Some(value) => Some(numeric_date(value, false)?),
    };
    let ssehub = payload.get("ssehub")?.as_object()?;
    let grant = grant_of(ssehub)?;
    let visitor = match (ssehub.get("visitor"), &grant) {
        (None, _) => false,
        (Some(Value::Bool(true)), Grant::Rooms(_)) => true,
        // `"visitor": false`, a non-boolean, or on an agent: unclear.
        _ => return None,
    };
    Some(Claims {
        sub: sub.to_string(),
        exp,
        nbf,
        iat,
        grant,
        visitor,
    })
}

/// A NumericDate (RFC 7519 section 2): seconds since the epoch, which may
/// have a fraction (a host site's `Date.now() / 1000` does). Negative,
/// non-numeric and absurdly large values are refused.
fn numeric_date(value: &Value, round_up: bool) -> Option<u64> {
    if let Some(secs) = value.as_u64() {
        return Some(secs);
    }
    let secs = value.as_f64()?;
    // 2^53: beyond it an f64 no longer holds whole seconds exactly.
    if !(0.0..9_007_199_254_740_992.0).contains(&secs) {
        return None;
    }
    let secs = if round_up { secs.ceil() } else { secs.floor() };
    Some(secs as u64)
}

fn grant_of(ssehub: &Map<String, Value>) -> Option<Grant> {
    match (ssehub.get("agent"), ssehub.get("rooms")) {
        (Some(Value::Bool(true)), None) => Some(Grant::Agent),
        (None, Some(Value::Array(list))) if !list.is_empty() => {
            let rooms = list
                .iter()
                .map(|room| room.as_str().filter(|r| valid_room(r)).map(String::from))
                .collect::<Option<Vec<String>>>()?;
            Some(Grant::Rooms(rooms))
        }
        // `"agent": false`, both at once, neither, or the wrong types: a
        // token that says something unclear grants nothing.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn claims(grant: Grant) -> Claims {
        Claims {
            sub: "Ada Lovelace".into(),
            exp: NOW + 3600,
            nbf: Some(NOW - 10),
            iat: Some(NOW - 10),
            grant,
            visitor: false,
        }
    }

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    /// A token with this header and payload text, signed with [`SECRET`].
    fn forge(header: &str, payload: &str) -> String {
        let signed = format!("{}.{}", b64(header), b64(payload));
        let signature = mac(SECRET, signed.as_bytes()).finalize().into_bytes();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn payload_with(extra: &str) -> String {
        format!(
            r#"{{"sub":"a","exp":{},"ssehub":{{"agent":true}}{extra}}}"#,
            NOW + 60
        )
    }

    #[test]
    fn round_trip_agent_and_rooms() {
        for grant in [
            Grant::Agent,
            Grant::Rooms(vec!["support".into(), "v-abc_DEF.1".into()]),
        ] {
            let c = claims(grant);
            let token = sign(&c, SECRET);
            assert_eq!(token.split('.').count(), 3);
            assert!(!token.contains('='), "{token}");
            assert_eq!(verify(&token, SECRET, NOW), Ok(c));
        }
        let minimal = Claims {
            nbf: None,
            iat: None,
            ..claims(Grant::Agent)
        };
        assert_eq!(verify(&sign(&minimal, SECRET), SECRET, NOW), Ok(minimal));
    }

    #[test]
    fn the_claims_are_written_as_the_contract_names_them() {
        let token = sign(&claims(Grant::Rooms(vec!["r1".into()])), SECRET);
        let parts: Vec<&str> = token.split('.').collect();
        let header: Value = serde_json::from_slice(&decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({"alg": "HS256", "typ": "JWT"}));
        let payload: Value = serde_json::from_slice(&decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            payload,
            serde_json::json!({
                "sub": "Ada Lovelace", "exp": NOW + 3600, "nbf": NOW - 10, "iat": NOW - 10,
                "ssehub": {"rooms": ["r1"]}
            })
        );
        let agent = sign(&claims(Grant::Agent), SECRET);
        let payload: Value =
            serde_json::from_slice(&decode(agent.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(payload["ssehub"], serde_json::json!({"agent": true}));
    }

    /// RFC 7515 appendix A.1: an HS256 JWS from another implementation,
    /// with its JWK key `k`. Its claims are not ssehub's (and it expired in
    /// 2011), so the signature is checked on its own, then the whole token
    /// is refused for its claims, not its signature.
    #[test]
    fn rfc_7515_a1_signature_verifies() {
        let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
            .eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
            .dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let key = URL_SAFE_NO_PAD
            .decode(
                "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
            )
            .unwrap();
        let payload = verified_payload(token, &key).expect("RFC 7515 A.1 signature");
        assert_eq!(payload["iss"], "joe");
        assert_eq!(payload["exp"], 1_300_819_380);
        assert_eq!(verify(token, &key, 1_300_819_000), Err(TokenError::Claims));
        assert_eq!(
            verify(token, b"another key", 1_300_819_000),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn tampering_with_any_part_is_refused() {
        let token = sign(&claims(Grant::Rooms(vec!["mine".into()])), SECRET);
        let parts: Vec<&str> = token.split('.').collect();
        // Another room in the payload, signature kept.
        let other = sign(&claims(Grant::Rooms(vec!["theirs".into()])), SECRET);
        let other_payload = other.split('.').nth(1).unwrap();
        let swapped = format!("{}.{other_payload}.{}", parts[0], parts[2]);
        assert_eq!(verify(&swapped, SECRET, NOW), Err(TokenError::Signature));
        // A header that says the same with other bytes.
        let header = b64(r#"{"typ":"JWT","alg":"HS256"}"#);
        let reordered = format!("{header}.{}.{}", parts[1], parts[2]);
        assert_eq!(verify(&reordered, SECRET, NOW), Err(TokenError::Signature));
        // One character of each part changed.
        for part in 0..3 {
            let mut changed: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
            let mut bytes = changed[part].clone().into_bytes();
            // The first character carries 6 whole bits, so any other
            // letter decodes to other bytes.
            bytes[0] = if bytes[0] == b'A' { b'B' } else { b'A' };
            changed[part] = String::from_utf8(bytes).unwrap();
            let result = verify(&changed.join("."), SECRET, NOW);
            assert!(
                matches!(
                    result,
                    Err(TokenError::Signature | TokenError::Malformed | TokenError::Header)
                ),
                "part {part}: {result:?}"
            );
        }
        // The last bit of the signature.
        let mut signature = decode(parts[2]).unwrap();
        signature[31] ^= 1;
        let flipped = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            URL_SAFE_NO_PAD.encode(signature)
        );
        assert_eq!(verify(&flipped, SECRET, NOW), Err(TokenError::Signature));
        // A truncated signature, and none at all.
        let short = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..20]);
        assert_eq!(verify(&short, SECRET, NOW), Err(TokenError::Signature));
        let unsigned = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(verify(&unsigned, SECRET, NOW), Err(TokenError::Signature));
        // The right token with the wrong secret.
        assert_eq!(
            verify(&token, b"0123456789abcdef0123456789abcdeF", NOW),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn only_hs256_is_accepted() {
        let payload = payload_with("");
        for header in [
            r#"{"alg":"none"}"#,
            r#"{"alg":"None","typ":"JWT"}"#,
            r#"{"alg":"HS512","typ":"JWT"}"#,
            r#"{"alg":"HS384"}"#,
            r#"{"alg":"RS256","typ":"JWT"}"#,
            r#"{"alg":"ES256"}"#,
            r#"{"alg":"hs256"}"#,
            r#"{"alg":"HS256 "}"#,
            r#"{"alg":["HS256"]}"#,
            r#"{"alg":null}"#,
            r#"{"typ":"JWT"}"#,
            r#"{}"#,
            r#"{"alg":"HS256","typ":"JWE"}"#,
            r#"{"alg":"HS256","typ":1}"#,
            r#"{"alg":"HS256","crit":["exp"]}"#,
        ] {
            let token = forge(header, &payload);
            assert_eq!(
                verify(&token, SECRET, NOW),
                Err(TokenError::Header),
                "{header}"
            );
        }
        // `alg: none` with the empty signature it usually comes with.
        let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&payload));
        assert_eq!(verify(&none, SECRET, NOW), Err(TokenError::Header));
        // What is accepted: HS256, with or without `typ`, other fields ignored.
        for header in [
            r#"{"alg":"HS256"}"#,
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"alg":"HS256","typ":"jwt"}"#,
            r#"{"typ":"JWT","alg":"HS256","kid":"k1"}"#,
        ] {
            let token = forge(header, &payload);
            assert!(verify(&token, SECRET, NOW).is_ok(), "{header}");
        }
    }

    #[test]
    fn time_claims_are_enforced_without_leeway() {
        let c = claims(Grant::Agent);
        let token = sign(&c, SECRET);
        assert!(verify(&token, SECRET, c.exp - 1).is_ok());
        assert_eq!(verify(&token, SECRET, c.exp), Err(TokenError::Expired));
        assert_eq!(verify(&token, SECRET, c.exp + 1), Err(TokenError::Expired));
        let nbf = c.nbf.unwrap();
        assert!(verify(&token, SECRET, nbf).is_ok());
        assert_eq!(
            verify(&token, SECRET, nbf - 1),
            Err(TokenError::NotYetValid)
        );
        // Fractions round towards refusing.
        let fraction = forge(
            r#"{"alg":"HS256"}"#,
            &format!(
                r#"{{"sub":"a","exp":{}.9,"nbf":{}.1,"ssehub":{{"agent":true}}}}"#,
                NOW + 5,
                NOW - 5
            ),
        );
        let got = verify(&fraction, SECRET, NOW).unwrap();
        assert_eq!((got.exp, got.nbf), (NOW + 5, Some(NOW - 4)));
        assert_eq!(verify(&fraction, SECRET, NOW + 5), Err(TokenError::Expired));
        assert_eq!(
            verify(&fraction, SECRET, NOW - 5),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn missing_or_wrongly_typed_claims_are_refused() {
        let exp = NOW + 60;
        let long_name = "x".repeat(MAX_SUB_CHARS + 1);
        let long_room = "r".repeat(65);
        for payload in [
            // exp
            r#"{"sub":"a","ssehub":{"agent":true}}"#.to_string(),
            format!(r#"{{"sub":"a","exp":"{exp}","ssehub":{{"agent":true}}}}"#),
            r#"{"sub":"a","exp":-1,"ssehub":{"agent":true}}"#.to_string(),
            r#"{"sub":"a","exp":null,"ssehub":{"agent":true}}"#.to_string(),
            r#"{"sub":"a","exp":1e300,"ssehub":{"agent":true}}"#.to_string(),
            // nbf, iat
            format!(r#"{{"sub":"a","exp":{exp},"nbf":"0","ssehub":{{"agent":true}}}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"iat":true,"ssehub":{{"agent":true}}}}"#),
            // sub
            format!(r#"{{"exp":{exp},"ssehub":{{"agent":true}}}}"#),
            format!(r#"{{"sub":"","exp":{exp},"ssehub":{{"agent":true}}}}"#),
            format!(r#"{{"sub":7,"exp":{exp},"ssehub":{{"agent":true}}}}"#),
            format!(r#"{{"sub":"{long_name}","exp":{exp},"ssehub":{{"agent":true}}}}"#),
            // ssehub
            format!(r#"{{"sub":"a","exp":{exp}}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"ssehub":true}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"ssehub":{{}}}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"ssehub":{{"agent":false}}}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"ssehub":{{"agent":"true"}}}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"ssehub":{{"agent":true,"rooms":["r"]}}}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"ssehub":{{"rooms":[]}}}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"ssehub":{{"rooms":"r"}}}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"ssehub":{{"rooms":["r",1]}}}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"ssehub":{{"rooms":["a b"]}}}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"ssehub":{{"rooms":["{long_room}"]}}}}"#),
        ] {
            let token = forge(r#"{"alg":"HS256","typ":"JWT"}"#, &payload);
            assert_eq!(
                verify(&token, SECRET, NOW),
                Err(TokenError::Claims),
                "{payload}"
            );
        }
        // A 64-character name in any script is fine.
        let name = "é".repeat(MAX_SUB_CHARS);
        let token = forge(
            r#"{"alg":"HS256"}"#,
            &format!(r#"{{"sub":"{name}","exp":{exp},"ssehub":{{"agent":true}}}}"#),
        );
        assert_eq!(verify(&token, SECRET, NOW).unwrap().sub, name);
    }

    #[test]
    fn oversized_tokens_are_refused_before_decoding() {
        // Valid in every other respect, so only the length can refuse it.
        let mut c = claims(Grant::Rooms(Vec::new()));
        while sign(&c, SECRET).len() <= MAX_TOKEN_LEN {
            if let Grant::Rooms(rooms) = &mut c.grant {
                rooms.push(format!("room-{}", rooms.len()));
            }
        }
        let token = sign(&c, SECRET);
        assert_eq!(verify(&token, SECRET, NOW), Err(TokenError::TooLong));
        if let Grant::Rooms(rooms) = &mut c.grant {
            rooms.pop();
        }
        let fits = sign(&c, SECRET);
        assert!(fits.len() <= MAX_TOKEN_LEN);
        assert_eq!(verify(&fits, SECRET, NOW), Ok(c));
        let garbage = "!".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(verify(&garbage, SECRET, NOW), Err(TokenError::TooLong));
    }

    #[test]
    fn malformed_tokens_are_errors_not_panics() {
        let good = sign(&claims(Grant::Agent), SECRET);
        let parts: Vec<&str> = good.split('.').collect();
        let cases = [
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            format!("{good}."),
            format!(".{good}"),
            format!("{}.{}", parts[0], parts[1]),
            format!("{good}.{}", parts[2]),
            // Padding, the standard alphabet, spaces, non-ASCII.
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}", parts[0].replace('J', "+"), parts[1], parts[2]),
            format!("{} .{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}é", parts[0], parts[1], parts[2]),
            // Not JSON, not an object.
            format!("{}.{}.{}", b64("not json"), parts[1], parts[2]),
            format!("{}.{}.{}", b64("[1,2]"), parts[1], parts[2]),
            format!("{}.{}.{}", b64(r#""HS256""#), parts[1], parts[2]),
            forge(r#"{"alg":"HS256"}"#, "not json"),
            forge(r#"{"alg":"HS256"}"#, "[]"),
            forge(r#"{"alg":"HS256"}"#, ""),
            forge(r#"{"alg":"HS256"}"#, &"[".repeat(1000)),
            // A length no base64 text has (one char left over).
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                &parts[2][..parts[2].len() - 2]
            ),
            "Bearer x.y.z".into(),
        ];
        for token in &cases {
            let result = verify(token, SECRET, NOW);
            assert!(
                matches!(
                    result,
                    Err(TokenError::Malformed | TokenError::Signature | TokenError::Header)
                ),
                "{token:?}: {result:?}"
            );
        }
        // Padding is refused even where the signature would match.
        let padded = format!("{}.{}.{}=", parts[0], parts[1], parts[2]);
        assert_eq!(verify(&padded, SECRET, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn random_bytes_never_panic() {
        // A fixed xorshift stream: reproducible, no extra dependency.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"ABCDEFabcdef0123-_.=+/ \x00{}\"";
        for round in 0..2000 {
            let len = (next() % 200) as usize;
            let text: String = if round % 2 == 0 {
                (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char)
                    .collect()
            } else {
                let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            };
            assert!(verify(&text, SECRET, NOW).is_err(), "{text:?}");
        }
    }

    #[test]
    fn random_rooms_are_valid_and_distinct() {
        let a = random_room().unwrap();
        let b = random_room().unwrap();
        assert_ne!(a, b);
        for room in [&a, &b] {
            assert!(room.starts_with("v-"), "{room}");
            assert_eq!(room.len(), 2 + 22, "{room}");
            assert!(valid_room_name(room), "{room}");
            assert_eq!(decode(&room[2..]).unwrap().len(), 16);
        }
    }

    #[test]
    fn durations() {
        let secs = |s: u64| Ok(Duration::from_secs(s));
        assert_eq!(parse_ttl("30s"), secs(30));
        assert_eq!(parse_ttl("15m"), secs(900));
        assert_eq!(parse_ttl("12h"), secs(43_200));
        assert_eq!(parse_ttl("30d"), secs(2_592_000));
        assert_eq!(parse_ttl("45"), secs(45));
        assert_eq!(parse_ttl("3650d"), secs(MAX_TTL.as_secs()));
        for bad in [
            "", "s", "d", "-5", "+5", "1.5h", "12H", "1w", "12 h", " 12h", "12h ", "1h30m", "0x10",
        ] {
            let e = parse_ttl(bad).unwrap_err();
            assert!(e.contains("30s, 15m, 12h or 30d"), "{bad:?}: {e}");
        }
        assert!(parse_ttl("0").unwrap_err().contains("longer than 0"));
        assert!(parse_ttl("0d").unwrap_err().contains("longer than 0"));
        assert!(parse_ttl("3651d").unwrap_err().contains("at most 3650d"));
        assert!(parse_ttl("99999999999999999999d")
            .unwrap_err()
            .contains("at most"));
    }
}
