//! An ACL user confined to the lease keys (the README's rules: `+evalsha +eval`, no `SCRIPT`)
//! keeps many leases renewed when the server's script cache is emptied under them (`SCRIPT
//! FLUSH` by an operator, a failover to a replica that never ran the scripts): the batched
//! renewals answer NOSCRIPT with EVAL, as every single call does, not with `SCRIPT LOAD`.

use futures_util::future::join_all;

use super::*;
use crate::leases::{acquired, renewing, within};
use crate::support::BOUND;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_renewals_of_an_acl_user_survive_an_emptied_script_cache() {
    let server = RedisServer::start();
    let mut admin = server.connection();
    let password = secret("acl-pw");
    add_lease_user(&mut admin, "app", &password);
    let url = format!("redis://app:{password}@127.0.0.1:{}", server.port);
    let settings = Settings::for_endpoints(&[url]).expect("a valid URL");
    let client = within(BOUND, "connect", LeaseClient::connect(settings))
        .await
        .expect("connect as app");
    // Taken at once, so that their renewals fall due together and go out in batches.
    let options = renewing(Duration::from_secs(6), Duration::from_secs(1));
    let names: Vec<String> = (0..200).map(|i| format!("acl-many-{i}")).collect();
    let takes = names.iter().map(|name| client.try_acquire(name, &options));
    let leases: Vec<_> = join_all(takes).await.into_iter().map(acquired).collect();
    within(BOUND, "renewed twice", renewed_twice_more(&leases)).await;
    query::<()>(&mut admin, &["SCRIPT", "FLUSH"]);
    within(
        BOUND,
        "renewed twice after SCRIPT FLUSH",
        renewed_twice_more(&leases),
    )
    .await;
    assert!(
        acl_log(&mut admin).is_empty(),
        "refused: {:?}",
        acl_log(&mut admin)
    );
    let released = join_all(leases.into_iter().map(|l| l.release())).await;
    assert!(
        released.iter().all(|r| matches!(r, Ok(true))),
        "{released:?}"
    );
}

/// Until every lease was renewed twice more than now; fails at once when one is lost.
async fn renewed_twice_more(leases: &[leasectl::Lease]) {
    let from: Vec<u64> = leases.iter().map(|l| l.renewals()).collect();
    while leases.iter().zip(&from).any(|(l, n)| l.renewals() < n + 2) {
        let lost = leases.iter().find_map(|l| l.lost_error());
        assert!(lost.is_none(), "{}", lost.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
