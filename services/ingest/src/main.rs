//! `framewire-ingest`: RTSP cameras in, one Kafka record per H.264 access unit out.
//!
//! Ingest never decodes: it depacketizes with retina (Annex B, SPS/PPS inline on every
//! IDR) and publishes the camera's own compressed bytes with the `fw-*` headers. The
//! cameras come from the config file and the control topic ([`registry`]); replicas share
//! them through exclusive Kafka leases ([`leases`]); each camera has a bounded outage
//! queue ([`queue`]). See `docs/ingest.md`.

mod api;
mod camera;
mod config;
mod credentials;
mod leases;
mod metrics;
mod publish;
mod queue;
mod registry;
mod status;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use framewire_kit::admin::{AdminServer, AdminState, Readiness};
use framewire_kit::auth::AdminToken;
use framewire_kit::delivery::DeliveryMetrics;
use framewire_kit::shutdown::{Shutdown, drain_within};
use framewire_kit::{kafka, runtime};
use rdkafka::producer::Producer;
use retina::client::SessionGroup;

use crate::config::{ADMIN_PORT, Config};
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::registry::{Registry, Source};

const SERVICE: &str = "framewire-ingest";

fn main() -> ExitCode {
    runtime::main(
        SERVICE,
        "Streams RTSP cameras into Kafka, one record per H.264 access unit.",
        run,
    )
}

async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let registry_prom = framewire_kit::metrics::registry();
    let metrics = Metrics::new(&registry_prom);
    let readiness = Readiness::new();
    readiness.set_not_ready("kafka", "starting");
    readiness.set_not_ready(leases::READINESS, "waiting for a lease assignment");

    let listen = config.admin.listen_or(ADMIN_PORT);
    let publisher = Arc::new(Publisher::new(
        &config.kafka,
        &config.topics.frames,
        config.topics.max_message_bytes,
        config.ingest.linger_ms,
        config.ingest.delivery_timeout_ms,
        DeliveryMetrics::new(&registry_prom),
    )?);
    let shared = Arc::new(camera::Shared {
        config: config.ingest.clone(),
        publisher: publisher.clone(),
        group: Arc::new(SessionGroup::default()),
    });
    let registry = Arc::new(Registry::new(
        shared.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let membership = leases::SharedMembership::default();
    let api = api::router(api::ApiState {
        registry: registry.clone(),
        membership: membership.clone(),
        producer: publisher.producer().clone(),
        control_topic: config.topics.control.clone(),
        token: AdminToken::new(config.admin.token.as_deref(), &registry_prom),
        writable: config.ingest.control_topic,
        policy: config.credential_policy(),
    });
    let state = AdminState::new(registry_prom, &config, &readiness);
    let admin = AdminServer::start(listen, state, api).await?;
    tracing::info!(
        group = %config.ingest.group_id,
        leases = %config.topics.leases,
        cameras = config.cameras.len(),
        "ingest starting"
    );

    if config.topics.create {
        let specs = [
            config.topics.frames_spec(),
            config.topics.control_spec(),
            config.topics.leases_spec(config.ingest.lease_slots),
        ];
        if !kafka::ensure_topics_with_retry(&config.kafka, SERVICE, &specs, &readiness, &shutdown)
            .await
        {
            admin.stop().await;
            return Ok(());
        }
    }
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

    for spec in &config.cameras {
        registry.apply(spec.clone(), Source::Config).await;
    }
    let control = config.ingest.control_topic.then(|| {
        let (kafka, topic, group_prefix, registry, metrics, shutdown) = (
            config.kafka.clone(),
            config.topics.control.clone(),
            config.ingest.control_group_prefix(),
            registry.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            registry::follow_control(&kafka, &topic, &group_prefix, registry, metrics, shutdown)
                .await
        })
    });
    let lease_thread = leases::start(leases::LeaseSetup {
        kafka: config.kafka.clone(),
        topic: config.topics.leases.clone(),
        ingest: config.ingest.clone(),
        registry: registry.clone(),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        membership,
        shutdown: shutdown.clone(),
    })?;
    let counter = {
        let (registry, shutdown) = (registry.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                registry.count_states().await;
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        })
    };

    shutdown.cancelled().await;
    readiness.set_not_ready("shutdown", "draining");
    let grace = Duration::from_millis(config.ingest.shutdown_grace_ms);
    drain_within(grace, async {
        if let Some(c) = control {
            match c.await {
                Ok(Err(e)) => tracing::warn!(error = %e, "control topic follower failed"),
                Err(e) => tracing::warn!(error = %e, "control topic follower panicked"),
                Ok(Ok(())) => {}
            }
        }
        let _ = counter.await;
        // Cameras first, then the group: another replica may start a camera only after
        // its session here has ended.
        registry.stop_all().await;
        lease_thread.leave(Duration::from_secs(5)).await;
        if let Err(e) = shared.group.await_teardown().await {
            tracing::warn!(error = %e, "RTSP teardown incomplete");
        }
        let p = publisher.clone();
        let _ = tokio::task::spawn_blocking(move || p.flush(Duration::from_secs(5))).await;
    })
    .await;
    admin.stop().await;
    Ok(())
}
