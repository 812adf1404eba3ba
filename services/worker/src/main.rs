//! `framewire-worker`: frames from Kafka in, per-frame statistics to Kafka out.
//!
//! Runs as one consumer group that scales to as many replicas as the frames topic has
//! partitions; decodes with openh264 on dedicated threads and measures every picture.

mod config;
mod decode;
mod metrics;
mod offsets;
mod pipeline;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use framewire_kit::admin::{AdminServer, AdminState, Readiness};
use framewire_kit::cli::{CommonArgs, load_config};
use framewire_kit::shutdown::Shutdown;
use framewire_kit::{kafka, runtime, telemetry};

use crate::config::{ADMIN_PORT, Config};
use crate::metrics::Metrics;

const SERVICE: &str = "framewire-worker";

/// Decodes camera frames from Kafka and publishes per-frame statistics.
#[derive(Parser)]
#[command(name = "framewire-worker", version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _telemetry = telemetry::init(SERVICE);
    let config: Config = match load_config(SERVICE, &cli.common) {
        Ok(c) => c,
        Err(code) => return code,
    };
    runtime::run(SERVICE, |shutdown| run(config, shutdown))
}

async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let registry = framewire_kit::metrics::registry();
    let metrics = Metrics::new(&registry);
    let readiness = Readiness::new();
    readiness.set_not_ready("kafka", "starting");

    let listen = config.admin.listen_or(ADMIN_PORT);
    let state = AdminState {
        registry,
        config: Arc::new(framewire_kit::config::effective_json(&config)),
        readiness: readiness.clone(),
    };
    let admin = AdminServer::start(listen, state, axum::Router::new())
        .await
        .with_context(|| format!("cannot listen on admin.listen {listen}"))?;

    let mut result = Ok(());
    let topics_ready = !config.topics.create || {
        let specs = [
            config.topics.frames_spec(),
            config.topics.stats_spec(),
            config.topics.dlq_spec(),
        ];
        kafka::ensure_topics_with_retry(&config.kafka, SERVICE, &specs, &readiness, &shutdown).await
    };
    if topics_ready {
        result = pipeline::run(&config, &readiness, metrics, shutdown).await;
    }
    admin.stop().await;
    result
}
