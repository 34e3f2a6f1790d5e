//! The `conntrack` case (to be written).

use anyhow::{bail, Result};

use super::{Figure, ReliabilityArgs};

pub fn run(_args: &ReliabilityArgs) -> Result<Vec<Figure>> {
    bail!("the conntrack case is not written yet")
}
