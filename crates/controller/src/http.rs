//! The controller's HTTP endpoint (`--metrics-bind-address`): `/metrics` (OpenMetrics text),
//! `/healthz` (the process serves requests) and `/readyz` (caches synced, and with leader
//! election either leading or standing by with a working connection to the API).
//! Plain hyper 1 with one small router; no web framework.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// Where leader election stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderState {
    /// Not yet known, or the last round failed to reach the API.
    Unhealthy = 0,
    /// Another replica leads; we can reach the API and will take over if it goes.
    Standby = 1,
    Leading = 2,
}

/// Readiness inputs, shared between the controller, the election and the HTTP server.
#[derive(Debug)]
pub struct Health {
    leader_elect: bool,
    caches_synced: AtomicBool,
    leader: AtomicU8,
}

impl Health {
    pub fn new(leader_elect: bool) -> Self {
        Self {
            leader_elect,
            caches_synced: AtomicBool::new(false),
            leader: AtomicU8::new(LeaderState::Unhealthy as u8),
        }
    }

    pub fn set_caches_synced(&self, synced: bool) {
        self.caches_synced.store(synced, Ordering::SeqCst);
    }

    pub fn set_leader(&self, state: LeaderState) {
        self.leader.store(state as u8, Ordering::SeqCst);
    }

    pub fn leader(&self) -> LeaderState {
        match self.leader.load(Ordering::SeqCst) {
            1 => LeaderState::Standby,
            2 => LeaderState::Leading,
            _ => LeaderState::Unhealthy,
        }
    }

    /// Whether `/readyz` answers 200.
    pub fn ready(&self) -> bool {
        let synced = self.caches_synced.load(Ordering::SeqCst);
        if !self.leader_elect {
            return synced;
        }
        match self.leader() {
            LeaderState::Leading => synced,
            LeaderState::Standby => true,
            LeaderState::Unhealthy => false,
        }
    }
}

/// Errors of the HTTP endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("binding the metrics address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A bound, not yet serving, listener (bind first so callers learn the port, e.g. with `:0`).
pub struct Server {
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl Server {
    pub async fn bind(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<Self, HttpError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind { addr, source })?;
        Ok(Self {
            listener,
            metrics,
            health,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = &mut shutdown => return,
            };
            let (stream, peer) = match accepted {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "accepting a metrics connection failed");
                    continue;
                }
            };
            let metrics = self.metrics.clone();
            let health = self.health.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let resp = route(req.method(), req.uri().path(), &metrics, &health);
                    async move { Ok::<_, Infallible>(resp) }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    debug!(error = %e, %peer, "metrics connection ended with an error");
                }
            });
        }
    }
}

/// The router, a pure function of the request line and the shared state.
pub fn route(
    method: &Method,
    path: &str,
    metrics: &Metrics,
    health: &Health,
) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match path {
        "/metrics" => {
            let mut r = text(StatusCode::OK, metrics.render());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if health.ready() => text(StatusCode::OK, "ok\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::metrics::{MetricKey, Role};
    use crate::plan::MetricIntent;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let code = out.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }

    #[tokio::test]
    async fn endpoints_answer_on_a_real_socket_and_readiness_follows_cache_sync() {
        let metrics = Arc::new(Metrics::new());
        metrics.record(
            &MetricKey::new("ns", "a", Role::Source),
            &MetricIntent::SyncFailed,
        );
        let health = Arc::new(Health::new(false));
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), metrics, health.clone())
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));

        assert_eq!(get(addr, "/healthz").await.0, 200);
        assert_eq!(get(addr, "/readyz").await.0, 503);
        health.set_caches_synced(true);
        assert_eq!(get(addr, "/readyz").await.0, 200);
        let (code, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(
            body.contains(r#"scribe_sync_failure_total{obj_name="a",obj_namespace="ns",role="source",method="rclone"} 1"#),
            "{body}"
        );
        assert_eq!(get(addr, "/nope").await.0, 404);

        stop.send(()).unwrap();
        task.await.unwrap();
    }

    #[test]
    fn with_leader_election_a_healthy_standby_is_ready_and_a_leader_needs_synced_caches() {
        let h = Health::new(true);
        h.set_caches_synced(true);
        assert!(!h.ready(), "unknown election state is not ready");
        h.set_leader(LeaderState::Standby);
        assert!(h.ready());
        h.set_caches_synced(false);
        h.set_leader(LeaderState::Leading);
        assert!(!h.ready());
        h.set_caches_synced(true);
        assert!(h.ready());
        h.set_leader(LeaderState::Unhealthy);
        assert!(!h.ready());
    }

    #[test]
    fn non_get_methods_are_refused() {
        let r = route(
            &Method::POST,
            "/metrics",
            &Metrics::new(),
            &Health::new(false),
        );
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
