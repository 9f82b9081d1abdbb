//! `accord can`, `accord who-can` and `accord access`: what the objects
//! mean, from a folder, a Git revision or the live database.

use std::fmt::Write as _;

use clap::Args;

use super::state::{load_or_report, StateArgs};
use super::{output, OutputFormat, Style, ERROR, OK, PENDING};
use crate::access::{
    Access, Decision, GrantRef, Holding, Path, PermitRef, Subject, SubjectAccess, WhoCan,
};

#[derive(Debug, Args)]
pub struct CanArgs {
    /// The subject (`user:ID`, `contact:EMAIL`, `slug:NAME`; give a user
    /// and a contact together for one person with both), then the
    /// permission, e.g. `user:alice payment-svc:process`.
    #[arg(required = true, num_args = 2.., value_name = "SUBJECT... PERMISSION")]
    pub words: Vec<String>,
    /// Print every path that grants it: grant → role → permit, each with
    /// its place.
    #[arg(long)]
    pub explain: bool,
    #[command(flatten)]
    pub query: QueryArgs,
}

#[derive(Debug, Args)]
pub struct WhoCanArgs {
    /// The permission, e.g. `payment-svc:refund`.
    pub permission: String,
    #[command(flatten)]
    pub query: QueryArgs,
}

#[derive(Debug, Args)]
pub struct AccessArgs {
    /// The subject: `user:ID`, `contact:EMAIL`, `slug:NAME` (repeat to
    /// combine a user and a contact).
    #[arg(required = true, value_name = "SUBJECT")]
    pub subject: Vec<String>,
    #[command(flatten)]
    pub query: QueryArgs,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Only this app.
    #[arg(long)]
    pub app: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Reads the state and builds its index, timing each step: the timings go
/// to the log at debug level under `accord::timing` (what the access
/// benchmark reads).
async fn indexed(query: &QueryArgs) -> Option<(Access, std::time::Instant)> {
    let started = std::time::Instant::now();
    let state = load_or_report(&query.state.spec(), query.state.max_file_size).await?;
    let read = started.elapsed();
    let access = state.into_access();
    let index = started.elapsed() - read;
    tracing::debug!(
        target: "accord::timing",
        read_s = read.as_secs_f64(),
        index_s = index.as_secs_f64(),
        "state read and indexed"
    );
    Some((access, std::time::Instant::now()))
}

fn query_done(asked: std::time::Instant) {
    tracing::debug!(
        target: "accord::timing",
        query_s = asked.elapsed().as_secs_f64(),
        "query answered"
    );
}

fn subject(words: &[String]) -> Option<Subject> {
    match Subject::parse(words.iter().map(String::as_str)) {
        Ok(subject) => Some(subject),
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

/// Exit 0 when allowed, 2 when denied, 1 on error.
pub async fn can(args: &CanArgs, style: Style) -> u8 {
    let Some((permission, words)) = args.words.split_last() else {
        return ERROR;
    };
    let Some(subject) = subject(words) else {
        return ERROR;
    };
    let query = &args.query;
    let Some((access, asked)) = indexed(query).await else {
        return ERROR;
    };
    let decision = access.can(&subject, permission, query.app.as_deref());
    match query.output {
        OutputFormat::Json => output::print_json(&decision),
        OutputFormat::Text => print!("{}", can_text(&decision, args.explain, style)),
    }
    query_done(asked);
    if decision.allowed {
        OK
    } else {
        PENDING
    }
}

pub async fn who_can(args: &WhoCanArgs, style: Style) -> u8 {
    let query = &args.query;
    let Some((access, asked)) = indexed(query).await else {
        return ERROR;
    };
    let who = access.who_can_by_app(&args.permission, query.app.as_deref());
    match query.output {
        OutputFormat::Json => output::print_json(&who),
        OutputFormat::Text => print!("{}", who_can_text(&who, style)),
    }
    query_done(asked);
    OK
}

pub async fn access(args: &AccessArgs, style: Style) -> u8 {
    let Some(subject) = subject(&args.subject) else {
        return ERROR;
    };
    let query = &args.query;
    let Some((access, asked)) = indexed(query).await else {
        return ERROR;
    };
    let held = access.access_by_app(&subject, query.app.as_deref());
    match query.output {
        OutputFormat::Json => output::print_json(&held),
        OutputFormat::Text => print!("{}", access_text(&held, style)),
    }
    query_done(asked);
    OK
}

pub fn can_text(decision: &Decision, explain: bool, style: Style) -> String {
    let mut out = String::new();
    let (subject, permission) = (&decision.subject, &decision.permission_id);
    if decision.allowed {
        let mut apps: Vec<&str> = decision.paths.iter().map(|p| p.app.as_str()).collect();
        apps.dedup();
        let _ = writeln!(
            out,
            "{}: {subject} can {permission} in app {}",
            style.paint("32", "allowed"),
            apps.join(", ")
        );
        if explain {
            for path in &decision.paths {
                out.push_str(&path_text(path, "  "));
            }
        } else {
            let _ = writeln!(
                out,
                "  through {} path(s); --explain shows each",
                decision.paths.len()
            );
        }
        return out;
    }
    let _ = writeln!(
        out,
        "{}: {subject} cannot {permission}",
        style.paint("31", "denied")
    );
    if decision.permits.is_empty() {
        let _ = writeln!(
            out,
            "  no permit grants {permission} (in the apps asked about)"
        );
    } else {
        let _ = writeln!(out, "  {permission} is granted by:");
        for permit in &decision.permits {
            let _ = writeln!(out, "    {}", permit_text(permit));
        }
        let _ = writeln!(
            out,
            "  {subject} holds none of those roles and is none of those slugs in those apps"
        );
    }
    out
}

fn permit_text(permit: &PermitRef) -> String {
    let mut to = Vec::new();
    if !permit.roles.is_empty() {
        to.push(format!("roles {}", permit.roles.join(", ")));
    }
    if !permit.slugs.is_empty() {
        to.push(format!("slugs {}", permit.slugs.join(", ")));
    }
    format!(
        "permit {} in app {} to {} ({})",
        permit.id,
        permit.app,
        to.join(" and "),
        permit.place
    )
}

/// What grants a role, in a few words: `enrollment e1, FILE:L:C`.
fn grant_source(grant: &GrantRef) -> String {
    let what = match &grant.member_role {
        Some(role) => format!("member of organization {} as {role}", grant.id),
        None if grant.app == crate::access::EVERY_APP => {
            format!("enrollment {} in every app", grant.id)
        }
        None => format!("enrollment {}", grant.id),
    };
    format!("{what}, {}", grant.place)
}

fn grant_text(grant: &GrantRef) -> String {
    let what = match &grant.member_role {
        Some(role) => format!("membership of organization {} as {role}", grant.id),
        None => format!("enrollment {}", grant.id),
    };
    let app = if grant.app == crate::access::EVERY_APP {
        " in every app".to_owned()
    } else {
        String::new()
    };
    format!(
        "{what} ({}) gives {} the role {}{app}",
        grant.place, grant.holder, grant.role
    )
}

/// One path, on two lines: how the role is held, then the permit.
fn path_text(path: &Path, indent: &str) -> String {
    let permit = &path.permit;
    match (&path.slug, &path.grant, &path.pattern) {
        (Some(slug), ..) => format!(
            "{indent}app {}: permit {} ({}) names slug {slug}\n",
            path.app, permit.id, permit.place
        ),
        (None, Some(grant), Some(pattern)) => format!(
            "{indent}app {}: {}\n{indent}  → permit {} ({}) grants {} to {pattern}\n",
            path.app,
            grant_text(grant),
            permit.id,
            permit.place,
            path.permission_id
        ),
        _ => String::new(),
    }
}

pub fn who_can_text(who: &WhoCan, style: Style) -> String {
    let mut out = String::new();
    if who.apps.is_empty() {
        let _ = writeln!(out, "nobody holds {}", who.permission_id);
        return out;
    }
    for (app, holdings) in &who.apps {
        let _ = writeln!(out, "{}", style.paint("1", &format!("app {app}:")));
        for holding in holdings {
            let _ = writeln!(out, "  {}", holding_text(holding));
        }
    }
    out
}

/// One holder and how it holds the permission, on one line.
pub(super) fn holding_text(holding: &Holding) -> String {
    let how = match &holding.path.grant {
        Some(grant) => format!("role {} ({})", grant.role, grant_source(grant)),
        None => "named by".to_owned(),
    };
    format!(
        "{}  {how} → permit {} ({})",
        holding.holder, holding.path.permit.id, holding.path.permit.place
    )
}

pub fn access_text(held: &SubjectAccess, style: Style) -> String {
    let mut out = String::new();
    if held.apps.is_empty() {
        let _ = writeln!(out, "{} holds no permission", held.subject);
        return out;
    }
    for (app, paths) in &held.apps {
        let _ = writeln!(out, "{}", style.paint("1", &format!("app {app}:")));
        for path in paths {
            let how = match (&path.slug, &path.grant) {
                (Some(slug), _) => format!("as slug {slug}"),
                (None, Some(grant)) => {
                    format!("through role {} ({})", grant.role, grant_source(grant))
                }
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  {}  {how} → permit {} ({})",
                path.permission_id, path.permit.id, path.permit.place
            );
        }
    }
    out
}
