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
    // A connection per agent, and a file per agent's op-log while they are
    // collected and merged: a thousand agents outgrow the usual soft 1024.
    if let Err(e) = chorus_common::limits::raise_nofile() {
        tracing::warn!("cannot raise the open-file limit: {e}");
    }
    // A connection's buffers, a merge's readers, a spawn_blocking thread:
    // many small heaps, which huge pages make 2 MiB each. Measured with
    // 1,000 simulated agents: 11% less RSS and system CPU without them
    // (the kernel zeroing huge pages was 10% of the controller's CPU).
    if let Err(e) = chorus_common::limits::no_huge_pages() {
        tracing::warn!("cannot turn transparent huge pages off: {e}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(chorus_controller::main(cli))
}
