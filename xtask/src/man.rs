//! `cargo xtask man`: builds both binaries and writes their manual pages (`mq man`,
//! `mq-server man`, rendered by clap_mangen) to `target/man/`.

use std::process::Command;

use anyhow::{Context, ensure};

use crate::util::{cargo, target_dir};

/// Writes target/man/mq.1 and target/man/mq-server.1.
#[derive(Debug, clap::Args)]
pub(crate) struct Man;

impl Man {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        cargo(&["build", "--quiet", "-p", "mq-server", "-p", "mq-cli"])?;
        let out = target_dir().join("man");
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        for binary in ["mq", "mq-server"] {
            let page = Command::new(target_dir().join("debug").join(binary))
                .arg("man")
                .output()
                .with_context(|| format!("cannot run {binary} man"))?;
            ensure!(page.status.success(), "{binary} man failed");
            let path = out.join(format!("{binary}.1"));
            std::fs::write(&path, &page.stdout)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("{}", path.display());
        }
        Ok(())
    }
}
