//! Command-line arguments shared by every binary.

use std::path::PathBuf;

/// Arguments every Framewire binary takes (flatten into the binary's own parser, which
/// supplies its name, `--help` text and `--version`).
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// TOML configuration file. Settings can also come from `FRAMEWIRE_<SECTION>__<KEY>`
    /// environment variables, which win over the file.
    #[arg(long, value_name = "FILE", env = "FRAMEWIRE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration (secrets redacted) as JSON and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Print the Kafka ACLs this configuration needs (topics and consumer groups, with the
    /// operations on each) as JSON and exit.
    #[arg(long)]
    pub print_kafka_acls: bool,
}

/// Loads the configuration for a binary, or says why not.
///
/// On a bad setting it prints one line, `<service>: <what is wrong>`, and yields exit code
/// 64; with `--print-config` it prints the redacted effective configuration, with
/// `--print-kafka-acls` the ACLs it needs ([`crate::kafka_access`]), and yields 0.
pub fn load_config<C>(service: &str, args: &CommonArgs) -> Result<C, std::process::ExitCode>
where
    C: serde::de::DeserializeOwned
        + serde::Serialize
        + crate::config::Validate
        + crate::kafka_access::KafkaNeeds,
{
    match crate::config::load::<C>(args.config.as_deref()) {
        Ok(cfg) if args.print_config => {
            let json = crate::config::effective_json(&cfg);
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
            Err(std::process::ExitCode::SUCCESS)
        }
        Ok(cfg) if args.print_kafka_acls => {
            let json = serde_json::json!({
                "service": service,
                "grants": cfg.kafka_access().grants(),
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
            Err(std::process::ExitCode::SUCCESS)
        }
        Ok(cfg) => Ok(cfg),
        Err(e) => {
            eprintln!("{service}: {e}");
            tracing::error!(error = %e, "bad configuration");
            Err(std::process::ExitCode::from(crate::config::EXIT_BAD_CONFIG))
        }
    }
}
