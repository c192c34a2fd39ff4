//! What the integration tests of the native CLIs (`migrate`, `r2-sync`)
//! share: the built Worker under `wrangler dev` ([`worker`]), a free loopback
//! port, and running a binary to completion ([`run`]). A dev-dependency only:
//! never a dependency of a shipped crate, and it asserts nothing about the
//! code under test (each test does).
// Test fixtures panic on setup failure by design; the clock ban is about wasm.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

pub mod worker;

use std::net::TcpListener;
use std::process::{Command, Output};

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How a finished process ended: its exit code (-1 when killed by a signal)
/// and its output as text.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stdout as one JSON document; fails the test, showing both streams,
    /// when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `cmd` to completion and collects its output.
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
