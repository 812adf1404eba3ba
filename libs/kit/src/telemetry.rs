//! Logs and traces.
//!
//! - Logs: plain text by default, JSON with `FRAMEWIRE_LOG_FORMAT=json`; the filter comes
//!   from `FRAMEWIRE_LOG` (or `RUST_LOG`), default `info`.
//! - Traces: spans always get W3C trace ids (so `traceparent` travels in Kafka headers
//!   and links one frame's spans ingest → worker → sink), and are exported over OTLP/HTTP
//!   only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - Panics are logged through tracing before the default hook runs.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Flushes and shuts the trace pipeline down when dropped (end of `main`).
#[must_use = "dropping the guard shuts tracing down"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            eprintln!("telemetry: trace shutdown: {e}");
        }
    }
}

/// Installs logging, tracing and the panic hook for `service_name`. Call first in `main`.
pub fn init(service_name: &'static str) -> TelemetryGuard {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name)
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    let mut export_error = None;
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(e) => export_error = Some(e.to_string()),
        }
    }
    let provider = builder.build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service_name))
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);

    let filter = match std::env::var("FRAMEWIRE_LOG").or_else(|_| std::env::var("RUST_LOG")) {
        Ok(directives) => EnvFilter::try_new(&directives).unwrap_or_else(|e| {
            eprintln!("FRAMEWIRE_LOG: invalid filter {directives:?} ({e}); logging at info");
            EnvFilter::new("info")
        }),
        Err(_) => EnvFilter::new("info"),
    };
    // Colours only on a terminal: `kubectl logs` and log collectors read the raw bytes.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let json = std::env::var("FRAMEWIRE_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();

    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "panic");
        default_hook(info);
    }));
    if let Some(e) = export_error {
        tracing::warn!(error = %e, "OTLP exporter not started; traces stay local");
    }
    TelemetryGuard { provider }
}

/// Renders the current trace context of `span` as header pairs (`traceparent`, and
/// `tracestate` when set). Empty when the span has no valid context.
pub fn inject(span: &tracing::Span) -> Vec<(String, String)> {
    let mut carrier = HeaderCarrier::default();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.0.into_iter().collect()
}

/// Makes `span` a child of the trace context found by `get` (header lookup by name).
pub fn set_parent_from<'a>(span: &tracing::Span, get: impl Fn(&str) -> Option<&'a [u8]>) {
    let mut map = HashMap::new();
    for key in ["traceparent", "tracestate"] {
        if let Some(v) = get(key).and_then(|v| std::str::from_utf8(v).ok()) {
            map.insert(key.to_owned(), v.to_owned());
        }
    }
    if map.is_empty() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderCarrier(map));
    let _ = span.set_parent(cx);
}

#[derive(Default)]
struct HeaderCarrier(HashMap<String, String>);

impl Injector for HeaderCarrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

impl Extractor for HeaderCarrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_round_trips_through_headers() {
        let _guard = init("kit-test");
        let parent = tracing::info_span!("produce");
        let headers = inject(&parent);
        let tp = headers
            .iter()
            .find(|(k, _)| k == "traceparent")
            .map(|(_, v)| v.clone())
            .expect("a traceparent header");
        assert_eq!(tp.len(), 55, "{tp}");
        let trace_id = tp[3..35].to_owned();

        let child = tracing::info_span!("consume");
        set_parent_from(&child, |k| {
            headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_bytes())
        });
        let child_tp = inject(&child)
            .into_iter()
            .find(|(k, _)| k == "traceparent")
            .map(|(_, v)| v)
            .unwrap();
        assert_eq!(&child_tp[3..35], trace_id, "child shares the trace id");
        assert_ne!(child_tp, tp, "child has its own span id");
    }
}
