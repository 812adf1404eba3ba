//! Running a service: the runtime, the signal listener, and turning the outcome into an
//! exit code.

use std::future::Future;
use std::process::ExitCode;

use crate::shutdown::Shutdown;

/// Builds a multi-threaded Tokio runtime, runs `service` until it returns, and maps the
/// result to an exit code (0, or 1 with the error chain logged).
pub fn run<F, Fut>(service_name: &'static str, service: F) -> ExitCode
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(service_name)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the Tokio runtime");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let shutdown = Shutdown::new();
        shutdown.listen_for_signals();
        service(shutdown).await
    });
    match outcome {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{service_name} failed");
            ExitCode::FAILURE
        }
    }
}
