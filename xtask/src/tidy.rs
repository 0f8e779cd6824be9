//! Repository rules that must never drift, checked as ordinary tests: every Rust file says
//! what it holds, no test is switched off, and the crates keep their layering.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::util::workspace_root;

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() && name != "target" && !name.to_string_lossy().starts_with('.') {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
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

    fn docs_and_sources(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() && name != "target" && !name.to_string_lossy().starts_with('.') {
                docs_and_sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs" || e == "md") {
                out.push(path);
            }
        }
    }

    #[test]
    fn docs_and_comments_cite_only_the_projects_own_documents() {
        let mut files = Vec::new();
        docs_and_sources(&workspace_root(), &mut files);
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
