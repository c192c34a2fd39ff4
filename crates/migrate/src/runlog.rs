//! The JSONL run log: one line per event of a run (start, page, item,
//! error, end), appended and flushed as it happens so an interrupted run
//! leaves a readable trail. Never holds credentials: callers pass redacted
//! values.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// Default log file name inside an export directory.
pub const RUN_LOG_FILE: &str = "migrate-log.jsonl";

#[derive(Debug)]
pub struct RunLog {
    file: Option<File>,
    path: PathBuf,
    command: String,
    run_id: String,
}

impl RunLog {
    /// Opens (appending) `path`; `run_id` tells this run's lines from others'.
    pub fn open(path: &Path, command: &str, run_id: &str) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file: Some(file),
            path: path.to_owned(),
            command: command.to_owned(),
            run_id: run_id.to_owned(),
        })
    }

    /// A log that writes nothing (dry runs that must not touch the disk).
    pub fn disabled(command: &str) -> Self {
        Self {
            file: None,
            path: PathBuf::new(),
            command: command.to_owned(),
            run_id: String::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event; `fields` must be a JSON object. A log that cannot
    /// be written must not stop a migration, so failures are returned for
    /// the caller to report once, not raised.
    pub fn record(&mut self, at_ms: u64, event: &str, fields: Value) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut line = json!({
            "at_ms": at_ms,
            "run": self.run_id,
            "command": self.command,
            "event": event,
        });
        if let (Some(line), Value::Object(extra)) = (line.as_object_mut(), fields) {
            line.extend(extra);
        }
        let mut text = line.to_string();
        text.push('\n');
        file.write_all(text.as_bytes())?;
        file.flush()
    }
}
