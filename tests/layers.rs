//! The crate's layers, checked: every top-level module imports only from layers below its own, and files
//! of one folder never import each other in a circle. The table below is the drawing in
//! docs/architecture.md; a new module gets a row here (and a line there) or this test fails.
//!
//! Imports are read as text, the way a reader sees them: `crate::a::b` paths and `super::x` paths outside
//! comments and outside the `#[cfg(test)] mod tests` block at the end of a file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer, from the bottom (0) to the top.
const LAYERS: &[(&str, u8)] = &[
    ("config", 0),
    ("errors", 1),
    ("metrics", 1),
    ("logging", 1),
    ("trace", 1),
    ("session", 2),
    ("exchange", 2),
    ("limits", 2),
    ("keys", 2),
    ("access_log", 2),
    ("resource", 2),
    ("scopes", 2),
    ("tokens", 3),
    ("ib", 3),
    ("audit", 3),
    ("store", 4),
    ("cimd", 4),
    ("auth", 5),
    ("settings", 6),
    ("state", 7),
    ("oauth", 8),
    ("mock", 8),
    ("gateway", 9),
    ("server", 10),
];

type ModulePath = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → `[a, b]`; `src/a/mod.rs` → `[a]`; `src/lib.rs` and `src/main.rs` → `[]`.
fn module_path(src: &Path, file: &Path) -> ModulePath {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: ModulePath = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// The code of a file without its unit tests and without comments.
fn code(text: &str) -> String {
    let text = text.split("\n#[cfg(test)]\nmod tests").next().unwrap_or_default();
    text.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Every `prefix::a::b::c` path in `code` (after `prefix`, as identifiers), not preceded by `::` or an ident.
fn paths_after(code: &str, prefix: &str) -> Vec<ModulePath> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find(prefix).map(|i| i + from) {
        from = at + prefix.len();
        if at > 0 && (is_ident(bytes[at - 1]) || bytes[at - 1] == b':') {
            continue;
        }
        let mut parts = Vec::new();
        let mut i = from;
        loop {
            let start = i;
            while i < bytes.len() && is_ident(bytes[i]) {
                i += 1;
            }
            if i == start {
                break;
            }
            parts.push(code[start..i].to_string());
            if code[i..].starts_with("::") {
                i += 2;
            } else {
                break;
            }
        }
        // `use crate::{a, b::c}` groups: each member is a path of its own.
        if code[i..].starts_with('{') {
            let group = &code[i + 1..i + code[i..].find('}').unwrap_or(1)];
            for member in group.split(',') {
                let mut path = parts.clone();
                path.extend(member.split("::").map(|p| p.trim().to_string()).filter(|p| !p.is_empty()));
                found.push(path);
            }
        }
        found.push(parts);
    }
    found
}

/// Import edges between modules: (importer, imported), each resolved to the longest known module path.
fn edges() -> BTreeSet<(ModulePath, ModulePath)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<ModulePath, PathBuf> = files.iter().map(|f| (module_path(&src, f), f.clone())).collect();
    let resolve = |path: &[String]| -> Option<ModulePath> {
        (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|candidate| modules.contains_key(candidate))
    };
    let mut edges = BTreeSet::new();
    for (module, file) in &modules {
        if module.is_empty() {
            continue;
        }
        let code = code(&std::fs::read_to_string(file).unwrap());
        let mut targets = paths_after(&code, "crate::");
        for path in paths_after(&code, "super::") {
            let mut absolute = module[..module.len().saturating_sub(1)].to_vec();
            absolute.extend(path);
            targets.push(absolute);
        }
        for target in targets {
            if let Some(target) = resolve(&target) {
                if &target != module && !module.starts_with(&target) {
                    edges.insert((module.clone(), target));
                }
            }
        }
    }
    edges
}

#[test]
fn every_module_imports_only_from_layers_below_it() {
    let layer = |name: &str| LAYERS.iter().find(|(m, _)| *m == name).map(|(_, l)| *l);
    let mut wrong = Vec::new();
    for (from, to) in edges() {
        let (Some(a), Some(b)) = (from.first(), to.first()) else { continue };
        if a == b {
            continue;
        }
        match (layer(a), layer(b)) {
            (Some(la), Some(lb)) if la > lb => {}
            (Some(la), Some(lb)) => {
                wrong.push(format!("{} (layer {la}) imports {} (layer {lb})", from.join("::"), to.join("::")))
            }
            _ => wrong.push(format!("{a} or {b} is missing from LAYERS in tests/layers.rs")),
        }
    }
    assert!(wrong.is_empty(), "imports that go up or sideways:\n{}", wrong.join("\n"));
}

/// The gateway's rooms, by the order of a request's phases (docs/architecture.md): a room imports only rooms
/// below it, and the hall (`gateway/mod.rs`) holds the hooks that call them.
const GATEWAY_ROOMS: &[(&str, u8)] =
    &[("route", 0), ("upstream", 1), ("context", 1), ("edge", 2), ("decide", 2), ("respond", 3), ("telemetry", 3)];

#[test]
fn the_gateways_rooms_import_only_rooms_below_them() {
    let room = |path: &ModulePath| -> Option<(String, u8)> {
        let name = path.get(1)?;
        (path.first()? == "gateway").then_some(())?;
        GATEWAY_ROOMS.iter().find(|(room, _)| room == name).map(|(room, rank)| (room.to_string(), *rank))
    };
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gateway");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        assert!(
            name == "mod" || GATEWAY_ROOMS.iter().any(|(room, _)| *room == name),
            "src/gateway/{name}.rs is missing from GATEWAY_ROOMS in tests/layers.rs"
        );
    }
    let mut wrong = Vec::new();
    for (from, to) in edges() {
        if let (Some((a, rank_a)), Some((b, rank_b))) = (room(&from), room(&to)) {
            if a != b && rank_a <= rank_b {
                wrong.push(format!("gateway::{a} (room {rank_a}) imports gateway::{b} (room {rank_b})"));
            }
        }
    }
    assert!(wrong.is_empty(), "gateway rooms importing sideways or up:\n{}", wrong.join("\n"));
}

#[test]
fn files_of_one_folder_never_import_each_other_in_a_circle() {
    let mut graph: BTreeMap<ModulePath, BTreeSet<ModulePath>> = BTreeMap::new();
    for (from, to) in edges() {
        if from.len() >= 2 && from.len() == to.len() && from[..from.len() - 1] == to[..to.len() - 1] {
            graph.entry(from).or_default().insert(to);
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        node: &ModulePath,
        graph: &BTreeMap<ModulePath, BTreeSet<ModulePath>>,
        stack: &mut Vec<ModulePath>,
        done: &mut BTreeSet<ModulePath>,
    ) -> Option<Vec<ModulePath>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            return Some(stack[at..].to_vec());
        }
        if !done.insert(node.clone()) {
            return None;
        }
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            panic!("import cycle between sibling files: {}", names.join(" -> "));
        }
    }
}

#[test]
fn the_reader_finds_imports_the_way_they_are_written() {
    let code = code("use crate::{config::Config, errors};\n// crate::commented\nlet x = crate::store::now();\n");
    let paths = paths_after(&code, "crate::");
    assert!(paths.contains(&vec!["config".to_string(), "Config".to_string()]), "{paths:?}");
    assert!(paths.contains(&vec!["errors".to_string()]), "{paths:?}");
    assert!(paths.contains(&vec!["store".to_string(), "now".to_string()]), "{paths:?}");
    assert!(!paths.iter().any(|p| p.first().is_some_and(|m| m == "commented")), "{paths:?}");
}
