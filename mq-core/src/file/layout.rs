//! The layout of a data dir (see the module docs of `file`): its format version, the names
//! of topic directories, and the small files written whole (atomically).

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::io;
use crate::config::TopicConfig;
use crate::name::TopicName;
use crate::storage::StorageError;

/// The data format this release writes and reads (the `FORMAT` file). Format 2 adds the
/// stamp of idempotent batches to records; format 1 dirs are read as they are and marked 2
/// when opened for writing.
pub const DATA_FORMAT: u32 = 2;
/// Prefix of a topic directory being created.
pub(super) const CREATING: &str = ".creating-";
/// Prefix of a topic directory being deleted.
pub(super) const DELETING: &str = ".deleting-";

/// Writes `bytes` to `path` atomically (a temp file, fsynced, renamed over it).
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io(format!("writing {}", tmp.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io(format!("writing {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io(format!("replacing {}", path.display())))
}

/// Makes the entries of directory `dir` durable (a rename or a new file in it).
pub(super) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("syncing directory {}", dir.display())))
}

/// The topic a directory under `topics` is named for, if its name is one.
pub(super) fn topic_of(name: &str) -> Option<TopicName> {
    TopicName::new_or_dead_letter(name).ok()
}

/// A topic directory's config and first retained offset, or why they cannot be read.
pub(super) fn read_topic_files(dir: &Path) -> Result<(TopicConfig, u64), String> {
    let config = match fs::read(dir.join("config.json")) {
        Ok(bytes) => serde_json::from_slice::<TopicConfig>(&bytes)
            .map_err(|e| format!("its config.json cannot be read ({e})"))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(
                "it holds no config.json: mq did not create it, or its files were moved".into(),
            );
        }
        Err(e) => return Err(format!("its config.json cannot be read ({e})")),
    };
    config
        .validate()
        .map_err(|e| format!("its config.json is not valid ({e})"))?;
    let first = match fs::read(dir.join("meta.json")) {
        Ok(m) => {
            serde_json::from_slice::<TopicMeta>(&m)
                .map_err(|e| format!("its meta.json cannot be read ({e})"))?
                .first
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(format!("its meta.json cannot be read ({e})")),
    };
    Ok((config, first))
}

/// Checks the data dir's format version, writing it into a new or pre-versioned dir.
pub(super) fn check_format(root: &Path, write: bool) -> Result<(), StorageError> {
    let path = root.join("FORMAT");
    let refuse = |message: String| StorageError {
        context: format!("opening data dir {}", root.display()),
        message,
        kind: None,
    };
    match fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(format) if format == DATA_FORMAT => Ok(()),
            Ok(format) if format < DATA_FORMAT => {
                if write {
                    write_atomic(&path, format!("{DATA_FORMAT}\n").as_bytes())?;
                }
                Ok(())
            }
            Ok(format) => Err(refuse(format!(
                "it holds data format {format}, written by a newer mq-server; this one reads \
                 formats up to {DATA_FORMAT}: run a newer mq-server or use another --data-dir"
            ))),
            Err(_) => Err(refuse(format!(
                "{} does not hold a format number: restore it (this release writes \"{DATA_FORMAT}\") \
                 or use another --data-dir",
                path.display()
            ))),
        },
        // A new dir, or one written before the format was recorded (format 1).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if write {
                write_atomic(&path, format!("{DATA_FORMAT}\n").as_bytes())?;
            }
            Ok(())
        }
        Err(e) => Err(StorageError::io(format!("reading {}", path.display()), &e)),
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct TopicMeta {
    pub(super) first: u64,
}
