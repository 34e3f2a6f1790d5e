//! alb's request-head handling: a setup byte and an HTTP/1 head, through
//! `alb::proxy::prepare` (routing and the rewrite for the backend); the
//! input format and the invariants are in `xdplb_fuzz::head`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| xdplb_fuzz::head::run(data));
