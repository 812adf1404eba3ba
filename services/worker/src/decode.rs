//! Decoding off the async runtime.
//!
//! A fixed pool of threads, each owning the decoders of the cameras hashed to it (so one
//! camera's access units decode in order on one thread). Every decoder of a worker is of
//! one backend ([`framewire_decode::Backend`], the `worker.decoder` setting): openh264
//! (H.264) or libavcodec (H.264 and H.265). The consumer feeds the threads through bounded
//! channels (a job that finds its queue full waits in [`crate::parking`] while the other
//! threads are fed) and the threads hand measured frames back through another bounded
//! channel.
//!
//! Per camera: a new `fw-session` resets the decoder; after a session change, a decode
//! error or a gap in `fw-seq` nothing is decoded until the next keyframe (an H.264 IDR or
//! H.265 IRAP access unit, which carries its parameter sets inline), so garbage is never
//! measured. The frames skipped that way cannot be decoded (their reference is missing):
//! they go to the DLQ as `missing_reference`, so every frame ends as statistics or as a
//! dead letter with a reason. A camera's decoder is opened at the keyframe it starts on,
//! for the codec its `fw-codec` names.
//!
//! *Replayed* records (a new owner of a partition re-reading from the GOP-safe resume
//! offset up to the committed offset, see [`crate::commit`]) are decoded and measured to
//! rebuild the camera's decoder and analyzer state, and publish nothing: an earlier owner
//! already did.
//!
//! A decoder may hand a picture out one access unit late (or later, with B-frames or frame
//! threads), so a camera that goes quiet would keep its last picture (and its partition's
//! commit) forever: a thread that receives nothing for `idle_flush` flushes every decoder
//! that holds pictures. libavcodec drops its references when flushed, so its decoders are
//! flushed only once their camera has been silent for [`SILENT_BEFORE_RESTART`] too, and
//! such a camera then starts again at its next keyframe (openh264 goes on with the next
//! access unit).
//! Pictures come out in display order; with B-frames that is not the order access units
//! go in, so a picture is paired with the pending access unit of the smallest `fw-pts-90k`.
//!
//! Poison (see [`crate::poison`]) is handed back with its bytes for the DLQ, and the
//! camera waits for its next keyframe. In `keyframes` mode every keyframe is decoded and
//! flushed at once, on its own.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use framewire_decode::{Backend, Codec, Decoder, HwAccel, Options, Picture as Decoded};
use framewire_detect::Yuv420;
use framewire_framestats::{Analyzer, DetectorConfig, Picture, Plane};
use framewire_wire::annexb::h265::{self, IrapKind};
use framewire_wire::{AnalysisRate, FrameMeta, StatsRecord};
use tokio::sync::mpsc;

use crate::config::DecodeMode;
use crate::detection::{self, DetectInput, PickSettings, Picker};
use crate::metrics::Metrics;
use crate::poison::{self, Reason};
use crate::snapshot::{Snapshot, Watchers};

/// How long a camera whose decoder must restart at a keyframe after a flush (libavcodec)
/// may be silent with pictures held back before they are flushed anyway: longer than the
/// pauses of a live camera, short enough to measure a stopped camera's last pictures soon.
const SILENT_BEFORE_RESTART: Duration = Duration::from_secs(2);

/// One access unit to decode.
pub struct Job {
    /// Its metadata from the record headers.
    pub meta: FrameMeta,
    /// Annex B bytes.
    pub data: Vec<u8>,
    /// Where it came from, for the commit.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// The record's span (child of the ingest span), entered while decoding.
    pub span: tracing::Span,
    /// Start the camera on a fresh decoder (records before this one were skipped).
    pub resync: bool,
    /// Done by an earlier owner: decode it to rebuild state, publish nothing.
    pub replay: bool,
    /// The camera's detection rate from the `fw-detect` header (`None`: the default).
    pub detect: Option<AnalysisRate>,
}

impl Job {
    /// A live job of partition 0 at `offset`, outside any span (tests).
    #[cfg(test)]
    pub fn live(meta: FrameMeta, data: Vec<u8>, offset: i64) -> Job {
        Job {
            meta,
            data,
            partition: 0,
            offset,
            span: tracing::Span::none(),
            resync: false,
            replay: false,
            detect: None,
        }
    }
}

/// What became of a job.
pub enum Outcome {
    /// A picture was decoded and measured.
    Stats {
        /// The statistics record to publish (boxed: it is ~250 bytes).
        record: Box<StatsRecord>,
        /// Source partition.
        partition: i32,
        /// Source offset.
        offset: i64,
        /// The job's span.
        span: tracing::Span,
        /// The picture's input to the object detector, when its rate picked it.
        detect: Option<Box<DetectInput>>,
    },
    /// The record is poison: copy it to the DLQ, then its offset is done.
    Poison {
        /// Its metadata (the DLQ record carries it as headers).
        meta: FrameMeta,
        /// The record's bytes.
        data: Vec<u8>,
        /// Why.
        reason: Reason,
        /// Source partition.
        partition: i32,
        /// Source offset.
        offset: i64,
    },
    /// Nothing to publish (replayed, or not decoded by choice); the offset is done.
    Done {
        /// Source partition.
        partition: i32,
        /// Source offset.
        offset: i64,
    },
}

/// The decoder threads.
pub struct DecodePool {
    inputs: Vec<mpsc::Sender<Input>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Why [`DecodePool::try_submit`] handed a job back.
pub enum Refused {
    /// The camera's thread queue is full.
    Full(Job),
    /// The camera's thread is gone.
    Gone(Job),
}

/// What a decoder thread receives.
enum Input {
    /// An access unit.
    Job(Job),
    /// Drop this camera's decoder.
    Forget(String),
}

/// How the pool runs.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Decoder threads.
    pub threads: usize,
    /// Access units queued per thread.
    pub queue: usize,
    /// A thread idle this long flushes the pictures its decoders hold back.
    pub idle_flush: Duration,
    /// A camera without access units this long loses its decoder (it went away, or its
    /// partition moved to another replica).
    pub evict_after: Duration,
    /// Detector thresholds for every camera.
    pub detectors: DetectorConfig,
    /// Every access unit, or keyframes only.
    pub mode: DecodeMode,
    /// Who waits for a camera's next picture (debug snapshots).
    pub watchers: Arc<Watchers>,
    /// Picking and preparing pictures for object detection; `None`: detection is off.
    pub detect: Option<PickSettings>,
    /// The decoder backend of every camera.
    pub backend: Backend,
    /// Frame threads per libavcodec decoder; 0 = by picture size
    /// ([`Options::auto_threads`]).
    pub ffmpeg_threads: usize,
    /// Hardware decoding of libavcodec decoders (already probed: the device opens).
    pub hwaccel: HwAccel,
    /// Its device; `None`: the library's default.
    pub hwaccel_device: Option<String>,
}

impl DecodePool {
    /// Starts the decoder threads; their outcomes go to `outcomes`. Call from within the
    /// Tokio runtime (the threads wait on their queues through its handle).
    pub fn start(
        config: PoolConfig,
        outcomes: mpsc::Sender<Outcome>,
        metrics: Metrics,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Handle::current();
        let (threads, queue) = (config.threads, config.queue);
        let mut inputs = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let (tx, rx) = mpsc::channel(queue);
            let out = outcomes.clone();
            let m = metrics.clone();
            let rt = runtime.clone();
            let config = config.clone();
            let handle = std::thread::Builder::new()
                .name(format!("decode-{i}"))
                .spawn(move || decode_loop(&rt, rx, config, out, m))?;
            inputs.push(tx);
            handles.push(handle);
        }
        Ok(DecodePool {
            inputs,
            threads: handles,
        })
    }

    /// Decoder threads.
    pub fn threads(&self) -> usize {
        self.inputs.len()
    }

    /// Index of the thread that owns `camera`.
    pub fn thread_index(&self, camera: &str) -> usize {
        let mut h = DefaultHasher::new();
        camera.hash(&mut h);
        (h.finish() % self.inputs.len() as u64) as usize
    }

    /// The thread that owns `camera`.
    fn thread_of(&self, camera: &str) -> &mpsc::Sender<Input> {
        &self.inputs[self.thread_index(camera)]
    }

    /// Queues a job on its camera's thread if that queue has room; never waits.
    #[expect(
        clippy::result_large_err,
        reason = "the job comes back by value; boxing would allocate on every full queue"
    )]
    pub fn try_submit(&self, job: Job) -> Result<(), Refused> {
        let thread = self.thread_of(&job.meta.camera);
        thread.try_send(Input::Job(job)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(Input::Job(job)) => Refused::Full(job),
            mpsc::error::TrySendError::Closed(Input::Job(job)) => Refused::Gone(job),
            _ => unreachable!("a job was sent"),
        })
    }

    /// Queues a job on its camera's thread; waits while that queue is full.
    #[cfg(test)]
    pub async fn submit(&self, job: Job) -> Result<(), Job> {
        let thread = self.thread_of(&job.meta.camera);
        thread.send(Input::Job(job)).await.map_err(|e| match e.0 {
            Input::Job(job) => job,
            Input::Forget(_) => unreachable!("a job was sent"),
        })
    }

    /// Waits until one of `threads` (indices) has a free slot in its queue; `None` when
    /// a thread is gone.
    pub async fn room(&self, threads: &[usize]) -> Option<usize> {
        if threads.is_empty() {
            return std::future::pending().await;
        }
        let waits = threads.iter().map(|&t| {
            let input = &self.inputs[t];
            Box::pin(async move { input.reserve().await.map(|_permit| t) })
        });
        // The permit is released at once: only the consumer loop sends to the queues, so
        // the slot is still free when it acts on the answer.
        futures::future::select_all(waits).await.0.ok()
    }

    /// Drops a camera's decoder and state (its partition was revoked): what it still
    /// holds is flushed first.
    pub async fn forget(&self, camera: &str) {
        let _ = self
            .thread_of(camera)
            .send(Input::Forget(camera.to_owned()))
            .await;
    }

    /// Closes the inputs and waits for the threads to flush their decoders and exit.
    pub fn finish(self) {
        drop(self.inputs);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

struct Pending {
    meta: FrameMeta,
    partition: i32,
    offset: i64,
    span: tracing::Span,
    replay: bool,
    detect: Option<AnalysisRate>,
}

struct CameraDecoder {
    /// Opened at the keyframe the camera (re)starts on.
    decoder: Option<OpenDecoder>,
    /// When its last access unit arrived.
    last_input: Instant,
    session: String,
    synced: bool,
    /// `fw-seq` of the last access unit given to the decoder.
    last_seq: Option<u64>,
    /// H.265: RASL pictures cannot be decoded now (the camera started at a CRA keyframe, or
    /// passed a BLA one): their references come before the keyframe.
    skip_rasl: bool,
    /// What turns its pictures into statistics.
    m: Measuring,
}

/// A decoder and what it was opened for.
struct OpenDecoder {
    decoder: Box<dyn Decoder>,
    codec: Codec,
    options: Options,
    /// `framewire_worker_open_decoders`, one less when this is dropped.
    open: prometheus::IntGauge,
}

impl OpenDecoder {
    fn open(
        backend: Backend,
        codec: Codec,
        options: Options,
        open: &prometheus::IntGauge,
    ) -> Result<Self, framewire_decode::DecodeError> {
        let decoder = framewire_decode::open(backend, codec, &options)?;
        open.inc();
        Ok(OpenDecoder {
            decoder,
            codec,
            options,
            open: open.clone(),
        })
    }
}

impl Drop for OpenDecoder {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// A camera's measuring state, apart from its decoder (whose pictures borrow it).
struct Measuring {
    /// Access units given to the decoder whose picture has not come out yet.
    pending: Vec<Pending>,
    /// Statistics and detectors, with the previous picture they compare against.
    analyzer: Analyzer,
    /// Which pictures go to the object detector.
    picker: Picker,
}

/// A measured picture: its access unit, its statistics (`None`: it could not be
/// measured) and, when picked, its detector input.
type Measured = (Pending, Option<StatsRecord>, Option<Box<DetectInput>>);

impl Measuring {
    /// Removes the pending access unit of the smallest timestamp: the next picture out.
    fn take_earliest(&mut self) -> Option<Pending> {
        let i = (0..self.pending.len()).min_by_key(|&i| self.pending[i].meta.pts_90k)?;
        Some(self.pending.remove(i))
    }

    /// Measures a picture a decoder handed out, paired with the pending access unit of
    /// the smallest timestamp (pictures come out in display order); `None` when no access
    /// unit is pending.
    fn measure(
        &mut self,
        picture: &Decoded<'_>,
        metrics: &Metrics,
        config: &PoolConfig,
    ) -> Option<Measured> {
        let p = self.take_earliest()?;
        let started = Instant::now();
        let record = measure(picture, &p.meta, &mut self.analyzer, &config.watchers);
        metrics
            .stats_seconds
            .observe(started.elapsed().as_secs_f64());
        let detect = match &config.detect {
            Some(settings)
                if record.is_some()
                    && self
                        .picker
                        .pick(&p.meta, p.detect, Some(settings), p.replay, metrics) =>
            {
                let yuv = Yuv420 {
                    y: picture.y,
                    y_stride: picture.y_stride,
                    u: picture.u,
                    u_stride: picture.u_stride,
                    v: picture.v,
                    v_stride: picture.v_stride,
                    width: picture.width as u32,
                    height: picture.height as u32,
                };
                detection::prepare(
                    &yuv,
                    settings,
                    &p.meta,
                    p.partition,
                    p.offset,
                    &p.span,
                    metrics,
                )
                .map(Box::new)
            }
            Some(_) => None,
            None => {
                self.picker.pick(&p.meta, p.detect, None, p.replay, metrics);
                None
            }
        };
        Some((p, record, detect))
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Measures a decoded picture as the statistics of the access unit `meta` (the analyzer
/// keeps it as the camera's previous picture).
fn measure(
    yuv: &Decoded<'_>,
    meta: &FrameMeta,
    analyzer: &mut Analyzer,
    watchers: &Watchers,
) -> Option<StatsRecord> {
    let (w, h) = (yuv.width, yuv.height);
    let (cw, ch) = yuv.chroma_dimensions();
    let pic = Picture {
        y: Plane::new(yuv.y, w, h, yuv.y_stride).ok()?,
        u: Plane::new(yuv.u, cw, ch, yuv.u_stride).ok()?,
        v: Plane::new(yuv.v, cw, ch, yuv.v_stride).ok()?,
    };
    let (s, flags) = analyzer.measure(&pic);
    if watchers.wants(&meta.camera) {
        watchers.deliver(
            &meta.camera,
            Snapshot::copy(&pic, meta.seq, meta.capture_ms),
        );
    }
    Some(StatsRecord {
        camera: meta.camera.clone(),
        session: meta.session.clone(),
        seq: meta.seq,
        pts_90k: meta.pts_90k,
        capture_ms: meta.capture_ms,
        decoded_ms: now_ms(),
        width: w as u32,
        height: h as u32,
        keyframe: meta.keyframe,
        y_avg: s.y_avg,
        y_min: s.y_min,
        y_max: s.y_max,
        y_low: s.y_low,
        y_high: s.y_high,
        y_std: s.y_std,
        y_dif: s.y_dif,
        u_avg: s.u_avg,
        v_avg: s.v_avg,
        sat_avg: s.sat_avg,
        y_hist: s.y_hist,
        sharpness: s.sharpness,
        black: flags.black,
        frozen: flags.frozen,
        scene_score: flags.scene_score,
        scene_cut: flags.scene_cut,
    })
}

struct Thread {
    cameras: HashMap<String, CameraDecoder>,
    /// `keyframes` mode: the thread's idle decoders, one per codec and options. Each
    /// keyframe decodes and flushes on its own, so a camera borrows one for a keyframe and
    /// gives it back: a thread holds a decoder per kind of stream, not one per camera
    /// (8 MiB at 360p, 19 MiB at 720p with openh264).
    spare: Vec<OpenDecoder>,
    config: PoolConfig,
    out: mpsc::Sender<Outcome>,
    metrics: Metrics,
}

impl Thread {
    fn emit(&self, o: Outcome) {
        // The receiver only goes away at shutdown, when nothing more can be published.
        let _ = self.out.blocking_send(o);
    }

    fn done(&self, p: &Pending) {
        self.emit(Outcome::Done {
            partition: p.partition,
            offset: p.offset,
        });
    }

    /// Counts a poison record and hands it back for the DLQ (a replayed one is done: its
    /// earlier owner sent it to the DLQ already).
    fn poison(&self, p: Pending, data: Vec<u8>, reason: Reason) {
        if p.replay {
            return self.done(&p);
        }
        self.metrics
            .decode_errors
            .with_label_values(&[&p.meta.camera, reason.as_str()])
            .inc();
        self.emit(Outcome::Poison {
            meta: p.meta,
            data,
            reason,
            partition: p.partition,
            offset: p.offset,
        });
    }

    /// Publishes a measured picture, or counts a picture that could not be measured.
    fn picture(&self, p: Pending, record: Option<StatsRecord>, detect: Option<Box<DetectInput>>) {
        if p.replay {
            self.metrics.replayed.inc();
            return self.done(&p);
        }
        match record {
            Some(record) => {
                self.metrics
                    .decoded
                    .with_label_values(&[&p.meta.camera])
                    .inc();
                self.emit(Outcome::Stats {
                    record: Box::new(record),
                    partition: p.partition,
                    offset: p.offset,
                    span: p.span,
                    detect,
                });
            }
            None => self.poison(p, Vec::new(), Reason::BadPicture),
        }
    }

    /// Flushes the pictures a camera's decoder still holds, then releases the rest. A
    /// decoder that cannot go on after a flush (libavcodec) makes the camera wait for its
    /// next keyframe.
    fn flush(&mut self, camera: &str) {
        let (metrics, config) = (&self.metrics, &self.config);
        let Some(cam) = self.cameras.get_mut(camera) else {
            return;
        };
        let mut measured = Vec::new();
        if let Some(open) = cam.decoder.as_mut() {
            let m = &mut cam.m;
            let flushed = open
                .decoder
                .flush(&mut |picture| measured.extend(m.measure(picture, metrics, config)));
            if let Err(e) = flushed {
                tracing::debug!(%camera, error = %e, "flushing the decoder failed");
            }
            if !open.decoder.continues_after_flush() {
                cam.synced = false;
            }
        }
        let rest = std::mem::take(&mut cam.m.pending);
        for (p, record, detect) in measured {
            self.picture(p, record, detect);
        }
        for p in rest {
            tracing::warn!(%camera, seq = p.meta.seq, "the decoder produced no picture for an access unit");
            self.poison(p, Vec::new(), Reason::NoPicture);
        }
    }

    /// `keyframes` mode: takes a camera's (flushed) decoder back into the thread's spares;
    /// the camera opens or borrows one at its next keyframe. One spare per codec and options
    /// is kept.
    fn give_back(&mut self, camera: &str) {
        let Some(cam) = self.cameras.get_mut(camera) else {
            return;
        };
        cam.synced = false;
        let Some(open) = cam.decoder.take() else {
            return;
        };
        let kept = self
            .spare
            .iter()
            .any(|d| d.codec == open.codec && d.options == open.options);
        if !kept {
            self.spare.push(open);
        }
    }

    /// Flushes a camera's decoder and makes it wait for its next keyframe.
    fn unsync(&mut self, camera: &str) {
        self.flush(camera);
        if let Some(c) = self.cameras.get_mut(camera) {
            c.synced = false;
        }
    }

    /// The camera's decoder state, new (waiting for a keyframe) when its session changed
    /// or a resync was asked for.
    fn camera(&mut self, meta: &FrameMeta, resync: bool) -> &mut CameraDecoder {
        let camera = meta.camera.as_str();
        let stale = self
            .cameras
            .get(camera)
            .is_some_and(|c| resync || c.session != meta.session);
        if stale {
            self.flush(camera);
            self.cameras.remove(camera);
        }
        let detectors = self.config.detectors;
        let metrics = &self.metrics;
        self.cameras.entry(camera.to_owned()).or_insert_with(|| {
            metrics.touch_camera(camera);
            CameraDecoder {
                decoder: None,
                last_input: Instant::now(),
                session: meta.session.clone(),
                synced: false,
                last_seq: None,
                skip_rasl: false,
                m: Measuring {
                    pending: Vec::new(),
                    analyzer: Analyzer::new(detectors),
                    picker: Picker::default(),
                },
            }
        })
    }

    /// How to open the decoder of a stream that starts at `keyframe`.
    fn options(&self, codec: Codec, meta: &FrameMeta, keyframe: &[u8]) -> Options {
        let threads = match (self.config.backend, self.config.ffmpeg_threads) {
            (Backend::OpenH264, _) => 1,
            (Backend::Ffmpeg, 0) => meta.dimensions.map_or(1, |(w, h)| {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
                Options::auto_threads(w, h, cpus)
            }),
            (Backend::Ffmpeg, n) => n,
        };
        // The keyframe's SPS says whether pictures may come out of order; without
        // reordering the decoder needs not hold each picture until the next access unit
        // (one frame interval of latency). H.265 decoders read that from the SPS themselves;
        // frame threads hold pictures back anyway.
        let low_delay = threads == 1
            && codec == Codec::H264
            && framewire_wire::annexb::may_reorder(keyframe) == Some(false);
        let ffmpeg = self.config.backend == Backend::Ffmpeg;
        Options {
            low_delay,
            threads,
            hwaccel: if ffmpeg {
                self.config.hwaccel
            } else {
                HwAccel::None
            },
            hwaccel_device: self.config.hwaccel_device.clone().filter(|_| ffmpeg),
        }
    }

    /// Starts a camera at a keyframe: (re)opens its decoder unless the one it has was
    /// opened for the same stream settings.
    fn start_at_keyframe(
        &mut self,
        camera: &str,
        codec: Codec,
        meta: &FrameMeta,
        keyframe: &[u8],
    ) -> Result<(), framewire_decode::DecodeError> {
        let options = self.options(codec, meta, keyframe);
        let backend = self.config.backend;
        let Some(cam) = self.cameras.get_mut(camera) else {
            return Ok(());
        };
        let reusable = cam
            .decoder
            .as_ref()
            .is_some_and(|d| d.codec == codec && d.options == options);
        if !reusable {
            cam.decoder = None;
            let spare = self
                .spare
                .iter()
                .position(|d| d.codec == codec && d.options == options);
            cam.decoder = Some(match spare {
                Some(i) => self.spare.swap_remove(i),
                None => OpenDecoder::open(backend, codec, options, &self.metrics.open_decoders)?,
            });
        }
        cam.synced = true;
        Ok(())
    }

    fn handle(&mut self, job: Job) {
        let Job {
            meta,
            data,
            partition,
            offset,
            span,
            resync,
            replay,
            detect,
        } = job;
        let camera = meta.camera.clone();
        let p = Pending {
            meta,
            partition,
            offset,
            span,
            replay,
            detect,
        };
        self.camera(&p.meta, resync).last_input = Instant::now();
        let codec = match poison::check(&p.meta, &data, self.config.backend) {
            Ok(codec) => codec,
            Err(reason) => {
                tracing::warn!(%camera, seq = p.meta.seq, codec = %p.meta.codec, reason = reason.as_str(), "poison record; waiting for the next keyframe");
                self.unsync(&camera);
                return self.poison(p, data, reason);
            }
        };
        // A gap in the session's frame numbers before a frame that is not a keyframe
        // (ingest dropped or could not deliver frames): the frame's reference is gone. So is
        // it when the session's codec changed under it.
        let (gap, switched) = self.cameras.get(&camera).map_or((false, false), |c| {
            let gap = c.synced
                && !p.meta.keyframe
                && c.last_seq
                    .is_some_and(|last| p.meta.seq != last.wrapping_add(1));
            let switched = c.synced && c.decoder.as_ref().is_some_and(|d| d.codec != codec);
            (gap, switched)
        });
        if gap || switched {
            tracing::warn!(%camera, seq = p.meta.seq, %codec, gap, "the camera's stream broke off; waiting for the next keyframe");
            self.unsync(&camera);
        }
        let synced = self.cameras.get(&camera).is_some_and(|c| c.synced);
        let irap = match codec {
            Codec::H265 if p.meta.keyframe => h265::irap_kind(&data),
            _ => None,
        };
        if !synced {
            if !p.meta.keyframe {
                if p.replay {
                    // The tail of a GOP that started before the resume offset: done earlier.
                    self.metrics
                        .skipped
                        .with_label_values(&[&camera, "replay"])
                        .inc();
                    return self.done(&p);
                }
                return self.poison(p, data, Reason::MissingReference);
            }
            if let Err(e) = self.start_at_keyframe(&camera, codec, &p.meta, &data) {
                tracing::error!(%camera, %codec, error = %e, "cannot open a decoder");
                return self.poison(p, data, Reason::Decode);
            }
        }
        if let (Some(kind), Some(cam)) = (irap, self.cameras.get_mut(&camera)) {
            // A CRA keyframe's RASL pictures decode when decoding started before it.
            cam.skip_rasl = kind == IrapKind::Bla || (kind == IrapKind::Cra && !synced);
        }
        let skipped_rasl = codec == Codec::H265
            && !p.meta.keyframe
            && self.cameras.get(&camera).is_some_and(|c| c.skip_rasl)
            && h265::is_rasl(&data);
        if skipped_rasl {
            // Never given to the decoder (which would not output it): the camera goes on.
            if let Some(c) = self.cameras.get_mut(&camera) {
                c.last_seq = Some(p.meta.seq);
            }
            return self.poison(p, data, Reason::MissingReference);
        }
        let (metrics, config) = (&self.metrics, &self.config);
        let Some(cam) = self.cameras.get_mut(&camera) else {
            return;
        };
        let Some(open) = cam.decoder.as_mut() else {
            return;
        };
        cam.last_seq = Some(p.meta.seq);
        let started = Instant::now();
        let _entered = p.span.clone().entered();
        cam.m.pending.push(p);
        let mut measured = Vec::new();
        let mut measuring = Duration::ZERO;
        let m = &mut cam.m;
        let decoded = open.decoder.decode(&data, &mut |picture| {
            let t = Instant::now();
            measured.extend(m.measure(picture, metrics, config));
            measuring += t.elapsed();
        });
        metrics
            .decode_seconds
            .with_label_values(&[config.backend.as_str(), codec.as_str()])
            .observe(started.elapsed().saturating_sub(measuring).as_secs_f64());
        for (p, record, detect) in measured {
            self.picture(p, record, detect);
        }
        match decoded {
            Ok(()) => {
                if self.config.mode == DecodeMode::Keyframes {
                    // Each keyframe stands alone: get its picture out now, and give the
                    // decoder back to the thread.
                    self.flush(&camera);
                    self.give_back(&camera);
                }
            }
            Err(e) => {
                // The access unit just given is the one that failed (with frame threads an
                // error can surface one or more access units late: this one is blamed).
                let failed = self.cameras.get_mut(&camera).and_then(|c| {
                    let i = c.m.pending.iter().rposition(|p| p.offset == offset)?;
                    Some(c.m.pending.remove(i))
                });
                if let Some(failed) = failed {
                    tracing::warn!(%camera, seq = failed.meta.seq, error = %e, "access unit did not decode; waiting for the next keyframe");
                    self.unsync(&camera);
                    self.poison(failed, data, Reason::Decode);
                } else {
                    self.unsync(&camera);
                }
            }
        }
    }
}

impl Thread {
    /// Flushes a camera and drops its decoder.
    fn forget(&mut self, camera: &str) {
        self.flush(camera);
        if self.cameras.remove(camera).is_some() {
            self.metrics.forget_camera(camera);
            tracing::debug!(%camera, "decoder dropped");
        }
    }

    /// Drops the decoders idle for `evict_after`; with `flush_held` (the thread itself
    /// was idle), flushes the others that hold pictures back: at once when decoding can go
    /// on after a flush, else (libavcodec, which then needs a keyframe) once the camera has
    /// been silent for [`SILENT_BEFORE_RESTART`], so that a pause does not cost it a GOP.
    fn sweep(&mut self, flush_held: bool) {
        let evict_after = self.config.evict_after;
        let (mut held, mut idle) = (Vec::new(), Vec::new());
        for (camera, c) in &self.cameras {
            let silent = c.last_input.elapsed();
            let flushable = c
                .decoder
                .as_ref()
                .is_none_or(|d| d.decoder.continues_after_flush())
                || silent >= SILENT_BEFORE_RESTART;
            if silent >= evict_after {
                idle.push(camera.clone());
            } else if flush_held && !c.m.pending.is_empty() && flushable {
                held.push(camera.clone());
            }
        }
        for camera in held {
            self.flush(&camera);
        }
        for camera in idle {
            self.forget(&camera);
        }
    }
}

fn decode_loop(
    runtime: &tokio::runtime::Handle,
    mut rx: mpsc::Receiver<Input>,
    config: PoolConfig,
    out: mpsc::Sender<Outcome>,
    metrics: Metrics,
) {
    let (idle_flush, evict_after) = (config.idle_flush, config.evict_after);
    let mut t = Thread {
        cameras: HashMap::new(),
        spare: Vec::new(),
        config,
        out,
        metrics,
    };
    let mut last_sweep = Instant::now();
    loop {
        let holding = t.cameras.values().any(|c| !c.m.pending.is_empty());
        let wait = if holding {
            idle_flush
        } else if t.cameras.is_empty() {
            Duration::from_secs(3600)
        } else {
            evict_after
        };
        let next = runtime.block_on(async { tokio::time::timeout(wait, rx.recv()).await });
        match next {
            Ok(Some(Input::Job(job))) => t.handle(job),
            Ok(Some(Input::Forget(camera))) => t.forget(&camera),
            Ok(None) => break,
            Err(_idle) => {
                t.sweep(true);
                last_sweep = Instant::now();
            }
        }
        // A busy thread never times out: look for cameras that went away now and then.
        if last_sweep.elapsed() >= evict_after {
            t.sweep(false);
            last_sweep = Instant::now();
        }
    }
    let cameras: Vec<String> = t.cameras.keys().cloned().collect();
    for c in cameras {
        t.flush(&c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poison::Reason;
    use openh264::encoder::Encoder;
    use openh264::formats::YUVBuffer;

    const W: usize = 64;
    const H: usize = 48;

    /// Encodes flat pictures of the given luma values: one access unit each, IDR first.
    fn clip(lumas: &[u8]) -> Vec<Vec<u8>> {
        clip_sized(lumas, W, H)
    }

    /// [`clip`] at `w` × `h`.
    fn clip_sized(lumas: &[u8], w: usize, h: usize) -> Vec<Vec<u8>> {
        let mut enc = Encoder::new().unwrap();
        lumas
            .iter()
            .map(|&y| {
                let mut yuv = vec![y; w * h];
                yuv.extend(std::iter::repeat_n(128u8, w * h / 2));
                enc.encode(&YUVBuffer::from_vec(yuv, w, h))
                    .unwrap()
                    .to_vec()
            })
            .collect()
    }

    /// Every backend built into this test binary.
    fn backends() -> impl Iterator<Item = Backend> {
        Backend::ALL.into_iter().filter(|b| b.is_built())
    }

    fn test_pool(backend: Backend) -> PoolConfig {
        PoolConfig {
            threads: 1,
            queue: 16,
            idle_flush: Duration::from_millis(50),
            evict_after: Duration::from_secs(60),
            detectors: DetectorConfig::default(),
            mode: DecodeMode::All,
            watchers: Arc::default(),
            detect: None,
            backend,
            ffmpeg_threads: 0,
            hwaccel: HwAccel::None,
            hwaccel_device: None,
        }
    }

    fn job(session: &str, seq: u64, keyframe: bool, data: Vec<u8>) -> Job {
        Job::live(
            FrameMeta {
                camera: "cam".into(),
                session: session.into(),
                seq,
                pts_90k: seq as i64 * 3600,
                capture_ms: 1_000 + seq as i64 * 40,
                keyframe,
                codec: "h264".into(),
                dimensions: None,
            },
            data,
            seq as i64,
        )
    }

    async fn next(rx: &mut mpsc::Receiver<Outcome>) -> Outcome {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an outcome within 5 s")
            .expect("pool alive")
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn pictures_come_out_in_order_and_the_last_one_on_idle() {
        for backend in backends() {
            pictures_come_out_in_order_and_the_last_one_on_idle_on(backend).await;
        }
    }

    async fn pictures_come_out_in_order_and_the_last_one_on_idle_on(backend: Backend) {
        let lumas: Vec<u8> = (0..12).map(|i| 40 + 10 * i).collect();
        let aus = clip(&lumas);
        assert!(framewire_wire::annexb::starts_with_parameter_sets(&aus[0]));
        let (tx, mut rx) = mpsc::channel(64);
        let metrics = Metrics::new(&prometheus::Registry::new());
        let pool = DecodePool::start(test_pool(backend), tx, metrics.clone()).unwrap();
        for (i, au) in aus.into_iter().enumerate() {
            pool.submit(job("s1", i as u64, i == 0, au))
                .await
                .ok()
                .unwrap();
        }
        // All 12 arrive while the pool is still running: the last via the idle flush.
        for (i, &y) in lumas.iter().enumerate() {
            match next(&mut rx).await {
                Outcome::Stats { record, offset, .. } => {
                    assert_eq!((record.seq, offset), (i as u64, i as i64));
                    assert_eq!((record.width, record.height), (W as u32, H as u32));
                    assert!(
                        (record.y_avg - f64::from(y)).abs() < 2.0,
                        "seq {i}: {} vs {y}",
                        record.y_avg
                    );
                }
                Outcome::Done { offset, .. } | Outcome::Poison { offset, .. } => {
                    panic!("offset {offset} produced no picture")
                }
            }
        }
        assert_eq!(metrics.decoded.with_label_values(&["cam"]).get(), 12);
        drop(pool);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn keyframes_mode_shares_one_decoder_among_the_cameras_of_a_thread() {
        for backend in backends() {
            keyframes_mode_shares_one_decoder_on(backend).await;
        }
    }

    /// Three cameras (two picture sizes) interleaved, keyframes only: every keyframe is
    /// measured as its own camera's picture, and the thread keeps one decoder, not three;
    /// `all` mode keeps one per camera.
    async fn keyframes_mode_shares_one_decoder_on(backend: Backend) {
        let cameras = [
            ("a", clip_sized(&[30, 30, 60, 60, 90], W, H)),
            ("b", clip_sized(&[200, 200, 170], 96, 64)),
            ("c", clip_sized(&[120, 100, 80, 60], W, H)),
        ];
        for mode in [DecodeMode::Keyframes, DecodeMode::All] {
            let (tx, mut rx) = mpsc::channel(64);
            let mut config = test_pool(backend);
            config.mode = mode;
            let metrics = Metrics::new(&prometheus::Registry::new());
            let pool = DecodePool::start(config, tx, metrics.clone()).unwrap();
            // Each camera sends its keyframe (the clip's first access unit) five times.
            let mut offset = 0;
            for round in 0..5u64 {
                for (camera, aus) in &cameras {
                    let mut j = job("s", round, true, aus[0].clone());
                    j.meta.camera = (*camera).into();
                    j.offset = offset;
                    offset += 1;
                    pool.submit(j).await.ok().unwrap();
                }
            }
            for _ in 0..offset {
                match next(&mut rx).await {
                    Outcome::Stats { record, offset, .. } => {
                        let (w, h, y) = match record.camera.as_str() {
                            "a" => (W, H, 30.0),
                            "b" => (96, 64, 200.0),
                            _ => (W, H, 120.0),
                        };
                        assert_eq!((record.width, record.height), (w as u32, h as u32));
                        assert!(
                            (record.y_avg - y).abs() < 2.0,
                            "{mode:?} {} offset {offset}: y_avg {} vs {y}",
                            record.camera,
                            record.y_avg
                        );
                    }
                    Outcome::Done { offset, .. } | Outcome::Poison { offset, .. } => {
                        panic!("{mode:?}: offset {offset} produced no picture")
                    }
                }
            }
            let open = metrics.open_decoders.get();
            match mode {
                DecodeMode::Keyframes => {
                    assert_eq!(open, 1, "{backend:?}: one decoder for the thread")
                }
                DecodeMode::All => assert_eq!(open, 3, "{backend:?}: one per camera"),
            }
            pool.finish();
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_new_session_waits_for_its_keyframe_and_garbage_is_counted() {
        for backend in backends() {
            a_new_session_waits_for_its_keyframe_and_garbage_is_counted_on(backend).await;
        }
    }

    async fn a_new_session_waits_for_its_keyframe_and_garbage_is_counted_on(backend: Backend) {
        let aus = clip(&[50, 60, 70]);
        let (tx, mut rx) = mpsc::channel(64);
        let metrics = Metrics::new(&prometheus::Registry::new());
        let pool = DecodePool::start(test_pool(backend), tx, metrics.clone()).unwrap();
        // A session that starts with a P-frame: its reference is missing (DLQ) until its
        // keyframe.
        pool.submit(job("s2", 0, false, aus[1].clone()))
            .await
            .ok()
            .unwrap();
        assert!(matches!(
            next(&mut rx).await,
            Outcome::Poison {
                offset: 0,
                reason: Reason::MissingReference,
                ..
            }
        ));
        pool.submit(job("s2", 1, true, aus[0].clone()))
            .await
            .ok()
            .unwrap();
        assert!(matches!(
            next(&mut rx).await,
            Outcome::Stats { offset: 1, .. }
        ));
        // Bytes that are not H.264 do not crash the thread: they come back as poison.
        let garbage = vec![0, 0, 0, 1, 0x41, 0xff, 0x00, 0x13, 0x37];
        pool.submit(job("s2", 2, false, garbage.clone()))
            .await
            .ok()
            .unwrap();
        match next(&mut rx).await {
            Outcome::Poison {
                offset: 2,
                reason,
                data,
                ..
            } => {
                assert_eq!(reason, Reason::Decode);
                assert_eq!(data, garbage, "the DLQ gets the original bytes");
            }
            _ => panic!("garbage is poison"),
        }
        pool.finish();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_stream_that_cannot_reorder_gets_each_picture_without_waiting() {
        for backend in backends() {
            a_stream_that_cannot_reorder_gets_each_picture_without_waiting_on(backend).await;
        }
    }

    async fn a_stream_that_cannot_reorder_gets_each_picture_without_waiting_on(backend: Backend) {
        let aus = clip(&[50, 60]);
        assert_eq!(
            framewire_wire::annexb::may_reorder(&aus[0]),
            Some(false),
            "openh264's encoder writes pic_order_cnt_type 2"
        );
        let (tx, mut rx) = mpsc::channel(64);
        let mut config = test_pool(backend);
        config.idle_flush = Duration::from_secs(30); // no idle flush within the test
        let metrics = Metrics::new(&prometheus::Registry::new());
        let pool = DecodePool::start(config, tx, metrics).unwrap();
        for (i, au) in aus.into_iter().enumerate() {
            pool.submit(job("s", i as u64, i == 0, au))
                .await
                .ok()
                .unwrap();
            // Each picture comes out of its own decode call, not one access unit late.
            assert!(matches!(
                next(&mut rx).await,
                Outcome::Stats { offset, .. } if offset == i as i64
            ));
        }
        pool.finish();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_gap_in_frame_numbers_sends_the_frames_without_reference_to_the_dlq() {
        for backend in backends() {
            a_gap_in_frame_numbers_sends_the_frames_without_reference_to_the_dlq_on(backend).await;
        }
    }

    async fn a_gap_in_frame_numbers_sends_the_frames_without_reference_to_the_dlq_on(
        backend: Backend,
    ) {
        let aus = clip(&[50, 60, 70, 80, 90]);
        let (tx, mut rx) = mpsc::channel(64);
        let metrics = Metrics::new(&prometheus::Registry::new());
        let pool = DecodePool::start(test_pool(backend), tx, metrics.clone()).unwrap();
        // seq 2 never arrived (ingest could not deliver it): 3 and 4 lost their reference.
        let sent = [(0, true, 0), (1, false, 1), (3, false, 3), (4, false, 4)];
        for (seq, key, i) in sent {
            pool.submit(job("s", seq, key, aus[i].clone()))
                .await
                .ok()
                .unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(match next(&mut rx).await {
                Outcome::Stats { offset, .. } => (offset, "stats"),
                Outcome::Poison { offset, reason, .. } => (offset, reason.as_str()),
                Outcome::Done { offset, .. } => (offset, "done"),
            });
        }
        assert_eq!(
            got,
            [
                (0, "stats"),
                (1, "stats"),
                (3, "missing_reference"),
                (4, "missing_reference")
            ]
        );
        pool.finish();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn replayed_records_rebuild_the_decoder_and_publish_nothing() {
        for backend in backends() {
            replayed_records_rebuild_the_decoder_and_publish_nothing_on(backend).await;
        }
    }

    async fn replayed_records_rebuild_the_decoder_and_publish_nothing_on(backend: Backend) {
        let aus = clip(&[50, 60, 70]);
        let (tx, mut rx) = mpsc::channel(64);
        let metrics = Metrics::new(&prometheus::Registry::new());
        let pool = DecodePool::start(test_pool(backend), tx, metrics.clone()).unwrap();
        for (i, au) in aus.into_iter().enumerate() {
            let mut j = job("s", i as u64, i == 0, au);
            j.replay = i < 2; // 0 and 1 were done by the partition's earlier owner
            pool.submit(j).await.ok().unwrap();
        }
        assert!(matches!(
            next(&mut rx).await,
            Outcome::Done { offset: 0, .. }
        ));
        assert!(matches!(
            next(&mut rx).await,
            Outcome::Done { offset: 1, .. }
        ));
        match next(&mut rx).await {
            Outcome::Stats {
                record, offset: 2, ..
            } => {
                assert!((record.y_avg - 70.0).abs() < 2.0, "{}", record.y_avg);
                assert!(
                    record.y_dif > 5.0,
                    "compared with the replayed picture: {}",
                    record.y_dif
                );
            }
            _ => panic!("the first live frame decodes on the replayed reference"),
        }
        assert_eq!(metrics.replayed.get(), 2);
        pool.finish();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_forgotten_camera_starts_over_at_a_keyframe() {
        for backend in backends() {
            a_forgotten_camera_starts_over_at_a_keyframe_on(backend).await;
        }
    }

    async fn a_forgotten_camera_starts_over_at_a_keyframe_on(backend: Backend) {
        let aus = clip(&[50, 60, 70]);
        let (tx, mut rx) = mpsc::channel(64);
        let metrics = Metrics::new(&prometheus::Registry::new());
        let mut config = test_pool(backend);
        config.idle_flush = Duration::from_secs(30); // only forget() flushes here
        let pool = DecodePool::start(config, tx, metrics.clone()).unwrap();
        pool.submit(job("s", 0, true, aus[0].clone()))
            .await
            .ok()
            .unwrap();
        // Its partition is revoked: the picture held back is flushed, the decoder dropped.
        pool.forget("cam").await;
        assert!(matches!(
            next(&mut rx).await,
            Outcome::Stats { offset: 0, .. }
        ));
        // Same session, but the state is gone: a replayed P-frame is done quietly (an
        // earlier owner handled it), a live one has lost its reference (DLQ).
        let mut replayed = job("s", 1, false, aus[1].clone());
        replayed.replay = true;
        pool.submit(replayed).await.ok().unwrap();
        assert!(matches!(
            next(&mut rx).await,
            Outcome::Done { offset: 1, .. }
        ));
        assert_eq!(
            metrics.skipped.with_label_values(&["cam", "replay"]).get(),
            1
        );
        pool.submit(job("s", 2, false, aus[2].clone()))
            .await
            .ok()
            .unwrap();
        assert!(matches!(
            next(&mut rx).await,
            Outcome::Poison {
                offset: 2,
                reason: Reason::MissingReference,
                ..
            }
        ));
        pool.finish();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn poison_is_handed_back_and_the_camera_resyncs_at_its_next_keyframe() {
        for backend in backends() {
            poison_is_handed_back_and_the_camera_resyncs_at_its_next_keyframe_on(backend).await;
        }
    }

    async fn poison_is_handed_back_and_the_camera_resyncs_at_its_next_keyframe_on(
        backend: Backend,
    ) {
        let aus = clip(&[50, 60, 70, 80]);
        let (tx, mut rx) = mpsc::channel(64);
        let metrics = Metrics::new(&prometheus::Registry::new());
        let pool = DecodePool::start(test_pool(backend), tx, metrics.clone()).unwrap();
        let mut wrong_codec = job("s", 1, false, aus[1].clone());
        wrong_codec.meta.codec = "vp8".into();
        let truncated = aus[2][..aus[2].len().min(5)].to_vec();
        let idr_only: Vec<u8> = framewire_wire::annexb::nal_units(&aus[0])
            .filter(|u| framewire_wire::annexb::nal_type(u) == Some(5))
            .flat_map(|u| [&[0u8, 0, 0, 1][..], u].concat())
            .collect();
        let sent = [
            (job("s", 0, true, aus[0].clone()), None),
            (wrong_codec, Some(Reason::Codec)),
            (job("s", 2, false, truncated), Some(Reason::Truncated)),
            // After poison the camera waits for a keyframe: this P-frame has no reference.
            (
                job("s", 3, false, aus[3].clone()),
                Some(Reason::MissingReference),
            ),
            (job("s", 4, true, idr_only), Some(Reason::ParameterSets)),
            (job("s", 5, true, aus[0].clone()), None),
        ];
        let expected: Vec<Option<Reason>> = sent.iter().map(|(_, r)| *r).collect();
        for (j, _) in sent {
            pool.submit(j).await.ok().unwrap();
        }
        let mut poison = Vec::new();
        let mut stats = Vec::new();
        let mut done = Vec::new();
        while poison.len() + stats.len() + done.len() < 6 {
            match next(&mut rx).await {
                Outcome::Poison { offset, reason, .. } => poison.push((offset, reason)),
                Outcome::Stats { offset, .. } => stats.push(offset),
                Outcome::Done { offset, .. } => done.push(offset),
            }
        }
        let want: Vec<(i64, Reason)> = expected
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|r| (i as i64, r)))
            .collect();
        assert_eq!(poison, want);
        assert_eq!(
            stats,
            [0, 5],
            "the first keyframe, then the one after the poison"
        );
        assert!(
            done.is_empty(),
            "every frame is measured or a dead letter: {done:?}"
        );
        assert_eq!(
            metrics
                .decode_errors
                .with_label_values(&["cam", "parameter_sets"])
                .get(),
            1
        );
        pool.finish();
    }
}
