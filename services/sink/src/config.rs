//! Sink configuration (`framewire-sink --config sink.toml`); reference in `docs/config.md`.
//!
//! The sink has one section of its own, `[sink]`: where summaries are stored, how wide a
//! window is, how often dirty windows are written, and its consumer group. The shared
//! `[admin]`, `[kafka]` and `[topics]` sections come from the kit.

use framewire_kit::config::{AdminConfig, ConfigError, Validate, check_range};
use framewire_kit::kafka::{KafkaConfig, TopicsConfig};
use serde::{Deserialize, Serialize};

/// Default admin port of the sink.
pub const ADMIN_PORT: u16 = 9093;

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

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            database_url: None,
            sqlite_path: default_sqlite_path(),
            window_ms: default_window_ms(),
            flush_interval_ms: default_flush_interval_ms(),
            group_id: default_group_id(),
            shutdown_grace_ms: default_shutdown_grace_ms(),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
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
        check_range("sink.window_ms", s.window_ms, 1_000, 3_600_000)?;
        check_range("sink.flush_interval_ms", s.flush_interval_ms, 100, 600_000)?;
        if s.group_id.trim().is_empty() {
            return Err(ConfigError::invalid("sink.group_id", "must not be empty"));
        }
        check_range("sink.shutdown_grace_ms", s.shutdown_grace_ms, 0, 600_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(c: &Config) -> String {
        c.validate().unwrap_err().to_string()
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
