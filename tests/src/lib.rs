//! Harness for the workspace-level end-to-end tests.
//!
//! The tests run the real binaries (built by `cargo build --bins`, found in the target
//! directory) against the real local stack that `make stack-up` starts: Kafka on
//! 127.0.0.1:9092, PostgreSQL on 127.0.0.1:55432, the RTSP test server on
//! 127.0.0.1:8554. A missing stack fails the tests with a message; it never skips them.
//! Every test uses its own topics, consumer groups and camera ids, so runs do not see
//! each other's data.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub mod accountant;
pub mod chaos;
pub mod frames;

use rand::RngExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

/// Kafka bootstrap of the local stack.
pub const KAFKA: &str = "127.0.0.1:9092";
/// RTSP server of the local stack.
pub const RTSP: &str = "rtsp://127.0.0.1:8554";
/// PostgreSQL of the local stack (override with `FRAMEWIRE_TEST_PG_DSN`).
pub const PG_DSN: &str = "postgres://framewire:framewire@127.0.0.1:55432/framewire";

/// The PostgreSQL DSN tests use.
pub fn pg_dsn() -> String {
    std::env::var("FRAMEWIRE_TEST_PG_DSN").unwrap_or_else(|_| PG_DSN.to_owned())
}

/// The last `lines` lines of a local stack component's log (`rtsp`, `kafka`, `postgres`), for
/// failure messages; lines about clients connecting and leaving are skipped. Empty when the
/// log cannot be read.
pub fn stack_log_tail(component: &str, lines: usize) -> String {
    let dir = std::env::var_os("FW_STACK_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.stack"),
        PathBuf::from,
    );
    log_tail(&dir.join("logs").join(format!("{component}.log")), lines)
}

/// The last `lines` lines of the last 64 KiB of `path`, without client connect/close lines.
fn log_tail(path: &Path, lines: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let mut bytes = Vec::new();
    if file
        .seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))
        .is_err()
        || file.read_to_end(&mut bytes).is_err()
    {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("client connected from") && !l.contains("client from"))
        .collect();
    kept[kept.len().saturating_sub(lines)..].join("\n")
}

/// Panics with a clear message unless the local stack answers on its ports.
pub fn require_stack() {
    for (what, addr) in [
        ("Kafka", "127.0.0.1:9092"),
        ("RTSP server", "127.0.0.1:8554"),
        ("PostgreSQL", "127.0.0.1:55432"),
    ] {
        let a: SocketAddr = addr.parse().expect("static address");
        assert!(
            TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok(),
            "{what} is not listening on {addr}: start the local stack with `make stack-up`"
        );
    }
}

/// A short random suffix that makes names unique per test run.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::rng().random::<u32>())
}

/// The value after `name` on the command line (`--cameras 50`), or `default`.
pub fn cli_arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Appends `line` as one JSON line to `path` (created when missing): how the benchmarks
/// hand their numbers to `scripts/bench/summary.py`.
pub fn append_json_line(path: &Path, line: &serde_json::Value) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{line}")
}

/// (CPU seconds used so far, resident memory in bytes) of a process, from `/proc`.
pub fn process_usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks / 100.0, rss_kb * 1024)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Path of a workspace binary (`FRAMEWIRE_BIN_DIR`, else `target/debug`).
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("FRAMEWIRE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
            target.join("debug")
        });
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not found: run `cargo build --bins` first",
        path.display()
    );
    path
}

/// Creates the frames and stats topics of `topics` with `partitions` partitions and records
/// of up to 8 MiB (benchmarks fill them before a service starts).
pub async fn create_big_topics(topics: &Topics, partitions: i32) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaErrorCode;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .create()?;
    let new: Vec<NewTopic<'_>> = [&topics.frames, &topics.stats]
        .iter()
        .map(|name| {
            NewTopic::new(name, partitions, TopicReplication::Fixed(1))
                .set("max.message.bytes", "8388608")
        })
        .collect();
    for r in admin.create_topics(&new, &AdminOptions::new()).await? {
        if let Err((name, e)) = r
            && e != RDKafkaErrorCode::TopicAlreadyExists
        {
            anyhow::bail!("cannot create topic {name}: {e}");
        }
    }
    Ok(())
}

/// The sum of `topic`'s high watermarks (records written so far, on a fresh topic).
pub fn high_watermarks(topic: &str) -> anyhow::Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut sum = 0;
    for t in md.topics() {
        for p in t.partitions() {
            let (_, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            sum += high;
        }
    }
    Ok(sum)
}

/// Topic names unique to one test.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Frames topic.
    pub frames: String,
    /// Stats topic.
    pub stats: String,
    /// Detections topic.
    pub detections: String,
    /// Control topic.
    pub control: String,
    /// Dead-letter topic.
    pub dlq: String,
}

impl Topics {
    /// Fresh topic names with a common prefix.
    pub fn unique(test: &str) -> Self {
        Self::named(&unique(&format!("e2e-{test}")))
    }

    /// The topics `PREFIX.frames`, `PREFIX.stats`, … (what [`Topics::unique`] makes).
    pub fn named(p: &str) -> Self {
        Topics {
            frames: format!("{p}.frames"),
            stats: format!("{p}.stats"),
            detections: format!("{p}.detections"),
            control: format!("{p}.control"),
            dlq: format!("{p}.dlq"),
        }
    }

    /// The ingest lease topic that goes with these topics.
    pub fn leases(&self) -> String {
        format!("{}.leases", self.frames.trim_end_matches(".frames"))
    }

    /// Deletes these topics (those that exist) from the local broker; benchmarks call it so
    /// that their large topics do not stay behind.
    pub async fn delete(&self) {
        use rdkafka::admin::{AdminClient, AdminOptions};
        use rdkafka::client::DefaultClientContext;
        let admin: Result<AdminClient<DefaultClientContext>, _> =
            ClientConfig::new().set("bootstrap.servers", KAFKA).create();
        if let Ok(admin) = admin {
            let leases = self.leases();
            let names = [
                self.frames.as_str(),
                self.stats.as_str(),
                self.detections.as_str(),
                self.control.as_str(),
                self.dlq.as_str(),
                leases.as_str(),
            ];
            let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
        }
    }

    /// The `[kafka]` and `[topics]` TOML sections for these topics (4 partitions).
    pub fn toml(&self) -> String {
        format!(
            "[kafka]\nbrokers = \"{KAFKA}\"\n\n[topics]\nframes = \"{}\"\nstats = \"{}\"\ndetections = \"{}\"\ncontrol = \"{}\"\ndlq = \"{}\"\nleases = \"{}\"\npartitions = 4\nreplication_factor = 1\n",
            self.frames,
            self.stats,
            self.detections,
            self.control,
            self.dlq,
            self.leases()
        )
    }
}

/// Whether an ingest configuration's `[ingest]` section sets `group_id`.
fn ingest_sets_group(config: &str) -> bool {
    config.split_once("[ingest]").is_some_and(|(_, rest)| {
        let section = rest.split("\n[").next().unwrap_or("");
        section
            .lines()
            .any(|l| l.trim_start().starts_with("group_id"))
    })
}

/// A running Framewire binary with its own config file and log.
pub struct Service {
    /// Binary name.
    pub name: String,
    /// Admin base URL, `http://127.0.0.1:PORT`.
    pub admin: String,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts `binary` with `config` (TOML) plus `[admin] listen` on a free port.
    pub fn start(binary: &str, config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_on(binary, config, env, None)
    }

    /// [`Service::start`] under `taskset -c cpus` when `cpus` is given (benchmarks).
    pub fn start_on(binary: &str, config: &str, env: &[(&str, &str)], cpus: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            format!("[admin]\nlisten = \"127.0.0.1:{port}\"\n\n{config}"),
        )
        .expect("write config");
        let log = dir.path().join("service.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = match cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(bin(binary));
                c
            }
            None => Command::new(bin(binary)),
        };
        // A sink serves its web page on sink.http_listen (default 0.0.0.0:8080): a test
        // sink that does not choose a port gets a free one, so sinks never compete for 8080.
        if binary == "framewire-sink"
            && !config.contains("http_listen")
            && !env.iter().any(|(k, _)| *k == "FRAMEWIRE_SINK__HTTP_LISTEN")
        {
            command.env("FRAMEWIRE_SINK__HTTP_LISTEN", "127.0.0.1:0");
        }
        // Every ingest joins a lease group: one of its own unless the test chose one, so that
        // ingests of tests running side by side never take each other's cameras.
        if binary == "framewire-ingest"
            && !ingest_sets_group(config)
            && !env.iter().any(|(k, _)| *k == "FRAMEWIRE_INGEST__GROUP_ID")
        {
            command.env("FRAMEWIRE_INGEST__GROUP_ID", unique("e2e-ingest"));
        }
        // Likewise its own preview consumer group, so test sinks never share one.
        if binary == "framewire-sink"
            && !config.contains("preview_group_id")
            && !env
                .iter()
                .any(|(k, _)| *k == "FRAMEWIRE_SINK__PREVIEW_GROUP_ID")
        {
            command.env("FRAMEWIRE_SINK__PREVIEW_GROUP_ID", unique("e2e-preview"));
        }
        let child = command
            .arg("--config")
            .arg(&path)
            .env("FRAMEWIRE_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        Service {
            name: binary.to_owned(),
            admin: format!("http://127.0.0.1:{port}"),
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The service's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GETs an admin path: (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(&format!("{}{path}", self.admin)).await
    }

    /// Waits until `/healthz` answers 200 (the process is up); panics with the log otherwise.
    pub async fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.get("/healthz").await.0 != 200 {
            assert!(
                Instant::now() < deadline,
                "{} not alive after {timeout:?}\n--- log ---\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `/readyz` answers 200; panics with the log otherwise.
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.get("/readyz").await.0 == 200 {
                return;
            }
            if Instant::now() > deadline {
                let (code, body) = self.get("/readyz").await;
                panic!(
                    "{} not ready after {timeout:?}: {code} {body}\n--- log ---\n{}",
                    self.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends SIGTERM and waits (up to `timeout`) for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("service still running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "{} did not exit within {timeout:?} of SIGTERM\n--- log ---\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// GET a URL: (status, body); (0, error) when the connection fails.
pub async fn http_get(url: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    match client.get(url).send().await {
        Ok(r) => {
            let code = r.status().as_u16();
            (code, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// Runs a binary to completion with a config text and env: (exit status, stderr).
pub fn run_to_exit(
    binary: &str,
    config: Option<&str>,
    args: &[&str],
    env: &[(&str, &str)],
) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(bin(binary));
    if let Some(text) = config {
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).expect("write config");
        cmd.arg("--config").arg(path);
    }
    let out = cmd
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run binary");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

/// Runs `framewire-loadgen` against the local Kafka with `args` to the end: its summary
/// (the JSON line it prints last); panics with its output when it fails.
pub fn loadgen(args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin("framewire-loadgen"))
        .args(["--brokers", KAFKA, "--quiet"])
        .args(args)
        .env("FRAMEWIRE_LOG", "warn")
        .output()
        .expect("run framewire-loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "framewire-loadgen {args:?} failed ({}):\n{stderr}{stdout}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("framewire-loadgen printed no summary ({e}):\n{stdout}{stderr}"))
}

/// Fills `topic` (12 partitions when `framewire-loadgen` creates it) with `frames` records
/// of each of `cameras` cameras named `prefix-00000`, …, as fast as Kafka takes them;
/// `extra` picks the mode (`["--clip", FILE]`, `["--mode", "stats"]`). Loadgen's summary.
pub async fn fill_topic(
    topic: &str,
    cameras: usize,
    frames: u64,
    prefix: &str,
    extra: &[&str],
) -> serde_json::Value {
    let (cameras, frames) = (cameras.to_string(), frames.to_string());
    let args: Vec<String> = [
        "--cameras",
        &cameras,
        "--frames",
        &frames,
        "--rate",
        "max",
        "--topic",
        topic,
        "--partitions",
        "12",
        "--camera-prefix",
        prefix,
    ]
    .iter()
    .chain(extra)
    .map(|a| (*a).to_owned())
    .collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        loadgen(&refs)
    })
    .await
    .expect("framewire-loadgen")
}

/// Reads every record of `topic` from the beginning until none arrives for `idle`.
pub fn read_topic(topic: &str, idle: Duration) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .set("group.id", unique("e2e-reader"))
        .set("enable.auto.commit", "false")
        .set("max.partition.fetch.bytes", "16777216")
        .create()
        .expect("test consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("partition");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let started = Instant::now();
    let mut last = Instant::now();
    while last.elapsed() < idle {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{topic} never went quiet for {idle:?}: stop its producers before reading it"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push(m.detach());
                last = Instant::now();
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// The stats records among `messages`, each checked against `docs/stats.schema.json`;
/// panics with the record when one does not match or is not a `StatsRecord`.
pub fn validated_stats(messages: &[OwnedMessage]) -> Vec<framewire_wire::StatsRecord> {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/stats.schema.json"))
            .expect("docs/stats.schema.json is JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    messages
        .iter()
        .map(|m| {
            let json: serde_json::Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).expect("stats JSON");
            if let Err(e) = validator.validate(&json) {
                panic!("stats record does not match docs/stats.schema.json: {e}\n{json}");
            }
            serde_json::from_value(json).expect("a StatsRecord")
        })
        .collect()
}

/// A record's headers as a map (last value wins).
pub fn headers_of(m: &OwnedMessage) -> HashMap<String, String> {
    let mut map = HashMap::new();
    if let Some(h) = m.headers() {
        for hd in h.iter() {
            map.insert(
                hd.key.to_owned(),
                String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned(),
            );
        }
    }
    map
}

/// The trace id inside a `traceparent` value.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    traceparent.split('-').nth(1)
}

/// A minimal OTLP/HTTP trace collector on loopback: it accepts `POST /v1/traces`
/// (protobuf bodies, kept as bytes) and answers 200, so tests can check which services
/// exported spans of which trace.
pub struct OtlpCollector {
    /// `http://127.0.0.1:PORT`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl OtlpCollector {
    /// Starts the collector on a free port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind collector");
        let endpoint = format!("http://{}", listener.local_addr().expect("local addr"));
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = bodies.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve_otlp(conn, store.clone()));
            }
        });
        OtlpCollector { endpoint, bodies }
    }

    /// The request bodies received so far.
    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.bodies.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

async fn serve_otlp(
    conn: tokio::net::TcpStream,
    store: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let mut conn = BufReader::new(conn);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        // Request line and headers, up to the empty line.
        loop {
            line.clear();
            match conn.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if conn.read_exact(&mut body).await.is_err() {
            return;
        }
        if let Ok(mut b) = store.lock() {
            b.push(body);
        }
        let reply =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if conn.get_mut().write_all(reply).await.is_err() {
            return;
        }
    }
}

/// Hex to bytes (for trace ids); `None` on odd length or a non-hex digit.
pub fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// Polls `probe` every 200 ms until it returns `Some`, or panics after `timeout` with
/// `what` and the last value seen.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) => {
                assert!(
                    Instant::now() < deadline,
                    "timed out after {timeout:?} waiting for {what}; last: {last}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Produces one record (value `None` = tombstone) and waits for the broker's ack.
pub async fn produce(topic: &str, key: &str, value: Option<&[u8]>) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .create()
        .expect("producer");
    let mut record = FutureRecord::<str, [u8]>::to(topic).key(key);
    if let Some(v) = value {
        record = record.payload(v);
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
}

/// The value of a metric sample (`name{labels}` exactly as exposed), if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

// ---------------------------------------------------------------------------------------
// Sink helpers: stats records and dead letters to produce, a sink's database and HTTP port.

/// One record to produce: key, value, headers.
#[derive(Debug, Clone)]
pub struct Record {
    /// Record key (the camera id).
    pub key: String,
    /// Record value.
    pub value: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
}

/// Produces `records` to `topic` with one producer, in order, and waits for every ack.
pub async fn produce_records(topic: &str, records: &[Record]) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let mut pending = Vec::with_capacity(records.len());
    for r in records {
        let headers = r.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            })
        });
        let record = FutureRecord::to(topic)
            .key(r.key.as_str())
            .payload(r.value.as_slice())
            .headers(headers);
        match producer.send_result(record) {
            Ok(delivery) => pending.push(delivery),
            Err((e, _)) => panic!("cannot queue a record for {topic}: {e}"),
        }
    }
    for delivery in pending {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => panic!("{topic}: delivery failed: {e}"),
            Err(_) => panic!("{topic}: delivery cancelled"),
        }
    }
}

/// A stats record of frame `seq` of `camera`'s `session`, captured at `capture_ms`, with
/// plain statistics (brightness 100, motion 2, decoded 40 ms later, keyframe every 25).
pub fn stats_record(camera: &str, session: &str, seq: u64, capture_ms: i64) -> Record {
    let rec = framewire_wire::StatsRecord {
        camera: camera.to_owned(),
        session: session.to_owned(),
        seq,
        pts_90k: seq as i64 * 3_600,
        capture_ms,
        decoded_ms: capture_ms + 40,
        width: 640,
        height: 360,
        keyframe: seq.is_multiple_of(25),
        y_avg: 100.0,
        y_min: 16,
        y_max: 235,
        y_low: 30,
        y_high: 200,
        y_std: 40.0,
        y_dif: 2.0,
        u_avg: 128.0,
        v_avg: 128.0,
        sat_avg: 0.0,
        y_hist: [0; 16],
        sharpness: 300.0,
        black: false,
        frozen: false,
        scene_score: 0.0,
        scene_cut: false,
    };
    Record {
        key: camera.to_owned(),
        value: serde_json::to_vec(&rec).expect("stats JSON"),
        headers: Vec::new(),
    }
}

/// A detections record (`framewire.detections`) of frame `seq` of `camera`'s `session`,
/// captured at `capture_ms`, analysed 80 ms later by model `test-model` on a 640x360
/// picture; `objects` as (label, class, score, [x0, y0, x1, y1]).
pub fn detections_record(
    camera: &str,
    session: &str,
    seq: u64,
    capture_ms: i64,
    objects: &[(&str, u16, f32, [f32; 4])],
) -> Record {
    let rec = framewire_wire::DetectionsRecord {
        camera: camera.to_owned(),
        session: session.to_owned(),
        seq,
        pts_90k: seq as i64 * 3_600,
        capture_ms,
        detected_ms: capture_ms + 80,
        width: 640,
        height: 360,
        model: "test-model".to_owned(),
        objects: objects
            .iter()
            .map(
                |&(label, class, score, [x0, y0, x1, y1])| framewire_wire::DetectedObject {
                    label: label.to_owned(),
                    class,
                    score,
                    bbox: framewire_wire::BoundingBox { x0, y0, x1, y1 },
                },
            )
            .collect(),
    };
    Record {
        key: camera.to_owned(),
        value: serde_json::to_vec(&rec).expect("detections JSON"),
        headers: Vec::new(),
    }
}

/// A dead letter as the worker writes it for an undecodable frame: the frame's own
/// headers plus `fw-dlq-reason` and `fw-dlq-source: worker`, the access unit as value.
pub fn dead_letter(camera: &str, session: &str, seq: u64, capture_ms: i64) -> Record {
    use framewire_wire::header as h;
    let headers = [
        (h::CAMERA, camera.to_owned()),
        (h::SESSION, session.to_owned()),
        (h::SEQ, seq.to_string()),
        (h::PTS_90K, (seq * 3_600).to_string()),
        (h::CAPTURE_MS, capture_ms.to_string()),
        (h::KEYFRAME, "0".to_owned()),
        (h::CODEC, "h264".to_owned()),
        (h::DLQ_REASON, "decode failed: test".to_owned()),
        (h::DLQ_SOURCE, "worker".to_owned()),
    ];
    Record {
        key: camera.to_owned(),
        value: vec![0, 0, 0, 1, 0x41, 0xFF],
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    }
}

/// Wall clock, ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Where a sink under test keeps its summaries.
#[derive(Debug, Clone)]
pub enum SinkDb {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// The local stack's PostgreSQL.
    Postgres(String),
}

impl SinkDb {
    /// The database setting of `[sink]`.
    pub fn toml(&self) -> String {
        match self {
            SinkDb::Sqlite(path) => format!("sqlite_path = \"{}\"\n", path.display()),
            SinkDb::Postgres(dsn) => format!("database_url = \"{dsn}\"\n"),
        }
    }

    /// A URL sqlx opens (SQLite read-only).
    pub fn url(&self) -> String {
        match self {
            SinkDb::Sqlite(path) => format!("sqlite://{}?mode=ro", path.display()),
            SinkDb::Postgres(dsn) => dsn.clone(),
        }
    }

    /// `sqlite` or `postgres`.
    pub fn name(&self) -> &'static str {
        match self {
            SinkDb::Sqlite(_) => "sqlite",
            SinkDb::Postgres(_) => "postgres",
        }
    }
}

/// A sink's `[sink]` section: `group` as consumer group, `db`, the HTTP server on a free
/// loopback port, plus `extra` lines; and the HTTP base URL.
pub fn sink_section(group: &str, db: &SinkDb, extra: &str) -> (String, String) {
    let port = free_port();
    let section = format!(
        "[sink]\ngroup_id = \"{group}\"\npreview_group_id = \"{group}-preview\"\nhttp_listen = \"127.0.0.1:{port}\"\n{}{extra}\n",
        db.toml()
    );
    (section, format!("http://127.0.0.1:{port}"))
}

/// Deletes every row a run wrote to the PostgreSQL at `dsn` for its cameras, whose ids all
/// start with `prefix-` (the database is shared with the local stack and other runs).
pub async fn delete_camera_rows(dsn: &str, prefix: &str) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(dsn).await?;
    for (table, column) in [
        ("window_summaries", "camera"),
        ("window_objects", "camera"),
        ("events", "camera"),
        ("latest_pictures", "camera"),
        ("cameras", "id"),
    ] {
        // The table and column names are the constants above.
        let sql = sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE {column} LIKE $1"));
        sqlx::query(sql)
            .bind(format!("{prefix}-%"))
            .execute(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("cannot delete the run's rows of {table}: {e}"))?;
    }
    pool.close().await;
    Ok(())
}

/// Per camera of `cameras`, summed over its stored windows: (frames, decode errors, gaps).
/// Cameras without rows are absent. Err when the database cannot be read.
pub async fn sink_totals(
    db: &SinkDb,
    cameras: &[String],
) -> Result<std::collections::BTreeMap<String, (i64, i64, i64)>, String> {
    let sql = "SELECT camera, CAST(SUM(frames) AS BIGINT), CAST(SUM(decode_errors) AS BIGINT), \
               CAST(SUM(gaps) AS BIGINT) FROM window_summaries GROUP BY camera";
    let url = db.url();
    let rows: Vec<(String, i64, i64, i64)> = match db {
        SinkDb::Postgres(_) => {
            let pool = sqlx::PgPool::connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            let rows = sqlx::query_as(sql).fetch_all(&pool).await;
            pool.close().await;
            rows.map_err(|e| e.to_string())?
        }
        SinkDb::Sqlite(_) => {
            let pool = sqlx::SqlitePool::connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            let rows = sqlx::query_as(sql).fetch_all(&pool).await;
            pool.close().await;
            rows.map_err(|e| e.to_string())?
        }
    };
    Ok(rows
        .into_iter()
        .filter(|(c, ..)| cameras.contains(c))
        .map(|(c, f, e, g)| (c, (f, e, g)))
        .collect())
}

impl Service {
    /// Kills the process with SIGKILL (no drain, no final commit) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }
}

/// The folder for test artifacts (screenshots): `<target dir>/artifacts`, created.
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("artifacts");
    std::fs::create_dir_all(&dir).expect("create the artifacts folder");
    dir
}

/// Starts a worker on `topics` in a consumer group of its own, with extra environment.
pub fn start_worker(topics: &Topics, env: &[(&str, &str)]) -> Service {
    Service::start(
        "framewire-worker",
        &format!(
            "{}\n[worker]\ngroup_id = \"{}\"\n",
            topics.toml(),
            unique("w")
        ),
        env,
    )
}

/// A `[[cameras]]` table for ingest's configuration; `extra` holds more keys of the
/// table (`transport = "udp"`), or nothing.
pub fn camera_toml(id: &str, url: &str, extra: &str) -> String {
    format!("[[cameras]]\nid = \"{id}\"\nurl = \"{url}\"\n{extra}\n\n")
}

#[cfg(test)]
mod tests {
    use super::log_tail;

    #[test]
    fn log_tail_keeps_the_last_lines_without_client_chatter() {
        let dir = std::env::temp_dir().join(format!("fw-log-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("rtsp.log");
        let log = "a\n05:14:37 client connected from 127.0.0.1\nb\n05:14:38 client from 127.0.0.1 closed\nc\n";
        std::fs::write(&path, log).expect("write log");
        assert_eq!(log_tail(&path, 2), "b\nc");
        assert_eq!(log_tail(&path, 10), "a\nb\nc");
        assert_eq!(log_tail(&dir.join("missing.log"), 3), "");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
