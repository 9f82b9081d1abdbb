//! The `accord run` configuration file: what to reconcile from where, read
//! with the same located parser as the sources, so a bad setting is one error
//! that names the file, line and field.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::model::de::from_node;
use crate::model::yaml::{self, Limits, Mark};
use crate::model::Diagnostic;
use crate::policy::DriftPolicy;
pub use crate::source::git::GitConfig;
pub use crate::source::kubernetes::KubernetesConfig;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_AUDIT_VERIFY_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub database: String,
    /// Where pending migrations are applied from (an owner role), if not
    /// through `database`.
    pub migrate_database: Option<String>,
    pub listen: SocketAddr,
    pub api_token_file: Option<PathBuf>,
    /// Where Git sources keep their fetched objects.
    pub cache_dir: PathBuf,
    pub sources: Vec<SourceConfig>,
    /// Replicas elect one leader through a Lease; only it writes.
    pub leader_election: Option<LeaderElectionConfig>,
    /// How often the history's hash chain is verified (from where the
    /// last check got to).
    pub audit_verify_interval: Duration,
    /// How the HTTP server treats connections.
    pub http: HttpLimits,
    /// Where to tell operators when something needs them.
    pub notifications: Vec<NotificationConfig>,
    /// The address operators reach accord at (its UI), for links in
    /// notifications.
    pub external_url: Option<String>,
}

/// The events a notification receiver may ask for.
pub const NOTIFICATION_EVENTS: [&str; 8] = [
    "sync-failed",
    "sync-recovered",
    "invalid-revision",
    "drift-detected",
    "drift-corrected",
    "conflict",
    "deletion-refused",
    "audit-chain-broken",
];

/// A notification receiver. Its secrets stay in files, read when accord starts.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationConfig {
    pub name: String,
    /// `webhook` (generic JSON, signed), `slack` or `alertmanager`.
    pub provider: String,
    /// The endpoint (Alertmanager: its base URL).
    #[serde(default)]
    pub url: Option<String>,
    /// A file holding the endpoint, for URLs that are secrets (Slack's).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// The webhook's HMAC-SHA256 key, in a file.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Only these events (all when empty).
    #[serde(default)]
    pub events: Vec<String>,
    /// Only these sources (all when empty).
    #[serde(default)]
    pub sources: Vec<String>,
    /// Messages per minute at most (default 30).
    #[serde(default)]
    pub max_per_minute: Option<u32>,
}

/// How the HTTP server treats connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a connection may take to send a request head, counted from
    /// when the server starts waiting for it: a slow client's whole head,
    /// or the quiet of an idle keep-alive connection.
    pub header_timeout: Duration,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
    /// The most connections held open at once; `None`: half of what the
    /// process's open-file limit leaves.
    pub max_connections: Option<usize>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: None,
        }
    }
}

/// The file's `http` block.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HttpConfig {
    /// How long a connection may take to send a request head (also how
    /// long an idle keep-alive connection stays open).
    #[serde(default)]
    header_timeout: Option<String>,
    /// How long a request body may take to arrive.
    #[serde(default)]
    body_timeout: Option<String>,
    /// The most connections held open; by default half of what the
    /// open-file limit leaves.
    #[serde(default)]
    max_connections: Option<usize>,
}

/// A Lease in the cluster decides which replica writes to the database and
/// to object statuses; the others watch and wait.
#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaderElectionConfig {
    #[serde(default = "default_lease_name")]
    pub lease_name: String,
    /// The namespace of the Lease (the one accord runs in).
    pub namespace: String,
    /// How long a leader's lease lasts without renewal, e.g. `15s`.
    #[serde(default = "default_lease_duration")]
    pub lease_duration: String,
    /// A kubeconfig file; in-cluster configuration or `$KUBECONFIG` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
}

fn default_lease_name() -> String {
    "accord-leader".into()
}

fn default_lease_duration() -> String {
    "15s".into()
}

#[derive(Clone, Debug, PartialEq)]
pub struct SourceConfig {
    pub name: String,
    pub kind: SourceKind,
    pub interval: Duration,
    pub drift: DriftPolicy,
    pub prune: bool,
    pub max_delete_percent: u32,
    /// How far back deletions add up toward `max_delete_percent`.
    pub deletion_window: Duration,
    pub max_file_size: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SourceKind {
    Git(GitConfig),
    Directory { path: PathBuf },
    Kubernetes(KubernetesConfig),
}

impl SourceKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceKind::Git(_) => "git",
            SourceKind::Directory { .. } => "directory",
            SourceKind::Kubernetes(_) => "kubernetes",
        }
    }
}

// ---- the file's shape --------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    migrate_database: Option<String>,
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    api_token_file: Option<PathBuf>,
    #[serde(default)]
    cache_dir: Option<PathBuf>,
    #[serde(default)]
    leader_election: Option<LeaderElectionConfig>,
    #[serde(default)]
    audit_verify_interval: Option<String>,
    #[serde(default)]
    http: Option<HttpConfig>,
    #[serde(default)]
    notifications: Vec<NotificationConfig>,
    #[serde(default)]
    external_url: Option<String>,
    /// Checked item by item below, so each source's errors are located.
    #[serde(default, rename = "sources")]
    _sources: Vec<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileSource {
    name: String,
    #[serde(default)]
    git: Option<GitConfig>,
    #[serde(default)]
    directory: Option<FileDirectory>,
    #[serde(default)]
    kubernetes: Option<KubernetesConfig>,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    drift: Option<String>,
    #[serde(default)]
    prune: Option<bool>,
    #[serde(default)]
    max_delete_percent: Option<u32>,
    #[serde(default)]
    deletion_window: Option<String>,
    #[serde(default)]
    max_file_size: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDirectory {
    path: PathBuf,
}

/// Settings given on the command line, which win over the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub database: Option<String>,
    pub migrate_database: Option<String>,
    pub listen: Option<String>,
    pub api_token_file: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
}

/// Parses a configuration file's text; `file` names it in errors.
pub fn parse(file: &str, text: &str, overrides: &Overrides) -> Result<Config, Vec<Diagnostic>> {
    let file: Arc<str> = Arc::from(file);
    let error = |mark: Mark, message: String| vec![Diagnostic::new(&file, mark, message)];
    let docs = yaml::load(text, Limits::default()).map_err(|e| error(e.mark, e.message))?;
    let root = match docs.into_iter().next().and_then(|d| d.root) {
        Some(root) if !root.is_null() => root,
        _ => return Err(error(Mark::START, "the configuration file is empty".into())),
    };
    let top: FileConfig =
        from_node(&root).map_err(|e| error(e.mark.unwrap_or(root.mark), e.message))?;
    let mut errors = Vec::new();
    let listen_text = overrides
        .listen
        .clone()
        .or(top.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.into());
    let listen = listen_text.parse().unwrap_or_else(|_| {
        let mark = root.get("listen").map_or(root.mark, |n| n.mark);
        errors.push(Diagnostic::new(
            &file,
            mark,
            format!("listen: `{listen_text}` is not an address like 127.0.0.1:8080"),
        ));
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let mut sources = Vec::new();
    let mut names = BTreeSet::new();
    let source_nodes = root
        .get("sources")
        .and_then(|n| n.as_seq())
        .unwrap_or_default();
    for node in source_nodes {
        let source: FileSource = match from_node(node) {
            Ok(source) => source,
            Err(e) => {
                errors.push(Diagnostic::new(
                    &file,
                    e.mark.unwrap_or(node.mark),
                    e.message,
                ));
                continue;
            }
        };
        let at = |field: &str| node.get(field).map_or(node.mark, |n| n.mark);
        let mut fail = |field: &str, message: String| {
            errors.push(Diagnostic::new(&file, at(field), message));
        };
        if crate::model::validate::id(&source.name).is_err() {
            fail(
                "name",
                format!(
                    "sources: name `{}` must be letters, digits, `.`, `_` or `-`",
                    source.name
                ),
            );
        }
        if !names.insert(source.name.clone()) {
            fail(
                "name",
                format!("sources: the name `{}` is used twice", source.name),
            );
        }
        let kind = match (source.git, source.directory, source.kubernetes) {
            (Some(git), None, None) => {
                if !is_git_url(&git.url) {
                    fail("git", format!("git.url `{}` must be an https://, ssh://, git@host:path or file:// URL", crate::redact::url(&git.url)));
                }
                Some(SourceKind::Git(git))
            }
            (None, Some(directory), None) => Some(SourceKind::Directory {
                path: directory.path,
            }),
            (None, None, Some(kubernetes)) => {
                for namespace in &kubernetes.namespaces {
                    if crate::model::validate::org_slug(namespace).is_err() {
                        fail(
                            "kubernetes",
                            format!("kubernetes.namespaces: `{namespace}` is not a namespace name"),
                        );
                    }
                }
                Some(SourceKind::Kubernetes(kubernetes))
            }
            _ => {
                fail(
                    "name",
                    format!(
                        "source `{}` needs exactly one of `git`, `directory`, `kubernetes`",
                        source.name
                    ),
                );
                None
            }
        };
        let interval = match source.interval.as_deref().map(parse_duration) {
            None => DEFAULT_INTERVAL,
            Some(Ok(d)) if !d.is_zero() => d,
            Some(_) => {
                fail(
                    "interval",
                    "interval must be a duration like 30s, 5m or 500ms".into(),
                );
                DEFAULT_INTERVAL
            }
        };
        let drift = match source.drift.as_deref().map(str::parse::<DriftPolicy>) {
            None => DriftPolicy::Correct,
            Some(Ok(policy)) => policy,
            Some(Err(message)) => {
                fail("drift", format!("drift: {message}"));
                DriftPolicy::Correct
            }
        };
        let max_delete_percent = source.max_delete_percent.unwrap_or(25);
        if max_delete_percent > 100 {
            fail(
                "maxDeletePercent",
                "maxDeletePercent must be between 0 and 100".into(),
            );
        }
        let deletion_window = match source.deletion_window.as_deref().map(parse_duration) {
            None => crate::policy::DEFAULT_DELETION_WINDOW,
            Some(Ok(d)) => d,
            Some(Err(_)) => {
                fail(
                    "deletionWindow",
                    "deletionWindow must be a duration like 10m, 1h or 0s".into(),
                );
                crate::policy::DEFAULT_DELETION_WINDOW
            }
        };
        if let Some(kind) = kind {
            sources.push(SourceConfig {
                name: source.name,
                kind,
                interval,
                drift,
                prune: source.prune.unwrap_or(true),
                max_delete_percent,
                deletion_window,
                max_file_size: source
                    .max_file_size
                    .unwrap_or(crate::source::DEFAULT_MAX_FILE_SIZE),
            });
        }
    }
    if let Some(election) = &top.leader_election {
        let at = root.get("leaderElection").map_or(root.mark, |n| n.mark);
        match parse_duration(&election.lease_duration) {
            Ok(d) if d >= Duration::from_secs(2) => {}
            _ => errors.push(Diagnostic::new(
                &file,
                at,
                "leaderElection.leaseDuration must be a duration of at least 2s, like 15s",
            )),
        }
    }
    let audit_verify_interval = match top.audit_verify_interval.as_deref().map(parse_duration) {
        None => DEFAULT_AUDIT_VERIFY_INTERVAL,
        Some(Ok(d)) if !d.is_zero() => d,
        Some(_) => {
            let at = root
                .get("auditVerifyInterval")
                .map_or(root.mark, |n| n.mark);
            errors.push(Diagnostic::new(
                &file,
                at,
                "auditVerifyInterval must be a duration like 1m or 30s",
            ));
            DEFAULT_AUDIT_VERIFY_INTERVAL
        }
    };
    let mut http = HttpLimits::default();
    if let Some(settings) = &top.http {
        let at = root.get("http").map_or(root.mark, |n| n.mark);
        let mut duration = |text: &Option<String>, field: &str, into: &mut Duration| match text
            .as_deref()
            .map(parse_duration)
        {
            None => {}
            Some(Ok(d)) if !d.is_zero() => *into = d,
            Some(_) => errors.push(Diagnostic::new(
                &file,
                at,
                format!("http.{field} must be a duration like 10s"),
            )),
        };
        duration(
            &settings.header_timeout,
            "headerTimeout",
            &mut http.header_timeout,
        );
        duration(
            &settings.body_timeout,
            "bodyTimeout",
            &mut http.body_timeout,
        );
        match settings.max_connections {
            Some(0) => errors.push(Diagnostic::new(
                &file,
                at,
                "http.maxConnections must be at least 1",
            )),
            Some(n) => http.max_connections = Some(n),
            None => {}
        }
    }
    let notification_nodes = root
        .get("notifications")
        .and_then(|n| n.as_seq())
        .unwrap_or_default();
    let mut receiver_names = BTreeSet::new();
    for (i, receiver) in top.notifications.iter().enumerate() {
        let node = notification_nodes.get(i);
        let at = |field: &str| {
            node.and_then(|n| n.get(field).or(Some(n)))
                .map_or(root.mark, |n| n.mark)
        };
        let mut fail = |field: &str, message: String| {
            errors.push(Diagnostic::new(&file, at(field), message));
        };
        if !receiver_names.insert(receiver.name.clone()) {
            fail(
                "name",
                format!("notifications: the name `{}` is used twice", receiver.name),
            );
        }
        if !["webhook", "slack", "alertmanager"].contains(&receiver.provider.as_str()) {
            fail(
                "provider",
                format!(
                    "notifications: provider `{}` is not webhook, slack or alertmanager",
                    receiver.provider
                ),
            );
        }
        if receiver.url.is_some() == receiver.url_file.is_some() {
            fail(
                "url",
                format!(
                    "notification `{}` needs exactly one of `url`, `urlFile`",
                    receiver.name
                ),
            );
        }
        if let Some(url) = &receiver.url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                fail(
                    "url",
                    format!(
                        "notification `{}`: url must be http:// or https://",
                        receiver.name
                    ),
                );
            }
        }
        for event in &receiver.events {
            if !NOTIFICATION_EVENTS.contains(&event.as_str()) {
                let hint = crate::model::suggest::hint(event, &NOTIFICATION_EVENTS);
                fail(
                    "events",
                    format!("notifications: unknown event `{event}`{hint}"),
                );
            }
        }
        for source in &receiver.sources {
            if !names.contains(source) {
                fail(
                    "sources",
                    format!("notifications: no source is named `{source}`"),
                );
            }
        }
        if receiver.max_per_minute == Some(0) {
            fail(
                "maxPerMinute",
                "notifications: maxPerMinute must be at least 1".into(),
            );
        }
    }
    if source_nodes.is_empty() && errors.is_empty() {
        errors.push(Diagnostic::new(
            &file,
            root.mark,
            "sources: at least one source is needed",
        ));
    }
    if !errors.is_empty() {
        errors.sort();
        return Err(errors);
    }
    Ok(Config {
        database: overrides
            .database
            .clone()
            .or(top.database)
            .unwrap_or_else(|| "sqlite://accord.db".into()),
        migrate_database: overrides.migrate_database.clone().or(top.migrate_database),
        listen,
        api_token_file: overrides.api_token_file.clone().or(top.api_token_file),
        cache_dir: overrides
            .cache_dir
            .clone()
            .or(top.cache_dir)
            .unwrap_or_else(|| PathBuf::from(".accord-cache")),
        sources,
        leader_election: top.leader_election,
        audit_verify_interval,
        http,
        notifications: top.notifications,
        external_url: top.external_url,
    })
}

fn is_git_url(url: &str) -> bool {
    ["https://", "http://", "ssh://", "file://", "git://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
        || (url.contains('@') && url.contains(':') && !url.contains("://"))
}

/// `500ms`, `30s`, `5m`, `1h`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 30s"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("`{text}` has an unknown unit; use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Config {
        parse("accord.yaml", text, &Overrides::default()).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn errors(text: &str) -> Vec<String> {
        match parse("accord.yaml", text, &Overrides::default()) {
            Ok(_) => panic!("expected errors"),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    const EXAMPLE: &str = "database: sqlite://accord.db
listen: 127.0.0.1:8080
apiTokenFile: /etc/accord/api-token
sources:
  - name: platform
    git:
      url: https://git.example.com/platform/access.git
      ref: main
      path: config
      tokenFile: /etc/accord/git-token
      webhookSecretFile: /etc/accord/hook-secret
    interval: 30s
    drift: correct
    prune: true
    maxDeletePercent: 25
  - name: local
    directory:
      path: ./config
";

    #[test]
    fn the_documented_example_parses() {
        let config = parse_ok(EXAMPLE);
        assert_eq!(config.listen.port(), 8080);
        assert_eq!(config.sources.len(), 2);
        let SourceKind::Git(git) = &config.sources[0].kind else {
            panic!("git")
        };
        assert_eq!(git.reference, "main");
        assert_eq!(git.path.as_deref(), Some("config"));
        assert_eq!(config.sources[0].interval, Duration::from_secs(30));
        assert_eq!(
            config.sources[1].kind,
            SourceKind::Directory {
                path: "./config".into()
            }
        );
    }

    #[test]
    fn a_misspelled_field_is_one_located_error() {
        let errors = errors("sources:\n  - name: a\n    directory:\n      pth: x\n");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("accord.yaml:4:7: unknown field `pth`"),
            "{errors:?}"
        );
    }

    #[test]
    fn bad_settings_name_their_field() {
        let errors = errors(
            "listen: nowhere\nsources:\n  - name: a\n    directory: {path: x}\n    interval: soon\n  - name: a\n    git: {url: ftp://x}\n    drift: sometimes\n",
        );
        let joined = errors.join("\n");
        assert!(
            joined.contains("accord.yaml:1:9: listen: `nowhere`"),
            "{joined}"
        );
        assert!(
            joined.contains("accord.yaml:5:15: interval must be a duration"),
            "{joined}"
        );
        assert!(
            joined.contains("accord.yaml:6:11: sources: the name `a` is used twice"),
            "{joined}"
        );
        assert!(joined.contains("git.url `ftp://x`"), "{joined}");
        assert!(
            joined.contains("accord.yaml:8:12: drift: unknown drift policy"),
            "{joined}"
        );
    }

    #[test]
    fn a_source_needs_exactly_one_kind() {
        let errors = errors("sources:\n  - name: a\n");
        assert!(
            errors[0].contains("needs exactly one of `git`, `directory`"),
            "{errors:?}"
        );
    }

    #[test]
    fn durations_read_like_go_durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn command_line_settings_win() {
        let overrides = Overrides {
            database: Some("postgres://x@y/z".into()),
            listen: Some("127.0.0.1:9999".into()),
            ..Default::default()
        };
        let config = parse("a.yaml", EXAMPLE, &overrides).expect("valid");
        assert_eq!(config.database, "postgres://x@y/z");
        assert_eq!(config.listen.port(), 9999);
    }

    #[test]
    fn notification_receivers_are_checked_and_located() {
        let base = "sources:\n  - name: main\n    directory: {path: config}\nnotifications:\n";
        let config = parse_ok(&format!(
            "{base}  - name: hook\n    provider: webhook\n    url: https://hooks.example.com/x\n    events: [drift-detected]\n    sources: [main]\n"
        ));
        assert_eq!(config.notifications.len(), 1);
        assert_eq!(config.notifications[0].events, ["drift-detected"]);
        let found = errors(&format!(
            "{base}  - name: a\n    provider: pager\n    url: https://x\n\
             \x20 - name: b\n    provider: slack\n    url: https://x\n    urlFile: /f\n\
             \x20 - name: c\n    provider: webhook\n    url: ftp://x\n    events: [drift-detcted]\n    sources: [nope]\n\
             \x20 - name: c\n    provider: alertmanager\n    url: http://am:9093\n    maxPerMinute: 0\n"
        ));
        for expected in [
            "accord.yaml:6:15: notifications: provider `pager` is not webhook, slack or alertmanager",
            "accord.yaml:10:10: notification `b` needs exactly one of `url`, `urlFile`",
            "accord.yaml:14:10: notification `c`: url must be http:// or https://",
            "accord.yaml:15:13: notifications: unknown event `drift-detcted` (did you mean `drift-detected`?)",
            "accord.yaml:16:14: notifications: no source is named `nope`",
            "accord.yaml:17:11: notifications: the name `c` is used twice",
            "accord.yaml:20:19: notifications: maxPerMinute must be at least 1",
        ] {
            assert!(found.iter().any(|e| e == expected), "missing {expected}: {found:#?}");
        }
    }
}
