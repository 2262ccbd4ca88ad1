//! The module layering ARCHITECTURE.md promises, checked on the source: inside the server and
//! the binary, no two top-level modules depend on each other through a cycle (a module "uses"
//! another when its files name `crate::<other>`). Comments are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules its files name as `crate::<module>`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.to_path_buf()];
    let mut rust_files: Vec<PathBuf> = Vec::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                files.push(entry.unwrap().path());
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            rust_files.push(path);
        }
    }
    for file in rust_files {
        let relative = file.strip_prefix(src).unwrap();
        let first = relative.components().next().unwrap();
        let top = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let uses = graph.entry(top.clone()).or_default();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or_default();
            for (i, _) in code.match_indices("crate::") {
                let name: String = code[i + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                if !name.is_empty() && name != top {
                    uses.insert(name);
                }
            }
        }
    }
    let known: BTreeSet<String> = graph.keys().cloned().collect();
    for uses in graph.values_mut() {
        uses.retain(|m| known.contains(m));
    }
    graph
}

/// Every pair of modules that reach each other (a cycle), as "a -> b -> … -> a" paths.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut found = Vec::new();
    for start in graph.keys() {
        // Breadth-first from `start`, remembering the way back, until `start` is reached again.
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue: Vec<&str> = vec![start.as_str()];
        let mut at = 0;
        let mut closed = None;
        while at < queue.len() && closed.is_none() {
            let m = queue[at];
            at += 1;
            for next in &graph[m] {
                if next == start {
                    closed = Some(m);
                    break;
                }
                if !came_from.contains_key(next.as_str()) {
                    came_from.insert(next.as_str(), m);
                    queue.push(next.as_str());
                }
            }
        }
        if let Some(mut m) = closed {
            let mut back = Vec::new();
            while m != start.as_str() {
                back.push(m);
                m = came_from[m];
            }
            back.reverse();
            let mut path = vec![start.as_str()];
            path.extend(back);
            path.push(start.as_str());
            found.push(path.join(" -> "));
        }
    }
    found
}

fn crate_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
        .join("src")
}

#[test]
fn the_server_and_the_binary_have_no_module_cycles() {
    for name in ["server", "redeploy"] {
        let graph = module_graph(&crate_src(name));
        assert!(graph.len() > 3, "{name}: modules not found");
        let found = cycles(&graph);
        assert!(
            found.is_empty(),
            "module cycles in crates/{name}: {found:#?}"
        );
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    let found = cycles(&graph);
    assert!(found.contains(&"a -> b -> c -> a".to_owned()), "{found:?}");
    assert!(!found.iter().any(|c| c.starts_with('d')), "{found:?}");
}
