//! A per-client rate limit for the JSON API (`sink.api.rate_limit_per_second`, off by
//! default): one token bucket per peer IP address, `burst` tokens deep, refilled at
//! `per_second`. A request takes a token; a client with none left is told how long to
//! wait for the next one (the API answers 429 with `Retry-After`).
//!
//! Memory is bounded: at most [`MAX_CLIENTS`] buckets are kept. When a new client would
//! exceed that, buckets that have refilled (idle clients) are dropped first, and if every
//! one is still in use, all are (each client starts again with a full bucket: the limit
//! loosens for a moment rather than the map growing without bound).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most clients with a bucket at once.
pub const MAX_CLIENTS: usize = 10_000;

/// Token buckets per client address.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    clients: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_second` requests per second on average (> 0), `burst` at once (≥ 1).
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimiter {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The average rate allowed.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// The bucket's size.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// Takes a token of `client`'s bucket at `now`: `Ok`, or `Err(wait)` until the next
    /// token when there is none.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut clients = match self.clients.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !clients.contains_key(&client) && clients.len() >= MAX_CLIENTS {
            clients.retain(|_, b| self.refilled(b, now) < self.burst);
            if clients.len() >= MAX_CLIENTS {
                clients.clear();
            }
        }
        let bucket = clients.entry(client).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        bucket.tokens = self.refilled(bucket, now);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }

    /// Clients with a bucket now.
    pub fn clients(&self) -> usize {
        self.clients.lock().map_or(0, |c| c.len())
    }

    fn refilled(&self, b: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + elapsed * self.per_second).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn a_burst_then_the_average_rate_per_client() {
        let limiter = RateLimiter::new(10, 5);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(limiter.check(ip(1), t0).is_ok());
        }
        let wait = limiter.check(ip(1), t0).unwrap_err();
        assert!(
            (wait.as_secs_f64() - 0.1).abs() < 1e-6,
            "one token comes in 100 ms: {wait:?}"
        );
        assert!(
            limiter.check(ip(2), t0).is_ok(),
            "another client has its own"
        );
        // 100 ms later: one more token; 1 s later: the bucket is full again, not fuller.
        assert!(
            limiter
                .check(ip(1), t0 + Duration::from_millis(100))
                .is_ok()
        );
        assert!(
            limiter
                .check(ip(1), t0 + Duration::from_millis(100))
                .is_err()
        );
        let later = t0 + Duration::from_secs(10);
        let taken = (0..20)
            .filter(|_| limiter.check(ip(1), later).is_ok())
            .count();
        assert_eq!(taken, 5, "the burst caps what was saved");
        // Over one simulated second at 1 request per ms, about rate + burst pass.
        let start = later + Duration::from_secs(10);
        let passed = (0..1000)
            .filter(|ms| {
                limiter
                    .check(ip(3), start + Duration::from_millis(*ms))
                    .is_ok()
            })
            .count();
        assert!((14..=15).contains(&passed), "{passed}");
    }

    #[test]
    fn buckets_are_bounded() {
        let limiter = RateLimiter::new(1, 2);
        let t0 = Instant::now();
        for n in 0..MAX_CLIENTS as u32 {
            limiter.check(ip(n), t0).unwrap();
        }
        assert_eq!(limiter.clients(), MAX_CLIENTS);
        // Every bucket still in use: a new client clears the map rather than growing it.
        limiter.check(ip(u32::MAX), t0).unwrap();
        assert_eq!(limiter.clients(), 1);
        // Idle clients (full buckets) go first; busy ones stay.
        for n in 0..MAX_CLIENTS as u32 - 1 {
            limiter.check(ip(n), t0).unwrap();
        }
        let later = t0 + Duration::from_secs(5);
        limiter.check(ip(7), later).unwrap();
        limiter.check(ip(7), later).unwrap();
        limiter.check(ip(u32::MAX - 1), later).unwrap();
        assert_eq!(
            limiter.clients(),
            2,
            "client 7 (empty bucket) and the newcomer"
        );
        assert!(limiter.check(ip(7), later).is_err(), "7 kept its state");
    }
}
