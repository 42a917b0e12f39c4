//! One module per subcommand; `dispatch` resolves the settings and hands each its work.

mod inspect;
mod release;
mod run;

use std::process::ExitCode;

use clap::CommandFactory;
use leasectl::{LeaseClient, Overrides, Settings};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::cli::{Cli, Command, Global};
use crate::output::Printer;

/// Runs the parsed command line.
pub async fn dispatch(cli: Cli, printer: &Printer) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(connect(&cli.global, printer).await?, args, printer).await,
        Command::Inspect(args) => {
            inspect::run(connect(&cli.global, printer).await?, args, printer).await
        }
        Command::Release(args) => {
            release::run(connect(&cli.global, printer).await?, args, printer).await
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "leasectl",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Resolves the settings layers and connects, saying which endpoint is used when nothing
/// was configured.
async fn connect(global: &Global, printer: &Printer) -> anyhow::Result<LeaseClient> {
    let overrides = Overrides {
        config_file: global.config.clone(),
        endpoints: global.endpoints.clone(),
        key_prefix: global.key_prefix.clone(),
    };
    let settings = Settings::load(&overrides)?;
    let defaulted = settings.origin.defaulted_endpoint;
    if defaulted {
        printer.note(format!(
            "no Redis settings found; using local Redis at {} (run `leasectl configure` to set one)",
            leasectl::settings::LOCAL_DEFAULT
        ));
    }
    tracing::info!(endpoints = ?settings.endpoints, files = ?settings.origin.files, "settings");
    Ok(LeaseClient::connect(settings).await?)
}

/// Ctrl-C and SIGTERM, caught from the moment this is made (so that neither can kill us
/// between two polls) until it is dropped.
pub struct Interrupts {
    interrupt: Signal,
    terminate: Signal,
}

impl Interrupts {
    pub fn install() -> anyhow::Result<Interrupts> {
        Ok(Interrupts {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves on the next signal with the exit code to use after cleaning up (128 + signal).
    pub async fn recv(&mut self) -> u8 {
        tokio::select! {
            _ = self.interrupt.recv() => crate::output::exit::INTERRUPTED,
            _ = self.terminate.recv() => 128 + 15,
        }
    }
}
