//! The server under test: started on one fixed address (so reconnecting clients find it
//! again), killed with SIGKILL, and — for power-loss runs — its data files cut back to what
//! was fsynced before it starts again.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// The server process and its data dir.
pub(crate) struct ChaosServer {
    bin: PathBuf,
    pub(crate) data_dir: PathBuf,
    fsync: String,
    /// Where the server records fsynced lengths (power-loss runs only).
    sync_log: Option<PathBuf>,
    /// Lengths of the data files when the server last started: what is on disk then.
    start_lengths: HashMap<PathBuf, u64>,
    pub(crate) addr: String,
    child: Option<Child>,
}

impl ChaosServer {
    /// A server on a free port with a new data dir (not started yet).
    pub(crate) fn new(bin: &Path, fsync: &str, power_loss: bool) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let data_dir =
            std::env::temp_dir().join(format!("mq-chaos-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&data_dir).context("cannot create the data dir")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot find a free port")?
            .port();
        Ok(Self {
            bin: bin.to_path_buf(),
            sync_log: power_loss.then(|| data_dir.with_extension("synced")),
            data_dir,
            fsync: fsync.to_owned(),
            start_lengths: HashMap::new(),
            addr: format!("127.0.0.1:{port}"),
            child: None,
        })
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .args(["--listen", &self.addr, "--fsync", &self.fsync, "--data-dir"])
            .arg(&self.data_dir)
            .env("RUST_LOG", "error")
            .env("MQ_HTTP", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(log) = &self.sync_log {
            command.arg("--sync-log").arg(log);
        }
        command
    }

    /// Starts the server and waits until it listens.
    pub(crate) fn start(&mut self) -> anyhow::Result<()> {
        self.note_start_lengths();
        let mut child = self.command().spawn().context("cannot start mq-server")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("no stdout")?)
            .read_line(&mut line)
            .context("mq-server did not start")?;
        anyhow::ensure!(
            line.starts_with("listening on "),
            "mq-server did not start (port taken, or recovery failed?): {line:?}"
        );
        self.child = Some(child);
        Ok(())
    }

    /// Starts the server and kills it `after` later, whatever it is doing (recovery,
    /// usually): a crash during start-up.
    pub(crate) fn start_and_kill(&mut self, after: Duration) -> anyhow::Result<()> {
        self.note_start_lengths();
        let mut child = self.command().spawn().context("cannot start mq-server")?;
        std::thread::sleep(after);
        child.kill().context("cannot kill mq-server")?;
        child.wait().context("cannot reap mq-server")?;
        self.power_cut()
    }

    /// SIGKILL, then (power-loss runs) the cut back to what was fsynced.
    pub(crate) fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("cannot kill mq-server")?;
            child.wait().context("cannot reap mq-server")?;
        }
        self.power_cut()
    }

    /// Records the data files' lengths: on disk as the server starts.
    fn note_start_lengths(&mut self) {
        if self.sync_log.is_none() {
            return;
        }
        self.start_lengths = data_files(&self.data_dir)
            .into_iter()
            .filter_map(|p| Some((p.clone(), std::fs::metadata(&p).ok()?.len())))
            .collect();
        if let Some(log) = &self.sync_log {
            let _ = std::fs::remove_file(log);
        }
    }

    /// Cuts every data file back to its last fsynced length (its length at start when it
    /// was not fsynced since; nothing for a file made since and never fsynced), as a power
    /// cut would leave it.
    fn power_cut(&mut self) -> anyhow::Result<()> {
        let Some(log) = &self.sync_log else {
            return Ok(());
        };
        let mut synced: HashMap<PathBuf, u64> = self.start_lengths.clone();
        if let Ok(text) = std::fs::read_to_string(log) {
            for line in text.lines() {
                if let Some((len, path)) = line.split_once(' ')
                    && let Ok(len) = len.parse()
                {
                    synced.insert(PathBuf::from(path), len);
                }
            }
        }
        for path in data_files(&self.data_dir) {
            let keep = synced.get(&path).copied().unwrap_or(0);
            let len = std::fs::metadata(&path).map_or(0, |m| m.len());
            if len > keep {
                let file = std::fs::OpenOptions::new().write(true).open(&path)?;
                file.set_len(keep)
                    .with_context(|| format!("cannot cut {} back", path.display()))?;
            }
        }
        Ok(())
    }
}

impl Drop for ChaosServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if let Some(log) = &self.sync_log {
            let _ = std::fs::remove_file(log);
        }
    }
}

/// Segments, indexes and group journals under `dir`.
fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(topics) = std::fs::read_dir(dir.join("topics")) else {
        return out;
    };
    for topic in topics.flatten() {
        let Ok(files) = std::fs::read_dir(topic.path()) else {
            continue;
        };
        for file in files.flatten() {
            let path = file.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".log") || name.ends_with(".idx") || name == "groups.journal" {
                out.push(path);
            }
        }
    }
    out
}
