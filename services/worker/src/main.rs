//! `framewire-worker`: frames from Kafka in, per-frame statistics to Kafka out.
//!
//! Runs as one consumer group that scales to as many replicas as the frames topic has
//! partitions; decodes (openh264, or libavcodec when built with the `ffmpeg` feature) on
//! dedicated threads and measures every picture.

mod assignment;
mod commit;
mod config;
mod debug;
mod decode;
mod detection;
mod lag;
mod metrics;
#[cfg(test)]
mod oracle_tests;
mod output;
mod parking;
mod pipeline;
mod poison;
mod rebalance;
mod snapshot;

use std::process::ExitCode;

use framewire_kit::admin::{AdminServer, AdminState, Readiness};
use framewire_kit::auth::AdminToken;
use framewire_kit::shutdown::Shutdown;
use framewire_kit::{kafka, runtime};

use crate::config::{ADMIN_PORT, Config};
use crate::metrics::Metrics;

const SERVICE: &str = "framewire-worker";

fn main() -> ExitCode {
    runtime::main(
        SERVICE,
        "Decodes camera frames from Kafka and publishes per-frame statistics.",
        run,
    )
}

async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let registry = framewire_kit::metrics::registry();
    let metrics = Metrics::new(&registry);
    let delivery_metrics = framewire_kit::delivery::DeliveryMetrics::new(&registry);
    let readiness = Readiness::new();
    readiness.set_not_ready("kafka", "starting");

    let listen = config.admin.listen_or(ADMIN_PORT);
    let shared = pipeline::Shared::default();
    let debug = debug::router(debug::DebugState {
        assignment: shared.assignment.clone(),
        watchers: shared.watchers.clone(),
        mjpeg_interval: std::time::Duration::from_secs_f64(1.0 / config.worker.mjpeg_max_fps),
        token: AdminToken::new(config.admin.token.as_deref(), &registry),
        viewers: debug::Viewers::new(config.worker.live_view_max_viewers, &registry),
    });
    let state = AdminState::new(registry, &config, &readiness);
    let admin = AdminServer::start(listen, state, debug).await?;

    let mut result = Ok(());
    let topics_ready = !config.topics.create || {
        let specs = [
            config.topics.frames_spec(),
            config.topics.stats_spec(),
            config.topics.detections_spec(),
            config.topics.dlq_spec(),
        ];
        kafka::ensure_topics_with_retry(&config.kafka, SERVICE, &specs, &readiness, &shutdown).await
    };
    if topics_ready {
        result = pipeline::run(
            &config,
            &readiness,
            metrics,
            delivery_metrics,
            shared,
            shutdown,
        )
        .await;
    }
    admin.stop().await;
    result
}
