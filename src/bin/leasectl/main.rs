//! The `leasectl` binary: parse the command line, set up output, run one command, exit with
//! its code (0 ok, 1 Redis, 2 usage or settings, 3 held, 4 lost).

mod cli;
mod commands;
mod events;
mod group;
mod guard;
mod output;
mod telemetry;
mod terminal;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: every acquire and release allocates its command, keys
/// and answer, and glibc's malloc/free was a sixth of the client's CPU in bench S2.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    if let Some(code) = guard::run_if_asked() {
        return code;
    }
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to stdout as clap prints them; a mistake is one line and exit 2.
        Err(error) if !error.use_stderr() => error.exit(),
        // No command at all: clap would show the help as an error; name the commands instead.
        Err(error)
            if error.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            let command = <cli::Cli as clap::CommandFactory>::command();
            let names: Vec<&str> = command.get_subcommands().map(|c| c.get_name()).collect();
            output::errln!(
                "leasectl: error: a command is needed: {} (see --help)",
                names.join(", ")
            );
            return ExitCode::from(output::exit::USAGE);
        }
        Err(error) => {
            // clap's message up to its usage lines, folded onto one line.
            let text = error.render().to_string();
            let message: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|line| !line.starts_with("Usage:"))
                // Our own hint ends the line: clap's tips and "For more information" go.
                .filter(|line| {
                    !line.is_empty()
                        && !line.starts_with("tip:")
                        && !line.starts_with("For more information")
                })
                .collect();
            output::errln!("leasectl: {} (see --help)", message.join(" "));
            return ExitCode::from(output::exit::USAGE);
        }
    };
    // Before the command's runtime: the OTLP/HTTP client is a blocking one.
    let telemetry = telemetry::Telemetry::start();
    let printer = output::Printer::new(&cli.global, telemetry.as_ref());
    let code = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => match runtime.block_on(commands::dispatch(cli, &printer)) {
            Ok(code) => code,
            Err(error) => printer.fail(&error),
        },
        Err(error) => printer.fail(&anyhow::Error::new(error)),
    };
    // Whatever the exit (done, lost, interrupted, failed): what was recorded goes out first.
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    code
}
