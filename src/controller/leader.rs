//! Lease-based leader election: of several replicas, only the holder of a
//! `coordination.k8s.io/v1` Lease writes to the database and to object
//! statuses; the others keep their watch caches warm and wait.
//!
//! The holder renews every third of the lease duration and stops leading
//! on its own once it has failed to renew for two thirds of it, so it has
//! stepped down before anyone else may take over. A follower takes over as
//! soon as the lease has gone a whole duration without renewal, waking at
//! that moment rather than at its next poll; a leader that shuts down
//! releases the lease so a follower takes over at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use tokio_util::sync::CancellationToken;

/// Who leads, as this replica last saw it.
pub struct Leadership {
    pub identity: String,
    leading: AtomicBool,
    holder: Mutex<Option<String>>,
    changed: tokio::sync::Notify,
}

impl Leadership {
    pub fn new(identity: &str) -> Leadership {
        Leadership {
            identity: identity.to_owned(),
            leading: AtomicBool::new(false),
            holder: Mutex::new(None),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// A replica whose role is fixed (tests, and the standby case in them).
    pub fn fixed(identity: &str, leading: bool) -> Leadership {
        let leadership = Leadership::new(identity);
        leadership.set(leading, leading.then(|| identity.to_owned()));
        leadership
    }

    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// The replica holding the lease, if any.
    pub fn holder(&self) -> Option<String> {
        self.holder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Resolves when leadership may have changed.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn set(&self, leading: bool, holder: Option<String>) {
        let was = self.leading.swap(leading, Ordering::AcqRel);
        *self.holder.lock().unwrap_or_else(|e| e.into_inner()) = holder;
        if was != leading {
            if leading {
                tracing::info!(identity = %self.identity, "leading: this replica now writes");
            } else {
                tracing::info!(identity = %self.identity, "standing by: another replica leads");
            }
            self.changed.notify_waiters();
        }
    }
}

pub struct Election {
    pub api: Api<Lease>,
    pub name: String,
    pub duration: Duration,
    pub leadership: Arc<Leadership>,
}

impl Election {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        duration: Duration,
        leadership: Arc<Leadership>,
    ) -> Election {
        Election {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            duration,
            leadership,
        }
    }

    /// Campaigns and renews until `shutdown`, then releases a held lease.
    pub async fn run(self, shutdown: CancellationToken) {
        let renew_every = self.duration / 3;
        let mut last_renewal: Option<Instant> = None;
        loop {
            let wait = match self.attempt().await {
                Ok(Attempt::Leading) => {
                    last_renewal = Some(Instant::now());
                    self.leadership
                        .set(true, Some(self.leadership.identity.clone()));
                    renew_every
                }
                Ok(Attempt::Following { holder, expires_in }) => {
                    last_renewal = None;
                    self.leadership.set(false, holder);
                    expires_in.clamp(Duration::from_millis(50), renew_every)
                }
                Err(error) => {
                    tracing::warn!(%error, lease = %self.name, "lease not renewed");
                    // Step down before the lease can expire for the others.
                    if last_renewal.is_none_or(|t| t.elapsed() >= renew_every * 2) {
                        self.leadership.set(false, self.leadership.holder());
                    }
                    Duration::from_secs(1).min(renew_every)
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if self.leadership.is_leader() {
            self.leadership.set(false, None);
            if let Err(error) = self.release().await {
                tracing::warn!(%error, lease = %self.name, "lease not released");
            }
        }
    }

    async fn attempt(&self) -> Result<Attempt, kube::Error> {
        let me = &self.leadership.identity;
        let now = Timestamp::now();
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            self.api.create(&PostParams::default(), &lease).await?;
            return Ok(Attempt::Leading);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        if holder.as_deref() != Some(me.as_str()) {
            let held_for = SignedDuration::from_secs(i64::from(
                spec.lease_duration_seconds.unwrap_or(seconds),
            ));
            let expires = spec
                .renew_time
                .as_ref()
                .map(|t| t.0 + held_for)
                .unwrap_or(now);
            if holder.is_some() && expires > now {
                let left = Duration::try_from(expires - now).unwrap_or_default();
                return Ok(Attempt::Following {
                    holder,
                    expires_in: left,
                });
            }
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(me.clone());
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(seconds);
        // The resourceVersion read above makes this a compare-and-swap: of
        // two replicas racing for an expired lease, one gets a 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Following {
                holder: None,
                expires_in: Duration::ZERO,
            }),
            Err(error) => Err(error),
        }
    }

    async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        if let Some(spec) = lease.spec.as_mut() {
            if spec.holder_identity.as_deref() == Some(self.leadership.identity.as_str()) {
                spec.holder_identity = None;
                spec.renew_time = None;
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await?;
            }
        }
        Ok(())
    }
}

enum Attempt {
    Leading,
    Following {
        holder: Option<String>,
        expires_in: Duration,
    },
}
