//! The sink's whole path on one pinned core: statistics records of N cameras
//! (`framewire-loadgen --mode stats`, as fast as Kafka takes them) fill a fresh stats topic
//! before the sink starts; then a release `framewire-sink` starts under `taskset -c CPUS`
//! with SQLite or PostgreSQL and reads them all — Kafka in, JSON parsed, windows, merged
//! into the database, offsets stored. The rate is taken from the sink's own counter
//! (`framewire_sink_records_total`, polled on its `/metrics` every 200 ms) between 10 % and
//! 90 % of the records, so that start-up and the last flush do not count; the sink's CPU
//! time over the same span says how busy its core was. The run ends when every record is
//! counted and a flush that began afterwards left nothing waiting
//! (`framewire_sink_write_seconds_count`, `framewire_sink_pending_frames`), and the window
//! rows in the database are checked to hold every frame.
//!
//! SQLite runs inside the sink's process, so its cost is on the pinned core; PostgreSQL's
//! server is another process (on any core): its CPU is measured apart, from its
//! processes' `/proc` entries, when they can be read.
//!
//! Prints one Markdown table row and appends the numbers as one JSON line to `--json FILE`
//! for `scripts/bench/summary.py`. Topics, and for PostgreSQL the rows, are deleted
//! afterwards.
//!
//! ```text
//! bench-sink --db sqlite|postgres [--cameras 1000] [--frames 300] [--cpus 1]
//!            [--label TEXT] [--json FILE]
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use framewire_e2e::{
    Service, SinkDb, Topics, append_json_line, cli_arg, delete_camera_rows, fill_topic, metric,
    pg_dsn, process_usage, sink_section, sink_totals, unique,
};
use serde_json::json;

/// How often the sink's counters are read.
const POLL: Duration = Duration::from_millis(200);

struct Args {
    db: String,
    cameras: usize,
    frames: u64,
    cpus: String,
    label: String,
    json: Option<PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let db: String = cli_arg("--db", String::new());
    if !matches!(db.as_str(), "sqlite" | "postgres") {
        bail!("--db must be sqlite or postgres (see the module doc for usage)");
    }
    let a = Args {
        label: cli_arg("--label", db.clone()),
        db,
        cameras: cli_arg("--cameras", 1000),
        frames: cli_arg("--frames", 300),
        cpus: cli_arg("--cpus", "1".to_owned()),
        json: Some(cli_arg("--json", PathBuf::new())).filter(|p| !p.as_os_str().is_empty()),
    };
    if a.cameras == 0 || a.frames < 10 {
        bail!("--cameras must be at least 1 and --frames at least 10");
    }
    Ok(a)
}

/// One look at the sink: when, records counted, frames waiting, flushes done, CPU seconds
/// used.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    records: u64,
    pending: u64,
    flushes: u64,
    cpu_s: f64,
}

/// The sum of `framewire_sink_records_total` over its cameras.
fn records_counted(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("framewire_sink_records_total{"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum::<f64>() as u64
}

/// CPU seconds used so far by PostgreSQL's processes (`postgres` by name), when readable.
fn postgres_cpu_s() -> f64 {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|pid| process_usage(pid).0)
        .sum()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let topics = Topics::unique("bench-sink");
    let prefix = unique("bs");
    let expected = args.cameras as u64 * args.frames;
    eprintln!(
        "bench-sink: {} cameras x {} records into {} (framewire-loadgen --mode stats --rate max)",
        args.cameras, args.frames, topics.stats
    );
    let stats_mode = ["--mode", "stats"];
    let summary = fill_topic(
        &topics.stats,
        args.cameras,
        args.frames,
        &prefix,
        &stats_mode,
    )
    .await;
    if summary["delivered"].as_u64() != Some(expected) {
        topics.delete().await;
        bail!("framewire-loadgen delivered fewer than {expected} records: {summary}");
    }

    let dir = tempfile::tempdir()?;
    let db = match args.db.as_str() {
        "sqlite" => SinkDb::Sqlite(dir.path().join("sink.db")),
        _ => SinkDb::Postgres(pg_dsn()),
    };
    let (section, _) = sink_section(&unique("bench-sink"), &db, "preview = false\n");
    eprintln!(
        "bench-sink: starting the sink (taskset -c {}, {})",
        args.cpus,
        db.name()
    );
    let mut sink = Service::start_on(
        "framewire-sink",
        &format!("{}\n{section}", topics.toml()),
        &[],
        Some(&args.cpus),
    );
    let pid = sink.pid().context("the sink is running")?;
    let pg_before = postgres_cpu_s();
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut rss_peak = 0u64;
    loop {
        let (code, text) = sink.get("/metrics").await;
        let (cpu_s, rss) = process_usage(pid);
        rss_peak = rss_peak.max(rss);
        if code == 200 {
            let sample = Sample {
                at: Instant::now(),
                records: records_counted(&text),
                pending: metric(&text, "framewire_sink_pending_frames").unwrap_or(0.0) as u64,
                flushes: metric(&text, "framewire_sink_write_seconds_count").unwrap_or(0.0) as u64,
                cpu_s,
            };
            samples.push(sample);
            // Done when a flush that began after the last record was counted left nothing
            // waiting (the gauge is set at the end of each flush).
            let counted_all = samples.iter().find(|s| s.records >= expected);
            if counted_all.is_some_and(|s| sample.flushes >= s.flushes + 2) && sample.pending == 0 {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(600) {
            let last = samples.last().map_or(0, |s| s.records);
            sink.terminate(Duration::from_secs(30));
            topics.delete().await;
            if let SinkDb::Postgres(dsn) = &db {
                delete_camera_rows(dsn, &prefix).await?;
            }
            bail!(
                "the sink counted {last} of {expected} records in 10 minutes\n--- log ---\n{}",
                sink.log()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let pg_cpu = postgres_cpu_s() - pg_before;
    let cameras: Vec<String> = (0..args.cameras)
        .map(|i| format!("{prefix}-{i:05}"))
        .collect();
    // A flush of many cameras is several transactions (each one a `write_seconds` sample):
    // the last may still be on its way. Wait up to 30 s for every frame to be stored.
    let stored_by = Instant::now() + Duration::from_secs(30);
    let stored = loop {
        let totals = sink_totals(&db, &cameras)
            .await
            .map_err(anyhow::Error::msg)?;
        let stored: i64 = totals.values().map(|t| t.0).sum();
        if stored == expected as i64 || Instant::now() >= stored_by {
            break stored;
        }
        tokio::time::sleep(POLL).await;
    };
    let status = sink.terminate(Duration::from_secs(60));
    topics.delete().await;
    if let SinkDb::Postgres(dsn) = &db {
        delete_camera_rows(dsn, &prefix).await?;
    }
    if stored != expected as i64 || !status.success() {
        bail!(
            "the database holds {stored} of {expected} frames (sink exit {status})\n--- log ---\n{}",
            sink.log()
        );
    }

    // The rate between 10 % and 90 % of the records, on the sink's own counter.
    let at = |share: f64| {
        samples
            .iter()
            .find(|s| s.records as f64 >= share * expected as f64)
            .copied()
    };
    let (Some(from), Some(to), Some(last)) = (at(0.1), at(0.9), samples.last().copied()) else {
        bail!("too few samples of the sink's counters");
    };
    let span = (to.at - from.at).as_secs_f64().max(1e-3);
    let rate = (to.records - from.records) as f64 / span;
    let cpu = to.cpu_s - from.cpu_s;
    let busy = 100.0 * cpu / span;
    let per_cpu_s = (to.records - from.records) as f64 / cpu.max(1e-3);
    let first = samples
        .iter()
        .find(|s| s.records > 0)
        .copied()
        .unwrap_or(from);
    let whole = (last.at - first.at).as_secs_f64().max(1e-3);
    let whole_rate = (last.records - first.records) as f64 / whole;
    println!(
        "| {} | {} cameras | {expected} records | {rate:.0} records/s | {per_cpu_s:.0} per sink CPU-second (core {busy:.0} % busy) | {whole_rate:.0} records/s first to last | PostgreSQL CPU {pg_cpu:.1} s | sink RSS {} MiB |",
        args.label,
        args.cameras,
        rss_peak / (1024 * 1024),
    );
    if let Some(path) = &args.json {
        let line = json!({
            "label": args.label, "db": args.db, "cameras": args.cameras, "frames": args.frames,
            "records": expected, "cpus": args.cpus, "records_per_s": rate,
            "records_per_cpu_s": per_cpu_s, "busy_pct": busy, "whole_records_per_s": whole_rate,
            "postgres_cpu_s": pg_cpu, "sink_rss_bytes": rss_peak,
        });
        append_json_line(path, &line)
            .with_context(|| format!("failed to append to {}", path.display()))?;
    }
    Ok(())
}
