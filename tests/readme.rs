//! The README's Quick start compiles when pasted into a new project: each `toml` block of the
//! section, with the `rust` block after it as `src/main.rs`, is a cargo project that
//! `cargo check --offline` must accept (tls-fallback taken by path from this checkout, the
//! versions from this checkout's `Cargo.lock`). A cheap check runs first: every crate the
//! snippet names appears in its block, with the features it needs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// (dependency block, program) pairs of the README's "Quick start" section.
fn quick_start_projects(readme: &str) -> Vec<(String, String)> {
    let start = readme
        .find("## Quick start")
        .expect("a Quick start section");
    let section = &readme[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let mut blocks = Vec::new();
    let mut lines = section[..end].lines();
    while let Some(line) = lines.next() {
        let Some(lang) = line.strip_prefix("```") else {
            continue;
        };
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        blocks.push((lang.to_string(), body.join("\n") + "\n"));
    }
    let mut projects = Vec::new();
    for pair in blocks.windows(2) {
        if pair[0].0 == "toml" && pair[1].0.starts_with("rust") {
            projects.push((pair[0].1.clone(), pair[1].1.clone()));
        }
    }
    projects
}

/// Crates a program names: `use x::`, `x::` paths and `#[x::...]` attributes.
fn crates_named(program: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (i, _) in program.match_indices("::") {
        let before = &program[..i];
        let word: String = before
            .chars()
            .rev()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let lead = before[..before.len() - word.len()].chars().last();
        // Not a path root: `a::b::c` past `a`, `.method::<T>` turbofish.
        let turbofish = program[i + 2..].starts_with('<');
        let is_root = !matches!(lead, Some(':' | '.')) && !turbofish && !word.is_empty();
        let local = ["std", "core", "alloc", "crate", "self", "super", "Self"];
        if is_root
            && word.chars().next().is_some_and(|c| c.is_lowercase())
            && !local.contains(&word.as_str())
            && !names.contains(&word)
        {
            names.push(word);
        }
    }
    names
}

fn block_has(block: &str, krate: &str, features: &[&str]) -> Result<(), String> {
    // A package may spell its name with '-' or '_'; the code always says '_'.
    let dashed = krate.replace('_', "-");
    let line = block
        .lines()
        .find(|l| {
            let key = l.split('=').next().unwrap_or_default().trim();
            key == dashed || key == krate
        })
        .ok_or_else(|| format!("the snippet uses `{krate}` but the block has no `{dashed}`"))?;
    for f in features {
        if !line.contains(&format!("\"{f}\"")) {
            return Err(format!("`{dashed}` needs feature \"{f}\": {line}"));
        }
    }
    Ok(())
}

#[test]
fn every_crate_the_quick_start_uses_is_in_its_dependency_block() {
    let readme = include_str!("../README.md");
    let projects = quick_start_projects(readme);
    assert!(
        projects.len() >= 2,
        "expected the Client and the hyper-stack projects"
    );
    for (block, program) in &projects {
        assert!(program.contains("fn main"), "no main in:\n{program}");
        for krate in crates_named(program) {
            let features: &[&str] = match krate.as_str() {
                "tokio" => &["macros", "rt-multi-thread"],
                "hyper_util" => &["client-legacy", "http1", "tokio"],
                _ => &[],
            };
            if let Err(e) = block_has(block, &krate, features) {
                panic!("{e}\nblock:\n{block}");
            }
        }
    }
    // The check itself can fail:
    assert!(block_has("tokio = \"1\"\n", "tokio", &["macros"]).is_err());
    assert!(block_has("hyper = \"1\"\n", "hyper_util", &[]).is_err());
    assert_eq!(
        crates_named("use a::b;\nfn main() { c::d::e(); std::x(); v.f::<u8>(); }"),
        ["a", "c"]
    );
}

/// The block with tls-fallback taken by path from this checkout (whatever source the README
/// gives it: a version, a path to a clone, a git URL).
fn with_local_crate(block: &str, root: &Path) -> String {
    const SOURCE_KEYS: [&str; 6] = ["version", "path", "git", "branch", "tag", "rev"];
    let path = root.display().to_string().replace('\\', "/");
    let mut out = String::new();
    for line in block.lines() {
        match line.split_once('=') {
            Some((k, v)) if k.trim() == "tls-fallback" => {
                let v = v.trim();
                let extra = v
                    .strip_prefix('{')
                    .and_then(|v| v.strip_suffix('}'))
                    .map(|inner| {
                        inner
                            .split(',')
                            .filter(|kv| {
                                let key = kv.split('=').next().unwrap_or_default().trim();
                                !SOURCE_KEYS.contains(&key)
                            })
                            .map(|kv| format!(", {}", kv.trim()))
                            .collect::<String>()
                    })
                    .unwrap_or_default();
                out.push_str(&format!("tls-fallback = {{ path = \"{path}\"{extra} }}\n"));
            }
            _ => out.push_str(&format!("{line}\n")),
        }
    }
    out
}

#[test]
fn the_quick_start_compiles_in_a_new_project() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    // Kept between runs (and shared by the projects): only the first run builds the deps.
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("readme-quick-start");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (i, (block, program)) in quick_start_projects(&readme).iter().enumerate() {
        let dir = tempfile::tempdir().expect("temp dir");
        let manifest = format!(
            "[package]\nname = \"quick-start-{i}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n\n{}",
            with_local_crate(block, &root)
        );
        std::fs::write(dir.path().join("Cargo.toml"), &manifest).unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/main.rs"), program).unwrap();
        // The versions this checkout was tested with (and no network needed).
        std::fs::copy(root.join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();
        let start = Instant::now();
        let out = Command::new(&cargo)
            .args(["check", "--offline", "--quiet"])
            .current_dir(dir.path())
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .expect("cargo runs");
        let took = start.elapsed();
        assert!(
            out.status.success(),
            "project {i} does not compile ({took:?}):\n{manifest}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(took < Duration::from_secs(900), "{took:?}");
        eprintln!("quick start project {i}: cargo check in {took:?}");
    }
}
