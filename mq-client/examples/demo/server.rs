//! Starts `mq-server` on a free port with a temporary data dir; stops it when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;
use mq_client::Client;

pub(crate) struct Server {
    child: Child,
    pub(crate) addr: String,
    data_dir: PathBuf,
}

impl Server {
    pub(crate) fn start(bin: &Path) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let data_dir = std::env::temp_dir().join(format!("mq-demo-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&data_dir).context("cannot create the demo's data dir")?;
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .env("RUST_LOG", "warn")
            .env("MQ_HTTP", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("no stdout")?)
            .read_line(&mut line)
            .context("mq-server did not start")?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .with_context(|| format!("unexpected first line from mq-server: {line:?}"))?
            .to_owned();
        Ok(Self {
            child,
            addr,
            data_dir,
        })
    }

    pub(crate) async fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(&self.addr).await?)
    }

    /// Stops the server gracefully (SIGTERM) and waits for it.
    pub(crate) fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "could not signal mq-server");
        Ok(self.child.wait()?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
