//! Outbound notifications: operators are told when something needs them
//! (a failed sync and its recovery, an invalid revision, drift, conflicts, a
//! refused deletion, a broken history chain) instead of watching.
//!
//! Each receiver has its own queue and task: a message is queued without
//! waiting (a sync never waits for a receiver), limited to a number per
//! minute, and delivered in order with retries and backoff, so a receiver
//! that is down delays nothing else and gets its messages once it is back.

pub mod conditions;
pub mod providers;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::metrics::NotificationLabels;
use prometheus_client::metrics::{counter::Counter, family::Family};

type Counts = Family<NotificationLabels, Counter>;
use conditions::{ChainTracker, Event, Filter, Tracker};
use providers::Provider;

/// One receiver, as the configuration declares it.
#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    pub name: String,
    pub provider: Provider,
    /// The endpoint; Slack's incoming-webhook URL is a secret, so it may
    /// come from a file instead (`urlFile`).
    pub url: String,
    /// The generic webhook's HMAC key.
    pub secret: Option<String>,
    pub filter: Filter,
    /// Messages per minute at most; more are dropped and counted, and the
    /// next message says how many.
    pub max_per_minute: u32,
}

/// What a receiver has delivered, for the status and the UI.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverStatus {
    pub name: String,
    pub provider: String,
    pub delivered: u64,
    /// Attempts that failed (each retry counts).
    pub failed_attempts: u64,
    /// Messages dropped: over the rate limit, the queue full, or refused
    /// for good by the receiver (a 4xx other than 429).
    pub dropped: u64,
    /// Messages waiting, the one being retried included.
    pub pending: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_delivered_at: Option<DateTime<Utc>>,
}

/// Messages a receiver's queue holds at most; a receiver down for long
/// loses the oldest beyond it (counted as dropped).
const QUEUE: usize = 256;
/// The first retry's wait; each next one doubles, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(10);

struct Message {
    event: Event,
    delivery: String,
    /// Messages dropped by the rate limit just before this one.
    suppressed: u64,
}

struct Receiver {
    config: ReceiverConfig,
    queue: mpsc::Sender<Message>,
    status: Mutex<ReceiverStatus>,
    limit: Mutex<Bucket>,
}

/// A token bucket: `max_per_minute` tokens, refilled evenly.
struct Bucket {
    tokens: f64,
    at: Instant,
    suppressed: u64,
}

/// Every receiver, and the trackers that turn statuses into events.
pub struct Notifier {
    receivers: Vec<Arc<Receiver>>,
    metrics: Counts,
    external_url: Option<String>,
    chain: Mutex<ChainTracker>,
}

impl Notifier {
    /// Starts a delivery task per receiver; they stop with `shutdown`.
    pub fn start(
        configs: Vec<ReceiverConfig>,
        external_url: Option<String>,
        metrics: Counts,
        shutdown: CancellationToken,
    ) -> Arc<Notifier> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        let mut receivers = Vec::new();
        for config in configs {
            let (queue, inbox) = mpsc::channel(QUEUE);
            let receiver = Arc::new(Receiver {
                status: Mutex::new(ReceiverStatus {
                    name: config.name.clone(),
                    provider: config.provider.as_str().to_owned(),
                    ..ReceiverStatus::default()
                }),
                limit: Mutex::new(Bucket {
                    tokens: f64::from(config.max_per_minute),
                    at: Instant::now(),
                    suppressed: 0,
                }),
                config,
                queue,
            });
            tokio::spawn(deliver(
                Arc::clone(&receiver),
                inbox,
                client.clone(),
                external_url.clone(),
                metrics.clone(),
                shutdown.clone(),
            ));
            receivers.push(receiver);
        }
        Arc::new(Notifier {
            receivers,
            metrics,
            external_url,
            chain: Mutex::default(),
        })
    }

    /// Queues `event` for every receiver that takes it; never waits.
    pub fn send(&self, event: &Event) {
        for receiver in &self.receivers {
            if !receiver.config.filter.takes(event) {
                continue;
            }
            let provider = receiver.config.provider.as_str();
            let suppressed = {
                let mut bucket = receiver.limit.lock().unwrap_or_else(|e| e.into_inner());
                let per_minute = f64::from(receiver.config.max_per_minute);
                let refill = bucket.at.elapsed().as_secs_f64() * per_minute / 60.0;
                bucket.tokens = (bucket.tokens + refill).min(per_minute);
                bucket.at = Instant::now();
                if bucket.tokens < 1.0 {
                    bucket.suppressed += 1;
                    drop(bucket);
                    self.count(provider, "rate_limited");
                    lock(&receiver.status).dropped += 1;
                    continue;
                }
                bucket.tokens -= 1.0;
                std::mem::take(&mut bucket.suppressed)
            };
            let message = Message {
                event: event.clone(),
                delivery: delivery_id(),
                suppressed,
            };
            match receiver.queue.try_send(message) {
                Ok(()) => lock(&receiver.status).pending += 1,
                Err(_) => {
                    self.count(provider, "queue_full");
                    lock(&receiver.status).dropped += 1;
                }
            }
        }
    }

    /// Events of a source's new status (after `update` changed it).
    pub fn observe_source(
        &self,
        tracker: &Mutex<Tracker>,
        status: &crate::controller::state::SourceStatus,
    ) {
        let events = lock(tracker).observe(status, Utc::now());
        for event in &events {
            self.send(event);
        }
    }

    /// Events of the history's chain after a check.
    pub fn observe_history(&self, history: &crate::controller::state::HistoryStatus) {
        let event = lock(&self.chain).observe(history, Utc::now());
        if let Some(event) = event {
            self.send(&event);
        }
    }

    pub fn statuses(&self) -> Vec<ReceiverStatus> {
        self.receivers
            .iter()
            .map(|r| lock(&r.status).clone())
            .collect()
    }

    pub fn external_url(&self) -> Option<&str> {
        self.external_url.as_deref()
    }

    fn count(&self, provider: &str, outcome: &str) {
        count(&self.metrics, provider, outcome);
    }
}

fn count(metrics: &Counts, provider: &str, outcome: &str) {
    metrics
        .get_or_create(&NotificationLabels {
            provider: provider.to_owned(),
            outcome: outcome.to_owned(),
        })
        .inc();
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn delivery_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        Utc::now().timestamp_millis(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Why an attempt failed, and whether another may succeed.
enum Failure {
    Retry(String),
    Refused(String),
}

/// Delivers a receiver's messages in order, each until it is delivered or
/// refused for good.
async fn deliver(
    receiver: Arc<Receiver>,
    mut inbox: mpsc::Receiver<Message>,
    client: reqwest::Client,
    base: Option<String>,
    metrics: Counts,
    shutdown: CancellationToken,
) {
    let provider = receiver.config.provider.as_str();
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return,
            message = inbox.recv() => match message {
                Some(message) => message,
                None => return,
            },
        };
        let mut backoff = FIRST_BACKOFF;
        loop {
            match attempt(&receiver.config, &client, &message, base.as_deref()).await {
                Ok(()) => {
                    count(&metrics, provider, "delivered");
                    let mut status = lock(&receiver.status);
                    status.delivered += 1;
                    status.pending = status.pending.saturating_sub(1);
                    status.last_delivered_at = Some(Utc::now());
                    break;
                }
                Err(Failure::Refused(error)) => {
                    count(&metrics, provider, "refused");
                    tracing::warn!(receiver = %receiver.config.name, %error, "notification refused; dropped");
                    let mut status = lock(&receiver.status);
                    status.dropped += 1;
                    status.pending = status.pending.saturating_sub(1);
                    status.last_error = Some(error);
                    status.last_error_at = Some(Utc::now());
                    break;
                }
                Err(Failure::Retry(error)) => {
                    count(&metrics, provider, "failed");
                    tracing::warn!(receiver = %receiver.config.name, %error, retry_in = ?backoff, "notification not delivered; retrying");
                    {
                        let mut status = lock(&receiver.status);
                        status.failed_attempts += 1;
                        status.last_error = Some(error);
                        status.last_error_at = Some(Utc::now());
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

async fn attempt(
    config: &ReceiverConfig,
    client: &reqwest::Client,
    message: &Message,
    base: Option<&str>,
) -> Result<(), Failure> {
    let mut event = message.event.clone();
    if message.suppressed > 0 {
        event.summary.push_str(&format!(
            " ({} earlier message(s) suppressed by the rate limit)",
            message.suppressed
        ));
    }
    let (url, body) = match config.provider {
        Provider::Webhook => (
            config.url.clone(),
            providers::webhook_body(&event, &message.delivery, base),
        ),
        Provider::Slack => (config.url.clone(), providers::slack_body(&event, base)),
        Provider::Alertmanager => (
            format!("{}/api/v2/alerts", config.url.trim_end_matches('/')),
            providers::alertmanager_body(&event, base),
        ),
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let mut request = client
        .post(&url)
        .header("content-type", "application/json")
        .header(providers::EVENT_HEADER, event.kind.as_str())
        .header(providers::DELIVERY_HEADER, &message.delivery);
    if let Some(secret) = &config.secret {
        request = request.header(
            providers::SIGNATURE_HEADER,
            providers::sign(secret.as_bytes(), &body),
        );
    }
    // The URL may hold a secret (Slack's does): errors never quote it.
    let response =
        request.body(body).send().await.map_err(|e| {
            Failure::Retry(format!("cannot reach the receiver: {}", e.without_url()))
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else if status.as_u16() == 429 || status.is_server_error() {
        Err(Failure::Retry(format!("the receiver answered {status}")))
    } else {
        Err(Failure::Refused(format!("the receiver answered {status}")))
    }
}

/// A source's tracker and the notifier its events go to: what
/// `SourceHandle::update` calls after each change of the status.
pub struct Watcher {
    pub notifier: Arc<Notifier>,
    pub tracker: Mutex<Tracker>,
}

impl Watcher {
    pub fn new(notifier: Arc<Notifier>) -> Arc<Watcher> {
        Arc::new(Watcher {
            notifier,
            tracker: Mutex::default(),
        })
    }
}

/// A receiver's `urlFile` / `secretFile`: the first line, trimmed.
pub fn read_secret(path: &PathBuf) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}
