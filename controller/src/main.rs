//! `controller`: parses the command line and hands off to `chorus_controller`.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: records made on worker threads are freed on the op-log
/// writer's thread, which glibc malloc serializes on arena locks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = chorus_controller::cli::Cli::parse();
    chorus_controller::logging(cli.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(chorus_controller::main(cli))
}
