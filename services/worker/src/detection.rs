//! The object-detection analyzer: picks pictures at each camera's rate, runs the model on
//! its own threads, and hands back one [`DetectionsRecord`] per analysed picture.
//!
//! Statistics cost a few hundred microseconds per picture, inference tens of
//! milliseconds, so the two must not share a thread: a decoder thread only picks the
//! picture ([`Picker`]) and turns it into the model's input tensor (a few milliseconds,
//! while the decoded planes are at hand), and goes on decoding. The tensor goes to the
//! [`DetectPool`]: a bounded queue in front of `detect.threads` inference threads, each
//! with its own model instance; a thread takes up to `detect.max_batch` queued pictures
//! (of any cameras) per inference. When the queue is full the consume loop parks the
//! picture and, above `detect.queue_max_bytes`, pauses the partitions feeding it — the
//! same backpressure as decoding (`crate::parking`), so decoding of other partitions goes on.
//!
//! The frame's record is done (its offset committable) once both its statistics and its
//! detections are delivered.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use framewire_detect::{Detection, Letterbox, Yuv420};
use framewire_inference::{Detector, InferenceError, Options};
use framewire_wire::{
    AnalysisRate, BoundingBox, DetectedObject, DetectionsRecord, FrameMeta, RateClock,
};
use tokio::sync::mpsc;

use crate::config::DetectConfig;
use crate::metrics::Metrics;

/// One picture on its way to inference.
pub struct DetectInput {
    /// The picture's frame.
    pub meta: FrameMeta,
    /// Decoded size.
    pub width: u32,
    /// Decoded size.
    pub height: u32,
    /// The model's input tensor.
    pub tensor: Vec<f32>,
    /// Where the picture sits in the tensor.
    pub letterbox: Letterbox,
    /// Source partition of the frame.
    pub partition: i32,
    /// Source offset of the frame.
    pub offset: i64,
    /// The frame's span.
    pub span: tracing::Span,
    /// When the tensor was made (for the queue-wait histogram).
    pub made: Instant,
}

impl DetectInput {
    /// Bytes it holds (for the parking limit).
    pub fn bytes(&self) -> usize {
        self.tensor.len() * std::mem::size_of::<f32>()
    }
}

/// What became of a picture sent to inference.
pub enum DetectOutcome {
    /// The model ran: publish the record.
    Detected {
        /// The record.
        record: Box<DetectionsRecord>,
        /// Source partition.
        partition: i32,
        /// Source offset.
        offset: i64,
        /// The frame's span.
        span: tracing::Span,
    },
    /// Inference failed (logged and counted): nothing to publish.
    Failed {
        /// Source partition.
        partition: i32,
        /// Source offset.
        offset: i64,
    },
}

/// What a decoder thread needs to pick and prepare pictures: the default rate and the
/// model's input settings. `None` in [`crate::decode::PoolConfig`] when detection is off.
#[derive(Debug, Clone)]
pub struct PickSettings {
    /// Rate of cameras whose frames carry no `fw-detect` header.
    pub default_rate: AnalysisRate,
    /// Input size and thresholds.
    pub model: framewire_detect::Config,
}

/// A camera's picker, on its decoder thread.
#[derive(Debug, Default)]
pub struct Picker {
    clock: RateClock,
}

impl Picker {
    /// Whether the detector analyses this picture: by the frame's own rate (header),
    /// else the worker's default. Replayed pictures go through here too, so that after a
    /// takeover the clock is where the previous owner's was. Counts what is skipped.
    pub fn pick(
        &mut self,
        meta: &FrameMeta,
        rate: Option<AnalysisRate>,
        settings: Option<&PickSettings>,
        replay: bool,
        metrics: &Metrics,
    ) -> bool {
        let Some(settings) = settings else {
            if rate.is_some_and(|r| r != AnalysisRate::Off) && !replay {
                metrics
                    .detect_skipped
                    .with_label_values(&[&meta.camera, "off"])
                    .inc();
            }
            return false;
        };
        let rate = rate.unwrap_or(settings.default_rate);
        let picked = self.clock.pick(rate, meta.seq, meta.keyframe, meta.pts_90k);
        if !picked && !replay && rate != AnalysisRate::Off {
            metrics
                .detect_skipped
                .with_label_values(&[&meta.camera, "rate"])
                .inc();
        }
        picked && !replay
    }
}

/// Turns a picked picture into the model's input (on the decoder thread).
pub fn prepare(
    picture: &Yuv420<'_>,
    settings: &PickSettings,
    meta: &FrameMeta,
    partition: i32,
    offset: i64,
    span: &tracing::Span,
    metrics: &Metrics,
) -> Option<DetectInput> {
    let started = Instant::now();
    let mut tensor = vec![0f32; settings.model.input_len()];
    let letterbox = match framewire_detect::preprocess(picture, &settings.model, &mut tensor) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(camera = %meta.camera, seq = meta.seq, error = %e, "picture not analysed");
            metrics
                .detect_errors
                .with_label_values(&[&meta.camera])
                .inc();
            return None;
        }
    };
    metrics
        .detect_preprocess_seconds
        .observe(started.elapsed().as_secs_f64());
    Some(DetectInput {
        meta: meta.clone(),
        width: picture.width,
        height: picture.height,
        tensor,
        letterbox,
        partition,
        offset,
        span: span.clone(),
        made: Instant::now(),
    })
}

/// Why the detector could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The model did not load.
    #[error("detect.model {path}: {source}")]
    Model {
        /// The model file.
        path: String,
        /// Why.
        source: InferenceError,
    },
    /// A thread could not be spawned.
    #[error("cannot start an inference thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// The inference threads and their queue.
pub struct DetectPool {
    input: mpsc::Sender<DetectInput>,
    threads: Vec<std::thread::JoinHandle<()>>,
    capacity: usize,
    /// The preprocessing settings the decoder threads use.
    pick: PickSettings,
}

impl DetectPool {
    /// Loads one model instance per thread (so a bad model fails the start, not the first
    /// picture) and starts the threads; outcomes go to `outcomes`.
    pub fn start(
        config: &DetectConfig,
        outcomes: mpsc::Sender<DetectOutcome>,
        metrics: Metrics,
    ) -> Result<Self, StartError> {
        let path = PathBuf::from(config.model.trim());
        let options = Options {
            backend: config.backend,
            threads: config.intra_threads,
            max_batch: config.max_batch,
            onnxruntime_library: (!config.onnxruntime_library.trim().is_empty())
                .then(|| PathBuf::from(config.onnxruntime_library.trim())),
        };
        let model_name = path
            .file_stem()
            .map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned());
        let mut detectors = Vec::with_capacity(config.threads);
        for _ in 0..config.threads {
            let detector = Detector::load(&path, &options).map_err(|source| StartError::Model {
                path: path.display().to_string(),
                source,
            })?;
            detectors.push(detector);
        }
        let mut model = config.detect_config();
        if let Some(first) = detectors.first() {
            model.input_size = first.input_size();
        }
        let (tx, rx) = mpsc::channel(config.queue);
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::with_capacity(detectors.len());
        for (i, detector) in detectors.into_iter().enumerate() {
            let job = InferenceThread {
                detector,
                model: model.clone(),
                model_name: model_name.clone(),
                queue: rx.clone(),
                out: outcomes.clone(),
                metrics: metrics.clone(),
                max_batch: config.max_batch,
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("detect-{i}"))
                    .spawn(move || job.run())?,
            );
        }
        tracing::info!(
            model = %path.display(),
            backend = %config.backend,
            threads = config.threads,
            max_batch = config.max_batch,
            default_rate = %config.rate,
            "object detection on"
        );
        Ok(DetectPool {
            input: tx,
            threads,
            capacity: config.queue,
            pick: PickSettings {
                default_rate: config.rate,
                model,
            },
        })
    }

    /// What the decoder threads need to pick and prepare pictures.
    pub fn pick_settings(&self) -> PickSettings {
        self.pick.clone()
    }

    /// Queues a picture if there is room; hands it back otherwise.
    #[expect(
        clippy::result_large_err,
        reason = "the picture comes back by value; boxing would allocate for every full queue"
    )]
    pub fn try_submit(&self, input: DetectInput) -> Result<(), DetectInput> {
        self.input.try_send(input).map_err(|e| match e {
            mpsc::error::TrySendError::Full(i) | mpsc::error::TrySendError::Closed(i) => i,
        })
    }

    /// Pictures queued now.
    pub fn queued(&self) -> usize {
        self.capacity - self.input.capacity()
    }

    /// Closes the queue and waits for the threads to finish what is queued.
    pub fn finish(self) {
        drop(self.input);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// One inference thread: takes queued pictures, runs the model, decodes its outputs.
struct InferenceThread {
    detector: Detector,
    model: framewire_detect::Config,
    model_name: String,
    queue: Arc<Mutex<mpsc::Receiver<DetectInput>>>,
    out: mpsc::Sender<DetectOutcome>,
    metrics: Metrics,
    max_batch: usize,
}

impl InferenceThread {
    fn run(mut self) {
        let backend = self.detector.backend().to_string();
        let max_batch = self.max_batch.min(self.detector.max_batch()).max(1);
        let mut detections = Vec::new();
        loop {
            let batch = self.next_batch(max_batch);
            if batch.is_empty() {
                return;
            }
            for input in &batch {
                self.metrics
                    .detect_wait_seconds
                    .observe(input.made.elapsed().as_secs_f64());
            }
            let started = Instant::now();
            let tensors: Vec<&[f32]> = batch.iter().map(|i| i.tensor.as_slice()).collect();
            let result = self.detector.run(&tensors);
            self.metrics
                .inference_seconds
                .with_label_values(&[&backend])
                .observe(started.elapsed().as_secs_f64());
            self.metrics.detect_batch.observe(batch.len() as f64);
            match result {
                Ok(outputs) => {
                    for (input, raw) in batch.into_iter().zip(outputs) {
                        let decoded = framewire_detect::decode(
                            &raw.outputs(),
                            &input.letterbox,
                            &self.model,
                            &mut detections,
                        );
                        match decoded {
                            Ok(()) => self.detected(input, &detections),
                            Err(e) => self.failed(input, &e.to_string()),
                        }
                    }
                }
                Err(e) => {
                    let error = e.to_string();
                    for input in batch {
                        self.failed(input, &error);
                    }
                }
            }
        }
    }

    /// Blocks for the first queued picture, then takes whatever else is queued, up to
    /// `max_batch`. Empty when the queue is closed.
    fn next_batch(&self, max_batch: usize) -> Vec<DetectInput> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let Some(first) = queue.blocking_recv() else {
            return Vec::new();
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        batch
    }

    fn detected(&self, input: DetectInput, detections: &[Detection]) {
        let camera = input.meta.camera.as_str();
        self.metrics
            .detect_pictures
            .with_label_values(&[camera])
            .inc();
        let mut per_label: HashMap<&str, u64> = HashMap::new();
        for d in detections {
            *per_label.entry(d.label).or_default() += 1;
        }
        for (label, n) in per_label {
            self.metrics
                .detect_objects
                .with_label_values(&[label])
                .inc_by(n);
        }
        let record = DetectionsRecord {
            camera: input.meta.camera.clone(),
            session: input.meta.session.clone(),
            seq: input.meta.seq,
            pts_90k: input.meta.pts_90k,
            capture_ms: input.meta.capture_ms,
            detected_ms: now_ms(),
            width: input.width,
            height: input.height,
            model: self.model_name.clone(),
            objects: detections.iter().map(object_of).collect(),
        };
        let _ = self.out.blocking_send(DetectOutcome::Detected {
            record: Box::new(record),
            partition: input.partition,
            offset: input.offset,
            span: input.span,
        });
    }

    fn failed(&self, input: DetectInput, error: &str) {
        tracing::warn!(camera = %input.meta.camera, seq = input.meta.seq, %error, "inference failed; the picture has statistics but no detections");
        self.metrics
            .detect_errors
            .with_label_values(&[&input.meta.camera])
            .inc();
        let _ = self.out.blocking_send(DetectOutcome::Failed {
            partition: input.partition,
            offset: input.offset,
        });
    }
}

/// A detection as it goes on the wire (coordinates rounded to 1/10000 of the picture:
/// finer than a pixel at 8K, and records stay short).
fn object_of(d: &Detection) -> DetectedObject {
    let r = |v: f32| (v * 10_000.0).round() / 10_000.0;
    DetectedObject {
        label: d.label.to_owned(),
        class: d.class,
        score: (d.score * 10_000.0).round() / 10_000.0,
        bbox: BoundingBox {
            x0: r(d.x0),
            y0: r(d.y0),
            x1: r(d.x1),
            y1: r(d.y1),
        },
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64, keyframe: bool) -> FrameMeta {
        FrameMeta {
            camera: "cam".into(),
            session: "s".into(),
            seq,
            pts_90k: seq as i64 * 3600,
            capture_ms: 0,
            keyframe,
            codec: "h264".into(),
            dimensions: None,
        }
    }

    fn settings(rate: AnalysisRate) -> PickSettings {
        PickSettings {
            default_rate: rate,
            model: framewire_detect::Config::default(),
        }
    }

    fn skipped(m: &Metrics, reason: &str) -> u64 {
        m.detect_skipped.with_label_values(&["cam", reason]).get()
    }

    #[test]
    fn the_frames_own_rate_wins_over_the_default_and_skips_are_counted() {
        let m = Metrics::new(&prometheus::Registry::new());
        let s = settings(AnalysisRate::Off);
        let mut p = Picker::default();
        let picked: Vec<u64> = (0..10)
            .filter(|&i| {
                p.pick(
                    &meta(i, i == 0),
                    Some(AnalysisRate::EveryNth(3)),
                    Some(&s),
                    false,
                    &m,
                )
            })
            .collect();
        assert_eq!(picked, vec![0, 3, 6, 9]);
        assert_eq!(skipped(&m, "rate"), 6);
        // Without a header the default applies: off picks nothing and counts nothing.
        assert!(!p.pick(&meta(12, false), None, Some(&s), false, &m));
        assert_eq!(skipped(&m, "rate"), 6);
    }

    #[test]
    fn replayed_pictures_move_the_clock_but_are_not_analysed() {
        let m = Metrics::new(&prometheus::Registry::new());
        let s = settings(AnalysisRate::PerSecondMilli(1000));
        let mut p = Picker::default();
        // 25 fps: frame 0 starts slot 0 (replayed), frames 1-24 in the same slot.
        assert!(!p.pick(&meta(0, true), None, Some(&s), true, &m));
        assert!(!p.pick(&meta(1, false), None, Some(&s), false, &m));
        assert!(p.pick(&meta(25, false), None, Some(&s), false, &m));
        assert_eq!(skipped(&m, "rate"), 1);
    }

    #[test]
    fn a_camera_asking_for_detection_from_a_worker_without_a_model_is_counted() {
        let m = Metrics::new(&prometheus::Registry::new());
        let mut p = Picker::default();
        assert!(!p.pick(&meta(0, true), Some(AnalysisRate::Every), None, false, &m));
        assert!(!p.pick(&meta(1, false), None, None, false, &m));
        assert_eq!(skipped(&m, "off"), 1);
    }

    #[test]
    fn objects_go_on_the_wire_rounded_to_a_ten_thousandth() {
        let d = Detection {
            class: 0,
            label: "person",
            score: 0.812_345,
            x0: 0.123_456,
            y0: 0.0,
            x1: 0.999_99,
            y1: 1.0,
        };
        let o = object_of(&d);
        assert_eq!(o.label, "person");
        assert!((o.score - 0.8123).abs() < 1e-6, "{}", o.score);
        assert!((o.bbox.x0 - 0.1235).abs() < 1e-6 && o.bbox.x1 <= 1.0);
    }
}
