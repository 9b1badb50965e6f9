//! Compiles the bundled page (`www/`) into the binary, so a copied binary
//! serves it from any directory.
//!
//! Writes `$OUT_DIR/www_files.rs`, a table of `(url_path, bytes)` sorted by
//! URL path so `static_files` can binary-search it.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

fn main() -> io::Result<()> {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.join("www");
    // Cargo scans a directory given here recursively, so new files count too.
    println!("cargo:rerun-if-changed=www");

    let mut files = Vec::new();
    if root.is_dir() {
        walk(&root, &mut files)?;
    }
    let mut table: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|path| (url_path(&root, &path), path))
        .collect();
    // Sorted as strings, the same order `str::cmp` uses at run time; sorting
    // per directory while walking would not give that ("a-b" < "a/b").
    table.sort();

    let mut out = String::from(
        "/// Every file of `www/` as `(url_path, contents)`, sorted by URL path.\n\
         pub static EMBEDDED: &[(&str, &[u8])] = &[\n",
    );
    for (url, path) in &table {
        println!("cargo:rerun-if-changed={}", path.display());
        let abs = path.to_str().expect("www/ path is not UTF-8");
        // `{:?}` of a str is a valid Rust string literal, escapes included.
        writeln!(out, "    ({url:?}, include_bytes!({abs:?})),").expect("write to String");
    }
    out.push_str("];\n");

    let dest = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("www_files.rs");
    fs::write(dest, out)
}

/// Collects the regular files under `dir`, skipping dotfiles and dot-folders
/// (editor swap files, `.DS_Store`, `.git` are not part of the page).
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // `file_type` does not follow symlinks, so a linked folder cannot
        // make the walk loop; linked files are still embedded.
        if entry.file_type()?.is_dir() {
            walk(&path, files)?;
        } else if path.is_file() {
            files.push(path);
        }
    }
    Ok(())
}

/// `www/css/app.css` → `/css/app.css`, with forward slashes on every OS.
fn url_path(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).expect("walked under root");
    let mut url = String::new();
    for part in rel.components() {
        url.push('/');
        url.push_str(
            part.as_os_str()
                .to_str()
                .expect("www/ file name is not UTF-8"),
        );
    }
    url
}
