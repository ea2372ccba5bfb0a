//! The `chorus` binary's wiring, shared with the integration tests: starting a local broker ([`broker`]) and
//! running the three roles on given sockets under one shutdown token ([`stack`]), options from a config file
//! ([`config_file`]), reading a process's CPU time and memory ([`procstat`]), and sizing an event from the
//! benchmarks' records ([`plan`]). The roles themselves live in
//! the `chorus-ingest`, `chorus-fanout` and `chorus-edge` crates.

pub mod broker;
pub mod config_file;
pub mod demo;
pub mod plan;
pub mod procstat;
pub mod stack;
pub mod watch;
