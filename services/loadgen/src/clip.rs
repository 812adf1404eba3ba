//! The clip every simulated camera replays: read once, cut into the access units ingest
//! would publish (`framewire_wire::stream`), with what the schedule needs from it — where
//! its keyframes are and how long its GOPs are.

use std::path::Path;

use framewire_wire::Codec;
use framewire_wire::stream::{AccessUnit, StreamError, publishable_access_units};
use thiserror::Error;

/// A clip as access units, from its first keyframe.
#[derive(Debug)]
pub struct Clip {
    /// The codec (`fw-codec`).
    pub codec: Codec,
    /// Access units in decode order; every keyframe carries its parameter sets.
    pub access_units: Vec<AccessUnit>,
    /// Indices of the keyframes in `access_units` (the first is 0).
    pub keyframes: Vec<usize>,
}

/// Why a clip cannot be replayed.
#[derive(Debug, Error)]
pub enum ClipError {
    /// The file cannot be read.
    #[error("cannot read the clip {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The codec is not given and the stream does not tell.
    #[error(
        "the clip {0} does not start with an H.264 or H.265 parameter set, delimiter or SEI: set loadgen.codec (--codec h264|h265)"
    )]
    UnknownCodec(String),
    /// The stream has no keyframe, or a keyframe without parameter sets.
    #[error("the clip {path}: {source}")]
    Stream {
        /// The file.
        path: String,
        /// What is wrong with it.
        source: StreamError,
    },
}

impl Clip {
    /// Reads an Annex B file; `codec` when given, else told from the stream.
    pub fn read(path: &Path, codec: Option<Codec>) -> Result<Clip, ClipError> {
        let shown = path.display().to_string();
        let stream = std::fs::read(path).map_err(|source| ClipError::Read {
            path: shown.clone(),
            source,
        })?;
        let codec = codec
            .or_else(|| Codec::sniff(&stream))
            .ok_or_else(|| ClipError::UnknownCodec(shown.clone()))?;
        Clip::from_stream(&stream, codec).map_err(|source| ClipError::Stream {
            path: shown,
            source,
        })
    }

    /// The clip of an elementary stream in memory.
    pub fn from_stream(stream: &[u8], codec: Codec) -> Result<Clip, StreamError> {
        let access_units = publishable_access_units(stream, codec)?;
        let keyframes = access_units
            .iter()
            .enumerate()
            .filter_map(|(i, au)| au.keyframe.then_some(i))
            .collect();
        Ok(Clip {
            codec,
            access_units,
            keyframes,
        })
    }

    /// Frames per GOP on average: what the schedule staggers the cameras over.
    pub fn mean_gop(&self) -> f64 {
        self.access_units.len() as f64 / self.keyframes.len().max(1) as f64
    }

    /// The access unit a camera sends as its record `n` when it started at keyframe
    /// number `start` of the clip: the clip plays from there and loops.
    pub fn access_unit(&self, start: usize, n: u64) -> &AccessUnit {
        let len = self.access_units.len() as u64;
        let first = self.keyframes[start % self.keyframes.len()] as u64;
        &self.access_units[((first + n) % len) as usize]
    }

    /// Bytes of the whole clip, once.
    pub fn bytes(&self) -> usize {
        self.access_units.iter().map(|a| a.data.len()).sum()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stream of `gops` GOPs of `gop` pictures: SPS, PPS and IDR, then P slices.
    pub(crate) fn h264_stream(gops: usize, gop: usize) -> Vec<u8> {
        const SPS: &[u8] = &[
            0x67, 0x64, 0x00, 0x1e, 0xac, 0xb4, 0x05, 0x01, 0x7f, 0x34, 0x46, 0x02, 0x20, 0x00,
            0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x06, 0x41, 0xe2, 0xc5, 0xd4,
        ];
        let mut out = Vec::new();
        for _ in 0..gops {
            for units in
                std::iter::once(vec![SPS, &[0x68, 0xee, 0x3c, 0x80], &[0x65, 0x88, 0x84]]).chain(
                    std::iter::repeat_n(vec![&[0x41u8, 0x9a, 0x02][..]], gop - 1),
                )
            {
                for u in units {
                    out.extend_from_slice(&[0, 0, 0, 1]);
                    out.extend_from_slice(u);
                }
            }
        }
        out
    }

    #[test]
    fn cameras_start_at_keyframes_and_loop() {
        let clip = Clip::from_stream(&h264_stream(3, 5), Codec::H264).expect("clip");
        assert_eq!(clip.access_units.len(), 15);
        assert_eq!(clip.keyframes, [0, 5, 10]);
        assert_eq!(clip.mean_gop(), 5.0);
        // Started at the second keyframe: records 0-9 are units 5-14, then the loop.
        assert!(clip.access_unit(1, 0).keyframe);
        assert!(!clip.access_unit(1, 1).keyframe);
        assert!(clip.access_unit(1, 10).keyframe, "unit 0 again");
        assert_eq!(clip.access_unit(1, 10), &clip.access_units[0]);
        assert_eq!(clip.access_unit(4, 0), &clip.access_units[5], "start wraps");
        assert_eq!(clip.access_units[0].dimensions, Some((630, 354)));
    }

    #[test]
    fn unreadable_and_unknown_clips_say_what_to_do() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing.h264");
        let err = Clip::read(&missing, None).expect_err("missing");
        assert!(err.to_string().starts_with("cannot read the clip"), "{err}");
        let junk = dir.path().join("junk.h264");
        std::fs::write(&junk, b"\0\0\x01\x41\x9a\x02").expect("write");
        let err = Clip::read(&junk, None).expect_err("a P slice tells nothing");
        assert!(
            err.to_string()
                .ends_with("set loadgen.codec (--codec h264|h265)"),
            "{err}"
        );
        let err = Clip::read(&junk, Some(Codec::H264)).expect_err("no keyframe");
        assert!(
            err.to_string().ends_with("no h264 keyframe in the stream"),
            "{err}"
        );
        let good = dir.path().join("good.bin");
        std::fs::write(&good, h264_stream(2, 3)).expect("write");
        let clip = Clip::read(&good, None).expect("sniffed as H.264");
        assert_eq!(clip.codec, Codec::H264);
    }
}
