//! Every citation of the docs resolves: `docs/protocol.md §N.N` and `docs/protocol.md fact N`
//! name a section heading and a numbered fact (§7) that exist, `docs/design.md §N` a section that
//! exists, and no file cites the old copies that lived outside the repository.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Files other branches are rewriting while this test was written: their old citations are
/// allowed until `scripts/fix-citations.sh` has been run over them after the merge. Empty it then.
const NOT_YET_REWRITTEN: &[&str] = &[];

/// Files that name the old copies on purpose: the rewrite script and this test.
const NAMES_THE_OLD_COPIES: &[&str] = &[
    "scripts/fix-citations.sh",
    "crates/redeploy/tests/it/docs.rs",
];

/// What a doc offers to cite: its numbered section headings and, for the protocol notes, the
/// numbered facts of §7.
#[derive(Debug, Default)]
struct Citable {
    sections: BTreeSet<String>,
    facts: BTreeSet<u32>,
}

/// The section numbers of `## N. Title` and `### N.N Title` headings, and the items `N. ` of the
/// list under the heading numbered `facts_in` (if any).
fn citable(text: &str, facts_in: Option<&str>) -> Citable {
    let mut out = Citable::default();
    let mut in_facts = false;
    for line in text.lines() {
        if let Some(heading) = line
            .strip_prefix("## ")
            .or_else(|| line.strip_prefix("### "))
        {
            let number = heading.split_whitespace().next().unwrap_or("");
            let number = number.trim_end_matches('.');
            let numeric = !number.is_empty()
                && number
                    .split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if numeric {
                out.sections.insert(number.to_owned());
            }
            in_facts = numeric && Some(number) == facts_in;
            continue;
        }
        if in_facts {
            if let Some((n, _)) = line.split_once(". ") {
                if let Ok(n) = n.parse() {
                    out.facts.insert(n);
                }
            }
        }
    }
    out
}

/// `N` or `N.N` at the start of `s`, and the rest.
fn section_number(s: &str) -> Option<(&str, &str)> {
    let end = s
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_digit()
                || (c == '.' && s[i + 1..].starts_with(|d: char| d.is_ascii_digit())))
        })
        .map_or(s.len(), |(i, _)| i);
    (end > 0).then_some((&s[..end], &s[end..]))
}

/// One thing a citation points at.
#[derive(Debug, PartialEq)]
enum Target {
    Section(String),
    Fact(u32),
}

/// The sections and facts cited right after a doc's name: `§1.7, §8`, `§2.2–2.4` (both ends),
/// `§7 fact 6`, `§2.5 / fact 8`, `fact 9`. Stops at the first thing that is none of these.
fn cited_targets(mut rest: &str) -> Vec<Target> {
    let mut out = Vec::new();
    loop {
        let trimmed = rest.trim_start_matches([' ', ',', '/']);
        if let Some(after) = trimmed.strip_prefix('§') {
            let Some((n, after)) = section_number(after) else {
                break;
            };
            out.push(Target::Section(n.to_owned()));
            rest = after;
            if let Some(after) = rest.strip_prefix('–').or_else(|| rest.strip_prefix('-')) {
                if let Some((m, after)) = section_number(after) {
                    out.push(Target::Section(m.to_owned()));
                    rest = after;
                }
            }
        } else if let Some(after) = trimmed.strip_prefix("fact ") {
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let Ok(n) = after[..digits].parse() else {
                break;
            };
            out.push(Target::Fact(n));
            rest = &after[digits..];
        } else {
            break;
        }
    }
    out
}

/// 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The problems in one file's `text`: citations of `docs/protocol.md` / `docs/design.md` that
/// name a missing section or fact and, unless `old_names_allowed`, mentions of the old copies
/// (`protocol.md` without `docs/`, `DESIGN.md`).
fn problems(
    path: &str,
    text: &str,
    protocol: &Citable,
    design: &Citable,
    old_names_allowed: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for (doc, citable) in [("docs/protocol.md", protocol), ("docs/design.md", design)] {
        for (at, _) in text.match_indices(doc) {
            for target in cited_targets(&text[at + doc.len()..]) {
                let ok = match &target {
                    Target::Section(n) => citable.sections.contains(n),
                    Target::Fact(n) => citable.facts.contains(n),
                };
                if !ok {
                    out.push(format!(
                        "{path}:{}: {doc} has no {target:?}",
                        line_of(text, at)
                    ));
                }
            }
        }
    }
    if old_names_allowed {
        return out;
    }
    for (at, _) in text.match_indices("protocol.md") {
        let before = &text[..at];
        let joined = before
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if joined || (before.ends_with('/') && before.ends_with("docs/")) {
            continue;
        }
        out.push(format!(
            "{path}:{}: cites protocol.md outside the repository (run scripts/fix-citations.sh)",
            line_of(text, at)
        ));
    }
    for (at, _) in text.match_indices("DESIGN.md") {
        out.push(format!(
            "{path}:{}: cites DESIGN.md outside the repository (run scripts/fix-citations.sh)",
            line_of(text, at)
        ));
    }
    out
}

/// The repository's `.rs`, `.md` and `.sh` files, as paths relative to `root`; build output,
/// VCS data and installed packages are skipped.
fn sources(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(root.join(&dir)).expect("read a repository folder") {
            let entry = entry.expect("a folder entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = dir.join(&name);
            let kind = entry.file_type().expect("a file type");
            if kind.is_dir() {
                if name != ".git" && name != "target" && name != "node_modules" {
                    dirs.push(rel);
                }
            } else if [".rs", ".md", ".sh"].iter().any(|ext| name.ends_with(ext)) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

#[test]
fn every_citation_of_the_docs_resolves() {
    let root = repository_root();
    let protocol = citable(&read(&root, "docs/protocol.md"), Some("7"));
    let design = citable(&read(&root, "docs/design.md"), None);
    // The parse itself: a wrong heading format would make every citation fail, or none.
    assert!(protocol.sections.contains("1.9") && protocol.sections.contains("8"));
    assert_eq!(protocol.facts, (1..=10).collect());
    assert!(design.sections.contains("7"));

    let files = sources(&root);
    assert!(files
        .iter()
        .any(|f| f == "crates/core/src/action/advance.rs"));
    let mut found = Vec::new();
    for path in &files {
        if NAMES_THE_OLD_COPIES.contains(&path.as_str()) {
            continue;
        }
        let allowed = NOT_YET_REWRITTEN.iter().any(|p| path.starts_with(p));
        found.extend(problems(
            path,
            &read(&root, path),
            &protocol,
            &design,
            allowed,
        ));
    }
    assert!(
        found.is_empty(),
        "citations that do not resolve:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_citation_of_a_missing_section_or_fact_or_an_old_copy_is_reported() {
    let protocol = citable(
        "## 1. One\n### 1.2 Two\n## 7. Facts\n1. first\n2. second\n## 8. Open\n3. not a fact\n",
        Some("7"),
    );
    let design = citable("## 4. Lifecycle\n", None);
    assert_eq!(protocol.facts, BTreeSet::from([1, 2]));

    let fine = "// (docs/protocol.md §1.2, §7 fact 2; docs/design.md §4 \"Lifecycle\")\n\
                // docs/protocol.md §1–1.2 / fact 1; ITPRO oma-dm-protocol-support.md\n";
    assert_eq!(
        problems("a.rs", fine, &protocol, &design, false),
        Vec::<String>::new()
    );

    let broken = "// (docs/protocol.md §1.3)\n// docs/protocol.md §7 fact 3\n\
                  // docs/design.md §5\n// (protocol.md §1.2)\n// ../shared/DESIGN.md\n";
    let found = problems("b.rs", broken, &protocol, &design, false);
    assert_eq!(found.len(), 5, "{found:#?}");
    assert!(found[0].starts_with("b.rs:1: docs/protocol.md has no Section(\"1.3\")"));
    assert!(found[1].starts_with("b.rs:2: docs/protocol.md has no Fact(3)"));
    assert!(found[2].starts_with("b.rs:3: docs/design.md has no Section(\"5\")"));
    assert!(found[3].starts_with("b.rs:4: cites protocol.md"));
    assert!(found[4].starts_with("b.rs:5: cites DESIGN.md"));
    // A file still waiting for the rewrite keeps its old names, not its broken numbers.
    assert_eq!(problems("b.rs", broken, &protocol, &design, true).len(), 3);
}
