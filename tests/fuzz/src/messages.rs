//! What a clear config error is, as the fuzz targets judge it: it starts
//! with the file's name, says something after it, and points at the
//! problem by a field path (`vips[0].port: …`, ``unknown field `x` ``) or a
//! YAML position (`at line 3 column 5`), in YAML's terms rather than Rust's
//! (`expected an integer`, not `expected i64`; see
//! `lb_common::report::yaml_message`).

/// Whether `message` names a YAML position: `line 3 column 5`, or the
/// byte `position 29` of the reader's errors (control characters, bad
/// UTF-8), which come before any line is counted.
pub fn names_position(message: &str) -> bool {
    ["line ", "position "].iter().any(|w| message.match_indices(w).any(|(at, _)| message[at + w.len()..].starts_with(|c: char| c.is_ascii_digit())))
}

/// Whether `message` starts with a field path and `: `, like
/// `vips[1].backends[0].weight: …` or `.: …` (the whole file).
pub fn starts_with_field(message: &str) -> bool {
    message.split_once(": ").is_some_and(|(path, _)| !path.is_empty() && path.chars().all(|c| c.is_ascii_alphanumeric() || "_.[]-".contains(c)))
}

/// Whether `message` is about the file as a whole, where no one position
/// or field is to blame.
pub fn names_document_problem(message: &str) -> bool {
    message.contains("more than one document")
}

/// Whether `message` names a key in backticks (serde's ``unknown field `x` ``,
/// ``missing field `port` ``).
pub fn names_key(message: &str) -> bool {
    ["field `", "variant `"].iter().any(|k| message.contains(k))
}

/// Rust type names that would leak from serde into a message.
const RUST_TYPES: &[&str] = &[
    "expected i64",
    "expected u64",
    "expected u32",
    "expected u16",
    "expected u8",
    "expected usize",
    "expected f64",
    "expected i32",
    "expected struct ",
    "expected enum ",
    "untagged enum ",
];

/// The first Rust type name in `message` that came from the program, if
/// any. A message quotes keys and values from the input (``unknown field
/// `…` ``), which may hold anything, backticks included, so a type word the
/// input itself contains proves nothing and is skipped.
pub fn rust_type_in(message: &str, input: &str) -> Option<&'static str> {
    RUST_TYPES.iter().copied().find(|t| message.contains(t) && t.split_whitespace().last().is_some_and(|word| !input.contains(word)))
}

/// Panics with `shown` unless it starts with `source: ` and has a message.
pub fn assert_names_source(shown: &str, source: &str) {
    let rest = shown.strip_prefix(source).and_then(|r| r.strip_prefix(": "));
    assert!(rest.is_some_and(|r| !r.trim().is_empty()), "the error does not start with {source:?} and a message: {shown:?}");
}

/// Panics unless a syntax/schema error message points at the problem.
pub fn assert_points_at_problem(message: &str, shown: &str) {
    assert!(!message.trim().is_empty(), "empty error message: {shown:?}");
    assert!(
        names_position(message) || starts_with_field(message) || names_key(message) || names_document_problem(message),
        "the error names neither a field nor a YAML position: {shown:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_messages() {
        assert!(names_position("vips[0]: invalid type at line 3 column 5"));
        assert!(names_position("control characters are not allowed at position 29"));
        assert!(!names_position("no line here"));
        assert!(starts_with_field("vips[1].backends[0].weight: 0 is out of range"));
        assert!(!starts_with_field("did not find expected key"));
        assert!(names_key("unknown field `wieght`, expected one of `url`"));
        assert_eq!(rust_type_in("invalid value: integer `70000`, expected u16", "port: 70000"), Some("expected u16"));
        assert_eq!(rust_type_in("expected an integer", "port: x"), None);
        let key = "a`expected i64`b: 1";
        assert_eq!(rust_type_in(&format!("unknown field `{key}`, expected one of `x`"), key), None, "the input's own words");
    }
}
