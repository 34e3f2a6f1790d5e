//! The `idle_tls` case (to be written).

use anyhow::{bail, Result};

use super::{Figure, ReliabilityArgs};

pub fn run(_args: &ReliabilityArgs) -> Result<Vec<Figure>> {
    bail!("the idle_tls case is not written yet")
}
