//! What a run achieved: records and bytes per second, delivery outcomes, and how late the
//! records went out against their schedule (the pacing lag), per second and over the run.
//! Progress lines go to stderr each second; the summary is one JSON line for scripts.

use std::time::Duration;

use serde::Serialize;

/// Lag histogram buckets: whole milliseconds up to a minute, then one overflow bucket.
const LAG_BUCKETS: usize = 60_001;

/// One second of the run (by wall clock).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Second {
    /// Seconds since the start at the end of this second (1, 2, …).
    pub t: u64,
    /// Records handed to the producer.
    pub records: u64,
    /// Megabytes (10⁶ bytes) of record values.
    pub mb: f64,
    /// Worst pacing lag of a record sent in this second, ms.
    pub lag_max_ms: u64,
}

/// Counts of a run, fed by the sending loop.
#[derive(Debug, Clone)]
pub struct Tally {
    records: u64,
    bytes: u64,
    keyframes: u64,
    lag_ms: Vec<u64>,
    seconds: Vec<Second>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            records: 0,
            bytes: 0,
            keyframes: 0,
            lag_ms: vec![0; LAG_BUCKETS],
            seconds: Vec::new(),
        }
    }
}

/// Percentiles of the pacing lag, ms.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Lag {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl Tally {
    /// Notes one record sent at `now` since the start, `lag` after its moment.
    pub fn sent(&mut self, now: Duration, bytes: usize, keyframe: bool, lag: Duration) {
        let lag_ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX);
        self.records += 1;
        self.bytes += bytes as u64;
        self.keyframes += u64::from(keyframe);
        self.lag_ms[(lag_ms as usize).min(LAG_BUCKETS - 1)] += 1;
        let second = self.second(now);
        second.records += 1;
        second.mb += bytes as f64 / 1e6;
        second.lag_max_ms = second.lag_max_ms.max(lag_ms);
    }

    /// The entry of the second that `now` falls in (seconds with nothing sent stay, with
    /// zeros, so that the list is one entry per second).
    fn second(&mut self, now: Duration) -> &mut Second {
        let t = now.as_secs() + 1;
        while self.seconds.last().is_none_or(|s| s.t < t) {
            let next = self.seconds.last().map_or(1, |s| s.t + 1);
            self.seconds.push(Second {
                t: next,
                ..Second::default()
            });
        }
        let index = self.seconds.len() - 1;
        &mut self.seconds[index]
    }

    /// Makes sure the seconds up to `now` have entries.
    pub fn advance(&mut self, now: Duration) {
        self.second(now);
    }

    /// The seconds completed before `now`, oldest first.
    pub fn completed(&self, now: Duration) -> impl Iterator<Item = &Second> {
        let current = now.as_secs() + 1;
        self.seconds.iter().filter(move |s| s.t < current)
    }

    /// Pacing lag percentiles; `None` before the first record.
    pub fn lag(&self) -> Option<Lag> {
        if self.records == 0 {
            return None;
        }
        let rank = |q: f64| ((self.records as f64 * q).ceil() as u64).max(1);
        let at = |rank: u64| {
            let mut seen = 0;
            for (ms, &count) in self.lag_ms.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    return ms as u64;
                }
            }
            (LAG_BUCKETS - 1) as u64
        };
        Some(Lag {
            p50: at(rank(0.5)),
            p99: at(rank(0.99)),
            max: at(self.records),
        })
    }
}

/// The final JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `frames` or `stats`.
    pub mode: &'static str,
    /// `h264`, `h265`; absent in stats mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codec: Option<&'static str>,
    /// The topic written.
    pub topic: String,
    /// Cameras simulated.
    pub cameras: u32,
    /// Frames per second per camera.
    pub fps: f64,
    /// `realtime`, `max` or a speed such as `2x`.
    pub rate: String,
    /// Records per second the schedule asks for once every camera runs (`null` at max).
    pub target_records_per_s: Option<f64>,
    /// Seconds from the start until the last record was acknowledged (the final flush
    /// included: at `max` the producer's queue may still hold many records when the
    /// last one is handed over).
    pub seconds: f64,
    /// Of which the final flush.
    pub flush_seconds: f64,
    /// Records handed to the producer.
    pub records: u64,
    /// Of which keyframes.
    pub keyframes: u64,
    /// Megabytes (10⁶ bytes) of record values.
    pub mb: f64,
    /// `records` / `seconds`.
    pub records_per_s: f64,
    /// `mb` / `seconds`.
    pub mb_per_s: f64,
    /// Records the brokers acknowledged.
    pub delivered: u64,
    /// Records that failed (refused by the producer or not acknowledged in time).
    pub delivery_errors: u64,
    /// The first delivery error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Pacing lag over the run (`null` at max, where nothing has a moment).
    pub lag_ms: Option<Lag>,
    /// Paced: whether the generator kept up (99 % of the records went out within one frame
    /// period of their moment); `null` at max.
    pub keeping_up: Option<bool>,
    /// One entry per second.
    pub per_second: Vec<Second>,
}

/// What the summary is made of besides the tally.
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// `frames` or `stats`.
    pub mode: &'static str,
    /// The codec of the clip.
    pub codec: Option<&'static str>,
    /// The topic.
    pub topic: String,
    /// Cameras.
    pub cameras: u32,
    /// Frames per second per camera.
    pub fps: f64,
    /// The rate as configured.
    pub rate: String,
    /// Schedule seconds per wall-clock second; `None` at max.
    pub speed: Option<f64>,
    /// Time of the last record handed over.
    pub elapsed: Duration,
    /// Acknowledged records.
    pub delivered: u64,
    /// Failed records.
    pub delivery_errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// The final flush.
    pub flush: Duration,
}

impl Tally {
    /// The summary of the run.
    pub fn summary(&self, facts: RunFacts) -> Summary {
        let seconds = (facts.elapsed + facts.flush).as_secs_f64().max(1e-3);
        let mb = self.bytes as f64 / 1e6;
        let lag = facts.speed.and_then(|_| self.lag());
        let period_ms = facts.speed.map(|speed| 1000.0 / (facts.fps * speed));
        Summary {
            mode: facts.mode,
            codec: facts.codec,
            topic: facts.topic,
            cameras: facts.cameras,
            fps: facts.fps,
            rate: facts.rate,
            target_records_per_s: facts
                .speed
                .map(|speed| f64::from(facts.cameras) * facts.fps * speed),
            seconds,
            flush_seconds: facts.flush.as_secs_f64(),
            records: self.records,
            keyframes: self.keyframes,
            mb,
            records_per_s: self.records as f64 / seconds,
            mb_per_s: mb / seconds,
            delivered: facts.delivered,
            delivery_errors: facts.delivery_errors,
            first_error: facts.first_error,
            lag_ms: lag,
            keeping_up: lag.zip(period_ms).map(|(l, p)| l.p99 as f64 <= p),
            per_second: self.seconds.clone(),
        }
    }
}

/// One progress line for a completed second.
pub fn progress_line(second: &Second, delivered: u64, errors: u64, in_flight: i32) -> String {
    format!(
        "framewire-loadgen: {:>4} s  {:>7} records/s  {:>7.1} MB/s  lag max {:>5} ms  delivered {:>10}  errors {}  in flight {}",
        second.t, second.records, second.mb, second.lag_max_ms, delivered, errors, in_flight
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn seconds_and_percentiles() {
        let mut t = Tally::default();
        for i in 0..100u64 {
            // 100 records over 2.5 s; 98 on time, one 30 ms late, one 2 s late.
            let lag = match i {
                50 => 30 * MS,
                99 => 2000 * MS,
                _ => Duration::ZERO,
            };
            t.sent(MS * (i as u32) * 25, 1_000, i % 10 == 0, lag);
        }
        let lag = t.lag().expect("records");
        assert_eq!(
            lag,
            Lag {
                p50: 0,
                p99: 30,
                max: 2000
            }
        );
        let seconds: Vec<(u64, u64)> = t.seconds.iter().map(|s| (s.t, s.records)).collect();
        assert_eq!(seconds, [(1, 40), (2, 40), (3, 20)]);
        assert_eq!(t.completed(2500 * MS).count(), 2);
        assert_eq!(t.seconds[2].lag_max_ms, 2000);
        let s = t.summary(RunFacts {
            mode: "frames",
            codec: Some("h264"),
            topic: "t".into(),
            cameras: 4,
            fps: 25.0,
            rate: "realtime".into(),
            speed: Some(1.0),
            elapsed: 2500 * MS,
            delivered: 100,
            delivery_errors: 0,
            first_error: None,
            flush: Duration::ZERO,
        });
        assert_eq!((s.records, s.keyframes), (100, 10));
        assert_eq!(s.records_per_s, 40.0);
        assert_eq!(s.mb_per_s, 0.04);
        assert_eq!(s.target_records_per_s, Some(100.0));
        assert_eq!(s.keeping_up, Some(true), "p99 30 ms within a 40 ms period");
        let json = serde_json::to_value(&s).expect("JSON");
        assert_eq!(json["lag_ms"]["max"], 2000);
        assert!(json.get("first_error").is_none());
    }

    #[test]
    fn quiet_seconds_still_have_entries() {
        let mut t = Tally::default();
        t.sent(100 * MS, 10, false, Duration::ZERO);
        t.advance(3100 * MS);
        t.sent(3200 * MS, 10, false, 50 * MS);
        let seconds: Vec<(u64, u64)> = t.seconds.iter().map(|s| (s.t, s.records)).collect();
        assert_eq!(seconds, [(1, 1), (2, 0), (3, 0), (4, 1)]);
        let max = t.summary(RunFacts {
            mode: "stats",
            codec: None,
            topic: "t".into(),
            cameras: 1,
            fps: 25.0,
            rate: "max".into(),
            speed: None,
            elapsed: 3200 * MS,
            delivered: 2,
            delivery_errors: 0,
            first_error: None,
            flush: Duration::ZERO,
        });
        assert_eq!(max.lag_ms, None);
        assert_eq!(max.keeping_up, None);
        assert_eq!(max.target_records_per_s, None);
    }
}
