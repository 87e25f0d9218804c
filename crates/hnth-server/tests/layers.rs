//! The layers of `hnth-server` (ARCHITECTURE.md), checked on the source as rust-analyzer's
//! `tidy` tests do: arrows go one way (web → services → store; live → services, store), only
//! the store writes SQL, the store knows no HTTP, templates or WebSocket.
//!
//! Files that still break a rule while the move goes on are named in `NOT_YET`: each must
//! still break it (so the list only shrinks), and no other file may.

use std::path::{Path, PathBuf};

/// (file, rule) pairs not yet moved to their layer. Remove a line when its file is clean.
const NOT_YET: &[(&str, Rule)] = &[];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// No `sqlx` outside `store/`: only the store writes SQL.
    SqlOnlyInStore,
    /// The store knows no HTTP, templates, WebSocket, nor the layers above it.
    StoreKnowsNoHttp,
    /// Services know no HTTP and no templates, and nothing of `web` or `live`.
    ServicesBelowWeb,
    /// The live layer (signaling, media) does not reach into `web`.
    LiveBelowWeb,
}

fn broken(rule: Rule, file: &str, src: &str) -> Option<String> {
    // A file's own tests may set up their fixtures with SQL: the rules are for the product's
    // code, which comes before its `#[cfg(test)]` module.
    let product = src.split("\n#[cfg(test)]").next().unwrap_or(src);
    let code: String = product
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let any = |needles: &[&str]| {
        needles
            .iter()
            .find(|n| code.contains(*n))
            .map(|n| format!("{file} names `{n}`"))
    };
    match rule {
        Rule::SqlOnlyInStore if !file.starts_with("store/") => any(&["sqlx"]),
        Rule::StoreKnowsNoHttp if file.starts_with("store/") => any(&[
            "axum",
            "minijinja",
            "WebSocket",
            "crate::web",
            "crate::live",
            "crate::services",
        ]),
        Rule::ServicesBelowWeb if file.starts_with("services/") => {
            any(&["axum", "minijinja", "crate::web", "crate::live"])
        }
        Rule::LiveBelowWeb if file.starts_with("live/") => any(&["crate::web"]),
        _ => None,
    }
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn layers_hold() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() > 20, "found only {files:?}");
    let rules = [
        Rule::SqlOnlyInStore,
        Rule::StoreKnowsNoHttp,
        Rule::ServicesBelowWeb,
        Rule::LiveBelowWeb,
    ];
    let mut wrong = Vec::new();
    for path in &files {
        let file = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let src = std::fs::read_to_string(path).unwrap();
        for rule in rules {
            let listed = NOT_YET.contains(&(file.as_str(), rule));
            match (broken(rule, &file, &src), listed) {
                (Some(why), false) => wrong.push(format!("{rule:?}: {why}")),
                (None, true) => wrong.push(format!(
                    "{rule:?}: {file} is clean now; remove it from NOT_YET"
                )),
                _ => {}
            }
        }
    }
    for (file, _) in NOT_YET {
        assert!(
            root.join(file).exists(),
            "NOT_YET names {file}, which is gone"
        );
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_checks_catch_what_they_name() {
    assert!(broken(
        Rule::SqlOnlyInStore,
        "web/x.rs",
        "sqlx::query(\"SELECT 1\")"
    )
    .is_some());
    assert!(broken(
        Rule::SqlOnlyInStore,
        "store/x.rs",
        "sqlx::query(\"SELECT 1\")"
    )
    .is_none());
    assert!(broken(Rule::SqlOnlyInStore, "web/x.rs", "// sqlx in a comment").is_none());
    let with_tests = "fn f() {}\n#[cfg(test)]\nmod tests { fn g() { sqlx::query(\"\"); } }";
    assert!(broken(Rule::SqlOnlyInStore, "web/x.rs", with_tests).is_none());
    assert!(broken(Rule::StoreKnowsNoHttp, "store/x.rs", "use axum::Json;").is_some());
    assert!(broken(
        Rule::StoreKnowsNoHttp,
        "store/x.rs",
        "use crate::web::Lang;"
    )
    .is_some());
    assert!(broken(
        Rule::ServicesBelowWeb,
        "services/x.rs",
        "use crate::web::page;"
    )
    .is_some());
    assert!(broken(Rule::LiveBelowWeb, "live/x.rs", "crate::web::auth::Account").is_some());
    assert!(broken(Rule::LiveBelowWeb, "web/x.rs", "crate::web::auth::Account").is_none());
}

/// ARCHITECTURE.md's code map matches the tree: every source file of a layer is named in that
/// layer's paragraph (`name.rs`, or `api/audit.rs` below `web/`), every file at the top of
/// `src/` somewhere in the map, and every file a layer's paragraph names exists.
#[test]
fn the_architecture_map_names_every_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ARCHITECTURE.md"),
    )
    .expect("ARCHITECTURE.md at the workspace root");
    let mut wrong = Vec::new();
    for layer in ["store", "services", "web", "live"] {
        let marker = format!("**`{layer}/`**");
        let Some(start) = doc.find(&marker) else {
            wrong.push(format!("no paragraph {marker}"));
            continue;
        };
        let rest = &doc[start..];
        // Up to the next bullet, of this list or of the one above it.
        let end = ["\n  - ", "\n- ", "\n  **"]
            .iter()
            .filter_map(|m| rest[1..].find(m))
            .min()
            .map_or(rest.len(), |i| i + 1);
        let para = &rest[..end];
        let mut files = Vec::new();
        sources(&root.join(layer), &mut files);
        let mut names = Vec::new();
        for path in files {
            let name = path
                .strip_prefix(root.join(layer))
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if name != "mod.rs" && !para.contains(&format!("`{name}`")) {
                wrong.push(format!("{layer}/{name} is not in the {layer}/ paragraph"));
            }
            names.push(name);
        }
        for named in para.split('`').skip(1).step_by(2) {
            if named.ends_with(".rs") && !names.iter().any(|n| n == named) {
                wrong.push(format!(
                    "the {layer}/ paragraph names {named}, which {layer}/ lacks"
                ));
            }
        }
    }
    for e in std::fs::read_dir(&root).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_file() && name.ends_with(".rs") && !doc.contains(&format!("`{name}`")) {
            wrong.push(format!("{name} is not in ARCHITECTURE.md"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
