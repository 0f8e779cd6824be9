//! [`FileStorage::check`]: an offline check of a data dir that reads every record and
//! checksum and changes nothing (`mq-server check`).

use std::fs;
use std::path::Path;

use super::journal::Journal;
use super::recovery::{self, Mode};
use super::{
    CREATING, DELETING, FileStorage, check_format, read_topic_files, seen_offsets, topic_of,
};
use crate::storage::StorageError;

/// What [`FileStorage::check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Topics whose files were read.
    pub topics: usize,
    /// Valid records found at or after each topic's first retained offset.
    pub messages: u64,
    /// Damage, lost offsets, topics a start would quarantine, and foreign files: one line
    /// each, naming the file.
    pub problems: Vec<String>,
}

impl FileStorage {
    /// Reads every topic, segment, record checksum and group journal under the data dir
    /// `dir` and reports what is damaged, without changing anything (a running broker may
    /// hold the dir meanwhile).
    ///
    /// # Errors
    /// [`StorageError`] when the dir cannot be listed or its format is unknown.
    pub fn check(dir: impl AsRef<Path>) -> Result<CheckReport, StorageError> {
        let root = dir.as_ref();
        check_format(root, false)?;
        let topics_dir = root.join("topics");
        let mut entries: Vec<_> = fs::read_dir(&topics_dir)
            .map_err(|e| StorageError::io(format!("listing {}", topics_dir.display()), &e))?
            .filter_map(|e| e.ok())
            .map(|e| (e.file_name(), e.path()))
            .collect();
        entries.sort();
        let mut report = CheckReport::default();
        for (name, path) in entries {
            let name = name.to_string_lossy();
            if name.starts_with(CREATING) || name.starts_with(DELETING) {
                report.problems.push(format!(
                    "{}: an interrupted topic creation or deletion; the next start removes it",
                    path.display()
                ));
                continue;
            }
            let Some(topic) = topic_of(&name).filter(|_| path.is_dir()) else {
                report.problems.push(format!(
                    "{} is not a topic; the broker leaves it alone",
                    path.display()
                ));
                continue;
            };
            let (_, first) = match read_topic_files(&path) {
                Ok(files) => files,
                Err(reason) => {
                    report.problems.push(format!(
                        "topic \"{topic}\" would be quarantined: {}: {reason}",
                        path.display()
                    ));
                    continue;
                }
            };
            let what = format!("topic \"{topic}\"");
            let (groups, mut problems) = Journal::replay(&path, &what)?;
            let recovered = recovery::recover(
                &path,
                &what,
                first,
                seen_offsets(&groups),
                0,
                Mode::ReadOnly,
            )?;
            report.topics += 1;
            report.messages += recovered
                .messages
                .iter()
                .map(|m| m.len() as u64)
                .sum::<u64>();
            problems.extend(recovered.warnings);
            report.problems.extend(problems);
        }
        Ok(report)
    }
}
