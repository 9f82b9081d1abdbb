//! Serving the router so that no client can starve it: a connection must
//! send its request head within a deadline (which also closes idle
//! keep-alive connections), a request body must arrive in time, and the
//! connections held open stay under a cap below the process's file limit.
//! At the cap, the connection idle longest is closed to make room, so a
//! crowd of idle connections cannot lock out a real client (or the syncs,
//! which need file descriptors too).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::HttpLimits;

/// File descriptors kept for everything but HTTP: the database, Git,
/// watched folders, the Kubernetes client.
const RESERVED_FILES: u64 = 64;

/// Half of what the file limit leaves: at least 8, at most 4096.
pub fn connection_cap(file_limit: Option<u64>) -> usize {
    let limit = file_limit.unwrap_or(1024);
    let cap = limit.saturating_sub(RESERVED_FILES) / 2;
    usize::try_from(cap.clamp(8, 4096)).unwrap_or(4096)
}

/// The soft limit on open files, from `/proc/self/limits` (Linux).
pub fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// One open connection, as the cap sees it.
struct Open {
    /// Requests in flight: a connection with none is idle.
    in_flight: Arc<AtomicUsize>,
    /// When it last finished (or began) a request.
    last_active: Arc<Mutex<Instant>>,
    close: CancellationToken,
}

/// Serves `router` on `listener` until `shutdown`, then lets requests in
/// flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let max_connections = limits
        .max_connections
        .unwrap_or_else(|| connection_cap(open_file_limit()));
    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_timeout,
    ));
    let open: Arc<Mutex<BTreeMap<u64, Open>>> = Arc::default();
    let mut next_id = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    tracing::debug!(
        max_connections,
        header_timeout = ?limits.header_timeout,
        "serving HTTP"
    );
    // A permit per open connection: a connection is accepted only with
    // one, so the descriptors held never exceed the cap, even while closed
    // connections are still being torn down. Waiting ones queue in the
    // kernel's backlog, which costs accord no descriptor.
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                make_room(&open);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, typically: wait a little rather
                // than spin, and keep serving the connections already open.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let id = next_id;
        next_id += 1;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let last_active = Arc::new(Mutex::new(Instant::now()));
        let close = shutdown.child_token();
        lock(&open).insert(
            id,
            Open {
                in_flight: in_flight.clone(),
                last_active: last_active.clone(),
                close: close.clone(),
            },
        );
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let (router, in_flight, last_active) =
                (router.clone(), in_flight.clone(), last_active.clone());
            in_flight.fetch_add(1, Ordering::AcqRel);
            async move {
                let response = router.oneshot(request.map(axum::body::Body::new)).await;
                *lock(&last_active) = Instant::now();
                in_flight.fetch_sub(1, Ordering::AcqRel);
                response
            }
        });
        let open = open.clone();
        tasks.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = close.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%error, "connection closed");
            }
            lock(&open).remove(&id);
            drop(permit);
        });
        // Reap finished connection tasks as we go.
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// At the cap, closes the connection idle longest (busy ones are left to
/// finish); with every connection busy, the oldest.
fn make_room(open: &Mutex<BTreeMap<u64, Open>>) {
    let open = lock(open);
    let idle = open
        .values()
        .filter(|c| !c.close.is_cancelled() && c.in_flight.load(Ordering::Acquire) == 0)
        .min_by_key(|c| *lock(&c.last_active));
    let victim = idle.or_else(|| open.values().find(|c| !c.close.is_cancelled()));
    if let Some(victim) = victim {
        victim.close.cancel();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_well_under_the_file_limit() {
        assert_eq!(connection_cap(Some(256)), 96);
        assert_eq!(connection_cap(Some(1024)), 480);
        assert_eq!(connection_cap(Some(70)), 8);
        assert_eq!(connection_cap(Some(1 << 20)), 4096);
        assert_eq!(connection_cap(None), 480);
    }
}
