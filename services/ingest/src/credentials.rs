//! Where a camera's password may come from.
//!
//! A camera spec names its password by reference (`password_env` or `password_file`), and
//! specs come from people and systems with less trust than the process itself: the control
//! topic, the camera API. Without limits, a spec could name the Kafka SASL password's
//! variable or the database URL's file and point the camera at an RTSP server that asks
//! for Basic auth — and receive that secret. So references resolve only inside an
//! allowlist: variables whose name starts with `ingest.credentials_env_prefix` (and that are
//! not configuration variables), and files inside `ingest.credentials_dir` (no `..`, no
//! symlink out of it). A spec asking for anything else is refused with one line naming the
//! camera and the rule; config cameras fail the start, API writes get a 400, control
//! records mark the camera invalid on `/cameras`.

use std::path::{Component, Path, PathBuf};

use framewire_kit::config::ENV_PREFIX;
use framewire_wire::{CameraSpec, CredentialsRef};

/// The allowlist camera credentials resolve from.
#[derive(Debug, Clone)]
pub struct CredentialPolicy {
    env_prefix: String,
    dir: PathBuf,
}

impl CredentialPolicy {
    /// The policy of `ingest.credentials_env_prefix` and `ingest.credentials_dir`.
    pub fn new(env_prefix: &str, dir: &str) -> Self {
        CredentialPolicy {
            env_prefix: env_prefix.to_owned(),
            dir: PathBuf::from(dir),
        }
    }

    /// Why `spec`'s credentials reference is outside the allowlist, if it is (one line
    /// naming the camera). Pure: files are checked again, symlinks resolved, when read.
    pub fn check(&self, spec: &CameraSpec) -> Result<(), String> {
        let Some(r) = &spec.credentials else {
            return Ok(());
        };
        let id = &spec.id;
        if let Some(var) = &r.password_env {
            self.check_env(var)
                .map_err(|m| format!("camera {id}: credentials.password_env {var:?} {m}"))?;
        }
        if let Some(file) = &r.password_file {
            self.path_in_dir(file)
                .map_err(|m| format!("camera {id}: credentials.password_file {file:?} {m}"))?;
        }
        Ok(())
    }

    fn check_env(&self, var: &str) -> Result<(), String> {
        if !var.starts_with(&self.env_prefix) {
            return Err(format!(
                "is not allowed: camera password variables must start with {:?} (ingest.credentials_env_prefix)",
                self.env_prefix
            ));
        }
        if var.starts_with(ENV_PREFIX) && var.contains("__") {
            return Err(
                "is not allowed: it is a configuration variable, never a camera password"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// The file `name` names inside the directory: a plain relative path, or an absolute
    /// path under the directory; never `..`.
    fn path_in_dir(&self, name: &str) -> Result<PathBuf, String> {
        let outside = || {
            format!(
                "is not allowed: camera password files must be inside {} (ingest.credentials_dir)",
                self.dir.display()
            )
        };
        let path = Path::new(name);
        if name.is_empty() || path.components().any(|c| c == Component::ParentDir) {
            return Err(outside());
        }
        let full = if path.is_absolute() {
            path.strip_prefix(&self.dir).map_err(|_| outside())?;
            path.to_path_buf()
        } else {
            self.dir.join(path)
        };
        if full == self.dir {
            return Err(outside());
        }
        Ok(full)
    }

    /// The password `r` names, read now. Fails (one line, never the value) when the
    /// reference is outside the allowlist, the variable is unset, or the file cannot be
    /// read or resolves (through symlinks) outside the directory.
    pub fn resolve(&self, r: &CredentialsRef) -> Result<String, String> {
        match (&r.password_env, &r.password_file) {
            (Some(var), _) => {
                self.check_env(var)
                    .map_err(|m| format!("password variable {var} {m}"))?;
                std::env::var(var).map_err(|_| format!("password variable {var} is not set"))
            }
            (None, Some(name)) => {
                let path = self
                    .path_in_dir(name)
                    .map_err(|m| format!("password file {name} {m}"))?;
                let real = path
                    .canonicalize()
                    .map_err(|e| format!("cannot read password file {name}: {e}"))?;
                let dir = self
                    .dir
                    .canonicalize()
                    .map_err(|e| format!("cannot read password file {name}: {e}"))?;
                if !real.starts_with(&dir) {
                    return Err(format!(
                        "password file {name} is not allowed: it resolves outside {} (ingest.credentials_dir)",
                        self.dir.display()
                    ));
                }
                std::fs::read_to_string(&real)
                    .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                    .map_err(|e| format!("cannot read password file {name}: {e}"))
            }
            (None, None) => Ok(String::new()),
        }
    }

    /// The first configuration secret file (`FRAMEWIRE_…__…_FILE`) inside the credentials
    /// directory, as `(variable, path)`: a spec could then name it, so the start is refused.
    pub fn exposed_setting_file(
        &self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Option<(String, String)> {
        let dir = self.dir.canonicalize().unwrap_or_else(|_| self.dir.clone());
        env.into_iter().find(|(k, v)| {
            k.starts_with(ENV_PREFIX) && k.contains("__") && k.ends_with("_FILE") && {
                let p = Path::new(v);
                let p = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
                p.starts_with(&dir)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(env: Option<&str>, file: Option<&str>) -> CameraSpec {
        let mut s: CameraSpec =
            serde_json::from_str(r#"{"id":"gate-1","url":"rtsp://cam/s"}"#).unwrap();
        s.credentials = Some(CredentialsRef {
            username: "viewer".into(),
            password_env: env.map(str::to_owned),
            password_file: file.map(str::to_owned),
        });
        s
    }

    fn policy(dir: &str) -> CredentialPolicy {
        CredentialPolicy::new("FRAMEWIRE_CAMERA_", dir)
    }

    #[test]
    fn variables_outside_the_prefix_or_in_the_config_namespace_are_refused() {
        let p = policy("/etc/creds");
        assert!(p.check(&spec(Some("FRAMEWIRE_CAMERA_GATE1"), None)).is_ok());
        let e = p
            .check(&spec(Some("FRAMEWIRE_KAFKA__OPTIONS__SASL_PASSWORD"), None))
            .unwrap_err();
        assert!(
            e.starts_with("camera gate-1: credentials.password_env"),
            "{e}"
        );
        assert!(e.contains("ingest.credentials_env_prefix"), "{e}");
        let e = p
            .check(&spec(Some("FRAMEWIRE_CAMERA_X__PASSWORD"), None))
            .unwrap_err();
        assert!(e.contains("configuration variable"), "{e}");
        assert!(p.check(&spec(Some("PGPASSWORD"), None)).is_err());
    }

    #[test]
    fn files_must_stay_inside_the_directory() {
        let p = policy("/etc/creds");
        assert!(p.check(&spec(None, Some("gate-1"))).is_ok());
        assert!(p.check(&spec(None, Some("/etc/creds/gate-1"))).is_ok());
        assert!(p.check(&spec(None, Some("site-a/gate-1"))).is_ok());
        for bad in [
            "/etc/framewire/secrets/kafka-sasl-password",
            "../secrets/kafka-sasl-password",
            "/etc/creds/../secrets/db",
            "/etc/credsX/a",
            "/etc/creds",
            "",
        ] {
            let e = p.check(&spec(None, Some(bad))).unwrap_err();
            assert!(e.contains("ingest.credentials_dir"), "{bad}: {e}");
        }
    }

    #[test]
    fn resolve_reads_inside_and_refuses_a_symlink_out() {
        let root = std::env::temp_dir().join(format!("fw-creds-{}", std::process::id()));
        let dir = root.join("creds");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("gate-1"), "s3cret\n").unwrap();
        std::fs::write(root.join("kafka-password"), "kafka-secret").unwrap();
        std::os::unix::fs::symlink(root.join("kafka-password"), dir.join("sneaky")).unwrap();
        let p = policy(dir.to_str().unwrap());
        let r = |file: &str| spec(None, Some(file)).credentials.unwrap();
        assert_eq!(p.resolve(&r("gate-1")).unwrap(), "s3cret");
        let e = p.resolve(&r("sneaky")).unwrap_err();
        assert!(e.contains("resolves outside"), "{e}");
        assert!(!e.contains("kafka-secret"));
        let e = p.resolve(&r("missing")).unwrap_err();
        assert!(e.contains("cannot read password file missing"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_setting_file_inside_the_directory_is_found() {
        let p = policy("/etc/creds");
        let env = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        assert!(
            p.exposed_setting_file(env(
                "FRAMEWIRE_KAFKA__OPTIONS__SASL_PASSWORD_FILE",
                "/etc/framewire/secrets/kafka"
            ))
            .is_none()
        );
        assert_eq!(
            p.exposed_setting_file(env(
                "FRAMEWIRE_KAFKA__OPTIONS__SASL_PASSWORD_FILE",
                "/etc/creds/kafka"
            ))
            .map(|(k, _)| k)
            .as_deref(),
            Some("FRAMEWIRE_KAFKA__OPTIONS__SASL_PASSWORD_FILE")
        );
    }

    proptest! {
        /// Whatever a spec names, an accepted file reference lies inside the directory.
        #[test]
        fn accepted_files_never_leave_the_directory(
            parts in proptest::collection::vec(
                prop_oneof![Just("..".to_owned()), Just(".".to_owned()), "[a-z]{1,4}"], 0..5),
            absolute in any::<bool>(),
        ) {
            let p = policy("/etc/creds");
            let joined = parts.join("/");
            let name = if absolute { format!("/etc/creds/{joined}") } else { joined };
            if let Ok(full) = p.path_in_dir(&name) {
                let mut depth = 0i32;
                for c in full.strip_prefix("/etc/creds").unwrap().components() {
                    match c {
                        Component::ParentDir => depth -= 1,
                        Component::Normal(_) => depth += 1,
                        _ => {}
                    }
                    prop_assert!(depth >= 0, "{} escapes", name);
                }
                prop_assert!(depth >= 1, "{} names the directory itself", name);
            }
        }
    }
}
