//! Test infrastructure shared by the integration tests, `cargo xtask` and the
//! benchmarks: the network-namespace lab (with its alb tier and fault
//! injection), running code inside a namespace, a tiny HTTP(S) client,
//! bounded request loops, watching health states, reading metrics, locating
//! workspace binaries, the privileged-test gate, the one mock backend, the
//! client simulator, the
//! report format of the `tls-clients` tool and (feature `testrun`) the
//! BPF_PROG_TEST_RUN harness and the XDP fuzzer built on it.

pub mod backend;
pub mod browser;
pub mod client;
pub mod counters;
pub mod cpu;
#[cfg(feature = "testrun")]
pub mod fuzz;
pub mod grafana;
pub mod http;
pub mod lab;
pub mod lbuser;
pub mod load;
pub mod metrics;
pub mod netns;
pub mod packet;
pub mod pins;
pub mod privileged;
pub mod sys;
#[cfg(feature = "testrun")]
pub mod testrun;
pub mod tls_clients;
pub mod watch;
pub mod workspace;
