//! The preview: every camera's latest keyframe as a small JPEG, for the web page.
//!
//! A consumer group of its own (`sink.preview_group_id`) reads the frames topic from the
//! newest records (`auto.offset.reset=latest`: only what is current matters), looks only
//! at the `fw-keyframe` header and drops everything but keyframes — which carry SPS and
//! PPS inline, so each decodes alone. At most one keyframe per camera per
//! `sink.preview_interval_ms` is decoded, on one dedicated thread (openh264 + the
//! `framewire-thumbnail` JPEG encoder), fed by a small bounded queue: when the thread is
//! behind, keyframes are skipped (counted), never queued without bound, and the async
//! runtime never decodes. Thumbnails live in memory only; after a restart each camera
//! has one again within a GOP.

use std::collections::HashMap;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use framewire_kit::kafka::{KafkaConfig, KafkaSetupError, header};
use framewire_kit::shutdown::Shutdown;
use framewire_wire::{FrameMeta, header as h};
use openh264::OpenH264API;
use openh264::decoder::{Decoder, DecoderConfig};
use openh264::formats::YUVSource;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};

use crate::metrics::Metrics;

/// JPEG quality of thumbnails.
pub const JPEG_QUALITY: u8 = 75;

/// Keyframes waiting for the decoder thread before new ones are skipped.
const QUEUE: usize = 8;

/// One camera's latest thumbnail.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnail {
    /// The JPEG.
    pub jpeg: Arc<Vec<u8>>,
    /// Capture time of the keyframe, ms since the epoch.
    pub capture_ms: i64,
    /// Session of the keyframe.
    pub session: String,
    /// Sequence number of the keyframe.
    pub seq: u64,
    /// Picture size of the keyframe (the JPEG is smaller).
    pub width: u32,
    /// Picture height of the keyframe.
    pub height: u32,
}

/// The latest thumbnail of every camera, shared between the preview and the API.
#[derive(Debug, Clone, Default)]
pub struct Thumbnails(Arc<RwLock<HashMap<String, Thumbnail>>>);

impl Thumbnails {
    /// A camera's latest thumbnail.
    pub fn get(&self, camera: &str) -> Option<Thumbnail> {
        let map = match self.0.read() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.get(camera).cloned()
    }

    /// Keeps `thumb` as `camera`'s latest, unless a newer one is already there.
    pub fn put(&self, camera: &str, thumb: Thumbnail) {
        let mut map = match self.0.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        match map.get(camera) {
            Some(old) if old.capture_ms > thumb.capture_ms => {}
            _ => {
                map.insert(camera.to_owned(), thumb);
            }
        }
    }
}

/// Creates the preview consumer in `group_id` on the frames `topic`.
pub fn consumer(
    kafka: &KafkaConfig,
    group_id: &str,
    topic: &str,
    max_message_bytes: i32,
) -> Result<StreamConsumer, KafkaSetupError> {
    let max = max_message_bytes.to_string();
    let consumer: StreamConsumer = kafka
        .client_config(
            "framewire-sink-preview",
            &[
                ("group.id", group_id),
                ("enable.auto.commit", "true"),
                ("auto.offset.reset", "latest"),
                ("max.partition.fetch.bytes", &max),
                ("fetch.max.bytes", &max),
            ],
        )
        .create()
        .map_err(|source| KafkaSetupError::Client {
            what: "preview consumer",
            source,
        })?;
    consumer
        .subscribe(&[topic])
        .map_err(|source| KafkaSetupError::Client {
            what: "preview subscription",
            source,
        })?;
    Ok(consumer)
}

/// One keyframe for the decoder thread.
struct Job {
    meta: FrameMeta,
    data: Vec<u8>,
}

/// How thumbnails are made.
#[derive(Debug, Clone, Copy)]
pub struct PreviewSettings {
    /// At most one thumbnail per camera this often.
    pub interval: Duration,
    /// Thumbnail width.
    pub width: u32,
}

/// Reads keyframes until shutdown and keeps each camera's latest thumbnail in `thumbs`.
pub async fn run(
    consumer: StreamConsumer,
    thumbs: Thumbnails,
    metrics: Metrics,
    settings: PreviewSettings,
    shutdown: Shutdown,
) {
    let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
    let decoder = {
        let (thumbs, metrics) = (thumbs.clone(), metrics.clone());
        std::thread::Builder::new()
            .name("sink-preview".into())
            .spawn(move || decode_loop(rx, thumbs, metrics, settings.width))
    };
    let decoder = match decoder {
        Ok(handle) => handle,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the preview thread; no thumbnails");
            return;
        }
    };
    let mut last: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            msg = consumer.recv() => match msg {
                Ok(m) => offer(&m, &tx, &mut last, &metrics, settings.interval),
                Err(e) => {
                    metrics.kafka_errors.with_label_values(&["preview_recv"]).inc();
                    tracing::warn!(error = %e, "preview consumer error");
                }
            },
        }
    }
    drop(tx);
    let _ = tokio::task::spawn_blocking(move || decoder.join()).await;
}

/// Hands a keyframe to the decoder thread unless the camera has a recent thumbnail or
/// the thread is behind.
fn offer(
    msg: &BorrowedMessage<'_>,
    tx: &SyncSender<Job>,
    last: &mut HashMap<String, Instant>,
    metrics: &Metrics,
    interval: Duration,
) {
    if header(msg.headers(), h::KEYFRAME) != Some(b"1".as_slice()) {
        return;
    }
    let meta = match FrameMeta::from_headers(|name| header(msg.headers(), name)) {
        Ok(m) => m,
        Err(e) => {
            metrics
                .preview_skipped
                .with_label_values(&["bad_headers"])
                .inc();
            tracing::debug!(error = %e, partition = msg.partition(), offset = msg.offset(), "keyframe with bad headers");
            return;
        }
    };
    // The preview decodes with openh264: no thumbnails of H.265 cameras.
    if meta.codec != framewire_wire::CODEC_H264 {
        metrics.preview_skipped.with_label_values(&["codec"]).inc();
        return;
    }
    if last
        .get(&meta.camera)
        .is_some_and(|t| t.elapsed() < interval)
    {
        metrics
            .preview_skipped
            .with_label_values(&["throttled"])
            .inc();
        return;
    }
    let camera = meta.camera.clone();
    let job = Job {
        meta,
        data: msg.payload().unwrap_or_default().to_vec(),
    };
    match tx.try_send(job) {
        Ok(()) => {
            last.insert(camera, Instant::now());
        }
        Err(TrySendError::Full(_)) => {
            metrics.preview_skipped.with_label_values(&["busy"]).inc();
        }
        Err(TrySendError::Disconnected(_)) => {}
    }
}

fn decode_loop(rx: mpsc::Receiver<Job>, thumbs: Thumbnails, metrics: Metrics, width: u32) {
    while let Ok(job) = rx.recv() {
        let camera = job.meta.camera.clone();
        match thumbnail(&job, width) {
            Ok(t) => {
                thumbs.put(&camera, t);
                metrics
                    .thumbnails
                    .with_label_values(&[camera.as_str()])
                    .inc();
            }
            Err(reason) => {
                metrics
                    .preview_errors
                    .with_label_values(&[camera.as_str()])
                    .inc();
                tracing::warn!(%camera, seq = job.meta.seq, %reason, "no thumbnail from this keyframe");
            }
        }
    }
}

/// Decodes one self-contained keyframe with a fresh decoder and encodes a JPEG.
fn thumbnail(job: &Job, width: u32) -> Result<Thumbnail, String> {
    let mut decoder = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
        .map_err(|e| format!("cannot create a decoder: {e}"))?;
    let yuv = decoder
        .decode(&job.data)
        .map_err(|e| format!("decode failed: {e}"))?
        .ok_or_else(|| "the keyframe gave no picture".to_owned())?;
    let (w, hgt) = yuv.dimensions();
    let (ys, us, vs) = yuv.strides();
    let (pw, ph) = (
        u32::try_from(w).map_err(|_| "picture too wide")?,
        u32::try_from(hgt).map_err(|_| "picture too tall")?,
    );
    let jpeg = framewire_thumbnail::jpeg_from_yuv420(
        yuv.y(),
        ys,
        yuv.u(),
        us,
        yuv.v(),
        vs,
        pw,
        ph,
        width,
        JPEG_QUALITY,
    )
    .map_err(|e| e.to_string())?;
    Ok(Thumbnail {
        jpeg: Arc::new(jpeg),
        capture_ms: job.meta.capture_ms,
        session: job.meta.session.clone(),
        seq: job.meta.seq,
        width: pw,
        height: ph,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use openh264::encoder::Encoder;
    use openh264::formats::YUVBuffer;

    fn thumb(capture_ms: i64) -> Thumbnail {
        Thumbnail {
            jpeg: Arc::new(vec![capture_ms as u8]),
            capture_ms,
            session: "s".into(),
            seq: 0,
            width: 2,
            height: 2,
        }
    }

    #[test]
    fn the_newest_thumbnail_wins() {
        let t = Thumbnails::default();
        assert_eq!(t.get("cam"), None);
        t.put("cam", thumb(10));
        t.put("cam", thumb(5)); // an older keyframe arriving late
        assert_eq!(t.get("cam").unwrap().capture_ms, 10);
        t.put("cam", thumb(20));
        assert_eq!(t.get("cam").unwrap().capture_ms, 20);
    }

    #[test]
    fn a_keyframe_becomes_a_jpeg_of_its_brightness() {
        let (w, hgt) = (128usize, 72usize);
        let mut yuv = vec![200u8; w * hgt];
        yuv.extend(std::iter::repeat_n(128u8, w * hgt / 2));
        let mut enc = Encoder::new().unwrap();
        let au = enc
            .encode(&YUVBuffer::from_vec(yuv, w, hgt))
            .unwrap()
            .to_vec();
        assert!(framewire_wire::annexb::starts_with_parameter_sets(&au));
        let job = Job {
            meta: FrameMeta {
                camera: "cam".into(),
                session: "s".into(),
                seq: 0,
                pts_90k: 0,
                capture_ms: 42,
                keyframe: true,
                codec: "h264".into(),
                dimensions: Some((128, 72)),
            },
            data: au,
        };
        let t = thumbnail(&job, 64).unwrap();
        assert_eq!((t.width, t.height, t.capture_ms), (128, 72, 42));
        let mut d = jpeg_decoder::Decoder::new(t.jpeg.as_slice());
        let px = d.decode().unwrap();
        let info = d.info().unwrap();
        assert_eq!((info.width, info.height), (64, 36));
        let mean = px.iter().map(|&v| f64::from(v)).sum::<f64>() / px.len() as f64;
        // Luma 200 limited range ≈ 214 full range.
        assert!((mean - 214.0).abs() < 6.0, "{mean}");

        let garbage = Job {
            data: vec![0, 0, 0, 1, 0x65, 1, 2, 3],
            ..job
        };
        assert!(thumbnail(&garbage, 64).is_err());
    }
}
