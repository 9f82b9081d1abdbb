//! The `accord` binary run as a user runs it: in a folder, without colour,
//! and with none of the environment that would point it at another
//! database, source or log level than the arguments say.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::process::Command;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn accord_in(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_accord"))
        .args(args)
        .current_dir(dir)
        .env("ACCORD_COLOR", "never")
        .env_remove("ACCORD_DATABASE_URL")
        .env_remove("ACCORD_SOURCE")
        .env_remove("ACCORD_LOG")
        .output()
        .expect("run accord");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
