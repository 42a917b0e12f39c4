//! Many leases renewed by one client (issue 17, S5): every one renewed and none lost, each
//! with its own answer, and their renewals batched — the leases due together go out in one
//! pipeline per instance, so an instance reads far fewer requests than it runs renewals.

use futures_util::future::join_all;

use super::*;
use crate::proxy::Proxy;
use crate::support::Quorum;

/// What a server has counted: `extend` script calls (EVALSHA) and requests read.
#[derive(Clone, Copy, Debug)]
struct Counted {
    evalsha: u64,
    reads: u64,
}

impl Counted {
    fn of(server: &RedisServer) -> Counted {
        let commands: String = server.query(&["INFO", "commandstats"]);
        let evalsha = commands
            .lines()
            .find_map(|line| line.strip_prefix("cmdstat_evalsha:"))
            .and_then(|stats| stats.split(',').find_map(|f| f.strip_prefix("calls=")))
            .map_or(0, |n| n.parse().unwrap());
        let stats: String = server.query(&["INFO", "stats"]);
        let reads = stats
            .lines()
            .find_map(|line| line.strip_prefix("total_reads_processed:"))
            .map(|n| n.trim().parse().unwrap())
            .expect("total_reads_processed in INFO stats");
        Counted { evalsha, reads }
    }

    fn since(self, before: Counted) -> Counted {
        Counted {
            evalsha: self.evalsha - before.evalsha,
            reads: self.reads - before.reads,
        }
    }
}

/// `count` leases named `many-0`... taken one after another (so that their renewals, timed
/// from each acquire, fall due one after another too), renewed every 2 seconds.
async fn take_many(client: &LeaseClient, count: usize) -> Vec<Lease> {
    let options = renewing(Duration::from_secs(6), Duration::from_secs(2));
    let mut leases = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("many-{i}");
        let taken = client.try_acquire(&name, &options);
        leases.push(acquired(within(BOUND, "acquire", taken).await));
    }
    leases
}

/// Waits until every lease was renewed `times` more times than `from` says.
async fn renewed_again(leases: &[Lease], from: &[u64], times: u64) {
    within(BOUND, "every lease renewed again", async {
        while leases
            .iter()
            .zip(from)
            .any(|(l, n)| l.renewals() < n + times)
        {
            let lost: Vec<String> = leases
                .iter()
                .filter_map(|l| l.lost_error())
                .map(|e| e.to_string())
                .collect();
            assert!(
                lost.is_empty(),
                "{} lost, the first: {}",
                lost.len(),
                lost[0]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// Checks that the renewals counted (while every lease was renewed twice) went out in
/// batches: several per request read (one at a time, as each lease's own task sent them
/// before, they were 1.5 to 2 per read here).
fn assert_batched(counted: Counted, leases: usize) {
    assert!(
        counted.evalsha >= leases as u64,
        "{} renewals of {leases} leases",
        counted.evalsha
    );
    assert!(
        counted.reads * 4 <= counted.evalsha,
        "{} requests read for {} renewals: not batched",
        counted.reads,
        counted.evalsha
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_leases_are_renewed_in_batches_and_none_is_lost() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let leases = take_many(&client, 3000).await;
    let from: Vec<u64> = leases.iter().map(Lease::renewals).collect();
    let before = Counted::of(&server);
    renewed_again(&leases, &from, 2).await;
    assert_batched(Counted::of(&server).since(before), leases.len());
    // Each lease has its own answer: one whose key is gone is lost, the others go on.
    let gone = &leases[1234];
    let _: i64 = server.query(&["DEL", &key("many-1234")]);
    let error = within(BOUND, "the lost signal", gone.lost()).await;
    assert!(
        matches!(
            &error,
            Error::Lost {
                reason: LostReason::NotOwner,
                ..
            }
        ),
        "{error}"
    );
    let from: Vec<u64> = leases.iter().map(Lease::renewals).collect();
    let others: Vec<&Lease> = (leases.iter())
        .filter(|l| l.name() != "many-1234")
        .collect();
    within(BOUND, "the others renewed again", async {
        while others.iter().any(|l| l.renewals() <= from[index(l)]) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(others.iter().all(|l| l.lost_error().is_none()));
    let released = join_all(leases.into_iter().map(Lease::release)).await;
    let released = released
        .into_iter()
        .filter(|r| matches!(r, Ok(true)))
        .count();
    assert_eq!(released, 2999, "every lease but the deleted one released");
    let left: i64 = server.query(&["EXISTS", &key("many-0"), &key("many-2999")]);
    assert_eq!(left, 0);
}

/// The index in its name (`many-N`).
fn index(lease: &Lease) -> usize {
    lease.name().trim_start_matches("many-").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_renews_many_leases_in_batches_on_every_instance() {
    let quorum = Quorum::start(3);
    let client = connect_with(quorum.settings()).await;
    let leases = take_many(&client, 1000).await;
    let from: Vec<u64> = leases.iter().map(Lease::renewals).collect();
    let before: Vec<Counted> = quorum.servers.iter().map(Counted::of).collect();
    renewed_again(&leases, &from, 2).await;
    for (server, before) in quorum.servers.iter().zip(before) {
        assert_batched(Counted::of(server).since(before), leases.len());
    }
    let released = join_all(leases.into_iter().map(Lease::release)).await;
    assert!(released.iter().all(|r| matches!(r, Ok(true))));
}

/// A lease whose answer waits for a silent instance holds up none of the others renewed with
/// it: "many-100" is gone on instance 0, so with instance 2 silent on our path (and calls that
/// time out only long after the test) it is undecided; the others are decided by instances 0
/// and 1, and go on being renewed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_waiting_for_a_silent_instance_holds_up_none_of_its_batch() {
    let quorum = Quorum::start(3);
    let proxies: Vec<Proxy> = quorum
        .servers
        .iter()
        .map(|s| Proxy::start(s.port))
        .collect();
    let urls: Vec<String> = proxies.iter().map(Proxy::url).collect();
    let mut settings = Settings::for_endpoints(&urls).expect("valid URLs");
    settings.sync_timeout = Duration::from_secs(300);
    let client = connect_with(settings).await;
    let leases = take_many(&client, 200).await;
    let _: i64 = quorum.servers[0].query(&["DEL", &key("many-100")]);
    proxies[2].set_blackhole(true);
    let others: Vec<&Lease> = (leases.iter()).filter(|l| l.name() != "many-100").collect();
    let from: Vec<u64> = others.iter().map(|l| l.renewals()).collect();
    within(BOUND, "the others renewed twice more", async {
        while others.iter().zip(&from).any(|(l, n)| l.renewals() < n + 2) {
            let lost = others.iter().find_map(|l| l.lost_error());
            assert!(lost.is_none(), "{}", lost.unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}
