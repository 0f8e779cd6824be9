//! `cargo xtask fuzz [--seconds N] [--target T] [--dev]`: runs the cargo-fuzz targets of
//! `fuzz/` (libFuzzer), each for N seconds, from a corpus seeded with the protocol's pinned
//! snapshot frames. Installs cargo-fuzz when missing; builds with the stable toolchain and
//! `--sanitizer none` (no nightly needed). A crash fails the run and leaves its input under
//! `fuzz/artifacts/<target>/`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::util::{cargo, cargo_bin, workspace_root};

/// Every target, in the order they run.
const TARGETS: [&str; 8] = [
    "client_frame",
    "server_frame",
    "codec_stream",
    "topic_config",
    "record_decode",
    "journal_decode",
    "segment_recovery",
    "session",
];

/// Runs the fuzz targets.
#[derive(Debug, clap::Args)]
pub(crate) struct Fuzz {
    /// How long each target runs
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Run only this target
    #[arg(long, value_parser = TARGETS)]
    target: Option<String>,
    /// Build without optimizations (faster to build: the CI smoke)
    #[arg(long)]
    dev: bool,
}

impl Fuzz {
    /// Every target for `seconds`, built without optimizations: the CI smoke.
    pub(crate) fn smoke(seconds: u64) -> Self {
        Self {
            seconds,
            target: None,
            dev: true,
        }
    }

    pub(crate) fn run(self) -> anyhow::Result<()> {
        ensure_cargo_fuzz()?;
        let root = workspace_root();
        let fuzz = root.join("fuzz");
        for target in TARGETS {
            if self.target.as_deref().is_some_and(|t| t != target) {
                continue;
            }
            let corpus = fuzz.join("corpus").join(target);
            seed(&root, target, &corpus)?;
            let mut args = vec!["fuzz", "run", target, "--sanitizer", "none"];
            if self.dev {
                args.push("--dev");
            }
            let time = format!("-max_total_time={}", self.seconds);
            let corpus_arg = corpus.to_string_lossy().into_owned();
            args.extend(["--", &time, "-print_final_stats=1", &corpus_arg]);
            eprintln!("xtask fuzz: {target} for {}s", self.seconds);
            let status = Command::new(cargo_bin())
                .args(&args)
                .current_dir(&fuzz)
                .status()
                .context("cannot run cargo fuzz")?;
            if !status.success() {
                bail!("fuzz target {target} failed ({status}): see fuzz/artifacts/{target}/");
            }
        }
        Ok(())
    }
}

/// Installs cargo-fuzz unless `cargo fuzz` already runs.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let present = Command::new(cargo_bin())
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        cargo(&["install", "cargo-fuzz", "--locked"])?;
    }
    Ok(())
}

/// Seeds `corpus` with the snapshot frames of the protocol tests (their bytes are pinned
/// in `mq-transport/tests/snapshots/` as hex dumps).
fn seed(root: &Path, target: &str, corpus: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(corpus)
        .with_context(|| format!("cannot create {}", corpus.display()))?;
    let prefix = match target {
        "client_frame" | "codec_stream" | "session" => "frames__client_",
        "server_frame" => "frames__server_",
        "record_decode" => return seed_files(root, ".log", corpus),
        "journal_decode" => return seed_files(root, ".journal", corpus),
        _ => return Ok(()),
    };
    let snapshots = root.join("mq-transport/tests/snapshots");
    for entry in std::fs::read_dir(&snapshots).context("cannot read the snapshots")? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !name.starts_with(prefix) {
            continue;
        }
        let frame = hex_dump(&std::fs::read_to_string(&path)?);
        let input = match target {
            // A whole frame, read 7 bytes at a time.
            "codec_stream" => [vec![7], frame].concat(),
            // One frame body after its length byte (bodies up to 255 bytes).
            "session" => {
                let body = frame.get(4..).unwrap_or_default();
                match u8::try_from(body.len()) {
                    Ok(len) => [vec![len], body.to_vec()].concat(),
                    Err(_) => continue,
                }
            }
            // The body after the length field.
            _ => frame.get(4..).unwrap_or_default().to_vec(),
        };
        std::fs::write(corpus.join(name.trim_end_matches(".snap")), input)?;
    }
    Ok(())
}

/// The bytes of an insta hex dump (`0000: 00 01 …` lines after the `---` header).
/// Copies the data files of the storage fixtures whose names end with `suffix` into
/// `corpus`: real segments or journals to start from.
fn seed_files(root: &Path, suffix: &str, corpus: &Path) -> anyhow::Result<()> {
    let topics = root.join("mq-core/tests/fixtures/format-1/topics");
    for topic in std::fs::read_dir(&topics).context("cannot read the storage fixtures")? {
        for file in std::fs::read_dir(topic?.path())? {
            let path = file?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let topic = path
                .parent()
                .and_then(Path::file_name)
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.ends_with(suffix) {
                std::fs::copy(&path, corpus.join(format!("fixture-{topic}-{name}")))?;
            }
        }
    }
    Ok(())
}

fn hex_dump(snapshot: &str) -> Vec<u8> {
    snapshot
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(offset, _)| offset.chars().all(|c| c.is_ascii_hexdigit()))
        .flat_map(|(_, bytes)| {
            bytes
                .split_whitespace()
                .filter_map(|b| u8::from_str_radix(b, 16).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::hex_dump;

    #[test]
    fn snapshot_hex_dumps_are_read_back_to_bytes() {
        let snap =
            "---\nsource: x\nexpression: hex(&buf)\n---\n0000: 00 00 00 05 0f 00\n0010: 07\n";
        assert_eq!(hex_dump(snap), vec![0, 0, 0, 5, 0x0f, 0, 7]);
    }
}
