//! The accountant of the fault suite: did every frame count exactly once?
//!
//! It reads, with its own clients, what each part of the fleet left behind, and checks
//! them against each other frame by frame:
//! - the frames topic: every record on it is a frame ingest had acknowledged (the brokers
//!   took it with `acks=all`), identified by (camera, session, seq) from its headers;
//! - the sink's database: every window's stored state lists the (session, seq) it counted
//!   with statistics (`seen`) and as decode errors (`failed`);
//! - the dead-letter topic: every frame counted as a decode error must be there, with a
//!   reason;
//! - ingest's counters of frames it dropped (queue overflow during an outage, deliveries
//!   that failed), scraped before each ingest process stopped.
//!
//! A frame on the frames topic counted once (in the window of its capture time) is fine;
//! counted in no window is **lost**; counted twice (twice in the states, or as a decode
//! error and with statistics) is **double-counted**. Frames missing from a session's
//! numbering (gaps) must be explained by ingest's counted drops, or they are lost too.
//! Two sessions of one camera that overlap in capture time mean the camera ran twice: the
//! frames of the overlap are double-counted. Frames a killed process received but never
//! acknowledged are invisible to everyone (they are not on the topic and leave no gap).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// A frame's identity: camera, session, seq.
pub type FrameId = (String, String, u64);

/// One frames-topic record.
#[derive(Debug, Clone)]
pub struct Produced {
    /// Capture time, ms since the epoch.
    pub capture_ms: i64,
    /// IDR access unit.
    pub keyframe: bool,
}

/// What the frames topic holds.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Distinct frames.
    pub frames: BTreeMap<FrameId, Produced>,
    /// Records that repeated an identity already on the topic (a producer duplicate).
    pub repeated: u64,
}

/// Reads every record of `topic` on `bootstrap`, from the beginning up to the high
/// watermarks taken at the start, and returns the headers of each (lower-cased names).
pub fn read_headers(bootstrap: &str, topic: &str) -> Result<Vec<HashMap<String, String>>, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", crate::unique("accountant"))
        .set("enable.auto.commit", "false")
        .set("max.partition.fetch.bytes", "16777216")
        .create()
        .map_err(|e| e.to_string())?;
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("metadata of {topic}: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for t in md.topics() {
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .map_err(|e| format!("watermarks of {topic}/{}: {e}", p.id()))?;
            if high > low {
                ends.insert(p.id(), high);
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !ends.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "{topic}: could not read up to the end within 120 s"
            ));
        }
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let mut h = HashMap::new();
                if let Some(hs) = m.headers() {
                    for hd in hs.iter() {
                        h.insert(
                            hd.key.to_ascii_lowercase(),
                            String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                if let Some(k) = m.key() {
                    h.insert("@key".into(), String::from_utf8_lossy(k).into_owned());
                }
                out.push(h);
                if ends
                    .get(&m.partition())
                    .is_some_and(|&e| m.offset() + 1 >= e)
                {
                    ends.remove(&m.partition());
                }
            }
            Some(Err(e)) => return Err(format!("reading {topic}: {e}")),
            None => {}
        }
    }
    Ok(out)
}

/// The frame identity in a record's `fw-*` headers (missing parts empty, or seq `u64::MAX`).
fn frame_id(h: &HashMap<String, String>) -> FrameId {
    (
        h.get("fw-camera").cloned().unwrap_or_default(),
        h.get("fw-session").cloned().unwrap_or_default(),
        h.get("fw-seq")
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::MAX),
    )
}

/// The frames topic as a ledger of distinct frames.
pub fn ledger(bootstrap: &str, topic: &str) -> Result<Ledger, String> {
    let mut l = Ledger::default();
    for h in read_headers(bootstrap, topic)? {
        let id = frame_id(&h);
        let p = Produced {
            capture_ms: h
                .get("fw-capture-ms")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            keyframe: h.get("fw-keyframe").is_some_and(|v| v == "1"),
        };
        if l.frames.insert(id, p).is_some() {
            l.repeated += 1;
        }
    }
    Ok(l)
}

/// Worker dead letters by frame: the reasons given.
pub fn dead_letters(bootstrap: &str, topic: &str) -> Result<HashMap<FrameId, String>, String> {
    let mut out = HashMap::new();
    for h in read_headers(bootstrap, topic)? {
        if h.get("fw-dlq-source").map(String::as_str) != Some("worker") {
            continue;
        }
        let id = frame_id(&h);
        out.insert(id, h.get("fw-dlq-reason").cloned().unwrap_or_default());
    }
    Ok(out)
}

/// What the sink's stored window states counted, per frame: the window starts it is
/// in, with statistics and as a decode error.
#[derive(Debug, Default)]
pub struct Counted {
    /// Frame → windows that counted it with statistics.
    pub stats: HashMap<FrameId, Vec<i64>>,
    /// Frame → windows that counted it as a decode error.
    pub failed: HashMap<FrameId, Vec<i64>>,
}

fn expand(
    camera: &str,
    start_ms: i64,
    sets: &serde_json::Value,
    into: &mut HashMap<FrameId, Vec<i64>>,
) -> Result<(), String> {
    let Some(map) = sets.as_object() else {
        return Ok(());
    };
    for (session, ranges) in map {
        for r in ranges.as_array().ok_or("ranges are not an array")? {
            let lo = r[0].as_u64().ok_or("bad range")?;
            let hi = r[1].as_u64().ok_or("bad range")?;
            if hi < lo || hi - lo > 1_000_000 {
                return Err(format!("implausible range {lo}..={hi}"));
            }
            for seq in lo..=hi {
                into.entry((camera.to_owned(), session.clone(), seq))
                    .or_default()
                    .push(start_ms);
            }
        }
    }
    Ok(())
}

/// Reads the window states of `cameras` from the sink's PostgreSQL database.
pub async fn counted(dsn: &str, cameras: &[String]) -> Result<Counted, String> {
    let pool = sqlx::PgPool::connect(dsn)
        .await
        .map_err(|e| e.to_string())?;
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT camera, start_ms, state FROM window_summaries WHERE camera = ANY($1)",
    )
    .bind(cameras)
    .fetch_all(&pool)
    .await
    .map_err(|e| e.to_string())?;
    pool.close().await;
    let mut c = Counted::default();
    for (camera, start_ms, state) in rows {
        if state.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&state)
            .map_err(|e| format!("window {camera}@{start_ms}: unreadable state: {e}"))?;
        expand(&camera, start_ms, &v["seen"], &mut c.stats)?;
        expand(&camera, start_ms, &v["failed"], &mut c.failed)?;
    }
    Ok(c)
}

/// One scenario's verdict.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Distinct frames on the frames topic (acknowledged by ingest).
    pub produced: u64,
    /// Of those, counted once with statistics.
    pub counted: u64,
    /// Of those, counted once as a decode error (each with a dead letter and reason).
    pub in_dlq: u64,
    /// Frames missing inside sessions (gaps in `fw-seq`).
    pub gaps: u64,
    /// Drops ingest counted.
    pub dropped_counted: u64,
    /// Frames lost: acknowledged and not counted, plus gaps ingest did not count.
    pub lost: u64,
    /// Frames counted more than once, or in overlapping sessions of one camera.
    pub double_counted: u64,
    /// Dead-letter reasons and their counts.
    pub dlq_reasons: BTreeMap<String, u64>,
    /// Problems found, for the failure message (first few of each kind).
    pub problems: Vec<String>,
}

/// Checks the frames topic against what the sink counted and ingest dropped.
pub fn account(
    ledger: &Ledger,
    counted: &Counted,
    dlq: &HashMap<FrameId, String>,
    dropped_counted: u64,
    window_ms: i64,
) -> Verdict {
    let mut v = Verdict {
        produced: ledger.frames.len() as u64,
        dropped_counted,
        ..Verdict::default()
    };
    let mut shown: HashMap<&str, usize> = HashMap::new();
    let mut note = |kind: &'static str, text: String, problems: &mut Vec<String>| {
        let n = shown.entry(kind).or_default();
        *n += 1;
        if *n <= 5 {
            problems.push(format!("{kind}: {text}"));
        }
    };
    for (id, p) in &ledger.frames {
        let window = p.capture_ms.div_euclid(window_ms) * window_ms;
        let s = counted.stats.get(id).map_or(&[][..], Vec::as_slice);
        let f = counted.failed.get(id).map_or(&[][..], Vec::as_slice);
        match (s.len(), f.len()) {
            (0, 0) => {
                v.lost += 1;
                note(
                    "lost",
                    format!("{id:?} (capture {})", p.capture_ms),
                    &mut v.problems,
                );
            }
            (1, 0) | (0, 1) => {
                let w = s.first().or(f.first()).copied().unwrap_or(window);
                if w != window {
                    v.lost += 1;
                    note(
                        "misplaced",
                        format!("{id:?} counted in window {w}, captured in {window}"),
                        &mut v.problems,
                    );
                } else if f.is_empty() {
                    v.counted += 1;
                } else {
                    v.in_dlq += 1;
                    match dlq.get(id) {
                        Some(reason) if !reason.is_empty() => {
                            *v.dlq_reasons.entry(reason.clone()).or_default() += 1;
                        }
                        _ => {
                            v.lost += 1;
                            note(
                                "decode error without a dead letter",
                                format!("{id:?}"),
                                &mut v.problems,
                            );
                        }
                    }
                }
            }
            (a, b) => {
                v.double_counted += (a + b - 1) as u64;
                note(
                    "double",
                    format!("{id:?}: {a} times with statistics, {b} as a decode error"),
                    &mut v.problems,
                );
            }
        }
    }
    for id in counted.stats.keys().chain(counted.failed.keys()) {
        if !ledger.frames.contains_key(id) {
            v.double_counted += 1;
            note(
                "counted but never produced",
                format!("{id:?}"),
                &mut v.problems,
            );
        }
    }
    // Gaps inside sessions, and sessions of one camera overlapping in capture time.
    let mut sessions: BTreeMap<(&str, &str), (BTreeSet<u64>, i64, i64)> = BTreeMap::new();
    for ((camera, session, seq), p) in &ledger.frames {
        let e = sessions
            .entry((camera, session))
            .or_insert((BTreeSet::new(), i64::MAX, i64::MIN));
        e.0.insert(*seq);
        e.1 = e.1.min(p.capture_ms);
        e.2 = e.2.max(p.capture_ms);
    }
    for ((camera, session), (seqs, ..)) in &sessions {
        let max = seqs.last().copied().unwrap_or(0);
        let missing = (max + 1).saturating_sub(seqs.len() as u64);
        if missing > 0 {
            v.gaps += missing;
            note(
                "gap",
                format!("{camera}/{session}: {missing} of 0..={max} missing"),
                &mut v.problems,
            );
        }
    }
    v.lost += v.gaps.saturating_sub(dropped_counted);
    let mut by_camera: BTreeMap<&str, Vec<(i64, i64, &str)>> = BTreeMap::new();
    for ((camera, session), (_, first, last)) in &sessions {
        by_camera
            .entry(camera)
            .or_default()
            .push((*first, *last, session));
    }
    for (camera, mut spans) in by_camera {
        spans.sort();
        for pair in spans.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if b.0 <= a.1 {
                let overlapping = ledger
                    .frames
                    .iter()
                    .filter(|((c, s, _), p)| c == camera && s == b.2 && p.capture_ms <= a.1)
                    .count() as u64;
                v.double_counted += overlapping;
                note(
                    "camera ran twice",
                    format!(
                        "{camera}: session {} ({}..{}) overlaps session {} ({}..{}): {overlapping} frames",
                        a.2, a.0, a.1, b.2, b.0, b.1
                    ),
                    &mut v.problems,
                );
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: &str, s: &str, q: u64) -> FrameId {
        (c.into(), s.into(), q)
    }

    fn ledger_of(frames: &[(FrameId, i64)]) -> Ledger {
        let mut l = Ledger::default();
        for (f, t) in frames {
            l.frames.insert(
                f.clone(),
                Produced {
                    capture_ms: *t,
                    keyframe: false,
                },
            );
        }
        l
    }

    #[test]
    fn the_accountant_tells_lost_double_and_explained_frames_apart() {
        let l = ledger_of(&[
            (id("a", "s", 0), 100),
            (id("a", "s", 1), 140),
            (id("a", "s", 3), 220),
            (id("a", "s", 4), 260),
            (id("a", "t", 0), 250), // overlaps session s: the camera ran twice
        ]);
        let mut c = Counted::default();
        c.stats.insert(id("a", "s", 0), vec![0]);
        c.stats.insert(id("a", "s", 1), vec![0, 0]); // twice
        c.failed.insert(id("a", "s", 3), vec![0]);
        c.stats.insert(id("a", "t", 0), vec![0]);
        // s4 is lost; s3 is a decode error with its dead letter.
        let dlq = HashMap::from([(id("a", "s", 3), "missing_reference".to_owned())]);
        let v = account(&l, &c, &dlq, 1, 10_000);
        assert_eq!(v.produced, 5);
        assert_eq!((v.counted, v.in_dlq), (2, 1));
        assert_eq!(v.gaps, 1, "seq 2 of s");
        assert_eq!(v.lost, 1, "s4; the gap is explained by a counted drop");
        assert_eq!(v.double_counted, 2, "s1 twice, t0 inside s");
        assert_eq!(v.dlq_reasons["missing_reference"], 1);
        let v = account(&l, &c, &dlq, 0, 10_000);
        assert_eq!(v.lost, 2, "an unexplained gap is a loss");
    }
}
