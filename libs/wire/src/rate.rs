//! How often an analyzer looks at a camera's pictures.
//!
//! Object detection costs tens of milliseconds per picture where statistics cost a few
//! hundred microseconds, so it runs at a rate chosen per camera: in the worker's config, or
//! in the camera's spec (ingest config and control topic), which ingest stamps on every
//! frame as the `fw-detect` header. The text form is the one operators write:
//!
//! | text | pictures analysed |
//! |---|---|
//! | `off` | none |
//! | `every` | every decoded picture |
//! | `every:N` | pictures whose frame number (`fw-seq`) is a multiple of N |
//! | `keyframes` | IDR pictures only |
//! | `fps:X` | at most X per second of media time (X from 0.001 to 1000, e.g. `fps:0.5`) |
//!
//! Every choice depends only on the frame's own headers (`every:N`, `keyframes`) or on the
//! previous decoded picture of the same camera (`fps:X`), so a worker that takes a
//! partition over and replays from a keyframe picks the same pictures again.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which pictures of a camera an analyzer looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AnalysisRate {
    /// None.
    #[default]
    Off,
    /// Every decoded picture.
    Every,
    /// Pictures whose frame number is a multiple of N (N ≥ 2).
    EveryNth(u32),
    /// IDR pictures only.
    Keyframes,
    /// At most this many thousandths of a picture per second of media time.
    PerSecondMilli(u32),
}

/// Longest accepted `fps:` rate, in thousandths per second (1000 fps).
const MAX_FPS_MILLI: u32 = 1_000_000;
/// Longest accepted `every:N`.
const MAX_EVERY: u32 = 1_000_000;

/// A rate that does not parse; the message names the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "analysis rate {0:?} is not one of off, every, every:N (N 1-1000000), keyframes, fps:X (X 0.001-1000)"
)]
pub struct RateError(pub String);

impl AnalysisRate {
    /// Whether a picture with frame number `seq` is picked, for the rates that need no
    /// history (`None` for `fps:X`, which [`RateClock`] decides).
    pub fn picks_by_frame(&self, seq: u64, keyframe: bool) -> Option<bool> {
        match *self {
            AnalysisRate::Off => Some(false),
            AnalysisRate::Every => Some(true),
            AnalysisRate::EveryNth(n) => Some(seq.is_multiple_of(u64::from(n.max(1)))),
            AnalysisRate::Keyframes => Some(keyframe),
            AnalysisRate::PerSecondMilli(_) => None,
        }
    }
}

/// Per-camera state of an `fps:X` rate: a picture is picked when it starts a new
/// 1/X-second slot of media time (90 kHz timestamps), so at most X pictures a second pass
/// whatever the camera's frame rate.
#[derive(Debug, Clone, Default)]
pub struct RateClock {
    last_slot: Option<i64>,
}

impl RateClock {
    /// Whether the picture at `pts_90k` is picked under `rate`, and remembers it.
    pub fn pick(&mut self, rate: AnalysisRate, seq: u64, keyframe: bool, pts_90k: i64) -> bool {
        if let Some(picked) = rate.picks_by_frame(seq, keyframe) {
            return picked;
        }
        let AnalysisRate::PerSecondMilli(milli) = rate else {
            return false;
        };
        // slot = floor(pts / (90000 / fps)) = floor(pts * milli / 90_000_000).
        let slot = (i128::from(pts_90k) * i128::from(milli)).div_euclid(90_000_000) as i64;
        let picked = self.last_slot != Some(slot);
        self.last_slot = Some(slot);
        picked
    }
}

impl FromStr for AnalysisRate {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Self, RateError> {
        let bad = || RateError(s.chars().take(40).collect());
        let t = s.trim();
        match t {
            "off" => return Ok(AnalysisRate::Off),
            "every" => return Ok(AnalysisRate::Every),
            "keyframes" => return Ok(AnalysisRate::Keyframes),
            _ => {}
        }
        if let Some(n) = t.strip_prefix("every:") {
            let n: u32 = n.parse().map_err(|_| bad())?;
            return match n {
                0 => Err(bad()),
                1 => Ok(AnalysisRate::Every),
                n if n <= MAX_EVERY => Ok(AnalysisRate::EveryNth(n)),
                _ => Err(bad()),
            };
        }
        if let Some(x) = t.strip_prefix("fps:") {
            let milli = parse_milli(x).ok_or_else(bad)?;
            if !(1..=MAX_FPS_MILLI).contains(&milli) {
                return Err(bad());
            }
            return Ok(AnalysisRate::PerSecondMilli(milli));
        }
        Err(bad())
    }
}

/// `"2"`, `"0.5"`, `"1.25"` as thousandths; at most three decimals.
fn parse_milli(x: &str) -> Option<u32> {
    let (int, frac) = x.split_once('.').unwrap_or((x, ""));
    if int.is_empty() && frac.is_empty()
        || frac.len() > 3
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || int.len() > 7
    {
        return None;
    }
    let int: u32 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().ok()?
    };
    int.checked_mul(1000)?.checked_add(frac)
}

impl fmt::Display for AnalysisRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AnalysisRate::Off => f.write_str("off"),
            AnalysisRate::Every => f.write_str("every"),
            AnalysisRate::EveryNth(n) => write!(f, "every:{n}"),
            AnalysisRate::Keyframes => f.write_str("keyframes"),
            AnalysisRate::PerSecondMilli(m) if m % 1000 == 0 => write!(f, "fps:{}", m / 1000),
            AnalysisRate::PerSecondMilli(m) => {
                let frac = format!("{:03}", m % 1000);
                write!(f, "fps:{}.{}", m / 1000, frac.trim_end_matches('0'))
            }
        }
    }
}

impl Serialize for AnalysisRate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AnalysisRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_parse_and_print_back() {
        for (text, rate) in [
            ("off", AnalysisRate::Off),
            ("every", AnalysisRate::Every),
            ("every:5", AnalysisRate::EveryNth(5)),
            ("keyframes", AnalysisRate::Keyframes),
            ("fps:1", AnalysisRate::PerSecondMilli(1000)),
            ("fps:0.5", AnalysisRate::PerSecondMilli(500)),
            ("fps:2.25", AnalysisRate::PerSecondMilli(2250)),
        ] {
            assert_eq!(text.parse::<AnalysisRate>(), Ok(rate), "{text}");
            assert_eq!(rate.to_string(), text);
        }
        assert_eq!("every:1".parse(), Ok(AnalysisRate::Every));
        assert_eq!("fps:.5".parse(), Ok(AnalysisRate::PerSecondMilli(500)));
    }

    #[test]
    fn bad_rates_name_the_forms() {
        for bad in [
            "",
            "always",
            "every:0",
            "every:x",
            "fps:0",
            "fps:",
            "fps:.",
            "fps:1.0005",
            "fps:-1",
            "fps:1001",
            "fps:1e3",
            "every:-2",
        ] {
            let err = bad.parse::<AnalysisRate>().unwrap_err().to_string();
            assert!(err.contains("keyframes"), "{bad}: {err}");
        }
    }

    #[test]
    fn fps_picks_one_picture_per_slot_of_media_time() {
        // 25 fps camera (3600 ticks per frame) at fps:2: 2 pictures per 25.
        let mut clock = RateClock::default();
        let rate = AnalysisRate::PerSecondMilli(2000);
        let picked: Vec<u64> = (0..50u64)
            .filter(|&seq| clock.pick(rate, seq, false, seq as i64 * 3600))
            .collect();
        assert_eq!(picked, vec![0, 13, 25, 38]);
        // every:N and keyframes need no history.
        assert!(clock.pick(AnalysisRate::EveryNth(5), 10, false, 0));
        assert!(!clock.pick(AnalysisRate::EveryNth(5), 11, false, 0));
        assert!(clock.pick(AnalysisRate::Keyframes, 11, true, 0));
        assert!(!clock.pick(AnalysisRate::Off, 0, true, 0));
    }

    #[test]
    fn a_replay_from_the_same_picture_picks_the_same_pictures() {
        let rate = AnalysisRate::PerSecondMilli(1000);
        let run = |from: u64| {
            let mut clock = RateClock::default();
            (from..100u64)
                .filter(|&seq| clock.pick(rate, seq, false, seq as i64 * 9000))
                .collect::<Vec<_>>()
        };
        let whole = run(0);
        let resumed = run(40);
        assert!(whole.ends_with(&resumed), "{whole:?} / {resumed:?}");
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_rate_prints_to_text_that_parses_back(
            n in 2u32..=MAX_EVERY, milli in 1u32..=MAX_FPS_MILLI, pick in 0u8..5
        ) {
            let rate = match pick {
                0 => AnalysisRate::Off,
                1 => AnalysisRate::Every,
                2 => AnalysisRate::EveryNth(n),
                3 => AnalysisRate::Keyframes,
                _ => AnalysisRate::PerSecondMilli(milli),
            };
            prop_assert_eq!(rate.to_string().parse::<AnalysisRate>(), Ok(rate));
        }

        #[test]
        fn any_text_parses_or_fails_without_panic(text in "\\PC{0,24}") {
            let _ = text.parse::<AnalysisRate>();
        }

        #[test]
        fn fps_never_passes_more_than_its_rate(
            milli in 1u32..=60_000, step in 1i64..9000, start in -1_000_000i64..1_000_000
        ) {
            let rate = AnalysisRate::PerSecondMilli(milli);
            let mut clock = RateClock::default();
            let frames = 2000i64;
            let picked = (0..frames)
                .filter(|&i| clock.pick(rate, i as u64, false, start + i * step))
                .count() as f64;
            // A span of D seconds touches at most D·X + 2 slots of 1/X s (one picked each).
            let seconds = ((frames - 1) * step) as f64 / 90_000.0;
            prop_assert!(picked <= seconds * f64::from(milli) / 1000.0 + 2.0);
        }
    }
}
