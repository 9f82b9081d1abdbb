//! The command line: one clap struct per command, and the exit-code contract
//! (validate 0/1; plan 0 nothing to do, 2 pending, 1 error; apply 0/1, 3 refused).

mod access;
mod access_test;
mod diff;
mod export;
mod lint;
mod markdown;
mod output;
mod remote;
mod schema;
pub mod state;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::{Kind, Limits};
use crate::plan::PlanOptions;
use crate::policy::DriftPolicy;
use crate::source::{directory, DirectorySource, DEFAULT_MAX_FILE_SIZE};
use crate::store::{AnyStore, AuditQuery, LockMode, Store};
use crate::sync::{self, SyncError};

pub use output::Style;

/// Exit codes.
pub const OK: u8 = 0;
pub const ERROR: u8 = 1;
pub const PENDING: u8 = 2;
pub const REFUSED: u8 = 3;

/// Keeps an access-control database exactly as declared in Git or Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "accord", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (tracing syntax), e.g. `info` or `accord=debug`; default
    /// `info` for `accord run`, `warn` for the other commands.
    #[arg(long, global = true, env = "ACCORD_LOG")]
    pub log: Option<String>,
    /// Log lines as text, or as one JSON object each (for log collectors).
    #[arg(long, global = true, env = "ACCORD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Colored output: auto (only on a terminal), always or never.
    #[arg(long, global = true, env = "ACCORD_COLOR", value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check files or folders of YAML; print every error as FILE:LINE:COLUMN: message.
    Validate(ValidateArgs),
    /// Find grants that cannot take effect or are wider than meant; print
    /// each as FILE:LINE:COLUMN: severity[rule]: message (exit 1 on an error).
    Lint(lint::LintArgs),
    /// Show what apply would change (exit 0 nothing, 2 changes or drift pending, 1 error).
    Plan(PlanArgs),
    /// Apply the source to the database in one transaction, with an audit trail.
    Apply(ApplyArgs),
    /// Show the audit log, newest first.
    Audit(AuditArgs),
    /// Write the database's current state as YAML (to bootstrap a repository).
    Export(ExportArgs),
    /// Run the controller: follow Git repositories and folders, keep the
    /// database as declared, serve status over HTTP.
    Run(Box<RunArgs>),
    /// Show every source's state from a running controller.
    Status(ServerArgs),
    /// Show open drift (and conflicts) from a running controller.
    Drift(ServerArgs),
    /// Approve the deletions the deletion guard refused for a source of a
    /// running controller (exactly that set; a different set needs a new
    /// approval).
    Approve(ApproveArgs),
    /// Print the Organization, Permit and Enrollment CustomResourceDefinitions.
    Crds(CrdsArgs),
    /// Print the OpenAPI 3.1 document of the HTTP API `accord run` serves
    /// (the same as its `GET /api/v1/openapi.json`).
    Openapi,
    /// Browse a database in the operator's pages, read-only, without
    /// running the controller.
    Ui(UiArgs),
    /// Can a subject do something? Exit 0 allowed, 2 denied, 1 error.
    Can(access::CanArgs),
    /// Every subject that holds a permission, and how, by app.
    WhoCan(access::WhoCanArgs),
    /// Every permission a subject holds, by app, and through what.
    Access(access::AccessArgs),
    /// Print the JSON Schema of the YAML files a source holds, for editors
    /// (`schema/accord.schema.json` holds it).
    Schema,
    /// Check access tests (who can, who cannot, exactly who holds) against
    /// a state. Exit 0 when every assertion holds, 1 otherwise.
    Test(access_test::TestArgs),
    /// Preview a change between two revisions (or folders): objects
    /// created, updated and deleted, and who gains or loses which
    /// permission. No database. Exit 0, or 1 on error.
    Diff(diff::DiffArgs),
}

#[derive(Debug, Args)]
pub struct UiArgs {
    /// The database to browse: sqlite://PATH or postgres://USER@HOST:PORT/DB.
    #[arg(long, env = "ACCORD_DATABASE_URL")]
    pub database: String,
    /// Address to serve the pages on (port 0: any free port, logged).
    #[arg(long, env = "ACCORD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
}

#[derive(Debug, Args)]
pub struct CrdsArgs {
    /// `yaml` (three documents, as crds/ holds them) or `json` (one `List`).
    #[arg(long, value_enum, default_value_t = CrdFormat::Yaml)]
    pub output: CrdFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CrdFormat {
    Yaml,
    Json,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The controller's address.
    #[arg(long, env = "ACCORD_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The source whose refused deletions to approve.
    pub source: String,
    /// The controller's address.
    #[arg(long, env = "ACCORD_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// The refused set shown in the source's status (`deletionRefused.set`);
    /// when given, the approval fails if the refused set has changed since.
    #[arg(long)]
    pub set: Option<String>,
    /// File holding the controller's API token.
    #[arg(long, env = "ACCORD_API_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Who approves, for the sync record; defaults to user@host.
    #[arg(long = "as", env = "ACCORD_ACTOR")]
    pub approved_by: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file (see examples/accord.yaml).
    #[arg(long, env = "ACCORD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL (overrides the file's `database`).
    #[arg(long, env = "ACCORD_DATABASE_URL")]
    pub database: Option<String>,
    /// Apply pending schema migrations through this URL (an owner role;
    /// overrides the file's `migrateDatabase`).
    #[arg(long, env = "ACCORD_MIGRATE_DATABASE_URL")]
    pub migrate_database: Option<String>,
    /// Address of the HTTP API (overrides `listen`; default 127.0.0.1:8080).
    #[arg(long, env = "ACCORD_LISTEN")]
    pub listen: Option<String>,
    /// File holding the bearer token mutating API calls need.
    #[arg(long, env = "ACCORD_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Where Git sources keep fetched objects (default .accord-cache).
    #[arg(long, env = "ACCORD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// A single Git source without a config file: the repository URL.
    #[arg(long, env = "ACCORD_GIT_URL", conflicts_with_all = ["config", "directory"])]
    pub git: Option<String>,
    /// Branch, tag or full commit of --git.
    #[arg(
        long = "ref",
        env = "ACCORD_GIT_REF",
        default_value = "main",
        requires = "git"
    )]
    pub reference: String,
    /// Folder inside the repository of --git.
    #[arg(long, env = "ACCORD_GIT_PATH", requires = "git")]
    pub path: Option<String>,
    #[arg(long, env = "ACCORD_GIT_TOKEN_FILE", requires = "git")]
    pub token_file: Option<PathBuf>,
    #[arg(long, env = "ACCORD_GIT_SSH_KEY_FILE", requires = "git")]
    pub ssh_key_file: Option<PathBuf>,
    /// PEM CA certificates the https server of --git must chain to, instead of the system's.
    #[arg(long, env = "ACCORD_GIT_CA_FILE", requires = "git")]
    pub ca_file: Option<PathBuf>,
    /// known_hosts file that must list the ssh host key of --git, instead of ~/.ssh/known_hosts.
    #[arg(long, env = "ACCORD_GIT_KNOWN_HOSTS_FILE", requires = "git")]
    pub known_hosts_file: Option<PathBuf>,
    #[arg(long, env = "ACCORD_WEBHOOK_SECRET_FILE", requires = "git")]
    pub webhook_secret_file: Option<PathBuf>,
    /// A single folder source without a config file.
    #[arg(long, env = "ACCORD_DIRECTORY", conflicts_with = "config")]
    pub directory: Option<PathBuf>,
    /// The single source's name.
    #[arg(long, env = "ACCORD_SOURCE_NAME", default_value = "default")]
    pub source_name: String,
    /// How often the single source is checked (and drift looked for).
    #[arg(long, env = "ACCORD_INTERVAL", default_value = "30s")]
    pub interval: String,
    #[arg(long, env = "ACCORD_DRIFT", default_value = "correct", value_parser = ["correct", "report"])]
    pub drift: String,
    #[arg(long)]
    pub no_prune: bool,
    #[arg(long, env = "ACCORD_MAX_DELETE_PERCENT", default_value_t = 25, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_delete_percent: u32,
    /// How far back deletions add up toward --max-delete-percent.
    #[arg(long, env = "ACCORD_DELETION_WINDOW", default_value = "10m")]
    pub deletion_window: String,
    /// Who the audit log names for drift corrections; defaults to accord@host.
    #[arg(long, env = "ACCORD_ACTOR")]
    pub actor: Option<String>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files or folders (folders are searched for *.yaml and *.yml).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Largest YAML file accepted, in bytes.
    #[arg(long, env = "ACCORD_MAX_FILE_SIZE", default_value_t = DEFAULT_MAX_FILE_SIZE)]
    pub max_file_size: u64,
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Database URL: sqlite://PATH (created when missing) or postgres://USER@HOST:PORT/DB.
    #[arg(
        long,
        env = "ACCORD_DATABASE_URL",
        default_value = "sqlite://accord.db"
    )]
    pub database: String,
    /// Apply pending schema migrations through this URL (an owner role),
    /// so the role of --database need not own the tables.
    #[arg(long, env = "ACCORD_MIGRATE_DATABASE_URL")]
    pub migrate_database: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The folder of YAML to reconcile.
    #[arg(long, env = "ACCORD_SOURCE")]
    pub source: PathBuf,
    /// The name this source's rows are owned under.
    #[arg(long, env = "ACCORD_SOURCE_NAME", default_value = "default")]
    pub source_name: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// `markdown`: a pull-request comment, with the access impact.
    #[arg(long, value_enum, default_value_t = diff::ReportFormat::Text)]
    pub output: diff::ReportFormat,
    /// Leave managed rows that are no longer declared in place.
    #[arg(long)]
    pub no_prune: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Apply even when the deletion guard refuses.
    #[arg(long)]
    pub force: bool,
    /// What to do with managed rows edited or deleted by hand.
    #[arg(long, env = "ACCORD_DRIFT", default_value = "correct", value_parser = ["correct", "report"])]
    pub drift: String,
    /// Refuse a plan that deletes more than this share of the source's rows.
    #[arg(long, env = "ACCORD_MAX_DELETE_PERCENT", default_value_t = 25, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_delete_percent: u32,
    /// Who the audit log names; defaults to user@host.
    #[arg(long, env = "ACCORD_ACTOR")]
    pub actor: Option<String>,
    /// How far back deletions add up toward --max-delete-percent (e.g.
    /// `10m`; `0s` judges each apply alone).
    #[arg(long, env = "ACCORD_DELETION_WINDOW", default_value = "10m", value_parser = parse_duration_arg)]
    pub deletion_window: std::time::Duration,
}

fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(text)
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub action: Option<AuditCommand>,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Read the audit log from a running controller instead of the database.
    #[arg(long, env = "ACCORD_SERVER")]
    pub server: Option<String>,
    /// How many entries, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Only this source.
    #[arg(long)]
    pub source_name: Option<String>,
    /// Only this kind (Organization, Permit, Enrollment).
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<Kind>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the history's hash chain: exit 0 when every sync run and audit
    /// row is as accord wrote it, 1 naming the first row edited, inserted or
    /// removed behind its back.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Folder to write (must be empty or absent).
    #[arg(long)]
    pub out: PathBuf,
    /// Only rows managed by this source.
    #[arg(long)]
    pub managed_by: Option<String>,
}

fn parse_kind(text: &str) -> Result<Kind, String> {
    Kind::ALL
        .into_iter()
        .find(|k| k.as_str().eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            format!("unknown kind `{text}`, expected Organization, Permit or Enrollment")
        })
}

/// Runs a command and returns its exit code. `default_actor` is `user@host`.
pub fn run(cli: Cli, default_actor: &str) -> u8 {
    // The controller says where it listens and what it applies; a command
    // run by hand prints its own results and logs only what went wrong.
    let default_level = match cli.command {
        Command::Run(_) | Command::Ui(_) => "info",
        _ => "warn",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_new(cli.log.as_deref().unwrap_or(default_level))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only where a person reads a terminal.
        .with_ansi(std::io::stderr().is_terminal());
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let style = Style {
        color: match cli.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => std::io::stdout().is_terminal(),
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ERROR;
        }
    };
    match cli.command {
        Command::Validate(args) => validate(&args),
        Command::Lint(args) => lint::lint(&args, style),
        Command::Plan(args) => runtime.block_on(plan(&args, style)),
        Command::Apply(args) => runtime.block_on(apply(&args, style, default_actor)),
        Command::Audit(args) => runtime.block_on(audit(&args, style)),
        Command::Export(args) => runtime.block_on(export::export(&args)),
        Command::Run(args) => runtime.block_on(run_controller(&args, default_actor)),
        Command::Status(args) => runtime.block_on(remote::status(&args, style)),
        Command::Drift(args) => runtime.block_on(remote::drift(&args, style)),
        Command::Approve(args) => runtime.block_on(remote::approve(&args, default_actor)),
        Command::Crds(args) => {
            use crate::source::kubernetes::resources;
            print(&match args.output {
                CrdFormat::Yaml => resources::crds_yaml(),
                CrdFormat::Json => resources::crds_json() + "\n",
            })
        }
        Command::Ui(args) => runtime.block_on(ui(&args)),
        Command::Can(args) => runtime.block_on(access::can(&args, style)),
        Command::WhoCan(args) => runtime.block_on(access::who_can(&args, style)),
        Command::Access(args) => runtime.block_on(access::access(&args, style)),
        Command::Test(args) => runtime.block_on(access_test::test(&args, style)),
        Command::Diff(args) => diff::diff(&args, style),
        Command::Openapi => match crate::server::openapi().to_pretty_json() {
            Ok(json) => print(&(json + "\n")),
            Err(e) => {
                eprintln!("error: cannot write the OpenAPI document: {e}");
                ERROR
            }
        },
        Command::Schema => schema::schema(),
    }
}

/// Writes `text` to standard output; a closed pipe (`accord crds | head`)
/// is not an error worth a panic.
fn print(text: &str) -> u8 {
    use std::io::Write;
    match std::io::stdout().write_all(text.as_bytes()) {
        Ok(()) => OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => OK,
        Err(e) => {
            eprintln!("error: {}", sync::explain(&e));
            ERROR
        }
    }
}

/// Checks the files without keeping them or their objects: a million
/// objects take the memory of their keys.
fn validate(args: &ValidateArgs) -> u8 {
    let checked = directory::check_paths(&args.paths, args.limits.max_file_size, Limits::default());
    match checked {
        Err(e) => {
            eprintln!("error: {}", sync::explain(&e));
            ERROR
        }
        Ok(Ok(counts)) => {
            eprintln!(
                "ok: {} objects ({} organizations, {} permits, {} enrollments) in {} files",
                counts.objects(),
                counts.organizations,
                counts.permits,
                counts.enrollments,
                counts.files
            );
            OK
        }
        Ok(Err(errors)) => {
            output::print_diagnostics(&errors);
            ERROR
        }
    }
}

/// Parses the command line, or returns the exit code of a usage error
/// already printed: 1, as for every error (2 means `plan` found changes);
/// 0 for `--help` and `--version`.
pub fn parse_args() -> Result<Cli, u8> {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(error) => {
            let _ = error.print();
            match error.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Err(OK),
                _ => Err(ERROR),
            }
        }
    }
}

async fn connect(args: &DatabaseArgs) -> Option<AnyStore> {
    let migrate = args.migrate_database.as_deref();
    match AnyStore::connect_migrating_with(&args.database, migrate).await {
        Ok(store) => Some(store),
        Err(e) => {
            eprintln!("error: {}", sync::explain(&e));
            None
        }
    }
}

fn report_sync_error(error: &SyncError) -> u8 {
    if let SyncError::Invalid(diagnostics) = error {
        output::print_diagnostics(diagnostics);
    }
    eprintln!("error: {}", sync::explain(error));
    ERROR
}

/// How long `accord apply` waits for another writer of its source.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Reads the source while connecting to the database (which checks its
/// migrations), then runs the sync pipeline: a plan, or an apply under the
/// source's lock. The store and the result, or the exit code of an error
/// already reported.
async fn sync_folder(
    args: &PlanArgs,
    settings: &sync::Settings,
    mode: sync::Mode,
) -> Result<sync::Synced, u8> {
    let source = DirectorySource::new(&args.source, args.limits.max_file_size);
    let reading = {
        let source = source.clone();
        tokio::spawn(async move { sync::read_desired(&source, Limits::default()).await })
    };
    let Some(store) = connect(&args.database).await else {
        reading.abort();
        return Err(ERROR);
    };
    let desired = async {
        reading
            .await
            .map_err(|e| SyncError::Task("source reader", e))?
    };
    let result = sync::sync(&store, &source, desired, settings, mode, None).await;
    store.close().await;
    match result {
        Ok(synced) => Ok(synced),
        Err(failed) => Err(report_sync_error(&failed.error)),
    }
}

fn plan_settings(args: &PlanArgs, actor: &str) -> sync::Settings {
    let mut settings = sync::Settings::new(&args.source_name, actor);
    settings.plan = PlanOptions {
        prune: !args.no_prune,
    };
    settings
}

async fn plan(args: &PlanArgs, style: Style) -> u8 {
    let settings = plan_settings(args, "");
    let synced = match sync_folder(args, &settings, sync::Mode::Plan).await {
        Ok(synced) => synced,
        Err(code) => return code,
    };
    let planned = &synced.planned;
    match args.output {
        diff::ReportFormat::Text => output::print_plan(planned, &args.source_name, style),
        diff::ReportFormat::Json => output::print_plan_json(planned),
        diff::ReportFormat::Markdown => {
            print(&diff::plan_markdown(planned, &args.source_name, "plan"));
        }
    }
    let code = if planned.plan.is_pending() {
        PENDING
    } else {
        OK
    };
    // The process ends here; freeing every object one by one is wasted time.
    std::mem::forget(synced);
    code
}

async fn apply(args: &ApplyArgs, style: Style, default_actor: &str) -> u8 {
    let actor = args.actor.as_deref().unwrap_or(default_actor);
    let mut settings = plan_settings(&args.plan, actor);
    settings.drift = args.drift.parse().unwrap_or(DriftPolicy::Correct);
    settings.max_delete_percent = args.max_delete_percent;
    settings.deletion_window = args.deletion_window;
    settings.force = args.force;
    settings.record_unchanged = true;
    settings.cause = Some("accord apply".into());
    // Only the markdown report shows objects the plan does not change.
    settings.keep_declarations = args.plan.output == diff::ReportFormat::Markdown;
    let mode = sync::Mode::Apply(LockMode::Wait(LOCK_WAIT));
    let synced = match sync_folder(&args.plan, &settings, mode).await {
        Ok(synced) => synced,
        Err(code) => return code,
    };
    let planned = &synced.planned;
    let code = match &synced.outcome {
        sync::Outcome::Refused(refusal) => {
            if args.plan.output == diff::ReportFormat::Text {
                output::print_summary(&planned.plan.summary(), "would");
            }
            eprintln!("error: {refusal}; pass --force if that is intended");
            REFUSED
        }
        outcome => {
            match (args.plan.output, outcome.record()) {
                (diff::ReportFormat::Text, Some(record)) => {
                    output::print_applied(planned, record, settings.drift, style)
                }
                (diff::ReportFormat::Text, None) => {
                    output::print_summary(&planned.plan.summary(), "to")
                }
                (diff::ReportFormat::Json, _) => output::print_plan_json(planned),
                (diff::ReportFormat::Markdown, _) => {
                    print(&diff::plan_markdown(
                        planned,
                        &args.plan.source_name,
                        "apply",
                    ));
                }
            }
            OK
        }
    };
    std::mem::forget(synced);
    code
}

async fn verify(args: &VerifyArgs) -> u8 {
    let Some(store) = connect(&args.database).await else {
        return ERROR;
    };
    let report = store.verify_chain(Default::default()).await;
    store.close().await;
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {}", sync::explain(&e));
            return ERROR;
        }
    };
    if args.output == OutputFormat::Json {
        output::print_json(&output::chain_json(&report));
    } else if let Some(problem) = &report.problem {
        eprintln!("error: the history's hash chain is broken: {problem}");
    } else {
        println!("{}", output::chain_text(&report));
    }
    if report.problem.is_some() {
        ERROR
    } else {
        OK
    }
}

async fn audit(args: &AuditArgs, style: Style) -> u8 {
    if let Some(AuditCommand::Verify(verify_args)) = &args.action {
        return verify(verify_args).await;
    }
    if let Some(server) = &args.server {
        return remote::audit(server, args, style).await;
    }
    let Some(store) = connect(&args.database).await else {
        return ERROR;
    };
    let query = AuditQuery {
        source: args.source_name.clone(),
        kind: args.kind,
        limit: args.limit,
        ..AuditQuery::default()
    };
    let entries = store.audit(&query).await;
    store.close().await;
    match entries {
        Ok(entries) => {
            match args.output {
                OutputFormat::Text => output::print_audit(&entries, style),
                OutputFormat::Json => output::print_json(&entries),
            }
            OK
        }
        Err(e) => {
            eprintln!("error: {}", sync::explain(&e));
            ERROR
        }
    }
}

/// The configuration for `accord run`: the file, or one source from flags.
fn run_config(args: &RunArgs) -> Result<crate::config::Config, Vec<String>> {
    use crate::config::{self, GitConfig, Overrides};
    let overrides = Overrides {
        database: args.database.clone(),
        migrate_database: args.migrate_database.clone(),
        listen: args.listen.clone(),
        api_token_file: args.api_token_file.clone(),
        cache_dir: args.cache_dir.clone(),
    };
    let text = if let Some(path) = &args.config {
        std::fs::read_to_string(path)
            .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?
    } else {
        // One source from flags, written as the file would say it so both
        // paths share every check.
        let mut source = serde_json::Map::new();
        source.insert("name".into(), args.source_name.clone().into());
        if let Some(url) = &args.git {
            let git = GitConfig {
                url: url.clone(),
                reference: args.reference.clone(),
                path: args.path.clone(),
                token_file: args.token_file.clone(),
                ssh_key_file: args.ssh_key_file.clone(),
                ca_file: args.ca_file.clone(),
                known_hosts_file: args.known_hosts_file.clone(),
                webhook_secret_file: args.webhook_secret_file.clone(),
            };
            source.insert("git".into(), serde_json::to_value(git).unwrap_or_default());
        } else if let Some(directory) = &args.directory {
            source.insert("directory".into(), serde_json::json!({ "path": directory }));
        } else {
            return Err(vec![
                "accord run needs --config FILE, --git URL or --directory PATH".into(),
            ]);
        }
        source.insert("interval".into(), args.interval.clone().into());
        source.insert("drift".into(), args.drift.clone().into());
        source.insert("prune".into(), (!args.no_prune).into());
        source.insert("maxDeletePercent".into(), args.max_delete_percent.into());
        source.insert("deletionWindow".into(), args.deletion_window.clone().into());
        let doc = serde_json::json!({ "sources": [source] });
        crate::model::render::to_yaml(&doc)
    };
    let name = args
        .config
        .as_ref()
        .map_or_else(|| "command line".to_owned(), |p| p.display().to_string());
    config::parse(&name, &text, &overrides)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

async fn run_controller(args: &RunArgs, default_actor: &str) -> u8 {
    let config = match run_config(args) {
        Ok(config) => config,
        Err(errors) => {
            for error in errors {
                eprintln!("error: {error}");
            }
            return ERROR;
        }
    };
    let actor = args.actor.clone().unwrap_or_else(|| {
        format!(
            "accord@{}",
            default_actor.rsplit('@').next().unwrap_or("localhost")
        )
    });
    match serve_controller(&config, actor).await {
        Ok(()) => OK,
        Err(e) => {
            eprintln!("error: {}", sync::explain(&e));
            ERROR
        }
    }
}

/// `accord run`: binds the HTTP address first (a port in use fails at
/// once), starts the controller, serves its state until shutdown, and waits
/// for it to stop.
async fn serve_controller(
    config: &crate::config::Config,
    actor: String,
) -> Result<(), crate::controller::RunError> {
    use crate::controller::{self, RunError};
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Listen {
            address: config.listen.to_string(),
            source,
        })?;
    let address = listener.local_addr().unwrap_or(config.listen);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = controller::start(config, actor, shutdown.clone()).await?;
    tracing::info!(%address, sources = config.sources.len(), "accord is running: listening on http://{address}");
    let router = crate::server::router(running.state.clone());
    let served =
        crate::server::listen::serve(listener, router, config.http, shutdown.clone()).await;
    // The server stops on shutdown; so does a failed server take the rest down.
    shutdown.cancel();
    running.stopped().await;
    served.map_err(RunError::Serve)
}

/// `accord ui`: the operator's pages over a database, read-only, until
/// interrupted.
async fn ui(args: &UiArgs) -> u8 {
    let address: std::net::SocketAddr = match args.listen.parse() {
        Ok(address) => address,
        Err(_) => {
            eprintln!(
                "error: --listen `{}` is not an address like 127.0.0.1:8080",
                args.listen
            );
            return ERROR;
        }
    };
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: cannot listen on {address}: {}", sync::explain(&e));
            return ERROR;
        }
    };
    let store = match AnyStore::connect_existing(&args.database).await {
        Ok(store) => std::sync::Arc::new(store),
        Err(e) => {
            eprintln!("error: {}", sync::explain(&e));
            return ERROR;
        }
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let state = std::sync::Arc::new(crate::controller::state::State::browse(
        store.clone(),
        shutdown.clone(),
    ));
    let bound = listener.local_addr().unwrap_or(address);
    tracing::info!(address = %bound, "accord ui is read-only: listening on http://{bound}");
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
            shutdown.cancel();
        });
    }
    let router = crate::server::router(state);
    let served = crate::server::listen::serve(
        listener,
        router,
        crate::config::HttpLimits::default(),
        shutdown,
    )
    .await;
    store.close().await;
    match served {
        Ok(()) => OK,
        Err(e) => {
            eprintln!("error: {}", sync::explain(&e));
            ERROR
        }
    }
}
