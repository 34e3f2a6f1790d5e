//! What the fuzz targets share: the judgement of config errors
//! (`messages`), request heads from bytes and the invariants of alb's
//! rewrite (`head`), and the network sandbox of the alb targets (`sandbox`).
//! The targets themselves (`fuzz_targets/`) only wire these to libFuzzer.

pub mod head;
pub mod messages;
pub mod sandbox;
