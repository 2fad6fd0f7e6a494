//! Endpoint lists: `{1...8}` templates, as MinIO and warp write them, and
//! endpoint files.
//!
//! - `http://10.0.0.{1...8}:9000` is eight endpoints, `.1` to `.8`.
//! - Bounds written with a leading zero keep their width:
//!   `node{01...16}` is `node01` … `node16`.
//! - Several ranges give every combination, the first range varying
//!   slowest: `http://h{1...2}:{9000...9001}` is `h1:9000`, `h1:9001`,
//!   `h2:9000`, `h2:9001`.
//! - A template without braces is one endpoint.
//!
//! Duplicates are kept on purpose: listing an endpoint twice gives it twice
//! the share of ops. Every list is capped at [`MAX_ENDPOINTS`]. Bad input
//! is an `Err` naming the template (and the file and line), never a panic.

use std::io::Read;
use std::path::Path;

use super::MAX_ENDPOINTS;

/// Largest endpoint file read: far more than [`MAX_ENDPOINTS`] lines of
/// URLs, small enough that pointing at a wrong (huge) file fails fast.
pub const MAX_ENDPOINT_FILE_BYTES: u64 = 4 << 20;

/// One piece of a parsed template: literal text, or the values of a range.
enum Part<'a> {
    Text(&'a str),
    Range { first: u64, last: u64, width: usize },
}

/// Parses the braces of `t`; errors say what is wrong, without the template
/// (the caller adds it).
fn parse(t: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err("`}` without a `{` before it".to_string());
        }
        if open > 0 {
            parts.push(Part::Text(&rest[..open]));
        }
        let inner_start = open + 1;
        let close = rest[inner_start..]
            .find(['{', '}'])
            .filter(|&i| rest[inner_start + i..].starts_with('}'))
            .ok_or("`{` without a matching `}`")?;
        parts.push(range(&rest[inner_start..inner_start + close])?);
        rest = &rest[inner_start + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest));
    }
    Ok(parts)
}

/// Parses the inside of one pair of braces: `FIRST...LAST`.
fn range(inner: &str) -> Result<Part<'static>, String> {
    let Some((a, b)) = inner.split_once("...") else {
        return Err(format!(
            "`{{{inner}}}` is not a range: write `{{FIRST...LAST}}` with three dots"
        ));
    };
    let number = |s: &str| -> Result<u64, String> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "`{{{inner}}}`: `{s}` is not a non-negative whole number"
            ));
        }
        s.parse()
            .map_err(|_| format!("`{{{inner}}}`: `{s}` is too large"))
    };
    let (first, last) = (number(a)?, number(b)?);
    if first > last {
        return Err(format!(
            "`{{{inner}}}`: the range runs backwards ({first} > {last})"
        ));
    }
    // A leading zero asks for fixed width; `0` alone is just zero.
    let padded = |s: &str| s.len() > 1 && s.starts_with('0');
    let width = if padded(a) || padded(b) {
        a.len().max(b.len())
    } else {
        0
    };
    Ok(Part::Range { first, last, width })
}

/// Parses `t` and counts its endpoints, without making them.
fn checked(t: &str) -> Result<(Vec<Part<'_>>, usize), String> {
    checked_up_to(t, MAX_ENDPOINTS)
}

/// [`checked`] with a bound of `max` entries.
fn checked_up_to(t: &str, max: usize) -> Result<(Vec<Part<'_>>, usize), String> {
    let bad = |why: String| format!("endpoint template `{t}`: {why}");
    if t.trim().is_empty() {
        return Err("empty endpoint".to_string());
    }
    let parts = parse(t).map_err(bad)?;
    // Count before building, so `{1...999999999}` fails without allocating.
    let mut count: u64 = 1;
    for p in &parts {
        if let Part::Range { first, last, .. } = p {
            count = count
                .checked_mul(last - first + 1)
                .filter(|&c| c <= max as u64)
                .ok_or_else(|| bad(format!("more than {max} endpoints")))?;
        }
    }
    // At most `max`, checked above.
    Ok((parts, count as usize))
}

/// How many endpoints `t` expands to, or the error [`expand_template`]
/// would give, without making them: what a plan is checked with when it
/// loads, so a bad template fails before the run rather than when its
/// stage starts.
pub fn count_template(t: &str) -> Result<usize, String> {
    checked(t).map(|(_, count)| count)
}

/// Expands one template into its endpoints, in order.
pub fn expand_template(t: &str) -> Result<Vec<String>, String> {
    expand_template_up_to(t, MAX_ENDPOINTS)
}

/// [`expand_template`] with a bound of `max` entries.
fn expand_template_up_to(t: &str, max: usize) -> Result<Vec<String>, String> {
    let (parts, _) = checked_up_to(t, max)?;
    let mut out = vec![String::new()];
    for p in &parts {
        out = match *p {
            Part::Text(s) => out.into_iter().map(|o| o + s).collect(),
            Part::Range { first, last, width } => out
                .iter()
                .flat_map(|o| (first..=last).map(move |v| format!("{o}{v:0width$}")))
                .collect(),
        };
    }
    Ok(out)
}

/// Expands every entry of a list (each may be a template), in order,
/// keeping duplicates. Errors beyond [`MAX_ENDPOINTS`] in all.
pub fn expand_all(list: &[String]) -> Result<Vec<String>, String> {
    expand_all_up_to(list, MAX_ENDPOINTS)
}

/// [`expand_all`] with a bound of `max` entries in all: agent lists
/// (`chorus_common::discovery::MAX_AGENTS`) have their own.
pub fn expand_all_up_to(list: &[String], max: usize) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for t in list {
        append(&mut out, expand_template_up_to(t.trim(), max)?, max)?;
    }
    Ok(out)
}

fn append(out: &mut Vec<String>, more: Vec<String>, max: usize) -> Result<(), String> {
    if out.len() + more.len() > max {
        return Err(format!(
            "more than {max} endpoints in the list ({} and {} more)",
            out.len(),
            more.len()
        ));
    }
    out.extend(more);
    Ok(())
}

/// Reads endpoints from a file: one per line, each may be a template.
/// Blank lines and comments (from a `#` at the start of a line or after
/// white space, to its end) are ignored.
pub fn endpoints_from_file(path: impl AsRef<Path>) -> Result<Vec<String>, String> {
    let path = path.as_ref();
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| format!("endpoint file `{shown}`: cannot open: {e}"))?;
    let mut raw = Vec::new();
    file.take(MAX_ENDPOINT_FILE_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("endpoint file `{shown}`: cannot read: {e}"))?;
    if raw.len() as u64 > MAX_ENDPOINT_FILE_BYTES {
        return Err(format!(
            "endpoint file `{shown}`: larger than {MAX_ENDPOINT_FILE_BYTES} bytes"
        ));
    }
    let text =
        String::from_utf8(raw).map_err(|_| format!("endpoint file `{shown}`: not UTF-8 text"))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = strip_comment(line).trim();
        if line.is_empty() {
            continue;
        }
        if line.contains(char::is_whitespace) {
            return Err(format!(
                "endpoint file `{shown}` line {}: `{line}` has white space inside; \
                 write one endpoint per line",
                n + 1
            ));
        }
        let at = |e: String| format!("endpoint file `{shown}` line {}: {e}", n + 1);
        append(&mut out, expand_template(line).map_err(at)?, MAX_ENDPOINTS).map_err(at)?;
    }
    Ok(out)
}

/// `line` up to its comment. A `#` inside a word is kept (a URL fragment
/// would be one); endpoints hold no white space, so ` #` cannot be data.
fn strip_comment(line: &str) -> &str {
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_space {
            return &line[..i];
        }
        prev_space = c.is_whitespace();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(t: &str) -> Vec<String> {
        expand_template(t).unwrap_or_else(|e| panic!("{t}: {e}"))
    }

    fn err(t: &str) -> String {
        match expand_template(t) {
            Ok(v) => panic!("{t}: expected an error, got {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn plain_endpoint_is_itself() {
        assert_eq!(ok("http://h:9000"), ["http://h:9000"]);
    }

    #[test]
    fn simple_range() {
        let v = ok("http://10.0.0.{1...8}:9000");
        assert_eq!(v.len(), 8);
        assert_eq!(v[0], "http://10.0.0.1:9000");
        assert_eq!(v[7], "http://10.0.0.8:9000");
        assert_eq!(ok("h{3...3}"), ["h3"]);
        assert_eq!(ok("h{0...2}"), ["h0", "h1", "h2"]);
        assert_eq!(ok("{1...2}"), ["1", "2"]);
    }

    #[test]
    fn zero_padding_kept() {
        let v = ok("node{01...16}");
        assert_eq!(v.len(), 16);
        assert_eq!(v[0], "node01");
        assert_eq!(v[8], "node09");
        assert_eq!(v[15], "node16");
        assert_eq!(ok("n{001...002}"), ["n001", "n002"]);
        assert_eq!(ok("n{08...10}"), ["n08", "n09", "n10"]);
        // Unpadded bounds of different widths are not padded.
        assert_eq!(ok("n{9...10}"), ["n9", "n10"]);
    }

    #[test]
    fn cartesian_product_in_order() {
        assert_eq!(
            ok("http://h{1...2}:{9000...9001}"),
            [
                "http://h1:9000",
                "http://h1:9001",
                "http://h2:9000",
                "http://h2:9001"
            ]
        );
        assert_eq!(ok("r{1...3}n{01...04}/x").len(), 12);
        assert_eq!(ok("r{1...3}n{01...04}/x")[4], "r2n01/x");
    }

    #[test]
    fn bad_templates_are_errors_naming_the_template() {
        for t in [
            "h{5...1}",
            "h{a...3}",
            "h{1...b}",
            "h{1..8}",
            "h{1...8",
            "h1...8}",
            "h{}",
            "h{...4}",
            "h{-1...3}",
            "h{1...2{3...4}}",
            "h{1...99999999999999999999999}",
        ] {
            let e = err(t);
            assert!(e.contains(t), "{t}: error does not name it: {e}");
        }
        assert!(err("h{5...1}").contains("backwards"));
        assert!(err("h{1..8}").contains("three dots"));
        assert!(err("h{1...8").contains("matching"));
        assert!(err("").contains("empty"));
    }

    /// `count_template` agrees with `expand_template`, errors included.
    #[test]
    fn counting_matches_expanding() {
        for t in [
            "http://h:1",
            "h{1...8}",
            "r{1...3}n{01...04}/x",
            "{1...2}{1...2}",
        ] {
            assert_eq!(count_template(t), Ok(ok(t).len()), "{t}");
        }
        for t in ["h{5...1}", "h{1..8}", "", "h{1...100}{1...100}"] {
            assert_eq!(count_template(t), Err(err(t)), "{t}");
        }
    }

    #[test]
    fn too_many_endpoints_is_an_error() {
        let e = err("h{1...100000000000}");
        assert!(e.contains(&MAX_ENDPOINTS.to_string()), "{e}");
        // The product counts too, and overflow is caught.
        err("h{1...100}{1...100}");
        err("{1...99999999999}{1...99999999999}{1...99999999999}");
        assert_eq!(
            ok(&format!("h{{1...{MAX_ENDPOINTS}}}")).len(),
            MAX_ENDPOINTS
        );
    }

    #[test]
    fn expand_all_concatenates_and_keeps_duplicates() {
        let list: Vec<String> = ["http://a:1", "http://b{1...2}:1", " http://a:1 "]
            .map(String::from)
            .into();
        assert_eq!(
            expand_all(&list).unwrap(),
            ["http://a:1", "http://b1:1", "http://b2:1", "http://a:1"]
        );
        assert!(expand_all(&[]).unwrap().is_empty());
        assert!(
            expand_all(&["ok".into(), "bad{".into()])
                .unwrap_err()
                .contains("bad{")
        );
        let big = format!("h{{1...{}}}", MAX_ENDPOINTS / 2 + 1);
        let e = expand_all(&[big.clone(), big]).unwrap_err();
        assert!(e.contains("more than"), "{e}");
    }

    #[test]
    fn endpoint_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("endpoints.txt");
        std::fs::write(
            &path,
            "# gateways of rack 1\n\
             http://r1-{1...2}:9000\n\
             \n   \n\
             http://solo:9000   # the odd one\n\
             \thttp://r1-1:9000\n\
             http://frag:9000/#kept\n",
        )
        .unwrap();
        assert_eq!(
            endpoints_from_file(&path).unwrap(),
            [
                "http://r1-1:9000",
                "http://r1-2:9000",
                "http://solo:9000",
                "http://r1-1:9000",
                "http://frag:9000/#kept"
            ]
        );
    }

    #[test]
    fn endpoint_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.txt");
        let e = endpoints_from_file(&missing).unwrap_err();
        assert!(e.contains("nope.txt") && e.contains("cannot open"), "{e}");

        let bad = dir.path().join("bad.txt");
        std::fs::write(&bad, "http://a:1\n# c\nhttp://b{9...1}:1\n").unwrap();
        let e = endpoints_from_file(&bad).unwrap_err();
        assert!(e.contains("bad.txt") && e.contains("line 3"), "{e}");
        assert!(e.contains("http://b{9...1}:1"), "{e}");

        let two = dir.path().join("two.txt");
        std::fs::write(&two, "http://a:1 http://b:1\n").unwrap();
        let e = endpoints_from_file(&two).unwrap_err();
        assert!(
            e.contains("line 1") && e.contains("one endpoint per line"),
            "{e}"
        );

        let binary = dir.path().join("bin");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        assert!(endpoints_from_file(&binary).unwrap_err().contains("UTF-8"));

        let many = dir.path().join("many.txt");
        let lines = format!("h{{1...{MAX_ENDPOINTS}}}\nextra\n");
        std::fs::write(&many, lines).unwrap();
        let e = endpoints_from_file(&many).unwrap_err();
        assert!(e.contains("line 2") && e.contains("more than"), "{e}");

        let huge = dir.path().join("huge.txt");
        let f = std::fs::File::create(&huge).unwrap();
        f.set_len(MAX_ENDPOINT_FILE_BYTES + 10).unwrap();
        assert!(
            endpoints_from_file(&huge)
                .unwrap_err()
                .contains("larger than")
        );
    }
}
