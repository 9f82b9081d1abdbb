//! The `accord` binary: parses the command line and hands it to `accord::cli`.

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match accord::cli::parse_args() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    if matches!(cli.command, accord::cli::Command::Run(_)) {
        limit_malloc_arenas();
    }
    let actor_default = default_actor();
    ExitCode::from(accord::cli::run(cli, &actor_default))
}

/// glibc gives each thread that allocates under contention its own arena and
/// rarely returns their memory, so a long-running controller's resident size
/// keeps the peak of every large sync on every thread. The setting is read only at process start, so the
/// long-running controller re-executes itself once with it (same pid, same
/// arguments); an operator's own MALLOC_ARENA_MAX is left as it is.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("MALLOC_ARENA_MAX", "2")
        .exec();
    // Only reached when exec failed: run on with the default arenas.
    eprintln!("warning: could not limit malloc arenas: {error}");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

/// `user@host` of whoever runs the command, the default audit actor.
fn default_actor() -> String {
    let user = whoami::username().unwrap_or_else(|_| "unknown".into());
    let host = whoami::hostname().unwrap_or_else(|_| "unknown".into());
    format!("{user}@{host}")
}
