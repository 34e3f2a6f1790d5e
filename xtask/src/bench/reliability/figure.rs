//! One measured figure of `cargo xtask bench reliability`, and the run's
//! outputs: the printed list, `reliability.json` and `reliability.md`.

use serde_json::json;

/// A measured value with its unit and, where the issue sets one, its goal.
#[derive(Clone, Debug)]
pub struct Figure {
    /// Case id, e.g. `idle-tls`.
    pub case: &'static str,
    /// What was measured, e.g. `alb RSS with 10000 idle TLS connections`.
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    /// The goal in words (`<= 100 MiB`), if there is one.
    pub goal: Option<String>,
    /// Whether the value meets the goal.
    pub met: Option<bool>,
}

impl Figure {
    /// A figure without a goal.
    pub fn new(case: &'static str, name: impl Into<String>, value: f64, unit: &'static str) -> Figure {
        Figure { case, name: name.into(), value, unit, goal: None, met: None }
    }

    /// Goal: at most `limit` (in the figure's unit).
    pub fn at_most(mut self, limit: f64) -> Figure {
        self.goal = Some(format!("<= {} {}", number(limit), self.unit));
        self.met = Some(self.value <= limit);
        self
    }

    /// Goal: at least `limit` (in the figure's unit).
    pub fn at_least(mut self, limit: f64) -> Figure {
        self.goal = Some(format!(">= {} {}", number(limit), self.unit));
        self.met = Some(self.value >= limit);
        self
    }
}

/// A case that could not be measured, with its error.
#[derive(Clone, Debug)]
pub struct Failure {
    pub case: &'static str,
    pub error: String,
}

/// `12`, `0.5`, `1.25`: no trailing zeros.
fn number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn goal_text(f: &Figure) -> String {
    match (&f.goal, f.met) {
        (Some(goal), Some(true)) => format!("{goal}: met"),
        (Some(goal), Some(false)) => format!("{goal}: NOT met"),
        (Some(goal), None) => goal.clone(),
        _ => String::new(),
    }
}

/// One line per figure, `[reliability] case: name = value unit  (goal …)`.
pub fn print(figures: &[Figure]) {
    for f in figures {
        let goal = goal_text(f);
        let goal = if goal.is_empty() { goal } else { format!("  (goal {goal})") };
        println!("[reliability] {}: {} = {} {}{goal}", f.case, f.name, number(f.value), f.unit);
    }
}

/// `reliability.json`: every figure and every failed case.
pub fn json(started: &str, wall_s: f64, figures: &[Figure], failures: &[Failure]) -> serde_json::Value {
    let figures: Vec<_> =
        figures.iter().map(|f| json!({"case": f.case, "name": f.name, "value": f.value, "unit": f.unit, "goal": f.goal, "met": f.met})).collect();
    let failures: Vec<_> = failures.iter().map(|f| json!({"case": f.case, "error": f.error})).collect();
    json!({"started": started, "wall_s": wall_s, "figures": figures, "failures": failures})
}

/// `reliability.md`: the figures as a table with their goals.
pub fn markdown(started: &str, wall_s: f64, figures: &[Figure], failures: &[Failure]) -> String {
    let mut out =
        format!("# cargo xtask bench reliability ({started})\n\nWall time {wall_s:.0} s. Figures, not pass/fail tests; goals from the reliability issue.\n\n");
    out.push_str("| case | figure | value | goal |\n|---|---|---:|---|\n");
    for f in figures {
        out.push_str(&format!("| {} | {} | {} {} | {} |\n", f.case, f.name, number(f.value), f.unit, goal_text(f)));
    }
    if !failures.is_empty() {
        out.push_str("\n## Cases that failed\n\n");
        for f in failures {
            out.push_str(&format!("- {}: {}\n", f.case, f.error.replace('\n', " ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_and_outputs() {
        let rss = Figure::new("idle-tls", "alb RSS", 96.5, "MiB").at_most(100.0);
        assert_eq!((rss.goal.as_deref(), rss.met), (Some("<= 100 MiB"), Some(true)));
        let open = Figure::new("idle-tls", "open", 9000.0, "connections").at_least(10_000.0);
        assert_eq!(open.met, Some(false));
        let plain = Figure::new("conntrack", "reload", 12.25, "ms");
        let failures = [Failure { case: "soak", error: "no\nlab".into() }];
        let md = markdown("now", 3.0, &[rss.clone(), open, plain], &failures);
        assert!(md.contains("| idle-tls | alb RSS | 96.5 MiB | <= 100 MiB: met |"), "{md}");
        assert!(md.contains("NOT met") && md.contains("| conntrack | reload | 12.25 ms |  |") && md.contains("- soak: no lab"), "{md}");
        let j = json("now", 3.0, &[rss], &failures);
        assert_eq!(j["figures"][0]["met"], true);
        assert_eq!(j["failures"][0]["case"], "soak");
    }
}
