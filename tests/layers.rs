//! The dependency rule of ARCHITECTURE.md, checked: the daemon's folders are stacked in layers,
//! and a file may name (`crate::…`) only its own folder and the layers below it. The control
//! protocol's message and report types may be named only where the wire is spoken; the CLI never
//! names the daemon library.
//!
//! The check reads the sources as text: every `crate::NAME` and every name in a
//! `crate::{…}` group, outside comments and string literals. It is a test, so `cargo test` (and
//! CI) fails the moment a lower layer reaches up.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may import modules of lower rows, and its own module;
/// never another module of its own row (except the pairs in [`SAME_ROW`]) nor a higher row.
const LAYERS: &[&[&str]] = &[
    // 0: the control protocol package and the default paths, re-exported by lib.rs.
    &["protocol", "paths"],
    // 1: pure model, systemd plumbing, leaves.
    &[
        "model", "systemd", "stop", "errors", "eventlog", "demo", "etcd",
    ],
    // 2: templates.
    &["pages"],
    // 3: configuration and the on-disk state.
    &["config", "state"],
    // 4: child processes.
    &["supervisor"],
    // 5: one service's live state, health probes, upstream clients.
    &["upstream"],
    // 6: the operations both front ends call.
    &["app"],
    // 7: the two front ends: the request path and the control socket.
    &["proxy", "control"],
    // 8: kinfrad's own HTTP endpoints.
    &["web"],
    // 9: life cycle.
    &["daemon"],
];

/// Same-row imports that are allowed: (importer, imported).
const SAME_ROW: &[(&str, &str)] = &[
    // The demo configuration's service is a child that speaks sd_notify.
    ("demo", "systemd"),
];

/// The only modules that may name the protocol's messages and reports (`crate::protocol::…`
/// other than `protocol::fmt`): the code that speaks a wire (the control socket, the JSON API,
/// the request path's maintenance answer, which carries the maintenance status view), `app`,
/// which builds the reports, and the model, which builds that status view. The supervisor,
/// the upstreams, the pages, the configuration and the state file never do.
const WIRE: &[&str] = &["model", "app", "proxy", "control", "web", "daemon"];

fn row(module: &str) -> Option<usize> {
    LAYERS.iter().position(|r| r.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments, string literals and char literals, so only code is searched.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'r' && (b[i + 1..].starts_with(b"\"") || b[i + 1..].starts_with(b"#")) {
            // Raw string: r"…", r#"…"#, …
            let mut j = i + 1;
            let mut hashes = 0;
            while j < b.len() && b[j] == b'#' {
                hashes += 1;
                j += 1;
            }
            if j < b.len() && b[j] == b'"' {
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                j += 1;
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = j + close.len();
                out.push_str("\"\"");
            } else {
                out.push('r');
                i += 1;
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('x', '\n', '\''); lifetimes ('a) are left alone.
            let mut j = i + 1;
            if b[j] == b'\\' {
                j += 2;
            } else {
                j += 1;
            }
            while j < b.len() && b[j] != b'\'' {
                j += 1;
            }
            i = j + 1;
            out.push_str("' '");
        } else {
            let ch = src[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Every path named after `crate::`, as its segments (`crate::a::b::{c, d}` gives `a::b`), with
/// groups (`crate::{a::x, b}`) expanded one level.
fn crate_paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `kinfra_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut end = 0;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = k;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain(std::iter::once(',')) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let p = path_at(item.trim());
                        if !p.is_empty() {
                            found.push(p);
                        }
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            found.push(path_at(rest));
        }
    }
    found
}

/// The `a::b::c` path at the start of `s` (identifiers joined by `::`).
fn path_at(s: &str) -> String {
    let end = s
        .char_indices()
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .map_or(s.len(), |(k, _)| k);
    s[..end].trim_end_matches(':').to_string()
}

/// The top-level module a file under `src/` belongs to (`src/proxy/h1/buf.rs` → `proxy`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    if first == "lib.rs" || first == "bin" {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_string())
}

fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for file in &files {
        let Some(module) = module_of(src, file) else {
            continue;
        };
        let rel = file
            .strip_prefix(src.parent().unwrap_or(src))
            .unwrap_or(file)
            .display()
            .to_string();
        let Some(own) = row(&module) else {
            bad.push(format!(
                "{rel}: module `{module}` is in no layer of tests/layers.rs"
            ));
            continue;
        };
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("read {rel}: {e}"));
        let mut seen = BTreeSet::new();
        for path in crate_paths(&code_only(&text)) {
            if !seen.insert(path.clone()) {
                continue;
            }
            let target = path.split("::").next().unwrap_or_default();
            if target == module || target.is_empty() {
                continue;
            }
            let Some(theirs) = row(target) else {
                bad.push(format!("{rel}: `crate::{path}`: `{target}` is in no layer"));
                continue;
            };
            let same_ok = SAME_ROW.contains(&(module.as_str(), target));
            if theirs > own || (theirs == own && !same_ok) {
                bad.push(format!(
                    "{rel}: `crate::{path}`: `{module}` (layer {own}) may not import `{target}` (layer {theirs})"
                ));
            }
            if target == "protocol"
                && !path.starts_with("protocol::fmt")
                && !WIRE.contains(&module.as_str())
            {
                bad.push(format!(
                    "{rel}: `crate::{path}`: only {WIRE:?} name the control protocol's types"
                ));
            }
        }
    }
    bad
}

#[test]
fn lower_layers_never_import_higher_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = violations(&src);
    assert!(
        bad.is_empty(),
        "the layer rule is broken:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_cli_never_names_the_daemon_library() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("kinfractl"), &mut files);
    rust_files(&root.join("proto"), &mut files);
    assert!(!files.is_empty());
    for file in files {
        let text =
            fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        let code = code_only(&text);
        let named = code.split("kinfra::").count() > 1;
        assert!(
            !named,
            "{} names `kinfra::`, the daemon library",
            file.display()
        );
    }
}

/// The checker itself: it must see what it is meant to see, and nothing in comments or strings.
#[test]
fn the_checker_reads_paths_groups_and_skips_comments_and_strings() {
    let code = code_only(
        "use crate::app::App; // crate::web\n/* crate::daemon */ let s = \"crate::web\";\n\
         let r = r#\"crate::web\"#; let c = '\"'; use crate::{model::Step, pages, proxy::{a, b}};\n\
         fn f<'a>(_: &'a crate::config::Config) {}",
    );
    assert_eq!(
        crate_paths(&code),
        [
            "app::App",
            "model::Step",
            "pages",
            "proxy",
            "config::Config"
        ]
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("model")).expect("mkdir");
    fs::create_dir_all(src.join("app")).expect("mkdir");
    fs::write(
        src.join("model/mod.rs"),
        "use crate::app::App;\nuse crate::protocol::Request;\n",
    )
    .expect("write");
    fs::write(
        src.join("app/mod.rs"),
        "use crate::model::Step; use crate::app::x;\n",
    )
    .expect("write");
    fs::write(
        src.join("stop.rs"),
        "use crate::protocol::fmt::iso; use crate::protocol::Request;\n",
    )
    .expect("write");
    fs::write(src.join("odd.rs"), "").expect("write");
    let bad = violations(&src);
    assert_eq!(bad.len(), 3, "{bad:#?}");
    assert!(
        bad[0].contains("`model` (layer 1) may not import `app` (layer 6)"),
        "{bad:#?}"
    );
    assert!(bad[1].contains("module `odd` is in no layer"), "{bad:#?}");
    assert!(
        bad[2].contains("crate::protocol::Request") && bad[2].contains("only"),
        "{bad:#?}"
    );
}
