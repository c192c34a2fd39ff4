//! Shared fixtures of the migrate integration tests: a real PostgreSQL 15
//! cluster (one per test binary, a fresh database per test) holding the
//! Supabase fixture, and helpers to run the CLI. The built Worker under
//! `wrangler dev` and running a binary come from the `test-support` crate.
#![allow(dead_code)]
// Test fixtures may read the clock; the workspace ban is about wasm.
#![allow(clippy::disallowed_methods)]
// Test fixtures panic on setup failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod postgres;

// Each test binary uses its own part of these.
#[allow(unused_imports)]
pub use test_support::{free_port, run, Run};

use std::process::{Command, Stdio};

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

/// `cmd` (a [`bin`] or [`measured_bin`]) given `export --json
/// --database-url URL --out DIR`: the export most tests start from.
pub fn export_to(mut cmd: Command, database_url: &str, out: &std::path::Path) -> Command {
    cmd.args(["export", "--json", "--database-url", database_url, "--out"])
        .arg(out);
    cmd
}

/// Reads a JSONL file into values.
pub fn jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
