//! `framewire-sink`: per-frame statistics in, per-camera window summaries out.
//!
//! Consumes `framewire.stats`, keeps tumbling windows per camera, and writes them to
//! PostgreSQL (when `sink.database_url` is set) or an embedded SQLite file, storing
//! Kafka offsets only after the summaries they feed are written.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use framewire_kit::admin::{AdminServer, AdminState, Readiness};
use framewire_kit::shutdown::{Shutdown, drain_within};
use framewire_kit::{kafka, runtime};
use framewire_sink::config::{ADMIN_PORT, Config, SinkConfig};
use framewire_sink::consume::{self, Pipeline, WriteHealth};
use framewire_sink::metrics::Metrics;
use framewire_sink::store::Store;
use rdkafka::consumer::Consumer;

const SERVICE: &str = "framewire-sink";

fn main() -> ExitCode {
    runtime::main(
        SERVICE,
        "Folds per-frame statistics into per-camera window summaries in SQLite or PostgreSQL.",
        run,
    )
}

async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let registry = framewire_kit::metrics::registry();
    let metrics = Metrics::new(&registry);
    let readiness = Readiness::new();
    readiness.set_not_ready("kafka", "starting");
    readiness.set_not_ready("database", "connecting");

    let listen = config.admin.listen_or(ADMIN_PORT);
    let state = AdminState::new(registry, &config, &readiness);
    let admin = AdminServer::start(listen, state, axum::Router::new()).await?;

    let Some(store) = connect_store(&config.sink, &readiness, &shutdown).await? else {
        admin.stop().await;
        return Ok(());
    };
    let health = WriteHealth::default();
    {
        let store = store.clone();
        let health = health.clone();
        let handle = tokio::runtime::Handle::current();
        readiness.spawn_probe(
            "database",
            Duration::from_secs(5),
            shutdown.clone(),
            move || {
                if let Some(e) = health.last_error() {
                    return Err(e);
                }
                handle.block_on(store.ping()).map_err(|e| e.to_string())
            },
        );
    }

    if config.topics.create {
        let specs = [config.topics.stats_spec()];
        if !kafka::ensure_topics_with_retry(&config.kafka, SERVICE, &specs, &readiness, &shutdown)
            .await
        {
            store.close().await;
            admin.stop().await;
            return Ok(());
        }
    }
    let consumer = Arc::new(consume::consumer(
        &config.kafka,
        &config.sink.group_id,
        &config.topics.stats,
    )?);
    {
        let consumer = consumer.clone();
        let topic = config.topics.stats.clone();
        readiness.spawn_probe(
            "kafka",
            Duration::from_secs(5),
            shutdown.clone(),
            move || kafka::metadata_check(consumer.client(), &topic),
        );
    }
    tracing::info!(
        topic = %config.topics.stats,
        group = %config.sink.group_id,
        backend = %store.backend(),
        window_ms = config.sink.window_ms,
        "consuming stats"
    );

    let mut pipeline = Pipeline::new(
        consumer,
        &config.topics.stats,
        config.sink.window_ms,
        Duration::from_millis(config.sink.flush_interval_ms),
        store,
        metrics,
        readiness.clone(),
        health,
    );
    pipeline.run(&shutdown).await;

    readiness.set_not_ready("shutdown", "draining");
    let grace = Duration::from_millis(config.sink.shutdown_grace_ms);
    drain_within(grace, pipeline.finish()).await;
    admin.stop().await;
    Ok(())
}

/// Opens the database and applies migrations. An unreachable PostgreSQL is retried
/// every few seconds (the sink stays unready meanwhile); a bad SQLite path or a failed
/// migration is fatal. `None` on shutdown.
async fn connect_store(
    sink: &SinkConfig,
    readiness: &Readiness,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<Store>> {
    let setting = if sink.database_url.is_some() {
        "sink.database_url"
    } else {
        "sink.sqlite_path"
    };
    loop {
        let attempt = async {
            let store = Store::connect(sink.database_url.as_deref(), &sink.sqlite_path).await?;
            store.migrate().await?;
            Ok::<_, framewire_sink::store::StoreError>(store)
        };
        let result = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(None),
            r = attempt => r,
        };
        match result {
            Ok(store) => {
                tracing::info!(backend = %store.backend(), "database ready");
                return Ok(Some(store));
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "database not reachable yet; retrying");
                readiness.set_not_ready("database", e.to_string());
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot open the summaries database ({setting})"));
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
        }
    }
}
