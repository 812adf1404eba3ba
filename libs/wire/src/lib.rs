//! The Kafka contract of Framewire, in one place.
//!
//! Every service speaks to the others only through Kafka records. This crate holds
//! everything that has to agree between them: the default topic names, the `fw-*`
//! header names and how frame metadata maps onto them, the JSON records
//! ([`StatsRecord`], [`DetectionsRecord`], [`CameraSpec`]) and the Annex B helpers that check an access unit
//! is self-contained, and [`stream`], which turns a clip file into the access units ingest
//! would publish from it. It has no I/O and no Kafka client dependency, so tools and tests
//! can use it freely.

pub mod annexb;
mod bits;
mod headers;
mod rate;
mod records;
mod sps;
pub mod stream;
pub mod topics;

pub use headers::{CODEC_H264, CODEC_H265, FrameMeta, HeaderError, header};
pub use rate::{AnalysisRate, RateClock, RateError};
pub use records::{
    BoundingBox, CameraSpec, CredentialsRef, DetectedObject, DetectionsRecord, MAX_CAMERA_ID_LEN,
    Sampling, StatsRecord, Transport, validate_camera_id,
};
pub use stream::Codec;
