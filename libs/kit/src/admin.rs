//! The admin server every service runs beside its pipeline.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /healthz` | 200 while the process runs; never depends on Kafka or a database |
//! | `GET /readyz`  | 200 when every registered dependency is usable, else 503 with the reasons |
//! | `GET /metrics` | Prometheus text: `framewire_*` and `process_*` metrics |
//! | `GET /config`  | the effective configuration as JSON, every secret redacted |
//!
//! Readiness is a latch: background probes update it, and `/readyz` only reads it, so a
//! probe never waits on a slow broker. Services can merge their own routes into the router.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::Registry;
use serde_json::json;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

/// Readiness of a service's dependencies: each component is ready or has a reason.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<Mutex<BTreeMap<&'static str, Option<String>>>>);

impl Readiness {
    /// A latch with no components (ready).
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks a component ready.
    pub fn set_ready(&self, component: &'static str) {
        self.with(|m| m.insert(component, None));
    }

    /// Marks a component not ready, with the reason shown on `/readyz`.
    pub fn set_not_ready(&self, component: &'static str, reason: impl Into<String>) {
        let reason = reason.into();
        self.with(|m| m.insert(component, Some(reason)));
    }

    /// Whether every component is ready.
    pub fn is_ready(&self) -> bool {
        self.with(|m| m.values().all(Option::is_none))
    }

    /// Each component and its reason for not being ready (`None` = ready).
    pub fn snapshot(&self) -> BTreeMap<&'static str, Option<String>> {
        self.with(|m| m.clone())
    }

    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<&'static str, Option<String>>) -> R) -> R {
        let mut guard = match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Runs `check` (a blocking call, e.g. a Kafka metadata request) on the blocking pool
    /// every `interval` until shutdown, keeping `component` up to date.
    pub fn spawn_probe<F>(
        &self,
        component: &'static str,
        interval: Duration,
        shutdown: Shutdown,
        check: F,
    ) where
        F: Fn() -> Result<(), String> + Send + Sync + 'static,
    {
        self.set_not_ready(component, "not checked yet");
        let me = self.clone();
        let check = Arc::new(check);
        tokio::spawn(async move {
            loop {
                let c = check.clone();
                let result = tokio::task::spawn_blocking(move || c())
                    .await
                    .unwrap_or_else(|e| Err(format!("probe panicked: {e}")));
                match result {
                    Ok(()) => me.set_ready(component),
                    Err(reason) => {
                        if me.snapshot().get(component).is_some_and(Option::is_none) {
                            tracing::warn!(component, %reason, "dependency became unavailable");
                        }
                        me.set_not_ready(component, reason)
                    }
                }
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        });
    }
}

/// What the admin routes serve.
#[derive(Clone)]
pub struct AdminState {
    /// The service's metrics.
    pub registry: Registry,
    /// The effective configuration, already redacted.
    pub config: Arc<serde_json::Value>,
    /// Dependency readiness.
    pub readiness: Readiness,
}

impl AdminState {
    /// The state for a service: its metrics, its configuration (redacted here) and its
    /// readiness latch.
    pub fn new<C: serde::Serialize>(registry: Registry, config: &C, readiness: &Readiness) -> Self {
        AdminState {
            registry,
            config: Arc::new(crate::config::effective_json(config)),
            readiness: readiness.clone(),
        }
    }
}

/// The admin server could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on admin.listen {listen}: {source}")]
pub struct AdminError {
    listen: std::net::SocketAddr,
    source: std::io::Error,
}

/// The admin routes (`/healthz`, `/readyz`, `/metrics`, `/config`).
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/config", get(config))
        .with_state(state)
}

/// A running admin server; [`AdminServer::stop`] ends it (after the pipeline drained,
/// so `/healthz` keeps answering during the drain).
pub struct AdminServer {
    stop: Shutdown,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl AdminServer {
    /// Binds `listen` and serves the admin routes (plus `extra` routes) in the background.
    pub async fn start(
        listen: std::net::SocketAddr,
        state: AdminState,
        extra: Router,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let stop = Shutdown::new();
        let s = stop.clone();
        let task = tokio::spawn(serve(listener, router(state).merge(extra), async move {
            s.cancelled().await
        }));
        tracing::info!(%listen, "admin server listening");
        Ok(AdminServer { stop, task })
    }

    /// Stops serving and waits for the server task.
    pub async fn stop(self) {
        self.stop.trigger();
        let _ = self.task.await;
    }
}

/// Serves `router` on `listener` until `stop` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let snapshot = s.readiness.snapshot();
    let ready = snapshot.values().all(Option::is_none);
    let components: serde_json::Map<String, serde_json::Value> = snapshot
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                None => json!({"ready": true}),
                Some(reason) => json!({"ready": false, "reason": reason}),
            };
            (k.to_owned(), v)
        })
        .collect();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({"ready": ready, "components": components})),
    )
        .into_response()
}

async fn metrics(State(s): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&s.registry),
    )
        .into_response()
}

async fn config(State(s): State<AdminState>) -> Json<serde_json::Value> {
    Json((*s.config).clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn state() -> AdminState {
        let registry = crate::metrics::registry();
        let c = prometheus::IntCounter::new("framewire_test_total", "A test counter").unwrap();
        registry.register(Box::new(c.clone())).unwrap();
        c.inc();
        let mut cfg =
            json!({"db": "postgres://fw:pw@db/x", "kafka": {"options": {"sasl.password": "p"}}});
        crate::redact::redact_json(&mut cfg);
        AdminState {
            registry,
            config: Arc::new(cfg),
            readiness: Readiness::new(),
        }
    }

    async fn get(router: &Router, path: &str) -> (StatusCode, String) {
        let resp = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn endpoints() {
        let s = state();
        let readiness = s.readiness.clone();
        let r = router(s);
        assert_eq!(get(&r, "/healthz").await.0, StatusCode::OK);
        assert_eq!(get(&r, "/readyz").await.0, StatusCode::OK);

        readiness.set_not_ready("kafka", "metadata request timed out");
        let (code, body) = get(&r, "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("metadata request timed out"), "{body}");
        assert_eq!(
            get(&r, "/healthz").await.0,
            StatusCode::OK,
            "liveness ignores dependencies"
        );
        readiness.set_ready("kafka");
        assert_eq!(get(&r, "/readyz").await.0, StatusCode::OK);

        let (code, body) = get(&r, "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("framewire_test_total 1"), "{body}");
        assert!(body.contains("process_cpu_seconds_total"), "{body}");

        let (_, body) = get(&r, "/config").await;
        assert!(!body.contains(":pw@") && !body.contains("\"p\""), "{body}");
        assert_eq!(get(&r, "/nope").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn probe_updates_the_latch() {
        let readiness = Readiness::new();
        let shutdown = Shutdown::new();
        let ok = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ok.clone();
        readiness.spawn_probe(
            "db",
            Duration::from_millis(10),
            shutdown.clone(),
            move || {
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("down".into())
                }
            },
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!readiness.is_ready());
        ok.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(readiness.is_ready());
        shutdown.trigger();
    }
}
