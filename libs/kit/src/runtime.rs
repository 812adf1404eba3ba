//! Running a service: the command line, telemetry, configuration, the runtime, the
//! signal listener, and turning the outcome into an exit code.

use std::future::Future;
use std::process::ExitCode;

use clap::{Args, Command, FromArgMatches};

use crate::cli::{CommonArgs, load_config};
use crate::config::Validate;
use crate::kafka_access::KafkaNeeds;
use crate::shutdown::Shutdown;

/// The whole `main` of a service, in the order that matters: parse the command line
/// (`--config`, `--print-config`, `--print-kafka-acls`, `--help`, `--version`), start
/// telemetry, load the configuration (one line and exit 64 on a bad setting), then [`run`]
/// the service.
pub fn main<C, F, Fut>(service: &'static str, about: &'static str, service_fn: F) -> ExitCode
where
    C: serde::de::DeserializeOwned + serde::Serialize + Validate + KafkaNeeds,
    F: FnOnce(C, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let command = Command::new(service)
        .version(env!("CARGO_PKG_VERSION"))
        .about(about);
    let matches = CommonArgs::augment_args(command).get_matches();
    let args = CommonArgs::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let _telemetry = crate::telemetry::init(service);
    let config: C = match load_config(service, &args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    run(service, |shutdown| service_fn(config, shutdown))
}

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
