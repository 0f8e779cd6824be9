//! Repository rules that must never drift, checked as ordinary tests: every Rust file says
//! what it holds, no test is switched off, and the crates keep their layering.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::util::workspace_root;

    /// Files under `dir` (skipping `target` and hidden directories) whose extension is one
    /// of `exts`.
    fn files_with(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() && name != "target" && !name.to_string_lossy().starts_with('.') {
                files_with(&path, exts, out);
            } else if path
                .extension()
                .is_some_and(|e| exts.iter().any(|x| e == *x))
            {
                out.push(path);
            }
        }
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        files_with(dir, &["rs"], out);
    }

    fn all_rust_files() -> Vec<PathBuf> {
        let mut files = Vec::new();
        rust_files(&workspace_root(), &mut files);
        assert!(files.len() > 20, "found only {} Rust files", files.len());
        files
    }

    #[test]
    fn every_rust_file_starts_with_a_module_doc() {
        for file in all_rust_files() {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(
                text.starts_with("//!"),
                "{} does not start with a //! line",
                file.display()
            );
        }
    }

    #[test]
    fn no_test_is_switched_off() {
        let needle = ["#[", "ignore"].concat();
        for file in all_rust_files() {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(
                !text.contains(&needle),
                "{} switches a test off",
                file.display()
            );
        }
    }

    #[test]
    fn docs_and_comments_cite_only_the_projects_own_documents() {
        let mut files = Vec::new();
        files_with(&workspace_root(), &["rs", "md"], &mut files);
        let banned = [["SPEC", " §"].concat(), ["../", "shared"].concat()];
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for needle in &banned {
                assert!(
                    !text.contains(needle.as_str()),
                    "{} cites {needle:?}, a document outside the repository",
                    file.display()
                );
            }
        }
    }

    /// The top-level modules of mq-core that `text` uses (`crate::<module>` outside
    /// comments).
    fn core_modules_used(text: &str, modules: &[String]) -> Vec<String> {
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        modules
            .iter()
            .filter(|m| {
                let needle = format!("crate::{m}");
                code.match_indices(&needle).any(|(at, _)| {
                    !code[at + needle.len()..]
                        .starts_with(|c: char| c.is_alphanumeric() || c == '_')
                })
            })
            .cloned()
            .collect()
    }

    #[test]
    fn mq_core_modules_form_no_cycle() {
        let src = workspace_root().join("mq-core/src");
        let mut modules: Vec<String> = std::fs::read_dir(&src)
            .unwrap()
            .filter_map(|e| {
                let path = e.ok()?.path();
                let stem = path.file_stem()?.to_str()?.to_owned();
                (stem != "lib").then_some(stem)
            })
            .collect();
        modules.sort();
        let mut uses = std::collections::BTreeMap::new();
        for m in &modules {
            let mut files = Vec::new();
            let dir = src.join(m);
            if dir.is_dir() {
                rust_files(&dir, &mut files);
            } else {
                files.push(src.join(format!("{m}.rs")));
            }
            let mut used: Vec<String> = files
                .iter()
                .flat_map(|f| core_modules_used(&std::fs::read_to_string(f).unwrap(), &modules))
                .filter(|u| u != m)
                .collect();
            used.sort();
            used.dedup();
            uses.insert(m.clone(), used);
        }
        // Depth-first search for a path back to where it started.
        fn reaches(
            uses: &std::collections::BTreeMap<String, Vec<String>>,
            from: &str,
            target: &str,
            seen: &mut Vec<String>,
        ) -> bool {
            for next in &uses[from] {
                if next == target {
                    return true;
                }
                if !seen.contains(next) {
                    seen.push(next.clone());
                    if reaches(uses, next, target, seen) {
                        return true;
                    }
                }
            }
            false
        }
        for m in &modules {
            assert!(
                !reaches(&uses, m, m, &mut Vec::new()),
                "mq-core module {m} depends on itself through {:?}",
                uses[m]
            );
        }
    }

    /// Which workspace crates each crate may depend on (normal dependencies): the layering
    /// table of docs/ARCHITECTURE.md. Tests may use more, as dev-dependencies.
    const LAYERS: &[(&str, &[&str])] = &[
        ("mq-core", &[]),
        ("mq-transport", &["mq-core"]),
        ("mq-server", &["mq-core", "mq-transport"]),
        ("mq-client", &["mq-transport", "mq-core"]),
        ("mq-cli", &["mq-client"]),
        ("mq-python", &["mq-client", "mq-core"]),
        ("xtask", &[]),
    ];

    /// Every workspace crate with its dependencies: (name, kind) where kind is `normal`,
    /// `dev` or `build`.
    fn workspace_dependencies() -> Vec<(String, Vec<(String, String)>)> {
        let out = std::process::Command::new(crate::util::cargo_bin())
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .current_dir(workspace_root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        metadata["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let deps = p["dependencies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| {
                        let kind = d["kind"].as_str().unwrap_or("normal").to_owned();
                        (d["name"].as_str().unwrap().to_owned(), kind)
                    })
                    .collect();
                (p["name"].as_str().unwrap().to_owned(), deps)
            })
            .collect()
    }

    #[test]
    fn crates_depend_only_on_the_layers_below_them() {
        let crates = workspace_dependencies();
        let members: Vec<&str> = crates.iter().map(|(n, _)| n.as_str()).collect();
        for (name, deps) in &crates {
            let allowed = LAYERS
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("{name} is missing from the layering table"))
                .1;
            for (dep, kind) in deps {
                if !members.contains(&dep.as_str()) || dep == name {
                    continue;
                }
                let dev_allowed = kind == "dev" && name != "xtask";
                assert!(
                    allowed.contains(&dep.as_str()) || dev_allowed,
                    "{name} depends on {dep} ({kind}): the layering table allows {allowed:?}"
                );
            }
        }
    }

    #[test]
    fn mq_core_depends_on_no_runtime_and_no_network() {
        let crates = workspace_dependencies();
        let (_, deps) = crates.iter().find(|(n, _)| n == "mq-core").unwrap();
        for (dep, kind) in deps {
            assert!(
                kind != "normal"
                    || !["tokio", "async-trait", "mio", "socket2"].contains(&dep.as_str()),
                "mq-core depends on {dep}"
            );
        }
    }
}
