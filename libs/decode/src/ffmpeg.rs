//! The libavcodec backend (H.264 and H.265), through `ffmpeg-next`.
//!
//! One `AVCodecContext` per stream, fed with the send/receive API: every access unit is one
//! packet, and every frame ready after it is handed out. Error recognition is set to
//! `explode`, so a damaged access unit is an error (the worker's poison path) instead of a
//! concealed picture that would be measured as if it were the camera's. Draining (EOF, then
//! `avcodec_flush_buffers`) drops the reference pictures: after [`Decoder::flush`] the
//! stream starts again at a keyframe. libavcodec's own log is silenced: its messages would
//! bypass the service's structured logs, and every failure comes back as an error here.
//!
//! Pictures come out as decoded: 8-bit 4:2:0 (`yuv420p`, `yuvj420p`) as is; 10-bit 4:2:0
//! (H.265 Main 10) rounded to 8 bits into buffers of the decoder's own; any other format is
//! a decode error.

use std::sync::Once;

use ffmpeg_next as av;

use av::codec::decoder::Check;
use av::codec::threading;
use av::format::Pixel;

use crate::{Backend, Codec, DecodeError, Decoder, Options, Picture, PictureSink};

/// A libavcodec decoder.
pub struct Ffmpeg {
    decoder: av::decoder::Video,
    frame: av::frame::Video,
    /// 8-bit planes of the last 10-bit picture.
    narrowed: [Vec<u8>; 3],
}

fn error(message: impl ToString) -> DecodeError {
    DecodeError::Decode {
        backend: Backend::Ffmpeg,
        message: message.to_string(),
    }
}

fn open_error(message: impl ToString) -> DecodeError {
    DecodeError::Open {
        backend: Backend::Ffmpeg,
        message: message.to_string(),
    }
}

impl Ffmpeg {
    /// A decoder of `codec` for one stream.
    pub fn new(codec: Codec, options: &Options) -> Result<Self, DecodeError> {
        static INIT: Once = Once::new();
        INIT.call_once(|| {
            let _ = av::init();
            av::util::log::set_level(av::util::log::Level::Quiet);
        });
        let id = match codec {
            Codec::H264 => av::codec::Id::H264,
            Codec::H265 => av::codec::Id::HEVC,
        };
        let found = av::decoder::find(id)
            .ok_or_else(|| open_error(format!("libavcodec has no {codec} decoder")))?;
        let mut context = av::codec::Context::new_with_codec(found);
        let threads = options.threads.max(1);
        context.set_threading(threading::Config {
            kind: if threads > 1 {
                threading::Type::Frame
            } else {
                threading::Type::None
            },
            count: threads,
            ..Default::default()
        });
        if options.low_delay {
            context.set_flags(av::codec::Flags::LOW_DELAY);
        }
        let mut decoder = context.decoder();
        decoder.check(Check::EXPLODE);
        let decoder = decoder
            .open_as(found)
            .and_then(|opened| opened.video())
            .map_err(open_error)?;
        Ok(Ffmpeg {
            decoder,
            frame: av::frame::Video::empty(),
            narrowed: Default::default(),
        })
    }

    /// Hands out every frame the decoder has ready.
    fn receive(&mut self, out: &mut PictureSink<'_>) -> Result<(), DecodeError> {
        loop {
            match self.decoder.receive_frame(&mut self.frame) {
                Ok(()) => {
                    let picture = view(&self.frame, &mut self.narrowed)?;
                    out(&picture);
                }
                Err(av::Error::Eof) => return Ok(()),
                Err(av::Error::Other { errno }) if errno == av::error::EAGAIN => return Ok(()),
                Err(e) => return Err(error(e)),
            }
        }
    }
}

/// The frame as an 8-bit 4:2:0 picture (10-bit samples rounded into `narrowed`).
fn view<'a>(
    frame: &'a av::frame::Video,
    narrowed: &'a mut [Vec<u8>; 3],
) -> Result<Picture<'a>, DecodeError> {
    let format = frame.format();
    let (width, height) = (frame.width() as usize, frame.height() as usize);
    if frame.planes() < 3 {
        return Err(error(format!(
            "pixel format {format:?} is not planar 4:2:0"
        )));
    }
    match format {
        Pixel::YUV420P | Pixel::YUVJ420P => Ok(Picture {
            y: frame.data(0),
            u: frame.data(1),
            v: frame.data(2),
            y_stride: frame.stride(0),
            u_stride: frame.stride(1),
            v_stride: frame.stride(2),
            width,
            height,
        }),
        Pixel::YUV420P10LE => {
            let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
            let sizes = [(width, height), (cw, ch), (cw, ch)];
            for (plane, (&(w, h), buffer)) in sizes.iter().zip(narrowed.iter_mut()).enumerate() {
                narrow_10_bit(frame.data(plane), frame.stride(plane), w, h, buffer);
            }
            let [y, u, v] = narrowed;
            Ok(Picture {
                y,
                u,
                v,
                y_stride: width,
                u_stride: cw,
                v_stride: cw,
                width,
                height,
            })
        }
        other => Err(error(format!("pixel format {other:?} is not 4:2:0"))),
    }
}

/// Rounds a plane of 10-bit little-endian samples to 8 bits, `width` samples per row.
fn narrow_10_bit(data: &[u8], stride: usize, width: usize, height: usize, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(width * height);
    for row in data.chunks(stride).take(height) {
        out.extend(row.chunks_exact(2).take(width).map(|s| {
            let sample = u16::from_le_bytes([s[0], s[1]]);
            (sample.saturating_add(2) >> 2).min(255) as u8
        }));
    }
}

impl Decoder for Ffmpeg {
    fn decode(&mut self, access_unit: &[u8], out: &mut PictureSink<'_>) -> Result<(), DecodeError> {
        let packet = av::Packet::copy(access_unit);
        self.decoder.send_packet(&packet).map_err(error)?;
        self.receive(out)
    }

    fn flush(&mut self, out: &mut PictureSink<'_>) -> Result<(), DecodeError> {
        let sent = self.decoder.send_eof().map_err(error);
        let received = sent.and_then(|()| self.receive(out));
        // Ready for a new stream whatever happened (EOF was sent, or the decoder is broken).
        self.decoder.flush();
        received
    }

    fn continues_after_flush(&self) -> bool {
        false
    }

    fn backend(&self) -> Backend {
        Backend::Ffmpeg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_bit_samples_round_to_eight_bits() {
        // Two rows of 3 samples at a stride of 8 bytes (1 sample of padding).
        let samples: [u16; 8] = [0, 1, 2, 1023, 0xffff, 509, 510, 4];
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut out = Vec::new();
        narrow_10_bit(&bytes, 8, 3, 2, &mut out);
        assert_eq!(out, [0, 0, 1, 255, 127, 128]);
    }

    #[test]
    fn garbage_is_an_error_not_a_picture() {
        for codec in Codec::ALL {
            let mut d = Ffmpeg::new(codec, &Options::default()).expect("decoder");
            let mut pictures = 0;
            // A slice NAL unit of random-looking bytes, without parameter sets.
            let header: &[u8] = match codec {
                Codec::H264 => &[0x41],
                Codec::H265 => &[0x02, 0x01],
            };
            let garbage = [
                &[0, 0, 0, 1],
                header,
                &[0xff, 0x00, 0x13, 0x37, 0x02, 0x42, 0x26],
            ]
            .concat();
            let decoded = d.decode(&garbage, &mut |_| pictures += 1);
            let flushed = d.flush(&mut |_| pictures += 1);
            assert_eq!(pictures, 0, "{codec}");
            assert!(decoded.is_err(), "{codec}: {decoded:?}");
            assert!(
                flushed.is_ok(),
                "{codec}: a broken stream still drains: {flushed:?}"
            );
        }
    }
}
