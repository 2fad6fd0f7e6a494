//! afl entry point of the `plan` fuzz target (see `targets.rs`).

#[path = "../../targets.rs"]
#[allow(dead_code)]
mod targets;

fn main() {
    afl::fuzz!(|data: &[u8]| targets::plan(data));
}
