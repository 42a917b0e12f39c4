//! The `leasectl` binary: parse the command line, set up output, run one command, exit with
//! its code (SPEC 4: 0 ok, 1 Redis, 2 usage or settings, 3 held, 4 lost).

mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let printer = output::Printer::new(&cli.global);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return printer.fail(&anyhow::Error::new(error)),
    };
    match runtime.block_on(commands::dispatch(cli, &printer)) {
        Ok(code) => code,
        Err(error) => printer.fail(&error),
    }
}
