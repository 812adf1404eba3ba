//! `framewire-loadgen`: a fleet of simulated cameras straight into Kafka.
//!
//! In `frames` mode it replays a pre-encoded clip (Annex B H.264 or H.265) as N cameras,
//! each with its own session, frame numbers and capture times at the clip's frame rate,
//! the records exactly as ingest publishes them ([`records`], [`produce`]); in `stats`
//! mode it writes synthetic per-frame statistics records as workers do, to drive the sink
//! alone. Cameras start staggered over a GOP so that their keyframes do not align
//! ([`schedule`]); records go out in real time, at a speed factor, or as fast as Kafka
//! takes them. Progress goes to stderr each second and the outcome to stdout as one JSON
//! line ([`report`]). See `docs/loadgen.md`.

mod clip;
mod config;
mod produce;
mod records;
mod report;
mod schedule;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use framewire_kit::config::{ConfigError, EXIT_BAD_CONFIG, Validate, effective_json};
use framewire_kit::kafka::ensure_topics;
use framewire_kit::shutdown::Shutdown;
use serde::Deserialize;

use crate::clip::Clip;
use crate::config::{Config, Flags, Mode, Rate, parse_size};
use crate::produce::{Fleet, KafkaOutput};
use crate::records::{Camera, Frames, Stats};
use crate::report::RunFacts;
use crate::schedule::{Clock, Limits, Pace, Schedule, SystemClock};

const SERVICE: &str = "framewire-loadgen";

/// Replays a clip as a fleet of cameras into Kafka (frames mode), or writes synthetic
/// statistics records (stats mode). Settings: the flags below, over `--config FILE`
/// (sections [kafka], [topics], [loadgen]) and FRAMEWIRE_* environment variables.
#[derive(Debug, Parser)]
#[command(name = SERVICE, version)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE", env = "FRAMEWIRE_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Print the effective configuration as JSON and exit.
    #[arg(long)]
    print_config: bool,
    #[command(flatten)]
    flags: Flags,
}

/// The file and environment, not yet checked: the flags come on top before the checks.
#[derive(Deserialize)]
#[serde(transparent)]
struct Unchecked(Config);

impl Validate for Unchecked {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

fn load(cli: Cli) -> Result<Config, ConfigError> {
    let Unchecked(mut config) = framewire_kit::config::load(cli.config.as_deref())?;
    cli.flags.apply(&mut config)?;
    config.validate()?;
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let print = cli.print_config;
    let _telemetry = framewire_kit::telemetry::init(SERVICE);
    let config = match load(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{SERVICE}: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if print {
        let json = effective_json(&config);
        println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    match run(config) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{SERVICE}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs the fleet; the summary JSON line.
fn run(config: Config) -> anyhow::Result<String> {
    let l = &config.loadgen;
    let topic = l.topic(&config.topics).to_owned();
    let cameras: Vec<Camera> = (0..l.cameras)
        .map(|i| Camera::new(l.camera_id(i)))
        .collect();
    let (fleet, gop, codec) = match l.mode {
        Mode::Frames => {
            let path = l.clip.as_deref().context("no clip")?;
            let clip = Clip::read(path, l.codec.fixed())?;
            let (gop, codec) = (clip.mean_gop(), clip.codec.name());
            tracing::info!(
                clip = %path.display(), %codec, access_units = clip.access_units.len(),
                keyframes = clip.keyframes.len(), mb = clip.bytes() as f64 / 1e6,
                "clip read"
            );
            let frames = Frames {
                clip,
                cameras,
                fps: l.fps,
                detect: l.detect,
            };
            (Fleet::Frames(frames), gop, Some(codec))
        }
        Mode::Stats => {
            let stats = Stats {
                cameras,
                fps: l.fps,
                gop: l.gop,
                size: parse_size(&l.size).context("loadgen.size")?,
            };
            (Fleet::Stats(stats), f64::from(l.gop), None)
        }
    };
    // One runtime thread for the topic set-up and the signal listener; the sending loop
    // runs on this thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the Tokio runtime")?;
    let shutdown = Shutdown::new();
    let stop = Arc::new(AtomicBool::new(false));
    runtime.block_on(async {
        shutdown.listen_for_signals();
        let spec = match l.mode {
            Mode::Frames => config.topics.frames_spec(),
            Mode::Stats => config.topics.stats_spec(),
        };
        if config.topics.create {
            ensure_topics(&config.kafka, SERVICE, &[spec]).await
        } else {
            Ok(())
        }
    })?;
    // The first signal stops the loop; the records sent are flushed and reported.
    let watcher = {
        let (shutdown, stop) = (shutdown.clone(), stop.clone());
        runtime.spawn(async move {
            shutdown.cancelled().await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let start_ms = now_ms();
    let mut output =
        KafkaOutput::new(&config, fleet, start_ms).context("cannot create the Kafka producer")?;
    let schedule = Schedule::new(l.cameras as usize, l.fps, gop);
    let limits = Limits {
        duration: l.duration.map(|d| d.0),
        records_per_camera: l.frames,
    };
    let pace = match l.rate {
        Rate::Speed(speed) => Pace::Paced { speed },
        Rate::Max => Pace::Max,
    };
    tracing::info!(
        cameras = l.cameras, fps = l.fps, rate = %l.rate, %topic,
        duration = ?limits.duration, frames = ?limits.records_per_camera,
        "sending"
    );
    let mut clock = SystemClock::start();
    let Ok(()) = schedule::run(&schedule, limits, pace, &mut clock, &mut output, &stop);
    let elapsed = clock.now();
    let flush_started = std::time::Instant::now();
    let flush_timeout = Duration::from_millis(l.delivery_timeout_ms) + Duration::from_secs(5);
    if let Err(e) = output.flush(flush_timeout) {
        tracing::warn!(error = %e, in_flight = output.in_flight(), "not every record was acknowledged");
    }
    let flush = flush_started.elapsed();
    watcher.abort();
    let deliveries = output.deliveries();
    let summary = output.tally.summary(RunFacts {
        mode: match l.mode {
            Mode::Frames => "frames",
            Mode::Stats => "stats",
        },
        codec,
        topic,
        cameras: l.cameras,
        fps: l.fps,
        rate: l.rate.to_string(),
        speed: match l.rate {
            Rate::Speed(s) => Some(s),
            Rate::Max => None,
        },
        elapsed,
        delivered: deliveries.delivered(),
        delivery_errors: deliveries.failed() + output.in_flight().max(0) as u64,
        first_error: deliveries.first_error(),
        flush,
    });
    Ok(serde_json::to_string(&summary)?)
}
