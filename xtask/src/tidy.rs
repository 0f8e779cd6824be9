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

    fn dependencies(krate: &str) -> String {
        let manifest =
            std::fs::read_to_string(workspace_root().join(krate).join("Cargo.toml")).unwrap();
        let start = manifest.find("[dependencies]").unwrap();
        let rest = &manifest[start + "[dependencies]".len()..];
        rest[..rest.find("\n[").unwrap_or(rest.len())].to_owned()
    }

    #[test]
    fn mq_core_depends_on_no_runtime_and_no_network() {
        let deps = dependencies("mq-core");
        for banned in [
            "tokio",
            "mq-transport",
            "mq-server",
            "mq-client",
            "async-trait",
        ] {
            assert!(!deps.contains(banned), "mq-core depends on {banned}");
        }
    }

    #[test]
    fn the_client_never_reaches_into_the_server() {
        assert!(!dependencies("mq-client").contains("mq-server"));
        assert!(!dependencies("mq-transport").contains("mq-server"));
    }
}
