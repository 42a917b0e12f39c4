//! Test support shared by every area: real `redis-server` processes ([`servers`]), `leasectl`
//! processes ([`process`]), the library's leases ([`leases`]), a fault-injecting TCP proxy
//! ([`proxy`]), `leasectl`'s JSON output ([`json`]), and the one set of time limits
//! ([`limits`]).

pub mod leases;
pub mod limits;
pub mod process;
pub mod proxy;
mod servers;

pub use limits::{BOUND, LIMIT};
pub use servers::*;
