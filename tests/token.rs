//! `ssehub token`: the real binary mints tokens and refuses bad requests
//! with exit 2; and its tokens interoperate with PyJWT, an independent
//! implementation a host site may use, in both directions.
//!
//! The PyJWT tests need `python3` with PyJWT (`make deps` installs it) and
//! fail, saying so, when it is missing: a skipped interoperability check
//! would look like a passed one.
mod support;

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use ssehub::token::{self, Grant, TokenError};
use support::ssehub_command;

const SECRET: &str = "test secret, long enough for HS256!";
/// How long a command that should end at once may take.
const DEADLINE: Duration = Duration::from_secs(30);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `command` to its end, or fails the test after [`DEADLINE`].
#[track_caller]
fn finish(mut command: Command, what: &str) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(command.output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("cannot run {what}: {e}"),
        Err(_) => panic!("{what} did not finish within {DEADLINE:?}"),
    }
}

/// The built binary with `args` and only the given `SSEHUB_*` variables.
#[track_caller]
fn ssehub(args: &[&str], env: &[(&str, &str)]) -> Output {
    finish(ssehub_command(args, env), &format!("ssehub {args:?}"))
}

/// The one token `ssehub token ARGS` prints, with the secret in the environment.
#[track_caller]
fn mint(args: &[&str]) -> String {
    let mut all = vec!["token"];
    all.extend_from_slice(args);
    let out = ssehub(&all, &[("SSEHUB_AUTH_SECRET", SECRET)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.ends_with('\n') && stdout.lines().count() == 1,
        "{stdout:?}"
    );
    stdout.trim_end().to_string()
}

/// Runs a Python program with `args`; fails clearly when python3 or PyJWT
/// is missing.
#[track_caller]
fn python(program: &str, args: &[&str]) -> Output {
    let mut command = Command::new("python3");
    command.arg("-c").arg(program).args(args);
    let out = finish(
        command,
        "python3 (the PyJWT tests need it with PyJWT: `make deps`)",
    );
    let stderr = text(&out.stderr);
    if stderr.contains("No module named 'jwt'") {
        panic!("PyJWT is missing: run `make deps` (python3 -m pip install 'PyJWT>=2')");
    }
    out
}

#[test]
fn a_rooms_token_verifies_with_30_days_by_default() {
    let before = now();
    let token = mint(&["--user", "Ada", "--room", "support", "--room", "billing"]);
    let after = now();
    let claims = token::verify(&token, SECRET.as_bytes(), after).expect("valid token");
    assert_eq!(claims.sub, "Ada");
    assert_eq!(
        claims.grant,
        Grant::Rooms(vec!["support".into(), "billing".into()])
    );
    let iat = claims.iat.expect("iat");
    assert!((before..=after).contains(&iat), "iat {iat}");
    assert_eq!(claims.exp - iat, 30 * 86_400);
    assert_eq!(claims.nbf, None);
    assert_eq!(
        token::verify(&token, b"another secret, just as long as it", after),
        Err(TokenError::Signature)
    );
}

#[test]
fn an_agent_token_lasts_12_hours_by_default_and_ttl_changes_it() {
    let claims = token::verify(
        &mint(&["--user", "Grace", "--agent"]),
        SECRET.as_bytes(),
        now(),
    )
    .expect("valid token");
    assert_eq!(claims.grant, Grant::Agent);
    assert_eq!(claims.exp - claims.iat.unwrap(), 12 * 3600);
    for (ttl, secs) in [("15m", 900), ("30s", 30), ("2d", 172_800), ("90", 90)] {
        let token = mint(&["--agent", "--user=Grace", "--ttl", ttl]);
        let claims = token::verify(&token, SECRET.as_bytes(), now()).expect("valid token");
        assert_eq!(claims.exp - claims.iat.unwrap(), secs, "--ttl {ttl}");
    }
}

#[test]
fn the_secret_may_come_from_the_command_line() {
    let out = ssehub(
        &["token", "--user", "a", "--agent", "--auth-secret", SECRET],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim_end().to_string();
    assert!(token::verify(&token, SECRET.as_bytes(), now()).is_ok());
}

#[test]
fn bad_token_commands_exit_2_naming_the_flag() {
    let secret = [("SSEHUB_AUTH_SECRET", SECRET)];
    let short = "only 31 characters, one too few";
    assert_eq!(short.len(), 31);
    // Arguments, environment, the flag the error's first line names.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        (&["token", "--user", "a", "--agent"], &[], "--auth-secret"),
        (
            &["token", "--user", "a", "--agent", "--auth-secret", short],
            &[],
            "--auth-secret",
        ),
        (
            &["token", "--user", "a", "--agent"],
            &[("SSEHUB_AUTH_SECRET", short)],
            "SSEHUB_AUTH_SECRET",
        ),
        (
            &["token", "--user", "a", "--agent", "--room", "r"],
            &secret,
            "--agent",
        ),
        (&["token", "--user", "a"], &secret, "--agent"),
        (&["token", "--agent"], &secret, "--user"),
        (
            &["token", "--user", "a", "--room", "no spaces"],
            &secret,
            "--room",
        ),
        (
            &["token", "--user", "a", "--agent", "--ttl", "soon"],
            &secret,
            "--ttl",
        ),
        (
            &["token", "--user", "a", "--agent", "--nope"],
            &secret,
            "--nope",
        ),
    ];
    for (args, env, named) in cases {
        let out = ssehub(args, env);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or("");
        assert!(
            first.contains(named),
            "{args:?}: {first:?} does not name {named}"
        );
        assert!(!stderr.contains(short), "{args:?}: the secret was printed");
        assert!(stderr.contains("Usage"), "{args:?}: no usage on stderr");
        assert!(out.stdout.is_empty(), "{args:?}: {:?}", text(&out.stdout));
    }
}

#[test]
fn the_server_refuses_a_short_secret_and_never_prints_it() {
    let short = "too short for a secret";
    for (args, env) in [
        (&["--auth-secret", short][..], &[][..]),
        (&[][..], &[("SSEHUB_AUTH_SECRET", short)][..]),
    ] {
        let out = ssehub(args, env);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or("");
        assert!(first.contains("AUTH_SECRET") || first.contains("--auth-secret"));
        assert!(first.contains("at least 32"), "{first}");
        assert!(!stderr.contains(short), "the secret was printed");
    }
}

#[test]
fn help_describes_the_token_command() {
    let out = ssehub(&["token", "--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let usage = text(&out.stdout);
    for named in [
        "ssehub token",
        "--user",
        "--agent",
        "--room",
        "--ttl",
        "--auth-secret",
    ] {
        assert!(usage.contains(named), "usage does not name {named}");
    }
}

/// PyJWT decodes an `ssehub token` with HS256 only, requiring `exp`, and
/// refuses it with another secret.
#[test]
fn pyjwt_verifies_a_token_minted_by_ssehub() {
    const DECODE: &str = r#"
import json, sys
import jwt
claims = jwt.decode(sys.argv[1], sys.argv[2], algorithms=["HS256"],
                    options={"require": ["exp", "sub"]})
print(json.dumps(claims))
"#;
    for (args, grant) in [
        (
            &["--user", "Zoë", "--room", "v-abc", "--ttl", "1h"][..],
            serde_json::json!({"rooms": ["v-abc"]}),
        ),
        (
            &["--user", "Grace", "--agent"][..],
            serde_json::json!({"agent": true}),
        ),
    ] {
        let token = mint(args);
        let out = python(DECODE, &[&token, SECRET]);
        assert!(out.status.success(), "PyJWT refused: {}", text(&out.stderr));
        let claims: Value = serde_json::from_slice(&out.stdout).expect("PyJWT's JSON");
        assert_eq!(claims["sub"], args[1]);
        assert_eq!(claims["ssehub"], grant);
        let exp = claims["exp"].as_u64().expect("integer exp");
        let iat = claims["iat"].as_u64().expect("integer iat");
        assert!(exp > now() && exp > iat, "{claims}");
        let wrong = python(DECODE, &[&token, "another secret, just as long as it"]);
        assert!(!wrong.status.success(), "PyJWT took a wrong secret");
        assert!(
            text(&wrong.stderr).contains("InvalidSignatureError"),
            "{}",
            text(&wrong.stderr)
        );
    }
}

/// Tokens a host site mints with PyJWT verify in ssehub, and PyJWT's HS512
/// and unsigned tokens are refused.
#[test]
fn ssehub_verifies_tokens_minted_by_pyjwt() {
    const ENCODE: &str = r#"
import json, sys
import jwt
payload, secret, alg = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
print(jwt.encode(payload, None if alg == "none" else secret, algorithm=alg))
"#;
    let now = now();
    let encode = |payload: Value, alg: &str| -> String {
        let out = python(ENCODE, &[&payload.to_string(), SECRET, alg]);
        assert!(out.status.success(), "PyJWT: {}", text(&out.stderr));
        text(&out.stdout).trim_end().to_string()
    };
    let customer = encode(
        serde_json::json!({
            "sub": "Bob", "exp": now + 600, "iat": now, "nbf": now - 1,
            "ssehub": {"rooms": ["r1", "v-x_y.z"]}
        }),
        "HS256",
    );
    let claims = token::verify(&customer, SECRET.as_bytes(), now).expect("PyJWT's token");
    assert_eq!(claims.sub, "Bob");
    assert_eq!(
        (claims.exp, claims.iat, claims.nbf),
        (now + 600, Some(now), Some(now - 1))
    );
    assert_eq!(
        claims.grant,
        Grant::Rooms(vec!["r1".into(), "v-x_y.z".into()])
    );
    assert_eq!(
        token::verify(&customer, SECRET.as_bytes(), now + 600),
        Err(TokenError::Expired)
    );

    // What a script computing `time.time() + 600` sends: a fractional exp.
    let agent = encode(
        serde_json::json!({"sub": "Grace", "exp": now as f64 + 600.5, "ssehub": {"agent": true}}),
        "HS256",
    );
    let claims = token::verify(&agent, SECRET.as_bytes(), now).expect("PyJWT's token");
    assert_eq!((claims.grant, claims.exp), (Grant::Agent, now + 600));

    let payload = serde_json::json!({"sub": "M", "exp": now + 600, "ssehub": {"agent": true}});
    assert_eq!(
        token::verify(&encode(payload.clone(), "HS512"), SECRET.as_bytes(), now),
        Err(TokenError::Header)
    );
    assert_eq!(
        token::verify(&encode(payload, "none"), SECRET.as_bytes(), now),
        Err(TokenError::Header)
    );
}
