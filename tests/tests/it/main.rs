//! xdplb-tests' integration tests as one test binary (one link, one run;
//! the aya/sozu layout), one module per concern. Privileged tests start with
//! `require_root!()`; `cargo xtask test` runs them all with
//! XDPLB_REQUIRE_PRIVILEGED=1 so none can skip. docs/testing.md lists what
//! each module covers.

mod backend_ids;
mod backend_sim;
#[cfg(feature = "tls-clients")]
mod client_sim;
mod dashboard;
mod dataplane_tables;
#[cfg(feature = "tls-clients")]
mod demo_compare;
mod demo_failover;
mod faults_alb_kill;
mod faults_loss;
mod faults_setup;
mod grafana_prometheus;
mod group_handoff;
mod k6_scripts;
mod lab;
mod lab_config;
mod lb_user_cli;
mod metric_names;
mod scale_out_echo;
mod scale_out_join;
mod scale_out_node_loss;
mod scale_out_rolling;
mod scale_out_withdrawal;
mod shared_core;
#[cfg(feature = "tls-clients")]
mod tls_clients;
mod xdp_closing;
mod xdp_cross_node;
mod xdp_dsr_fixtures;
mod xdp_fixtures;
mod xdp_flows;
mod xdp_fuzz;
mod xdp_fuzz_findings;
mod xdp_lab_api;
mod xdp_lab_drain;
mod xdp_lab_dsr_next_hop;
mod xdp_lab_forwarding;
mod xdp_lab_health;
mod xdp_lab_metrics;
mod xdp_lab_reload_health;
mod xdp_lab_restart;
mod xdp_lab_traffic;
mod xdp_setup;
mod xdp_testrun;
mod xdp_vip_slots;
