//! Configuration: built-in defaults < TOML file (`--config`) < environment.
//!
//! Environment variables are `FRAMEWIRE_<SECTION>__<KEY>` (double underscore between
//! levels, e.g. `FRAMEWIRE_KAFKA__BROKERS`); only variables with at least one `__`
//! are configuration, so `FRAMEWIRE_LOG_FORMAT` and friends never collide with it.
//! Any such variable can instead end in `_FILE` and name a file holding the value
//! (`FRAMEWIRE_SINK__DATABASE_URL_FILE=/etc/framewire/secrets/db/url`), the way secrets
//! are mounted on Kubernetes; one trailing newline is dropped.
//! Every struct denies unknown fields, and every error is one line that names the
//! setting, because a typo in a fleet's config should fail loudly at start.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// Process exit code for a bad configuration (`EX_USAGE` in sysexits.h).
pub const EXIT_BAD_CONFIG: u8 = 64;

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "FRAMEWIRE_";

/// A configuration that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file is missing, unreadable, not TOML, or a value has the wrong type or name.
    #[error("{0}")]
    Load(String),
    /// A value parsed but is not acceptable.
    #[error("invalid setting `{setting}`: {message}")]
    Invalid {
        /// Dotted path of the setting, e.g. `kafka.brokers`.
        setting: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub fn invalid(setting: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

/// Checks that go beyond types: ranges, non-empty lists, consistency.
pub trait Validate {
    /// Returns the first problem found, naming its setting.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Loads a service configuration from defaults, an optional TOML file and the environment.
pub fn load<T>(file: Option<&Path>) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
{
    load_from(file, std::env::vars())
}

/// [`load`] with an explicit environment, for tests.
pub fn load_from<T>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
{
    let mut builder = config::Config::builder();
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::Load(format!(
                "config file {} does not exist or is not a file",
                path.display()
            )));
        }
        builder = builder.add_source(
            config::File::from(path)
                .format(config::FileFormat::Toml)
                .required(true),
        );
    }
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut files: Vec<(String, String)> = Vec::new();
    for (k, v) in env {
        let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        match rest.strip_suffix("_FILE") {
            Some(key) => files.push((format!("{ENV_PREFIX}{key}"), v)),
            None => {
                vars.insert(k, v);
            }
        }
    }
    for (key, path) in files {
        if vars.contains_key(&key) {
            return Err(ConfigError::Load(format!(
                "both {key} and {key}_FILE are set; keep one"
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::Load(format!("{key}_FILE={path}: cannot read the file: {e}"))
        })?;
        let value = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        vars.insert(key, value.to_owned());
    }
    builder = builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX.trim_end_matches('_'))
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .source(Some(vars)),
    );
    let cfg: T = builder
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| ConfigError::Load(one_line(&e.to_string())))?;
    cfg.validate()?;
    Ok(cfg)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `[admin]`: where the admin server (health, metrics, config) listens.
#[derive(Debug, Clone, serde::Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Listen address, e.g. `0.0.0.0:9091`; each service has its own default port.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Token that mutations and live views on this port require (`Authorization: Bearer`);
    /// unset = those endpoints answer 403. At least 16 characters; redacted in `/config`.
    #[serde(default)]
    pub token: Option<String>,
}

impl AdminConfig {
    /// Checks `admin.token`'s length.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self
            .token
            .as_deref()
            .is_some_and(|t| t.chars().count() < crate::auth::MIN_TOKEN_LEN)
        {
            return Err(ConfigError::invalid(
                "admin.token",
                format!("must be at least {} characters", crate::auth::MIN_TOKEN_LEN),
            ));
        }
        if self
            .token
            .as_deref()
            .is_some_and(|t| t.trim() != t || t.contains(char::is_control))
        {
            return Err(ConfigError::invalid(
                "admin.token",
                "must not contain spaces at its ends or control characters",
            ));
        }
        Ok(())
    }

    /// The listen address, or all interfaces on the service's default port.
    pub fn listen_or(&self, default_port: u16) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], default_port)))
    }
}

/// Serializes a configuration for `/config` and `--print-config`, secrets redacted.
pub fn effective_json<T: Serialize>(cfg: &T) -> serde_json::Value {
    let mut v = serde_json::to_value(cfg).unwrap_or(serde_json::Value::Null);
    crate::redact::redact_json(&mut v);
    v
}

/// Ensures a setting is within `min..=max`.
pub fn check_range<N>(setting: &str, value: N, min: N, max: N) -> Result<(), ConfigError>
where
    N: PartialOrd + std::fmt::Display + Copy,
{
    if value < min || value > max {
        return Err(ConfigError::invalid(
            setting,
            format!("{value} is out of range; expected {min} to {max}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::io::Write;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        #[serde(default)]
        server: Server,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Server {
        #[serde(default = "default_port")]
        port: u16,
        #[serde(default)]
        name: String,
    }

    impl Default for Server {
        fn default() -> Self {
            Server {
                port: default_port(),
                name: String::new(),
            }
        }
    }

    fn default_port() -> u16 {
        80
    }

    impl Validate for Demo {
        fn validate(&self) -> Result<(), ConfigError> {
            check_range("server.port", self.server.port, 1, 65535)
        }
    }

    fn toml(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_then_file_then_env() {
        let d: Demo = load_from(None, env(&[])).unwrap();
        assert_eq!(d.server.port, 80);
        let f = toml("[server]\nport = 8080\nname = \"file\"\n");
        let d: Demo = load_from(Some(f.path()), env(&[])).unwrap();
        assert_eq!((d.server.port, d.server.name.as_str()), (8080, "file"));
        let d: Demo = load_from(
            Some(f.path()),
            env(&[
                ("FRAMEWIRE_SERVER__PORT", "9000"),
                ("FRAMEWIRE_LOG_FORMAT", "json"),
            ]),
        )
        .unwrap();
        assert_eq!((d.server.port, d.server.name.as_str()), (9000, "file"));
    }

    #[test]
    fn errors_are_one_line_and_name_the_setting() {
        let f = toml("[server]\nprot = 1\n");
        let e = load_from::<Demo>(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("prot") && !e.contains('\n'), "{e}");

        let e = load_from::<Demo>(None, env(&[("FRAMEWIRE_SERVER__PORT", "0")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "invalid setting `server.port`: 0 is out of range; expected 1 to 65535"
        );

        let e = load_from::<Demo>(None, env(&[("FRAMEWIRE_SERVER__PORT", "abc")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.port"), "{e}");

        let e = load_from::<Demo>(Some(Path::new("/nonexistent.toml")), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent.toml"), "{e}");
    }

    #[test]
    fn a_value_can_come_from_a_file_named_by_a_file_variable() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("name");
        std::fs::write(&secret, "from a secret\n").unwrap();
        let path = secret.to_str().unwrap();
        let d: Demo = load_from(None, env(&[("FRAMEWIRE_SERVER__NAME_FILE", path)])).unwrap();
        assert_eq!(
            d.server.name, "from a secret",
            "one trailing newline dropped"
        );

        let e = load_from::<Demo>(
            None,
            env(&[
                ("FRAMEWIRE_SERVER__NAME_FILE", path),
                ("FRAMEWIRE_SERVER__NAME", "direct"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "both FRAMEWIRE_SERVER__NAME and FRAMEWIRE_SERVER__NAME_FILE are set; keep one"
        );

        let e = load_from::<Demo>(
            None,
            env(&[("FRAMEWIRE_SERVER__NAME_FILE", "/nonexistent/secret")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("FRAMEWIRE_SERVER__NAME_FILE=/nonexistent/secret: cannot read the file")
                && !e.contains('\n'),
            "{e}"
        );
        // Outside configuration variables the suffix means nothing.
        let d: Demo = load_from(None, env(&[("FRAMEWIRE_LOG_FILE", "/x")])).unwrap();
        assert_eq!(d.server.name, "");
    }
}
