//! Harness of the fault suite (`make chaos`): a 3-node Kafka cluster, the whole fleet on
//! real cameras, faults injected with signals and the stack's own scripts, and the
//! [`accountant`](crate::accountant) to judge each run.
//!
//! The cluster is the one `scripts/stack/kafka.sh` starts with `KAFKA_CLUSTER=chaos
//! KAFKA_NODES=3` (ports from `FW_CHAOS_KAFKA_PORT`, default 29092/29094/29096), beside
//! the single node the other tests use; its topics have replication factor 3 and
//! `min.insync.replicas=2`, and every producer is idempotent with `acks=all`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::accountant::{self, Verdict};
use crate::{Service, metric, pg_dsn, unique};

/// Window width the fault suite's sinks use (ms).
pub const WINDOW_MS: i64 = 10_000;

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack")
}

/// Runs a stack script with `env`; returns stdout, or the error with stderr's tail.
pub fn script(name: &str, args: &[&str], env: &[(&str, String)]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(scripts().join(name))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .map_err(|e| format!("{name}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(15).collect();
        Err(format!(
            "{name} {args:?} failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    }
}

/// The fault suite's Kafka cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    env: Vec<(&'static str, String)>,
    /// `host:port,…` of every node.
    pub bootstrap: String,
    /// Nodes.
    pub nodes: u32,
}

impl Cluster {
    /// The cluster named by `FW_CHAOS_KAFKA_CLUSTER` (default `chaos`) with
    /// `FW_CHAOS_KAFKA_NODES` (3) nodes from `FW_CHAOS_KAFKA_PORT` (29092); started (or
    /// found running) by `kafka.sh up`.
    pub fn up() -> Result<Self, String> {
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        let nodes: u32 = var("FW_CHAOS_KAFKA_NODES", "3")
            .parse()
            .map_err(|_| "bad node count")?;
        let port: u16 = var("FW_CHAOS_KAFKA_PORT", "29092")
            .parse()
            .map_err(|_| "bad port")?;
        let env = vec![
            ("KAFKA_CLUSTER", var("FW_CHAOS_KAFKA_CLUSTER", "chaos")),
            ("KAFKA_NODES", nodes.to_string()),
            ("KAFKA_PORT", port.to_string()),
            ("KAFKA_CONTROLLER_PORT", (port + 100).to_string()),
        ];
        let mut c = Cluster {
            env,
            bootstrap: String::new(),
            nodes,
        };
        c.run(&["up"])?;
        c.bootstrap = c.run(&["bootstrap"])?.trim().to_owned();
        Ok(c)
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        script("kafka.sh", args, &self.env)
    }

    /// SIGKILLs node `i` (1-based).
    pub fn kill(&self, i: u32) -> Result<(), String> {
        self.run(&["kill", &i.to_string()]).map(drop)
    }

    /// Starts node `i` again and waits until it has rejoined.
    pub fn start(&self, i: u32) -> Result<(), String> {
        self.run(&["start", &i.to_string()]).map(drop)
    }

    /// Starts every node that is down (all at once: a KRaft quorum needs a majority).
    pub fn start_all(&self) -> Result<(), String> {
        self.run(&["up"]).map(drop)
    }

    /// `kafka-consumer-groups.sh --describe` of `group`.
    pub fn describe_group(&self, group: &str) -> Result<String, String> {
        self.run(&["groups", group])
    }

    /// The group's total committed lag as `kafka-consumer-groups.sh` reports it.
    pub fn lag_reported(&self, group: &str) -> Result<i64, String> {
        self.run(&["lag", group])?
            .trim()
            .parse()
            .map_err(|e| format!("lag: {e}"))
    }

    /// The node (1-based id) leading `partition` of `topic`.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<u32> {
        let c: BaseConsumer = self.client().ok()?;
        let md = c.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
        let t = md.topics().first()?;
        let p = t.partitions().iter().find(|p| p.id() == partition)?;
        u32::try_from(p.leader()).ok()
    }

    fn client(&self) -> Result<BaseConsumer, String> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", unique("chaos-probe"))
            .create()
            .map_err(|e| e.to_string())
    }

    /// Committed lag of `group` on `topic` read as KEDA's Kafka scaler reads it: the
    /// group's committed offset per partition (OffsetFetch, without joining the group)
    /// against the partition's high watermark. A partition without a commit counts its
    /// whole length.
    pub fn committed_lag(&self, group: &str, topic: &str) -> Result<i64, String> {
        let probe: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| e.to_string())?;
        let md = probe
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let mut tpl = TopicPartitionList::new();
        for t in md.topics() {
            for p in t.partitions() {
                tpl.add_partition(topic, p.id());
            }
        }
        let committed = probe
            .committed_offsets(tpl, Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let mut lag = 0;
        for e in committed.elements() {
            let (low, high) = probe
                .fetch_watermarks(topic, e.partition(), Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            let at = match e.offset() {
                Offset::Offset(o) => o,
                _ => low,
            };
            lag += (high - at).max(0);
        }
        Ok(lag)
    }
}

/// What a scenario's fleet looks like.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Scenario name (prefix of topics, groups, cameras).
    pub name: String,
    /// Cameras: id → RTSP URL.
    pub cameras: Vec<(String, String)>,
    /// Worker replicas to start.
    pub workers: usize,
    /// Start ingest at once.
    pub ingest: bool,
    /// Extra `[ingest]` lines.
    pub ingest_extra: String,
}

/// One scenario's fleet on the cluster: ingest replicas, workers and a sink on fresh
/// topics and groups, writing to the stack's PostgreSQL.
pub struct Fleet {
    /// The spec.
    pub spec: FleetSpec,
    /// The cluster.
    pub cluster: Cluster,
    /// Topic names.
    pub topics: crate::Topics,
    /// Worker consumer group.
    pub worker_group: String,
    /// Sink consumer group.
    pub sink_group: String,
    /// Ingest lease group.
    pub ingest_group: String,
    /// Running ingest replicas.
    pub ingests: Vec<Service>,
    /// Running workers.
    pub workers: Vec<Service>,
    /// The sink.
    pub sink: Option<Service>,
    /// Drops counted by ingest processes that are gone.
    dropped_before: u64,
    next_instance: u32,
}

/// Frames ingest dropped and counted, from its metrics: queue drops (whole GOPs during
/// outages, frames of a GOP whose keyframe was lost) and deliveries that failed.
pub fn ingest_drops(metrics: &str) -> u64 {
    let sum = |prefix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    (sum("framewire_ingest_dropped_frames_total") + sum("framewire_ingest_delivery_errors_total"))
        as u64
}

impl Fleet {
    /// Starts the fleet: the sink, the workers, then ingest (when asked).
    pub async fn start(cluster: &Cluster, spec: FleetSpec) -> Self {
        let p = unique(&format!("chaos-{}", spec.name));
        let topics = crate::Topics {
            frames: format!("{p}.frames"),
            stats: format!("{p}.stats"),
            detections: format!("{p}.detections"),
            control: format!("{p}.control"),
            dlq: format!("{p}.dlq"),
        };
        let mut fleet = Fleet {
            worker_group: format!("{p}-workers"),
            sink_group: format!("{p}-sink"),
            ingest_group: format!("{p}-ingest"),
            spec,
            cluster: cluster.clone(),
            topics,
            ingests: Vec::new(),
            workers: Vec::new(),
            sink: None,
            dropped_before: 0,
            next_instance: 0,
        };
        fleet.start_sink().await;
        for _ in 0..fleet.spec.workers {
            fleet.add_worker().await;
        }
        if fleet.spec.ingest {
            fleet.add_ingest().await;
        }
        fleet
    }

    fn common(&self) -> String {
        format!(
            "[kafka]\nbrokers = \"{}\"\n\n[topics]\nframes = \"{}\"\nstats = \"{}\"\ndetections = \"{}\"\ncontrol = \"{}\"\ndlq = \"{}\"\nleases = \"{}.leases\"\npartitions = 4\nreplication_factor = 3\n",
            self.cluster.bootstrap,
            self.topics.frames,
            self.topics.stats,
            self.topics.detections,
            self.topics.control,
            self.topics.dlq,
            self.topics.frames,
        )
    }

    /// Starts (or restarts) the sink.
    pub async fn start_sink(&mut self) {
        let config = format!(
            "{}\n[sink]\ngroup_id = \"{}\"\npreview_group_id = \"{}-preview\"\ndatabase_url = \"{}\"\nwindow_ms = {WINDOW_MS}\nflush_interval_ms = 500\nhttp_listen = \"127.0.0.1:{}\"\n",
            self.common(),
            self.sink_group,
            self.sink_group,
            pg_dsn(),
            crate::free_port(),
        );
        let sink = Service::start("framewire-sink", &config, &[]);
        sink.wait_ready(Duration::from_secs(90)).await;
        self.sink = Some(sink);
    }

    /// Starts one more worker.
    pub async fn add_worker(&mut self) {
        let config = format!(
            "{}\n[worker]\ngroup_id = \"{}\"\ndecode_threads = 1\ndelivery_timeout_ms = 5000\nretry_max_ms = 2000\nshutdown_grace_ms = 10000\n",
            self.common(),
            self.worker_group
        );
        let w = Service::start("framewire-worker", &config, &[]);
        w.wait_ready(Duration::from_secs(90)).await;
        self.workers.push(w);
    }

    /// Starts one more ingest replica, a lease group member with its own instance id.
    pub async fn add_ingest(&mut self) {
        self.next_instance += 1;
        let i = self.start_ingest(self.next_instance).await;
        self.ingests.push(i);
    }

    /// Restarts ingest replica `index` with its instance id (a pod restarted in place: its
    /// lease slots come back at once).
    pub async fn restart_ingest(&mut self, index: usize) {
        let instance = u32::try_from(index + 1).unwrap_or(1);
        self.ingests[index] = self.start_ingest(instance).await;
    }

    async fn start_ingest(&self, instance: u32) -> Service {
        let cams: String = self
            .spec
            .cameras
            .iter()
            .map(|(id, url)| crate::camera_toml(id, url, ""))
            .collect();
        let config = format!(
            "{}\n[ingest]\ngroup_id = \"{}\"\ninstance_id = \"{}-{instance}\"\nlease_timeout_ms = 6000\nstall_timeout_ms = 3000\nconnect_timeout_ms = 3000\nbackoff_max_ms = 2000\ndelivery_timeout_ms = 5000\ncontrol_topic = false\n{}\n{cams}",
            self.common(),
            self.ingest_group,
            self.ingest_group,
            self.spec.ingest_extra,
        );
        let i = Service::start("framewire-ingest", &config, &[]);
        i.wait_ready(Duration::from_secs(90)).await;
        i
    }

    /// Scrapes an ingest replica's drop counters (before stopping or killing it).
    pub async fn bank_drops(&mut self, index: usize) {
        if let Some(i) = self.ingests.get(index) {
            let (_, m) = i.get("/metrics").await;
            self.dropped_before += ingest_drops(&m);
        }
    }

    /// SIGKILLs ingest replica `index` (its drops since the last scrape are unknown: a
    /// killed process takes its counters with it; frames it had not delivered leave no
    /// gap on the topic either).
    pub async fn kill_ingest(&mut self, index: usize) {
        self.bank_drops(index).await;
        if let Some(i) = self.ingests.get_mut(index) {
            i.kill();
        }
    }

    /// The oldest of the fleet's cameras' clocks in the sink (each camera's newest counted
    /// capture time), once every camera has one.
    pub async fn slowest_camera_clock(&self) -> Option<i64> {
        let ids: Vec<String> = self.spec.cameras.iter().map(|(id, _)| id.clone()).collect();
        let pool = sqlx::PgPool::connect(&pg_dsn()).await.ok()?;
        let row: Option<(i64, Option<i64>)> =
            sqlx::query_as("SELECT COUNT(*), MIN(last_capture_ms) FROM cameras WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_optional(&pool)
                .await
                .ok()
                .flatten();
        pool.close().await;
        let (cameras, oldest) = row?;
        (usize::try_from(cameras).ok()? == ids.len()).then_some(oldest?)
    }

    /// Seconds from `since` (the end of a fault) until the sink has counted, for every
    /// camera, a frame captured after it: the fleet is whole again end to end (for a backlog,
    /// that is once the backlog is done). At most `limit`.
    pub async fn recovery(&self, since: Instant, limit: Duration) -> Option<f64> {
        let fault_end_ms = crate::now_ms() - i64::try_from(since.elapsed().as_millis()).ok()?;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self
                .slowest_camera_clock()
                .await
                .is_some_and(|oldest| oldest >= fault_end_ms)
            {
                return Some(since.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        None
    }

    /// Stops ingest (SIGTERM: it delivers what it queued), waits until the workers and
    /// the sink have committed everything (their committed lag is 0), then stops them.
    pub async fn settle(&mut self, limit: Duration) -> Result<(), String> {
        for i in 0..self.ingests.len() {
            if self.ingests[i].pid().is_some() {
                self.bank_drops(i).await;
                let code = self.ingests[i].terminate(Duration::from_secs(30)).code();
                if code != Some(0) {
                    return Err(format!("ingest {i} exited with {code:?}"));
                }
            }
        }
        let deadline = Instant::now() + limit;
        loop {
            let workers = self
                .cluster
                .committed_lag(&self.worker_group, &self.topics.frames);
            let sink = self
                .cluster
                .committed_lag(&self.sink_group, &self.topics.stats)
                .and_then(|s| {
                    Ok(s + self
                        .cluster
                        .committed_lag(&self.sink_group, &self.topics.dlq)?)
                });
            match (&workers, &sink) {
                (Ok(0), Ok(0)) => break,
                _ if Instant::now() > deadline => {
                    return Err(format!(
                        "not settled after {limit:?}: worker lag {workers:?}, sink lag {sink:?}"
                    ));
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
        for w in &mut self.workers {
            if w.pid().is_some() {
                w.terminate(Duration::from_secs(30));
            }
        }
        if let Some(s) = self.sink.as_mut() {
            s.terminate(Duration::from_secs(30));
        }
        Ok(())
    }

    /// Deletes the scenario's topics (a cluster with hundreds of idle test partitions
    /// spends its CPU replicating nothing, and the next scenarios' latency shows it).
    pub async fn delete_topics(&self) -> Result<(), String> {
        use rdkafka::admin::{AdminClient, AdminOptions};
        use rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.cluster.bootstrap)
            .create()
            .map_err(|e| e.to_string())?;
        let t = &self.topics;
        let leases = format!("{}.leases", t.frames);
        let names = [
            t.frames.as_str(),
            t.stats.as_str(),
            t.dlq.as_str(),
            t.control.as_str(),
            leases.as_str(),
        ];
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        admin
            .delete_topics(&names, &opts)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Judges the run.
    pub async fn account(&self) -> Result<Verdict, String> {
        let bootstrap = self.cluster.bootstrap.clone();
        let (frames, dlq) = (self.topics.frames.clone(), self.topics.dlq.clone());
        let (ledger, dead) = tokio::task::spawn_blocking(move || {
            Ok::<_, String>((
                accountant::ledger(&bootstrap, &frames)?,
                accountant::dead_letters(&bootstrap, &dlq)?,
            ))
        })
        .await
        .map_err(|e| e.to_string())??;
        let ids: Vec<String> = self.spec.cameras.iter().map(|(id, _)| id.clone()).collect();
        let counted = accountant::counted(&pg_dsn(), &ids).await?;
        Ok(accountant::account(
            &ledger,
            &counted,
            &dead,
            self.dropped_before,
            WINDOW_MS,
        ))
    }

    /// The warnings and errors each process of the fleet logged (the last `per` of each),
    /// for a failure message.
    pub fn warnings(&self, per: usize) -> String {
        let mut out = String::new();
        let all = self
            .ingests
            .iter()
            .chain(&self.workers)
            .chain(self.sink.iter());
        for (i, s) in all.enumerate() {
            let log = s.log();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect();
            if lines.is_empty() {
                continue;
            }
            out.push_str(&format!("--- {} #{i} ---\n", s.name));
            for l in &lines[lines.len().saturating_sub(per)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// What the running workers report about takeovers: partitions resumed at GOP starts,
    /// records replayed, partitions started without their resume offset.
    pub async fn takeovers(&self) -> String {
        let sum = |series: &'static str| Self::sum_metric(&self.workers, series);
        let resumed = sum("framewire_worker_resumes_total{from=\"resume_offset\"}").await;
        let replayed = sum("framewire_worker_records_replayed_total").await;
        let unknown = sum("framewire_worker_resumes_total{from=\"unknown\"}").await;
        let ok = sum("framewire_worker_commits_total{result=\"ok\"}").await;
        let failed = sum("framewire_worker_commits_total{result=\"error\"}").await;
        format!(
            "partitions resumed at GOP starts: {resumed}, records replayed: {replayed}, partitions started without resume offset: {unknown}, commits ok: {ok}, failed: {failed} (running workers)"
        )
    }

    /// A metric summed over the running processes of one kind.
    pub async fn sum_metric(services: &[Service], series: &str) -> f64 {
        let mut total = 0.0;
        for s in services {
            if s.pid().is_some() {
                let (_, m) = s.get("/metrics").await;
                total += metric(&m, series).unwrap_or(0.0);
            }
        }
        total
    }
}

/// One row of the fault table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Scenario.
    pub scenario: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Seconds from the end of the fault until frames flow end to end again.
    pub recovery_s: Option<f64>,
    /// Anything worth knowing (faults injected, measured facts).
    pub notes: String,
    /// What went wrong besides the verdict (a fault not injected, no recovery, …).
    pub errors: Vec<String>,
}

/// The table the suite prints (Markdown).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | produced | counted | in DLQ | dropped (counted) | lost | double-counted | recovery |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let v = &r.verdict;
        let dlq = if v.dlq_reasons.is_empty() {
            v.in_dlq.to_string()
        } else {
            let reasons: BTreeMap<&str, u64> = v
                .dlq_reasons
                .iter()
                .map(|(k, n)| (k.as_str(), *n))
                .collect();
            format!(
                "{} ({})",
                v.in_dlq,
                reasons
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} (gaps {}) | {} | {} | {} |\n",
            r.scenario,
            v.produced,
            v.counted,
            dlq,
            v.dropped_counted,
            v.gaps,
            v.lost,
            v.double_counted,
            r.recovery_s
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.1} s")),
        ));
    }
    out
}
