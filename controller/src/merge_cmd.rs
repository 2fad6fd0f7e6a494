//! `controller merge`: k-way merge of any op-logs into one sorted timeline
//! through [`merge_files`], with no clock correction (offset 0).
//!
//! A missing or damaged input does not stop the merge: the records before
//! the damage are merged, the error (file and line) goes to stderr, and the
//! exit code is 1 so scripts notice.

use std::process::ExitCode;
use std::time::Instant;

use chorus_common::oplog::merge::{MergeInput, merge_files_at_level};

use crate::cli::MergeArgs;

pub fn merge_command(args: MergeArgs) -> ExitCode {
    let inputs: Vec<MergeInput> = args
        .inputs
        .iter()
        .map(|p| MergeInput::new(p.clone(), 0))
        .collect();
    // Spilled runs go next to the output by default: the output's disk must
    // hold the data anyway, while /tmp is often a small tmpfs.
    let tmp = args.tmp.clone().unwrap_or_else(|| {
        let parent = args
            .output
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        parent.join(format!(".chorus-merge-{}", std::process::id()))
    });
    let made_tmp = args.tmp.is_none();
    let started = Instant::now();
    let result = merge_files_at_level(&inputs, &args.output, &tmp, args.zstd_level);
    if made_tmp {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let stats = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "merged {} inputs: records in {}, records out {} (late: {} put in place, {} by a second pass), {:.3} s ({:.0} records/s) -> {}",
        stats.inputs,
        stats.records_in,
        stats.records_out,
        stats.placed,
        stats.late,
        secs,
        stats.records_out as f64 / secs.max(1e-9),
        args.output.display()
    );
    for e in &stats.errors {
        eprintln!("error: {e} (records before it were merged)");
    }
    if stats.errors.is_empty() && stats.records_in == stats.records_out {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
