//! The layering check (README, "Layout"): imports point down only, the two front ends never
//! import each other, and no two sibling modules import each other, directly or round a longer
//! circle. It reads every `crate::` and `super::` path in `src/` (test modules, which sit at the
//! end of a file after `#[cfg(test)]`, and comments are left out) and resolves each to the module
//! file it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules from the bottom up; a module may import only from a lower rank. Modules
/// of one rank are peers and may not import each other either.
const LAYERS: &[(usize, &[&str])] = &[
    (0, &["files", "prompt", "sampler"]),
    (1, &["text", "chat"]),
    (2, &["kernels"]),
    (3, &["model"]),
    (4, &["hub", "remote", "train"]),
    (5, &["engine"]),
    (6, &["run"]),
    (7, &["cli", "tui"]),
    (8, &["entry"]),
];

type Module = Vec<String>;

fn rank(top: &str) -> Option<usize> {
    LAYERS
        .iter()
        .find(|(_, names)| names.contains(&top))
        .map(|(rank, _)| *rank)
}

/// `src/a/b.rs` is module `a::b`, `src/a/mod.rs` is `a`, `src/lib.rs` the crate root.
fn module_of(relative: &Path) -> Module {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The code of a file that the build of the library sees: comments and the trailing test module
/// dropped.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every path that starts with `crate::` or `super::` in `code`, with `use` groups
/// (`crate::{a::B, c::{D, E}}`) expanded, as lists of segments.
fn paths(code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &bytes[i..];
        if starts_word && (rest.starts_with(b"crate::") || rest.starts_with(b"super::")) {
            let (mut expanded, used) = parse_path(&code[i..]);
            found.append(&mut expanded);
            i += used.max(1);
        } else {
            i += 1;
        }
    }
    found
}

/// Parses one path (possibly ending in a brace group) at the start of `text`; returns the
/// expanded paths and the bytes consumed.
fn parse_path(text: &str) -> (Vec<Vec<String>>, usize) {
    let bytes = text.as_bytes();
    let mut segments = Vec::new();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        if i > start {
            segments.push(text[start..i].to_string());
        }
        let after_space = i + text[i..].len() - text[i..].trim_start().len();
        if text[after_space..].starts_with("::") {
            i = after_space + 2;
            i += text[i..].len() - text[i..].trim_start().len();
            if text[i..].starts_with('{') {
                let (groups, used) = parse_group(&text[i + 1..]);
                let paths = groups
                    .into_iter()
                    .map(|g| segments.iter().cloned().chain(g).collect())
                    .collect();
                return (paths, i + 1 + used);
            }
        } else {
            return (vec![segments], i);
        }
    }
}

/// Parses `a::B, c::{D, E} }` (after the opening brace); returns the entries and the bytes
/// consumed, closing brace included.
fn parse_group(text: &str) -> (Vec<Vec<String>>, usize) {
    let mut entries = Vec::new();
    let mut i = 0;
    loop {
        i += text[i..].len() - text[i..].trim_start().len();
        match text[i..].chars().next() {
            None => return (entries, i),
            Some('}') => return (entries, i + 1),
            Some(',') => i += 1,
            Some(_) => {
                let (mut paths, used) = parse_path(&text[i..]);
                entries.append(&mut paths);
                // Skip `as Name` and anything else up to the next separator.
                i += used.max(1);
                while let Some(c) = text[i..].chars().next() {
                    if c == ',' || c == '}' {
                        break;
                    }
                    i += c.len_utf8();
                }
            }
        }
    }
}

/// The module `path` (written in `from`) names: the longest prefix that is a module.
fn resolve(from: &Module, path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    let mut base: Module = Vec::new();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => rest = &rest[1..],
        Some("super") => {
            base = from.clone();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let mut best = base.clone();
    let mut current = base;
    for segment in rest {
        current.push(segment.clone());
        if modules.contains(&current) {
            best = current.clone();
        }
    }
    Some(best)
}

/// Everything wrong with the import graph of `files` (module, code).
fn violations(files: &[(Module, String)]) -> Vec<String> {
    let modules: BTreeSet<Module> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut problems = BTreeSet::new();
    // Edges between siblings: the children of one parent that import each other.
    let mut siblings: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (from, text) in files {
        for path in paths(&code(text)) {
            let Some(to) = resolve(from, &path, &modules) else {
                continue;
            };
            let shared = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if shared == from.len() || shared == to.len() {
                continue; // a module and its own ancestor or descendant
            }
            let (a, b) = (&from[..=shared], &to[..=shared]);
            siblings.entry(a.to_vec()).or_default().insert(b.to_vec());
            if shared == 0 {
                let (top_from, top_to) = (&from[0], &to[0]);
                match (rank(top_from), rank(top_to)) {
                    (Some(r_from), Some(r_to)) if r_to < r_from => {}
                    (Some(_), Some(_)) => {
                        problems.insert(format!(
                            "{} imports {} ({}): imports must point down a layer",
                            from.join("::"),
                            to.join("::"),
                            path.join("::")
                        ));
                    }
                    _ => {
                        problems.insert(format!(
                            "{} or {} is in no layer: add it to LAYERS in tests/layering.rs",
                            top_from, top_to
                        ));
                    }
                }
            }
        }
    }
    for circle in circles(&siblings) {
        let names: Vec<String> = circle.iter().map(|m| m.join("::")).collect();
        problems.insert(format!("import circle: {}", names.join(" -> ")));
    }
    problems.into_iter().collect()
}

/// Each circle in the graph once, as the modules round it (the first repeated at the end).
fn circles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    fn visit(
        node: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        stack: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
        found: &mut Vec<Vec<Module>>,
    ) {
        if let Some(at) = stack.iter().position(|m| m == node) {
            let mut circle = stack[at..].to_vec();
            circle.push(node.clone());
            found.push(circle);
            return;
        }
        if done.contains(node) {
            return;
        }
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, stack, done, found);
        }
        stack.pop();
        done.insert(node.clone());
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

fn source_files(root: &Path, dir: &Path, out: &mut Vec<(Module, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            source_files(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).unwrap();
            // The binary sits above the library; test-only files are not part of the build.
            if relative == Path::new("main.rs") || path.file_name().is_some_and(|n| n == "tests.rs")
            {
                continue;
            }
            out.push((module_of(relative), std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn imports_point_down_and_never_round_a_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&root, &root, &mut files);
    assert!(files.len() > 40, "found only {} source files", files.len());
    let tops: BTreeSet<&str> = files
        .iter()
        .filter_map(|(m, _)| m.first().map(String::as_str))
        .collect();
    for top in tops {
        assert!(rank(top).is_some(), "src/{top} is in no layer of LAYERS");
    }
    let problems = violations(&files);
    assert!(
        problems.is_empty(),
        "the layering is broken:\n{}",
        problems.join("\n")
    );
}

/// The checker itself finds what it is for: an upward import, a front end importing the other,
/// a circle of siblings, inside `use` groups and through `super::`.
#[test]
fn the_check_reports_upward_imports_front_end_imports_and_circles() {
    let module = |path: &str| -> Module { path.split("::").map(str::to_string).collect() };
    let files = vec![
        (module("sampler"), "use crate::engine::Event;\n".to_string()),
        (
            module("engine"),
            "use crate::{files, sampler::{self, Sampler}};\npub struct Event;\n".to_string(),
        ),
        (module("files"), String::new()),
        (module("cli"), "fn f() { crate::tui::run() }\n".to_string()),
        (module("tui"), "pub fn run() {}\n".to_string()),
        (module("tui::app"), "use super::params::Form;\n".to_string()),
        (
            module("tui::params"),
            "use super::{theme, app::App as A};\n".to_string(),
        ),
        (module("tui::theme"), String::new()),
        // Neither a comment nor a test module counts.
        (
            module("model"),
            "// crate::tui::run\n#[cfg(test)]\nmod tests { use crate::engine::Event; }\n"
                .to_string(),
        ),
    ];
    let problems = violations(&files);
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(has("sampler imports engine"), "{problems:#?}");
    assert!(has("cli imports tui"), "{problems:#?}");
    assert!(
        has("import circle: tui::app -> tui::params -> tui::app"),
        "{problems:#?}"
    );
    assert!(!has("model"), "{problems:#?}");
    assert!(!has("engine imports"), "{problems:#?}");
    assert!(
        has("import circle: engine -> sampler -> engine"),
        "{problems:#?}"
    );
    assert_eq!(problems.len(), 4, "{problems:#?}");
}

/// The playground's rooms (`src/tui/app/`) from the bottom up: the run history's queries, then
/// the rooms that change the app (each on its own), then the mouse, which lands in the editor
/// or the live panel. `mod.rs` (the router) sits above them all.
const ROOMS: &[(usize, &[&str])] = &[
    (0, &["run_view"]),
    (1, &["editing", "live", "picker"]),
    (2, &["mouse"]),
];

/// The rooms import only rooms below them, and the router's state and types above them.
#[test]
fn the_apps_rooms_import_only_down() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&root, &root, &mut files);
    let modules: BTreeSet<Module> = files.iter().map(|(m, _)| m.clone()).collect();
    let room_rank = |name: &str| {
        ROOMS
            .iter()
            .find(|(_, names)| names.contains(&name))
            .map(|(r, _)| *r)
    };
    let app: Module = vec!["tui".into(), "app".into()];
    let mut problems = Vec::new();
    let mut rooms = 0;
    for (from, text) in &files {
        if from.len() != 3 || from[..2] != app[..] {
            continue;
        }
        rooms += 1;
        let Some(mine) = room_rank(&from[2]) else {
            problems.push(format!("src/tui/app/{}.rs is in no rank of ROOMS", from[2]));
            continue;
        };
        for path in paths(&code(text)) {
            let Some(to) = resolve(from, &path, &modules) else {
                continue;
            };
            if to.len() == 3 && to[..2] == app[..] && to != *from {
                match room_rank(&to[2]) {
                    Some(theirs) if theirs < mine => {}
                    _ => problems.push(format!(
                        "{} imports {}: a room imports only rooms below it",
                        from.join("::"),
                        to.join("::")
                    )),
                }
            }
        }
    }
    assert!(rooms >= 5, "found only {rooms} rooms in src/tui/app");
    assert!(problems.is_empty(), "{problems:#?}");
}

/// No file of the playground grows past 700 lines (a test module in a file of its own does not
/// count): a new feature gets a room, not another screen of `app`.
#[test]
fn no_playground_file_is_over_700_lines() {
    fn walk(dir: &Path, out: &mut Vec<(String, usize)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                let lines = std::fs::read_to_string(&path).unwrap().lines().count();
                out.push((path.display().to_string(), lines));
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tui"),
        &mut files,
    );
    let long: Vec<_> = files.iter().filter(|(_, n)| *n > 700).collect();
    assert!(long.is_empty(), "{long:?}");
}

/// Keys are translated once, by the key map: no other file of the playground reads a key code
/// (its tests may, to make events).
#[test]
fn only_the_keymap_reads_key_codes() {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "keymap") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                if code(&text).contains("KeyCode::") {
                    out.push(path.display().to_string());
                }
            }
        }
    }
    let mut readers = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tui"),
        &mut readers,
    );
    assert!(
        readers.is_empty(),
        "key codes read outside the keymap: {readers:?}"
    );
}
