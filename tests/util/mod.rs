//! Helpers for the integration tests: a temp directory per test and the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// A test's own directory with a ledger data dir inside it.
pub struct TestDir {
    pub tmp: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> TestDir {
        TestDir {
            tmp: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    /// `djaudit --data <data> args…`
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::cargo_bin("djaudit").expect("binary");
        c.arg("--data").arg(self.data()).args(args);
        c.env_remove("DJAUDIT_DATA");
        c.env("USER", "tester");
        c
    }

    /// Runs and returns the output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run djaudit")
    }

    /// Creates a ledger named `test.example/ledger`.
    pub fn init(&self) {
        self.cmd(&["init", "--origin", "test.example/ledger"])
            .assert()
            .success();
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.data().join("ledger.db")).expect("open db")
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.tmp.path().join(name);
        std::fs::write(&p, content).expect("write file");
        p
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
