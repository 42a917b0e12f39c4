//! One integration-test binary (compiled once): real `redis-server` processes, real
//! `leasectl` processes. Each area has its own module.

mod bench;
mod cli;
mod cli_io;
mod configure;
mod demo;
mod exec;
mod leases;
mod library;
mod process;
mod proxy;
mod quorum;
mod quorum_safety;
mod security;
mod sets;
mod settings;
mod support;
mod torture;
mod waiting;
