//! One camera: connect with retina, stream access units into the camera's queue,
//! reconnect with backoff.
//!
//! A session is DESCRIBE/SETUP/PLAY under one timeout, then frames until an error, a
//! stall (no video frame for `stall_timeout_ms`: see [`StallClock`]; RTCP and other
//! items do not count) or stop. Every session gets a new
//! `fw-session` id and numbers its frames from 0 at its first keyframe (`fw-seq` counts
//! every frame received from there, so sampling shows as jumps). Frames before the
//! session's first keyframe are neither published nor numbered, and a keyframe is published only with SPS and PPS in front of it, so every
//! session on Kafka is decodable from its first record.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use framewire_kit::shutdown::Shutdown;
use framewire_wire::{CODEC_H264, CODEC_H265, CameraSpec, FrameMeta, Sampling, annexb};
use futures::{Stream, StreamExt};
use rand::RngExt;
use retina::client::{
    Credentials, PlayOptions, Session, SessionGroup, SessionOptions, SetupOptions, Transport,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};
use thiserror::Error;
use tokio::sync::watch;
use url::Url;

use crate::config::IngestConfig;
use crate::credentials::CredentialPolicy;
use crate::metrics::CameraMetrics;
use crate::publish::{Mode, Publisher, Sender};
use crate::queue::{DropReason, Outbox, QueuedFrame};
use crate::status::{CameraStatus, LastError, State};

/// Every `kind` label of `framewire_ingest_session_errors_total`.
pub const ERROR_KINDS: [&str; 11] = [
    "spec",
    "timeout",
    "auth",
    "connect",
    "dns",
    "no_video",
    "codec",
    "parameters",
    "stall",
    "ended",
    "rtsp",
];

/// What ends a session. The kind (a metric label) says what a person should look at.
#[derive(Debug, Error)]
pub enum SessionError {
    /// The camera URL or credentials reference cannot be used.
    #[error("bad camera spec: {0}")]
    Spec(String),
    /// DESCRIBE/SETUP/PLAY did not finish in time.
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// The server rejected the credentials.
    #[error("authentication failed (RTSP 401): check the camera's credentials")]
    Unauthorized,
    /// Nothing listens at the camera's address.
    #[error("connection refused: {0}")]
    Refused(String),
    /// The camera's host name does not resolve.
    #[error("unknown host: {0}")]
    UnknownHost(String),
    /// The presentation has no video stream at all.
    #[error("no video stream (streams: {0})")]
    NoVideo(String),
    /// The video is not H.264.
    #[error("video codec {0} is not supported (only H.264 and H.265)")]
    Codec(String),
    /// A keyframe arrived without usable SPS/PPS.
    #[error("keyframe without SPS/PPS: {0}")]
    Parameters(String),
    /// No video frame arrived for the stall timeout.
    #[error("no video frame for {0:?}; reconnecting")]
    Stalled(Duration),
    /// The server ended the stream.
    #[error("stream ended by the server")]
    Ended,
    /// Any other RTSP/RTP failure, as retina describes it.
    #[error("{0}")]
    Rtsp(String),
}

impl SessionError {
    /// Short label for metrics and `/cameras`.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionError::Spec(_) => "spec",
            SessionError::ConnectTimeout(_) => "timeout",
            SessionError::Unauthorized => "auth",
            SessionError::Refused(_) => "connect",
            SessionError::UnknownHost(_) => "dns",
            SessionError::NoVideo(_) => "no_video",
            SessionError::Codec(_) => "codec",
            SessionError::Parameters(_) => "parameters",
            SessionError::Stalled(_) => "stall",
            SessionError::Ended => "ended",
            SessionError::Rtsp(_) => "rtsp",
        }
    }

    /// Errors that need a person (credentials, codec, spec): shown as `failed`.
    pub fn needs_attention(&self) -> bool {
        matches!(
            self,
            SessionError::Spec(_)
                | SessionError::Unauthorized
                | SessionError::NoVideo(_)
                | SessionError::Codec(_)
        )
    }

    fn from_retina(e: retina::Error) -> Self {
        if e.status_code() == Some(401) {
            return SessionError::Unauthorized;
        }
        let text = e.to_string();
        let lower = text.to_ascii_lowercase();
        if lower.contains("connection refused") {
            SessionError::Refused(text)
        } else if lower.contains("failed to lookup")
            || lower.contains("name or service not known")
            || lower.contains("no such host")
        {
            SessionError::UnknownHost(text)
        } else if lower.contains("sps")
            || lower.contains("pps")
            || lower.contains("sprop-parameter-sets")
        {
            SessionError::Parameters(text)
        } else {
            SessionError::Rtsp(text)
        }
    }
}

/// What every camera task shares.
pub struct Shared {
    /// Session behaviour.
    pub config: IngestConfig,
    /// Output.
    pub publisher: Arc<Publisher>,
    /// Sessions of this process, torn down together on exit.
    pub group: Arc<SessionGroup>,
}

/// A running camera, owned by the registry.
pub struct CameraTask {
    /// Live status for `/cameras`.
    pub status: Arc<CameraStatus>,
    /// The spec it runs.
    pub spec: CameraSpec,
    stop: Shutdown,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

/// How long a stop waits for the camera's task once told to drop what it still has.
const ABANDON_WAIT: Duration = Duration::from_secs(2);

impl CameraTask {
    /// Starts streaming `spec` (or only registers it, when disabled); its frames go to
    /// Kafka while `mode` is [`Mode::Publish`].
    pub fn spawn(
        spec: CameraSpec,
        shared: Arc<Shared>,
        metrics: CameraMetrics,
        parent: &Shutdown,
        mode: Mode,
    ) -> Self {
        let stop = parent.child();
        let initial = if spec.enabled {
            State::Connecting
        } else {
            State::Disabled
        };
        let status = Arc::new(CameraStatus::new(initial));
        metrics.set_state(initial);
        let (mode, mode_rx) = watch::channel(mode);
        let task = if spec.enabled {
            tokio::spawn(run(
                spec.clone(),
                shared,
                metrics,
                status.clone(),
                mode_rx,
                stop.clone(),
            ))
        } else {
            tokio::spawn(async {})
        };
        CameraTask {
            status,
            spec,
            stop,
            mode,
            task,
        }
    }

    /// Whether the camera's frames may go to Kafka now.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Stops the camera: the session is torn down, what it queued is published and
    /// acknowledged, all within `grace`; what is still queued then is dropped (counted).
    pub async fn stop(mut self, grace: Duration) {
        self.stop.trigger();
        if tokio::time::timeout(grace, &mut self.task).await.is_ok() {
            return;
        }
        tracing::warn!(camera = %self.spec.id, grace_ms = grace.as_millis() as u64, "camera did not drain within the grace; dropping what is left");
        self.abandon(DropReason::Stopped).await;
    }

    /// Stops the camera without publishing what it queued (counted with `reason`).
    pub async fn abandon(mut self, reason: DropReason) {
        self.mode.send_replace(Mode::Abandon(reason));
        self.stop.trigger();
        if tokio::time::timeout(ABANDON_WAIT, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// Streams one camera until `stop`, reconnecting with exponential backoff and jitter;
/// a sender task publishes what the sessions queue.
async fn run(
    spec: CameraSpec,
    shared: Arc<Shared>,
    metrics: CameraMetrics,
    status: Arc<CameraStatus>,
    mode: watch::Receiver<Mode>,
    stop: Shutdown,
) {
    let camera = spec.id.clone();
    let outbox = Outbox::new(shared.config.queue_max_bytes);
    let sender = tokio::spawn(
        Sender::new(
            camera.clone(),
            outbox.clone(),
            shared.publisher.clone(),
            metrics.clone(),
            shared.config.max_in_flight,
            mode,
            stop.clone(),
        )
        .run(),
    );
    let initial = Duration::from_millis(shared.config.backoff_initial_ms);
    let max = Duration::from_millis(shared.config.backoff_max_ms);
    let mut backoff = initial;
    let queue_in = QueueInput {
        outbox,
        metrics: metrics.clone(),
    };
    while !stop.is_triggered() {
        metrics.reconnects.inc();
        status.set_state(State::Connecting);
        metrics.set_state(State::Connecting);
        let (outcome, streamed) = session(&spec, &shared, &queue_in, &status, &stop).await;
        metrics.up.set(0);
        metrics.fps.set(0.0);
        metrics.bitrate.set(0.0);
        if streamed {
            backoff = initial;
        }
        let Err(e) = outcome else { break };
        metrics.session_error(e.kind());
        let state = if e.needs_attention() {
            backoff = max;
            State::Failed
        } else {
            State::BackingOff
        };
        status.failed(
            state,
            LastError {
                kind: e.kind(),
                message: e.to_string(),
                at_ms: now_ms(),
            },
        );
        metrics.set_state(state);
        tracing::warn!(%camera, kind = e.kind(), error = %e, retry_in_ms = backoff.as_millis() as u64, "camera session ended");
        let jitter = rand::rng().random_range(0.8..1.2);
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(backoff.mul_f64(jitter)) => {}
        }
        backoff = (backoff * 2).min(max);
    }
    let _ = sender.await;
}

/// Where a session puts its frames.
struct QueueInput {
    outbox: Outbox,
    metrics: CameraMetrics,
}

impl QueueInput {
    fn push(&self, frame: QueuedFrame) {
        let (pushed, bytes, len) = {
            let mut q = self.outbox.lock();
            let pushed = q.push(frame);
            (pushed, q.bytes(), q.len())
        };
        self.metrics.queue_bytes.set(bytes as i64);
        self.metrics.queue_frames.set(len as i64);
        if pushed.dropped_gops > 0 {
            self.metrics.dropped_gops.inc_by(pushed.dropped_gops);
        }
        self.metrics
            .dropped(DropReason::QueueFull, pushed.dropped_frames);
        if let Some(reason) = pushed.skipped {
            self.metrics.dropped(reason, 1);
        }
        self.outbox.wake.notify_one();
    }
}

/// When a session counts as stalled: `timeout` after its last video frame (or after it
/// started streaming). Nothing else a stream yields moves it: a camera that keeps sending
/// RTCP sender reports but no video is stalled all the same.
#[derive(Debug, Clone, Copy)]
struct StallClock {
    timeout: Duration,
    last_frame: Instant,
}

impl StallClock {
    /// A clock for a session that starts streaming at `now`.
    fn new(timeout: Duration, now: Instant) -> Self {
        StallClock {
            timeout,
            last_frame: now,
        }
    }

    /// A video frame arrived at `now`.
    fn frame(&mut self, now: Instant) {
        self.last_frame = now;
    }

    /// When the session stalls unless a video frame arrives first.
    fn deadline(&self) -> Instant {
        self.last_frame + self.timeout
    }
}

/// What reading a session's stream up to its next video frame gave.
#[derive(Debug)]
enum Read<V, E> {
    /// A video frame.
    Video(V),
    /// The stream failed.
    Failed(E),
    /// The stream ended.
    Ended,
    /// No video frame before the stall deadline.
    Stalled,
}

/// Reads `stream` until its next video frame (what `video` maps to `Some`), an error, its
/// end, or the clock's deadline; other items are skipped without moving the deadline.
async fn next_video<S, T, E, V>(
    stream: &mut S,
    clock: &mut StallClock,
    video: impl Fn(T) -> Option<V>,
) -> Read<V, E>
where
    S: Stream<Item = Result<T, E>> + Unpin,
{
    loop {
        let deadline = tokio::time::Instant::from_std(clock.deadline());
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => return Read::Stalled,
            Ok(None) => return Read::Ended,
            Ok(Some(Err(e))) => return Read::Failed(e),
            Ok(Some(Ok(item))) => {
                if let Some(v) = video(item) {
                    clock.frame(Instant::now());
                    return Read::Video(v);
                }
            }
        }
    }
}

/// Splits credentials off the URL (retina takes them separately) and resolves a
/// credentials reference.
fn url_and_credentials(
    spec: &CameraSpec,
    policy: &CredentialPolicy,
) -> Result<(Url, Option<Credentials>), SessionError> {
    let mut url = Url::parse(&spec.url)
        .map_err(|e| SessionError::Spec(format!("url does not parse: {e}")))?;
    let mut creds = None;
    if !url.username().is_empty() {
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        creds = Some(Credentials {
            username: decode(url.username()),
            password: decode(url.password().unwrap_or("")),
        });
        let _ = url.set_username("");
        let _ = url.set_password(None);
    }
    if let Some(r) = &spec.credentials {
        creds = Some(Credentials {
            username: r.username.clone(),
            password: policy.resolve(r).map_err(SessionError::Spec)?,
        });
    }
    Ok((url, creds))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Frames and bytes over the last second, for the fps and bitrate gauges.
struct Rate {
    since: Instant,
    frames: u64,
    bytes: u64,
}

impl Rate {
    fn add(&mut self, bytes: usize, m: &CameraMetrics) {
        self.frames += 1;
        self.bytes += bytes as u64;
        let elapsed = self.since.elapsed().as_secs_f64();
        if elapsed >= 1.0 {
            m.fps.set(self.frames as f64 / elapsed);
            m.bitrate.set(self.bytes as f64 * 8.0 / elapsed);
            *self = Rate {
                since: Instant::now(),
                frames: 0,
                bytes: 0,
            };
        }
    }
}

/// Connects: DESCRIBE, pick the H.264 video stream, SETUP, PLAY.
/// The video codecs ingest publishes (as Annex B access units, parameter sets inline on
/// every keyframe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VideoCodec {
    H264,
    H265,
}

impl VideoCodec {
    /// From an RTSP/SDP encoding name (`H264`, `H265`, any case).
    fn from_encoding(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("h264") {
            Some(VideoCodec::H264)
        } else if name.eq_ignore_ascii_case("h265") {
            Some(VideoCodec::H265)
        } else {
            None
        }
    }

    /// The `fw-codec` header value.
    fn header(self) -> &'static str {
        match self {
            VideoCodec::H264 => CODEC_H264,
            VideoCodec::H265 => CODEC_H265,
        }
    }

    /// Whether a keyframe carries the parameter sets that make it decodable on its own.
    fn is_self_contained(self, keyframe: &[u8]) -> bool {
        match self {
            VideoCodec::H264 => annexb::starts_with_parameter_sets(keyframe),
            VideoCodec::H265 => annexb::h265::starts_with_parameter_sets(keyframe),
        }
    }

    /// Whether a frame is a keyframe: what retina calls a random access point (H.264 IDR,
    /// H.265 IDR), and for H.265 also CRA and BLA pictures, the other IRAP types (encoders
    /// with open GOPs, x265's default, send an IDR once and CRAs after it).
    fn is_keyframe(self, frame: &retina::codec::VideoFrame) -> bool {
        frame.is_random_access_point()
            || (self == VideoCodec::H265 && annexb::h265::is_irap(frame.data()))
    }

    /// The parameter sets a keyframe needs, for messages.
    fn parameter_sets(self) -> &'static str {
        match self {
            VideoCodec::H264 => "SPS/PPS",
            VideoCodec::H265 => "VPS/SPS/PPS",
        }
    }
}

async fn connect(
    spec: &CameraSpec,
    shared: &Shared,
) -> Result<(retina::client::Demuxed, usize, VideoCodec), SessionError> {
    let (url, creds) = url_and_credentials(spec, &shared.config.credential_policy())?;
    let transport = match spec.transport {
        framewire_wire::Transport::Tcp => Transport::default(),
        framewire_wire::Transport::Udp => Transport::Udp(Default::default()),
    };
    let options = SessionOptions::default()
        .creds(creds)
        .session_group(shared.group.clone())
        .user_agent(format!("framewire-ingest/{}", env!("CARGO_PKG_VERSION")));
    let mut described = Session::describe(url, options)
        .await
        .map_err(SessionError::from_retina)?;
    let streams: Vec<(String, String)> = described
        .streams()
        .iter()
        .map(|s| (s.media().to_owned(), s.encoding_name().to_owned()))
        .collect();
    let found = || {
        streams
            .iter()
            .map(|(m, e)| format!("{m}/{e}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (video, codec) = match streams.iter().enumerate().find_map(|(i, (m, e))| {
        VideoCodec::from_encoding(e)
            .filter(|_| m == "video")
            .map(|c| (i, c))
    }) {
        Some(found) => found,
        None => {
            return Err(match streams.iter().find(|(m, _)| m == "video") {
                Some((_, enc)) => SessionError::Codec(enc.clone()),
                None if streams.is_empty() => SessionError::NoVideo("none".into()),
                None => SessionError::NoVideo(found()),
            });
        }
    };
    described
        .setup(
            video,
            SetupOptions::default()
                .transport(transport)
                .frame_format(FrameFormat::SIMPLE),
        )
        .await
        .map_err(SessionError::from_retina)?;
    let playing = described
        .play(PlayOptions::default())
        .await
        .map_err(SessionError::from_retina)?;
    let demuxed = playing.demuxed().map_err(SessionError::from_retina)?;
    Ok((demuxed, video, codec))
}

/// One RTSP session: returns how it ended (Ok = stopped) and whether any frame was queued.
async fn session(
    spec: &CameraSpec,
    shared: &Shared,
    out: &QueueInput,
    status: &CameraStatus,
    stop: &Shutdown,
) -> (Result<(), SessionError>, bool) {
    let camera = spec.id.as_str();
    let connect_timeout = Duration::from_millis(shared.config.connect_timeout_ms);
    let (mut demuxed, video, codec) = tokio::select! {
        biased;
        _ = stop.cancelled() => return (Ok(()), false),
        r = tokio::time::timeout(connect_timeout, connect(spec, shared)) => match r {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return (Err(e), false),
            Err(_) => return (Err(SessionError::ConnectTimeout(connect_timeout)), false),
        },
    };

    let session_id = format!("{:016x}", rand::rng().random::<u64>());
    let metrics = &out.metrics;
    status.streaming(&session_id);
    metrics.set_state(State::Streaming);
    tracing::info!(%camera, session = %session_id, codec = codec.header(), "camera streaming");
    let stall = Duration::from_millis(shared.config.stall_timeout_ms);
    let mut clock = StallClock::new(stall, Instant::now());
    let mut seq: u64 = 0;
    let mut gop_seq: u64 = 0;
    let mut gop_index: u64 = 0;
    let mut synced = false;
    let mut streamed = false;
    let mut last_pts: Option<i64> = None;
    let mut rate = Rate {
        since: Instant::now(),
        frames: 0,
        bytes: 0,
    };
    loop {
        let read = tokio::select! {
            biased;
            _ = stop.cancelled() => return (Ok(()), streamed),
            r = next_video(&mut demuxed, &mut clock, |item| match item {
                CodecItem::VideoFrame(f) => Some(f),
                _ => None,
            }) => r,
        };
        let frame = match read {
            Read::Video(frame) => frame,
            Read::Failed(e) => return (Err(SessionError::from_retina(e)), streamed),
            Read::Ended => return (Err(SessionError::Ended), streamed),
            Read::Stalled => return (Err(SessionError::Stalled(stall)), streamed),
        };
        let capture_ms = now_ms();
        let pts = frame.timestamp().timestamp();
        rate.add(frame.data().len(), metrics);
        metrics.last_frame.set(capture_ms / 1000);
        if frame.loss() > 0 {
            metrics.rtp_lost.inc_by(u64::from(frame.loss()));
        }
        if let Some(prev) = last_pts
            && (pts - prev).abs() > 10 * 90_000
        {
            metrics.timestamp_jumps.inc();
            tracing::warn!(%camera, from = prev, to = pts, "RTP timestamp jump of more than 10 s");
        }
        last_pts = Some(pts);

        let keyframe = codec.is_keyframe(&frame);
        // The parameter sets retina prepends only to IDR pictures; an H.265 CRA/BLA keyframe
        // gets the stream's current ones here, so that every keyframe record decodes alone.
        let mut prefix: Option<Vec<u8>> = None;
        if keyframe {
            if synced {
                gop_index += 1;
            }
            if !codec.is_self_contained(frame.data()) {
                prefix = demuxed.streams()[video].parameters().and_then(|p| match p {
                    ParametersRef::Video(v) => Some(v.extra_data().to_vec()),
                    _ => None,
                });
                if !prefix
                    .as_deref()
                    .is_some_and(|p| codec.is_self_contained(p))
                {
                    metrics.skipped("no_parameters");
                    return (
                        Err(SessionError::Parameters(format!(
                            "keyframe at seq {seq} has no {} in front",
                            codec.parameter_sets()
                        ))),
                        streamed,
                    );
                }
            }
            synced = true;
        }
        if !synced {
            metrics.skipped("before_keyframe");
            continue;
        }
        // Numbered from the session's first keyframe: `fw-seq` 0 is always a keyframe.
        let this_seq = seq;
        seq += 1;
        if keyframe {
            gop_seq = this_seq;
        }
        let sampled_out = !gop_index.is_multiple_of(u64::from(spec.every_nth_gop))
            || (spec.sampling == Sampling::Keyframes && !keyframe);
        if sampled_out {
            metrics.skipped("sampling");
            continue;
        }
        let dimensions = if keyframe {
            demuxed.streams()[video].parameters().and_then(|p| match p {
                ParametersRef::Video(v) => Some(v.pixel_dimensions()),
                _ => None,
            })
        } else {
            None
        };
        let meta = FrameMeta {
            camera: camera.to_owned(),
            session: session_id.clone(),
            seq: this_seq,
            pts_90k: pts,
            capture_ms,
            keyframe,
            codec: codec.header().to_owned(),
            dimensions,
        };
        let span = tracing::info_span!("ingest_frame", camera, seq = this_seq);
        out.push(QueuedFrame {
            meta,
            gop_seq,
            data: match prefix {
                Some(mut data) => {
                    data.extend_from_slice(frame.data());
                    data
                }
                None => frame.into_data(),
            },
            span,
            detect: spec.detect,
        });
        metrics.up.set(1);
        streamed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> CameraSpec {
        serde_json::from_value(serde_json::json!({"id": "c", "url": url})).unwrap()
    }

    #[test]
    fn h264_and_h265_are_the_codecs_ingest_publishes() {
        assert_eq!(VideoCodec::from_encoding("H264"), Some(VideoCodec::H264));
        assert_eq!(VideoCodec::from_encoding("h265"), Some(VideoCodec::H265));
        assert_eq!(VideoCodec::from_encoding("JPEG"), None);
        assert_eq!(VideoCodec::H265.header(), "h265");
        // A keyframe is self-contained only with its codec's parameter sets.
        let h265_key = [
            &[0, 0, 0, 1, 0x40, 0x01, 0x0c][..],
            &[0, 0, 0, 1, 0x42, 0x01, 0x01],
            &[0, 0, 0, 1, 0x44, 0x01, 0xc1],
            &[0, 0, 0, 1, 0x2a, 0x01, 0xaf],
        ]
        .concat();
        assert!(VideoCodec::H265.is_self_contained(&h265_key));
        assert!(!VideoCodec::H264.is_self_contained(&h265_key));
    }

    #[test]
    fn credentials_move_out_of_the_url() {
        let (url, creds) =
            url_and_credentials(&spec("rtsp://admin:p%40ss@cam:554/s1"), &policy()).unwrap();
        assert_eq!(url.as_str(), "rtsp://cam:554/s1");
        let c = creds.unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("admin", "p@ss")
        );
        let (url, creds) = url_and_credentials(&spec("rtsp://cam/s1"), &policy()).unwrap();
        assert_eq!(url.as_str(), "rtsp://cam/s1");
        assert!(creds.is_none());
    }

    #[test]
    fn credentials_reference_from_env_is_required() {
        let mut s = spec("rtsp://cam/s1");
        s.credentials = Some(framewire_wire::CredentialsRef {
            username: "u".into(),
            password_env: Some("FRAMEWIRE_CAMERA_SURELY_UNSET_VAR".into()),
            password_file: None,
        });
        let err = url_and_credentials(&s, &policy()).unwrap_err();
        assert_eq!(err.kind(), "spec");
        assert!(
            err.to_string()
                .contains("FRAMEWIRE_CAMERA_SURELY_UNSET_VAR")
        );
        s.credentials = Some(framewire_wire::CredentialsRef {
            username: "u".into(),
            password_env: Some("PATH".into()),
            password_file: None,
        });
        let err = url_and_credentials(&s, &policy()).unwrap_err();
        assert!(
            err.to_string().contains("ingest.credentials_env_prefix"),
            "{err}"
        );
        assert!(!err.to_string().contains("/usr"), "{err}");
    }

    fn policy() -> CredentialPolicy {
        crate::config::IngestConfig::default().credential_policy()
    }

    #[test]
    fn the_stall_deadline_follows_the_last_video_frame() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        let mut clock = StallClock::new(timeout, t0);
        assert_eq!(clock.deadline(), t0 + timeout);
        clock.frame(t0 + Duration::from_secs(3));
        assert_eq!(clock.deadline(), t0 + Duration::from_secs(13));
    }

    /// Video for `videos` items, then RTCP-like items every 20 ms forever.
    fn rtcp_after_video(videos: u32) -> impl Stream<Item = Result<bool, String>> + Unpin {
        Box::pin(futures::stream::unfold(0u32, move |n| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((Ok(n < videos), n + 1))
        }))
    }

    #[tokio::test]
    async fn rtcp_alone_does_not_keep_a_session_alive() {
        let stall = Duration::from_millis(300);
        let mut stream = rtcp_after_video(3);
        let mut clock = StallClock::new(stall, Instant::now());
        let video = |is_video: bool| is_video.then_some(());
        for _ in 0..3 {
            assert!(matches!(
                next_video(&mut stream, &mut clock, video).await,
                Read::Video(())
            ));
        }
        let last_video = Instant::now();
        // Items keep arriving every 20 ms, yet the session stalls 300 ms after the video.
        let read = tokio::time::timeout(
            Duration::from_secs(3),
            next_video(&mut stream, &mut clock, video),
        )
        .await
        .expect("a stream of RTCP alone must stall");
        assert!(matches!(read, Read::Stalled), "{read:?}");
        let waited = last_video.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_millis(1_000),
            "stalled after {waited:?}"
        );
    }

    #[tokio::test]
    async fn errors_and_the_end_of_the_stream_are_reported() {
        let mut clock = StallClock::new(Duration::from_secs(5), Instant::now());
        let mut s = futures::stream::iter(vec![Ok(false), Err("boom".to_owned())]);
        let read = next_video(&mut s, &mut clock, |v: bool| v.then_some(())).await;
        assert!(
            matches!(read, Read::Failed(ref e) if e == "boom"),
            "{read:?}"
        );
        let read = next_video(&mut s, &mut clock, |v: bool| v.then_some(())).await;
        assert!(matches!(read, Read::Ended), "{read:?}");
    }

    #[test]
    fn every_kind_is_listed() {
        let errors = [
            SessionError::Spec(String::new()),
            SessionError::ConnectTimeout(Duration::ZERO),
            SessionError::Unauthorized,
            SessionError::Refused(String::new()),
            SessionError::UnknownHost(String::new()),
            SessionError::NoVideo(String::new()),
            SessionError::Codec(String::new()),
            SessionError::Parameters(String::new()),
            SessionError::Stalled(Duration::ZERO),
            SessionError::Ended,
            SessionError::Rtsp(String::new()),
        ];
        let kinds: Vec<_> = errors.iter().map(SessionError::kind).collect();
        assert_eq!(kinds, ERROR_KINDS);
    }
}
