//! No secret leaks: a distinct random secret is planted in every place a secret can come
//! from (Kafka SASL and TLS passwords from the environment and from `_FILE`s, database URL
//! passwords in userinfo and in the query string, the admin token, camera passwords in a
//! URL, a variable and a file, OTLP exporter headers and endpoint), the whole fleet runs
//! with them at debug log level — including the failures those secrets cause (a wrong
//! Kafka password, a wrong database password, wrong camera passwords, a spec that tries to
//! borrow another setting's secret) — and then every output is searched for every secret:
//! logs, `/config`, `/metrics`, `/readyz`, the camera API and the sink API answers, the
//! worker's debug views, `--print-config`, and every record (headers and payload) of every
//! topic, the dead-letter topic included.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use framewire_e2e::frames::{FrameProducer, meta};
use framewire_e2e::{
    Service, SinkDb, Topics, bin, camera_toml, eventually, pg_dsn, read_topic, require_stack,
    sink_section, unique,
};
use rdkafka::message::{Headers, Message};

const RTSP: &str = "rtsp://127.0.0.1:8554";
/// The stack's `secure` mount accepts this password (user `framewire`): the one camera
/// secret that works, so that the success path runs too.
const CAMERA_PASSWORD: &str = "s3cret-cam";

/// The planted secrets, by where they come from.
struct Secrets(BTreeMap<&'static str, String>);

impl Secrets {
    fn new() -> Self {
        let mut m = BTreeMap::new();
        for place in [
            "kafka sasl.password (env)",
            "kafka ssl.key.password (_FILE)",
            "kafka ssl.keystore.password (toml)",
            "kafka sasl.password on the SASL listener (wrong)",
            "database url userinfo password",
            "database url ?password=",
            "admin.token",
            "camera password in the url (wrong)",
            "camera password_env value (wrong)",
            "camera password_file content (wrong)",
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_ENDPOINT ?token=",
        ] {
            // Letters and digits only: the same text whatever encoding an output uses.
            let secret = format!(
                "Zq{:016x}{:08x}",
                rand::random::<u64>(),
                rand::random::<u32>()
            );
            m.insert(place, secret);
        }
        m.insert(
            "camera password in the url (works)",
            CAMERA_PASSWORD.to_owned(),
        );
        Secrets(m)
    }

    fn get(&self, place: &str) -> &str {
        &self.0[place]
    }

    /// Every (place, secret) found in `text`.
    fn found_in(&self, text: &[u8]) -> Vec<&'static str> {
        self.0
            .iter()
            .filter(|(_, s)| text.windows(s.len()).any(|w| w == s.as_bytes()))
            .map(|(p, _)| *p)
            .collect()
    }
}

/// What was read, by where it was read.
#[derive(Default)]
struct Outputs(Vec<(String, Vec<u8>)>);

impl Outputs {
    fn add(&mut self, source: impl Into<String>, text: impl Into<Vec<u8>>) {
        self.0.push((source.into(), text.into()));
    }

    async fn http(&mut self, client: &reqwest::Client, url: &str, token: Option<&str>) {
        let mut req = client.get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let text = match req.send().await {
            Ok(r) => {
                let head = format!("{} {:?}", r.status(), r.headers());
                format!("{head} {}", r.text().await.unwrap_or_default())
            }
            Err(e) => format!("request failed: {e}"),
        };
        self.add(format!("GET {url}"), text);
    }

    /// The admin routes every service has.
    async fn admin(&mut self, client: &reqwest::Client, s: &Service) {
        for path in ["/config", "/metrics", "/readyz", "/healthz"] {
            self.http(client, &format!("{}{path}", s.admin), None).await;
        }
    }

    fn topic(&mut self, topic: &str) -> usize {
        let records = read_topic(topic, Duration::from_secs(2));
        for (i, m) in records.iter().enumerate() {
            let mut text = Vec::new();
            text.extend_from_slice(m.key().unwrap_or_default());
            if let Some(h) = m.headers() {
                for header in h.iter() {
                    text.extend_from_slice(header.key.as_bytes());
                    text.extend_from_slice(header.value.unwrap_or_default());
                }
            }
            text.extend_from_slice(m.payload().unwrap_or_default());
            self.add(format!("{topic} record {i}"), text);
        }
        records.len()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path.display().to_string()
}

/// `binary --config <file> --print-config` with `env`: its whole output.
fn print_config(binary: &str, dir: &Path, config: &str, env: &[(&str, &str)]) -> Vec<u8> {
    let path = write(dir, &format!("{binary}-print.toml"), config);
    let out = Command::new(bin(binary))
        .args(["--config", &path, "--print-config"])
        .envs(env.iter().copied())
        .output()
        .expect("run --print-config");
    [out.stdout, out.stderr].concat()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_planted_secret_reaches_any_output() {
    require_stack();
    let secrets = Secrets::new();
    let s = |place: &str| secrets.get(place).to_owned();
    let dir = tempfile::tempdir().expect("temp dir");
    let creds_dir = dir.path().join("camera-credentials");
    std::fs::create_dir(&creds_dir).expect("credentials dir");
    write(
        &creds_dir,
        "file-cam",
        &s("camera password_file content (wrong)"),
    );
    let key_password_file = write(
        dir.path(),
        "ssl-key-password",
        &s("kafka ssl.key.password (_FILE)"),
    );
    let token_file = write(dir.path(), "admin-token", &s("admin.token"));
    let topics = Topics::unique("secrets");
    let token = s("admin.token");

    // Every service: Kafka passwords (unused on the PLAINTEXT listener, but configured), the
    // admin token from a file, OTLP exporter secrets, debug logs.
    let otlp_endpoint = format!(
        "http://127.0.0.1:9/v1/traces?token={}",
        s("OTEL_EXPORTER_OTLP_ENDPOINT ?token=")
    );
    let otlp_headers = format!("x-api-key={}", s("OTEL_EXPORTER_OTLP_HEADERS"));
    let sasl_password = s("kafka sasl.password (env)");
    let common: Vec<(&str, &str)> = vec![
        ("FRAMEWIRE_LOG", "debug"),
        ("FRAMEWIRE_KAFKA__OPTIONS__SASL_PASSWORD", &sasl_password),
        (
            "FRAMEWIRE_KAFKA__OPTIONS__SSL_KEY_PASSWORD_FILE",
            &key_password_file,
        ),
        ("FRAMEWIRE_ADMIN__TOKEN_FILE", &token_file),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp_endpoint),
        ("OTEL_EXPORTER_OTLP_HEADERS", &otlp_headers),
    ];
    let kafka_options = format!(
        "\n[kafka.options]\n\"ssl.keystore.password\" = \"{}\"\n",
        s("kafka ssl.keystore.password (toml)")
    );
    let base = format!("{}{kafka_options}", topics.toml());

    // Ingest: a camera that works (password in its URL) and three whose passwords are wrong.
    let ok_cam = unique("ok-cam");
    let cams = [
        camera_toml(
            &ok_cam,
            &format!("rtsp://framewire:{CAMERA_PASSWORD}@127.0.0.1:8554/secure"),
            "",
        ),
        camera_toml(
            &unique("url-cam"),
            &format!(
                "rtsp://framewire:{}@127.0.0.1:8554/secure",
                s("camera password in the url (wrong)")
            ),
            "",
        ),
        camera_toml(
            &unique("env-cam"),
            &format!("{RTSP}/secure"),
            "credentials = { username = \"framewire\", password_env = \"FRAMEWIRE_CAMERA_LEAK\" }",
        ),
        camera_toml(
            &unique("file-cam"),
            &format!("{RTSP}/secure"),
            "credentials = { username = \"framewire\", password_file = \"file-cam\" }",
        ),
    ]
    .join("\n");
    let ingest_config = format!(
        "{base}\n[ingest]\ncredentials_dir = \"{}\"\n\n{cams}\n",
        creds_dir.display()
    );
    let camera_env_secret = s("camera password_env value (wrong)");
    let mut ingest_env = common.clone();
    ingest_env.push(("FRAMEWIRE_CAMERA_LEAK", &camera_env_secret));
    let mut ingest = Service::start("framewire-ingest", &ingest_config, &ingest_env);

    // An ingest with a wrong password on the SASL listener: authentication errors.
    let sasl_wrong = s("kafka sasl.password on the SASL listener (wrong)");
    let sasl_config = format!(
        "[kafka]\nbrokers = \"127.0.0.1:9094\"\n[kafka.options]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"{}\"\n\"sasl.password\" = \"{sasl_wrong}\"\n[topics]\ncreate = false\nframes = \"{}\"\ncontrol = \"{}\"\nleases = \"{}\"\n",
        unique("nobody"),
        topics.frames,
        topics.control,
        topics.leases()
    );
    let mut sasl_ingest = Service::start(
        "framewire-ingest",
        &sasl_config,
        &[("FRAMEWIRE_LOG", "debug")],
    );

    let mut worker = Service::start(
        "framewire-worker",
        &format!(
            "{base}\n[worker]\ngroup_id = \"{}\"\ndecode_threads = 1\n",
            unique("w")
        ),
        &common,
    );
    let (sink_section_sqlite, sink_http) = sink_section(
        &unique("sink"),
        &SinkDb::Sqlite(dir.path().join("summaries.db")),
        "window_ms = 2000\nflush_interval_ms = 500\n",
    );
    let mut sink = Service::start(
        "framewire-sink",
        &format!("{base}\n{sink_section_sqlite}"),
        &common,
    );

    // Sinks whose database passwords are wrong: in the URL's userinfo, and in its query
    // string from a _FILE.
    let dsn = pg_dsn();
    let pg_host = dsn
        .rsplit_once('@')
        .map_or("127.0.0.1:55432/framewire", |(_, h)| h);
    let userinfo_url = format!(
        "postgres://framewire:{}@{pg_host}",
        s("database url userinfo password")
    );
    let query_url = format!(
        "postgres://framewire@{pg_host}?sslmode=disable&password={}",
        s("database url ?password=")
    );
    let query_url_file = write(dir.path(), "database-url", &query_url);
    let pg_a_config = format!(
        "{base}\n[sink]\ngroup_id = \"{}\"\ndatabase_url = \"{userinfo_url}\"\n",
        unique("sink-pg-a")
    );
    let mut sink_pg_a = Service::start("framewire-sink", &pg_a_config, &common);
    let pg_b_config = format!("{base}\n[sink]\ngroup_id = \"{}\"\n", unique("sink-pg-b"));
    let mut pg_b_env = common.clone();
    pg_b_env.push(("FRAMEWIRE_SINK__DATABASE_URL_FILE", &query_url_file));
    let mut sink_pg_b = Service::start("framewire-sink", &pg_b_config, &pg_b_env);

    ingest.wait_ready(Duration::from_secs(60)).await;
    worker.wait_ready(Duration::from_secs(60)).await;
    sink.wait_ready(Duration::from_secs(60)).await;

    let client = reqwest::Client::new();
    let mut out = Outputs::default();

    // The camera API: a good write with the token, a write without it, a spec that tries to
    // borrow the Kafka password and one that tries a file outside the directory.
    let api_cam = unique("api-cam");
    let put = |body: serde_json::Value, auth: Option<String>| {
        let mut req = client
            .put(format!("{}/cameras/{api_cam}", ingest.admin))
            .json(&body);
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        req.send()
    };
    for (body, auth) in [
        (
            serde_json::json!({"url": format!("{RTSP}/secure"), "credentials":
                {"username": "framewire", "password_env": "FRAMEWIRE_CAMERA_LEAK"}}),
            Some(token.clone()),
        ),
        (serde_json::json!({"url": format!("{RTSP}/moving")}), None),
        (
            serde_json::json!({"url": format!("{RTSP}/secure"), "credentials":
                {"username": "framewire", "password_env": "FRAMEWIRE_KAFKA__OPTIONS__SASL_PASSWORD"}}),
            Some(token.clone()),
        ),
        (
            serde_json::json!({"url": format!("{RTSP}/secure"), "credentials":
                {"username": "framewire", "password_file": key_password_file}}),
            Some(token.clone()),
        ),
    ] {
        let r = put(body.clone(), auth).await.expect("PUT /cameras");
        let status = r.status();
        out.add(
            format!("PUT /cameras {body}"),
            format!("{status} {}", r.text().await.unwrap_or_default()),
        );
    }

    // The working camera streams through the fleet into the sink's windows.
    eventually(
        "the camera's windows in the sink API",
        Duration::from_secs(120),
        || async {
            let r = client
                .get(format!("{sink_http}/api/cameras/{ok_cam}/summaries"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let v: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
            match v["windows"].as_array() {
                Some(a) if !a.is_empty() => Ok(()),
                _ => {
                    // Where the frames stop, for the failure message.
                    let (_, cam) = ingest.get(&format!("/cameras/{ok_cam}")).await;
                    let (_, wm) = worker.get("/metrics").await;
                    let decoded = wm
                        .lines()
                        .filter(|l| l.starts_with("framewire_worker_frames_decoded_total"))
                        .collect::<Vec<_>>()
                        .join(" ");
                    Err(format!("sink: {v}\ningest: {cam}\nworker: {decoded}"))
                }
            }
        },
    )
    .await;

    // A record the worker cannot use: it goes to the dead-letter topic with its reason.
    FrameProducer::new(&topics.frames)
        .send(
            &meta(
                &unique("poison-cam"),
                "s1",
                0,
                true,
                framewire_e2e::now_ms(),
            ),
            b"not a picture",
        )
        .await;
    eventually(
        "the poison record in the DLQ",
        Duration::from_secs(30),
        || async {
            let (_, m) = worker.get("/metrics").await;
            if m.contains("framewire_worker_dlq_records_total{") {
                Ok(())
            } else {
                Err("no dead letter yet".to_owned())
            }
        },
    )
    .await;
    // The failing services have had time to fail (and retry) by now.
    eventually(
        "the SASL ingest reports its authentication failure",
        Duration::from_secs(30),
        || async {
            let (_, body) = sasl_ingest.get("/readyz").await;
            let log = sasl_ingest.log();
            if log.to_lowercase().contains("auth") {
                Ok(())
            } else {
                Err(format!("{body} / {}", log.lines().last().unwrap_or("")))
            }
        },
    )
    .await;

    for s in [
        &ingest,
        &sasl_ingest,
        &worker,
        &sink,
        &sink_pg_a,
        &sink_pg_b,
    ] {
        out.admin(&client, s).await;
    }
    for path in ["/cameras", "/leases"] {
        out.http(&client, &format!("{}{path}", ingest.admin), None)
            .await;
    }
    out.http(&client, &format!("{}/debug/assignment", worker.admin), None)
        .await;
    out.http(
        &client,
        &format!("{}/debug/cameras/{ok_cam}/snapshot.jpg", worker.admin),
        None,
    )
    .await;
    out.http(
        &client,
        &format!("{}/debug/cameras/nobody/snapshot.jpg", worker.admin),
        Some(&token),
    )
    .await;
    for path in [
        "/api/cameras".to_owned(),
        format!("/api/cameras/{ok_cam}/summaries"),
        format!("/api/cameras/{ok_cam}/events"),
        format!("/api/cameras/{ok_cam}/detections/latest"),
        "/api/openapi.json".to_owned(),
        "/api/cameras/nobody/summaries?from=x".to_owned(),
    ] {
        out.http(&client, &format!("{sink_http}{path}"), None).await;
    }

    // --print-config of each service with the same secrets.
    out.add(
        "framewire-ingest --print-config",
        print_config("framewire-ingest", dir.path(), &ingest_config, &ingest_env),
    );
    out.add(
        "framewire-worker --print-config",
        print_config("framewire-worker", dir.path(), &base, &common),
    );
    out.add(
        "framewire-sink --print-config",
        print_config("framewire-sink", dir.path(), &pg_b_config, &pg_b_env),
    );

    // Logs, after a clean stop (shutdown lines included), then every topic.
    for s in [
        &mut ingest,
        &mut sasl_ingest,
        &mut worker,
        &mut sink,
        &mut sink_pg_a,
        &mut sink_pg_b,
    ] {
        s.terminate(Duration::from_secs(30));
        out.add(format!("{} log", s.name), s.log());
    }
    let mut records = 0;
    for t in [
        &topics.frames,
        &topics.stats,
        &topics.dlq,
        &topics.control,
        &topics.leases(),
    ] {
        records += out.topic(t);
    }
    let dead_letters = read_topic(&topics.dlq, Duration::from_secs(1)).len();

    // The outputs are real: each service logged at debug level, the fleet moved records.
    let log_bytes: usize = out
        .0
        .iter()
        .filter(|(k, _)| k.ends_with(" log"))
        .map(|(_, v)| v.len())
        .sum();
    assert!(
        log_bytes > 20_000,
        "debug logs were written ({log_bytes} bytes)"
    );
    assert!(records > 20, "records on the topics: {records}");
    assert!(dead_letters >= 1, "the poison record is in the DLQ");
    let control = out
        .0
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{} record", topics.control)))
        .count();
    assert!(control >= 1, "the API wrote to the control topic");

    // Kept for a human (and a failing CI run): every output, one file.
    let dump = framewire_e2e::artifacts_dir().join("secrets-outputs.txt");
    let mut all = Vec::new();
    for (source, text) in &out.0 {
        all.extend_from_slice(format!("\n===== {source}\n").as_bytes());
        all.extend_from_slice(text);
    }
    std::fs::write(&dump, &all).expect("write the outputs");

    // The secrets were loaded and used, so the search below looks where they could be.
    let text_of = |prefix: &str| -> String {
        out.0
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    };
    let ingest_config_text = ingest_config.clone();
    let ingest_config = text_of(&format!("GET {}/config", ingest.admin));
    for key in [
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "token",
    ] {
        assert!(
            ingest_config.contains(&format!("\"{key}\":\"[redacted]\"")),
            "{key} loaded and shown redacted in /config: {ingest_config}"
        );
    }
    let cameras = text_of(&format!("GET {}/cameras", ingest.admin));
    assert!(
        cameras.matches("\"auth\"").count() >= 3,
        "the three cameras with wrong passwords fail RTSP auth (their secrets were sent): {cameras}"
    );
    let puts = text_of("PUT /cameras");
    assert!(
        puts.contains("202") && puts.contains("401") && puts.matches("400").count() >= 2,
        "{puts}"
    );

    // The search finds each secret where it was planted (so an empty result means something).
    let planted = [
        ingest_config_text.as_bytes(),
        camera_env_secret.as_bytes(),
        sasl_wrong.as_bytes(),
        query_url.as_bytes(),
        pg_a_config.as_bytes(),
        otlp_endpoint.as_bytes(),
        otlp_headers.as_bytes(),
        sasl_password.as_bytes(),
        token.as_bytes(),
        kafka_options.as_bytes(),
        s("kafka ssl.key.password (_FILE)").as_bytes(),
        s("camera password_file content (wrong)").as_bytes(),
    ]
    .concat();
    assert_eq!(secrets.found_in(&planted).len(), secrets.0.len());

    let mut leaks = Vec::new();
    for (source, text) in &out.0 {
        for place in secrets.found_in(text) {
            leaks.push(format!("{place} found in {source}"));
        }
    }
    println!(
        "{} outputs searched ({} bytes of logs, {records} records, {dead_letters} dead letters) for {} secrets",
        out.0.len(),
        log_bytes,
        secrets.0.len()
    );
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}
