//! lb-user's integration tests (`lb-user proxy`, loopback only, no root) as
//! one test binary, one module per concern; `proxy_support` holds the
//! fixtures they share.

mod cli_errors;
mod proxy_admission;
mod proxy_drain;
mod proxy_forwarding;
mod proxy_reload;
mod proxy_support;
