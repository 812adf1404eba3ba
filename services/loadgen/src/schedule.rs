//! When each camera's records are due, and the loop that sends them on time.
//!
//! Every camera sends one record per frame period. Camera `c` of `N` starts
//! `c × G / N` frame periods after the start (`G`: frames per GOP), so the cameras join
//! over the first GOP and their keyframes are spread evenly over every GOP instead of
//! all landing in the same frame period — as in a real fleet, where cameras were switched
//! on at different moments. Record `n` of camera `c` is due at `phase(c) + n × period`.
//!
//! The loop sends records in due order. Paced, it waits for each record's moment on a
//! [`Clock`] (the real one, or a fake in tests) and measures how late each send was — the
//! pacing lag that says whether the generator keeps up; at `max` it never waits. Time is
//! kept in integer nanoseconds from the start, so nothing drifts over a long run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How fast records go out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// At their due time, on a clock running `speed` times real time (1.0: real time).
    Paced {
        /// Schedule seconds per wall-clock second.
        speed: f64,
    },
    /// As fast as the output takes them, in due order.
    Max,
}

/// The due times of a fleet.
#[derive(Debug, Clone)]
pub struct Schedule {
    period_ns: u64,
    phases_ns: Vec<u64>,
}

impl Schedule {
    /// `cameras` cameras at `fps` frames per second, staggered over a GOP of
    /// `gop_frames` frames (fractional for clips whose GOPs vary).
    pub fn new(cameras: usize, fps: f64, gop_frames: f64) -> Self {
        let period_ns = (1e9 / fps).round().max(1.0) as u64;
        let gop_ns = gop_frames.max(1.0) * period_ns as f64;
        let phases_ns = (0..cameras)
            .map(|c| (c as f64 * gop_ns / cameras as f64).floor() as u64)
            .collect();
        Schedule {
            period_ns,
            phases_ns,
        }
    }

    /// Cameras in the schedule.
    pub fn cameras(&self) -> usize {
        self.phases_ns.len()
    }

    /// The frame period.
    #[cfg(test)]
    pub fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns)
    }

    /// When record `n` of camera `camera` is due, from the start.
    #[cfg(test)]
    pub fn due(&self, camera: usize, n: u64) -> Duration {
        Duration::from_nanos(self.due_ns(camera, n))
    }

    fn due_ns(&self, camera: usize, n: u64) -> u64 {
        self.phases_ns[camera].saturating_add(n.saturating_mul(self.period_ns))
    }
}

/// When a run ends (whichever comes first; neither: when stopped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time: paced, the records due before it (on the schedule's clock);
    /// at `max`, whatever went out by then.
    pub duration: Option<Duration>,
    /// Records per camera.
    pub records_per_camera: Option<u64>,
}

/// A source of the current time since the start of the run, and of waiting.
pub trait Clock {
    /// Time since the start.
    fn now(&self) -> Duration;
    /// Waits for `d` (a fake clock just moves on).
    fn sleep(&mut self, d: Duration);
}

/// The real clock.
pub struct SystemClock(std::time::Instant);

impl SystemClock {
    /// A clock starting now.
    pub fn start() -> Self {
        SystemClock(std::time::Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }

    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// One record to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Camera index.
    pub camera: usize,
    /// The camera's record number, from 0 (its `fw-seq`).
    pub n: u64,
    /// When it is due on the schedule, from the start (its capture time).
    pub at: Duration,
}

/// Where the loop sends records and reports what happened.
pub trait Output {
    /// Why sending stops the run.
    type Error;
    /// Sends one record; the number of bytes sent.
    fn send(&mut self, due: Due) -> Result<usize, Self::Error>;
    /// Notes a record sent `bytes` long, `lag` after its moment, at `now` since the start.
    fn sent(&mut self, now: Duration, bytes: usize, lag: Duration);
    /// Called about every [`TICK`] (at most twice that apart) while the loop runs, and once
    /// at the end: progress lines.
    fn tick(&mut self, now: Duration);
}

/// Longest wait between two looks at the stop flag and two [`Output::tick`] calls.
pub const TICK: Duration = Duration::from_millis(100);

/// Sends every record of `schedule` within `limits`, in due order, until done or `stop`.
pub fn run<O: Output>(
    schedule: &Schedule,
    limits: Limits,
    pace: Pace,
    clock: &mut impl Clock,
    output: &mut O,
    stop: &AtomicBool,
) -> Result<(), O::Error> {
    let speed = match pace {
        Pace::Paced { speed } => speed,
        Pace::Max => 1.0,
    };
    // Wall-clock moment of a due time.
    let wall = |at_ns: u64| Duration::from_nanos((at_ns as f64 / speed) as u64);
    let within = |camera: usize, n: u64| {
        limits.records_per_camera.is_none_or(|max| n < max)
            && match (pace, limits.duration) {
                (Pace::Paced { .. }, Some(d)) => wall(schedule.due_ns(camera, n)) < d,
                _ => true,
            }
    };
    let mut heap: BinaryHeap<Reverse<(u64, usize, u64)>> = (0..schedule.cameras())
        .filter(|&c| within(c, 0))
        .map(|c| Reverse((schedule.due_ns(c, 0), c, 0)))
        .collect();
    let mut last_tick = clock.now();
    while let Some(Reverse((at_ns, camera, n))) = heap.pop() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = match pace {
            Pace::Paced { .. } => {
                let moment = wall(at_ns);
                loop {
                    let now = clock.now();
                    if now >= moment || stop.load(Ordering::Relaxed) {
                        break now;
                    }
                    if now >= last_tick + TICK {
                        output.tick(now);
                        last_tick = now;
                    }
                    clock.sleep((moment - now).min(TICK));
                }
            }
            Pace::Max => {
                let now = clock.now();
                if limits.duration.is_some_and(|d| now >= d) {
                    break;
                }
                now
            }
        };
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let due = Due {
            camera,
            n,
            at: Duration::from_nanos(at_ns),
        };
        let bytes = output.send(due)?;
        let lag = match pace {
            Pace::Paced { .. } => now.saturating_sub(wall(at_ns)),
            Pace::Max => Duration::ZERO,
        };
        output.sent(now, bytes, lag);
        if now >= last_tick + TICK {
            output.tick(now);
            last_tick = now;
        }
        if within(camera, n + 1) {
            heap.push(Reverse((schedule.due_ns(camera, n + 1), camera, n + 1)));
        }
    }
    output.tick(clock.now());
    Ok(())
}

#[cfg(test)]
pub(crate) mod fake {
    //! A fake clock and a recording output for tests of the loop.

    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// Time that only moves when the loop sleeps or an output send costs time.
    #[derive(Clone, Default)]
    pub(crate) struct FakeClock {
        pub(crate) now: Rc<Cell<Duration>>,
        pub(crate) slept: Rc<Cell<Duration>>,
    }

    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            self.now.get()
        }
        fn sleep(&mut self, d: Duration) {
            self.now.set(self.now.get() + d);
            self.slept.set(self.slept.get() + d);
        }
    }

    /// One record as the loop reported it.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Sent {
        pub(crate) due: Due,
        pub(crate) now: Duration,
        pub(crate) lag: Duration,
    }

    /// Keeps what the loop hands over; each send costs `cost` of the fake clock's time.
    pub(crate) struct Recorder {
        pub(crate) clock: FakeClock,
        pub(crate) cost: Duration,
        pub(crate) sent: Vec<Sent>,
        pub(crate) ticks: Vec<Duration>,
        last: Option<Due>,
    }

    impl Recorder {
        pub(crate) fn new(clock: &FakeClock, cost: Duration) -> Self {
            Recorder {
                clock: clock.clone(),
                cost,
                sent: Vec::new(),
                ticks: Vec::new(),
                last: None,
            }
        }
    }

    impl Output for Recorder {
        type Error = std::convert::Infallible;

        fn send(&mut self, due: Due) -> Result<usize, Self::Error> {
            let now = &self.clock.now;
            now.set(now.get() + self.cost);
            self.last = Some(due);
            Ok(1000)
        }

        fn sent(&mut self, now: Duration, bytes: usize, lag: Duration) {
            assert_eq!(bytes, 1000);
            let due = self.last.take().expect("sent follows send");
            self.sent.push(Sent { due, now, lag });
        }

        fn tick(&mut self, now: Duration) {
            self.ticks.push(now);
        }
    }

    /// Runs `schedule` on a fake clock where a send costs `cost`.
    pub(crate) fn run_fake(
        schedule: &Schedule,
        limits: Limits,
        pace: Pace,
        cost: Duration,
    ) -> (Recorder, FakeClock) {
        let mut clock = FakeClock::default();
        let mut out = Recorder::new(&clock, cost);
        let stop = AtomicBool::new(false);
        let Ok(()) = run(schedule, limits, pace, &mut clock, &mut out, &stop);
        (out, clock)
    }
}

#[cfg(test)]
mod tests {
    use super::fake::*;
    use super::*;
    use std::collections::BTreeMap;

    const MS: Duration = Duration::from_millis(1);

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn cameras_join_over_one_gop_and_keep_their_period() {
        // 4 cameras, 25 fps, GOP 50 (2 s): they start 0, 0.5, 1, 1.5 s in.
        let schedule = Schedule::new(4, 25.0, 50.0);
        assert_eq!(schedule.period(), 40 * MS);
        let starts: Vec<Duration> = (0..4).map(|c| schedule.due(c, 0)).collect();
        assert_eq!(starts, [Duration::ZERO, 500 * MS, 1000 * MS, 1500 * MS]);
        let limits = Limits {
            duration: secs(3),
            records_per_camera: None,
        };
        let (out, clock) = run_fake(
            &schedule,
            limits,
            Pace::Paced { speed: 1.0 },
            Duration::ZERO,
        );
        // Records due before 3 s: 75, 63, 50, 38.
        let mut per_camera: BTreeMap<usize, Vec<Duration>> = BTreeMap::new();
        for s in &out.sent {
            per_camera.entry(s.due.camera).or_default().push(s.due.at);
            assert_eq!(s.lag, Duration::ZERO, "nothing costs time: never late");
            assert_eq!(s.now, s.due.at, "sent exactly at its moment");
        }
        let counts: Vec<usize> = per_camera.values().map(Vec::len).collect();
        assert_eq!(counts, [75, 63, 50, 38]);
        for times in per_camera.values() {
            assert!(times.windows(2).all(|w| w[1] - w[0] == 40 * MS));
        }
        assert!(clock.slept.get() >= Duration::from_millis(2900));
        assert!(out.ticks.windows(2).all(|w| w[1] - w[0] <= TICK + 40 * MS));
    }

    #[test]
    fn a_slow_output_shows_as_lag() {
        // 10 cameras at 25 fps joining over 1 s (GOP 25): 250 records/s once all run, one
        // every 4 ms; a send takes 5 ms.
        let schedule = Schedule::new(10, 25.0, 25.0);
        let limits = Limits {
            duration: secs(3),
            records_per_camera: None,
        };
        let (out, _) = run_fake(&schedule, limits, Pace::Paced { speed: 1.0 }, 5 * MS);
        let last = out.sent.last().expect("sent");
        // From 0.9 s on, each second of schedule takes 1.25 s: 2.1 s later the loop is
        // about 0.5 s behind.
        assert!(last.lag > 450 * MS && last.lag < 600 * MS, "{:?}", last.lag);
        let early = out.sent.iter().filter(|s| s.due.at < 500 * MS);
        assert!(early.clone().count() > 10);
        // Records due at the same moment wait for each other: 3 cameras share some.
        assert!(
            early.into_iter().all(|s| s.lag <= 10 * MS),
            "keeps up at first"
        );
    }

    #[test]
    fn max_never_waits_and_a_speed_factor_compresses_time() {
        let schedule = Schedule::new(3, 10.0, 10.0);
        let limits = Limits {
            duration: None,
            records_per_camera: Some(20),
        };
        let (out, clock) = run_fake(&schedule, limits, Pace::Max, Duration::ZERO);
        assert_eq!(out.sent.len(), 60);
        assert_eq!(clock.slept.get(), Duration::ZERO);
        assert!(out.sent.windows(2).all(|w| w[0].due.at <= w[1].due.at));
        // At 4x, 2 s of schedule (3 cameras, 10 fps) take 0.5 s of wall time.
        let limits = Limits {
            duration: Some(500 * MS),
            records_per_camera: None,
        };
        let (out, clock) = run_fake(
            &schedule,
            limits,
            Pace::Paced { speed: 4.0 },
            Duration::ZERO,
        );
        assert_eq!(out.sent.len(), 20 + 17 + 14, "phases 0, 1/3 s, 2/3 s");
        assert!(clock.now.get() <= 500 * MS);
        assert!(out.sent.iter().all(|s| s.due.at / 4 == s.now));
    }

    #[test]
    fn a_stop_ends_the_run_at_once() {
        let schedule = Schedule::new(2, 25.0, 50.0);
        let mut clock = FakeClock::default();
        let mut out = Recorder::new(&clock, Duration::ZERO);
        let stop = AtomicBool::new(true);
        let Ok(()) = run(
            &schedule,
            Limits::default(),
            Pace::Max,
            &mut clock,
            &mut out,
            &stop,
        );
        assert!(out.sent.is_empty());
    }
}

/// Properties of the schedule and the loop over fleets of every shape.
#[cfg(test)]
mod props {
    use super::fake::*;
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every camera sends records 0, 1, 2, … in order, one period apart, starting within
        /// the first GOP; records go out in due order; the counts follow from the phases.
        #[test]
        fn every_camera_sends_its_records_in_order_one_period_apart(
            cameras in 1usize..200,
            fps in 1.0f64..60.0,
            gop in 1.0f64..120.0,
            seconds in 0.1f64..5.0,
        ) {
            let schedule = Schedule::new(cameras, fps, gop);
            let period = schedule.period();
            let duration = Duration::from_secs_f64(seconds);
            let limits = Limits { duration: Some(duration), records_per_camera: None };
            let (out, _) = run_fake(&schedule, limits, Pace::Paced { speed: 1.0 }, Duration::ZERO);
            let mut next: HashMap<usize, u64> = HashMap::new();
            for pair in out.sent.windows(2) {
                prop_assert!(pair[0].due.at <= pair[1].due.at);
            }
            for s in &out.sent {
                let n = next.entry(s.due.camera).or_insert(0);
                prop_assert_eq!(s.due.n, *n);
                prop_assert_eq!(s.due.at, schedule.due(s.due.camera, s.due.n));
                prop_assert!(s.due.at < duration);
                *n += 1;
            }
            for c in 0..cameras {
                let phase = schedule.due(c, 0);
                prop_assert!(phase.as_secs_f64() < gop * period.as_secs_f64() + 1e-9);
                let expected = if phase < duration {
                    (duration - phase).as_nanos().div_ceil(period.as_nanos()) as u64
                } else {
                    0
                };
                prop_assert_eq!(next.get(&c).copied().unwrap_or(0), expected, "camera {}", c);
            }
        }

        /// Keyframes (every `gop`-th record of a camera) are spread over the GOP: no frame
        /// period holds more than ⌈cameras / gop⌉ of them.
        #[test]
        fn keyframes_of_different_cameras_do_not_align(
            cameras in 1usize..2000,
            gop in 1u32..100,
        ) {
            let schedule = Schedule::new(cameras, 25.0, f64::from(gop));
            let period = schedule.period().as_nanos();
            let mut per_slot: HashMap<u128, usize> = HashMap::new();
            for c in 0..cameras {
                // The keyframe of the camera's second GOP, well after everyone joined.
                let at = schedule.due(c, u64::from(gop)).as_nanos();
                *per_slot.entry(at / period).or_default() += 1;
            }
            let most = per_slot.values().copied().max().unwrap_or(0);
            prop_assert!(most <= cameras.div_ceil(gop as usize), "{} in one period", most);
        }
    }
}
