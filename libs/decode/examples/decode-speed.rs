//! Bare decode speed of one backend on one clip: every access unit decoded on this thread,
//! pictures counted and dropped (no statistics).
//!
//! ```sh
//! cargo run --release -p framewire-decode --features ffmpeg --example decode-speed -- \
//!     CLIP.h264|CLIP.h265 openh264|ffmpeg [ROUNDS]
//! ```
//! The clip is an Annex B stream with an access unit delimiter before every access unit
//! (`-x264-params aud=1`, `-x265-params aud=1`); its extension names the codec. Prints
//! pictures per second of the fastest round.

use std::time::Instant;

use framewire_decode::{Backend, Codec, Options};
use framewire_wire::annexb;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [clip, backend, rest @ ..] = args.as_slice() else {
        return Err("usage: decode-speed CLIP.h264|CLIP.h265 openh264|ffmpeg [ROUNDS]".into());
    };
    let codec = match clip.rsplit('.').next() {
        Some("h265") | Some("hevc") => Codec::H265,
        _ => Codec::H264,
    };
    let backend = match backend.as_str() {
        "openh264" => Backend::OpenH264,
        "ffmpeg" => Backend::Ffmpeg,
        other => return Err(format!("unknown backend {other}").into()),
    };
    let rounds: usize = rest.first().map_or(Ok(3), |r| r.parse())?;
    let stream = std::fs::read(clip)?;
    let aus = match codec {
        Codec::H264 => annexb::split_at_delimiters(&stream),
        Codec::H265 => annexb::h265::split_at_delimiters(&stream),
    };
    if aus.is_empty() {
        return Err("no access unit delimiters in the clip".into());
    }
    let mut best = f64::MAX;
    let mut pictures = 0;
    for _ in 0..rounds {
        let mut decoder = framewire_decode::open(backend, codec, &Options::default())?;
        pictures = 0;
        let started = Instant::now();
        for (_, au) in &aus {
            decoder.decode(au, &mut |_| pictures += 1)?;
        }
        decoder.flush(&mut |_| pictures += 1)?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "{backend} {codec}: {} access units, {pictures} pictures, {:.0} fps (best of {rounds})",
        aus.len(),
        pictures as f64 / best
    );
    Ok(())
}
