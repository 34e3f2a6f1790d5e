//! lb-user's integration tests (`lb-user proxy`, and the control API over a
//! stand-in attachment; loopback only, no root) as one test binary, one
//! module per concern; `proxy_support` and `api_support` hold the fixtures
//! they share.

mod api_changes;
mod api_cli;
mod api_dashboard;
mod api_overrides;
mod api_support;
mod cli_errors;
mod proxy_admission;
mod proxy_copy;
mod proxy_drain;
mod proxy_forwarding;
mod proxy_reload;
mod proxy_runtime;
mod proxy_support;
