//! leasectl: leases — locks with a time to live — on Redis.
//!
//! A lease named `NAME` is a hash at `{KeyPrefix}NAME` (`leaseId`, `acquiredAt`,
//! `fencingToken`, `meta_*`) whose TTL is the lease's — or, with [`LeaseFormat::Json`], the
//! .NET DistributedLeasing.Azure.Redis package's JSON string with our `fencingToken` added; a
//! counter beside it makes every acquisition's fencing token larger than the last. Each
//! operation is one Lua script.
//!
//! One Redis deployment — a standalone instance, or a Redis Cluster whose client routes each
//! lease to the primary owning its slot — or several independent instances in quorum mode
//! (Redlock): every operation goes to all instances at once and is decided by a majority.
//!
//! The layout, in layers that import one way (each only from the layers below it):
//! - [`LeaseClient`] (`client.rs`): connect, try-acquire, acquire with a fair, notified wait,
//!   inspect, release, fenced writes — thin methods over the operations;
//! - the operations: `acquire.rs` (one attempt: the acquire script, fencing tokens settled on
//!   a majority, a refused attempt undone, a split vote tried again), `wait.rs` (the waiting
//!   loops and the pause between a waiter's tries: release notification, fallback poll,
//!   queue place, backoff), `inspect.rs` (who holds a lease, per instance too), `fence.rs`
//!   ([`FencedWrite`]s);
//! - the lease layer: [`Lease`] (`lease.rs`): a held lease — extend, release, and the lost
//!   signal, fed by its client's watchdog in `renew/` that renews it (in batches with the
//!   client's other leases) and notices loss before the TTL
//!   can run out; [`LeaseSet`] (`lease_set.rs`): several leases taken together (all or none);
//!   [`LeaseOptions`] (`options.rs`);
//! - the backend (`backend/`): the instances and a connection to each (`connect.rs`,
//!   `link.rs`), the fan-out that sends a call to every instance, each under its own timeout
//!   (`nodes.rs`), the tally that turns their answers into one (`quorum.rs`; single mode is
//!   the case of one instance), the release notifications (`hub.rs`), one Lua script per
//!   operation (`scripts.rs`, `scripts/*.lua`), the names beside a lease key (`keys.rs`:
//!   fencing counter, waiters' queue, channel), and the engine operations every layer above
//!   uses (release, forced release, undo, extend, leaving the queue, round trip);
//! - beside them: [`settings`]: the settings files, environment and flags, resolved into
//!   [`Settings`]; [`Endpoint`] parses URLs and connection strings; `entra/` builds Entra
//!   ID credentials; [`health`]: the checks of `leasectl doctor` (reachability, TLS, ACL
//!   permissions, topology, memory policy, persistence, clock, a test lease); [`telemetry`]:
//!   the OpenTelemetry metrics (and the spans' names); [`Holder`] (`holder.rs`): who holds a
//!   lease, read from any of the key
//!   formats in use; [`Error`] (`error.rs`): one variant per kind of failure. A held lease is
//!   not an error.
//!
//! ```no_run
//! use leasectl::{Acquire, LeaseClient, LeaseOptions, Settings};
//!
//! # async fn example() -> leasectl::Result<()> {
//! let client = LeaseClient::connect(Settings::default()).await?; // redis://127.0.0.1:6379
//! let options = LeaseOptions::from_settings(client.settings()).meta("instanceId", "worker-1");
//! match client.try_acquire("nightly-report", &options).await? {
//!     Acquire::Acquired(lease) => {
//!         let lost = lease.lost();
//!         tokio::select! {
//!             _ = do_the_work(lease.fencing_token()) => {}
//!             error = lost => eprintln!("stopped: {error}"),
//!         }
//!         lease.release().await?;
//!     }
//!     Acquire::Held(holder) => println!("held by {}", holder.display_name()),
//! }
//! # Ok(()) }
//! # async fn do_the_work(_token: u64) {}
//! ```

mod acquire;
mod backend;
mod client;
pub mod duration;
pub mod endpoint;
mod entra;
mod error;
mod fence;
mod format;
pub mod health;
mod holder;
mod inspect;
mod lease;
mod lease_set;
mod options;
mod renew;
pub mod settings;
pub mod telemetry;
mod wait;

pub use backend::keys::{check_name, MAX_NAME_LEN, MIN_TTL};
pub use client::{Acquire, AcquireSet, LeaseClient};
pub use endpoint::{mask_password, split_list, Endpoint};
pub use entra::EntraId;
pub use error::{Error, LostReason, Result};
pub use fence::FencedWrite;
pub use format::LeaseFormat;
pub use holder::{escape_for_terminal, Holder, InstanceView, KeyFormat, LeaseInfo};
pub use lease::{KeptLease, Lease};
pub use lease_set::LeaseSet;
pub use options::{LeaseOptions, FALLBACK_POLL};
/// redis-rs's Entra ID credentials provider, for [`LeaseClient::connect_with_credentials`].
pub use redis::EntraIdCredentialsProvider;
pub use settings::{Overrides, Settings};
