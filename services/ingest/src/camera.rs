//! One camera: connect with retina, stream access units, reconnect with backoff.
//!
//! A session is DESCRIBE/SETUP/PLAY under one timeout, then frames until an error, a
//! stall (no frame for `stall_timeout_ms`) or shutdown. Every session gets a new
//! `fw-session` id and numbers its frames from 0; frames before the session's first
//! keyframe are not published, so every session on Kafka starts decodable.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use framewire_kit::shutdown::Shutdown;
use framewire_wire::{CODEC_H264, CameraSpec, FrameMeta, Sampling};
use futures::StreamExt;
use rand::RngExt;
use retina::client::{
    Credentials, PlayOptions, Session, SessionGroup, SessionOptions, SetupOptions, Transport,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};
use thiserror::Error;
use url::Url;

use crate::config::IngestConfig;
use crate::metrics::Metrics;
use crate::publish::Publisher;

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
    /// The presentation has no H.264 video stream.
    #[error("no H.264 video stream (streams: {0})")]
    NoH264(String),
    /// No frame arrived for the stall timeout.
    #[error("no frame for {0:?}; reconnecting")]
    Stalled(Duration),
    /// The server ended the stream.
    #[error("stream ended by the server")]
    Ended,
    /// Any other RTSP/RTP failure, as retina describes it.
    #[error("{0}")]
    Rtsp(String),
}

impl SessionError {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionError::Spec(_) => "spec",
            SessionError::ConnectTimeout(_) => "timeout",
            SessionError::Unauthorized => "auth",
            SessionError::NoH264(_) => "codec",
            SessionError::Stalled(_) => "stall",
            SessionError::Ended => "ended",
            SessionError::Rtsp(_) => "rtsp",
        }
    }

    fn from_retina(e: retina::Error) -> Self {
        if e.status_code() == Some(401) {
            SessionError::Unauthorized
        } else {
            SessionError::Rtsp(e.to_string())
        }
    }
}

/// What every camera task shares.
pub struct Shared {
    /// Session behaviour.
    pub config: IngestConfig,
    /// Output.
    pub publisher: Publisher,
    /// Metrics.
    pub metrics: Metrics,
    /// Sessions of this process, torn down together on exit.
    pub group: Arc<SessionGroup>,
}

/// Streams one camera until shutdown, reconnecting with exponential backoff and jitter.
pub async fn run(spec: CameraSpec, shared: Arc<Shared>, shutdown: Shutdown) {
    let camera = spec.id.clone();
    let initial = Duration::from_millis(shared.config.backoff_initial_ms);
    let max = Duration::from_millis(shared.config.backoff_max_ms);
    let mut backoff = initial;
    shared.metrics.init_camera(&camera);
    while !shutdown.is_triggered() {
        shared
            .metrics
            .reconnects
            .with_label_values(&[&camera])
            .inc();
        let outcome = session(&spec, &shared, &shutdown).await;
        shared.metrics.up.with_label_values(&[&camera]).set(0);
        match outcome {
            Ok(streamed) => {
                if streamed {
                    backoff = initial;
                }
                if shutdown.is_triggered() {
                    break;
                }
            }
            Err((e, streamed)) => {
                if streamed {
                    backoff = initial;
                }
                shared
                    .metrics
                    .session_errors
                    .with_label_values(&[&camera, e.kind()])
                    .inc();
                tracing::warn!(%camera, kind = e.kind(), error = %e, retry_in_ms = backoff.as_millis() as u64, "camera session ended");
            }
        }
        let jitter = rand::rng().random_range(0.8..1.2);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(backoff.mul_f64(jitter)) => {}
        }
        backoff = (backoff * 2).min(max);
    }
}

/// Splits credentials off the URL (retina takes them separately) and resolves a
/// credentials reference.
fn url_and_credentials(spec: &CameraSpec) -> Result<(Url, Option<Credentials>), SessionError> {
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
        let password = match (&r.password_env, &r.password_file) {
            (Some(var), _) => std::env::var(var)
                .map_err(|_| SessionError::Spec(format!("password variable {var} is not set")))?,
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| {
                    SessionError::Spec(format!("cannot read password file {path}: {e}"))
                })?,
            (None, None) => String::new(),
        };
        creds = Some(Credentials {
            username: r.username.clone(),
            password,
        });
    }
    Ok((url, creds))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One RTSP session. Returns whether any frame was published (then backoff resets).
async fn session(
    spec: &CameraSpec,
    shared: &Shared,
    shutdown: &Shutdown,
) -> Result<bool, (SessionError, bool)> {
    let camera = spec.id.as_str();
    let (url, creds) = url_and_credentials(spec).map_err(|e| (e, false))?;
    let connect_timeout = Duration::from_millis(shared.config.connect_timeout_ms);
    let transport = match spec.transport {
        framewire_wire::Transport::Tcp => Transport::default(),
        framewire_wire::Transport::Udp => Transport::Udp(Default::default()),
    };
    let connect = async {
        let options = SessionOptions::default()
            .creds(creds)
            .session_group(shared.group.clone())
            .user_agent(format!("framewire-ingest/{}", env!("CARGO_PKG_VERSION")));
        let mut described = Session::describe(url, options)
            .await
            .map_err(SessionError::from_retina)?;
        let video = described
            .streams()
            .iter()
            .position(|s| s.media() == "video" && s.encoding_name().eq_ignore_ascii_case("h264"))
            .ok_or_else(|| {
                let found: Vec<String> = described
                    .streams()
                    .iter()
                    .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
                    .collect();
                SessionError::NoH264(if found.is_empty() {
                    "none".into()
                } else {
                    found.join(", ")
                })
            })?;
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
        Ok::<_, SessionError>((demuxed, video))
    };
    let (mut demuxed, video) = tokio::select! {
        biased;
        _ = shutdown.cancelled() => return Ok(false),
        r = tokio::time::timeout(connect_timeout, connect) => match r {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err((e, false)),
            Err(_) => return Err((SessionError::ConnectTimeout(connect_timeout), false)),
        },
    };

    let session_id = format!("{:016x}", rand::rng().random::<u64>());
    tracing::info!(%camera, session = %session_id, "camera streaming");
    let stall = Duration::from_millis(shared.config.stall_timeout_ms);
    let mut seq: u64 = 0;
    let mut streamed = false;
    loop {
        let item = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(streamed),
            r = tokio::time::timeout(stall, demuxed.next()) => match r {
                Ok(Some(Ok(item))) => item,
                Ok(Some(Err(e))) => return Err((SessionError::from_retina(e), streamed)),
                Ok(None) => return Err((SessionError::Ended, streamed)),
                Err(_) => return Err((SessionError::Stalled(stall), streamed)),
            },
        };
        let CodecItem::VideoFrame(frame) = item else {
            continue;
        };
        let keyframe = frame.is_random_access_point();
        if seq == 0 && !keyframe {
            shared.metrics.skipped.with_label_values(&[camera]).inc();
            continue;
        }
        if spec.sampling == Sampling::Keyframes && !keyframe {
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
            seq,
            pts_90k: frame.timestamp().timestamp(),
            capture_ms: now_ms(),
            keyframe,
            codec: CODEC_H264.to_owned(),
            dimensions,
        };
        let span = tracing::info_span!("ingest_frame", camera, seq);
        shared.publisher.publish(&meta, frame.data(), &span);
        shared.metrics.up.with_label_values(&[camera]).set(1);
        shared
            .metrics
            .last_frame
            .with_label_values(&[camera])
            .set(meta.capture_ms / 1000);
        if !streamed {
            streamed = true;
        }
        seq += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> CameraSpec {
        serde_json::from_value(serde_json::json!({"id": "c", "url": url})).unwrap()
    }

    #[test]
    fn credentials_move_out_of_the_url() {
        let (url, creds) = url_and_credentials(&spec("rtsp://admin:p%40ss@cam:554/s1")).unwrap();
        assert_eq!(url.as_str(), "rtsp://cam:554/s1");
        let c = creds.unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("admin", "p@ss")
        );
        let (url, creds) = url_and_credentials(&spec("rtsp://cam/s1")).unwrap();
        assert_eq!(url.as_str(), "rtsp://cam/s1");
        assert!(creds.is_none());
    }

    #[test]
    fn credentials_reference_from_env_is_required() {
        let mut s = spec("rtsp://cam/s1");
        s.credentials = Some(framewire_wire::CredentialsRef {
            username: "u".into(),
            password_env: Some("FRAMEWIRE_TEST_SURELY_UNSET_VAR".into()),
            password_file: None,
        });
        let err = url_and_credentials(&s).unwrap_err();
        assert_eq!(err.kind(), "spec");
        assert!(err.to_string().contains("FRAMEWIRE_TEST_SURELY_UNSET_VAR"));
    }
}
