//! Access control (`--auth-secret`): tokens from the header or the cookie,
//! rooms and roles enforced on every endpoint, visitor sessions, agent
//! login, cross-site POSTs, CORS credentials and streams closed when their
//! token expires. Real sockets against a real server.
mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ssehub::token::{self, Claims, Grant};
use support::*;

const SECRET: &str = "a test secret of more than 32 characters";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn private() -> TestServer {
    TestServer::with(|c| c.auth_secret = Some(SECRET.into()))
}

fn mint(user: &str, grant: Grant, ttl: u64) -> String {
    let claims = Claims {
        sub: user.into(),
        exp: now() + ttl,
        nbf: None,
        iat: None,
        grant,
        visitor: false,
    };
    token::sign(&claims, SECRET.as_bytes())
}

fn customer(room: &str) -> String {
    mint("Carla", Grant::Rooms(vec![room.into()]), 3600)
}

fn agent() -> String {
    mint("Sam", Grant::Agent, 3600)
}

/// `METHOD path` with extra header lines and an optional JSON body.
fn ask(server: &TestServer, method: &str, path: &str, headers: &str, body: &str) -> Reply {
    let body_headers = if body.is_empty() {
        String::new()
    } else {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    server.request(&format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}{body_headers}\r\n{body}"
    ))
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

fn cookie(token: &str) -> String {
    format!("Cookie: theme=dark; ssehub_token={token}\r\n")
}

/// The token a `Set-Cookie` header sets.
fn cookie_token(reply: &Reply) -> String {
    let set = reply.header("set-cookie").expect("a Set-Cookie header");
    set.strip_prefix("ssehub_token=")
        .and_then(|rest| rest.split(';').next())
        .expect("ssehub_token=…")
        .to_string()
}

#[test]
fn without_a_token_only_the_open_endpoints_answer() {
    let server = private();
    for (method, path, body) in [
        ("GET", "/events?room=a", ""),
        ("GET", "/messages?room=a", ""),
        ("GET", "/rooms", ""),
        (
            "POST",
            "/messages",
            r#"{"room":"a","user":"x","text":"hi"}"#,
        ),
        ("POST", "/publish?room=a", "x"),
    ] {
        let reply = ask(&server, method, path, "", body);
        assert_eq!(reply.status, 401, "{method} {path}: {}", reply.text());
        assert!(reply.json()["error"].is_string());
    }
    for path in ["/healthz", "/metrics", "/"] {
        assert_eq!(server.get(path).status, 200, "{path}");
    }
    let who = ask(&server, "GET", "/session", "", "").json();
    assert_eq!(who["role"], "anonymous");
    assert_eq!(who["private"], true);
}

#[test]
fn bad_tokens_are_refused_whatever_is_wrong_with_them() {
    let server = private();
    let good = customer("a");
    let (head, rest) = good.split_once('.').unwrap();
    let expired = {
        let claims = Claims {
            sub: "x".into(),
            exp: now() - 1,
            nbf: None,
            iat: None,
            grant: Grant::Rooms(vec!["a".into()]),
            visitor: false,
        };
        token::sign(&claims, SECRET.as_bytes())
    };
    let other_secret = token::sign(
        &Claims {
            sub: "x".into(),
            exp: now() + 60,
            nbf: None,
            iat: None,
            grant: Grant::Rooms(vec!["a".into()]),
            visitor: false,
        },
        b"another secret of more than 32 characters",
    );
    // {"alg":"none"} with the good payload and no signature.
    let none = format!("eyJhbGciOiJub25lIn0.{}.", rest.split('.').next().unwrap());
    let tampered = format!("{head}.{}x", rest);
    for bad in [
        expired,
        other_secret,
        none,
        tampered,
        "garbage".into(),
        "a.b.c".into(),
    ] {
        for how in [bearer(&bad), cookie(&bad)] {
            let reply = ask(&server, "GET", "/events?room=a", &how, "");
            assert_eq!(reply.status, 401, "{how}");
        }
    }
    let reply = ask(&server, "GET", "/messages?room=a", &bearer(&good), "");
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[test]
fn a_customer_reaches_only_their_rooms_and_posts_under_their_name() {
    let server = private();
    let mine = customer("v-mine");
    let auth = bearer(&mine);
    for (method, path, body) in [
        ("GET", "/events?room=v-other", ""),
        ("GET", "/events?room=v-mine&room=v-other", ""),
        ("GET", "/events?room=v-mine&role=agent", ""),
        ("GET", "/messages?room=v-other", ""),
        ("GET", "/rooms", ""),
        ("POST", "/messages", r#"{"room":"v-other","text":"hi"}"#),
        ("POST", "/publish?room=v-other", "x"),
    ] {
        let reply = ask(&server, method, path, &auth, body);
        assert_eq!(reply.status, 403, "{method} {path}: {}", reply.text());
    }
    let mut stream = Stream::open(&server, "/events?room=v-mine", &auth);
    assert_eq!(stream.head.status, 200);
    let hello = stream.wait_for("hello");
    assert!(
        hello.data.contains("\"role\":\"customer\""),
        "{}",
        hello.data
    );
    let posted = ask(
        &server,
        "POST",
        "/messages",
        &auth,
        r#"{"room":"v-mine","user":"Mallory","text":"my invoice"}"#,
    );
    assert_eq!(posted.status, 201, "{}", posted.text());
    let message = stream.wait_for("message");
    let data: serde_json::Value = serde_json::from_str(&message.data).unwrap();
    assert_eq!(
        data["user"], "Carla",
        "the author is the token's, not the body's"
    );
    assert_eq!(data["role"], "customer");
    let history = ask(&server, "GET", "/messages?room=v-mine", &auth, "").json();
    assert_eq!(history[0]["role"], "customer");
}

#[test]
fn an_agent_sees_every_room_and_answers_marked_as_agent() {
    let server = private();
    let carla = bearer(&customer("v-carla"));
    let sam = bearer(&agent());
    let mut customer_stream = Stream::open(&server, "/events?room=v-carla", &carla);
    customer_stream.wait_for("hello");
    let posted = ask(
        &server,
        "POST",
        "/messages",
        &carla,
        r#"{"room":"v-carla","text":"help"}"#,
    );
    assert_eq!(posted.status, 201);
    let rooms = ask(&server, "GET", "/rooms", &sam, "");
    assert_eq!(rooms.status, 200, "{}", rooms.text());
    assert!(rooms.text().contains("v-carla"), "{}", rooms.text());
    let mut agent_stream = Stream::open(&server, "/events?room=v-carla&role=agent", &sam);
    assert_eq!(agent_stream.head.status, 200);
    assert!(agent_stream
        .wait_for("hello")
        .data
        .contains("\"role\":\"agent\""));
    let answer = ask(
        &server,
        "POST",
        "/messages",
        &sam,
        r#"{"room":"v-carla","text":"on it"}"#,
    );
    assert_eq!(answer.status, 201);
    loop {
        let message = customer_stream.wait_for("message");
        if message.data.contains("on it") {
            assert!(
                message.data.contains("\"role\":\"agent\""),
                "{}",
                message.data
            );
            assert!(
                message.data.contains("\"user\":\"Sam\""),
                "{}",
                message.data
            );
            break;
        }
    }
    // The customer sees an agent online.
    loop {
        let presence = customer_stream.wait_for("presence");
        if presence.data.contains("\"agents\":1") {
            break;
        }
    }
}

#[test]
fn a_visitor_gets_a_private_room_and_keeps_it() {
    let server = private();
    let first = ask(&server, "POST", "/session", "", "");
    assert_eq!(first.status, 201, "{}", first.text());
    let body = first.json();
    let room = body["room"].as_str().unwrap().to_string();
    assert!(room.starts_with("v-") && room.len() >= 24, "{room}");
    assert_eq!(body["user"], "visitor");
    let set = first.header("set-cookie").unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let token = cookie_token(&first);
    assert_eq!(body["token"], token.as_str());
    assert!(body["expires"].as_u64().unwrap() > now() * 1000);

    // The cookie opens the room's stream, and nothing else.
    let mut stream = Stream::open(&server, &format!("/events?room={room}"), &cookie(&token));
    assert_eq!(stream.head.status, 200);
    stream.wait_for("hello");
    let other = ask(&server, "GET", "/events?room=lobby", &cookie(&token), "");
    assert_eq!(other.status, 403);

    // The same visitor (a reload, another tab) keeps the room; a new name
    // re-issues the token.
    let again = ask(
        &server,
        "POST",
        "/session",
        &cookie(&token),
        r#"{"name":"Ann"}"#,
    );
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["room"], room.as_str());
    assert_eq!(again.json()["user"], "Ann");
    let renewed = cookie_token(&again);
    let who = ask(&server, "GET", "/session", &cookie(&renewed), "").json();
    assert_eq!(who["role"], "customer");
    assert_eq!(who["user"], "Ann");
    assert_eq!(who["rooms"][0], room.as_str());

    // Another visitor gets another room.
    let stranger = ask(&server, "POST", "/session", "", "").json();
    assert_ne!(stranger["room"], room.as_str());

    // Behind a TLS proxy the cookie is Secure.
    let tls = ask(
        &server,
        "POST",
        "/session",
        "X-Forwarded-Proto: https\r\n",
        "",
    );
    assert!(tls.header("set-cookie").unwrap().contains("; Secure"));
}

/// `POST /session` renews a visitor's token (`"visitor": true`, as it
/// issues them) for another `--visitor-ttl`, but a host's customer token
/// keeps the end the host gave it: a short-lived token presented there
/// never comes back as a 30-day one.
#[test]
fn only_a_visitors_token_is_renewed_a_hosts_keeps_its_expiry() {
    let server = private();
    let ttl_30d = 30 * 86_400;

    let first = ask(&server, "POST", "/session", "", "");
    let visitor = token::verify(&cookie_token(&first), SECRET.as_bytes(), now()).unwrap();
    assert!(visitor.visitor, "POST /session marks its tokens");
    assert!(visitor.exp >= now() + ttl_30d - 5);
    let again = ask(
        &server,
        "POST",
        "/session",
        &cookie(&cookie_token(&first)),
        "",
    );
    assert_eq!(again.status, 200, "{}", again.text());
    let renewed = token::verify(&cookie_token(&again), SECRET.as_bytes(), now()).unwrap();
    assert!(renewed.visitor && renewed.exp >= visitor.exp);

    // A host's token for two minutes: renamed, same rooms, same end.
    let host = mint("Carla", Grant::Rooms(vec!["order-17".into()]), 120);
    let host_exp = token::verify(&host, SECRET.as_bytes(), now()).unwrap().exp;
    let reissued = ask(
        &server,
        "POST",
        "/session",
        &bearer(&host),
        r#"{"name":"Carla B."}"#,
    );
    assert_eq!(reissued.status, 200, "{}", reissued.text());
    let body = reissued.json();
    assert_eq!(body["room"], "order-17");
    assert_eq!(body["user"], "Carla B.");
    assert_eq!(body["expires"].as_u64(), Some(host_exp * 1000));
    let claims = token::verify(&cookie_token(&reissued), SECRET.as_bytes(), now()).unwrap();
    assert_eq!((claims.exp, claims.visitor), (host_exp, false));
    let set = reissued.header("set-cookie").unwrap();
    let max_age: u64 = set
        .split("Max-Age=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|n| n.parse().ok())
        .expect("Max-Age");
    assert!(
        max_age <= 120,
        "the cookie lives as long as the token: {set}"
    );

    // The same forger's hand with a clear claim works (so the refusals
    // below are about the claim), and one that says `"visitor"` unclearly
    // grants nothing.
    let clear = sign_raw(&format!(
        r#"{{"sub":"x","exp":{},"ssehub":{{"rooms":["a"],"visitor":true}}}}"#,
        now() + 60
    ));
    let read = ask(&server, "GET", "/messages?room=a", &bearer(&clear), "");
    assert_eq!(read.status, 200, "{}", read.text());
    for ssehub in [
        r#"{"rooms":["a"],"visitor":false}"#,
        r#"{"rooms":["a"],"visitor":"yes"}"#,
        r#"{"agent":true,"visitor":true}"#,
    ] {
        let payload = format!(r#"{{"sub":"x","exp":{},"ssehub":{ssehub}}}"#, now() + 60);
        let forged = sign_raw(&payload);
        let read = ask(&server, "GET", "/messages?room=a", &bearer(&forged), "");
        assert_eq!(read.status, 401, "{ssehub}: {}", read.text());
    }
}

/// An HS256 token over `payload` exactly as given, signed with `SECRET`
/// by an independent HMAC (`hmac` + `sha2` straight, not ssehub's signer).
fn sign_raw(payload: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};
    let mut token = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    token
}

#[test]
fn new_rooms_and_failed_logins_are_rate_limited_per_address() {
    let server = private();
    let statuses: Vec<u16> = (0..11)
        .map(|_| ask(&server, "POST", "/session", "", "").status)
        .collect();
    assert!(statuses[..10].iter().all(|s| *s == 201), "{statuses:?}");
    let limited = ask(&server, "POST", "/session", "", "");
    assert_eq!(limited.status, 429);
    let wait: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");

    for _ in 0..10 {
        let reply = ask(&server, "POST", "/login", "", r#"{"token":"wrong"}"#);
        assert_eq!(reply.status, 401);
    }
    let reply = ask(
        &server,
        "POST",
        "/login",
        "",
        &format!(r#"{{"token":"{}"}}"#, agent()),
    );
    assert_eq!(
        reply.status, 429,
        "even a good token waits after 10 failures"
    );
}

#[test]
fn an_agent_logs_in_with_a_token_and_out_again() {
    let server = private();
    let token = agent();
    let login = ask(
        &server,
        "POST",
        "/login",
        "",
        &format!(r#"{{"token":"{token}"}}"#),
    );
    assert_eq!(login.status, 204, "{}", login.text());
    assert_eq!(cookie_token(&login), token);
    let who = ask(&server, "GET", "/session", &cookie(&token), "").json();
    assert_eq!(who["role"], "agent");
    assert_eq!(who["user"], "Sam");
    assert_eq!(
        ask(&server, "GET", "/rooms", &cookie(&token), "").status,
        200
    );
    let logout = ask(&server, "POST", "/logout", &cookie(&token), "");
    assert_eq!(logout.status, 204);
    let cleared = logout.header("set-cookie").unwrap();
    assert!(
        cleared.starts_with("ssehub_token=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert_eq!(
        ask(&server, "POST", "/login", "", r#"{"token":"not a token"}"#).status,
        401
    );
}

#[test]
fn cookie_posts_from_a_foreign_page_are_refused() {
    let server = TestServer::with(|c| {
        c.auth_secret = Some(SECRET.into());
        c.cors_origins = vec!["https://shop.example".into()];
    });
    let token = customer("v-x");
    let body = r#"{"room":"v-x","text":"hi"}"#;
    let forged = format!("{}Origin: https://evil.example\r\n", cookie(&token));
    assert_eq!(ask(&server, "POST", "/messages", &forged, body).status, 403);
    let own = format!("{}Origin: http://t\r\n", cookie(&token));
    assert_eq!(ask(&server, "POST", "/messages", &own, body).status, 201);
    let listed = format!("{}Origin: https://shop.example\r\n", cookie(&token));
    let reply = ask(&server, "POST", "/messages", &listed, body);
    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.header("access-control-allow-credentials"),
        Some("true")
    );
    // A bearer token is not sent by a browser on its own: no forgery.
    let header = format!("{}Origin: https://evil.example\r\n", bearer(&token));
    assert_eq!(ask(&server, "POST", "/messages", &header, body).status, 201);
}

#[test]
fn any_origin_never_gets_credentials() {
    let server = TestServer::with(|c| {
        c.auth_secret = Some(SECRET.into());
        c.cors_origins = vec!["*".into()];
    });
    let reply = ask(
        &server,
        "GET",
        "/healthz",
        "Origin: https://a.example\r\n",
        "",
    );
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    assert_eq!(reply.header("access-control-allow-credentials"), None);
}

#[test]
fn publish_takes_a_room_token_or_the_static_token() {
    let server = TestServer::with(|c| {
        c.auth_secret = Some(SECRET.into());
        c.publish_token = Some("device-key".into());
    });
    let publish = |headers: &str| {
        ask(
            &server,
            "POST",
            "/publish?room=sensors&event=reading",
            headers,
            "t=21",
        )
        .status
    };
    assert_eq!(publish(""), 401);
    assert_eq!(publish(&bearer("device-key")), 201);
    assert_eq!(publish(&bearer(&customer("sensors"))), 201);
    assert_eq!(publish(&bearer(&customer("elsewhere"))), 403);
    assert_eq!(publish(&bearer(&agent())), 201);
    // A `message` event would read as a chat message, with whatever author
    // and role its body claims: a room token may not publish one (nor by
    // leaving the name out); the host's publish token and agents may.
    let forged =
        r#"{"id":1,"room":"sensors","user":"Grace","text":"refund approved","role":"agent"}"#;
    for path in [
        "/publish?room=sensors",
        "/publish?room=sensors&event=message",
    ] {
        let reply = ask(&server, "POST", path, &bearer(&customer("sensors")), forged);
        assert_eq!(reply.status, 403, "{path}: {}", reply.text());
        assert!(reply.text().contains("POST /messages"), "{}", reply.text());
    }
    for token in [bearer("device-key"), bearer(&agent())] {
        let reply = ask(&server, "POST", "/publish?room=sensors", &token, "t=22");
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    // The static token reads nothing.
    assert_eq!(
        ask(
            &server,
            "GET",
            "/events?room=sensors",
            &bearer("device-key"),
            ""
        )
        .status,
        401
    );
    // GET /session: no person, so one of the three roles, told apart.
    let who = ask(&server, "GET", "/session", &bearer("device-key"), "").json();
    assert_eq!(
        (&who["role"], &who["publisher"]),
        (&"anonymous".into(), &true.into())
    );
    let nobody = ask(&server, "GET", "/session", "", "").json();
    assert!(nobody.get("publisher").is_none(), "{nobody}");
}

#[test]
fn a_stream_is_closed_when_its_token_expires() {
    let server = private();
    let short = mint("Brief", Grant::Rooms(vec!["v-brief".into()]), 2);
    let mut stream = Stream::open(&server, "/events?room=v-brief", &bearer(&short));
    assert_eq!(stream.head.status, 200);
    stream.wait_for("hello");
    assert!(
        stream.client.closes_within(Duration::from_secs(10)),
        "the stream outlived its token"
    );
    assert!(eventually(Duration::from_secs(5), || {
        server.metric("ssehub_connections_closed_total{reason=\"token_expired\"}") == 1.0
    }));
}

#[test]
fn open_mode_has_no_sessions() {
    let server = TestServer::start();
    let who = ask(&server, "GET", "/session", "", "").json();
    assert_eq!(who["private"], false);
    assert_eq!(ask(&server, "POST", "/session", "", "").status, 404);
    assert_eq!(
        ask(&server, "POST", "/login", "", r#"{"token":"x"}"#).status,
        404
    );
    // Rooms stay open: anyone streams and lists.
    assert_eq!(server.get("/rooms").status, 200);
}
