//! Test infrastructure shared by the integration tests, `cargo xtask` and the
//! benchmarks: the network-namespace lab, running code inside a namespace, a
//! tiny HTTP client, locating workspace binaries, the privileged-test gate,
//! the one mock backend, the report format of the `tls-clients` tool and
//! (feature `testrun`) the BPF_PROG_TEST_RUN harness.

pub mod backend;
pub mod counters;
pub mod http;
pub mod lab;
pub mod lbuser;
pub mod netns;
pub mod packet;
pub mod pins;
pub mod privileged;
pub mod sys;
#[cfg(feature = "testrun")]
pub mod testrun;
pub mod tls_clients;
pub mod workspace;
