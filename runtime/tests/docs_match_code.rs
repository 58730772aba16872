//! The docs name `hull` commands, `/etc/hull/config.toml` keys and test files; this keeps them
//! true. Every `hull <command>` written in code in the README or `docs/` must be a command the
//! `hull` binary has, the key table in `docs/shim.md` must list exactly the keys the
//! configuration accepts, every `tests/tests/…` file the docs name must exist, and
//! `tests/README.md` must name every file of the test crate, each test file a `[[test]]` of
//! `tests/Cargo.toml` (autotests does not look into `tests/tests/vm/` and `tests/tests/e2e/`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use hull_runtime::shim::config::{ConfigError, HullConfig};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The markdown files users read: the README and everything under `docs/`.
fn docs() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    for e in std::fs::read_dir(repo().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
    files.sort();
    files
}

/// The text written as code in a markdown file: inline code spans, and the lines of fenced
/// blocks that are commands (`hull …` or `$ hull …` at the start: a block may also quote a
/// message that has the word in it).
fn code_text(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            let command = line.trim_start().trim_start_matches("$ ");
            if command.starts_with("hull ") {
                out.push(command.to_owned());
            }
            continue;
        }
        // Inline spans: the odd-numbered pieces between backticks.
        out.extend(line.split('`').skip(1).step_by(2).map(str::to_owned));
    }
    out
}

/// `hull <word>` in code, where `hull` is the command itself (not a path ending in it).
fn hull_commands(code: &str) -> Vec<String> {
    let words: Vec<&str> = code.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "hull")
        .map(|w| w[1])
        .filter(|w| w.starts_with(|c: char| c.is_ascii_lowercase()))
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_owned()
        })
        .collect()
}

#[test]
fn every_hull_command_the_docs_name_exists() {
    let mut named = BTreeSet::new();
    for file in docs() {
        let text = std::fs::read_to_string(&file).unwrap();
        for code in code_text(&text) {
            for cmd in hull_commands(&code) {
                named.insert((
                    cmd,
                    file.file_name().unwrap().to_string_lossy().into_owned(),
                ));
            }
        }
    }
    assert!(
        named.iter().any(|(c, _)| c == "check"),
        "the scan found no `hull check` at all: {named:?}"
    );
    let hull = env!("CARGO_BIN_EXE_hull");
    let missing: Vec<_> = named
        .iter()
        .filter(|(cmd, _)| {
            let out = Command::new(hull).args(["help", cmd]).output().unwrap();
            !out.status.success()
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the docs name hull commands the binary lacks (command, file): {missing:?}"
    );
}

/// The keys the configuration accepts, from serde's own list: an unknown key's error names them.
fn config_keys() -> BTreeSet<String> {
    let err = HullConfig::parse(Path::new("config.toml"), "no_such_key_for_this_test = 1")
        .expect_err("an unknown key is refused");
    let ConfigError::Parse { message, .. } = err else {
        panic!("not a parse error: {err}");
    };
    let expected = message
        .split("expected one of")
        .nth(1)
        .unwrap_or_else(|| panic!("no key list in {message:?}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The keys in `docs/shim.md`'s table (first column, after the `| key | default | what |` head).
fn documented_keys() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("docs/shim.md")).unwrap();
    let table = text
        .split("| key | default | what |")
        .nth(1)
        .expect("docs/shim.md has the key table");
    table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .flat_map(|row| {
            let first = row.split('|').nth(1).unwrap_or_default().to_owned();
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_config_key_table_lists_exactly_the_keys_hull_reads() {
    let code = config_keys();
    assert!(code.contains("hypervisor") && code.len() > 10, "{code:?}");
    let docs = documented_keys();
    let undocumented: Vec<_> = code.difference(&docs).collect();
    let unknown: Vec<_> = docs.difference(&code).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "docs/shim.md's key table is out of date: keys hull reads but the table lacks: \
         {undocumented:?}; keys the table names that hull does not read: {unknown:?}"
    );
}

#[test]
fn the_scanners_see_what_they_should() {
    assert_eq!(
        code_text(
            "run `hull check` or `hull boot --vcpus 2`\n```\n$ hull version\nso hull sizes it\n```\n"
        ),
        ["hull check", "hull boot --vcpus 2", "hull version"]
    );
    assert_eq!(hull_commands("sudo hull check --config x"), ["check"]);
    assert!(hull_commands("/usr/local/bin/hull run").is_empty());
    assert!(hull_commands("hull-vmm --check").is_empty());
}

/// The `.rs` files directly in `dir` of the test crate (`tests/`), by name.
fn rust_files(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("tests").join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rs"))
        .collect();
    names.sort();
    names
}

#[test]
fn the_test_crate_lists_and_builds_every_test_file() {
    let readme = std::fs::read_to_string(repo().join("tests/README.md")).unwrap();
    let manifest = std::fs::read_to_string(repo().join("tests/Cargo.toml")).unwrap();
    for folder in ["vm", "e2e"] {
        let files = rust_files(&format!("tests/{folder}"));
        assert!(!files.is_empty(), "tests/tests/{folder} is empty");
        for file in files {
            assert!(
                readme.contains(&format!("| `{file}` |")),
                "tests/README.md does not list tests/{folder}/{file}"
            );
            let stem = file.trim_end_matches(".rs");
            let entry = format!("name = \"{stem}\"\npath = \"tests/{folder}/{file}\"");
            assert!(
                manifest.contains(&entry),
                "tests/Cargo.toml has no [[test]] {stem} at tests/{folder}/{file}: it would not be built"
            );
        }
    }
    let loose = rust_files("tests");
    assert!(
        loose.is_empty(),
        "{loose:?} in tests/tests/ belong in vm/ or e2e/ (see tests/README.md)"
    );
    for file in rust_files("src") {
        assert!(
            readme.contains(&format!("`{file}`")),
            "tests/README.md does not list tests/src/{file}"
        );
    }
}

#[test]
fn every_test_file_the_docs_name_exists() {
    for doc in docs() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for (at, _) in text.match_indices("tests/tests/") {
            let path: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/_.".contains(*c))
                .collect();
            let Some(path) = path.strip_suffix(".rs").map(|p| format!("{p}.rs")) else {
                continue; // a pattern such as `shim_{run,task}.rs` or `cri_*.rs`
            };
            assert!(
                repo().join(&path).is_file(),
                "{} names {path}, which does not exist",
                doc.display()
            );
        }
    }
}
