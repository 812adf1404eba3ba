//! Soak run (`make soak`, not in CI): the whole fleet — ingest, two workers, the sink on its
//! default SQLite — streaming 50 cameras for an hour on the local stack, with the resident
//! memory of every service sampled each minute. Prints, per service, the RSS slope after the
//! warm-up and over the last third (least squares, MiB per hour; flat is under 1 MiB/h) and
//! writes every sample to `target/artifacts/soak.csv`.
//!
//! The cameras come from a second RTSP server instance (`RTSP_INSTANCE=soak`, port 8754)
//! serving 320x180 at 10 fps with a 2 s GOP, so that 50 cameras fit beside Kafka on a small
//! machine: what a leak needs is frames, sessions and records, not pixels.
//!
//! Options: `--cameras N` (50), `--minutes M` (60), `--warmup M` (10).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use framewire_e2e::{
    Service, Topics, artifacts_dir, camera_toml, cli_arg as arg, metric, process_usage, unique,
};

const PORT: &str = "8754";

/// Least-squares slope of (x, y) points.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), &(x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 { 0.0 } else { num / den }
}

fn rtsp(action: &str) -> bool {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack/rtsp.sh");
    Command::new("bash")
        .arg(script)
        .arg(action)
        .env("RTSP_INSTANCE", "soak")
        .env("RTSP_PORT", PORT)
        .env("RTSP_ONLY", "soakcam")
        .env(
            "RTSP_SERVER_ARGS",
            "--mount soakcam:pattern=smpte,speed=4,width=320,height=180,fps=10,gop=20,bitrate=150",
        )
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::main]
async fn main() {
    let cameras: u64 = arg("--cameras", 50);
    let minutes: u64 = arg("--minutes", 60);
    let warmup: u64 = arg("--warmup", 10u64).min(minutes.saturating_sub(1));
    framewire_e2e::require_stack();
    assert!(rtsp("up"), "the soak RTSP server did not start");
    let topics = Topics::unique("soak");
    let cams: String = (0..cameras)
        .map(|i| {
            camera_toml(
                &format!("soak-{i}"),
                &format!("rtsp://127.0.0.1:{PORT}/soakcam"),
                "",
            )
        })
        .collect();
    let db = tempfile::tempdir().expect("temp dir");
    let group = unique("soak");
    let sink = Service::start(
        "framewire-sink",
        &format!(
            "{}\n[sink]\ngroup_id = \"{group}-sink\"\npreview_group_id = \"{group}-preview\"\nsqlite_path = \"{}\"\nhttp_listen = \"127.0.0.1:{}\"\n",
            topics.toml(),
            db.path().join("soak.sqlite").display(),
            framewire_e2e::free_port()
        ),
        &[],
    );
    let worker_config = format!(
        "{}\n[worker]\ngroup_id = \"{group}-workers\"\ndecode_threads = 1\n",
        topics.toml()
    );
    let workers = [
        Service::start("framewire-worker", &worker_config, &[]),
        Service::start("framewire-worker", &worker_config, &[]),
    ];
    let ingest = Service::start(
        "framewire-ingest",
        &format!(
            "{}\n[ingest]\ngroup_id = \"{group}-ingest\"\ncontrol_topic = false\n\n{cams}",
            topics.toml()
        ),
        &[],
    );
    for s in workers.iter().chain([&sink, &ingest]) {
        s.wait_ready(Duration::from_secs(120)).await;
    }
    let services: Vec<(&str, &Service)> = vec![
        ("ingest", &ingest),
        ("worker-1", &workers[0]),
        ("worker-2", &workers[1]),
        ("sink", &sink),
    ];
    let mut csv = String::from("minute,service,rss_bytes\n");
    let mut series: Vec<Vec<(f64, f64)>> = vec![Vec::new(); services.len()];
    let started = Instant::now();
    println!("soak: {cameras} cameras for {minutes} min (warm-up {warmup} min)");
    for minute in 0..=minutes {
        let at = started + Duration::from_secs(60 * minute);
        tokio::time::sleep_until(at.into()).await;
        let mut line = format!("{minute:>3} min:");
        for (i, (name, s)) in services.iter().enumerate() {
            let Some(pid) = s.pid() else {
                panic!("{name} is gone\n{}", s.log());
            };
            let bytes = process_usage(pid).1;
            let _ = writeln!(csv, "{minute},{name},{bytes}");
            if minute >= warmup {
                series[i].push((minute as f64 / 60.0, bytes as f64 / 1_048_576.0));
            }
            let _ = write!(line, "  {name} {:.1} MiB", bytes as f64 / 1_048_576.0);
        }
        let (_, m) = ingest.get("/metrics").await;
        let frames: f64 = m
            .lines()
            .filter(|l| l.starts_with("framewire_ingest_frames_total{"))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum();
        let streaming = metric(&m, "framewire_ingest_cameras{state=\"streaming\"}").unwrap_or(0.0);
        println!("{line}  | {streaming} cameras streaming, {frames} frames published");
    }
    let path = artifacts_dir().join("soak.csv");
    std::fs::write(&path, &csv).expect("write soak.csv");
    // The slope of the last third too: bounded growth (caches filling) flattens there, a leak
    // does not.
    let third = (minutes - warmup) / 3;
    let tail_from = (minutes - third) as f64 / 60.0;
    println!(
        "\n| service | RSS at {warmup} min | RSS at {minutes} min | slope after warm-up | slope of the last {third} min |\n|---|---:|---:|---:|---:|"
    );
    for (i, (name, _)) in services.iter().enumerate() {
        let s = &series[i];
        let first = s.first().map_or(0.0, |p| p.1);
        let last = s.last().map_or(0.0, |p| p.1);
        let tail: Vec<(f64, f64)> = s.iter().copied().filter(|p| p.0 >= tail_from).collect();
        println!(
            "| {name} | {first:.1} MiB | {last:.1} MiB | {:+.2} MiB/h | {:+.2} MiB/h |",
            slope(s),
            slope(&tail)
        );
    }
    println!("\nsamples: {}", path.display());
    drop(ingest);
    drop(workers);
    drop(sink);
    rtsp("down");
}
