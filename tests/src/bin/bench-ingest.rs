//! Whole-pipeline ingest benchmark: N looping 720p/25 fps/2 Mbps cameras from the bench RTSP
//! server through a release `framewire-ingest` into the real Kafka. Prints CPU seconds per
//! camera-minute, cameras per core, memory per camera, and bytes per frame on Kafka against
//! raw RGBA and raw-RGBA-as-JSON. Run by `make bench` (scripts/bench/run.sh).

use std::time::{Duration, Instant};

use framewire_e2e::{Service, Topics, camera_toml, metric};
use framewire_e2e::{cli_arg as arg, process_usage as usage};

async fn counters(s: &Service) -> (f64, f64) {
    let (_, text) = s.get("/metrics").await;
    let sum = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    (
        sum("framewire_ingest_frames_total{"),
        sum("framewire_ingest_bytes_total{"),
    )
}

#[tokio::main]
async fn main() {
    let cameras = arg("--cameras", 100);
    let seconds = arg("--seconds", 60);
    let port = arg("--rtsp-port", 8654);
    let (width, height) = (arg("--width", 1280), arg("--height", 720));
    let topics = Topics::unique("bench-ingest");

    // Baseline memory: the same process with no cameras.
    let idle = Service::start(
        "framewire-ingest",
        &topics.toml(),
        &[("FRAMEWIRE_LOG", "warn")],
    );
    idle.wait_ready(Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, rss_idle) = usage(idle.pid().unwrap_or(0));
    drop(idle);

    let cams: String = (0..cameras)
        .map(|i| {
            camera_toml(
                &format!("bench-{i}"),
                &format!("rtsp://127.0.0.1:{port}/cam{i}"),
                "",
            )
        })
        .collect();
    let ingest = Service::start(
        "framewire-ingest",
        &format!("{}\n{cams}", topics.toml()),
        &[("FRAMEWIRE_LOG", "warn")],
    );
    ingest.wait_ready(Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, m) = ingest.get("/metrics").await;
        let streaming = metric(&m, "framewire_ingest_cameras{state=\"streaming\"}").unwrap_or(0.0);
        if streaming as u64 == cameras {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {streaming} of {cameras} cameras streaming:\n{}",
            ingest.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await; // warm-up
    let pid = ingest.pid().unwrap_or(0);
    let (cpu0, _) = usage(pid);
    let (frames0, bytes0) = counters(&ingest).await;
    let t0 = Instant::now();
    let mut rss_max = 0;
    while t0.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_max = rss_max.max(usage(pid).1);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (cpu1, _) = usage(pid);
    let (frames1, bytes1) = counters(&ingest).await;
    let (_, m) = ingest.get("/metrics").await;
    let dropped: f64 = m
        .lines()
        .filter(|l| l.starts_with("framewire_ingest_dropped_frames_total{"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    drop(ingest);

    let cpu = cpu1 - cpu0;
    let camera_minutes = cameras as f64 * elapsed / 60.0;
    let per_camera_minute = cpu / camera_minutes;
    let per_core = 60.0 / per_camera_minute;
    let frames = frames1 - frames0;
    let fps = frames / elapsed / cameras as f64;
    let per_frame = (bytes1 - bytes0) / frames;
    let rgba = (width * height * 4) as f64;
    // {"camera":"bench-0","seq":123,"rgba":"<base64>"}
    let json = (rgba / 3.0).ceil() * 4.0 + 48.0;
    let mem_per_camera = rss_max.saturating_sub(rss_idle) as f64 / cameras as f64;

    println!(
        "\n## Ingest: {cameras} cameras, {width}x{height} 25 fps ~2 Mbps, {elapsed:.0} s, release build\n"
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!("| frames published per camera per second | {fps:.2} |");
    println!("| frames dropped (outage queue) | {dropped:.0} |");
    println!("| ingest CPU over the run | {cpu:.1} s for {camera_minutes:.0} camera-minutes |");
    println!("| **CPU seconds per camera-minute** | **{per_camera_minute:.3}** |");
    println!("| **cameras per core** | **{per_core:.0}** (target ≥ 250) |");
    println!(
        "| resident memory, idle / peak with cameras | {:.1} MiB / {:.1} MiB |",
        rss_idle as f64 / 1048576.0,
        rss_max as f64 / 1048576.0
    );
    println!(
        "| **memory per camera** | **{:.0} KiB** |",
        mem_per_camera / 1024.0
    );
    println!("\n| bytes per frame on Kafka | bytes | × H.264 |");
    println!("|---|---:|---:|");
    println!("| H.264 access unit (Framewire) | {per_frame:.0} | 1 |");
    println!("| raw RGBA | {rgba:.0} | {:.0} |", rgba / per_frame);
    println!(
        "| raw RGBA as base64 JSON | {json:.0} | {:.0} |",
        json / per_frame
    );
}
