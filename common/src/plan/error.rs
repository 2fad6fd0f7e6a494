//! [`PlanError`]: one problem in a plan file, with where it is.
//!
//! Every error the loader reports carries the file, the 1-based line and
//! column, the key path (`stages[1].mix.gett`) and, when we can guess the
//! fix, a hint. The text form is `file:line:column: message`, the shape
//! editors and terminals turn into a link.

use std::fmt;

use super::yaml::Pos;

/// A plan that could not be loaded, and where the problem is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError {
    /// The file name as the caller gave it (or the `source` given to
    /// [`super::parse`]).
    pub file: String,
    /// 1-based line; 0 when the error has no position (file unreadable).
    pub line: usize,
    /// 1-based column; 0 when the error has no position.
    pub column: usize,
    /// Path of the offending key, e.g. `stages[1].mix.gett`; empty for the
    /// document as a whole. Stage indices are 0-based.
    pub key: String,
    pub message: String,
    pub hint: Option<String>,
}

impl PlanError {
    /// An error at `pos` about the key at `key`.
    pub(crate) fn at(file: &str, pos: Pos, key: &str, message: impl Into<String>) -> PlanError {
        PlanError {
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
            key: key.to_string(),
            message: message.into(),
            hint: None,
        }
    }

    /// An error with no position in the file, such as an unreadable file.
    pub(crate) fn unlocated(file: &str, message: impl Into<String>) -> PlanError {
        PlanError::at(file, Pos { line: 0, column: 0 }, "", message)
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> PlanError {
        self.hint = Some(hint.into());
        self
    }
}

/// The closest candidate to `word`, if it is close enough to be a typo.
/// Candidates are lower case, so case slips (`Name`) always match.
fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&word.to_lowercase(), c), *c))
        .filter(|(d, c)| *d <= 2 && *d <= c.chars().count() / 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "did you mean `x`?" when there is a close candidate, else the full list.
pub(crate) fn hint_for(word: &str, candidates: &[&str], what: &str) -> String {
    match suggest(word, candidates) {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!("valid {what}: {}", candidates.join(", ")),
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if !self.key.is_empty() {
            write!(f, " (at `{}`)", self.key)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PlanError {}

/// One test per kind of error the loader reports, each checking the
/// message, the key path and the exact position, since those are what a
/// user (and an editor jumping to `file:line:column`) relies on.
#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::PlanError;

    /// A valid plan; tests change one line or append lines to its stage.
    const BASE: &str = "\
name: demo
target: file:///tmp/chorus
objects:
  count: 10
  size: 4KiB
stages:
  - name: load
    type: workload
    mix: {get: 1}
    duration: 30s
";

    /// BASE with `from` replaced by `to` (which must occur), loaded.
    fn with(from: &str, to: &str) -> PlanError {
        assert!(BASE.contains(from), "{from:?} not in BASE");
        load_err(&BASE.replacen(from, to, 1))
    }

    fn load_err(text: &str) -> PlanError {
        match parse(text, "plan.yaml") {
            Ok(p) => panic!("accepted:\n{text}\n{p:?}"),
            Err(e) => e,
        }
    }

    /// Message, key, line, column.
    fn check(e: &PlanError, message: &str, key: &str, line: usize, column: usize) {
        assert_eq!(
            (e.message.as_str(), e.key.as_str(), e.line, e.column),
            (message, key, line, column),
            "{e}"
        );
    }

    #[test]
    fn base_is_valid() {
        parse(BASE, "plan.yaml").unwrap();
    }

    #[test]
    fn display_format() {
        let e = with(
            "    duration: 30s\n",
            "    duration: 30s\n    duraton: 5s\n",
        );
        assert_eq!(
            e.to_string(),
            "plan.yaml:11:5: unknown key `duraton` in stage `load` (at `stages[0].duraton`)\n  \
             hint: did you mean `duration`?"
        );
        let e = PlanError::unlocated("p.yaml", "cannot read plan file: gone");
        assert_eq!(e.to_string(), "p.yaml:0:0: cannot read plan file: gone");
    }

    #[test]
    fn unknown_key_in_stage_suggests() {
        let e = with(
            "    duration: 30s\n",
            "    duration: 30s\n    duraton: 5s\n",
        );
        check(
            &e,
            "unknown key `duraton` in stage `load`",
            "stages[0].duraton",
            11,
            5,
        );
        assert_eq!(e.hint.as_deref(), Some("did you mean `duration`?"));
    }

    #[test]
    fn unknown_key_lists_valid_keys_when_nothing_is_close() {
        let e = with("name: demo\n", "name: demo\nwhatever: 1\n");
        check(&e, "unknown key `whatever` in the plan", "whatever", 2, 1);
        assert_eq!(
            e.hint.as_deref(),
            Some(
                "valid keys: name, description, seed, target, concurrency, agents, objects, dataset, \
                 stages, data, pinning, retries, retry_backoff, timeout, endpoints, balance, control, \
                 overrides"
            )
        );
        let e = with("stages:", "stage:");
        check(&e, "unknown key `stage` in the plan", "stage", 6, 1);
        assert_eq!(e.hint.as_deref(), Some("did you mean `stages`?"));
    }

    #[test]
    fn unknown_key_in_objects() {
        let e = with("  size: 4KiB", "  sise: 4KiB");
        check(&e, "unknown key `sise` in `objects`", "objects.sise", 5, 3);
        assert_eq!(e.hint.as_deref(), Some("did you mean `size`?"));
        let e = with(
            "    mix:",
            "    objects: {count: 1, size: 1, prefx: a}\n    mix:",
        );
        check(
            &e,
            "unknown key `prefx` in `objects` of stage `load`",
            "stages[0].objects.prefx",
            9,
            34,
        );
    }

    #[test]
    fn unknown_op_in_mix() {
        let e = with("{get: 1}", "{get: 1, gett: 2}");
        check(
            &e,
            "unknown op `gett` in `mix` of stage `load`",
            "stages[0].mix.gett",
            9,
            19,
        );
        assert_eq!(e.hint.as_deref(), Some("did you mean `get`?"));
        let e = with("{get: 1}", "{read: 1}");
        assert_eq!(
            e.hint.as_deref(),
            Some(
                "valid ops: get, range_get, put, multipart_put, stat, delete, list, mkdir, rmdir, \
                 copy, append, delete_batch, tag, get_tags, retention, get_version, \
                 delete_version, list_versions"
            )
        );
    }

    #[test]
    fn wrong_types_say_expected_and_found() {
        let e = with("name: demo\n", "name: demo\nconcurrency: four\n");
        check(
            &e,
            "`concurrency` must be a positive integer, got string \"four\"",
            "concurrency",
            2,
            14,
        );
        let e = with("name: demo\n", "name: demo\nseed: \"30\"\n");
        check(
            &e,
            "`seed` must be a non-negative integer, got string \"30\"",
            "seed",
            2,
            7,
        );
        let e = with("  count: 10", "  count: 1.5");
        check(
            &e,
            "`count` must be a positive integer, got number 1.5",
            "objects.count",
            4,
            10,
        );
        let e = with("{get: 1}", "{get: true}");
        check(
            &e,
            "`get` must be a non-negative integer, got boolean true",
            "stages[0].mix.get",
            9,
            16,
        );
        let e = with(
            "objects:\n  count: 10\n  size: 4KiB\n",
            "objects: [10, 4KiB]\n",
        );
        check(
            &e,
            "`objects` must be a mapping, got a list",
            "objects",
            3,
            10,
        );
        let e = with("name: demo", "name:");
        check(&e, "`name` must be a string, got null", "name", 1, 1);
        let e = with("name: demo\n", "name: demo\nagents: [h1, [h2]]\n");
        check(
            &e,
            "`agents[1]` must be a string, got a list",
            "agents[1]",
            2,
            14,
        );
        let e = with("name: demo\n", "name: demo\nconcurrency: 99999999999\n");
        check(
            &e,
            "`concurrency` is too large: 99999999999 is above 65536",
            "concurrency",
            2,
            14,
        );
    }

    #[test]
    fn negative_size() {
        let e = with("  size: 4KiB", "  size: -4KiB");
        check(
            &e,
            "invalid `size`: sizes cannot be negative, got `-4KiB`",
            "objects.size",
            5,
            9,
        );
        let e = with("    duration: 30s", "    bytes: 0");
        check(
            &e,
            "`bytes` must be at least 1B, got 0",
            "stages[0].bytes",
            10,
            12,
        );
    }

    #[test]
    fn zero_count_and_concurrency() {
        let e = with("  count: 10", "  count: 0");
        check(
            &e,
            "`count` must be a positive integer, got integer 0",
            "objects.count",
            4,
            10,
        );
        let e = with(
            "    type: workload",
            "    type: workload\n    concurrency: -2",
        );
        check(
            &e,
            "`concurrency` must be a positive integer, got integer -2",
            "stages[0].concurrency",
            9,
            18,
        );
        let e = with("    duration: 30s", "    ops: 0");
        check(
            &e,
            "`ops` must be a positive integer, got integer 0",
            "stages[0].ops",
            10,
            10,
        );
    }

    #[test]
    fn bad_key_naming() {
        let e = with("  count: 10", "  count: 10\n  naming: {width: 0}");
        check(
            &e,
            "`width` must be a positive integer, got integer 0",
            "objects.naming.width",
            5,
            19,
        );
        let e = with(
            "  count: 10",
            "  count: 10\n  naming: {fanout: 8, depth: 2}",
        );
        check(
            &e,
            "unknown key `depth` in `objects.naming`",
            "objects.naming.depth",
            5,
            23,
        );
    }

    #[test]
    fn bad_duration() {
        let e = with("duration: 30s", "duration: 5x");
        check(
            &e,
            "invalid `duration`: unknown duration unit `x` in `5x`; expected one of h, m, s, ms, us, ns",
            "stages[0].duration",
            10,
            15,
        );
        let e = with("duration: 30s", "duration: 0s");
        check(
            &e,
            "`duration` must be longer than zero, got 0s",
            "stages[0].duration",
            10,
            15,
        );
    }

    #[test]
    fn unknown_stage_type() {
        let e = with("type: workload", "type: workoad");
        check(&e, "unknown stage type `workoad`", "stages[0].type", 8, 11);
        assert_eq!(e.hint.as_deref(), Some("did you mean `workload`?"));
        let e = with("type: workload", "type: benchmark");
        assert_eq!(
            e.hint.as_deref(),
            Some(
                "valid types: prepare, workload, cleanup, search, replay, dataset, train, \
                 checkpoint"
            )
        );
    }

    #[test]
    fn bad_target() {
        let e = with("target: file:///tmp/chorus", "target: ftp://host/x");
        check(
            &e,
            "unknown URI scheme `ftp` in `ftp://host/x`; expected one of file, direct, mem, s3, az, gs",
            "target",
            2,
            9,
        );
        let e = with(
            "    type: workload",
            "    type: workload\n    target: file://tmp",
        );
        check(
            &e,
            "`file://tmp` needs an absolute path, e.g. file:///tmp/chorus",
            "stages[0].target",
            9,
            13,
        );
    }

    #[test]
    fn duplicate_stage_name() {
        let e = load_err(&format!("{BASE}  - name: load\n    type: cleanup\n"));
        check(&e, "duplicate stage name `load`", "stages[1].name", 11, 11);
        assert_eq!(
            e.hint.as_deref(),
            Some("stages[0] at line 7, column 11 has the same name; stage names must be unique")
        );
    }

    #[test]
    fn empty_stages() {
        let e = load_err("name: demo\nstages: []\n");
        check(&e, "`stages` must list at least one stage", "stages", 2, 9);
        let e = load_err("name: demo\nstages:\n");
        check(
            &e,
            "`stages` must be a list of stages, got null",
            "stages",
            2,
            1,
        );
    }

    #[test]
    fn bad_name_charset() {
        let e = with("name: demo", "name: my demo");
        check(
            &e,
            "invalid plan name `my demo`: only letters, digits, '-', '_' and '.' are allowed, found ' '",
            "name",
            1,
            7,
        );
        let e = with("- name: load", "- name: \"a/b\"");
        check(
            &e,
            "invalid stage name `a/b`: only letters, digits, '-', '_' and '.' are allowed, found '/'",
            "stages[0].name",
            7,
            11,
        );
        let e = with("name: demo", "name: ''");
        check(&e, "plan name must not be empty", "name", 1, 7);
    }

    #[test]
    fn missing_required_keys_point_at_the_mapping() {
        let e = with("name: demo\n", "");
        check(&e, "missing required key `name` in the plan", "name", 1, 1);
        let e = with("    type: workload\n", "");
        check(
            &e,
            "missing required key `type` in stage `load`",
            "stages[0].type",
            7,
            5,
        );
        let e = with("  size: 4KiB\n", "");
        check(
            &e,
            "missing required key `size` in `objects`",
            "objects.size",
            4,
            3,
        );
        let e = with("    mix: {get: 1}\n", "");
        check(
            &e,
            "missing required key `mix` in stage `load`",
            "stages[0].mix",
            7,
            5,
        );
    }

    #[test]
    fn missing_target_and_objects_point_at_the_stage() {
        let e = with("target: file:///tmp/chorus\n", "");
        check(
            &e,
            "missing target: stage `load` sets no `target` and the plan has none",
            "stages[0].target",
            6,
            5,
        );
        assert!(e.hint.is_some());
        let e = with("objects:\n  count: 10\n  size: 4KiB\n", "");
        check(
            &e,
            "missing objects: stage `load` sets no `objects` and the plan has none",
            "stages[0].objects",
            4,
            5,
        );
    }

    #[test]
    fn mix_rules() {
        let e = with("{get: 1}", "{get: 0, put: 0}");
        check(
            &e,
            "`mix` of stage `load` has all op weights zero; give at least one op a weight above 0",
            "stages[0].mix",
            9,
            10,
        );
        let e = with("{get: 1}", "{}");
        assert_eq!(
            e.message,
            "`mix` of stage `load` has all op weights zero; give at least one op a weight above 0"
        );
        let e = with("type: workload", "type: prepare");
        check(
            &e,
            "`mix` is only allowed in workload stages; stage `load` is a prepare stage",
            "stages[0].mix",
            9,
            5,
        );
        let e = with("{get: 1}", "{get: -1}");
        assert_eq!(
            e.message,
            "`get` must be a non-negative integer, got integer -1"
        );
    }

    #[test]
    fn workload_needs_a_stop_condition() {
        let e = with("    duration: 30s\n", "");
        check(
            &e,
            "workload stage `load` needs a stop condition: set at least one of `duration`, `ops`, `bytes`",
            "stages[0]",
            7,
            5,
        );
    }

    #[test]
    fn odd_documents_never_panic() {
        let docs = [
            "",
            "\n\n# nothing\n",
            "42",
            "just a string",
            "~",
            "- a\n- b\n",
            "[[[[[]]]]]",
            "{a: {b: {c: [1, {d: e}]}}}",
            "name: x\nstages: [[[[[[[]]]]]]]",
            "name: x\nstages: [1, 2]",
            "name: [a]\nstages: []",
            "name: x\nstages:\n  - {name: {a: b}}\n",
            "name: x\nstages:\n  - name: a\n    type: [workload]\n",
            "name: x\nstages:\n  - {name: a, type: workload, mix: [get]}\n",
            "name: x\nagents: {a: b}\nstages: []",
            "name: x\nobjects: 5\nstages: []",
            "? - a\n  - b\n: c\n",
            "\u{feff}name: x\n",
            "name: \"\\uD800\"\n",
            "&a [*a]",
            "name: x\n---\nname: y\n",
            "{",
            "\t",
            "'",
            ": :",
        ];
        for d in docs {
            assert!(parse(d, "odd.yaml").is_err(), "accepted {d:?}");
        }
        let e = parse("", "odd.yaml").unwrap_err();
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (1, 1, "the plan is empty")
        );
        let e = parse("- a\n", "odd.yaml").unwrap_err();
        assert_eq!(e.message, "the plan must be a mapping, got a list");
        let e = parse("42", "odd.yaml").unwrap_err();
        assert_eq!(e.message, "the plan must be a mapping, got integer 42");
        let deep = "a:\n".to_string() + &"- ".repeat(5000) + "x\n";
        assert!(
            parse(&deep, "odd.yaml")
                .unwrap_err()
                .message
                .contains("too deep")
        );
    }
}
