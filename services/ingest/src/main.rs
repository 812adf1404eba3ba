//! `framewire-ingest`: RTSP cameras in, one Kafka record per H.264 access unit out.
//!
//! Ingest never decodes: it depacketizes with retina (Annex B, SPS/PPS inline on every
//! IDR) and publishes the camera's own compressed bytes with the `fw-*` headers.

mod camera;
mod config;
mod metrics;
mod publish;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use framewire_kit::admin::{AdminServer, AdminState, Readiness};
use framewire_kit::shutdown::{Shutdown, drain_within};
use framewire_kit::{kafka, runtime};
use rdkafka::producer::Producer;
use retina::client::SessionGroup;

use crate::config::{ADMIN_PORT, Config};
use crate::metrics::Metrics;
use crate::publish::Publisher;

const SERVICE: &str = "framewire-ingest";

fn main() -> ExitCode {
    runtime::main(
        SERVICE,
        "Streams RTSP cameras into Kafka, one record per H.264 access unit.",
        run,
    )
}

async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let registry = framewire_kit::metrics::registry();
    let metrics = Metrics::new(&registry);
    let readiness = Readiness::new();
    readiness.set_not_ready("kafka", "starting");

    let listen = config.admin.listen_or(ADMIN_PORT);
    let state = AdminState::new(registry, &config, &readiness);
    let admin = AdminServer::start(listen, state, axum::Router::new()).await?;

    if config.topics.create {
        let specs = [config.topics.frames_spec(), config.topics.control_spec()];
        if !kafka::ensure_topics_with_retry(&config.kafka, SERVICE, &specs, &readiness, &shutdown)
            .await
        {
            admin.stop().await;
            return Ok(());
        }
    }
    let publisher = Publisher::new(
        &config.kafka,
        &config.topics.frames,
        config.topics.max_message_bytes,
        config.ingest.linger_ms,
        metrics.clone(),
    )?;
    {
        let producer = publisher.producer().clone();
        let topic = config.topics.frames.clone();
        readiness.spawn_probe(
            "kafka",
            Duration::from_secs(5),
            shutdown.clone(),
            move || kafka::metadata_check(producer.client(), &topic),
        );
    }

    let shared = Arc::new(camera::Shared {
        config: config.ingest.clone(),
        publisher: publisher.clone(),
        metrics,
        group: Arc::new(SessionGroup::default()),
    });
    let mut cameras = tokio::task::JoinSet::new();
    for spec in config.cameras.iter().filter(|c| c.enabled) {
        cameras.spawn(camera::run(spec.clone(), shared.clone(), shutdown.clone()));
    }

    shutdown.cancelled().await;
    readiness.set_not_ready("shutdown", "draining");
    let grace = Duration::from_millis(config.ingest.shutdown_grace_ms);
    drain_within(grace, async {
        while cameras.join_next().await.is_some() {}
        if let Err(e) = shared.group.await_teardown().await {
            tracing::warn!(error = %e, "RTSP teardown incomplete");
        }
        let p = publisher.clone();
        let flush = grace / 2;
        let _ = tokio::task::spawn_blocking(move || p.flush(flush)).await;
    })
    .await;
    admin.stop().await;
    Ok(())
}
