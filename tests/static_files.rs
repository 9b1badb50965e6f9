//! The page over real sockets: the built-in page, `--www DIR` with the
//! right content types, traversal attempts that must never serve or leak
//! anything outside the folder, and API paths that are never files.
mod support;

use support::*;

/// Markers written outside the page folder; no answer may contain them.
const SECRET: &str = "TOP-SECRET-MARKER-7f3a";
const OUTSIDE_CARGO: &str = "[package] outside-marker";

/// `base/` holds the secrets, `base/www/` the page.
struct Site {
    base: TempDir,
    server: TestServer,
}

fn site() -> Site {
    let base = TempDir::new("static");
    base.write("secret.txt", SECRET);
    base.write("Cargo.toml", OUTSIDE_CARGO);
    base.write("www/index.html", "<!doctype html><title>test page</title>");
    base.write("www/app.js", "console.log('app');");
    base.write("www/style.css", "body { color: red }");
    base.write("www/data.json", "{\"ok\":true}");
    base.write(
        "www/pic.png",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\x00",
    );
    base.write(
        "www/icon.svg",
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
    );
    base.write("www/notes.txt", "plain notes");
    base.write("www/a b.txt", "spaced name");
    base.write("www/noext", "no extension");
    base.write("www/sub/index.html", "<p>sub index</p>");
    base.write("www/sub/deep.css", "p { margin: 0 }");
    base.write("www/.env", SECRET);
    for api in [
        "events", "messages", "publish", "rooms", "healthz", "metrics",
    ] {
        base.write(&format!("www/{api}"), format!("FILE-NOT-API {SECRET}"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        symlink(base.path.join("secret.txt"), base.path.join("www/out.txt")).unwrap();
        symlink(&base.path, base.path.join("www/outdir")).unwrap();
        symlink(base.path.join("www/app.js"), base.path.join("www/in.js")).unwrap();
    }
    let www = base.path.join("www");
    let server = TestServer::with(move |c| c.www = Some(www));
    Site { base, server }
}

fn media_type(reply: &Reply) -> String {
    reply
        .header("content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_ascii_lowercase()
}

/// Sends a raw request line (the target exactly as given) and reads the answer.
fn raw_get(server: &TestServer, target: &str) -> Reply {
    server.request(&format!(
        "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    ))
}

/// Paths that try to leave the page folder, in every encoding we know.
const TRAVERSALS: &[&str] = &[
    "/../Cargo.toml",
    "/../secret.txt",
    "/%2e%2e/Cargo.toml",
    "/%2E%2E/secret.txt",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/..%2fCargo.toml",
    "/..%2Fsecret.txt",
    "/%2e%2e%2fsecret.txt",
    "/.%2e/secret.txt",
    "/%252e%252e/secret.txt",
    "/..\\secret.txt",
    "/..%5csecret.txt",
    "/%5c..%5csecret.txt",
    "/sub/..%5c..%5csecret.txt",
    "/sub/../../secret.txt",
    "/./../secret.txt",
    "/....//secret.txt",
    "/..;/secret.txt",
    "//etc/passwd",
    "/%2f%2fetc/passwd",
    "/%2fetc%2fpasswd",
    "/../../../../../../../../etc/passwd",
    "/%00",
    "/index.html%00.txt",
    "/secret.txt%00",
    "/C:/Windows/win.ini",
    "/C:%5cWindows%5cwin.ini",
    "/.env",
    "/%2eenv",
    "/out.txt",
    "/outdir/secret.txt",
    "/outdir/Cargo.toml",
    "http://t/../secret.txt",
    "http://t/%2e%2e/Cargo.toml",
];

#[track_caller]
fn assert_refused(reply: &Reply, target: &str) {
    assert_ne!(reply.status, 200, "{target} was served: {}", reply.text());
    assert!(reply.status >= 400, "{target}: {reply:?}");
    let body = reply.text();
    for marker in [SECRET, OUTSIDE_CARGO, "[package]", "root:"] {
        assert!(!body.contains(marker), "{target} leaked {marker}: {body}");
    }
}

// ----- the built-in page ------------------------------------------------------

#[test]
fn root_is_the_built_in_page() {
    let server = TestServer::start();
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(media_type(&page), "text/html");
    let length: usize = page.header("content-length").unwrap().parse().unwrap();
    assert_eq!(length, page.body.len());
    let text = page.text().to_ascii_lowercase();
    assert!(
        text.contains("<html") || text.contains("<!doctype html"),
        "{text}"
    );
    assert!(!page.body.starts_with(b"\xef\xbb\xbf"), "no BOM");
    let index = server.get("/index.html");
    assert_eq!(index.status, 200);
    assert_eq!(index.body, page.body);
    // Query strings do not change the file (`/?agent` is the agent view).
    let agent = server.get("/?agent");
    assert_eq!(agent.status, 200);
    assert_eq!(agent.body, page.body);
}

#[test]
fn built_in_assets_have_their_types() {
    let server = TestServer::start();
    let page = server.get("/").text();
    for (path, types) in [
        (
            "/app.js",
            &["text/javascript", "application/javascript"][..],
        ),
        ("/style.css", &["text/css"][..]),
        ("/favicon.svg", &["image/svg+xml"][..]),
    ] {
        let reply = server.get(path);
        if reply.status == 404 {
            // Only check what the page has; it may be organised otherwise.
            assert!(!page.contains(&path[1..]), "{path} is linked but missing");
            continue;
        }
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            types.contains(&media_type(&reply).as_str()),
            "{path}: {reply:?}"
        );
        assert!(!reply.body.is_empty());
    }
    let missing = server.get("/no-such-file.js");
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].is_string());
}

#[test]
fn built_in_page_never_leaks_outside_files() {
    let server = TestServer::start();
    for target in TRAVERSALS {
        assert_refused(&raw_get(&server, target), target);
    }
    // Every attempt was answered and the server is fine.
    server.assert_alive();
}

// ----- --www ------------------------------------------------------------------

#[test]
fn www_folder_files_with_their_types() {
    let site = site();
    let server = &site.server;
    let cases: &[(&str, &[&str], &[u8])] = &[
        (
            "/",
            &["text/html"],
            b"<!doctype html><title>test page</title>",
        ),
        (
            "/index.html",
            &["text/html"],
            b"<!doctype html><title>test page</title>",
        ),
        (
            "/app.js",
            &["text/javascript", "application/javascript"],
            b"console.log('app');",
        ),
        ("/style.css", &["text/css"], b"body { color: red }"),
        ("/data.json", &["application/json"], b"{\"ok\":true}"),
        (
            "/pic.png",
            &["image/png"],
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\x00",
        ),
        (
            "/icon.svg",
            &["image/svg+xml"],
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
        ),
        ("/notes.txt", &["text/plain"], b"plain notes"),
        ("/a%20b.txt", &["text/plain"], b"spaced name"),
        ("/noext", &["application/octet-stream"], b"no extension"),
        ("/sub/", &["text/html"], b"<p>sub index</p>"),
        ("/sub/deep.css", &["text/css"], b"p { margin: 0 }"),
        ("/sub/deep.css?v=3", &["text/css"], b"p { margin: 0 }"),
        (
            "/./app.js",
            &["text/javascript", "application/javascript"],
            b"console.log('app');",
        ),
    ];
    for (path, types, body) in cases {
        let reply = server.get(path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert!(
            types.contains(&media_type(&reply).as_str()),
            "{path}: {reply:?}"
        );
        assert_eq!(reply.body, *body, "{path}");
        let length: usize = reply.header("content-length").unwrap().parse().unwrap();
        assert_eq!(length, body.len(), "{path}");
    }
    // A link that stays inside the folder is served.
    #[cfg(unix)]
    assert_eq!(server.get("/in.js").body, b"console.log('app');");
    for path in ["/missing.html", "/sub/missing.css", "/nosuchdir/"] {
        let reply = server.get(path);
        assert_eq!(reply.status, 404, "{path}");
        assert!(reply.json()["error"].is_string());
    }
    // HEAD: the same headers, no body (a GET follows on the connection).
    let get = server.get("/pic.png");
    let mut client = server.connect();
    client.send(b"HEAD /pic.png HTTP/1.1\r\nHost: t\r\n\r\nGET /noext HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.read_reply_for(true);
    let mut get_headers = get.headers.clone();
    get_headers.retain(|(n, _)| n != "connection");
    assert_eq!(head.headers, get_headers);
    assert_eq!(client.read_reply().body, b"no extension");
}

#[test]
fn www_folder_never_leaks_outside_files() {
    let site = site();
    for target in TRAVERSALS {
        assert_refused(&raw_get(&site.server, target), target);
    }
    // HEAD probes learn nothing either.
    let mut client = site.server.connect();
    client.send(b"HEAD /../secret.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_ne!(client.read_reply_for(true).status, 200);
    site.server.assert_alive();
    assert!(site.base.path.join("secret.txt").exists());
}

#[test]
fn api_paths_are_never_files() {
    let site = site();
    let server = &site.server;
    let rooms = server.get("/rooms");
    assert_eq!(rooms.status, 200);
    assert!(rooms.json().is_array(), "{}", rooms.text());
    assert_eq!(server.get("/healthz").json()["status"], "ok");
    assert_eq!(server.get("/messages").json(), serde_json::json!([]));
    let metrics = server.get("/metrics");
    assert!(metrics.text().contains("ssehub_"));
    let publish = server.get("/publish");
    assert_eq!(publish.status, 405);
    let mut stream = Stream::open(server, "/events", "");
    assert_eq!(
        stream.head.header("content-type"),
        Some("text/event-stream")
    );
    stream.skip_preamble();
    for reply in [rooms, metrics, publish] {
        assert!(!reply.text().contains("FILE-NOT-API"), "{}", reply.text());
    }
    // Wrong methods on files are 405, not a file answer.
    for raw in [
        "POST /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "DELETE /app.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ] {
        let reply = server.request(raw);
        assert_eq!(reply.status, 405, "{raw}");
        assert!(reply.header("allow").unwrap().contains("GET"));
    }
}
