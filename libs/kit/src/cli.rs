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
}
