#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = accord::cli::Cli::parse();
    let actor_default = default_actor();
    ExitCode::from(accord::cli::run(cli, &actor_default))
}

/// `user@host` of whoever runs the command, the default audit actor.
fn default_actor() -> String {
    let user = whoami::username().unwrap_or_else(|_| "unknown".into());
    let host = whoami::hostname().unwrap_or_else(|_| "unknown".into());
    format!("{user}@{host}")
}
