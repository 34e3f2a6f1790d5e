//! The operator CLI over the control API (`crate::api`): `lb-user backends
//! list|add|drain|undrain|remove|weight` and `lb-user health`. Each command
//! is one request to a running `lb-user attach`; docs/operations.md has the
//! reference. Exit status: 0 done, 1 refused or failed (the API's message),
//! 2 usage, 69 nothing listening on `--api`.

pub mod backends;

use std::net::SocketAddr;

use clap::Args;

use crate::config::limits::DEFAULT_API_LISTEN;

/// Where the API is and how to print its answers (shared by every command).
#[derive(Args, Clone, Debug)]
pub struct ApiArgs {
    /// Address of the control API of `lb-user attach` (the config's
    /// api.listen). Run inside the balancer's namespace with --netns.
    #[arg(long, value_name = "ADDR", default_value_t = DEFAULT_API_LISTEN, global = true)]
    pub api: SocketAddr,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}
