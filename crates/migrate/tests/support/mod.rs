//! Shared fixtures of the migrate integration tests: a real PostgreSQL 15
//! cluster (one per test binary, a fresh database per test) holding the
//! Supabase fixture, and helpers to run the CLI.
#![allow(dead_code)]
// Test fixtures may read the clock; the workspace ban is about wasm.
#![allow(clippy::disallowed_methods)]
// Test fixtures panic on setup failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod postgres;
pub mod worker;

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_migrate"));
    for var in ["DATABASE_URL", "ADMIN_TOKEN", "MIGRATE_TARGET"] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// [`bin`] under `/usr/bin/time -f peak_rss_kb=%M` where that exists, so
/// [`peak_rss`] can read the CLI's peak memory from its stderr.
pub fn measured_bin() -> Command {
    let time = std::path::Path::new("/usr/bin/time");
    if !time.exists() {
        return bin();
    }
    let mut cmd = Command::new(time);
    cmd.args(["-f", "peak_rss_kb=%M"])
        .arg(env!("CARGO_BIN_EXE_migrate"));
    for var in ["DATABASE_URL", "ADMIN_TOKEN", "MIGRATE_TARGET"] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// The `peak_rss_kb=` line [`measured_bin`] leaves on stderr, or a note.
pub fn peak_rss(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.starts_with("peak_rss_kb="))
        .unwrap_or("peak RSS not measured (no /usr/bin/time)")
        .to_owned()
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

pub fn run(mut cmd: Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Reads a JSONL file into values.
pub fn jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
