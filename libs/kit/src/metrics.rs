//! The Prometheus registry every service exposes on `/metrics`.
//!
//! Each service keeps its own `metrics.rs` of named, described metrics registered
//! here; this module only creates the registry (with `process_*` metrics) and renders it.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

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

/// Creates and registers the metrics of one service. Names and help texts are fixed at
/// compile time, so a failure here is a programming error (a duplicate or invalid name)
/// and panics at start, never later.
#[derive(Clone)]
pub struct Builder<'r>(pub &'r Registry);

#[allow(clippy::expect_used)]
impl Builder<'_> {
    fn add<M: prometheus::core::Collector + Clone + 'static>(
        &self,
        m: Result<M, prometheus::Error>,
    ) -> M {
        let m = m.expect("valid metric definition");
        self.0
            .register(Box::new(m.clone()))
            .expect("metric names are unique per service");
        m
    }

    /// A counter.
    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help))
    }

    /// A counter with labels.
    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels))
    }

    /// A gauge with labels.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels))
    }

    /// A floating-point gauge with labels.
    pub fn float_gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        self.add(GaugeVec::new(Opts::new(name, help), labels))
    }

    /// A gauge.
    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help))
    }

    /// A histogram with the given bucket bounds.
    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        self.add(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        ))
    }

    /// A histogram with labels and the given bucket bounds.
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        self.add(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        ))
    }
}
