//! Retention: windows (with their per-class object counts) and incidents that ended more
//! than `sink.retention_days` ago, and cameras silent that long (with their newest
//! analysed picture), are deleted — a minute after start, then every hour, in the
//! background so the pipeline never waits for a large delete.

use std::time::Duration;

use framewire_kit::shutdown::Shutdown;

use crate::consume::now_ms;
use crate::metrics::Metrics;
use crate::store::Store;

/// First run after start.
const FIRST_RUN: Duration = Duration::from_secs(60);
/// Time between runs.
const EVERY: Duration = Duration::from_secs(3600);
const DAY_MS: i64 = 86_400_000;

/// The cutoff for `days` of retention at wall clock `now_ms`; `None` keeps everything.
pub fn cutoff(days: u32, now_ms: i64) -> Option<i64> {
    (days > 0).then(|| now_ms.saturating_sub(i64::from(days).saturating_mul(DAY_MS)))
}

/// Deletes old rows until shutdown (returns at once when `days` is 0).
pub async fn run(store: Store, days: u32, metrics: Metrics, shutdown: Shutdown) {
    if days == 0 {
        return;
    }
    let mut wait = FIRST_RUN;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = EVERY;
        let Some(before) = cutoff(days, now_ms()) else {
            return;
        };
        match store.delete_older_than(before).await {
            Ok(deleted) => {
                for (table, n) in deleted.tables() {
                    metrics
                        .retention_deleted
                        .with_label_values(&[table])
                        .inc_by(n);
                }
                if deleted.total() > 0 {
                    tracing::info!(
                        windows = deleted.windows,
                        window_objects = deleted.window_objects,
                        events = deleted.events,
                        pictures = deleted.pictures,
                        cameras = deleted.cameras,
                        days,
                        "retention deleted old rows"
                    );
                }
            }
            Err(e) => {
                metrics
                    .db_errors
                    .with_label_values(&[store.backend().as_str(), "retention"])
                    .inc();
                tracing::warn!(error = %e, "retention failed; retrying in an hour");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_is_days_before_now() {
        assert_eq!(cutoff(0, 10 * DAY_MS), None);
        assert_eq!(cutoff(1, 10 * DAY_MS), Some(9 * DAY_MS));
        assert_eq!(cutoff(30, 10 * DAY_MS), Some(-20 * DAY_MS));
    }
}
