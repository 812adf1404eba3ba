//! Video decoders behind one trait: access units in, YUV 4:2:0 pictures out.
//!
//! The worker measures pictures and does not care who decoded them; what differs between
//! decoders is which codecs they take, what they need installed and how fast they are.
//! Keeping them behind [`Decoder`] lets a deployment choose per worker:
//!
//! - [`Backend::OpenH264`]: Cisco's openh264, built from source into the binary (nothing to
//!   install), H.264 only. Always built.
//! - [`Backend::Ffmpeg`]: libavcodec from the system (Debian 12: FFmpeg 5.1) through
//!   `ffmpeg-next`, H.264 and H.265, about twice openh264's speed on the same H.264 clips,
//!   optional frame threads for large pictures, optional hardware decoding ([`HwAccel`]).
//!   Built only with the cargo feature `ffmpeg`.
//!
//! Both take Annex B access units as Framewire's frames topic carries them (parameter sets
//! inline on every keyframe), hand pictures out in display order, and may hold a picture
//! back until a later access unit shows it is next ([`Decoder::flush`] gets the held ones
//! out). Pictures are lent to a callback: they live in the decoder's buffers.
//!
//! ```
//! use framewire_decode::{Backend, Codec, Options};
//! let mut decoder = framewire_decode::open(Backend::OpenH264, Codec::H264, &Options::default())?;
//! let mut pictures = 0;
//! decoder.flush(&mut |_picture| pictures += 1)?;
//! assert_eq!(pictures, 0);
//! # Ok::<(), framewire_decode::DecodeError>(())
//! ```

#[cfg(feature = "ffmpeg")]
mod ffmpeg;
#[cfg(feature = "ffmpeg")]
mod hwaccel;
mod openh264;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A compression standard, as named by the `fw-codec` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264 / AVC (`h264`).
    H264,
    /// H.265 / HEVC (`h265`).
    H265,
}

impl Codec {
    /// Every codec, in label order.
    pub const ALL: [Codec; 2] = [Codec::H264, Codec::H265];

    /// The `fw-codec` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
        }
    }

    /// The codec an `fw-codec` value names (ASCII case ignored); `None`: unknown.
    pub fn from_header(value: &str) -> Option<Codec> {
        Codec::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(value))
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoder implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// openh264, built in (`openh264`).
    OpenH264,
    /// libavcodec, cargo feature `ffmpeg` (`ffmpeg`).
    Ffmpeg,
}

impl Backend {
    /// Every backend, in label order.
    pub const ALL: [Backend; 2] = [Backend::OpenH264, Backend::Ffmpeg];

    /// The setting and label spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::OpenH264 => "openh264",
            Backend::Ffmpeg => "ffmpeg",
        }
    }

    /// Whether this binary contains the backend.
    pub fn is_built(self) -> bool {
        match self {
            Backend::OpenH264 => true,
            Backend::Ffmpeg => cfg!(feature = "ffmpeg"),
        }
    }

    /// Whether the backend decodes `codec`.
    pub fn decodes(self, codec: Codec) -> bool {
        match self {
            Backend::OpenH264 => codec == Codec::H264,
            Backend::Ffmpeg => true,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which backend a worker uses: the `worker.decoder` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    /// `ffmpeg` when built in, else `openh264`.
    #[default]
    Auto,
    /// Always openh264.
    #[serde(rename = "openh264")]
    OpenH264,
    /// Always libavcodec (refused when not built in).
    Ffmpeg,
}

impl Choice {
    /// The backend this choice means in this binary; an error names what is missing.
    pub fn resolve(self) -> Result<Backend, DecodeError> {
        match self {
            Choice::Auto if Backend::Ffmpeg.is_built() => Ok(Backend::Ffmpeg),
            Choice::Auto | Choice::OpenH264 => Ok(Backend::OpenH264),
            Choice::Ffmpeg if Backend::Ffmpeg.is_built() => Ok(Backend::Ffmpeg),
            Choice::Ffmpeg => Err(DecodeError::NotBuilt(Backend::Ffmpeg)),
        }
    }
}

impl FromStr for Choice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Choice::Auto),
            "openh264" => Ok(Choice::OpenH264),
            "ffmpeg" => Ok(Choice::Ffmpeg),
            other => Err(format!(
                "unknown decoder {other:?} (auto, openh264 or ffmpeg)"
            )),
        }
    }
}

/// Hardware decoding through libavcodec (the `worker.hwaccel` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HwAccel {
    /// Software decoding.
    #[default]
    None,
    /// VA-API (Intel and AMD GPUs; a DRM render node such as `/dev/dri/renderD128`).
    Vaapi,
    /// CUDA / NVDEC (NVIDIA GPUs; the device is a GPU index such as `0`).
    Cuda,
}

impl HwAccel {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HwAccel::None => "none",
            HwAccel::Vaapi => "vaapi",
            HwAccel::Cuda => "cuda",
        }
    }
}

impl fmt::Display for HwAccel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a hardware decoding device of `kind` can be opened here (`device`: a VAAPI
/// render node or a CUDA GPU index; `None`: the library's default). Cheap to ask once at
/// start; the error says why not (no device, no driver, not built with ffmpeg).
pub fn probe_hardware(kind: HwAccel, device: Option<&str>) -> Result<(), DecodeError> {
    #[cfg(feature = "ffmpeg")]
    {
        hwaccel::probe(kind, device).map_err(|message| DecodeError::Open {
            backend: Backend::Ffmpeg,
            message: format!("{kind} device {}: {message}", device.unwrap_or("(default)")),
        })
    }
    #[cfg(not(feature = "ffmpeg"))]
    {
        let _ = (kind, device);
        Err(DecodeError::NotBuilt(Backend::Ffmpeg))
    }
}

/// How to open a decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The stream cannot reorder pictures (its parameter sets say so): hand each picture out
    /// from the `decode` call of its own access unit instead of holding it back.
    pub low_delay: bool,
    /// Frame threads (ffmpeg only; 1 = decode on the caller's thread). More threads hold
    /// more pictures back (threads − 1 access units) and are for pictures above 1080p.
    pub threads: usize,
    /// Hardware decoding (ffmpeg only). A device that cannot be opened means software
    /// decoding (ask [`probe_hardware`] first to know).
    pub hwaccel: HwAccel,
    /// The hardware device; `None`: the library's default.
    pub hwaccel_device: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            low_delay: false,
            threads: 1,
            hwaccel: HwAccel::None,
            hwaccel_device: None,
        }
    }
}

impl Options {
    /// Frame threads for a picture of `width` × `height` when the setting is `auto`: one per
    /// 1920x1080 of pixels (1 up to 1080p, 4 at 2160p), at most `cpus`.
    pub fn auto_threads(width: u32, height: u32, cpus: usize) -> usize {
        const FULL_HD: u64 = 1920 * 1080;
        let pixels = u64::from(width) * u64::from(height);
        let threads = pixels.div_ceil(FULL_HD).max(1);
        (threads as usize).min(cpus.max(1))
    }
}

/// A decoded picture in YUV 4:2:0, 8 bits per sample, borrowed from its decoder.
#[derive(Debug, Clone, Copy)]
pub struct Picture<'a> {
    /// Luma rows, `y_stride` bytes apart.
    pub y: &'a [u8],
    /// Cb rows, `u_stride` bytes apart.
    pub u: &'a [u8],
    /// Cr rows, `v_stride` bytes apart.
    pub v: &'a [u8],
    /// Bytes from one luma row to the next.
    pub y_stride: usize,
    /// Bytes from one Cb row to the next.
    pub u_stride: usize,
    /// Bytes from one Cr row to the next.
    pub v_stride: usize,
    /// Luma width in pixels (after cropping).
    pub width: usize,
    /// Luma height in pixels (after cropping).
    pub height: usize,
}

impl Picture<'_> {
    /// Chroma plane width and height: half the luma's, rounded up.
    pub fn chroma_dimensions(&self) -> (usize, usize) {
        (self.width.div_ceil(2), self.height.div_ceil(2))
    }
}

/// What a decoder hands each picture to.
pub type PictureSink<'s> = dyn FnMut(&Picture<'_>) + 's;

/// A decoder of one stream (one camera's session).
pub trait Decoder: Send {
    /// Decodes one access unit; hands out the pictures that are ready (none, one or, when
    /// a held picture is now known to be next, more), in display order.
    fn decode(&mut self, access_unit: &[u8], out: &mut PictureSink<'_>) -> Result<(), DecodeError>;

    /// Hands out every picture still held back.
    fn flush(&mut self, out: &mut PictureSink<'_>) -> Result<(), DecodeError>;

    /// Whether decoding can go on after [`Decoder::flush`] with the next access unit of the
    /// stream (openh264), or must start again at a keyframe (libavcodec drops its reference
    /// pictures when drained).
    fn continues_after_flush(&self) -> bool;

    /// Which backend this is.
    fn backend(&self) -> Backend;
}

/// Opens a decoder of `codec` on `backend`.
pub fn open(
    backend: Backend,
    codec: Codec,
    options: &Options,
) -> Result<Box<dyn Decoder>, DecodeError> {
    if !backend.is_built() {
        return Err(DecodeError::NotBuilt(backend));
    }
    if !backend.decodes(codec) {
        return Err(DecodeError::Unsupported { backend, codec });
    }
    match backend {
        Backend::OpenH264 => Ok(Box::new(openh264::OpenH264::new(options)?)),
        #[cfg(feature = "ffmpeg")]
        Backend::Ffmpeg => Ok(Box::new(ffmpeg::Ffmpeg::new(codec, options)?)),
        #[cfg(not(feature = "ffmpeg"))]
        Backend::Ffmpeg => Err(DecodeError::NotBuilt(backend)),
    }
}

/// What went wrong opening a decoder or decoding.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// The binary was built without the backend.
    #[error("the {0} decoder is not built into this binary (cargo feature {0})")]
    NotBuilt(Backend),
    /// The backend does not decode the codec.
    #[error("the {backend} decoder does not decode {codec}")]
    Unsupported {
        /// The backend asked for.
        backend: Backend,
        /// The codec asked for.
        codec: Codec,
    },
    /// The decoder could not be created.
    #[error("cannot open the {backend} decoder: {message}")]
    Open {
        /// The backend.
        backend: Backend,
        /// The library's message.
        message: String,
    },
    /// The access unit did not decode.
    #[error("{backend}: {message}")]
    Decode {
        /// The backend.
        backend: Backend,
        /// The library's message.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_names_round_trip_and_ignore_case() {
        for c in Codec::ALL {
            assert_eq!(Codec::from_header(c.as_str()), Some(c));
        }
        assert_eq!(Codec::from_header("H265"), Some(Codec::H265));
        assert_eq!(Codec::from_header("mjpeg"), None);
        assert_eq!(Codec::from_header(""), None);
    }

    #[test]
    fn openh264_decodes_only_h264() {
        assert!(Backend::OpenH264.decodes(Codec::H264));
        assert!(!Backend::OpenH264.decodes(Codec::H265));
        assert!(matches!(
            open(Backend::OpenH264, Codec::H265, &Options::default()),
            Err(DecodeError::Unsupported {
                backend: Backend::OpenH264,
                codec: Codec::H265
            })
        ));
    }

    #[test]
    fn auto_picks_ffmpeg_only_when_built() {
        let expected = if cfg!(feature = "ffmpeg") {
            Backend::Ffmpeg
        } else {
            Backend::OpenH264
        };
        assert_eq!(Choice::Auto.resolve().ok(), Some(expected));
        assert_eq!(Choice::OpenH264.resolve().ok(), Some(Backend::OpenH264));
        assert_eq!(
            Choice::Ffmpeg.resolve().is_ok(),
            cfg!(feature = "ffmpeg"),
            "ffmpeg is refused exactly when not built"
        );
        assert_eq!("openh264".parse(), Ok(Choice::OpenH264));
        assert!("libav".parse::<Choice>().unwrap_err().contains("auto"));
    }

    #[test]
    fn hardware_that_is_not_there_is_reported() {
        let missing = probe_hardware(HwAccel::Vaapi, Some("/nonexistent/renderD999"));
        let message = missing.expect_err("no such device").to_string();
        let expected = if cfg!(feature = "ffmpeg") {
            "vaapi device /nonexistent/renderD999"
        } else {
            "not built"
        };
        assert!(message.contains(expected), "{message}");
    }

    #[test]
    fn auto_threads_grow_with_the_picture_above_1080p() {
        assert_eq!(Options::auto_threads(1280, 720, 8), 1);
        assert_eq!(Options::auto_threads(1920, 1080, 8), 1);
        assert_eq!(Options::auto_threads(2560, 1440, 8), 2);
        assert_eq!(Options::auto_threads(3840, 2160, 8), 4);
        assert_eq!(Options::auto_threads(3840, 2160, 2), 2, "at most the CPUs");
        assert_eq!(Options::auto_threads(0, 0, 0), 1);
    }
}
