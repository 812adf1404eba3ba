//! The openh264 backend (H.264 only, built from source into the binary).
//!
//! `Decoder::new()` flushes after every call, which fails on streams with B-frames; this
//! decoder flushes after every call only when the stream cannot reorder
//! ([`Options::low_delay`]) and otherwise holds each picture until the next access unit.

use openh264::OpenH264API;
use openh264::decoder::{DecodedYUV, DecoderConfig, Flush};
use openh264::formats::YUVSource;

use crate::{Backend, DecodeError, Decoder, Options, Picture, PictureSink};

/// An openh264 decoder.
pub struct OpenH264 {
    decoder: openh264::decoder::Decoder,
}

impl OpenH264 {
    /// A decoder for one stream.
    pub fn new(options: &Options) -> Result<Self, DecodeError> {
        let flush = if options.low_delay {
            Flush::Flush
        } else {
            Flush::NoFlush
        };
        let decoder = openh264::decoder::Decoder::with_api_config(
            OpenH264API::from_source(),
            DecoderConfig::new().flush_after_decode(flush),
        )
        .map_err(|e| DecodeError::Open {
            backend: Backend::OpenH264,
            message: e.to_string(),
        })?;
        Ok(OpenH264 { decoder })
    }
}

fn picture<'a>(yuv: &'a DecodedYUV<'_>) -> Picture<'a> {
    let (width, height) = yuv.dimensions();
    let (y_stride, u_stride, v_stride) = yuv.strides();
    Picture {
        y: yuv.y(),
        u: yuv.u(),
        v: yuv.v(),
        y_stride,
        u_stride,
        v_stride,
        width,
        height,
    }
}

fn decode_error(e: openh264::Error) -> DecodeError {
    DecodeError::Decode {
        backend: Backend::OpenH264,
        message: e.to_string(),
    }
}

impl Decoder for OpenH264 {
    fn decode(&mut self, access_unit: &[u8], out: &mut PictureSink<'_>) -> Result<(), DecodeError> {
        if let Some(yuv) = self.decoder.decode(access_unit).map_err(decode_error)? {
            out(&picture(&yuv));
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut PictureSink<'_>) -> Result<(), DecodeError> {
        for yuv in self.decoder.flush_remaining().map_err(decode_error)? {
            out(&picture(&yuv));
        }
        Ok(())
    }

    fn continues_after_flush(&self) -> bool {
        true
    }

    fn backend(&self) -> Backend {
        Backend::OpenH264
    }
}
