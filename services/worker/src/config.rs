//! Worker configuration (`framewire-worker --config worker.toml`); reference in `docs/config.md`.

pub use framewire_decode::Choice as DecoderChoice;
pub use framewire_decode::HwAccel;
use framewire_inference::BackendKind;
use framewire_kit::config::{AdminConfig, ConfigError, Validate, check_range};
use framewire_kit::kafka::{KafkaConfig, TopicsConfig};
use framewire_kit::kafka_access::{KafkaAccess, KafkaNeeds, PatternType};
use framewire_wire::AnalysisRate;
use serde::{Deserialize, Serialize};

/// Default admin port of the worker.
pub const ADMIN_PORT: u16 = 9092;

/// The whole worker configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Admin server.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Brokers and librdkafka options.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// Topic names and creation settings.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// Decoding and consumer behaviour.
    #[serde(default)]
    pub worker: WorkerConfig,
    /// Object detection (the second analyzer, after statistics).
    #[serde(default)]
    pub detect: DetectConfig,
}

/// `[detect]`: object detection on decoded pictures.
///
/// Detection runs when `model` names a model file; each camera is analysed at its own
/// rate (its spec's `detect`, else `rate`). Inference runs on its own threads, fed by a
/// bounded queue: pictures that find it full wait in the worker, and above
/// `queue_max_bytes` the partitions they come from pause, as for decoding.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// The ONNX model (`nanodet-g-416.onnx`, made by `scripts/model.sh`); empty = no detection.
    #[serde(default)]
    pub model: String,
    /// Rate for cameras whose spec sets none: `off`, `every`, `every:N`, `keyframes`, `fps:X`.
    #[serde(default = "default_detect_rate")]
    pub rate: AnalysisRate,
    /// Inference backend: `tract` (pure Rust, always built) or `onnxruntime` (needs the
    /// `onnxruntime` cargo feature and the ONNX Runtime library).
    #[serde(default = "default_backend")]
    pub backend: BackendKind,
    /// Path of `libonnxruntime.so` for the `onnxruntime` backend; empty = `ORT_DYLIB_PATH`.
    #[serde(default)]
    pub onnxruntime_library: String,
    /// Inference threads, each running one picture (or batch) at a time.
    #[serde(default = "one")]
    pub threads: usize,
    /// Threads each inference may use inside the runtime (1 = the most pictures per core).
    #[serde(default = "one")]
    pub intra_threads: usize,
    /// Most pictures run together in one inference, across cameras.
    #[serde(default = "one")]
    pub max_batch: usize,
    /// Pictures queued for inference; further ones wait in the worker.
    #[serde(default = "default_detect_queue")]
    pub queue: usize,
    /// Bytes of pictures waiting for inference above which the partitions they come from
    /// pause (they resume at half). A picture is a 2 MB tensor at 416x416.
    #[serde(default = "default_detect_queue_max_bytes")]
    pub queue_max_bytes: usize,
    /// Objects at or below this confidence are not reported.
    #[serde(default = "default_score_threshold")]
    pub score_threshold: f32,
    /// Of two same-class boxes overlapping more than this (IoU), the weaker is dropped.
    #[serde(default = "default_iou_threshold")]
    pub iou_threshold: f32,
    /// Most objects reported per picture, best first.
    #[serde(default = "default_max_objects")]
    pub max_objects: usize,
}

fn default_detect_rate() -> AnalysisRate {
    AnalysisRate::PerSecondMilli(1000)
}
fn default_backend() -> BackendKind {
    BackendKind::Tract
}
fn one() -> usize {
    1
}
fn default_detect_queue() -> usize {
    4
}
fn default_detect_queue_max_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_score_threshold() -> f32 {
    0.35
}
fn default_iou_threshold() -> f32 {
    0.5
}
fn default_max_objects() -> usize {
    100
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            model: String::new(),
            rate: default_detect_rate(),
            backend: default_backend(),
            onnxruntime_library: String::new(),
            threads: 1,
            intra_threads: 1,
            max_batch: 1,
            queue: default_detect_queue(),
            queue_max_bytes: default_detect_queue_max_bytes(),
            score_threshold: default_score_threshold(),
            iou_threshold: default_iou_threshold(),
            max_objects: default_max_objects(),
        }
    }
}

impl DetectConfig {
    /// Whether detection is on (a model is configured).
    pub fn enabled(&self) -> bool {
        !self.model.trim().is_empty()
    }

    /// The pre- and post-processing settings.
    pub fn detect_config(&self) -> framewire_detect::Config {
        framewire_detect::Config {
            score_threshold: self.score_threshold,
            iou_threshold: self.iou_threshold,
            max_detections: self.max_objects,
            ..framewire_detect::Config::default()
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_range("detect.threads", self.threads, 1, 64)?;
        check_range("detect.intra_threads", self.intra_threads, 1, 64)?;
        check_range("detect.max_batch", self.max_batch, 1, 64)?;
        check_range("detect.queue", self.queue, 1, 10_000)?;
        check_range("detect.queue_max_bytes", self.queue_max_bytes, 0, 1 << 36)?;
        check_range("detect.score_threshold", self.score_threshold, 0.0, 1.0)?;
        check_range("detect.iou_threshold", self.iou_threshold, 0.0, 1.0)?;
        check_range("detect.max_objects", self.max_objects, 1, 10_000)?;
        if self.enabled() && !std::path::Path::new(self.model.trim()).is_file() {
            return Err(ConfigError::invalid(
                "detect.model",
                format!(
                    "{:?} is not a file (make it with scripts/model.sh, or leave detect.model empty to turn detection off)",
                    self.model
                ),
            ));
        }
        Ok(())
    }
}

/// `[worker]`: consumer group and decoding.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Consumer group shared by all worker replicas (KEDA scales on its lag).
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Decoder backend: `auto` (ffmpeg when built in, else openh264), `openh264` (H.264
    /// only) or `ffmpeg` (H.264 and H.265; needs the `ffmpeg` cargo feature).
    #[serde(default)]
    pub decoder: DecoderChoice,
    /// Frame threads of each ffmpeg decoder; 0 = by picture size (1 up to 1920x1080, one
    /// more per 1080p of pixels, at most the CPUs). Ignored by openh264.
    #[serde(default)]
    pub ffmpeg_threads: usize,
    /// Hardware decoding with the ffmpeg decoder: `none`, `vaapi` or `cuda`. A device that
    /// cannot be opened at start means software decoding, said in one log line.
    #[serde(default)]
    pub hwaccel: HwAccel,
    /// The hardware device: a VA-API render node (`/dev/dri/renderD128`) or a CUDA GPU
    /// index (`0`); empty = the library's default.
    #[serde(default)]
    pub hwaccel_device: String,
    /// Decoder threads; 0 = one per CPU. A camera always decodes on the same thread.
    #[serde(default)]
    pub decode_threads: usize,
    /// Access units queued per decoder thread; records that find it full are parked.
    #[serde(default = "default_queue_frames")]
    pub queue_frames: usize,
    /// Bytes of access units parked per decoder thread above which the partitions feeding
    /// it pause (they resume at half).
    #[serde(default = "default_queue_max_bytes")]
    pub queue_max_bytes: usize,
    /// A decoder thread that receives nothing for this long flushes the pictures its
    /// decoders hold back (so a camera that stops still gets its last frame measured).
    #[serde(default = "default_idle_flush_ms")]
    pub idle_flush_ms: u64,
    /// A camera with no record for this long (and nothing in flight) no longer holds its
    /// partition's resume offset at its GOP start: a camera that went away never makes a
    /// takeover replay more than this. Keep it above ingest's `stall_timeout_ms`.
    #[serde(default = "default_idle_release_ms")]
    pub idle_release_ms: u64,
    /// How often progress is committed (the committed lag KEDA reads trails processing by
    /// about this much).
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// Producer `linger.ms` for stats records.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u32,
    /// Producer `message.timeout.ms`: how long one attempt to deliver a stats record or
    /// dead letter may take before it is sent again (it is sent again, with backoff, until
    /// Kafka takes it: a record is never dropped).
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    /// Longest wait between two attempts to deliver a record.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Where a new consumer group starts: `earliest` (process the backlog) or `latest`.
    #[serde(default = "default_offset_reset")]
    pub auto_offset_reset: String,
    /// Time allowed on SIGTERM to finish queued frames, deliver stats and commit.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// `all` decodes every access unit; `keyframes` decodes only IDR records (each carries
    /// its SPS/PPS), the cheap mode: one picture per GOP.
    #[serde(default)]
    pub decode_mode: DecodeMode,
    /// `complete` processes every record; `realtime` skips a camera's backlog to its
    /// newest keyframe once it is further behind than `realtime_max_ms` / `realtime_max_frames`.
    #[serde(default)]
    pub lag_policy: LagPolicy,
    /// `realtime`: a camera whose records are older than this (capture → consumed) is behind.
    #[serde(default = "default_realtime_max_ms")]
    pub realtime_max_ms: u64,
    /// `realtime`: a camera more than this many frames behind (its age × its frame rate)
    /// is behind; 0 = only `realtime_max_ms` counts.
    #[serde(default = "default_realtime_max_frames")]
    pub realtime_max_frames: u64,
    /// Highest frame rate of `/debug/cameras/{id}/mjpeg` (JPEG encoding costs decode time).
    #[serde(default = "default_mjpeg_max_fps")]
    pub mjpeg_max_fps: f64,
    /// Live views (snapshots being waited for and MJPEG streams) served at once; more
    /// are refused with 429. Each costs a JPEG encode per picture on this replica.
    #[serde(default = "default_live_view_max_viewers")]
    pub live_view_max_viewers: u32,
    /// Thresholds of the black / frozen / scene-cut detectors (ffmpeg's defaults).
    #[serde(default)]
    pub detectors: framewire_framestats::DetectorConfig,
}

/// Which access units the worker decodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecodeMode {
    /// Every access unit: statistics for every frame.
    #[default]
    All,
    /// IDR access units only: statistics for one frame per GOP, at a fraction of the cost.
    Keyframes,
}

/// What the worker does when it falls behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LagPolicy {
    /// Process every record, however late.
    #[default]
    Complete,
    /// Skip a camera that is too far behind to its newest keyframe; count what was skipped.
    Realtime,
}

fn default_group_id() -> String {
    "framewire-worker".to_owned()
}
fn default_queue_frames() -> usize {
    64
}
fn default_queue_max_bytes() -> usize {
    32 * 1024 * 1024
}
fn default_idle_flush_ms() -> u64 {
    250
}
fn default_idle_release_ms() -> u64 {
    15_000
}
fn default_commit_interval_ms() -> u64 {
    500
}
fn default_delivery_timeout_ms() -> u64 {
    30_000
}
fn default_retry_max_ms() -> u64 {
    10_000
}
fn default_linger_ms() -> u32 {
    5
}
fn default_offset_reset() -> String {
    "earliest".to_owned()
}
fn default_shutdown_grace_ms() -> u64 {
    15_000
}
fn default_realtime_max_ms() -> u64 {
    5_000
}
fn default_realtime_max_frames() -> u64 {
    0
}
fn default_live_view_max_viewers() -> u32 {
    4
}
fn default_mjpeg_max_fps() -> f64 {
    2.0
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            group_id: default_group_id(),
            decoder: DecoderChoice::default(),
            ffmpeg_threads: 0,
            hwaccel: HwAccel::None,
            hwaccel_device: String::new(),
            decode_threads: 0,
            queue_frames: default_queue_frames(),
            queue_max_bytes: default_queue_max_bytes(),
            idle_flush_ms: default_idle_flush_ms(),
            idle_release_ms: default_idle_release_ms(),
            commit_interval_ms: default_commit_interval_ms(),
            linger_ms: default_linger_ms(),
            delivery_timeout_ms: default_delivery_timeout_ms(),
            retry_max_ms: default_retry_max_ms(),
            auto_offset_reset: default_offset_reset(),
            shutdown_grace_ms: default_shutdown_grace_ms(),
            decode_mode: DecodeMode::default(),
            lag_policy: LagPolicy::default(),
            realtime_max_ms: default_realtime_max_ms(),
            realtime_max_frames: default_realtime_max_frames(),
            mjpeg_max_fps: default_mjpeg_max_fps(),
            live_view_max_viewers: default_live_view_max_viewers(),
            detectors: Default::default(),
        }
    }
}

impl WorkerConfig {
    /// How long a camera without records keeps its decoder: 3 × `idle_release_ms`, at
    /// least 30 s (a decoder holds megabytes; cameras come and go).
    pub fn decoder_evict_after(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.idle_release_ms.saturating_mul(3).max(30_000))
    }

    /// Decoder threads to start.
    pub fn threads(&self) -> usize {
        if self.decode_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.decode_threads
        }
    }
}

impl KafkaNeeds for Config {
    fn kafka_access(&self) -> KafkaAccess {
        let t = &self.topics;
        let mut a = KafkaAccess::default();
        a.consumes(&t.frames, "access units to decode")
            .group(
                PatternType::Literal,
                &self.worker.group_id,
                "the workers' group (KEDA reads its lag)",
            )
            .produces(&t.stats, "per-frame statistics")
            .produces(&t.dlq, "records that cannot be processed");
        if self.detect.enabled() {
            a.produces(&t.detections, "object detections");
        }
        a.creates(t, &[&t.frames, &t.stats, &t.detections, &t.dlq]);
        a
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.admin.validate()?;
        self.kafka.validate()?;
        self.topics.validate()?;
        let w = &self.worker;
        if w.group_id.trim().is_empty() {
            return Err(ConfigError::invalid("worker.group_id", "must not be empty"));
        }
        let backend = w
            .decoder
            .resolve()
            .map_err(|e| {
                ConfigError::invalid(
                    "worker.decoder",
                    format!("{e}: set \"auto\" or \"openh264\", or run a worker built with --features ffmpeg (the container image is)"),
                )
            })?;
        check_range("worker.ffmpeg_threads", w.ffmpeg_threads, 0, 64)?;
        if w.hwaccel != HwAccel::None && backend != framewire_decode::Backend::Ffmpeg {
            return Err(ConfigError::invalid(
                "worker.hwaccel",
                format!(
                    "{} needs the ffmpeg decoder, and worker.decoder is {backend} here",
                    w.hwaccel
                ),
            ));
        }
        check_range("worker.decode_threads", w.decode_threads, 0, 256)?;
        check_range("worker.queue_frames", w.queue_frames, 1, 100_000)?;
        check_range("worker.queue_max_bytes", w.queue_max_bytes, 0, 1 << 34)?;
        check_range("worker.idle_flush_ms", w.idle_flush_ms, 10, 60_000)?;
        check_range("worker.idle_release_ms", w.idle_release_ms, 100, 3_600_000)?;
        check_range(
            "worker.commit_interval_ms",
            w.commit_interval_ms,
            50,
            60_000,
        )?;
        check_range("worker.linger_ms", w.linger_ms, 0, 1_000)?;
        check_range(
            "worker.delivery_timeout_ms",
            w.delivery_timeout_ms,
            1_000,
            3_600_000,
        )?;
        check_range("worker.retry_max_ms", w.retry_max_ms, 100, 600_000)?;
        check_range("worker.shutdown_grace_ms", w.shutdown_grace_ms, 0, 600_000)?;
        check_range("worker.realtime_max_ms", w.realtime_max_ms, 100, 3_600_000)?;
        check_range(
            "worker.realtime_max_frames",
            w.realtime_max_frames,
            0,
            1_000_000,
        )?;
        check_range("worker.mjpeg_max_fps", w.mjpeg_max_fps, 0.1, 30.0)?;
        check_range(
            "worker.live_view_max_viewers",
            w.live_view_max_viewers,
            1,
            64,
        )?;
        let d = &w.detectors;
        check_range(
            "worker.detectors.black_pixel_th",
            d.black_pixel_th,
            0.0,
            1.0,
        )?;
        check_range(
            "worker.detectors.black_picture_th",
            d.black_picture_th,
            0.0,
            1.0,
        )?;
        check_range("worker.detectors.freeze_noise", d.freeze_noise, 0.0, 1.0)?;
        check_range(
            "worker.detectors.scene_threshold",
            d.scene_threshold,
            0.0,
            100.0,
        )?;
        self.detect.validate()?;
        if !matches!(w.auto_offset_reset.as_str(), "earliest" | "latest") {
            return Err(ConfigError::invalid(
                "worker.auto_offset_reset",
                format!("{:?} is not one of earliest, latest", w.auto_offset_reset),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detections_are_written_only_with_a_model() {
        use framewire_kit::kafka_access::Operation::Write;
        let writes = |c: &Config| -> Vec<String> {
            c.kafka_access()
                .grants()
                .iter()
                .filter(|g| g.operations.contains(&Write))
                .map(|g| g.name.clone())
                .collect()
        };
        let mut c = Config::default();
        c.detect.model = String::new();
        assert!(!writes(&c).contains(&c.topics.detections));
        c.detect.model = "/models/m.onnx".into();
        assert!(writes(&c).contains(&c.topics.detections));
        assert!(writes(&c).contains(&c.topics.stats) && writes(&c).contains(&c.topics.dlq));
    }

    #[test]
    fn validation_names_the_setting() {
        let mut c = Config::default();
        assert!(c.validate().is_ok());
        c.worker.auto_offset_reset = "newest".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("worker.auto_offset_reset")
        );
        c = Config::default();
        c.detect.model = "/nonexistent/nanodet.onnx".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("detect.model") && err.contains("scripts/model.sh"),
            "{err}"
        );
        let rate: Result<Config, _> = toml::from_str("[detect]\nrate = \"often\"");
        let err = rate.unwrap_err().to_string();
        assert!(err.contains("often") && err.contains("fps:X"), "{err}");
        let decoder: Result<Config, _> = toml::from_str("[worker]\ndecoder = \"libav\"");
        let err = decoder.unwrap_err().to_string();
        assert!(err.contains("libav") && err.contains("openh264"), "{err}");
        c = Config::default();
        c.worker.decoder = DecoderChoice::Ffmpeg;
        let result = c.validate().map_err(|e| e.to_string());
        assert_eq!(result.is_ok(), cfg!(feature = "ffmpeg"), "{result:?}");
        if let Err(e) = result {
            assert!(
                e.contains("worker.decoder") && e.contains("--features ffmpeg"),
                "{e}"
            );
        }
        c = Config::default();
        c.worker.decoder = DecoderChoice::OpenH264;
        c.worker.hwaccel = HwAccel::Vaapi;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("worker.hwaccel") && e.contains("openh264"),
            "{e}"
        );
        c = Config::default();
        c.worker.ffmpeg_threads = 65;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("worker.ffmpeg_threads")
        );
        c = Config::default();
        c.worker.queue_frames = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("worker.queue_frames")
        );
    }
}
