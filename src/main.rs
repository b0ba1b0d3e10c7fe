//! The `usersim` command line. It parses ([`cli::args`]), calls the library
//! ([`cli`]) and prints; the exit code comes from the library's one error
//! type: 2 when the user's input was at fault, 1 otherwise, 0 when the
//! reader of stdout went away.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_indicatif::IndicatifLayer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() -> ExitCode {
    let cli = match cli::args::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    init_logging(cli.verbose, cli.quiet);
    match cli::run(cli.command, cli.quiet) {
        Ok(code) => code,
        Err(e) => {
            let lib = e.chain().find_map(|c| c.downcast_ref::<usersim::Error>());
            let broken_pipe = lib.is_some_and(usersim::Error::is_broken_pipe)
                || e.chain().any(|c| {
                    c.downcast_ref::<std::io::Error>()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", error_line(&e));
            ExitCode::from(lib.map_or(1, usersim::Error::exit_code))
        }
    }
}

/// The error and its causes on one line, skipping a cause whose text the
/// line already holds (library errors name their source in their message).
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Logs and the progress bar on stderr; `NO_COLOR` or a non-terminal
/// stderr turns colour off.
fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,usersim=info",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let color = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    let indicatif = IndicatifLayer::new();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(indicatif.get_stderr_writer())
        .with_ansi(color)
        .with_target(false)
        .without_time();
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    if quiet {
        let _ = registry.try_init();
    } else {
        let _ = registry.with(indicatif).try_init();
    }
}
