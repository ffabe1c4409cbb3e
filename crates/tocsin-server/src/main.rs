//! `tocsin`: parse flags, set up logging, run.

use clap::Parser;

// glibc's malloc serialises the runtime's worker threads on its arena locks when thousands of
// notifications are built and sent at once (perf: futex waits, arena growth). jemalloc measured
// best of glibc, mimalloc and jemalloc on every tocsin-bench figure (docs/performance.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    // `tocsin events|history|dry-run|test-receiver …` talk to a running replica.
    let args: Vec<String> = std::env::args().collect();
    if args
        .get(1)
        .is_some_and(|a| tocsin_server::cli::COMMANDS.contains(&a.as_str()))
    {
        return match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(tocsin_server::cli::main(args)),
            Err(e) => {
                eprintln!("unable to start the runtime: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let flags = tocsin_server::flags::Flags::parse();
    tocsin_server::logging::init(&flags.log_level, flags.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("unable to start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(tocsin_server::run(flags)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The log line gets the first line; stderr gets the whole error with its YAML snippet.
            let full = format!("{e:#}");
            tracing::error!(err = full.lines().next().unwrap_or(""), "tocsin failed to start");
            eprintln!("tocsin: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
