//! `cargo xtask fuzz xdp` (to be written).

use anyhow::{bail, Result};

pub fn run(_duration: u64) -> Result<()> {
    bail!("cargo xtask fuzz xdp is not written yet")
}
