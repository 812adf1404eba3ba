//! Sink configuration (`framewire-sink --config sink.toml`); reference in `docs/config.md`.
//!
//! The sink has one section of its own, `[sink]`: where summaries are stored and for how
//! long, how wide a window is and how late a frame may be, how often windows are written,
//! its consumer groups, incident rules, the keyframe preview and its HTTP port (API and
//! web page). `[sink.detections]` says how object detections are counted; `[sink.api]`
//! what the JSON API may take from the database and from one client. The shared `[admin]`, `[kafka]` and `[topics]` sections come from the kit.

use std::net::SocketAddr;

use framewire_kit::config::{AdminConfig, ConfigError, Validate, check_range};
use framewire_kit::kafka::{KafkaConfig, TopicsConfig};
use framewire_kit::kafka_access::{KafkaAccess, KafkaNeeds, PatternType};
use serde::{Deserialize, Serialize};

use crate::incidents::Rules;

/// Default admin port of the sink.
pub const ADMIN_PORT: u16 = 9093;

/// Default port of the sink's API and web page.
pub const HTTP_PORT: u16 = 8080;

/// The whole sink configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Admin server.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Brokers and librdkafka options.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// Topic names and creation settings.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// Storage, windowing and consumer settings.
    #[serde(default)]
    pub sink: SinkConfig,
}

/// `[sink]`: where and how per-camera window summaries are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// PostgreSQL DSN (`postgres://user:password@host:5432/db`). When unset, summaries go
    /// to the embedded SQLite file at `sqlite_path`. The password is redacted on `/config`.
    #[serde(default)]
    pub database_url: Option<String>,
    /// SQLite database file, created when missing (used only without `database_url`).
    #[serde(default = "default_sqlite_path")]
    pub sqlite_path: String,
    /// Width of the tumbling summary windows, on the frames' capture clock.
    #[serde(default = "default_window_ms")]
    pub window_ms: i64,
    /// How often windows that changed are written to the database (and Kafka offsets
    /// stored after a successful write).
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Kafka consumer group of the sink on the stats topic.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Time allowed on SIGTERM for the final write and offset commit.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// Address of the HTTP server for the JSON API and the web page.
    #[serde(default = "default_http_listen")]
    pub http_listen: String,
    /// How far behind its camera's newest frame a frame may arrive and still count: a
    /// window closes once the camera's frames are this far past its end.
    #[serde(default = "default_allowed_lateness_ms")]
    pub allowed_lateness_ms: i64,
    /// Days windows, incidents and silent cameras are kept; 0 keeps them forever.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Longest wait between two write attempts while the database fails (the wait
    /// doubles from `flush_interval_ms` up to this).
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Frames held in memory while the database is unavailable (about 200 bytes each);
    /// beyond this, consumption pauses (the rest waits in Kafka).
    #[serde(default = "default_max_pending_frames")]
    pub max_pending_frames: usize,
    /// A camera is `offline` when its newest frame is older than this.
    #[serde(default = "default_offline_after_ms")]
    pub offline_after_ms: i64,
    /// blackdetect `d`: black for at least this long is an incident.
    #[serde(default = "default_black_min_duration_ms")]
    pub black_min_duration_ms: i64,
    /// freezedetect `d`: frozen for at least this long is an incident.
    #[serde(default = "default_freeze_min_duration_ms")]
    pub freeze_min_duration_ms: i64,
    /// No frame for at least this long is a camera-gap incident.
    #[serde(default = "default_gap_min_ms")]
    pub gap_min_ms: i64,
    /// Decode each camera's keyframes on the frames topic into a thumbnail.
    #[serde(default = "default_true")]
    pub preview: bool,
    /// Consumer group of the preview on the frames topic (the sink's own, apart from the
    /// workers'; give each sink replica its own to have every camera's thumbnail).
    #[serde(default = "default_preview_group_id")]
    pub preview_group_id: String,
    /// At most one thumbnail per camera this often.
    #[serde(default = "default_preview_interval_ms")]
    pub preview_interval_ms: u64,
    /// Thumbnail width in pixels (height follows the picture).
    #[serde(default = "default_thumbnail_width")]
    pub thumbnail_width: u32,
    /// How object detections (the detections topic) are counted.
    #[serde(default)]
    pub detections: DetectionsConfig,
    /// The JSON API's database connections and limits.
    #[serde(default)]
    pub api: ApiConfig,
}

/// `[sink.api]`: what the JSON API may take from the database, and from one client.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Database connections of the API's own read pool (SQLite: read-only connections
    /// on the file; PostgreSQL: a pool beside the writer's 4 connections). Requests
    /// beyond these wait for one; flushes never do.
    #[serde(default = "default_read_connections")]
    pub read_connections: u32,
    /// Longest time range `[from, to)` one summaries or events request may ask for;
    /// longer is a 400 naming this limit.
    #[serde(default = "default_max_range_ms")]
    pub max_range_ms: i64,
    /// Most rows one request returns: a `limit` above it is a 400.
    #[serde(default = "default_max_limit")]
    pub max_limit: i64,
    /// Requests per second one client (peer IP address) may make to `/api/…`, on
    /// average; beyond, 429 with `Retry-After`. 0 turns the limit off.
    #[serde(default)]
    pub rate_limit_per_second: u32,
    /// Requests a client may make at once above the average rate (the bucket's size).
    #[serde(default = "default_rate_limit_burst")]
    pub rate_limit_burst: u32,
    /// Nice value of the HTTP server's threads and the API's SQLite read connections
    /// (Linux): when the cores are all busy, the pipeline's flushes get the CPU first.
    /// 0 keeps the process's priority.
    #[serde(default = "default_nice")]
    pub nice: i32,
    /// Thumbnails (each camera's latest keyframe) need the admin token (`admin.token`),
    /// like the worker's live views; the page's browser then asks for it once.
    #[serde(default)]
    pub thumbnails_need_token: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            read_connections: default_read_connections(),
            max_range_ms: default_max_range_ms(),
            max_limit: default_max_limit(),
            rate_limit_per_second: 0,
            rate_limit_burst: default_rate_limit_burst(),
            nice: default_nice(),
            thumbnails_need_token: false,
        }
    }
}

fn default_read_connections() -> u32 {
    2
}
fn default_max_range_ms() -> i64 {
    7 * 86_400_000
}
fn default_max_limit() -> i64 {
    10_000
}
fn default_rate_limit_burst() -> u32 {
    50
}
fn default_nice() -> i32 {
    10
}

/// `[sink.detections]`: counting objects per class and window, appeared/left incidents.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionsConfig {
    /// Consume the detections topic (in the sink's consumer group, beside the stats).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Objects scoring below this are ignored: not counted, not drawn, no incidents. The
    /// worker already drops objects below its own `detect.score_threshold`.
    #[serde(default = "default_min_score")]
    pub min_score: f32,
    /// A class in no analysed picture for this long (capture clock) has left; keep it
    /// above the cameras' detection interval.
    #[serde(default = "default_left_after_ms")]
    pub left_after_ms: i64,
}

impl Default for DetectionsConfig {
    fn default() -> Self {
        DetectionsConfig {
            enabled: true,
            min_score: default_min_score(),
            left_after_ms: default_left_after_ms(),
        }
    }
}

fn default_min_score() -> f32 {
    0.5
}
fn default_left_after_ms() -> i64 {
    5_000
}

fn default_sqlite_path() -> String {
    "framewire.sqlite".to_owned()
}
fn default_window_ms() -> i64 {
    10_000
}
fn default_flush_interval_ms() -> u64 {
    1_000
}
fn default_group_id() -> String {
    "framewire-sink".to_owned()
}
fn default_shutdown_grace_ms() -> u64 {
    10_000
}
fn default_http_listen() -> String {
    "0.0.0.0:8080".to_owned()
}
fn default_allowed_lateness_ms() -> i64 {
    10_000
}
fn default_retention_days() -> u32 {
    30
}
fn default_retry_max_ms() -> u64 {
    30_000
}
fn default_max_pending_frames() -> usize {
    200_000
}
fn default_offline_after_ms() -> i64 {
    10_000
}
fn default_black_min_duration_ms() -> i64 {
    2_000
}
fn default_freeze_min_duration_ms() -> i64 {
    2_000
}
fn default_gap_min_ms() -> i64 {
    5_000
}
fn default_true() -> bool {
    true
}
fn default_preview_group_id() -> String {
    "framewire-sink-preview".to_owned()
}
fn default_preview_interval_ms() -> u64 {
    5_000
}
fn default_thumbnail_width() -> u32 {
    320
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            database_url: None,
            sqlite_path: default_sqlite_path(),
            window_ms: default_window_ms(),
            flush_interval_ms: default_flush_interval_ms(),
            group_id: default_group_id(),
            shutdown_grace_ms: default_shutdown_grace_ms(),
            http_listen: default_http_listen(),
            allowed_lateness_ms: default_allowed_lateness_ms(),
            retention_days: default_retention_days(),
            retry_max_ms: default_retry_max_ms(),
            max_pending_frames: default_max_pending_frames(),
            offline_after_ms: default_offline_after_ms(),
            black_min_duration_ms: default_black_min_duration_ms(),
            freeze_min_duration_ms: default_freeze_min_duration_ms(),
            gap_min_ms: default_gap_min_ms(),
            preview: true,
            preview_group_id: default_preview_group_id(),
            preview_interval_ms: default_preview_interval_ms(),
            thumbnail_width: default_thumbnail_width(),
            detections: DetectionsConfig::default(),
            api: ApiConfig::default(),
        }
    }
}

impl SinkConfig {
    /// The HTTP server address (validated by [`Validate`]; the default if unparsable).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_listen
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], HTTP_PORT)))
    }

    /// The incident rules.
    pub fn incident_rules(&self) -> Rules {
        Rules {
            black_min_ms: self.black_min_duration_ms,
            freeze_min_ms: self.freeze_min_duration_ms,
            gap_min_ms: self.gap_min_ms,
            object_left_ms: self.detections.left_after_ms,
        }
    }
}

impl KafkaNeeds for Config {
    fn kafka_access(&self) -> KafkaAccess {
        let (t, s) = (&self.topics, &self.sink);
        let mut a = KafkaAccess::default();
        a.consumes(&t.stats, "statistics to summarise")
            .consumes(&t.dlq, "dead letters to count")
            .group(PatternType::Literal, &s.group_id, "the sink's group");
        let mut created = vec![t.stats.as_str(), t.dlq.as_str()];
        if s.detections.enabled {
            a.consumes(&t.detections, "detections to count");
            created.push(&t.detections);
        }
        if s.preview {
            a.consumes(&t.frames, "keyframes for the thumbnails").group(
                PatternType::Literal,
                &s.preview_group_id,
                "the preview's group",
            );
            created.push(&t.frames);
        }
        a.creates(t, &created);
        a
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.admin.validate()?;
        if self.sink.api.thumbnails_need_token && self.admin.token.is_none() {
            return Err(ConfigError::invalid(
                "sink.api.thumbnails_need_token",
                "needs admin.token (the token the thumbnails then require)",
            ));
        }
        self.kafka.validate()?;
        self.topics.validate()?;
        let s = &self.sink;
        if let Some(url) = &s.database_url {
            let scheme_ok = ["postgres://", "postgresql://"]
                .iter()
                .any(|p| url.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
            if !scheme_ok {
                let shown = match url.split_once("://") {
                    Some((scheme, _)) => format!("{scheme}://…"),
                    None => "a string without a scheme".to_owned(),
                };
                return Err(ConfigError::invalid(
                    "sink.database_url",
                    format!(
                        "must start with postgres:// or postgresql:// (got {shown}); leave it unset to use SQLite"
                    ),
                ));
            }
        }
        if s.database_url.is_none() && s.sqlite_path.trim().is_empty() {
            return Err(ConfigError::invalid(
                "sink.sqlite_path",
                "must name a file when sink.database_url is unset",
            ));
        }
        if s.database_url.is_none()
            && (s.sqlite_path.trim() == ":memory:" || s.sqlite_path.starts_with("file:"))
        {
            // SQLite opens ":memory:" as a private database per connection: the writer's
            // and the API's connections would each see another, empty one.
            return Err(ConfigError::invalid(
                "sink.sqlite_path",
                format!(
                    "{:?} is not a file path: an in-memory database is not supported (each connection would get its own); name a file, e.g. under /tmp for throwaway data",
                    s.sqlite_path
                ),
            ));
        }
        check_range("sink.window_ms", s.window_ms, 1_000, 3_600_000)?;
        check_range("sink.flush_interval_ms", s.flush_interval_ms, 100, 600_000)?;
        if s.group_id.trim().is_empty() {
            return Err(ConfigError::invalid("sink.group_id", "must not be empty"));
        }
        check_range("sink.shutdown_grace_ms", s.shutdown_grace_ms, 0, 600_000)?;
        if s.http_listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                "sink.http_listen",
                format!("{:?} is not an address like 0.0.0.0:8080", s.http_listen),
            ));
        }
        check_range(
            "sink.allowed_lateness_ms",
            s.allowed_lateness_ms,
            0,
            86_400_000,
        )?;
        check_range("sink.retention_days", s.retention_days, 0, 36_500)?;
        check_range(
            "sink.retry_max_ms",
            s.retry_max_ms,
            s.flush_interval_ms,
            3_600_000,
        )?;
        check_range(
            "sink.max_pending_frames",
            s.max_pending_frames,
            1_000,
            100_000_000,
        )?;
        check_range(
            "sink.offline_after_ms",
            s.offline_after_ms,
            1_000,
            86_400_000,
        )?;
        check_range(
            "sink.black_min_duration_ms",
            s.black_min_duration_ms,
            0,
            86_400_000,
        )?;
        check_range(
            "sink.freeze_min_duration_ms",
            s.freeze_min_duration_ms,
            0,
            86_400_000,
        )?;
        check_range("sink.gap_min_ms", s.gap_min_ms, 100, 86_400_000)?;
        if s.preview_group_id.trim().is_empty() {
            return Err(ConfigError::invalid(
                "sink.preview_group_id",
                "must not be empty",
            ));
        }
        if s.preview && s.preview_group_id == s.group_id {
            return Err(ConfigError::invalid(
                "sink.preview_group_id",
                "must differ from sink.group_id (the preview reads another topic at its own pace)",
            ));
        }
        check_range(
            "sink.preview_interval_ms",
            s.preview_interval_ms,
            0,
            3_600_000,
        )?;
        check_range("sink.thumbnail_width", s.thumbnail_width, 16, 3_840)?;
        let a = &s.api;
        check_range("sink.api.read_connections", a.read_connections, 1, 64)?;
        check_range(
            "sink.api.max_range_ms",
            a.max_range_ms,
            60_000,
            crate::api::MAX_TIME_MS,
        )?;
        check_range("sink.api.max_limit", a.max_limit, 1, 1_000_000)?;
        check_range(
            "sink.api.rate_limit_per_second",
            a.rate_limit_per_second,
            0,
            1_000_000,
        )?;
        check_range(
            "sink.api.rate_limit_burst",
            a.rate_limit_burst,
            1,
            1_000_000,
        )?;
        let d = &s.detections;
        if !(0.0..=1.0).contains(&d.min_score) {
            return Err(ConfigError::invalid(
                "sink.detections.min_score",
                format!(
                    "{} is out of range; expected a score from 0 to 1",
                    d.min_score
                ),
            ));
        }
        check_range(
            "sink.detections.left_after_ms",
            d.left_after_ms,
            100,
            86_400_000,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_needs_follow_preview_and_detections() {
        let groups = |c: &Config| -> Vec<String> {
            c.kafka_access()
                .grants()
                .iter()
                .map(|g| g.name.clone())
                .collect()
        };
        let mut c = Config::default();
        c.sink.preview = true;
        c.sink.preview_group_id = "thumbs".into();
        assert!(groups(&c).contains(&"thumbs".to_owned()));
        assert!(groups(&c).contains(&c.topics.frames));
        c.sink.preview = false;
        c.sink.detections.enabled = false;
        assert!(!groups(&c).contains(&"thumbs".to_owned()));
        assert!(!groups(&c).contains(&c.topics.frames));
        assert!(!groups(&c).contains(&c.topics.detections));
    }

    fn err(c: &Config) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn private_thumbnails_need_a_token() {
        let mut c = Config::default();
        c.sink.api.thumbnails_need_token = true;
        assert!(
            err(&c).contains("sink.api.thumbnails_need_token"),
            "{}",
            err(&c)
        );
        c.admin.token = Some("0123456789abcdef".into());
        assert!(c.validate().is_ok());
        c.admin.token = Some("short".into());
        assert!(err(&c).contains("admin.token"));
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.sink.database_url, None);
        assert_eq!(c.sink.sqlite_path, "framewire.sqlite");
        assert_eq!(c.sink.window_ms, 10_000);
        assert_eq!(c.sink.flush_interval_ms, 1_000);
        assert_eq!(c.sink.group_id, "framewire-sink");
        assert_eq!(c.sink.shutdown_grace_ms, 10_000);
        assert_eq!(c.admin.listen_or(ADMIN_PORT).port(), 9093);
        assert_eq!(c.sink.http_addr().to_string(), "0.0.0.0:8080");
        assert_eq!(c.sink.allowed_lateness_ms, 10_000);
        assert_eq!(c.sink.retention_days, 30);
        assert_eq!(c.sink.preview_group_id, "framewire-sink-preview");
        assert_eq!(
            c.sink.incident_rules(),
            Rules {
                black_min_ms: 2_000,
                freeze_min_ms: 2_000,
                gap_min_ms: 5_000,
                object_left_ms: 5_000,
            }
        );
        assert_eq!(c.sink.detections, DetectionsConfig::default());
        assert!(c.sink.detections.enabled);
        assert!((c.sink.detections.min_score - 0.5).abs() < f32::EPSILON);
    }

    #[test]
    fn new_settings_are_checked_by_name() {
        let mut c = Config::default();
        c.sink.http_listen = "localhost".into();
        assert_eq!(
            err(&c),
            "invalid setting `sink.http_listen`: \"localhost\" is not an address like 0.0.0.0:8080"
        );
        let mut c = Config::default();
        c.sink.retry_max_ms = 500;
        assert!(
            err(&c).contains("sink.retry_max_ms"),
            "below flush_interval_ms"
        );
        let mut c = Config::default();
        c.sink.preview_group_id = c.sink.group_id.clone();
        assert!(err(&c).starts_with("invalid setting `sink.preview_group_id`: must differ"));
        c.sink.preview = false;
        assert!(c.validate().is_ok(), "no preview, no clash");
        let mut c = Config::default();
        c.sink.thumbnail_width = 8;
        assert!(err(&c).contains("sink.thumbnail_width"));
        let mut c = Config::default();
        c.sink.gap_min_ms = 0;
        assert!(err(&c).contains("sink.gap_min_ms"));
        let c: Config = framewire_kit::config::load_from(
            None,
            vec![(
                "FRAMEWIRE_SINK__HTTP_LISTEN".to_owned(),
                "127.0.0.1:0".to_owned(),
            )],
        )
        .unwrap();
        assert_eq!(c.sink.http_addr().to_string(), "127.0.0.1:0");
    }

    #[test]
    fn api_settings_are_checked_and_in_memory_sqlite_is_refused() {
        let c = Config::default();
        assert_eq!(c.sink.api.read_connections, 2);
        assert_eq!(c.sink.api.max_range_ms, 604_800_000);
        assert_eq!(c.sink.api.max_limit, 10_000);
        assert_eq!(c.sink.api.rate_limit_per_second, 0, "off by default");
        assert_eq!(c.sink.api.nice, 10);
        let mut c = Config::default();
        c.sink.api.read_connections = 0;
        assert_eq!(
            err(&c),
            "invalid setting `sink.api.read_connections`: 0 is out of range; expected 1 to 64"
        );
        let mut c = Config::default();
        c.sink.api.max_range_ms = 1_000;
        assert!(err(&c).contains("sink.api.max_range_ms"));
        let mut c = Config::default();
        c.sink.api.max_limit = 0;
        assert!(err(&c).contains("sink.api.max_limit"));
        let mut c = Config::default();
        c.sink.api.rate_limit_burst = 0;
        assert!(err(&c).contains("sink.api.rate_limit_burst"));
        for path in [":memory:", "file::memory:?cache=shared"] {
            let mut c = Config::default();
            c.sink.sqlite_path = path.into();
            let e = err(&c);
            assert!(
                e.starts_with("invalid setting `sink.sqlite_path`") && e.contains("in-memory"),
                "{e}"
            );
            c.sink.database_url = Some("postgres://db/x".into());
            assert!(c.validate().is_ok(), "unused with a DSN");
        }
        let c: Config = framewire_kit::config::load_from(
            None,
            vec![
                (
                    "FRAMEWIRE_SINK__API__RATE_LIMIT_PER_SECOND".to_owned(),
                    "20".to_owned(),
                ),
                (
                    "FRAMEWIRE_SINK__API__READ_CONNECTIONS".to_owned(),
                    "3".to_owned(),
                ),
            ],
        )
        .unwrap();
        assert_eq!(
            (
                c.sink.api.rate_limit_per_second,
                c.sink.api.read_connections
            ),
            (20, 3)
        );
    }

    #[test]
    fn database_url_must_be_postgres() {
        let mut c = Config::default();
        for ok in [
            "postgres://fw:pw@db:5432/framewire",
            "postgresql://db/framewire",
        ] {
            c.sink.database_url = Some(ok.into());
            assert!(c.validate().is_ok(), "{ok}");
        }
        for bad in ["mysql://u:secret@db/x", "", "postgres://", "db:5432"] {
            c.sink.database_url = Some(bad.into());
            let e = err(&c);
            assert!(
                e.starts_with("invalid setting `sink.database_url`: must start with postgres://"),
                "{e}"
            );
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn ranges_name_the_setting() {
        let mut c = Config::default();
        c.sink.window_ms = 999;
        assert_eq!(
            err(&c),
            "invalid setting `sink.window_ms`: 999 is out of range; expected 1000 to 3600000"
        );
        c.sink.window_ms = 3_600_000;
        assert!(c.validate().is_ok());
        c.sink.window_ms = 3_600_001;
        assert!(err(&c).contains("sink.window_ms"));

        let mut c = Config::default();
        c.sink.flush_interval_ms = 10;
        assert!(err(&c).contains("sink.flush_interval_ms"));

        let mut c = Config::default();
        c.sink.group_id = " ".into();
        assert_eq!(
            err(&c),
            "invalid setting `sink.group_id`: must not be empty"
        );

        let mut c = Config::default();
        c.sink.sqlite_path = String::new();
        assert!(err(&c).contains("sink.sqlite_path"));
        c.sink.database_url = Some("postgres://db/x".into());
        assert!(c.validate().is_ok(), "sqlite_path is unused with a DSN");
    }

    #[test]
    fn detections_settings_are_checked_and_overridable() {
        let mut c = Config::default();
        c.sink.detections.min_score = 1.5;
        assert_eq!(
            err(&c),
            "invalid setting `sink.detections.min_score`: 1.5 is out of range; expected a score from 0 to 1"
        );
        c.sink.detections.min_score = f32::NAN;
        assert!(err(&c).contains("sink.detections.min_score"));
        c.sink.detections.min_score = 0.0;
        assert!(c.validate().is_ok());
        c.sink.detections.left_after_ms = 50;
        assert_eq!(
            err(&c),
            "invalid setting `sink.detections.left_after_ms`: 50 is out of range; expected 100 to 86400000"
        );
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let c: Config = framewire_kit::config::load_from(
            None,
            env(&[
                ("FRAMEWIRE_SINK__DETECTIONS__MIN_SCORE", "0.7"),
                ("FRAMEWIRE_SINK__DETECTIONS__LEFT_AFTER_MS", "8000"),
                ("FRAMEWIRE_SINK__DETECTIONS__ENABLED", "false"),
            ]),
        )
        .unwrap();
        assert!((c.sink.detections.min_score - 0.7).abs() < 1e-6);
        assert_eq!(c.sink.incident_rules().object_left_ms, 8_000);
        assert!(!c.sink.detections.enabled);
        let e = framewire_kit::config::load_from::<Config>(
            None,
            env(&[("FRAMEWIRE_SINK__DETECTIONS__MINSCORE", "0.7")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("minscore"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected_and_env_overrides() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let e = framewire_kit::config::load_from::<Config>(
            None,
            env(&[("FRAMEWIRE_SINK__WINDOWMS", "5000")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("windowms"), "{e}");
        let c: Config = framewire_kit::config::load_from(
            None,
            env(&[
                ("FRAMEWIRE_SINK__WINDOW_MS", "5000"),
                (
                    "FRAMEWIRE_SINK__DATABASE_URL",
                    "postgres://fw:pw@db/framewire",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(c.sink.window_ms, 5_000);
        assert_eq!(
            c.sink.database_url.as_deref(),
            Some("postgres://fw:pw@db/framewire")
        );
        let shown = framewire_kit::config::effective_json(&c).to_string();
        assert!(!shown.contains(":pw@"), "{shown}");
    }
}
