//! The worker's whole path on pinned cores: a clip's access units are produced (before the
//! worker starts) into a fresh frames topic with the `fw-*` headers ingest writes, for N
//! cameras; then a release `framewire-worker` starts under `taskset -c CPUS` with
//! `FRAMEWIRE_WORKER__DECODE_THREADS`, `FRAMEWIRE_WORKER__DECODE_MODE` and
//! `FRAMEWIRE_WORKER__DECODER` (`--decoder`) set. The clip is H.264 or H.265 (`fw-codec`
//! follows it). Once every
//! stats record is in the stats topic (Kafka in, decode, every statistic, JSON, Kafka out),
//! they are read and the rate is taken on the worker's own clock, from the first to the last
//! record's `decoded_ms`; the benchmark does not read while the worker runs, so that the
//! broker (on the same cores) serves only the worker. The very last picture of each camera
//! comes out through the worker's idle flush (`worker.idle_flush_ms` after the input stops),
//! so the rate is taken over the records before the last one per camera.
//!
//! With `--loadgen FRAMES` the frames come from `framewire-loadgen` instead: FRAMES records
//! of each of the N cameras (1,000 and more), each starting at another keyframe of the
//! clip, on 12 partitions; in keyframes mode every picture comes out at once, so all
//! records count.
//!
//! `BENCH_WORKER_LOG=FILE` keeps the worker's log, `BENCH_WORKER_FILTER` sets its filter
//! (default `warn`; e.g. `debug` with `--option debug=fetch` for librdkafka's fetcher).
//!
//! Prints one Markdown table row and appends the numbers as one JSON line to `--json FILE`
//! for `scripts/bench/summary.py`. Topics are deleted afterwards.
//!
//! ```text
//! bench-worker --clip FILE.h264|FILE.h265 [--cameras 1] [--threads 1] [--cpus 1]
//!              [--mode all|keyframes] [--decoder auto|openh264|ffmpeg] [--label TEXT]
//!              [--json FILE] [--fetch-bytes N] [--option KEY=VALUE]... [--loadgen FRAMES]
//! ```

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use framewire_e2e::{KAFKA, Topics, bin, free_port, unique};
use framewire_wire::stream::publishable_access_units;
use framewire_wire::{Codec, FrameMeta};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

struct Args {
    clip: PathBuf,
    cameras: usize,
    threads: usize,
    cpus: String,
    mode: String,
    /// The worker's `decoder` setting.
    decoder: String,
    label: String,
    json: Option<PathBuf>,
    /// librdkafka options for the worker (`[kafka.options]`), e.g.
    /// `max.partition.fetch.bytes=65536`.
    options: Vec<(String, String)>,
    /// Frames per camera to produce with `framewire-loadgen` (its cameras start at
    /// different keyframes, staggered, on 12 partitions) instead of the clip once per camera.
    loadgen: Option<u64>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        clip: PathBuf::new(),
        cameras: 1,
        threads: 1,
        cpus: "1".into(),
        mode: "all".into(),
        decoder: "auto".into(),
        label: String::new(),
        json: None,
        options: Vec::new(),
        loadgen: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--clip" => a.clip = value()?.into(),
            "--cameras" => a.cameras = value()?.parse().context("--cameras")?,
            "--threads" => a.threads = value()?.parse().context("--threads")?,
            "--cpus" => a.cpus = value()?,
            "--mode" => a.mode = value()?,
            "--decoder" => a.decoder = value()?,
            "--label" => a.label = value()?,
            "--json" => a.json = Some(value()?.into()),
            "--loadgen" => a.loadgen = Some(value()?.parse().context("--loadgen")?),
            "--fetch-bytes" => a
                .options
                .push(("max.partition.fetch.bytes".into(), value()?)),
            "--option" => {
                let v = value()?;
                let (k, v) = v.split_once('=').context("--option takes KEY=VALUE")?;
                a.options.push((k.into(), v.into()));
            }
            other => bail!("unknown argument {other} (see the module doc for usage)"),
        }
    }
    if a.clip.as_os_str().is_empty() || a.cameras == 0 || a.threads == 0 {
        bail!("--clip is required; --cameras and --threads must be at least 1");
    }
    if !matches!(a.mode.as_str(), "all" | "keyframes") {
        bail!("--mode must be all or keyframes");
    }
    if !matches!(a.decoder.as_str(), "auto" | "openh264" | "ffmpeg") {
        bail!("--decoder must be auto, openh264 or ffmpeg");
    }
    Ok(a)
}

/// Camera ids that the worker's pool spreads evenly over `threads` decoder threads (it
/// picks a camera's thread by `DefaultHasher` of the id modulo the thread count).
fn camera_ids(prefix: &str, cameras: usize, threads: usize) -> Vec<String> {
    let thread_of = |id: &str| {
        let mut h = DefaultHasher::new();
        id.hash(&mut h);
        (h.finish() % threads as u64) as usize
    };
    let mut per_thread = vec![0usize; threads];
    let quota = cameras.div_ceil(threads);
    let mut ids = Vec::new();
    let mut k = 0;
    while ids.len() < cameras {
        let id = format!("{prefix}-cam{k}");
        let t = thread_of(&id);
        if per_thread[t] < quota {
            per_thread[t] += 1;
            ids.push(id);
        }
        k += 1;
    }
    ids
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Produces every access unit once per camera (camera k on partition k mod partitions),
/// with the headers ingest writes, and waits for the broker to acknowledge them all.
fn produce(
    topic: &str,
    units: &[(Vec<u8>, bool)],
    codec: Codec,
    cameras: &[String],
    partitions: i32,
    dims: (u32, u32),
) -> anyhow::Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .set("linger.ms", "50")
        .set("message.max.bytes", "8388608")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("failed to create the producer")?;
    let start_ms = now_ms();
    for (k, camera) in cameras.iter().enumerate() {
        let session = format!("{:016x}", rand_u64());
        for (seq, (au, keyframe)) in units.iter().enumerate() {
            let keyframe = *keyframe;
            let meta = FrameMeta {
                camera: camera.clone(),
                session: session.clone(),
                seq: seq as u64,
                pts_90k: seq as i64 * 3600,
                capture_ms: start_ms + seq as i64 * 40,
                keyframe,
                codec: codec.name().to_owned(),
                dimensions: keyframe.then_some(dims),
            };
            let headers =
                meta.to_headers()
                    .into_iter()
                    .fold(OwnedHeaders::new(), |h, (name, value)| {
                        h.insert(Header {
                            key: name,
                            value: Some(value.as_bytes()),
                        })
                    });
            let mut record = BaseRecord::to(topic)
                .key(camera.as_str())
                .payload(au.as_slice())
                .partition(k as i32 % partitions)
                .timestamp(meta.capture_ms)
                .headers(headers);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => bail!("cannot produce to {topic}: {e}"),
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .context("frames not acknowledged within 60 s")?;
    Ok(())
}

/// Fills the frames topic with `framewire-loadgen`: `frames` records of each camera, as fast
/// as Kafka takes them. Returns the stats records the worker will write (one per keyframe in
/// keyframes mode) and the frames per keyframe.
async fn fleet(args: &Args, topics: &Topics, frames: u64) -> anyhow::Result<(usize, f64)> {
    eprintln!(
        "bench-worker: framewire-loadgen, {} cameras x {frames} frames into {}",
        args.cameras, topics.frames
    );
    let clip = args.clip.display().to_string();
    let prefix = unique("bwf");
    let summary = framewire_e2e::fill_topic(
        &topics.frames,
        args.cameras,
        frames,
        &prefix,
        &["--clip", &clip],
    )
    .await;
    let (records, keyframes) = (summary["delivered"].as_u64(), summary["keyframes"].as_u64());
    let (Some(records), Some(keyframes)) = (records, keyframes.filter(|&k| k > 0)) else {
        bail!("framewire-loadgen: {summary}");
    };
    let expected = if args.mode == "keyframes" {
        keyframes
    } else {
        records
    };
    Ok((expected as usize, records as f64 / keyframes as f64))
}

fn rand_u64() -> u64 {
    let mut h = DefaultHasher::new();
    (now_ms(), std::process::id()).hash(&mut h);
    h.finish()
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(format!("/proc/{pid}/stat"))
}

/// utime + stime of a `/proc/…/stat` file, in seconds (0 when unreadable).
fn stat_cpu_seconds(path: impl AsRef<std::path::Path>) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// CPU seconds of the worker's decoder threads (`decode-N`) so far.
fn decoder_cpu_seconds(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("decode-"))
        })
        .map(|t| stat_cpu_seconds(t.path().join("stat")))
        .sum()
}

struct Worker {
    child: Child,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_worker(topics: &Topics, args: &Args, partitions: i32) -> anyhow::Result<Worker> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("worker.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"127.0.0.1:{}\"\n\n[kafka]\nbrokers = \"{KAFKA}\"\n\n[topics]\nframes = \"{}\"\nstats = \"{}\"\ncontrol = \"{}\"\ndlq = \"{}\"\npartitions = {partitions}\nreplication_factor = 1\n\n[worker]\ngroup_id = \"{}\"\nauto_offset_reset = \"earliest\"\n",
            free_port(),
            topics.frames,
            topics.stats,
            topics.control,
            topics.dlq,
            unique("bench-worker"),
        ),
    )?;
    if !args.options.is_empty() {
        let options: String = args
            .options
            .iter()
            .map(|(k, v)| format!("\"{k}\" = \"{v}\"\n"))
            .collect();
        let text = std::fs::read_to_string(&config)?.replace(
            "\n[topics]",
            &format!("\n[kafka.options]\n{options}\n[topics]"),
        );
        std::fs::write(&config, text)?;
    }
    let log = dir.path().join("worker.log");
    let child = Command::new("taskset")
        .args(["-c", &args.cpus])
        .arg(bin("framewire-worker"))
        .arg("--config")
        .arg(&config)
        .env("FRAMEWIRE_WORKER__DECODE_THREADS", args.threads.to_string())
        .env("FRAMEWIRE_WORKER__DECODE_MODE", &args.mode)
        .env("FRAMEWIRE_WORKER__DECODER", &args.decoder)
        .env(
            "FRAMEWIRE_LOG",
            std::env::var("BENCH_WORKER_FILTER").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("cannot start taskset framewire-worker")?;
    Ok(Worker {
        child,
        _dir: dir,
        log,
    })
}

/// The `decoded_ms` of `expected` stats records (or of what came before `timeout`), read
/// once the worker has written them all. Until then only the partitions' high watermarks are
/// polled (one request per partition every 250 ms): a live reader's fetches would make the
/// broker, which shares the cores with the worker here, work for the benchmark (measured: the
/// broker used ~1.5 s of CPU per 2000 records with a live reader, ~1.0-1.2 s without).
fn consume(topic: &str, partitions: i32, expected: usize, timeout: Duration) -> Vec<i64> {
    let consumer: BaseConsumer = match ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .set("group.id", unique("bench-worker-reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot create the stats consumer: {e}");
            return Vec::new();
        }
    };
    let deadline = Instant::now() + timeout;
    let written = || -> i64 {
        (0..partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(1))
                    .map_or(0, |(_, high)| high)
            })
            .sum()
    };
    while written() < expected as i64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let _ = tpl.add_partition_offset(topic, p, Offset::Beginning);
    }
    if consumer.assign(&tpl).is_err() {
        return Vec::new();
    }
    let mut decoded_ms = Vec::with_capacity(expected);
    let deadline = Instant::now() + Duration::from_secs(30);
    while decoded_ms.len() < expected && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                match serde_json::from_slice::<serde_json::Value>(m.payload().unwrap_or(b"{}"))
                    .ok()
                    .and_then(|v| v["decoded_ms"].as_i64())
                {
                    Some(decoded) => decoded_ms.push(decoded),
                    // Not counted: the run then fails with "only N of M stats records".
                    None => eprintln!("stats record at offset {} has no decoded_ms", m.offset()),
                }
            }
            Some(Err(e)) => eprintln!("stats consumer: {e}"),
            None => {}
        }
    }
    decoded_ms
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(args.clip.with_extension("json")).context("the clip's .json facts")?,
    )?;
    let dims = (
        meta["width"].as_u64().unwrap_or(0) as u32,
        meta["height"].as_u64().unwrap_or(0) as u32,
    );
    let stream = std::fs::read(&args.clip)
        .with_context(|| format!("failed to read {}", args.clip.display()))?;
    let codec = Codec::sniff(&stream)
        .with_context(|| format!("{}: neither H.264 nor H.265", args.clip.display()))?;
    // The access units as ingest publishes them (parameter sets first on keyframes).
    let units: Vec<(Vec<u8>, bool)> = publishable_access_units(&stream, codec)
        .with_context(|| format!("{}", args.clip.display()))?
        .into_iter()
        .map(|au| (au.data, au.keyframe))
        .collect();
    let idr = units.iter().filter(|(_, key)| *key).count();
    let per_camera = if args.mode == "keyframes" {
        idr
    } else {
        units.len()
    };
    // One partition per camera, or with loadgen's fleets as many as a deployment has.
    let partitions = match args.loadgen {
        Some(_) => 12,
        None => args.cameras.max(1) as i32,
    };
    let topics = Topics::unique("bench-worker");
    framewire_e2e::create_big_topics(&topics, partitions).await?;
    let produced = match args.loadgen {
        Some(frames) => fleet(&args, &topics, frames).await,
        None => {
            let ids = camera_ids(&unique("bw"), args.cameras, args.threads);
            eprintln!(
                "bench-worker: {} access units x {} cameras into {}",
                units.len(),
                args.cameras,
                topics.frames
            );
            let per_keyframe = units.len() as f64 / idr as f64;
            let (topic, units) = (topics.frames.clone(), units.clone());
            tokio::task::spawn_blocking(move || {
                produce(&topic, &units, codec, &ids, partitions, dims)
            })
            .await?
            .map(|()| (per_camera * args.cameras, per_keyframe))
        }
    };
    // Stats records to wait for, and frames per keyframe.
    let (expected, frames_per_keyframe) = match produced {
        Ok(v) => v,
        Err(e) => {
            topics.delete().await;
            return Err(e);
        }
    };

    eprintln!(
        "bench-worker: produced; starting the worker (taskset -c {})",
        args.cpus
    );
    let worker = start_worker(&topics, &args, partitions)?;
    let pid = worker.child.id();
    let decoded_ms = tokio::task::spawn_blocking({
        let topic = topics.stats.clone();
        move || consume(&topic, partitions, expected, Duration::from_secs(120))
    })
    .await?;
    let cpu = cpu_seconds(pid);
    let decoder_cpu = decoder_cpu_seconds(pid);
    let rss = framewire_e2e::process_usage(pid).1;
    let log = std::fs::read_to_string(&worker.log).unwrap_or_default();
    if let Ok(path) = std::env::var("BENCH_WORKER_LOG") {
        std::fs::write(&path, &log).with_context(|| format!("cannot write {path}"))?;
    }
    drop(worker);
    topics.delete().await;
    if decoded_ms.len() < expected || expected < args.cameras + 2 {
        bail!(
            "only {} of {expected} stats records arrived\n--- worker log ---\n{log}",
            decoded_ms.len()
        );
    }
    // Rate over the records before each camera's last one (which waits for the idle flush),
    // on the worker's own clock: first to last `decoded_ms`.
    let mut decoded_ms = decoded_ms;
    decoded_ms.sort_unstable();
    // In keyframes mode each picture comes out at once: with loadgen's fleets (many
    // cameras, few records each) all of them count.
    let held_back = match (args.loadgen, args.mode.as_str()) {
        (Some(_), "keyframes") => 0,
        _ => args.cameras,
    };
    let used = decoded_ms.len() - held_back;
    let span = ((decoded_ms[used - 1] - decoded_ms[0]) as f64 / 1000.0).max(0.001);
    let rate = (used - 1) as f64 / span;
    // How busy the decoder threads were while the records came out (all of them: ~100 %).
    let busy = 100.0 * decoder_cpu / (args.threads as f64 * span);
    // Frames covered: in keyframes mode every IDR stands for its whole GOP.
    let covered = if args.mode == "keyframes" {
        rate * frames_per_keyframe
    } else {
        rate
    };
    println!(
        "| {} | {}p | {} cameras | {} threads on CPU {} | {} stats records | {rate:.1} records/s | {covered:.0} frames covered/s | worker CPU {cpu:.1} s | decoder threads busy {busy:.0} % |",
        args.label,
        dims.1,
        args.cameras,
        args.threads,
        args.cpus,
        decoded_ms.len(),
    );
    if let Some(path) = &args.json {
        let line = json!({
            "label": args.label, "clip": args.clip, "mode": args.mode,
            "decoder": args.decoder, "codec": codec.name(),
            "width": dims.0, "height": dims.1, "gop": meta["gop"], "profile": meta["profile"],
            "cameras": args.cameras, "threads": args.threads, "cpus": args.cpus,
            "records": decoded_ms.len(), "records_per_s": rate, "covered_fps": covered,
            "worker_cpu_s": cpu, "decoder_cpu_s": decoder_cpu, "decoder_busy_pct": busy,
            "worker_rss_bytes": rss, "loadgen_frames": args.loadgen,
        });
        framewire_e2e::append_json_line(path, &line)
            .with_context(|| format!("failed to append to {}", path.display()))?;
    }
    Ok(())
}
