//! One integration-test binary (compiled once): real `redis-server` processes, real
//! `leasectl` processes. Each area has its own module.

mod bench;
mod cli;
mod cli_io;
mod cluster;
mod configure;
mod demo;
mod doctor;
mod dotnet_format;
mod exec;
mod handoff;
mod lean;
mod library;
mod quorum;
mod quorum_safety;
mod security;
mod sentinel;
mod sets;
mod settings;
mod shell;
mod support;
mod telemetry;
mod torture;
mod waiting;

// The support modules' old paths (`crate::process::...`), as the quorum and torture tests name them.
use support::{leases, process, proxy};
