//! End-to-end latency, capture → stats record, through the real broker: N live 720p 25 fps
//! cameras from the bench RTSP server (`scripts/bench/bench-rtsp.sh up`), a release
//! `framewire-ingest` and a release `framewire-worker` on fresh topics, and a reader of the
//! stats topic. For every stats record: latency = the moment it arrives at the reader −
//! its `capture_ms` (the `fw-capture-ms` ingest stamped when the access unit arrived over
//! RTSP), and the worker's own part, `decoded_ms − capture_ms`. p50 / p99 / max after a
//! warm-up.
//!
//! The waits on the path, all at the services' defaults (the point is that the defaults
//! meet the target): ingest producer `linger.ms` 5 (`ingest.linger_ms`), worker consumer
//! `fetch.wait.max.ms` 20, worker producer `linger.ms` 5 (`worker.linger_ms`), this
//! reader's `fetch.wait.max.ms` 10.
//!
//! ```text
//! bench-latency [--cameras 4] [--seconds 30] [--rtsp-port 8654] [--json FILE]
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use framewire_e2e::{KAFKA, Service, Topics, camera_toml, cli_arg as arg, unique};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use serde_json::json;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cameras: usize = arg("--cameras", 4);
    let seconds: u64 = arg("--seconds", 30);
    let port: u16 = arg("--rtsp-port", 8654);
    let json_path = Some(arg("--json", String::new()))
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let topics = Topics::unique("bench-latency");
    let cams: String = (0..cameras)
        .map(|i| {
            camera_toml(
                &format!("lat-{i}"),
                &format!("rtsp://127.0.0.1:{port}/cam{i}"),
                "",
            )
        })
        .collect();
    let ingest = Service::start(
        "framewire-ingest",
        &format!("{}\n{cams}", topics.toml()),
        &[],
    );
    let worker = Service::start(
        "framewire-worker",
        &format!(
            "{}\n[worker]\ngroup_id = \"{}\"\nauto_offset_reset = \"latest\"\n",
            topics.toml(),
            unique("bench-latency")
        ),
        &[],
    );
    ingest.wait_ready(Duration::from_secs(60)).await;
    worker.wait_ready(Duration::from_secs(60)).await;

    let stats_topic = topics.stats.clone();
    let measured = tokio::task::spawn_blocking(move || -> anyhow::Result<(Vec<i64>, Vec<i64>)> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", KAFKA)
            .set("group.id", unique("bench-latency-reader"))
            .set("auto.offset.reset", "latest")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .create()
            .context("failed to create the stats reader")?;
        consumer.subscribe(&[&stats_topic])?;
        let warm_up = Duration::from_secs(10);
        let started = Instant::now();
        let (mut total, mut worker_part) = (Vec::new(), Vec::new());
        while started.elapsed() < warm_up + Duration::from_secs(seconds) {
            let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let arrived = now_ms();
            let msg = msg?;
            if started.elapsed() < warm_up {
                continue;
            }
            let record: serde_json::Value = serde_json::from_slice(msg.payload().unwrap_or(b"{}"))?;
            let (Some(capture), Some(decoded)) =
                (record["capture_ms"].as_i64(), record["decoded_ms"].as_i64())
            else {
                bail!("a stats record without capture_ms/decoded_ms: {record}");
            };
            total.push(arrived - capture);
            worker_part.push(decoded - capture);
        }
        Ok((total, worker_part))
    })
    .await??;
    drop(worker);
    drop(ingest);
    let _ = rdkafka_cleanup(&topics).await;
    let (mut total, mut worker_part) = measured;
    if total.len() < 25 * cameras * seconds as usize * 8 / 10 {
        bail!(
            "only {} stats records in {seconds} s from {cameras} cameras at 25 fps",
            total.len()
        );
    }
    total.sort_unstable();
    worker_part.sort_unstable();
    let row = |name: &str, v: &[i64]| {
        println!(
            "| {name} | {} | {} | {} | {} |",
            percentile(v, 50.0),
            percentile(v, 99.0),
            v.last().copied().unwrap_or(0),
            v.len()
        )
    };
    println!(
        "\n## End-to-end latency: {cameras} cameras 1280x720 25 fps through ingest, Kafka and the worker, {seconds} s after a 10 s warm-up\n"
    );
    println!("| capture → | p50 ms | p99 ms | max ms | records |");
    println!("|---|---:|---:|---:|---:|");
    row("stats record read from Kafka", &total);
    row("statistics computed (`decoded_ms`)", &worker_part);
    println!("\ntarget: p99 ≤ 100 ms capture → stats record");
    if let Some(path) = json_path {
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&json!({
                "cameras": cameras, "seconds": seconds, "records": total.len(),
                "p50_ms": percentile(&total, 50.0), "p99_ms": percentile(&total, 99.0),
                "max_ms": total.last(),
                "worker_p50_ms": percentile(&worker_part, 50.0),
                "worker_p99_ms": percentile(&worker_part, 99.0),
            }))?,
        )
        .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}

/// Deletes the run's topics.
async fn rdkafka_cleanup(topics: &Topics) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .create()?;
    let names = [
        topics.frames.as_str(),
        topics.stats.as_str(),
        topics.dlq.as_str(),
        topics.control.as_str(),
    ];
    admin.delete_topics(&names, &AdminOptions::new()).await?;
    Ok(())
}
