//! The fault suite (`make chaos`; also run by `make test`): the whole fleet — ingest, two
//! or more workers, the sink on PostgreSQL — streaming real cameras through a 3-node Kafka
//! cluster, one fault at a time, each run judged by the accountant
//! (`framewire_e2e::accountant`): every frame ingest got acknowledged is counted exactly
//! once (or is a dead letter with a reason), every frame missing from a session is a drop
//! ingest counted, no camera runs twice. The table it prints is the one in
//! docs/faults.md. `CHAOS_ONLY=a,b` runs only the named scenarios.

use std::time::{Duration, Instant};

use framewire_e2e::chaos::{Cluster, Fleet, FleetSpec, Row, script, table};
use framewire_e2e::{RTSP, artifacts_dir, require_stack, unique};

/// Cameras on the main RTSP server: live 640x360 at 25 fps, GOP 50.
const MOUNTS: [&str; 3] = ["moving", "black", "frozen"];
/// Their frame rate, all together.
const FPS: f64 = 75.0;
/// Warm-up before a fault.
const WARM: Duration = Duration::from_secs(6);
/// Longest wait, after a fault, until every camera has a frame captured after it counted.
const RECOVERY_LIMIT: Duration = Duration::from_secs(90);
/// Longest wait for the fleet to finish a scenario's frames.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// The second RTSP server of the suite (its own process, to freeze with SIGSTOP).
const FREEZE_PORT: &str = "8654";

fn freeze_env() -> Vec<(&'static str, String)> {
    vec![
        ("RTSP_INSTANCE", "freeze".into()),
        ("RTSP_PORT", FREEZE_PORT.into()),
        ("RTSP_ONLY", "moving".into()),
    ]
}

fn cameras(scenario: &str, urls: &[String]) -> Vec<(String, String)> {
    let prefix = unique(scenario);
    urls.iter()
        .enumerate()
        .map(|(i, url)| (format!("{prefix}-{i}"), url.clone()))
        .collect()
}

fn main_cameras(scenario: &str) -> Vec<(String, String)> {
    let urls: Vec<String> = MOUNTS.iter().map(|m| format!("{RTSP}/{m}")).collect();
    cameras(scenario, &urls)
}

fn spec(name: &str, cams: Vec<(String, String)>, workers: usize, ingest: bool) -> FleetSpec {
    FleetSpec {
        name: name.to_owned(),
        cameras: cams,
        workers,
        ingest,
        ingest_extra: String::new(),
    }
}

/// The common end of a scenario: wait for recovery, run a little more, settle, account.
async fn finish(
    mut fleet: Fleet,
    fault_ended: Instant,
    notes: String,
    mut errors: Vec<String>,
) -> Row {
    let recovery_s = fleet.recovery(fault_ended, RECOVERY_LIMIT).await;
    if recovery_s.is_none() {
        errors.push(format!(
            "frames did not flow end to end within {RECOVERY_LIMIT:?}"
        ));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let notes = format!("{notes}; {}", fleet.takeovers().await);
    if let Err(e) = fleet.settle(SETTLE_LIMIT).await {
        errors.push(format!("settle: {e}"));
    }
    let verdict = match fleet.account().await {
        Ok(v) => v,
        Err(e) => {
            errors.push(format!("accounting: {e}"));
            Default::default()
        }
    };
    if let Err(e) = fleet.delete_topics().await {
        println!("{}: topics not deleted: {e}", fleet.spec.name);
    }
    if verdict.lost > 0 || verdict.double_counted > 0 || !errors.is_empty() {
        println!(
            "{}: problems {:?}\n{}",
            fleet.spec.name,
            verdict.problems,
            fleet.warnings(20)
        );
    }
    Row {
        scenario: fleet.spec.name.clone(),
        verdict,
        recovery_s,
        notes,
        errors,
    }
}

/// No fault: the committed lag KEDA reads while workers keep up, sampled every 250 ms once
/// the group has settled (the second worker's join moves partitions during the start).
async fn steady(cluster: &Cluster) -> Row {
    let fleet = Fleet::start(cluster, spec("steady", main_cameras("steady"), 2, true)).await;
    tokio::time::sleep(2 * WARM).await;
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        if let Ok(lag) = cluster.committed_lag(&fleet.worker_group, &fleet.topics.frames) {
            samples.push(lag);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let reported = match cluster.lag_reported(&fleet.worker_group) {
        Ok(lag) => format!("{lag} records"),
        Err(e) => format!("unreadable ({e})"),
    };
    println!("steady: committed lag samples (records, in order): {samples:?}");
    samples.sort_unstable();
    let max = samples.last().copied().unwrap_or(i64::MAX);
    let p50 = samples.get(samples.len() / 2).copied().unwrap_or(i64::MAX);
    let notes = format!(
        "committed lag (KEDA's reading) over 15 s, {} samples: median {p50}, max {max} records = {:.2} s of frames at {FPS} fps (limit 1 s); kafka-consumer-groups.sh read {reported}",
        samples.len(),
        max as f64 / FPS,
    );
    println!("steady: {notes}");
    let mut errors = Vec::new();
    if max as f64 > FPS {
        errors.push(format!(
            "committed lag {max} is above 1 s of frames ({FPS})"
        ));
    }
    finish(fleet, Instant::now(), notes, errors).await
}

/// The broker leading partition 0 of the frames topic is SIGKILLed, restarted 10 s later.
async fn broker_kill(cluster: &Cluster) -> Row {
    let fleet = Fleet::start(cluster, spec("broker-kill", main_cameras("bk"), 2, true)).await;
    tokio::time::sleep(WARM).await;
    let node = cluster.leader(&fleet.topics.frames, 0).unwrap_or(1);
    let mut errors: Vec<String> = Vec::new();
    let mut notes = format!("SIGKILL node {node} (leader of frames/0)");
    if let Err(e) = cluster.kill(node) {
        errors.push(format!("kill failed: {e}"));
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let moved = cluster.leader(&fleet.topics.frames, 0);
    match moved {
        Some(leader) => notes.push_str(&format!(", new leader node {leader}")),
        None => notes.push_str(", no leader readable"),
    }
    if let Err(e) = cluster.start(node) {
        errors.push(format!("restart failed: {e}"));
    }
    finish(fleet, Instant::now(), notes, errors).await
}

/// Every broker down for 15 s, three times the producers' delivery timeout (5 s).
async fn broker_outage(cluster: &Cluster) -> Row {
    let fleet = Fleet::start(cluster, spec("broker-outage", main_cameras("bo"), 2, true)).await;
    tokio::time::sleep(WARM).await;
    let mut errors: Vec<String> = Vec::new();
    let mut notes = String::from("all 3 brokers SIGKILLed for 15 s (delivery timeout 5 s)");
    for node in 1..=cluster.nodes {
        if let Err(e) = cluster.kill(node) {
            notes.push_str(&format!(" KILL {node} FAILED: {e}"));
        }
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    if let Err(e) = cluster.start_all() {
        errors.push(format!("restart failed: {e}"));
    }
    finish(fleet, Instant::now(), notes, errors).await
}

/// A 12 s backlog builds with no worker; two start, one is SIGKILLed 3 s later.
async fn worker_kill_backlog(cluster: &Cluster) -> Row {
    let mut fleet = Fleet::start(cluster, spec("worker-kill", main_cameras("wk"), 0, true)).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    fleet.add_worker().await;
    fleet.add_worker().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    fleet.workers[0].kill();
    let ended = Instant::now();
    let notes = "12 s backlog, 2 workers start, one SIGKILLed 3 s later".to_owned();
    finish(fleet, ended, notes, Vec::new()).await
}

/// A 12 s backlog builds with no worker; one starts, then two more (1 → 3).
async fn scale_out_backlog(cluster: &Cluster) -> Row {
    let mut fleet = Fleet::start(cluster, spec("scale-out", main_cameras("so"), 0, true)).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    fleet.add_worker().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    fleet.add_worker().await;
    fleet.add_worker().await;
    let ended = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let owned = Fleet::sum_metric(&fleet.workers, "framewire_worker_assigned_partitions").await;
    let notes = format!("12 s backlog, workers 1 → 3 during it; partitions owned {owned} of 4");
    finish(fleet, ended, notes, Vec::new()).await
}

/// The sink is SIGKILLed and restarted 5 s later.
async fn sink_kill(cluster: &Cluster) -> Row {
    let mut fleet = Fleet::start(cluster, spec("sink-kill", main_cameras("sk"), 2, true)).await;
    tokio::time::sleep(WARM).await;
    if let Some(s) = fleet.sink.as_mut() {
        s.kill();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    fleet.start_sink().await;
    let notes = "sink SIGKILLed, restarted 5 s later".to_owned();
    finish(fleet, Instant::now(), notes, Vec::new()).await
}

/// Ingest is SIGKILLed and restarted 3 s later with the same instance id.
async fn ingest_kill(cluster: &Cluster) -> Row {
    let mut fleet = Fleet::start(cluster, spec("ingest-kill", main_cameras("ik"), 2, true)).await;
    tokio::time::sleep(WARM).await;
    fleet.kill_ingest(0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    fleet.restart_ingest(0).await;
    let notes = "ingest SIGKILLed, restarted 3 s later (same lease member id)".to_owned();
    finish(fleet, Instant::now(), notes, Vec::new()).await
}

/// PostgreSQL is stopped for 5 s and started again.
async fn pg_restart(cluster: &Cluster) -> Row {
    let fleet = Fleet::start(cluster, spec("pg-restart", main_cameras("pg"), 2, true)).await;
    tokio::time::sleep(WARM).await;
    let mut errors: Vec<String> = Vec::new();
    let notes = String::from("PostgreSQL down for 5 s");
    if let Err(e) = script("postgres.sh", &["down"], &[]) {
        errors.push(format!("stop failed: {e}"));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    if let Err(e) = script("postgres.sh", &["up"], &[]) {
        errors.push(format!("start failed: {e}"));
    }
    finish(fleet, Instant::now(), notes, errors).await
}

/// One camera's RTSP server freezes (SIGSTOP: its TCP connections stay open, nothing
/// flows) for 8 s, then continues.
async fn camera_freeze(cluster: &Cluster) -> Row {
    let mut errors: Vec<String> = Vec::new();
    let mut notes = String::from("RTSP server of one camera SIGSTOPped for 8 s");
    if let Err(e) = script("rtsp.sh", &["up"], &freeze_env()) {
        errors.push(format!("freeze server failed: {e}"));
    }
    let mut urls: Vec<String> = MOUNTS[..2].iter().map(|m| format!("{RTSP}/{m}")).collect();
    urls.push(format!("rtsp://127.0.0.1:{FREEZE_PORT}/moving"));
    let fleet = Fleet::start(
        cluster,
        spec("camera-freeze", cameras("cf", &urls), 2, true),
    )
    .await;
    tokio::time::sleep(WARM).await;
    let pid = script("rtsp.sh", &["pid"], &freeze_env()).unwrap_or_default();
    let pid = pid.trim().to_owned();
    let signal = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !signal("-STOP") {
        errors.push(format!("SIGSTOP of {pid:?} failed"));
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    signal("-CONT");
    let ended = Instant::now();
    let stalls = stalls_of(&fleet, 2).await;
    notes.push_str(&format!("; stalls detected: {stalls}"));
    finish(fleet, ended, notes, errors).await
}

/// Stalled sessions ingest counted for the fleet's camera `index`.
async fn stalls_of(fleet: &Fleet, index: usize) -> f64 {
    let series = format!(
        "framewire_ingest_session_errors_total{{camera=\"{}\",kind=\"stall\"}}",
        fleet.spec.cameras[index].0
    );
    Fleet::sum_metric(&fleet.ingests, &series).await
}

/// One camera keeps its session and sends RTCP sender reports, but its video stops
/// after 6 s (then, after each reconnect, again after 6 s).
async fn rtcp_only(cluster: &Cluster) -> Row {
    let mut urls: Vec<String> = MOUNTS[..2].iter().map(|m| format!("{RTSP}/{m}")).collect();
    urls.push(format!("{RTSP}/rtcponly"));
    let fleet = Fleet::start(cluster, spec("rtcp-only", cameras("ro", &urls), 2, true)).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let stalls = stalls_of(&fleet, 2).await;
    let notes = format!("video stops after 6 s, RTCP goes on; stalls detected in 26 s: {stalls}");
    let mut errors = Vec::new();
    if stalls < 1.0 {
        errors.push("no stall detected".to_owned());
    }
    finish(fleet, Instant::now(), notes, errors).await
}

/// A second ingest replica joins the lease group while cameras stream (1 → 2).
async fn ingest_scale(cluster: &Cluster) -> Row {
    let urls: Vec<String> = (0..6)
        .map(|i| format!("{RTSP}/{}", MOUNTS[i % MOUNTS.len()]))
        .collect();
    let mut fleet =
        Fleet::start(cluster, spec("ingest-scale", cameras("is", &urls), 2, true)).await;
    tokio::time::sleep(WARM).await;
    fleet.add_ingest().await;
    let ended = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut running = Vec::new();
    for i in &fleet.ingests {
        let (_, m) = i.get("/metrics").await;
        running.push(framewire_e2e::metric(&m, "framewire_ingest_lease_slots").unwrap_or(0.0));
    }
    let notes = format!("ingest replicas 1 → 2; lease slots per replica {running:?}");
    let mut errors = Vec::new();
    if running.iter().any(|&n| n < 1.0) {
        errors.push("a replica got no lease slot".to_owned());
    }
    finish(fleet, ended, notes, errors).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_frame_is_counted_once_under_every_fault() {
    require_stack();
    let cluster = Cluster::up().expect("the fault suite's 3-node Kafka cluster starts");
    let only: Option<Vec<String>> = std::env::var("CHAOS_ONLY")
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().to_owned()).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == name));
    let mut rows = Vec::new();
    macro_rules! scenario {
        ($name:literal, $f:ident) => {
            if wanted($name) {
                let started = Instant::now();
                println!("--- scenario {} ---", $name);
                let row = $f(&cluster).await;
                println!(
                    "{} done in {:.0} s: {:?}\n  notes: {}",
                    $name,
                    started.elapsed().as_secs_f64(),
                    row.verdict,
                    row.notes
                );
                rows.push(row);
            }
        };
    }
    scenario!("steady", steady);
    scenario!("broker-kill", broker_kill);
    scenario!("broker-outage", broker_outage);
    scenario!("worker-kill", worker_kill_backlog);
    scenario!("scale-out", scale_out_backlog);
    scenario!("sink-kill", sink_kill);
    scenario!("ingest-kill", ingest_kill);
    scenario!("pg-restart", pg_restart);
    scenario!("camera-freeze", camera_freeze);
    scenario!("rtcp-only", rtcp_only);
    scenario!("ingest-scale", ingest_scale);
    let text = table(&rows);
    let notes: String = rows
        .iter()
        .map(|r| format!("- **{}**: {}\n", r.scenario, r.notes))
        .collect();
    println!("\n{text}\n{notes}");
    let _ = std::fs::write(artifacts_dir().join("chaos.md"), format!("{text}\n{notes}"));
    let mut failures = Vec::new();
    for r in &rows {
        let v = &r.verdict;
        if v.lost > 0 || v.double_counted > 0 || v.produced == 0 || !r.errors.is_empty() {
            failures.push(format!(
                "{}: {:?}; errors: {:?}; notes: {}",
                r.scenario, v, r.errors, r.notes
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "fault suite failed:\n{}",
        failures.join("\n")
    );
}
