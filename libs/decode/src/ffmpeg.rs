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
//! (H.265 Main 10) rounded to 8 bits, and the semi-planar formats hardware decoders download
//! (NV12, P010) split into planes, into buffers of the decoder's own; any other format is a
//! decode error. With [`Options::hwaccel`] the decoder gets a device (see
//! [`crate::hwaccel`]); one that cannot be opened leaves it decoding in software.

use std::sync::Once;

use ffmpeg_next as av;

use av::codec::decoder::Check;
use av::codec::threading;
use av::format::Pixel;

use crate::hwaccel;
use crate::{Backend, Codec, DecodeError, Decoder, HwAccel, Options, Picture, PictureSink};

/// Initialises libavcodec once per process and silences its log.
pub(crate) fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = av::init();
        av::util::log::set_level(av::util::log::Level::Quiet);
    });
}

/// A libavcodec decoder.
pub struct Ffmpeg {
    decoder: av::decoder::Video,
    frame: av::frame::Video,
    /// The last picture downloaded from a hardware device.
    downloaded: av::frame::Video,
    /// Planes of the last picture that had to be converted (10-bit, semi-planar).
    converted: [Vec<u8>; 3],
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
        init();
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
        if options.hwaccel != HwAccel::None {
            // A device that cannot be opened leaves this decoder in software, like one
            // whose stream the device does not support; the worker probes once and says so.
            let _ = hwaccel::attach(
                &mut context,
                options.hwaccel,
                options.hwaccel_device.as_deref(),
            );
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
            downloaded: av::frame::Video::empty(),
            converted: Default::default(),
        })
    }

    /// Hands out every frame the decoder has ready.
    fn receive(&mut self, out: &mut PictureSink<'_>) -> Result<(), DecodeError> {
        loop {
            match self.decoder.receive_frame(&mut self.frame) {
                Ok(()) => {
                    let frame = if hwaccel::download(&self.frame, &mut self.downloaded)
                        .map_err(|e| error(format!("download from the device: {e}")))?
                    {
                        &self.downloaded
                    } else {
                        &self.frame
                    };
                    out(&view(frame, &mut self.converted)?);
                }
                Err(av::Error::Eof) => return Ok(()),
                Err(av::Error::Other { errno }) if errno == av::error::EAGAIN => return Ok(()),
                Err(e) => return Err(error(e)),
            }
        }
    }
}

/// The frame as an 8-bit 4:2:0 picture; formats other than 8-bit planar 4:2:0 are
/// converted into `converted`.
fn view<'a>(
    frame: &'a av::frame::Video,
    converted: &'a mut [Vec<u8>; 3],
) -> Result<Picture<'a>, DecodeError> {
    let format = frame.format();
    let (width, height) = (frame.width() as usize, frame.height() as usize);
    let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
    let planes = match format {
        Pixel::YUV420P | Pixel::YUVJ420P | Pixel::YUV420P10LE => 3,
        Pixel::NV12 | Pixel::P010LE => 2,
        other => return Err(error(format!("pixel format {other:?} is not 4:2:0"))),
    };
    if frame.planes() < planes {
        return Err(error(format!("a {format:?} picture without its planes")));
    }
    let [y, u, v] = converted;
    let (y, u, v, y_stride) = match format {
        Pixel::YUV420P | Pixel::YUVJ420P => {
            return Ok(Picture {
                y: frame.data(0),
                u: frame.data(1),
                v: frame.data(2),
                y_stride: frame.stride(0),
                u_stride: frame.stride(1),
                v_stride: frame.stride(2),
                width,
                height,
            });
        }
        Pixel::YUV420P10LE => {
            narrow(frame.data(0), frame.stride(0), width, height, 0, y);
            narrow(frame.data(1), frame.stride(1), cw, ch, 0, u);
            narrow(frame.data(2), frame.stride(2), cw, ch, 0, v);
            (&y[..], &u[..], &v[..], width)
        }
        Pixel::NV12 => {
            split(frame.data(1), frame.stride(1), cw, ch, 1, |s| s[0], u, v);
            (frame.data(0), &u[..], &v[..], frame.stride(0))
        }
        _ => {
            // P010: 10 bits in the high bits of 16-bit samples, Cb and Cr interleaved.
            narrow(frame.data(0), frame.stride(0), width, height, 6, y);
            split(frame.data(1), frame.stride(1), cw, ch, 2, p010_to_8, u, v);
            (&y[..], &u[..], &v[..], width)
        }
    };
    Ok(Picture {
        y,
        u,
        v,
        y_stride,
        u_stride: cw,
        v_stride: cw,
        width,
        height,
    })
}

/// A 10-bit sample rounded to 8 bits.
fn ten_to_8(sample: u16) -> u8 {
    (sample.saturating_add(2) >> 2).min(255) as u8
}

/// Rounds a plane of 16-bit little-endian samples holding 10 bits above `shift` low bits
/// to 8 bits, `width` samples per row.
fn narrow(data: &[u8], stride: usize, width: usize, height: usize, shift: u32, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(width * height);
    for row in data.chunks(stride).take(height) {
        out.extend(
            row.chunks_exact(2)
                .take(width)
                .map(|s| ten_to_8(u16::from_le_bytes([s[0], s[1]]) >> shift)),
        );
    }
}

/// Splits a plane of interleaved Cb, Cr samples (`width` pairs per row, each sample
/// `sample_bytes` long and read by `read`) into two planes.
#[allow(clippy::too_many_arguments)]
fn split(
    data: &[u8],
    stride: usize,
    width: usize,
    height: usize,
    sample_bytes: usize,
    read: impl Fn(&[u8]) -> u8,
    u: &mut Vec<u8>,
    v: &mut Vec<u8>,
) {
    u.clear();
    v.clear();
    for row in data.chunks(stride).take(height) {
        for pair in row.chunks_exact(2 * sample_bytes).take(width) {
            let (cb, cr) = pair.split_at(sample_bytes);
            u.push(read(cb));
            v.push(read(cr));
        }
    }
}

/// A P010 sample (10 bits in the high bits of 16) rounded to 8 bits.
fn p010_to_8(sample: &[u8]) -> u8 {
    ten_to_8(u16::from_le_bytes([sample[0], sample[1]]) >> 6)
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
        narrow(&bytes, 8, 3, 2, 0, &mut out);
        assert_eq!(out, [0, 0, 1, 255, 127, 128]);
        assert_eq!(p010_to_8(&(510u16 << 6).to_le_bytes()), 128);
    }

    /// A `format` frame of 6x4 whose luma is 40 + x, Cb 100 + x and Cr 200 - x (in 8-bit
    /// terms; 10-bit formats hold 4 times that, P010 in its high bits).
    fn frame(format: Pixel) -> av::frame::Video {
        let mut f = av::frame::Video::new(format, 6, 4);
        let (bytes, shift): (usize, u32) = match format {
            Pixel::YUV420P10LE => (2, 2),
            Pixel::P010LE => (2, 8),
            _ => (1, 0),
        };
        let put = |row: &mut [u8], i: usize, value: u16| {
            let v = value << shift;
            row[i * bytes..(i + 1) * bytes].copy_from_slice(&v.to_le_bytes()[..bytes]);
        };
        let stride = f.stride(0);
        for row in f.data_mut(0).chunks_mut(stride).take(4) {
            for x in 0..6 {
                put(row, x, 40 + x as u16);
            }
        }
        if f.planes() == 2 {
            let stride = f.stride(1);
            for row in f.data_mut(1).chunks_mut(stride).take(2) {
                for x in 0..3 {
                    put(row, 2 * x, 100 + x as u16);
                    put(row, 2 * x + 1, 200 - x as u16);
                }
            }
        } else {
            for (plane, base, step) in [(1, 100i32, 1i32), (2, 200, -1)] {
                let stride = f.stride(plane);
                for row in f.data_mut(plane).chunks_mut(stride).take(2) {
                    for x in 0..3 {
                        put(row, x, (base + step * x as i32) as u16);
                    }
                }
            }
        }
        f
    }

    #[test]
    fn every_supported_format_becomes_the_same_8_bit_picture() {
        for format in [
            Pixel::YUV420P,
            Pixel::YUV420P10LE,
            Pixel::NV12,
            Pixel::P010LE,
        ] {
            let f = frame(format);
            let mut converted = Default::default();
            let p = view(&f, &mut converted).expect("a 4:2:0 format");
            assert_eq!((p.width, p.height), (6, 4), "{format:?}");
            for y in 0..4 {
                let row = &p.y[y * p.y_stride..][..6];
                assert_eq!(row, [40, 41, 42, 43, 44, 45], "{format:?} luma row {y}");
            }
            for y in 0..2 {
                assert_eq!(&p.u[y * p.u_stride..][..3], [100, 101, 102], "{format:?}");
                assert_eq!(&p.v[y * p.v_stride..][..3], [200, 199, 198], "{format:?}");
            }
        }
        let rgb = av::frame::Video::new(Pixel::RGB24, 6, 4);
        let refused = view(&rgb, &mut Default::default()).map(|_| ());
        assert!(refused.is_err(), "RGB is not 4:2:0");
    }

    #[test]
    fn a_hardware_device_that_cannot_be_opened_leaves_the_decoder_in_software() {
        use openh264::encoder::Encoder;
        use openh264::formats::YUVBuffer;
        let mut encoder = Encoder::new().expect("encoder");
        let options = Options {
            hwaccel: HwAccel::Vaapi,
            hwaccel_device: Some("/nonexistent/renderD999".into()),
            ..Options::default()
        };
        let mut d = Ffmpeg::new(Codec::H264, &options).expect("a decoder, in software");
        let mut lumas = Vec::new();
        for luma in [60u8, 90, 120] {
            let mut yuv = vec![luma; 64 * 48];
            yuv.extend(std::iter::repeat_n(128u8, 64 * 48 / 2));
            let au = encoder
                .encode(&YUVBuffer::from_vec(yuv, 64, 48))
                .expect("encode")
                .to_vec();
            d.decode(&au, &mut |p| lumas.push(p.y[0])).expect("decode");
        }
        d.flush(&mut |p| lumas.push(p.y[0])).expect("flush");
        assert_eq!(lumas.len(), 3);
        for (got, want) in lumas.iter().zip([60u8, 90, 120]) {
            assert!(got.abs_diff(want) <= 2, "{lumas:?}");
        }
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
