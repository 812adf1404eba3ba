//! Every binary refuses a bad configuration with exit code 64 and one line naming the setting.

use framewire_e2e::run_to_exit;

const BINARIES: [&str; 3] = ["framewire-ingest", "framewire-worker", "framewire-sink"];

fn assert_rejected(binary: &str, config: Option<&str>, env: &[(&str, &str)], setting: &str) {
    let (status, out) = run_to_exit(binary, config, &[], env);
    assert_eq!(
        status.code(),
        Some(64),
        "{binary} should exit 64 for a bad {setting}; output:\n{out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{binary}: ")))
        .unwrap_or_else(|| panic!("{binary}: no `{binary}: …` error line in:\n{out}"));
    assert!(
        line.contains(setting),
        "{binary}: error line does not name {setting}: {line}"
    );
}

#[test]
fn shared_settings_are_checked_by_every_binary() {
    for b in BINARIES {
        assert_rejected(
            b,
            None,
            &[("FRAMEWIRE_KAFKA__BROKERS", "no-port-here")],
            "kafka.brokers",
        );
        assert_rejected(b, Some("[kafka]\nbrokres = \"x:1\"\n"), &[], "brokres");
        assert_rejected(
            b,
            None,
            &[("FRAMEWIRE_TOPICS__PARTITIONS", "0")],
            "topics.partitions",
        );
        assert_rejected(
            b,
            None,
            &[("FRAMEWIRE_ADMIN__LISTEN", "not-an-address")],
            "admin.listen",
        );
        assert_rejected(
            b,
            Some("[topics]\nframes = \"bad topic\"\n"),
            &[],
            "topics.frames",
        );
    }
}

#[test]
fn missing_config_file_is_named() {
    for b in BINARIES {
        let (status, out) = run_to_exit(b, None, &["--config", "/nonexistent/framewire.toml"], &[]);
        assert_eq!(status.code(), Some(64), "{out}");
        assert!(out.contains("/nonexistent/framewire.toml"), "{out}");
    }
}

#[test]
fn service_specific_settings() {
    assert_rejected(
        "framewire-ingest",
        Some("[[cameras]]\nid = \"gate 1\"\nurl = \"rtsp://127.0.0.1/x\"\n"),
        &[],
        "cameras[0]",
    );
    assert_rejected(
        "framewire-ingest",
        Some("[[cameras]]\nid = \"gate\"\nurl = \"http://127.0.0.1/x\"\n"),
        &[],
        "cameras[0]",
    );
    assert_rejected(
        "framewire-worker",
        None,
        &[("FRAMEWIRE_WORKER__AUTO_OFFSET_RESET", "newest")],
        "worker.auto_offset_reset",
    );
    assert_rejected(
        "framewire-sink",
        None,
        &[("FRAMEWIRE_SINK__WINDOW_MS", "5")],
        "sink.window_ms",
    );
    assert_rejected(
        "framewire-sink",
        None,
        &[("FRAMEWIRE_SINK__DATABASE_URL", "mysql://x/y")],
        "sink.database_url",
    );
}

#[test]
fn help_and_version() {
    for b in BINARIES {
        let (status, out) = run_to_exit(b, None, &["--version"], &[]);
        assert!(status.success(), "{out}");
        assert!(
            out.contains(b) && out.contains(env!("CARGO_PKG_VERSION")),
            "{out}"
        );
        let (status, out) = run_to_exit(b, None, &["--help"], &[]);
        assert!(status.success() && out.contains("--config"), "{out}");
    }
}
