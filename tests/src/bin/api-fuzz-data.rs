//! Data for the API fuzz run (`scripts/api-fuzz.sh`): records a sink under test turns into
//! every kind of answer its API gives, produced to the topics of one run.
//!
//! ```text
//! api-fuzz-data produce PREFIX   # to PREFIX.stats, PREFIX.detections, PREFIX.dlq (which the
//!                                # sink has created): 3 cameras, 30 s at 25 fps ending now;
//!                                # prints the camera ids, one a line
//! api-fuzz-data delete PREFIX    # deletes the run's topics
//! ```
//!
//! Camera `PREFIX-0` has objects (a person, then a car: detections on every 5th frame),
//! `PREFIX-1` goes black after 12 s (an incident), `PREFIX-2` has a 6 s gap (an incident
//! and missing frames) and a few dead letters.

use anyhow::bail;
use framewire_e2e::{
    Record, Topics, dead_letter, detections_record, now_ms, produce_records, stats_record,
};

const FRAMES: u64 = 750;
const FRAME_MS: i64 = 40;

/// A stats record of frame `seq`, black when asked.
fn stats(camera: &str, seq: u64, capture_ms: i64, black: bool) -> Record {
    let mut r = stats_record(camera, "fuzz", seq, capture_ms);
    if black {
        let mut v: serde_json::Value =
            serde_json::from_slice(&r.value).expect("stats_record writes JSON");
        v["black"] = true.into();
        v["y_avg"] = 16.0.into();
        r.value = serde_json::to_vec(&v).expect("JSON");
    }
    r
}

async fn produce(prefix: &str) -> anyhow::Result<()> {
    let t = Topics::named(prefix);
    let cams: Vec<String> = (0..3).map(|i| format!("{prefix}-{i}")).collect();
    let start = now_ms() - FRAMES as i64 * FRAME_MS;
    let (mut stats_records, mut detections, mut dead) = (Vec::new(), Vec::new(), Vec::new());
    for seq in 0..FRAMES {
        let at = start + seq as i64 * FRAME_MS;
        stats_records.push(stats(&cams[0], seq, at, false));
        stats_records.push(stats(&cams[1], seq, at, seq >= 300));
        if !(200..350).contains(&seq) {
            stats_records.push(stats(&cams[2], seq, at, false));
        }
        if seq % 5 == 0 {
            let label = if seq < 400 { "person" } else { "car" };
            let class = if seq < 400 { 0 } else { 2 };
            detections.push(detections_record(
                &cams[0],
                "fuzz",
                seq,
                at,
                &[(label, class, 0.9, [0.1, 0.2, 0.3, 0.4])],
            ));
        }
        if seq % 100 == 50 {
            dead.push(dead_letter(&cams[2], "fuzz", seq, at));
        }
    }
    produce_records(&t.stats, &stats_records).await;
    produce_records(&t.detections, &detections).await;
    produce_records(&t.dlq, &dead).await;
    for c in &cams {
        println!("{c}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, prefix] if cmd == "produce" => produce(prefix).await,
        [cmd, prefix] if cmd == "delete" => {
            Topics::named(prefix).delete().await;
            Ok(())
        }
        _ => bail!("usage: api-fuzz-data produce|delete PREFIX (see the module doc)"),
    }
}
