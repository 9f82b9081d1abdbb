//! `accord run`: one worker per source, file watchers for folders, the HTTP
//! server, and a graceful shutdown that lets an in-flight sync finish.

pub mod leader;
pub mod notifications;
pub mod report;
pub mod state;
pub mod worker;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::event::{MetadataKind, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, KubernetesConfig, SourceKind};
use crate::metrics::Metrics;
use crate::source::kubernetes::{lease_reference, namespace_reference, Feeds, KubernetesSource};
use crate::source::{DirectorySource, GitSource};
use crate::store::{AnyStore, Store, StoreError};
use state::{SourceHandle, SourceStatus, State};
use worker::{AnySource, Worker};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read {what} from {path}")]
    Secret {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {address}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch {path}")]
    Watch {
        path: String,
        #[source]
        source: notify::Error,
    },
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
    #[error("cannot read the kubeconfig")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("cannot find a Kubernetes configuration (in-cluster or $KUBECONFIG)")]
    InferConfig(#[from] kube::config::InferConfigError),
    #[error("cannot make a Kubernetes client")]
    KubeClient(#[from] kube::Error),
}

/// A client for the cluster: from a kubeconfig file when given, else
/// in-cluster configuration or `$KUBECONFIG`.
async fn kube_client(kubeconfig: Option<&Path>) -> Result<kube::Client, RunError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer().await?,
    };
    kube_client_for(config)
}

/// kube's own client stack (retries, auth, headers, timeouts), with `TCP_NODELAY` on its connections: a
/// status write is a small request, and with Nagle's algorithm on, each one
/// on a kept-alive connection waited for the server's delayed ACK (about 40
/// ms), which capped a connection at some 22 writes a second.
fn kube_client_for(config: kube::Config) -> Result<kube::Client, RunError> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use kube::client::ConfigExt;
    use tower::ServiceBuilder;

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = config.rustls_https_connector_with_connector(http)?;
    // The timeouts kube sets: a watch that stops answering is dropped and
    // started again rather than waited on forever.
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.default_retry.then(|| {
            tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry())
        }))
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(client);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// This replica's name on Leases and Events: the pod name (the hostname in
/// a pod) and the process id, so replicas on one host differ too.
fn identity() -> String {
    let host = whoami::hostname().unwrap_or_else(|_| "accord".into());
    format!("{host}-{}", std::process::id())
}

/// A quiet period after the last file event before a folder is synced, so an
/// editor's save or a `git checkout` is seen once, whole.
const DEBOUNCE: Duration = Duration::from_millis(750);
/// The longest a folder that keeps changing waits for a quiet moment.
const MAX_SETTLE: Duration = Duration::from_secs(30);

/// The notification receivers, their secrets read now; none configured: none.
fn start_notifier(
    config: &Config,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<Option<Arc<notifications::Notifier>>, RunError> {
    use notifications::conditions::{EventKind, Filter};
    use notifications::providers::Provider;
    if config.notifications.is_empty() {
        return Ok(None);
    }
    let mut receivers = Vec::new();
    for receiver in &config.notifications {
        let url = match (&receiver.url, &receiver.url_file) {
            (Some(url), _) => url.clone(),
            (None, Some(file)) => read_secret("a notification URL", file)?,
            (None, None) => String::new(),
        };
        let secret = receiver
            .secret_file
            .as_deref()
            .map(|p| read_secret("a notification secret", p))
            .transpose()?;
        let provider = match receiver.provider.as_str() {
            "slack" => Provider::Slack,
            "alertmanager" => Provider::Alertmanager,
            _ => Provider::Webhook,
        };
        receivers.push(notifications::ReceiverConfig {
            name: receiver.name.clone(),
            provider,
            url,
            secret,
            filter: Filter {
                kinds: receiver
                    .events
                    .iter()
                    .filter_map(|e| EventKind::parse(e))
                    .collect(),
                sources: receiver.sources.iter().cloned().collect(),
            },
            max_per_minute: receiver.max_per_minute.unwrap_or(30),
        });
    }
    Ok(Some(notifications::Notifier::start(
        receivers,
        config.external_url.clone(),
        metrics.notifications.clone(),
        shutdown.clone(),
    )))
}

fn read_secret(what: &'static str, path: &Path) -> Result<String, RunError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| RunError::Secret {
            what,
            path: path.display().to_string(),
            source,
        })
}

/// Whether a file-system event changes the tree. Reading the tree for a sync
/// produces access events (and, on some mounts, access-time updates); those
/// must not trigger a sync, or the watcher would never rest.
fn is_change(kind: &EventKind) -> bool {
    let atime = EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime));
    *kind != atime
        && matches!(
            kind,
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
        )
}

/// Watches a folder and asks for a sync once changes have been quiet for
/// `DEBOUNCE`: every new event restarts the wait, so a long burst (a slow
/// `git checkout`) is one sync of the final tree. A tree that never goes quiet
/// is still synced after `MAX_SETTLE`.
fn watch(path: &Path, handle: Arc<SourceHandle>) -> Result<notify::RecommendedWatcher, RunError> {
    let watch_error = |source| RunError::Watch {
        path: path.display().to_string(),
        source,
    };
    let (events, changes) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| is_change(&e.kind)) {
            let _ = events.send(());
        }
    })
    .map_err(watch_error)?;
    watcher
        .watch(path, RecursiveMode::Recursive)
        .map_err(watch_error)?;
    tokio::spawn(settle(changes, DEBOUNCE, MAX_SETTLE, handle, "file change"));
    Ok(watcher)
}

/// Asks `handle` for a sync once `changes` have been quiet for `quiet`
/// (every change restarts the wait), or after `longest` of changes that
/// never pause: a burst is seen whole, by one sync.
async fn settle(
    mut changes: mpsc::UnboundedReceiver<()>,
    quiet: Duration,
    longest: Duration,
    handle: Arc<SourceHandle>,
    reason: &'static str,
) {
    while changes.recv().await.is_some() {
        handle.update(|s| s.pending_changes = true);
        let started = tokio::time::Instant::now();
        loop {
            match tokio::time::timeout(quiet, changes.recv()).await {
                Ok(Some(())) if started.elapsed() < longest => continue,
                Ok(Some(())) => break,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        // Pending until the sync it asks for has begun: poked first.
        handle.poke(reason);
        handle.update(|s| s.pending_changes = false);
    }
}

/// Kubernetes changes settle briefly before a sync: the deletions of a
/// deleted namespace or CRD arrive as a burst of events within
/// milliseconds, and one sync of the whole burst is what the deletion
/// guard must judge (a wipe, refused at once), not its first few events.
const KUBERNETES_SETTLE: Duration = Duration::from_millis(300);
const KUBERNETES_MAX_SETTLE: Duration = Duration::from_secs(5);

/// A started controller: the state its HTTP API serves, and what it waits
/// for when it stops.
pub struct Running {
    pub state: Arc<State>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    campaign: Option<tokio::task::JoinHandle<()>>,
    /// File watchers live as long as the controller.
    watchers: Vec<notify::RecommendedWatcher>,
}

impl Running {
    /// Once `shutdown` is cancelled: waits for every worker to finish the
    /// sync it is in (its transaction commits or rolls back), and for the
    /// leader Lease to be released.
    pub async fn stopped(self) {
        for worker in self.workers {
            let _ = worker.await;
        }
        // The campaign releases a held Lease as it stops, so a follower
        // takes over at once instead of after a whole lease; the process
        // must not exit before it has (whichever signal stopped it).
        if let Some(campaign) = self.campaign {
            if tokio::time::timeout(Duration::from_secs(5), campaign)
                .await
                .is_err()
            {
                tracing::warn!("the leader lease was not released in time");
            }
        }
        drop(self.watchers);
        self.state.store.close().await;
        tracing::info!("accord stopped");
    }
}

/// Starts every source's worker, the watches, the leader election and the
/// history check, until SIGTERM or SIGINT (or `shutdown` is cancelled).
/// The caller serves `Running::state` over HTTP.
pub async fn start(
    config: &Config,
    actor: String,
    shutdown: CancellationToken,
) -> Result<Running, RunError> {
    let store = Arc::new(
        AnyStore::connect_migrating_with(&config.database, config.migrate_database.as_deref())
            .await?,
    );
    let api_token = config
        .api_token_file
        .as_deref()
        .map(|p| read_secret("the API token", p))
        .transpose()?;
    let identity = identity();
    // One client for the whole process, made only when something needs it.
    let needs_cluster = config.leader_election.is_some()
        || config
            .sources
            .iter()
            .any(|s| matches!(s.kind, SourceKind::Kubernetes(_)));
    let client = if needs_cluster {
        let kubeconfig = config
            .sources
            .iter()
            .find_map(|s| match &s.kind {
                SourceKind::Kubernetes(KubernetesConfig { kubeconfig, .. }) => kubeconfig.clone(),
                _ => None,
            })
            .or_else(|| {
                config
                    .leader_election
                    .as_ref()
                    .and_then(|e| e.kubeconfig.clone())
            });
        Some(kube_client(kubeconfig.as_deref()).await?)
    } else {
        None
    };
    let metrics = Metrics::default();
    let notifier = start_notifier(config, &metrics, &shutdown)?;
    let mut feeds: Vec<(usize, Feeds)> = Vec::new();
    let mut handles = Vec::new();
    let mut workers = Vec::new();
    for source in &config.sources {
        let (trigger, requests) = mpsc::channel(16);
        let (location, any, secret) = match &source.kind {
            SourceKind::Directory { path } => (
                path.display().to_string(),
                AnySource::Directory(DirectorySource::new(path, source.max_file_size)),
                None,
            ),
            SourceKind::Git(git) => (
                format!(
                    "{} @ {}{}",
                    crate::redact::url(&git.url),
                    git.reference,
                    git.path
                        .as_ref()
                        .map(|p| format!(" ({p})"))
                        .unwrap_or_default()
                ),
                AnySource::Git(GitSource::new(
                    git.clone(),
                    &config.cache_dir,
                    &source.name,
                    source.max_file_size,
                )),
                git.webhook_secret_file
                    .as_deref()
                    .map(|p| read_secret("the webhook secret", p))
                    .transpose()?,
            ),
            SourceKind::Kubernetes(kubernetes) => {
                let Some(client) = client.clone() else {
                    unreachable!("a client is made whenever a kubernetes source exists")
                };
                let feed = Feeds::new(&kubernetes.namespaces);
                let cache = feed.cache();
                feeds.push((handles.len(), feed));
                let scope = if kubernetes.namespaces.is_empty() {
                    "all namespaces".to_owned()
                } else {
                    kubernetes.namespaces.join(", ")
                };
                // Refused deletions are told on the leader Lease, or else on
                // the (first) watched namespace: objects that outlive the
                // source's own.
                let about = match &config.leader_election {
                    Some(election) => lease_reference(&election.namespace, &election.lease_name),
                    None => namespace_reference(
                        kubernetes
                            .namespaces
                            .first()
                            .map_or("default", String::as_str),
                    ),
                };
                (
                    format!("accord.dev/v1alpha1 in {scope}"),
                    AnySource::Kubernetes(Box::new(
                        KubernetesSource::new(client, cache, &identity).with_events_about(about),
                    )),
                    None,
                )
            }
        };
        let handle = Arc::new(SourceHandle {
            name: source.name.clone(),
            status: RwLock::new(SourceStatus::new(
                &source.name,
                source.kind.type_name(),
                location,
            )),
            trigger,
            webhook_secret: secret,
            watcher: notifier.clone().map(notifications::Watcher::new),
        });
        handles.push(handle.clone());
        workers.push((handle, any, source.clone(), requests));
    }
    let leadership = config
        .leader_election
        .as_ref()
        .map(|_| Arc::new(leader::Leadership::new(&identity)));
    let state = Arc::new(State {
        metrics,
        api_token,
        shutdown: shutdown.clone(),
        leadership: leadership.clone(),
        notifier,
        ..State::new(handles, store)
    });
    let mut campaign_task = None;
    if let (Some(election), Some(leadership), Some(client)) =
        (&config.leader_election, &leadership, &client)
    {
        let duration = crate::config::parse_duration(&election.lease_duration)
            .unwrap_or(Duration::from_secs(15));
        let campaign = leader::Election::new(
            client.clone(),
            &election.namespace,
            &election.lease_name,
            duration,
            leadership.clone(),
        );
        campaign_task = Some(tokio::spawn(campaign.run(shutdown.clone())));
        // A new leader syncs every source at once instead of at its next interval.
        let (leadership, state) = (leadership.clone(), state.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = state.shutdown.cancelled() => break,
                    _ = leadership.changed() => {}
                }
                if leadership.is_leader() {
                    for handle in &state.sources {
                        handle.poke("elected leader");
                    }
                }
            }
        });
    }
    // Watches run on every replica, so a follower that takes over has a warm cache.
    for (index, feed) in feeds {
        let (Some(client), Some(handle)) = (client.clone(), state.sources.get(index).cloned())
        else {
            continue;
        };
        let (changes, settled) = mpsc::unbounded_channel::<()>();
        tokio::spawn(settle(
            settled,
            KUBERNETES_SETTLE,
            KUBERNETES_MAX_SETTLE,
            handle,
            "kubernetes change",
        ));
        feed.follow(
            client,
            Arc::new(move || {
                let _ = changes.send(());
            }),
            shutdown.clone(),
        );
    }

    // File watchers live as long as this function.
    let mut watchers = Vec::new();
    for (handle, _, source, _) in &workers {
        if let SourceKind::Directory { path } = &source.kind {
            watchers.push(watch(path, handle.clone())?);
        }
    }

    let mut tasks = Vec::new();
    for (handle, source, source_config, requests) in workers {
        let worker = Worker::new(handle, state.clone(), source, source_config, actor.clone());
        tasks.push(tokio::spawn(worker.run(requests)));
    }
    tokio::spawn(watch_history(state.clone(), config.audit_verify_interval));
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    Ok(Running {
        state,
        workers: tasks,
        campaign: campaign_task,
        watchers,
    })
}

/// Verifies the history's hash chain at start and then every `interval`,
/// each time from where the last check got to (and first checking that
/// that row is still what it was), so a check costs what was appended.
async fn watch_history(state: Arc<State>, interval: Duration) {
    let mut position = crate::store::chain::Position::default();
    let mut reported: Option<String> = None;
    loop {
        match state.store.verify_chain(position).await {
            Ok(report) => {
                let problem = report.problem.as_ref().map(ToString::to_string);
                if problem.is_none() {
                    position = report.head;
                }
                if problem.is_some() && problem != reported {
                    tracing::error!(problem = %problem.as_deref().unwrap_or_default(), "the history's hash chain is broken");
                }
                state
                    .metrics
                    .audit_chain_ok
                    .set(i64::from(problem.is_none()));
                let mut history = state.history.write().unwrap_or_else(|e| e.into_inner());
                history.ok = Some(problem.is_none());
                history.problem = problem.clone();
                history.verified_at = Some(chrono::Utc::now());
                history.sync_runs += report.sync_runs;
                history.audit_rows += report.audit_rows;
                if let Some(notifier) = &state.notifier {
                    notifier.observe_history(&history);
                }
                reported = problem;
            }
            Err(error) => tracing::warn!(%error, "cannot verify the history's hash chain"),
        }
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
        _ = shutdown.cancelled() => return,
    }
    tracing::info!("shutting down: finishing syncs in flight");
    shutdown.cancel();
}
