//! The connections the library opens (issue 17): Nagle's algorithm is off on each of them, so
//! that a call written while another is unanswered on the shared connection — another
//! waiter's, a quorum call finishing in the background, a renewal — goes out at once.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sys::socket::{getpeername, getsockopt, sockopt, SockaddrStorage};

use crate::leases::{connect_within, within, woken_only};
use leasectl::Settings;

use crate::support::cluster::RedisCluster;
use crate::support::sentinel::SentinelDeployment;
use crate::support::{release_channel, subscribers, RedisServer, BOUND};

/// Whether TCP_NODELAY is on, for each of this process's TCP sockets connected to one of
/// `ports`.
fn nodelay_to(ports: &[u16]) -> Vec<bool> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
        let Ok(fd) = entry
            .expect("fd")
            .file_name()
            .to_string_lossy()
            .parse::<i32>()
        else {
            continue;
        };
        // SAFETY: only borrowed for the two calls below; a descriptor closed meanwhile makes
        // them fail, which skips it.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let Ok(peer) = getpeername::<SockaddrStorage>(borrowed.as_raw_fd()) else {
            continue;
        };
        let peer_port = peer
            .as_sockaddr_in()
            .map(|a| a.port())
            .or_else(|| peer.as_sockaddr_in6().map(|a| a.port()));
        if peer_port.is_some_and(|port| ports.contains(&port)) {
            found.push(getsockopt(&borrowed, sockopt::TcpNoDelay).expect("TCP_NODELAY"));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_to_redis_has_nagle_off() {
    let server = RedisServer::start();
    let port: u16 = server
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_matches('/')
        .parse()
        .unwrap();
    let client = connect_within(BOUND, server.settings()).await;
    let holder = client.clone();
    let held = within(BOUND, "try", holder.try_acquire("nagle", &woken_only())).await;
    let lease = crate::leases::acquired(held);
    // A waiter opens the notifications' connection too.
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { client.acquire("nagle", &woken_only(), BOUND).await })
    };
    let channel = release_channel("nagle");
    tokio::task::block_in_place(|| {
        assert!(crate::support::eventually(BOUND, || subscribers(
            &mut server.connection(),
            &channel
        ) >= 1));
    });
    let sockets = nodelay_to(&[port]);
    assert!(
        sockets.len() >= 2,
        "the calls' and the notifications' connections: {sockets:?}"
    );
    assert!(
        sockets.iter().all(|on| *on),
        "Nagle on somewhere: {sockets:?}"
    );
    assert!(within(BOUND, "release", lease.release()).await.unwrap());
    let next = within(BOUND, "waiter", waiter).await.unwrap();
    assert!(crate::leases::acquired(next).release().await.unwrap());
}

/// Takes and releases a lease through `settings`, and answers, while it is held, whether
/// Nagle is off on each socket to `ports`.
async fn nodelay_while_held(settings: Settings, ports: &[u16]) -> Vec<bool> {
    let client = connect_within(BOUND, settings).await;
    let held = within(BOUND, "try", client.try_acquire("nagle", &woken_only())).await;
    let lease = crate::leases::acquired(held);
    let sockets = nodelay_to(ports);
    assert!(within(BOUND, "release", lease.release()).await.unwrap());
    sockets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_and_cluster_connections_have_nagle_off_too() {
    let deployment = tokio::task::block_in_place(SentinelDeployment::start);
    let settings = Settings::for_endpoints(&[deployment.url()]).expect("a sentinel URL");
    let mut ports: Vec<u16> = deployment.sentinels.iter().map(|s| s.port).collect();
    ports.extend(deployment.data.iter().map(|d| d.port));
    let sockets = nodelay_while_held(settings, &ports).await;
    assert!(!sockets.is_empty(), "no connection to the deployment");
    assert!(
        sockets.iter().all(|on| *on),
        "Nagle on somewhere (Sentinel): {sockets:?}"
    );

    let cluster = tokio::task::block_in_place(RedisCluster::start);
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
    let sockets = nodelay_while_held(cluster.settings_via(0), &ports).await;
    assert!(!sockets.is_empty(), "no connection to the cluster");
    assert!(
        sockets.iter().all(|on| *on),
        "Nagle on somewhere (Cluster): {sockets:?}"
    );
}
