//! Shutdown: one token, cancelled by the first SIGTERM or SIGINT.
//!
//! Long-running tasks `select!` on [`Shutdown::cancelled`] and drain; a second signal
//! exits the process at once, so an operator is never stuck behind a slow drain.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Exit code after a second signal (128 + SIGINT).
pub const EXIT_FORCED: i32 = 130;

/// A cloneable handle that says "stop taking work".
#[derive(Debug, Clone, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    /// A new, not yet triggered, shutdown.
    pub fn new() -> Self {
        Self::default()
    }

    /// A shutdown that triggers with this one but can also be triggered alone (e.g. one
    /// camera's task inside the whole service).
    pub fn child(&self) -> Self {
        Shutdown(self.0.child_token())
    }

    /// Triggers shutdown (idempotent).
    pub fn trigger(&self) {
        self.0.cancel();
    }

    /// Whether shutdown has been triggered.
    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Completes when shutdown is triggered.
    pub async fn cancelled(&self) {
        self.0.cancelled().await;
    }

    /// Spawns the signal listener: first SIGTERM/SIGINT triggers, the second exits now.
    pub fn listen_for_signals(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested; draining (send the signal again to exit now)");
            me.trigger();
            wait_for_signal().await;
            tracing::warn!("second signal; exiting immediately");
            std::process::exit(EXIT_FORCED);
        });
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C will stop");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `drain` for at most `grace`; reports whether it finished in time.
pub async fn drain_within<F: std::future::Future<Output = ()>>(grace: Duration, drain: F) -> bool {
    match tokio::time::timeout(grace, drain).await {
        Ok(()) => true,
        Err(_) => {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "drain did not finish within the grace period"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trigger_wakes_waiters() {
        let s = Shutdown::new();
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.cancelled().await }
        });
        assert!(!s.is_triggered());
        s.trigger();
        waiter.await.unwrap();
        assert!(s.is_triggered());
    }

    #[tokio::test]
    async fn drain_is_bounded() {
        assert!(drain_within(Duration::from_millis(50), async {}).await);
        let slow = tokio::time::sleep(Duration::from_secs(5));
        assert!(!drain_within(Duration::from_millis(20), slow).await);
    }
}
