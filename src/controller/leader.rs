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
    /// Leading ends here unless a renewal moves it: a leader cut off from
    /// the API server stops writing on time even while a request hangs.
    until: Mutex<Option<Instant>>,
    holder: Mutex<Option<String>>,
    changed: tokio::sync::Notify,
}

impl Leadership {
    pub fn new(identity: &str) -> Leadership {
        Leadership {
            identity: identity.to_owned(),
            leading: AtomicBool::new(false),
            until: Mutex::new(None),
            holder: Mutex::new(None),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// A replica whose role is fixed (tests, and the standby case in them).
    pub fn fixed(identity: &str, leading: bool) -> Leadership {
        let leadership = Leadership::new(identity);
        leadership.set(leading, leading.then(|| identity.to_owned()));
        *leadership.until.lock().unwrap_or_else(|e| e.into_inner()) = None;
        leadership
    }

    pub fn is_leader(&self) -> bool {
        let until = *self.until.lock().unwrap_or_else(|e| e.into_inner());
        self.leading.load(Ordering::Acquire) && until.is_none_or(|t| Instant::now() < t)
    }

    /// Records the loss once the lease could not be renewed in time, so a
    /// later renewal counts as a new election (and syncs at once).
    fn step_down_if_expired(&self) {
        if self.leading.load(Ordering::Acquire) && !self.is_leader() {
            self.set(false, self.holder());
        }
    }

    /// Leading is valid until `deadline` (set on each renewal).
    fn lead_until(&self, deadline: Instant) {
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        self.set(true, Some(self.identity.clone()));
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
        loop {
            // Measured before the request: the lease runs from the renewTime
            // written, which is no earlier than this.
            let asked = Instant::now();
            let attempt = tokio::time::timeout(renew_every, self.attempt()).await;
            let wait = match attempt {
                Ok(Ok(Attempt::Leading)) => {
                    // Two thirds of the lease: stepped down well before a
                    // follower may take over.
                    self.leadership.lead_until(asked + renew_every * 2);
                    renew_every
                }
                Ok(Ok(Attempt::Following { holder, expires_in })) => {
                    self.leadership.set(false, holder);
                    expires_in.clamp(Duration::from_millis(50), renew_every)
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, lease = %self.name, "lease not renewed");
                    self.leadership.step_down_if_expired();
                    Duration::from_secs(1).min(renew_every)
                }
                Err(_) => {
                    tracing::warn!(lease = %self.name, "lease renewal timed out");
                    self.leadership.step_down_if_expired();
                    Duration::from_millis(200)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_that_cannot_renew_stops_leading_at_its_deadline() {
        let leadership = Leadership::new("me");
        assert!(!leadership.is_leader());
        leadership.lead_until(Instant::now() + Duration::from_millis(100));
        assert!(leadership.is_leader());
        std::thread::sleep(Duration::from_millis(150));
        assert!(!leadership.is_leader(), "no renewal, no writes");
        leadership.step_down_if_expired();
        assert!(!leadership.leading.load(Ordering::Acquire));
        leadership.lead_until(Instant::now() + Duration::from_secs(10));
        assert!(leadership.is_leader(), "a later renewal leads again");
    }
}
