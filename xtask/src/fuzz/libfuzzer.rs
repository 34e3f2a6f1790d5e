//! `cargo xtask fuzz <libFuzzer target>` (to be written).

use anyhow::{bail, Result};

use super::Target;

pub fn run(target: Target, _duration: u64) -> Result<()> {
    bail!("cargo xtask fuzz {target:?} is not written yet")
}
