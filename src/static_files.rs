//! The page: maps a request path to a file of `www/` (compiled in) or of the
//! `--www` folder, and never to anything outside it.
//!
//! Every path is percent-decoded first and then checked segment by segment,
//! so an encoded `..` or `\` is caught like a plain one. Anything that tries
//! to leave the folder is [`Lookup::NotFound`], exactly like a missing file,
//! so a probe learns nothing about what exists outside.

use std::borrow::Cow;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::request::percent_decode;

/// The table written by `build.rs`.
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/www_files.rs"));
}

/// Larger files are not served: the page is small, and reading a huge file
/// would stall the one loop thread.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Where the page comes from.
#[derive(Debug, Clone)]
pub struct StaticFiles {
    /// The compiled-in table or a folder on disk.
    source: Source,
}

/// The two places a page can live.
#[derive(Debug, Clone)]
enum Source {
    /// `www/` as it was at build time.
    Embedded,
    /// A canonical folder, so a prefix check on canonical paths is a
    /// containment check.
    Dir(PathBuf),
}

/// The answer to a [`StaticFiles::lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The file exists: answer 200 with this body.
    Found {
        /// The file's contents; borrowed for the embedded page.
        body: Cow<'static, [u8]>,
        /// The `Content-Type` header value, from the file's extension.
        content_type: &'static str,
    },
    /// Absent, or an attempt to leave the folder: answer 404.
    NotFound,
    /// Undecodable (bad percent-escape, invalid UTF-8, NUL): answer 400.
    BadPath,
}

impl StaticFiles {
    /// The `www/` folder compiled into the binary.
    pub fn embedded() -> StaticFiles {
        StaticFiles {
            source: Source::Embedded,
        }
    }

    /// Serves the files of `dir` (for `--www DIR`).
    ///
    /// # Errors
    ///
    /// When `dir` does not exist, cannot be resolved, or is not a directory.
    pub fn from_dir(dir: &Path) -> io::Result<StaticFiles> {
        let root = dir.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(StaticFiles {
            source: Source::Dir(root),
        })
    }

    /// Finds the file for `raw_path`: the request target's path, without
    /// the query string, still percent-encoded (`/`, `/app.js`, `/a%20b/`).
    ///
    /// `/` and any path ending in `/` mean that folder's `index.html`; a
    /// folder named without the slash serves its `index.html` too. An
    /// escaped `..` is still `..` (not found); a bad escape is a bad path.
    pub fn lookup(&self, raw_path: &str) -> Lookup {
        let rel = match clean(raw_path) {
            Ok(rel) => rel,
            Err(answer) => return answer,
        };
        match &self.source {
            Source::Embedded => lookup_embedded(&rel),
            Source::Dir(root) => lookup_dir(root, &rel),
        }
    }
}

/// The `Content-Type` for a file name, by its extension (case-insensitive);
/// `application/octet-stream` when unknown, so browsers do not guess.
pub fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = match name.rsplit_once('.') {
        Some((_, ext)) => ext.to_ascii_lowercase(),
        None => return "application/octet-stream",
    };
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        "webmanifest" => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

/// Decodes `raw_path` and turns it into a relative path of plain name
/// segments joined by `/` (`css/app.css`, `index.html`), or the answer to
/// give instead.
///
/// Only plain names survive, so `Path::join` can never see an absolute
/// component, a parent, or a drive prefix.
fn clean(raw_path: &str) -> Result<String, Lookup> {
    let Some(rest) = raw_path.strip_prefix('/') else {
        return Err(Lookup::NotFound);
    };
    // `+` stays `+`: that rule belongs to query strings, not paths.
    let decoded = percent_decode(rest, false).ok_or(Lookup::BadPath)?;
    if decoded.contains('\0') {
        return Err(Lookup::BadPath);
    }

    let mut segments: Vec<&str> = decoded.split('/').collect();
    // A trailing slash (`/` itself included) names a folder: its index.
    if let Some(last) = segments.last_mut().filter(|s| s.is_empty()) {
        *last = "index.html";
    }
    let mut parts = Vec::new();
    for segment in segments {
        match segment {
            // Dropping `.` is harmless; it never moves up.
            "." => {}
            // An empty segment comes from `//`, which is an absolute path
            // once joined; any `..` is refused, even one that would stay
            // inside, as no page link needs it.
            "" | ".." => return Err(Lookup::NotFound),
            // `\` is a separator on Windows, `:` makes drive (`C:`) and
            // stream (`file:stream`) forms, and dotfiles (`.git`, `.env`)
            // are not part of a page, as `build.rs` skips them too.
            _ if segment.contains(['\\', ':']) || segment.starts_with('.') => {
                return Err(Lookup::NotFound)
            }
            _ => parts.push(segment),
        }
    }
    // `/.` names the root folder too.
    if parts.is_empty() {
        parts.push("index.html");
    }
    Ok(parts.join("/"))
}

/// Looks `rel` up in the compiled-in table, then as a folder's index.
fn lookup_embedded(rel: &str) -> Lookup {
    let table = embedded::EMBEDDED;
    let find = |url: &str| {
        table
            .binary_search_by(|(name, _)| (*name).cmp(url))
            .ok()
            .map(|i| table[i])
    };
    let url = format!("/{rel}");
    let hit = find(&url).or_else(|| find(&format!("{url}/index.html")));
    match hit {
        Some((name, body)) => Lookup::Found {
            body: Cow::Borrowed(body),
            content_type: content_type(name),
        },
        None => Lookup::NotFound,
    }
}

/// Looks `rel` up under the canonical `root`, following symlinks only as
/// long as they end up inside `root`.
fn lookup_dir(root: &Path, rel: &str) -> Lookup {
    let Some(mut path) = resolve(root, &root.join(rel)) else {
        return Lookup::NotFound;
    };
    if path.is_dir() {
        match resolve(root, &path.join("index.html")) {
            Some(index) => path = index,
            None => return Lookup::NotFound,
        }
    }
    // Only regular files: a FIFO or device would block or never end.
    match fs::metadata(&path) {
        Ok(meta) if meta.is_file() && meta.len() <= MAX_FILE_BYTES => {}
        _ => return Lookup::NotFound,
    }
    match fs::read(&path) {
        Ok(body) => Lookup::Found {
            body: Cow::Owned(body),
            content_type: content_type(&path.to_string_lossy()),
        },
        Err(_) => Lookup::NotFound,
    }
}

/// `path` with every symlink resolved, if it exists and is still inside
/// `root`; a link pointing out of the folder counts as absent.
fn resolve(root: &Path, path: &Path) -> Option<PathBuf> {
    let canonical = path.canonicalize().ok()?;
    canonical.starts_with(root).then_some(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lookup_rules_in_brief() {
        let page = StaticFiles::embedded();
        assert!(matches!(page.lookup("/"), Lookup::Found { .. }));
        assert_eq!(page.lookup("/%2e%2e/Cargo.toml"), Lookup::NotFound);
        assert_eq!(page.lookup("/%zz"), Lookup::BadPath);
        assert_eq!(content_type("/app.JS"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("/README"), "application/octet-stream");
    }
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh folder under the system temp dir, removed on drop (also when
    /// a test fails).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("ssehub-static-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// `base/` holds `secret.txt` and `Cargo.toml` (outside the page) and
    /// `www/`, the page: `index.html`, `app.js`, `a b.txt`, `.env`,
    /// `sub/index.html`, `sub/style.css`, and `empty/` with no index.
    fn site() -> (TempDir, StaticFiles) {
        let base = TempDir::new();
        let www = base.0.join("www");
        fs::create_dir_all(www.join("sub")).unwrap();
        fs::create_dir_all(www.join("empty")).unwrap();
        fs::write(base.0.join("secret.txt"), "secret").unwrap();
        fs::write(base.0.join("Cargo.toml"), "[package]").unwrap();
        fs::write(www.join("index.html"), "root index").unwrap();
        fs::write(www.join("app.js"), "app").unwrap();
        fs::write(www.join("a b.txt"), "spaced").unwrap();
        fs::write(www.join(".env"), "TOKEN=x").unwrap();
        fs::write(www.join("sub/index.html"), "sub index").unwrap();
        fs::write(www.join("sub/style.css"), "css").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink(base.0.join("secret.txt"), www.join("out.txt")).unwrap();
            symlink(&base.0, www.join("outdir")).unwrap();
            symlink(www.join("app.js"), www.join("in.js")).unwrap();
            symlink("sub", www.join("insub")).unwrap();
        }
        let files = StaticFiles::from_dir(&www).unwrap();
        (base, files)
    }

    fn found(body: &str, content_type: &'static str) -> Lookup {
        Lookup::Found {
            body: Cow::Owned(body.as_bytes().to_vec()),
            content_type,
        }
    }

    const HTML: &str = "text/html; charset=utf-8";

    /// Attempts to leave the folder or reach things that are not the page.
    const ESCAPES: &[&str] = &[
        "/../Cargo.toml",
        "/../secret.txt",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/..%2fCargo.toml",
        "/..%2FCargo.toml",
        "/%2e%2e%5cCargo.toml",
        "/..\\Cargo.toml",
        "/sub\\..\\..\\secret.txt",
        "/%5c",
        "/foo/../../x",
        "/sub/../app.js",
        "/..",
        "/.%2e/secret.txt",
        "//etc/passwd",
        "/%2fetc/passwd",
        "/%2f%2fetc/passwd",
        "/sub//style.css",
        "/C:/x",
        "/c:",
        "/C%3a/x",
        "/app.js:stream",
        "/.env",
        "/%2eenv",
        "",
        "app.js",
        "*",
        "http://example.com/app.js",
    ];

    #[test]
    fn escapes_are_not_found_on_disk() {
        let (_base, files) = site();
        for path in ESCAPES {
            assert_eq!(files.lookup(path), Lookup::NotFound, "{path:?}");
        }
    }

    #[test]
    fn escapes_are_not_found_embedded() {
        let files = StaticFiles::embedded();
        for path in ESCAPES {
            assert_eq!(files.lookup(path), Lookup::NotFound, "{path:?}");
        }
    }

    #[test]
    fn undecodable_paths_are_bad() {
        let (_base, files) = site();
        let cases = [
            "/%00",
            "/app.js%00.png",
            "/%zz",
            "/%",
            "/%2",
            "/%g0",
            "/%ff",
            "/%c0%ae%c0%ae/secret.txt",
        ];
        for path in cases {
            assert_eq!(files.lookup(path), Lookup::BadPath, "{path:?}");
            assert_eq!(
                StaticFiles::embedded().lookup(path),
                Lookup::BadPath,
                "{path:?}"
            );
        }
    }

    #[test]
    fn files_on_disk_are_found() {
        let (_base, files) = site();
        let js = "text/javascript; charset=utf-8";
        let cases = [
            ("/", found("root index", HTML)),
            ("/index.html", found("root index", HTML)),
            ("/./index.html", found("root index", HTML)),
            ("/app.js", found("app", js)),
            ("/%61pp.js", found("app", js)),
            ("/a%20b.txt", found("spaced", "text/plain; charset=utf-8")),
            ("/sub/", found("sub index", HTML)),
            ("/sub", found("sub index", HTML)),
            ("/sub/style.css", found("css", "text/css; charset=utf-8")),
            ("/missing.js", Lookup::NotFound),
            ("/sub/missing/", Lookup::NotFound),
            ("/empty/", Lookup::NotFound),
            ("/empty", Lookup::NotFound),
            ("/app.js/", Lookup::NotFound),
        ];
        for (path, want) in cases {
            assert_eq!(files.lookup(path), want, "{path:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_stay_inside() {
        let (_base, files) = site();
        let cases = [
            ("/out.txt", Lookup::NotFound),
            ("/outdir/secret.txt", Lookup::NotFound),
            // Through a link out and back in: the target itself is inside.
            (
                "/outdir/www/app.js",
                found("app", "text/javascript; charset=utf-8"),
            ),
            ("/in.js", found("app", "text/javascript; charset=utf-8")),
            ("/insub/", found("sub index", HTML)),
        ];
        for (path, want) in cases {
            assert_eq!(files.lookup(path), want, "{path:?}");
        }
    }

    #[test]
    fn from_dir_wants_a_directory() {
        let (base, _) = site();
        assert!(StaticFiles::from_dir(&base.0.join("secret.txt")).is_err());
        assert!(StaticFiles::from_dir(&base.0.join("nope")).is_err());
    }

    #[test]
    fn embedded_page_has_an_index() {
        let table = embedded::EMBEDDED;
        assert!(table.iter().any(|(name, _)| *name == "/index.html"));
        assert!(table.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
        assert!(table.iter().all(|(name, _)| name.starts_with('/')));
        match StaticFiles::embedded().lookup("/") {
            Lookup::Found { body, content_type } => {
                assert!(matches!(body, Cow::Borrowed(_)));
                assert_eq!(content_type, HTML);
            }
            other => panic!("/ not found: {other:?}"),
        }
    }

    #[test]
    fn content_types() {
        let cases = [
            ("/index.html", HTML),
            ("/a/b.HTM", HTML),
            ("/app.css", "text/css; charset=utf-8"),
            ("/app.js", "text/javascript; charset=utf-8"),
            ("/mod.mjs", "text/javascript; charset=utf-8"),
            ("/data.json", "application/json"),
            ("/app.js.map", "application/json"),
            ("/logo.svg", "image/svg+xml"),
            ("/a.png", "image/png"),
            ("/a.jpg", "image/jpeg"),
            ("/a.JPEG", "image/jpeg"),
            ("/a.gif", "image/gif"),
            ("/a.webp", "image/webp"),
            ("/favicon.ico", "image/x-icon"),
            ("/robots.txt", "text/plain; charset=utf-8"),
            ("/f.woff2", "font/woff2"),
            ("/m.wasm", "application/wasm"),
            ("/site.webmanifest", "application/manifest+json"),
            ("/README", "application/octet-stream"),
            ("/dir.d/README", "application/octet-stream"),
            ("/x.exe", "application/octet-stream"),
        ];
        for (path, want) in cases {
            assert_eq!(content_type(path), want, "{path:?}");
        }
    }
}
