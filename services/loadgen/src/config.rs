//! Settings: the shared `[kafka]` and `[topics]` sections and `[loadgen]`, from a TOML
//! file and `FRAMEWIRE_*` variables like every Framewire binary, then the command line,
//! whose flags are the `[loadgen]` keys (`--cameras 1000` is `loadgen.cameras = 1000`)
//! and win over both. Every bad setting is one line that names it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use framewire_kit::config::{ConfigError, Validate, check_range};
use framewire_kit::kafka::{KafkaConfig, TopicsConfig};
use framewire_wire::{AnalysisRate, Codec, validate_camera_id};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Brokers and client options, as for the services.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// Topic names (frames or stats, by mode) and how a missing topic is created.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// The fleet to simulate.
    #[serde(default)]
    pub loadgen: LoadgenConfig,
}

/// `[loadgen]`: the fleet to simulate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadgenConfig {
    /// `frames` (a clip's access units to the frames topic, as ingest publishes them) or
    /// `stats` (synthetic statistics records to the stats topic, as workers write them).
    #[serde(default)]
    pub mode: Mode,
    /// Cameras to simulate.
    #[serde(default = "default_cameras")]
    pub cameras: u32,
    /// Frames per second of every camera.
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// `realtime`, `max` (as fast as Kafka takes them) or a speed factor such as `2x`.
    #[serde(default)]
    pub rate: Rate,
    /// How long to run (`90s`, `5m`, `250ms`); absent: until stopped or `frames`.
    #[serde(default)]
    pub duration: Option<HumanDuration>,
    /// Records per camera, then stop; absent: no limit.
    #[serde(default)]
    pub frames: Option<u64>,
    /// Frames mode: the clip, an Annex B H.264 or H.265 elementary stream.
    #[serde(default)]
    pub clip: Option<PathBuf>,
    /// Frames mode: `auto` (told from the stream), `h264` or `h265`.
    #[serde(default)]
    pub codec: CodecChoice,
    /// Camera ids are `<camera_prefix>-<index>`, the index zero-padded to 5 digits.
    #[serde(default = "default_camera_prefix")]
    pub camera_prefix: String,
    /// Index of the first camera, so that several generators can share one fleet.
    #[serde(default)]
    pub first_camera: u32,
    /// Stats mode: a keyframe every `gop` records (frames mode reads it from the clip).
    #[serde(default = "default_gop")]
    pub gop: u32,
    /// Stats mode: the picture size the records report, `WIDTHxHEIGHT`.
    #[serde(default = "default_size")]
    pub size: String,
    /// Frames mode: the object-detection rate to put in `fw-detect` on every frame
    /// (`off`, `every:N`, `keyframes`, `fps:X`); absent: no header, the worker's default.
    #[serde(default)]
    pub detect: Option<AnalysisRate>,
    /// Producer `linger.ms` (ingest's default).
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u32,
    /// How long the producer retries a record before it counts as a delivery error.
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    /// A progress line on stderr every second.
    #[serde(default = "default_true")]
    pub progress: bool,
}

fn default_cameras() -> u32 {
    100
}
fn default_fps() -> f64 {
    25.0
}
fn default_camera_prefix() -> String {
    "loadgen".to_owned()
}
fn default_gop() -> u32 {
    50
}
fn default_size() -> String {
    "1280x720".to_owned()
}
fn default_linger_ms() -> u32 {
    5
}
fn default_delivery_timeout_ms() -> u64 {
    30_000
}
fn default_true() -> bool {
    true
}

impl Default for LoadgenConfig {
    fn default() -> Self {
        LoadgenConfig {
            mode: Mode::default(),
            cameras: default_cameras(),
            fps: default_fps(),
            rate: Rate::default(),
            duration: None,
            frames: None,
            clip: None,
            codec: CodecChoice::default(),
            camera_prefix: default_camera_prefix(),
            first_camera: 0,
            gop: default_gop(),
            size: default_size(),
            detect: None,
            linger_ms: default_linger_ms(),
            delivery_timeout_ms: default_delivery_timeout_ms(),
            progress: true,
        }
    }
}

/// What the generator writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Access units of a clip to the frames topic.
    #[default]
    Frames,
    /// Synthetic statistics records to the stats topic.
    Stats,
}

/// Which codec the clip is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CodecChoice {
    /// Told from the stream's first NAL unit.
    #[default]
    Auto,
    /// H.264.
    H264,
    /// H.265.
    H265,
}

impl CodecChoice {
    /// The codec this choice fixes, if any.
    pub fn fixed(self) -> Option<Codec> {
        match self {
            CodecChoice::Auto => None,
            CodecChoice::H264 => Some(Codec::H264),
            CodecChoice::H265 => Some(Codec::H265),
        }
    }
}

/// How fast records go out: on the clock (at a speed) or as fast as possible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// At `speed` times real time (`realtime` = 1).
    Speed(f64),
    /// As fast as Kafka takes them.
    Max,
}

impl Default for Rate {
    fn default() -> Self {
        Rate::Speed(1.0)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let speed = match s {
            "realtime" => return Ok(Rate::Speed(1.0)),
            "max" => return Ok(Rate::Max),
            _ => s.strip_suffix('x').and_then(|v| v.parse::<f64>().ok()),
        };
        match speed {
            Some(v) if v.is_finite() && (0.01..=1000.0).contains(&v) => Ok(Rate::Speed(v)),
            _ => Err(format!(
                "{s:?} is not realtime, max or a speed from 0.01x to 1000x"
            )),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Speed(v) if *v == 1.0 => f.write_str("realtime"),
            Rate::Speed(v) => write!(f, "{v}x"),
            Rate::Max => f.write_str("max"),
        }
    }
}

/// A duration written `250ms`, `90s`, `5m`, `2h` (a bare number is seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a duration like 250ms, 90s, 5m or 2h");
        let split = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let seconds = match unit {
            "ms" => value / 1000.0,
            "" | "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return Err(bad()),
        };
        Duration::try_from_secs_f64(seconds)
            .map(HumanDuration)
            .map_err(|_| bad())
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// Serde through the text form, as in the TOML file.
macro_rules! serde_as_text {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_as_text!(Rate);
serde_as_text!(HumanDuration);

/// `WIDTHxHEIGHT` as numbers.
pub fn parse_size(text: &str) -> Option<(u32, u32)> {
    let (w, h) = text.split_once('x')?;
    let (w, h) = (w.parse().ok()?, h.parse().ok()?);
    (w > 0 && h > 0).then_some((w, h))
}

impl LoadgenConfig {
    /// The id of camera `index` (0-based within this generator).
    pub fn camera_id(&self, index: u32) -> String {
        format!(
            "{}-{:05}",
            self.camera_prefix,
            u64::from(self.first_camera) + u64::from(index)
        )
    }

    /// The topic this mode writes to.
    pub fn topic<'a>(&self, topics: &'a TopicsConfig) -> &'a str {
        match self.mode {
            Mode::Frames => &topics.frames,
            Mode::Stats => &topics.stats,
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.topics.validate()?;
        let l = &self.loadgen;
        check_range("loadgen.cameras", l.cameras, 1, 1_000_000)?;
        if !(l.fps.is_finite() && (0.1..=1000.0).contains(&l.fps)) {
            return Err(ConfigError::invalid(
                "loadgen.fps",
                format!("{} is not from 0.1 to 1000", l.fps),
            ));
        }
        if l.frames == Some(0) {
            return Err(ConfigError::invalid("loadgen.frames", "must be at least 1"));
        }
        if l.duration.is_some_and(|d| d.0.is_zero()) {
            return Err(ConfigError::invalid(
                "loadgen.duration",
                "must be more than 0",
            ));
        }
        if l.rate == Rate::Max && l.duration.is_none() && l.frames.is_none() {
            return Err(ConfigError::invalid(
                "loadgen.rate",
                "max needs loadgen.duration or loadgen.frames (else it never ends)",
            ));
        }
        // The last camera's id must be valid too (the index widens the id).
        for index in [0, l.cameras.saturating_sub(1)] {
            validate_camera_id(&l.camera_id(index))
                .map_err(|e| ConfigError::invalid("loadgen.camera_prefix", e))?;
        }
        check_range("loadgen.gop", l.gop, 1, 100_000)?;
        if parse_size(&l.size).is_none() {
            return Err(ConfigError::invalid(
                "loadgen.size",
                format!("{:?} is not WIDTHxHEIGHT", l.size),
            ));
        }
        check_range("loadgen.linger_ms", l.linger_ms, 0, 1_000)?;
        check_range(
            "loadgen.delivery_timeout_ms",
            l.delivery_timeout_ms,
            1_000,
            3_600_000,
        )?;
        match (l.mode, &l.clip) {
            (Mode::Frames, None) => Err(ConfigError::invalid(
                "loadgen.clip",
                "frames mode needs a clip (--clip FILE: an Annex B .h264 or .h265 stream)",
            )),
            (Mode::Frames, Some(path)) if !path.is_file() => Err(ConfigError::invalid(
                "loadgen.clip",
                format!("{} is not a file", path.display()),
            )),
            _ => Ok(()),
        }
    }
}

/// `text` parsed, or the error naming `setting`.
fn parsed<T: FromStr<Err = String>>(
    setting: &str,
    text: Option<String>,
) -> Result<Option<T>, ConfigError> {
    text.map(|t| t.parse().map_err(|e| ConfigError::invalid(setting, e)))
        .transpose()
}

/// Command-line flags: each sets the `[loadgen]` key of its name (or, for `--brokers`,
/// `--topic` and `--partitions`, the Kafka setting it names) over the file and the
/// environment.
#[derive(Debug, Default, clap::Args)]
pub struct Flags {
    /// What to write: frames (a clip's access units) or stats (synthetic records).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Cameras to simulate.
    #[arg(long)]
    pub cameras: Option<u32>,
    /// Frames per second of every camera.
    #[arg(long)]
    pub fps: Option<f64>,
    /// realtime, max, or a speed factor such as 2x.
    #[arg(long)]
    pub rate: Option<String>,
    /// How long to run: 250ms, 90s, 5m, 2h.
    #[arg(long)]
    pub duration: Option<String>,
    /// Records per camera, then stop.
    #[arg(long)]
    pub frames: Option<u64>,
    /// The clip: an Annex B H.264 or H.265 elementary stream.
    #[arg(long, value_name = "FILE")]
    pub clip: Option<PathBuf>,
    /// The clip's codec (auto: told from the stream).
    #[arg(long, value_enum)]
    pub codec: Option<CodecChoice>,
    /// Camera ids are PREFIX-00000, PREFIX-00001, …
    #[arg(long, value_name = "PREFIX")]
    pub camera_prefix: Option<String>,
    /// Index of the first camera.
    #[arg(long)]
    pub first_camera: Option<u32>,
    /// Stats mode: a keyframe every GOP records.
    #[arg(long)]
    pub gop: Option<u32>,
    /// Stats mode: the picture size the records report, WIDTHxHEIGHT.
    #[arg(long)]
    pub size: Option<String>,
    /// Frames mode: fw-detect on every frame (off, every:N, keyframes, fps:X).
    #[arg(long)]
    pub detect: Option<String>,
    /// Kafka bootstrap servers (kafka.brokers).
    #[arg(long)]
    pub brokers: Option<String>,
    /// The topic to write (topics.frames or topics.stats, by mode).
    #[arg(long)]
    pub topic: Option<String>,
    /// Partitions if the topic has to be created (topics.partitions).
    #[arg(long)]
    pub partitions: Option<i32>,
    /// No progress lines, only the final JSON line.
    #[arg(long)]
    pub quiet: bool,
}

impl Flags {
    /// Applies the flags given to `config`.
    pub fn apply(self, config: &mut Config) -> Result<(), ConfigError> {
        let l = &mut config.loadgen;
        if let Some(v) = self.mode {
            l.mode = v;
        }
        if let Some(v) = self.cameras {
            l.cameras = v;
        }
        if let Some(v) = self.fps {
            l.fps = v;
        }
        if let Some(v) = parsed("loadgen.rate", self.rate)? {
            l.rate = v;
        }
        if let Some(v) = parsed("loadgen.duration", self.duration)? {
            l.duration = Some(v);
        }
        if let Some(v) = self.frames {
            l.frames = Some(v);
        }
        if let Some(v) = self.clip {
            l.clip = Some(v);
        }
        if let Some(v) = self.codec {
            l.codec = v;
        }
        if let Some(v) = self.camera_prefix {
            l.camera_prefix = v;
        }
        if let Some(v) = self.first_camera {
            l.first_camera = v;
        }
        if let Some(v) = self.gop {
            l.gop = v;
        }
        if let Some(v) = self.size {
            l.size = v;
        }
        if let Some(text) = self.detect {
            let rate = text.parse().map_err(|e: framewire_wire::RateError| {
                ConfigError::invalid("loadgen.detect", e.to_string())
            })?;
            l.detect = Some(rate);
        }
        if self.quiet {
            l.progress = false;
        }
        if let Some(v) = self.brokers {
            config.kafka.brokers = v;
        }
        if let Some(v) = self.topic {
            match config.loadgen.mode {
                Mode::Frames => config.topics.frames = v,
                Mode::Stats => config.topics.stats = v,
            }
        }
        if let Some(v) = self.partitions {
            config.topics.partitions = v;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(flags: Flags) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        flags.apply(&mut c)?;
        c.validate()?;
        Ok(c)
    }

    fn stats() -> Flags {
        Flags {
            mode: Some(Mode::Stats),
            ..Flags::default()
        }
    }

    fn error(flags: Flags) -> String {
        with(flags).expect_err("a bad setting").to_string()
    }

    #[test]
    fn flags_set_their_keys_and_the_topic_of_the_mode() {
        let c = with(Flags {
            cameras: Some(1000),
            rate: Some("max".into()),
            duration: Some("90s".into()),
            topic: Some("bench.stats".into()),
            brokers: Some("k1:9092,k2:9092".into()),
            camera_prefix: Some("site-a".into()),
            first_camera: Some(5000),
            ..stats()
        })
        .expect("valid");
        assert_eq!(c.loadgen.cameras, 1000);
        assert_eq!(c.loadgen.rate, Rate::Max);
        assert_eq!(
            c.loadgen.duration,
            Some(HumanDuration(Duration::from_secs(90)))
        );
        assert_eq!(c.topics.stats, "bench.stats");
        assert_eq!(c.topics.frames, framewire_wire::topics::FRAMES);
        assert_eq!(c.loadgen.topic(&c.topics), "bench.stats");
        assert_eq!(c.kafka.brokers, "k1:9092,k2:9092");
        assert_eq!(c.loadgen.camera_id(7), "site-a-05007");
    }

    #[test]
    fn bad_settings_name_themselves() {
        assert_eq!(
            error(Flags {
                cameras: Some(0),
                ..stats()
            }),
            "invalid setting `loadgen.cameras`: 0 is out of range; expected 1 to 1000000"
        );
        assert_eq!(
            error(Flags {
                rate: Some("fast".into()),
                ..stats()
            }),
            "invalid setting `loadgen.rate`: \"fast\" is not realtime, max or a speed from 0.01x to 1000x"
        );
        assert_eq!(
            error(Flags {
                rate: Some("max".into()),
                ..stats()
            }),
            "invalid setting `loadgen.rate`: max needs loadgen.duration or loadgen.frames (else it never ends)"
        );
        assert_eq!(
            error(Flags {
                duration: Some("10 minutes".into()),
                ..stats()
            }),
            "invalid setting `loadgen.duration`: \"10 minutes\" is not a duration like 250ms, 90s, 5m or 2h"
        );
        assert!(
            error(Flags::default())
                .starts_with("invalid setting `loadgen.clip`: frames mode needs a clip")
        );
        assert!(
            error(Flags {
                clip: Some("/nonexistent.h264".into()),
                ..Flags::default()
            })
            .contains("/nonexistent.h264 is not a file")
        );
        assert!(
            error(Flags {
                camera_prefix: Some("gate 1".into()),
                ..stats()
            })
            .starts_with("invalid setting `loadgen.camera_prefix`: camera id \"gate 1-00000\"")
        );
        assert!(
            error(Flags {
                detect: Some("sometimes".into()),
                ..stats()
            })
            .starts_with("invalid setting `loadgen.detect`:")
        );
        assert!(
            error(Flags {
                size: Some("720p".into()),
                ..stats()
            })
            .contains("`loadgen.size`: \"720p\" is not WIDTHxHEIGHT")
        );
        assert!(
            error(Flags {
                brokers: Some("kafka".into()),
                ..stats()
            })
            .contains("`kafka.brokers`")
        );
    }

    #[test]
    fn rates_and_durations_read_and_print_back() {
        for (text, rate) in [
            ("realtime", Rate::Speed(1.0)),
            ("max", Rate::Max),
            ("2x", Rate::Speed(2.0)),
            ("0.5x", Rate::Speed(0.5)),
        ] {
            assert_eq!(text.parse::<Rate>(), Ok(rate));
            assert_eq!(rate.to_string(), text);
        }
        for bad in ["0x", "x", "-1x", "NaNx", "2"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
        for (text, ms) in [
            ("250ms", 250),
            ("90s", 90_000),
            ("90", 90_000),
            ("5m", 300_000),
            ("2h", 7_200_000),
            ("1.5s", 1500),
        ] {
            let d: HumanDuration = text.parse().expect(text);
            assert_eq!(d.0, Duration::from_millis(ms), "{text}");
        }
        assert_eq!(
            HumanDuration(Duration::from_millis(1500)).to_string(),
            "1500ms"
        );
        for bad in ["", "s", "5 s", "-5s", "5d", "1e400s"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_toml_file_reads_with_the_environment_over_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("loadgen.toml");
        std::fs::write(
            &path,
            "[kafka]\nbrokers = \"k:9092\"\n\n[loadgen]\nmode = \"stats\"\ncameras = 250\nrate = \"2x\"\nduration = \"5m\"\ndetect = \"every:5\"\n",
        )
        .expect("write");
        let env = [("FRAMEWIRE_LOADGEN__CAMERAS".to_owned(), "300".to_owned())];
        let c: Config = framewire_kit::config::load_from(Some(&path), env).expect("loads");
        assert_eq!(c.loadgen.cameras, 300);
        assert_eq!(c.loadgen.rate, Rate::Speed(2.0));
        assert_eq!(
            c.loadgen.duration,
            Some(HumanDuration(Duration::from_secs(300)))
        );
        assert_eq!(c.loadgen.detect, Some("every:5".parse().expect("rate")));
        std::fs::write(&path, "[loadgen]\ncamera = 5\n").expect("write");
        let err = framewire_kit::config::load_from::<Config>(Some(&path), []).expect_err("typo");
        assert!(err.to_string().contains("camera"), "{err}");
    }
}
