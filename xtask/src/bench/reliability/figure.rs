//! One measured figure of `cargo xtask bench reliability`.

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

pub fn print(figures: &[Figure]) {
    for f in figures {
        let goal = match (&f.goal, f.met) {
            (Some(goal), Some(true)) => format!("  (goal {goal}: met)"),
            (Some(goal), Some(false)) => format!("  (goal {goal}: NOT met)"),
            (Some(goal), None) => format!("  (goal {goal})"),
            _ => String::new(),
        };
        println!("[reliability] {}: {} = {:.2} {}{goal}", f.case, f.name, f.value, f.unit);
    }
}
