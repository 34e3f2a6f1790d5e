//! How every xdplb binary (lb-user, alb, certgen) reports the error it
//! exits with (feature `report`, std only, no dependencies):
//!
//! ```text
//! <binary>: error: <what went wrong>
//!   caused by: <its cause>
//!   caused by: <the cause's cause>
//! ```
//!
//! A cause whose text the line before already contains is left out, so an
//! error that embeds its source (`cannot read x.yaml: No such file or
//! directory (os error 2)`) is not followed by the same OS error again.
//! Only the `Display` texts are printed, never `Debug`: an anyhow error
//! keeps its backtrace to itself even with `RUST_BACKTRACE=1`. The exit
//! codes are the [`Exit`] values, documented with each binary.

use std::error::Error;
use std::fmt::Write as _;
use std::process::ExitCode;

/// Exit statuses shared by the binaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 1: the command was well formed but failed while running (an
    /// interface is missing, a port is taken, a file cannot be written).
    Runtime,
    /// 2: the command line is wrong (clap's own status for usage errors,
    /// and certgen's for an argument value it refuses).
    Usage,
    /// 78 (`EX_CONFIG` of sysexits.h): a config file cannot be read or is
    /// invalid. Retrying without editing it will fail again.
    Config,
    /// 69 (`EX_UNAVAILABLE`): the service the command talks to is not
    /// running (lb-user's operator CLI with no lb-user on `--api`).
    Unavailable,
}

impl Exit {
    /// The numeric status.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Runtime => 1,
            Exit::Usage => 2,
            Exit::Config => 78,
            Exit::Unavailable => 69,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// The report for `err`, one line per cause (a multi-line message, such
/// as a list of config problems, keeps its own lines), ending in a newline.
pub fn render(binary: &str, err: &(dyn Error + 'static)) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{binary}: error: {err}");
    let mut previous = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !previous.contains(&text) {
            let _ = writeln!(out, "  caused by: {text}");
        }
        previous = text;
        cause = c.source();
    }
    out
}

/// Prints [`render`] to stderr and returns `exit` as the process status.
pub fn exit(binary: &str, err: &(dyn Error + 'static), exit: Exit) -> ExitCode {
    eprint!("{}", render(binary, err));
    exit.into()
}

/// Several config problems as one message, the same way in every binary:
/// a single problem as it is, more as `N problems:` then one indented line
/// each.
pub fn problem_list<T: std::fmt::Display>(problems: &[T]) -> String {
    match problems {
        [one] => one.to_string(),
        many => {
            let mut s = format!("{} problems:", many.len());
            for p in many {
                let _ = write!(s, "\n  {p}");
            }
            s
        }
    }
}

/// Rust type names serde puts in its messages, and what the YAML should
/// hold instead.
const RUST_TYPES: [(&str, &str); 9] = [
    ("expected i64", "expected an integer"),
    ("expected i32", "expected an integer"),
    ("expected u64", "expected a whole number >= 0"),
    ("expected u32", "expected a whole number >= 0"),
    ("expected u16", "expected a whole number 0..=65535"),
    ("expected u8", "expected a whole number 0..=255"),
    ("expected usize", "expected a whole number >= 0"),
    ("expected f64", "expected a number"),
    ("expected f32", "expected a number"),
];

/// A config file's YAML/schema error as the binaries show it: in YAML's
/// terms rather than Rust's (`expected an integer`, not `expected i64`;
/// `expected a mapping of keys`, not `expected struct RawVip`), and with the
/// parser's `line_column` when its message leaves the position out (the
/// YAML parser does for a problem at the very start of the file, such as a
/// file that is a list or a plain word instead of keys).
pub fn yaml_message(message: &str, line_column: Option<(usize, usize)>) -> String {
    let mut out = message.to_owned();
    for (rust, yaml) in RUST_TYPES {
        // Whole words only: `expected u8` is not the start of `expected u16`.
        let mut from = 0;
        while let Some(at) = out[from..].find(rust).map(|i| from + i) {
            let end = at + rust.len();
            if out[end..].starts_with(|c: char| c.is_alphanumeric()) {
                from = end;
                continue;
            }
            out.replace_range(at..end, yaml);
            from = at + yaml.len();
        }
    }
    while let Some(at) = out.find("expected struct ") {
        let name = at + "expected struct ".len();
        let end = out[name..].find(|c: char| !c.is_alphanumeric() && c != '_').map_or(out.len(), |e| name + e);
        out.replace_range(at..end, "expected a mapping of keys");
    }
    if let Some((line, column)) = line_column {
        // The parser ends its message with the position when it gives one;
        // the message's text (a key or value from the file) may hold anything.
        let at = format!(" at line {line} column {column}");
        if !out.ends_with(&at) {
            out.push_str(&at);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct E(String, Option<Box<E>>);
    impl fmt::Display for E {
        fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl Error for E {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }
    fn chain(texts: &[&str]) -> E {
        texts.iter().rev().fold(None, |inner, t| Some(E(t.to_string(), inner.map(Box::new)))).unwrap()
    }

    #[test]
    fn one_line_per_cause_and_no_repeats() {
        assert_eq!(render("x", &chain(&["top"])), "x: error: top\n");
        assert_eq!(render("x", &chain(&["a.yaml: cannot read: gone (os error 2)", "gone (os error 2)"])), "x: error: a.yaml: cannot read: gone (os error 2)\n");
        assert_eq!(
            render("x", &chain(&["starting", "cannot listen on 1.2.3.4:5", "denied"])),
            "x: error: starting\n  caused by: cannot listen on 1.2.3.4:5\n  caused by: denied\n"
        );
        // Only the line before counts: a cause repeated further up is kept.
        assert_eq!(render("x", &chain(&["a: b", "c", "b"])), "x: error: a: b\n  caused by: c\n  caused by: b\n");
    }

    #[test]
    fn codes() {
        assert_eq!([Exit::Runtime, Exit::Usage, Exit::Config, Exit::Unavailable].map(Exit::code), [1, 2, 78, 69]);
    }

    #[test]
    fn yaml_messages_speak_yaml_and_say_where() {
        assert_eq!(
            yaml_message("invalid type: sequence, expected struct Config", Some((1, 1))),
            "invalid type: sequence, expected a mapping of keys at line 1 column 1"
        );
        assert_eq!(
            yaml_message("vips[0]: invalid type: map, expected struct RawVip at line 3 column 5", Some((3, 5))),
            "vips[0]: invalid type: map, expected a mapping of keys at line 3 column 5"
        );
        assert_eq!(
            yaml_message("port: invalid value: integer `70000`, expected u16 at line 2 column 7", None),
            "port: invalid value: integer `70000`, expected a whole number 0..=65535 at line 2 column 7"
        );
        assert_eq!(
            yaml_message("x: invalid type: string \"a\", expected i64, expected u8", None),
            "x: invalid type: string \"a\", expected an integer, expected a whole number 0..=255"
        );
        assert_eq!(yaml_message("unknown anchor", Some((1, 1))), "unknown anchor at line 1 column 1");
        assert_eq!(
            yaml_message("invalid type: string \"a line 2 b\", expected struct Config", Some((1, 1))),
            "invalid type: string \"a line 2 b\", expected a mapping of keys at line 1 column 1",
            "a value that mentions a line is no position"
        );
        assert_eq!(yaml_message("more than one document", None), "more than one document");
    }

    #[test]
    fn problem_lists_are_one_line_or_counted() {
        assert_eq!(problem_list(&["a: bad"]), "a: bad");
        assert_eq!(problem_list(&["a: bad", "b: worse"]), "2 problems:\n  a: bad\n  b: worse");
    }
}
