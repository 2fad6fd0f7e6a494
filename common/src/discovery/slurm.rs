//! Slurm hostlist expressions, as in `SLURM_JOB_NODELIST`: the hosts of
//! the allocation a controller runs in.
//!
//! The syntax is Slurm's own (`scontrol show hostnames` gives the same):
//!
//! - Items are separated by commas (or white space) outside brackets:
//!   `login,node[1-2]` is `login`, `node1`, `node2`.
//! - A bracket group lists numbers and ranges: `node[01-03,07]` is
//!   `node01`, `node02`, `node03`, `node07`.
//! - The width of a range is the width of its first number, as Slurm does:
//!   `n[01-10]` is `n01` … `n10`, `n[8-10]` is `n8`, `n9`, `n10`.
//! - Text may follow a group (`gpu[1-2]-ib` is `gpu1-ib`, `gpu2-ib`), and
//!   several groups in one name give every combination, the first group
//!   varying slowest: `r[1-2]n[1-2]` is `r1n1`, `r1n2`, `r2n1`, `r2n2`.
//!
//! Order and duplicates are kept. A list is capped at
//! [`MAX_AGENTS`](super::MAX_AGENTS) hosts, counted before any is built.

use super::MAX_AGENTS;

/// The variable Slurm sets to the nodes of the job's allocation.
pub const NODELIST_VAR: &str = "SLURM_JOB_NODELIST";

/// The hosts of a `SLURM_JOB_NODELIST` value (`None` when the variable is
/// unset). Errors name the variable and the list.
pub fn nodelist_hosts(value: Option<&str>) -> Result<Vec<String>, String> {
    match value.map(str::trim) {
        None | Some("") => Err(format!(
            "{NODELIST_VAR} is not set: --slurm finds agents on the nodes of a SLURM \
             allocation, so run inside one (sbatch, salloc, srun)"
        )),
        Some(v) => expand_nodelist(v).map_err(|e| format!("{NODELIST_VAR}: {e}")),
    }
}

/// One piece of a host name: literal text, or a bracket group's numbers.
enum Part<'a> {
    Text(&'a str),
    Group(Vec<Range>),
}

/// `lo-hi` inside brackets, printed `width` digits wide (zero padded).
struct Range {
    lo: u64,
    hi: u64,
    width: usize,
}

impl Range {
    fn len(&self) -> u64 {
        self.hi - self.lo + 1
    }
}

/// Expands a Slurm hostlist expression into host names, in order.
pub fn expand_nodelist(list: &str) -> Result<Vec<String>, String> {
    let bad = |why: String| format!("node list `{list}`: {why}");
    let items = split_items(list).map_err(bad)?;
    if items.is_empty() {
        return Err(bad("no hosts".to_string()));
    }
    let mut parsed = Vec::with_capacity(items.len());
    // Count before building, so `n[1-99999999]` fails without allocating.
    let mut total: u64 = 0;
    for item in items {
        let parts = parse_item(item).map_err(|e| bad(format!("`{item}`: {e}")))?;
        let mut count: u64 = 1;
        for p in &parts {
            if let Part::Group(ranges) = p {
                let n: u64 = ranges.iter().map(Range::len).sum();
                count = count.saturating_mul(n);
            }
        }
        total = total.saturating_add(count);
        if total > MAX_AGENTS as u64 {
            return Err(bad(format!("more than {MAX_AGENTS} hosts")));
        }
        parsed.push(parts);
    }
    let mut hosts = Vec::with_capacity(total as usize);
    for parts in &parsed {
        hosts.extend(expand_item(parts));
    }
    Ok(hosts)
}

/// Splits at commas and white space outside brackets; empty items (as in
/// `a,,b` or a trailing comma) are skipped.
fn split_items(list: &str) -> Result<Vec<&str>, String> {
    let mut items = Vec::new();
    let mut depth = 0u32;
    let mut start = 0;
    for (i, c) in list.char_indices() {
        match c {
            '[' if depth > 0 => return Err("`[` inside brackets".to_string()),
            '[' => depth = 1,
            ']' if depth == 0 => return Err("`]` without a `[` before it".to_string()),
            ']' => depth = 0,
            c if depth == 0 && (c == ',' || c.is_whitespace()) => {
                if i > start {
                    items.push(&list[start..i]);
                }
                start = i + c.len_utf8();
            }
            c if depth > 0 && c.is_whitespace() => {
                return Err("white space inside brackets".to_string());
            }
            _ => {}
        }
    }
    if depth > 0 {
        return Err("`[` without a matching `]`".to_string());
    }
    if start < list.len() {
        items.push(&list[start..]);
    }
    Ok(items)
}

/// Parses one host expression (brackets are balanced and not nested: the
/// split checked that).
fn parse_item(item: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = item;
    while let Some(open) = rest.find('[') {
        if open > 0 {
            parts.push(Part::Text(&rest[..open]));
        }
        let close = rest[open..]
            .find(']')
            .map(|c| open + c)
            .ok_or("`[` without a matching `]`")?;
        parts.push(Part::Group(parse_group(&rest[open + 1..close])?));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest));
    }
    if parts.iter().all(|p| matches!(p, Part::Group(_))) {
        // `[1-2]` alone is numbers, not host names.
        return Err("a host name needs some text besides brackets".to_string());
    }
    Ok(parts)
}

/// The inside of one bracket pair: `01-03,07`.
fn parse_group(inner: &str) -> Result<Vec<Range>, String> {
    if inner.is_empty() {
        return Err("empty brackets `[]`".to_string());
    }
    inner
        .split(',')
        .map(|r| {
            let (lo, hi) = r.split_once('-').unwrap_or((r, r));
            let number = |s: &str| -> Result<u64, String> {
                if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(format!(
                        "`[{inner}]`: `{r}` is not a number or a range LO-HI of numbers"
                    ));
                }
                s.parse()
                    .map_err(|_| format!("`[{inner}]`: `{s}` is too large"))
            };
            let (first, last) = (number(lo)?, number(hi)?);
            if first > last {
                return Err(format!(
                    "`[{inner}]`: the range `{r}` runs backwards ({first} > {last})"
                ));
            }
            Ok(Range {
                lo: first,
                hi: last,
                width: lo.len(),
            })
        })
        .collect()
}

/// Every name of one parsed expression, first group varying slowest.
fn expand_item(parts: &[Part<'_>]) -> Vec<String> {
    let mut out = vec![String::new()];
    for p in parts {
        out = match p {
            Part::Text(s) => out.into_iter().map(|o| o + s).collect(),
            Part::Group(ranges) => out
                .iter()
                .flat_map(|o| {
                    ranges.iter().flat_map(move |r| {
                        let width = r.width;
                        (r.lo..=r.hi).map(move |v| format!("{o}{v:0width$}"))
                    })
                })
                .collect(),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(list: &str) -> Vec<String> {
        expand_nodelist(list).unwrap_or_else(|e| panic!("{list}: {e}"))
    }

    fn err(list: &str) -> String {
        match expand_nodelist(list) {
            Ok(v) => panic!("{list}: expected an error, got {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn plain_names() {
        assert_eq!(ok("login"), ["login"]);
        assert_eq!(ok("a,b,c"), ["a", "b", "c"]);
        assert_eq!(ok("localhost"), ["localhost"]);
        assert_eq!(ok("a.example.com,b-1"), ["a.example.com", "b-1"]);
    }

    #[test]
    fn ranges_and_lists_in_brackets() {
        assert_eq!(ok("node[1-3]"), ["node1", "node2", "node3"]);
        assert_eq!(
            ok("node[01-03,07]"),
            ["node01", "node02", "node03", "node07"]
        );
        assert_eq!(ok("n[5]"), ["n5"]);
        assert_eq!(ok("n[2,1,2]"), ["n2", "n1", "n2"]);
        assert_eq!(ok("n[0-2]"), ["n0", "n1", "n2"]);
    }

    #[test]
    fn width_is_the_first_numbers() {
        assert_eq!(ok("n[8-10]"), ["n8", "n9", "n10"]);
        assert_eq!(ok("n[08-10]"), ["n08", "n09", "n10"]);
        assert_eq!(ok("n[001-002]"), ["n001", "n002"]);
        assert_eq!(ok("n[0001-2]"), ["n0001", "n0002"]);
        let v = ok("n[098-101]");
        assert_eq!(v, ["n098", "n099", "n100", "n101"]);
    }

    #[test]
    fn suffixes_and_several_groups() {
        assert_eq!(ok("gpu[1-2]-ib"), ["gpu1-ib", "gpu2-ib"]);
        assert_eq!(
            ok("node[01-03,07],gpu[1-2]-ib,login"),
            [
                "node01", "node02", "node03", "node07", "gpu1-ib", "gpu2-ib", "login"
            ]
        );
        assert_eq!(ok("r[1-2]n[1-2]"), ["r1n1", "r1n2", "r2n1", "r2n2"]);
        assert_eq!(
            ok("rack[1-2]-node[01-02]-ib"),
            [
                "rack1-node01-ib",
                "rack1-node02-ib",
                "rack2-node01-ib",
                "rack2-node02-ib"
            ]
        );
        assert_eq!(ok("[1-2]x"), ["1x", "2x"]);
        assert_eq!(ok("x[3,1-2]y[7]"), ["x3y7", "x1y7", "x2y7"]);
    }

    #[test]
    fn separators() {
        assert_eq!(ok("a, b\tc\n"), ["a", "b", "c"]);
        assert_eq!(ok("a,,b,"), ["a", "b"]);
        assert_eq!(ok(" n[1-2] "), ["n1", "n2"]);
    }

    #[test]
    fn bad_lists_are_errors_naming_the_list() {
        for list in [
            "node[",
            "node]",
            "node[]",
            "node[3-1]",
            "node[a-b]",
            "node[1-2-3]",
            "node[-1]",
            "node[1,]",
            "node[[1]]",
            "node[1 - 2]",
            "[1-2][3-4]",
            "[1-2]",
            "n[1-99999999999999999999999]",
            ",",
            "",
        ] {
            let e = err(list);
            assert!(e.contains(&format!("`{list}`")), "{list}: {e}");
        }
        assert!(err("node[3-1]").contains("backwards"));
        assert!(err("node[").contains("matching"));
        assert!(err("").contains("no hosts"));
    }

    #[test]
    fn too_many_hosts_is_an_error() {
        let e = err("n[1-99999999]");
        assert!(e.contains(&MAX_AGENTS.to_string()), "{e}");
        err("a[1-1000]b[1-1000]");
        err("a[1-16000],b[1-400]");
        err("a[0-9999999999]b[0-9999999999]c[0-9999999999]");
        assert_eq!(ok(&format!("h[1-{MAX_AGENTS}]")).len(), MAX_AGENTS);
    }

    #[test]
    fn env_value() {
        assert_eq!(nodelist_hosts(Some("n[1-2]")).unwrap(), ["n1", "n2"]);
        let e = nodelist_hosts(None).unwrap_err();
        assert!(e.contains(NODELIST_VAR) && e.contains("not set"), "{e}");
        assert!(nodelist_hosts(Some(" ")).unwrap_err().contains("not set"));
        let e = nodelist_hosts(Some("n[")).unwrap_err();
        assert!(e.contains(NODELIST_VAR) && e.contains("n["), "{e}");
    }
}
