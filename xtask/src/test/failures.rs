//! The panic messages of failed tests, kept from cargo test's `failures:`
//! section and printed again at the very end of `cargo xtask test`.
//!
//! libtest prints a failed test's panic once, right after its own test
//! list, and the fuzz runs then print hundreds of lines after it. A CI log
//! that keeps only the lines around `FAILED` and the tail then says which
//! test failed and not why; repeating the message after the totals puts it
//! in the tail.

/// Lines of one failed test's output that are repeated at the end.
const LINES_PER_TEST: usize = 40;
/// Failed tests whose output is repeated; the rest are named only.
const TESTS_SHOWN: usize = 5;

/// One failed test's captured output, from its `---- name stdout ----` header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    test: String,
    lines: Vec<String>,
}

/// Collects the `---- name stdout ----` blocks of cargo test's output.
#[derive(Debug, Default)]
pub struct Failures {
    blocks: Vec<Failure>,
    in_block: bool,
}

impl Failures {
    /// Feeds one line of cargo test's stdout.
    pub fn add_line(&mut self, line: &str) {
        if let Some(test) = line.strip_prefix("---- ").and_then(|l| l.strip_suffix(" stdout ----")) {
            self.blocks.push(Failure { test: test.to_owned(), lines: Vec::new() });
            self.in_block = true;
        } else if line == "failures:" || line.starts_with("test result: ") {
            // The second `failures:` heading (the list of names) ends the
            // last block.
            self.in_block = false;
        } else if self.in_block {
            if let Some(block) = self.blocks.last_mut() {
                block.lines.push(line.to_owned());
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The report printed after the totals: for each failed test, its
    /// output from the panic on (the message and its context), cut to a
    /// bounded number of lines.
    pub fn report(&self) -> Vec<String> {
        let mut out = vec![format!("xtask: why {} test(s) failed (repeated from cargo test's output above):", self.blocks.len())];
        for block in self.blocks.iter().take(TESTS_SHOWN) {
            out.push(format!("---- {} ----", block.test));
            let lines: Vec<&String> = block.lines.iter().filter(|l| !l.starts_with("note: run with `RUST_BACKTRACE=1`")).collect();
            let start = lines.iter().position(|l| l.contains(" panicked at ")).unwrap_or(0);
            let end = lines.len().min(start + LINES_PER_TEST);
            out.extend(lines[start..end].iter().map(|l| (*l).clone()));
            if end < lines.len() {
                out.push(format!("… {} more line(s) of this test's output above", lines.len() - end));
            }
        }
        for block in self.blocks.iter().skip(TESTS_SHOWN) {
            out.push(format!("---- {} ---- (output above)", block.test));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(text: &str) -> Failures {
        let mut f = Failures::default();
        for line in text.lines() {
            f.add_line(line);
        }
        f
    }

    #[test]
    fn keeps_each_failed_tests_panic_and_stops_at_the_name_list() {
        let f = feed(
            "running 2 tests\ntest a ... FAILED\ntest b ... FAILED\n\nfailures:\n\n\
             ---- a stdout ----\nlab log line\nthread 'a' (41) panicked at tests/a.rs:3:5:\nVIP flows\ntimeline 1\n\n\
             ---- b stdout ----\nthread 'b' panicked at tests/b.rs:9:1:\nboom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\n\
             failures:\n    a\n    b\n\ntest result: FAILED. 0 passed; 2 failed; 0 ignored\n",
        );
        let report = f.report();
        assert_eq!(report[0], "xtask: why 2 test(s) failed (repeated from cargo test's output above):");
        let a = report.iter().position(|l| l == "---- a ----").unwrap();
        assert_eq!(report[a + 1], "thread 'a' (41) panicked at tests/a.rs:3:5:", "starts at the panic, not the log before it");
        assert_eq!(report[a + 2], "VIP flows");
        let b = report.iter().position(|l| l == "---- b ----").unwrap();
        assert_eq!(&report[b + 1..b + 3], ["thread 'b' panicked at tests/b.rs:9:1:", "boom"]);
        assert!(!report.iter().any(|l| l.contains("RUST_BACKTRACE") || l.trim() == "a" || l.trim() == "b"), "{report:#?}");
    }

    #[test]
    fn a_long_message_is_cut_and_says_so() {
        let mut text = String::from("---- long stdout ----\nthread 'long' panicked at x.rs:1:1:\n");
        for i in 0..100 {
            text.push_str(&format!("context {i}\n"));
        }
        text.push_str("failures:\n");
        let report = feed(&text).report();
        assert_eq!(report.len(), 1 + 1 + LINES_PER_TEST + 1, "{report:#?}");
        assert_eq!(report.last().unwrap(), &format!("… {} more line(s) of this test's output above", 101 - LINES_PER_TEST));
    }

    #[test]
    fn nothing_failed_means_no_blocks() {
        let f = feed("running 1 test\ntest a ... ok\n\ntest result: ok. 1 passed; 0 failed\n");
        assert!(f.is_empty());
    }
}
