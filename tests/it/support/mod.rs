//! Test support shared by every area: real `redis-server` processes ([`servers`]), `leasectl`
//! processes ([`process`]), the library's leases ([`leases`]), a fault-injecting TCP proxy
//! ([`proxy`]), `leasectl`'s JSON output ([`json`]), and the one set of time limits
//! ([`limits`]).

pub mod cluster;
mod data;
pub mod dotnet;
pub mod json;
pub mod leases;
pub mod limits;
pub mod process;
pub mod proxy;
pub mod sentinel;
mod servers;

pub use data::*;
pub use limits::{BOUND, LIMIT};
pub use servers::*;

/// Each scenario runs as one test per deployment: `instance_matrix!({ single = 1, three = 3 };
/// SCENARIO, ...)` makes `SCENARIO::single` and `SCENARIO::three`, which call the async
/// `SCENARIO(1)` and `SCENARIO(3)` (the number of instances).
macro_rules! instance_matrix {
    ($counts:tt; $($scenario:ident),+ $(,)?) => {$(
        $crate::support::instance_matrix!(@one $scenario $counts);
    )+};
    (@one $scenario:ident { $($name:ident = $count:expr),+ $(,)? }) => {
        mod $scenario {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$scenario($count).await
                }
            )+
        }
    };
}
pub(crate) use instance_matrix;
