//! certgen's integration tests as one test binary (one link, one run), one
//! module per concern.

mod cli;
mod errors;
mod openssl_verify;
mod rustls_verify;
mod tls_support;
