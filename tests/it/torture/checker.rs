//! The checker: reads a run's whole history and counts what must never happen.
//!
//! - **Overlaps**: two holders of one name whose critical sections overlap while both were
//!   trusted to hold it. A holder is trusted from its start until it ended, saw its loss, or
//!   a fault hit it (SIGKILL, SIGSTOP past the TTL, its key deleted by an empty restart of its
//!   single Redis or a forced release); after that only the fence protects the resource.
//! - **Accepted stale writes**: the fence orders writes. A write sent after another holder's
//!   write with a token at least as new was answered must be refused; accepted, it is counted.
//!   Only definite orders count (one answered before the other was sent), so the check needs
//!   no timing margin.
//! - **Late loss signals**: a lost lease must be signalled before the TTL can have run out on
//!   the server. The next holder of the name got it only once the server's key was gone, so
//!   the loss must take effect before that next acquisition: for a library holder at the end
//!   of the validity the library computed (its lost signal fires then; how late the task saw
//!   it is reported too). For `exec`, when its child got SIGTERM is seen from outside, after
//!   however long the machine took to run `leasectl`: a child signalled after the next holder
//!   acquired is counted only when it was a whole TTL late, and the smallest margin is reported
//!   either way. And a lease deleted under its holder (its single Redis restarting empty, or an
//!   operator's forced release) must never be renewed by a request sent after the deletion:
//!   its validity may not reach past that.
//! - Keys left behind once every competitor stopped are counted by the run, not here.

use std::collections::BTreeMap;
use std::time::Duration;

use super::history::{Hit, Holder, Outcome, Section, Write};

/// How many examples of each kind of violation a report keeps.
const EXAMPLES: usize = 5;

#[derive(Clone, Debug, Default)]
pub struct Findings {
    pub sections: usize,
    pub overlaps: usize,
    pub stale_accepted: usize,
    pub late_losses: usize,
    pub renewed_after_deletion: usize,
    /// Of the overlaps and late loss signals, those that followed a quorum instance's restart.
    pub after_restart: usize,
    /// Overlapping holders where the earlier one wrote, accepted, after the later one started.
    pub accepted_overlaps: usize,
    /// Holders that held on for a third of a TTL after their key was deleted: each renewal
    /// they tried then had to fail.
    pub outlived_deletions: usize,
    /// The smallest margin (ns) between the end of a library holder's validity (its lost
    /// signal fires then) and the next acquisition of the name.
    pub smallest_margin: Option<i64>,
    pub margins: usize,
    /// The same for `exec`: between its child's SIGTERM and the next acquisition.
    pub smallest_exec_margin: Option<i64>,
    pub exec_margins: usize,
    /// The longest (ns) a library holder saw its lost signal after its validity ended.
    pub slowest_signal: u64,
    pub accepted: usize,
    pub refused: usize,
    /// Refused writes sent after a newer holder's write was answered: a holder whose lease was
    /// taken over, caught by the fence.
    pub refused_taken_over: usize,
    pub failed: usize,
    pub lost: usize,
    /// Holders across a failover (an uncertain deletion), and those of them that lost their
    /// lease in it (signalled at their next renewal).
    pub across_failover: usize,
    pub lost_in_failover: usize,
    pub hits: BTreeMap<&'static str, usize>,
    pub examples: Vec<String>,
}

impl Findings {
    pub fn violations(&self) -> usize {
        self.overlaps + self.stale_accepted + self.late_losses + self.renewed_after_deletion
    }

    pub fn merge(&mut self, other: &Findings) {
        self.sections += other.sections;
        self.overlaps += other.overlaps;
        self.stale_accepted += other.stale_accepted;
        self.late_losses += other.late_losses;
        self.renewed_after_deletion += other.renewed_after_deletion;
        self.after_restart += other.after_restart;
        self.accepted_overlaps += other.accepted_overlaps;
        self.outlived_deletions += other.outlived_deletions;
        self.smallest_margin = smaller(self.smallest_margin, other.smallest_margin);
        self.margins += other.margins;
        self.smallest_exec_margin = smaller(self.smallest_exec_margin, other.smallest_exec_margin);
        self.exec_margins += other.exec_margins;
        self.slowest_signal = self.slowest_signal.max(other.slowest_signal);
        self.accepted += other.accepted;
        self.refused += other.refused;
        self.refused_taken_over += other.refused_taken_over;
        self.failed += other.failed;
        self.lost += other.lost;
        self.across_failover += other.across_failover;
        self.lost_in_failover += other.lost_in_failover;
        for (kind, count) in &other.hits {
            *self.hits.entry(kind).or_default() += count;
        }
        self.examples.extend(other.examples.iter().cloned());
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < EXAMPLES * 4 {
            self.examples.push(text);
        }
    }
}

/// A lease key deleted under its holder, some time between `from` and `to`: by an empty
/// restart of the single Redis (every name), or by an operator's forced release (one name);
/// or, when not `certain`, perhaps deleted: a failover to a replica that may not have had the
/// latest writes.
#[derive(Clone, Debug)]
pub struct Deletion {
    pub from: u64,
    pub to: u64,
    pub name: Option<String>,
    pub what: &'static str,
    pub certain: bool,
}

impl Deletion {
    /// Whether it may have hit `section`: of its name, and, when not certain, not disproved
    /// by a renewal the holder sent once the deletion was over (the lease was there then).
    fn may_hit(&self, section: &Section, ttl: u64) -> bool {
        let of_name = self.name.as_ref().is_none_or(|n| *n == section.name);
        let drift = ttl / 100 + 2_000_000;
        // A validity `valid` comes from a renewal sent at `valid - ttl + drift`.
        let survived = || {
            section
                .validity
                .iter()
                .any(|&(_, valid, _)| valid + drift >= self.to + ttl)
        };
        of_name && (self.certain || !survived())
    }
}

fn smaller(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Checks every section of one deployment, which suffered `deletions` and, in quorum mode,
/// instance `restarts` (from, to).
pub fn check(
    sections: &[Section],
    deletions: &[Deletion],
    restarts: &[(u64, u64)],
    ttl: Duration,
) -> Findings {
    let mut findings = Findings {
        sections: sections.len(),
        ..Findings::default()
    };
    let mut by_name: BTreeMap<&str, Vec<&Section>> = BTreeMap::new();
    for section in sections {
        by_name.entry(&section.name).or_default().push(section);
    }
    for (_, mut held) in by_name {
        held.sort_by_key(|s| s.start);
        let ttl = ttl.as_nanos() as u64;
        check_exclusion(&held, deletions, restarts, ttl, &mut findings);
        check_fence(&held, &mut findings);
    }
    findings
}

/// Overlaps, late loss signals and renewals after a deletion, for the sections of one name in
/// order of their start.
fn check_exclusion(
    held: &[&Section],
    deletions: &[Deletion],
    restarts: &[(u64, u64)],
    ttl: u64,
    findings: &mut Findings,
) {
    let run_ttl = ttl;
    for (i, section) in held.iter().enumerate() {
        // Competitors may hold one name with different TTLs.
        let ttl = section.ttl.unwrap_or(run_ttl);
        // The validity the library computes: a renewal sent at `s` makes it `s + ttl - drift`.
        let drift = ttl / 100 + 2_000_000;
        let own_until = section.trusted_until();
        let deleted = deleted_at(section, deletions, run_ttl);
        let until = deleted.map_or(own_until, |at| at.min(own_until));
        let failovers = deletions
            .iter()
            .filter(|d| !d.certain && d.from < own_until && d.to >= section.asked)
            .filter(|d| d.name.as_ref().is_none_or(|n| *n == section.name));
        if failovers.clone().next().is_some() && section.hit.is_none() {
            findings.across_failover += 1;
            if deleted.is_some() && section.lost.is_some() {
                findings.lost_in_failover += 1;
            }
        }
        // A failover's possible deletion is checked through the overlaps: a holder that renewed
        // after it is trusted on.
        for deletion in deletions
            .iter()
            .filter(|d| d.certain && d.name.as_ref().is_none_or(|n| *n == section.name))
        {
            // Surely deleted under its holder (held before, and still held after, the deletion
            // began): no renewal sent once it ended may succeed.
            if section.start >= deletion.from || own_until <= deletion.from {
                continue;
            }
            let renewed = section
                .validity
                .iter()
                .find(|(_, valid, _)| *valid >= deletion.to + ttl - drift);
            if own_until > deletion.to + ttl / 3 || renewed.is_some() {
                findings.outlived_deletions += 1;
            }
            if let Some(&(seen, valid, renewals)) = renewed {
                findings.renewed_after_deletion += 1;
                findings.example(format!(
                    "renewed after its key was deleted ({}, {} ms long): {} (token {}) was valid \
                     until +{} ms after the deletion ended, seen at +{} ms after {renewals} \
                     renewals; observations {:?}",
                    deletion.what,
                    ms(deletion.to as i64 - deletion.from as i64),
                    describe(section),
                    section.token,
                    ms(valid as i64 - deletion.to as i64),
                    ms(seen as i64 - deletion.to as i64),
                    section
                        .validity
                        .iter()
                        .map(|(seen, valid, renewals)| format!(
                            "{}/{}/{renewals}",
                            ms(*seen as i64 - deletion.to as i64),
                            ms(*valid as i64 - deletion.to as i64)
                        ))
                        .collect::<Vec<_>>()
                ));
            }
        }
        if let Some(hit) = section.hit {
            *findings.hits.entry(hit_name(hit.1)).or_default() += 1;
        } else if deleted.is_some() {
            *findings.hits.entry(hit_name(Hit::Deleted)).or_default() += 1;
        }
        if let Some(lost) = section.lost {
            findings.lost += 1;
            if let Some(seen) = section.lost_seen {
                let delay = seen.saturating_sub(lost);
                findings.slowest_signal = findings.slowest_signal.max(delay);
            }
        }
        let lost_while_trusted = section.lost.filter(|&lost| lost == until);
        let unhit = section.hit.is_none() && deleted.is_none();
        let exec = matches!(section.holder, Holder::Exec(_));
        let restarted_before = |later: &Section| {
            restarts
                .iter()
                .any(|&(from, to)| to >= section.asked && from <= later.start)
        };
        if let (Some(lost), Some(next), true) = (lost_while_trusted, held.get(i + 1), unhit) {
            let margin = next.start as i64 - lost as i64;
            let (count, smallest) = match exec {
                false => (&mut findings.margins, &mut findings.smallest_margin),
                true => (
                    &mut findings.exec_margins,
                    &mut findings.smallest_exec_margin,
                ),
            };
            *count += 1;
            *smallest = Some(smallest.map_or(margin, |m| m.min(margin)));
        }
        for later in held[i + 1..].iter().take_while(|later| later.start < until) {
            // A holder hit before it even began (its key deleted between its acquire and its
            // start) was never trusted: only the fence stands between it and the resource.
            let later_until = deleted_at(later, deletions, run_ttl)
                .map_or(later.trusted_until(), |at| at.min(later.trusted_until()));
            if later_until <= later.start {
                continue;
            }
            // An exec child's SIGTERM is seen from outside, after leasectl's own lost signal by
            // however long the machine takes to schedule leasectl: late by less than a TTL, it
            // is reported (the smallest exec margin), not counted.
            let late_by = until - later.start;
            if lost_while_trusted.is_some() && unhit && exec && late_by < ttl {
                continue;
            }
            // The earlier holder wrote, and was accepted, once the later one held the lease.
            let wrote_after = section
                .writes
                .iter()
                .any(|w| w.outcome == Outcome::Written && w.sent > later.start);
            if wrote_after && later.writes.iter().any(|w| w.outcome == Outcome::Written) {
                findings.accepted_overlaps += 1;
            }
            // A quorum instance restarted between the earlier holder's acquire and the later
            // one's (it may have forgotten the lease: see quorum.rs's `Tally`): noted.
            if restarted_before(later) {
                findings.after_restart += 1;
            }
            if lost_while_trusted.is_some() && unhit {
                findings.late_losses += 1;
                findings.example(format!(
                    "late loss signal: {} (token {}) lost its lease {} ms after {} (token {}) \
                     acquired {}",
                    describe(section),
                    section.token,
                    ms(until as i64 - later.start as i64),
                    describe(later),
                    later.token,
                    section.name
                ));
            } else {
                findings.overlaps += 1;
                findings.example(format!(
                    "overlap on {}: {} (token {}, trusted until +{} ms) and {} (token {}, from \
                     +{} ms), both from {}'s start",
                    section.name,
                    describe(section),
                    section.token,
                    ms(until as i64 - section.start as i64),
                    describe(later),
                    later.token,
                    ms(later.start as i64 - section.start as i64),
                    describe(section)
                ));
            }
        }
    }
}

/// When a deletion may first have hit `section`'s key while it held it (from then on it is not
/// trusted): any deletion of its name between its acquire and its trusted end.
fn deleted_at(section: &Section, deletions: &[Deletion], ttl: u64) -> Option<u64> {
    let own_until = section.trusted_until();
    let ttl = section.ttl.unwrap_or(ttl);
    deletions
        .iter()
        .filter(|d| d.may_hit(section, ttl))
        .filter(|d| d.to >= section.asked)
        .map(|d| d.from.max(section.asked))
        .filter(|&at| at < own_until)
        .min()
}

/// The fence's order, for the sections of one name: a write sent after a write of another
/// holder with a token at least as new was answered must have been refused.
fn check_fence(held: &[&Section], findings: &mut Findings) {
    // (answered, token, holder index) of accepted writes, by answer time; every write by send
    // time; then one sweep keeps the two newest tokens of distinct holders answered so far.
    let mut answered: Vec<(u64, u64, usize)> = Vec::new();
    let mut sent: Vec<(u64, usize, Outcome)> = Vec::new();
    for (index, section) in held.iter().enumerate() {
        for write in &section.writes {
            match write.outcome {
                Outcome::Written => {
                    findings.accepted += 1;
                    answered.push((write.answered, section.token, index));
                }
                Outcome::Stale => findings.refused += 1,
                Outcome::Failed => findings.failed += 1,
            }
            sent.push((write.sent, index, write.outcome));
        }
    }
    answered.sort_unstable();
    sent.sort_unstable_by_key(|&(at, index, _)| (at, index));
    let mut newest: [Option<(u64, usize)>; 2] = [None, None];
    let mut next = 0;
    for (at, index, outcome) in sent {
        while next < answered.len() && answered[next].0 < at {
            let (_, token, by) = answered[next];
            newest = keep_two_newest(newest, token, by);
            next += 1;
        }
        let token = held[index].token;
        // The newest token of another holder already answered.
        let other = newest.iter().flatten().find(|(_, by)| *by != index);
        let Some(&(newer, by)) = other.filter(|(t, _)| *t >= token) else {
            continue;
        };
        match outcome {
            Outcome::Stale => findings.refused_taken_over += 1,
            Outcome::Written => {
                findings.stale_accepted += 1;
                findings.example(format!(
                    "stale write accepted on {}: {} (token {token}) wrote after {} (token \
                     {newer}) had written",
                    held[index].name,
                    describe(held[index]),
                    describe(held[by])
                ));
            }
            Outcome::Failed => {}
        }
    }
}

/// The two newest tokens of distinct holders, after one more accepted write.
fn keep_two_newest(
    newest: [Option<(u64, usize)>; 2],
    token: u64,
    by: usize,
) -> [Option<(u64, usize)>; 2] {
    let mut all: Vec<(u64, usize)> = newest.into_iter().flatten().collect();
    match all.iter_mut().find(|(_, holder)| *holder == by) {
        Some(entry) => entry.0 = entry.0.max(token),
        None => all.push((token, by)),
    }
    all.sort_unstable_by(|a, b| b.cmp(a));
    [all.first().copied(), all.get(1).copied()]
}

fn hit_name(hit: Hit) -> &'static str {
    match hit {
        Hit::Killed => "killed while holding",
        Hit::Frozen => "frozen while holding",
        Hit::Deleted => "deleted while holding",
    }
}

fn describe(section: &Section) -> String {
    format!("{:?} lease {}", section.holder, section.lease_id)
}

/// Nanoseconds as milliseconds with two decimals.
pub fn ms(nanos: i64) -> String {
    format!("{:.2}", nanos as f64 / 1e6)
}

const TTL: Duration = Duration::from_millis(1000);

/// A library holder's section that ended of its own accord.
fn section(holder: usize, token: u64, start: u64, end: u64) -> Section {
    let id = format!("id-{token}");
    let mut section = Section::new("n", Holder::Library(holder), &id, token, start);
    section.end = Some(end);
    section
}

fn write(sent: u64, answered: u64, outcome: Outcome) -> Write {
    Write {
        sent,
        answered,
        outcome,
    }
}

#[test]
fn the_checker_finds_overlaps_but_not_handovers() {
    let a = section(0, 1, 0, 100);
    let b = section(1, 2, 100, 200);
    assert_eq!(
        check(&[a.clone(), b.clone()], &[], &[], TTL).violations(),
        0
    );
    let mut late = section(1, 2, 50, 200);
    late.writes.push(write(55, 56, Outcome::Written));
    assert_eq!(check(&[a.clone(), late.clone()], &[], &[], TTL).overlaps, 1);
    // After a quorum instance restarted: counted, and noted.
    let after = check(&[a.clone(), late.clone()], &[], &[(20, 30)], TTL);
    assert_eq!((after.overlaps, after.after_restart), (1, 1));
    // A later holder whose key a forced release deleted before it began: not an overlap.
    let mut early = section(1, 2, 50, 200);
    early.asked = 10;
    let release = Deletion {
        from: 20,
        to: 30,
        name: Some("n".into()),
        what: "a test",
        certain: true,
    };
    let mut after = section(0, 1, 45, 150);
    after.asked = 40;
    assert_eq!(
        check(
            &[after.clone(), early.clone()],
            std::slice::from_ref(&release),
            &[],
            TTL
        )
        .overlaps,
        0
    );
    assert_eq!(check(&[after, early], &[], &[], TTL).overlaps, 1);
    let mut wrote = a.clone();
    wrote.writes.push(write(60, 61, Outcome::Written));
    assert_eq!(check(&[wrote, late], &[], &[], TTL).accepted_overlaps, 1);
    let mut frozen = a;
    frozen.end = None;
    frozen.hit = Some((40, Hit::Frozen));
    assert_eq!(
        check(&[frozen, section(1, 2, 60, 90)], &[], &[], TTL).violations(),
        0
    );
}

#[test]
fn the_checker_finds_stale_writes_accepted_and_counts_refused_ones() {
    let mut old = section(0, 1, 0, 1000);
    old.hit = Some((10, Hit::Frozen));
    let mut new = section(1, 2, 500, 600);
    new.writes = vec![write(510, 520, Outcome::Written)];
    old.writes = vec![
        write(5, 6, Outcome::Written),
        write(700, 710, Outcome::Stale),
    ];
    let fine = check(&[old.clone(), new.clone()], &[], &[], TTL);
    assert_eq!((fine.violations(), fine.refused_taken_over), (0, 1));
    old.writes[1].outcome = Outcome::Written;
    assert_eq!(
        check(&[old.clone(), new.clone()], &[], &[], TTL).stale_accepted,
        1
    );
    // A write sent before the newer holder's was answered may go either way.
    old.writes[1] = write(515, 530, Outcome::Written);
    assert_eq!(check(&[old, new], &[], &[], TTL).violations(), 0);
}

#[test]
fn the_checker_finds_late_loss_signals_and_renewals_after_a_deletion() {
    let mut lost = section(0, 1, 0, 0);
    lost.end = None;
    lost.lost = Some(100);
    let next = section(1, 2, 150, 200);
    let fine = check(&[lost.clone(), next.clone()], &[], &[], TTL);
    assert_eq!((fine.violations(), fine.smallest_margin), (0, Some(50)));
    lost.lost = Some(160);
    assert_eq!(check(&[lost, next.clone()], &[], &[], TTL).late_losses, 1);
    let ttl = TTL.as_nanos() as u64;
    let deletion = |from: u64| Deletion {
        from,
        to: from + 10,
        name: None,
        what: "a test",
        certain: true,
    };
    let mut deleted = section(0, 1, 0, 3 * ttl);
    // Renewed at ttl / 3 and at ttl.
    deleted.validity = vec![(10, ttl * 96 / 100, 1), (ttl, ttl * 196 / 100, 3)];
    assert_eq!(
        check(&[deleted.clone()], &[deletion(ttl / 2)], &[], TTL).renewed_after_deletion,
        1
    );
    assert_eq!(
        check(&[deleted], &[deletion(ttl + 1)], &[], TTL).renewed_after_deletion,
        0
    );
}

#[test]
fn a_failover_ends_trust_unless_the_holder_renewed_after_it() {
    let ttl = TTL.as_nanos() as u64;
    let failover = Deletion {
        from: ttl,
        to: ttl + 10,
        name: None,
        what: "a failover",
        certain: false,
    };
    let failovers = std::slice::from_ref(&failover);
    // Held from 0 to 4 TTLs; someone else holds the name from 2 TTLs.
    let mut held = section(0, 1, 0, 4 * ttl);
    let later = section(1, 2, 2 * ttl, 5 * ttl);
    // No renewal seen after the failover: perhaps lost in it, so only the fence protects.
    held.validity = vec![(10, ttl * 96 / 100, 1)];
    let lost = check(&[held.clone(), later.clone()], failovers, &[], TTL);
    assert_eq!((lost.overlaps, lost.across_failover), (0, 1));
    // Renewed after the failover: the lease was there, so the holder is trusted on.
    held.validity.push((ttl + 20, 2 * ttl, 2));
    assert_eq!(
        check(&[held.clone(), later], failovers, &[], TTL).overlaps,
        1
    );
    // A renewal is no deletion: never counted as renewed after one.
    assert_eq!(
        check(&[held], failovers, &[], TTL).renewed_after_deletion,
        0
    );
}
