//! The Prometheus registry every service exposes on `/metrics`.
//!
//! Each service keeps its own `metrics.rs` of named, described metrics registered
//! here; this module only creates the registry (with `process_*` metrics) and renders it.

use prometheus::{Encoder, Registry, TextEncoder};

/// A registry with the process collector (`process_cpu_seconds_total`, memory, fds, …).
pub fn registry() -> Registry {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let process = prometheus::process_collector::ProcessCollector::for_self();
        // Registration fails only on a duplicate; a fresh registry has none.
        let _ = registry.register(Box::new(process));
    }
    registry
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buf) {
        tracing::warn!(error = %e, "failed to encode metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Registers a metric, panicking only on a programming error (a duplicate name).
#[macro_export]
macro_rules! register {
    ($registry:expr, $metric:expr) => {{
        let m = $metric;
        #[allow(clippy::expect_used)]
        $registry
            .register(Box::new(m.clone()))
            .expect("metric names are unique per service");
        m
    }};
}
