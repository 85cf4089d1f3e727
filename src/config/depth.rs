//! The nesting guard run over the configuration text before the YAML parser sees it.
//!
//! libyaml (under serde_yaml_ng) keeps one "possible simple key" per open flow collection and
//! re-checks all of them for every token it scans, so scanning `[[[[...]]]]` costs time quadratic
//! in the depth (measured on a busy 2-core host: 10,000 levels 9 s, 20,000 37 s, 40,000 169 s),
//! and only then did serde_yaml_ng's own limit (128 levels, checked after the whole document was
//! scanned) refuse it. This linear pre-scan refuses
//! a document whose flow collections nest deeper than that limit before the parser starts.
//!
//! It is a scan, not a YAML parser: it counts `[`/`{` that open a flow collection and skips
//! quoted scalars and comments. Where it cannot tell (a bracket inside a plain or block scalar)
//! it may count a bracket that YAML would not, but such brackets are balanced in any real file,
//! and only an imbalance of more than `MAX_DEPTH` could refuse a file that the parser accepts.

/// serde_yaml_ng refuses deeper documents anyway; Envoy configurations need about 20 levels.
pub const MAX_DEPTH: usize = 128;

/// Where the document first nests deeper than `MAX_DEPTH` (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    pub line: usize,
    pub column: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// Checks the flow nesting depth of `text` in one pass.
pub fn check(text: &str) -> Result<(), TooDeep> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut quote = Quote::None;
    let mut comment = false;
    // True where a new node may begin: a bracket or quote here is an indicator, not scalar text.
    let mut node_start = true;
    let (mut line, mut line_start) = (1usize, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        if b == b'\n' {
            line += 1;
            line_start = i + 1;
        }
        match quote {
            Quote::Double => {
                match b {
                    // An escape: the next byte cannot close the string.
                    b'\\' => i += 1,
                    b'"' => quote = Quote::None,
                    _ => {}
                }
                i += 1;
                continue;
            }
            Quote::Single => {
                if b == b'\'' {
                    if next == Some(b'\'') {
                        i += 1; // '' is an escaped quote
                    } else {
                        quote = Quote::None;
                    }
                }
                i += 1;
                continue;
            }
            Quote::None => {}
        }
        if comment {
            if b == b'\n' {
                comment = false;
                node_start = true;
            }
            i += 1;
            continue;
        }
        let space_next = matches!(next, None | Some(b' ' | b'\t' | b'\r' | b'\n'));
        match b {
            b'#' if i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n' | b'\r') => {
                comment = true
            }
            b'"' | b'\'' if node_start => {
                quote = if b == b'"' {
                    Quote::Double
                } else {
                    Quote::Single
                };
                node_start = false;
            }
            b'[' | b'{' if depth > 0 || node_start => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(TooDeep {
                        line,
                        column: i - line_start + 1,
                    });
                }
                node_start = true;
            }
            b']' | b'}' if depth > 0 => {
                depth -= 1;
                node_start = false;
            }
            b',' if depth > 0 => node_start = true,
            b':' if depth > 0 || space_next => node_start = true,
            b'-' | b'?' if node_start && space_next => {}
            b'\n' => node_start = true,
            b' ' | b'\t' | b'\r' => {}
            _ => node_start = false,
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn nested(open: &str, close: &str, n: usize) -> String {
        format!("a: {}1{}\n", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn depth_up_to_the_limit_passes_and_one_more_fails() {
        assert_eq!(check(&nested("[", "]", MAX_DEPTH)), Ok(()));
        assert_eq!(
            check(&nested("[", "]", MAX_DEPTH + 1)),
            Err(TooDeep {
                line: 1,
                column: 4 + MAX_DEPTH
            })
        );
        assert!(check(&nested("{b: ", "}", MAX_DEPTH + 1)).is_err());
        // JSON is YAML's flow style.
        assert!(check(&nested("{\"b\":", "}", MAX_DEPTH + 1)).is_err());
        assert!(check(&"[".repeat(100_000)).is_err());
    }

    #[test]
    fn closed_collections_do_not_add_up() {
        let many = "x: [1]\n".repeat(10 * MAX_DEPTH);
        assert_eq!(check(&many), Ok(()));
        let wide = format!("x: [{}]\n", "[1], {a: 2}, ".repeat(10 * MAX_DEPTH));
        assert_eq!(check(&wide), Ok(()));
    }

    #[test]
    fn brackets_in_scalars_and_comments_are_not_nesting() {
        let deep = "[".repeat(2 * MAX_DEPTH);
        for text in [
            format!("a: \"{deep}\"\n"),
            format!("a: '{deep}'\n"),
            format!("a: 'it''s {deep}'\n"),
            format!("a: \"\\\" {deep}\"\n"),
            format!("a: 1 # {deep}\n"),
            format!("# {deep}\nb: 2\n"),
            format!("a: x{deep}\n"),
            format!("a: [\"{deep}\", '{deep}']\n"),
            format!("- regex: ^/a{deep}\n"),
        ] {
            assert_eq!(check(&text), Ok(()), "{text}");
        }
        // A bracket after a comment's line is counted again.
        let text = format!("a: 1 # x\nb: {}", "[".repeat(MAX_DEPTH + 1));
        assert_eq!(
            check(&text),
            Err(TooDeep {
                line: 2,
                column: 4 + MAX_DEPTH
            })
        );
    }
}
