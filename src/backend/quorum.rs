//! How the instances' answers become one answer: a majority for or against an acquire or an
//! extension, the fencing token a majority stands at, and the majority's view of who holds a
//! lease. Single mode is the case of one instance, whose majority is itself.

use std::time::{Duration, SystemTime};

use redis::Value;

use super::nodes::Vote;
use crate::holder::Holder;

/// How many of `total` instances make a majority.
pub(crate) fn majority(total: usize) -> usize {
    total / 2 + 1
}

/// One instance's answer to the acquire script (for one lease, or a set taken together).
pub(crate) enum Grant {
    /// Taken here, with this instance's count of each lease as its token; in quorum mode
    /// `uptime`: the whole seconds since the instance started (`None`: unknown, it counts as
    /// old; learned once per connection, see start.rs), and `longest`: the longest TTL (ms)
    /// the leases were asked for here.
    Granted {
        tokens: Vec<u64>,
        uptime: Option<u64>,
        longest: u64,
    },
    /// Lease `lease` (its index in the set) is held here by someone else (`None`: the key
    /// vanished between the check and the read), with this instance's counter of it and the
    /// longest TTL (ms) the set's leases were asked for here.
    Held {
        holder: Option<Holder>,
        counter: u64,
        lease: usize,
        longest: u64,
    },
}

impl Grant {
    /// Reads a token alone (one lease taken), `{1, token...}`, `{3, longest, token...}`
    /// (`uptime` is then filled in by the caller),
    /// `{0, {type, pttl, fields}, counter, i, longest}` or `{2, waiters, counter, i, longest}`
    /// (`i` counts from 1).
    pub(crate) fn parse(reply: &Value) -> Option<Grant> {
        if let Value::Int(token) = reply {
            return Some(Grant::Granted {
                tokens: vec![u64::try_from(*token).ok()?],
                uptime: None,
                longest: 0,
            });
        }
        let Value::Array(parts) = reply else {
            return None;
        };
        let lease = match parts.get(3) {
            Some(Value::Int(i)) if *i >= 1 => *i as usize - 1,
            _ => 0,
        };
        let longest = match parts.get(4) {
            Some(Value::Int(ms)) => (*ms).max(0) as u64,
            _ => 0,
        };
        let granted = |uptime: Option<u64>, longest: u64, tokens: &[Value]| {
            let tokens = tokens.iter().map(|part| match part {
                Value::Int(token) => Some(*token as u64),
                _ => None,
            });
            let tokens = tokens.collect::<Option<Vec<u64>>>()?;
            (!tokens.is_empty()).then_some(Grant::Granted {
                tokens,
                uptime,
                longest,
            })
        };
        match (parts.first(), parts.get(1), parts.get(2)) {
            (Some(Value::Int(1)), Some(Value::Int(_)), _) => granted(None, 0, &parts[1..]),
            (Some(Value::Int(3)), Some(Value::Int(longest)), Some(Value::Int(_))) => {
                granted(None, (*longest).max(0) as u64, &parts[2..])
            }
            (Some(Value::Int(0)), Some(holder), Some(Value::Int(counter))) => Some(Grant::Held {
                holder: Holder::from_reply(holder),
                counter: *counter as u64,
                lease,
                longest,
            }),
            // Free, but promised to the first of the queued waiters.
            (Some(Value::Int(2)), Some(Value::Int(waiters)), Some(Value::Int(counter))) => {
                Some(Grant::Held {
                    holder: Some(Holder::queued(*waiters as u64)),
                    counter: *counter as u64,
                    lease,
                    longest,
                })
            }
            _ => None,
        }
    }

    fn token(&self, lease: usize) -> Option<u64> {
        match self {
            Grant::Granted { tokens, .. } => tokens.get(lease).copied(),
            Grant::Held { .. } => None,
        }
    }

    /// The instance's counter of lease `lease` as this answer shows it (`None`: not shown).
    fn counter(&self, lease: usize) -> Option<u64> {
        match self {
            Grant::Granted { tokens, .. } => tokens.get(lease).copied(),
            Grant::Held {
                counter,
                lease: held,
                ..
            } if *held == lease => Some(*counter),
            Grant::Held { .. } => None,
        }
    }

    fn longest(&self) -> u64 {
        match self {
            Grant::Granted { longest, .. } | Grant::Held { longest, .. } => *longest,
        }
    }
}

/// The longest TTL the lease may have been granted with: `ttl` (ours), or a longer one any
/// answering instance remembers. "Restarted recently" is judged against it, so that a
/// competitor with a short TTL does not take an instance that forgot a long lease for an old one.
pub(crate) fn longest_ttl(votes: &[Vote<Grant>], ttl: Duration) -> Duration {
    let remembered = votes
        .iter()
        .filter_map(|v| v.answer.as_ref().ok().map(Grant::longest))
        .max()
        .unwrap_or(0);
    ttl.max(Duration::from_millis(remembered))
}

/// Whether an instance up for `uptime` whole seconds (as INFO says: maybe a second ahead) may
/// have started less than `longest` ago, and so may have forgotten a lease it granted.
pub(crate) fn is_young(uptime: Option<u64>, longest: Duration) -> bool {
    uptime.is_some_and(|uptime| Duration::from_secs(uptime.saturating_sub(1)) <= longest)
}

/// What the acquire votes add up to.
///
/// A young instance — one that started less than the longest TTL the lease may have been
/// granted with ago ([`longest_ttl`]) — may have restarted with empty memory and forgotten a
/// lease it granted (Redlock asks for "delayed restarts" to rule that out; leasectl checks
/// instead). Its grant counts only when every other instance answered and none reports the
/// lease held by a holder that acquired it before the young instance started, or one whose
/// start is unknown; otherwise it is `voided`: counting it could hand that lease out a second
/// time. An instance that failed or did not answer is no answer: it may be the one that holds
/// the lease. Grants of young instances therefore count only once every instance answered.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    pub(crate) granted: usize,
    pub(crate) young: usize,
    pub(crate) voided: usize,
    pub(crate) held: usize,
    pub(crate) failed: usize,
}

/// How far apart two hosts' clocks may be, for telling whether a lease was acquired before an
/// instance started.
const CLOCK_SKEW: Duration = Duration::from_millis(100);

impl Tally {
    /// The votes so far on an acquire with `ttl`.
    pub(crate) fn of(votes: &[Vote<Grant>], ttl: Duration) -> Tally {
        Tally::at(votes, ttl, SystemTime::now())
    }

    fn at(votes: &[Vote<Grant>], ttl: Duration, now: SystemTime) -> Tally {
        // Whether an instance reports a holder that acquired the lease before `started` (or
        // at an unknown time). Read only for a young grant, which is rare.
        let held_since_before = |started: SystemTime| {
            votes.iter().any(|vote| match &vote.answer {
                Ok(Grant::Held { holder, .. }) => holder
                    .as_ref()
                    .and_then(acquired_at)
                    .is_none_or(|at| at < started),
                _ => false,
            })
        };
        let any_failed = votes.iter().any(|vote| vote.answer.is_err());
        let longest = longest_ttl(votes, ttl);
        let mut tally = Tally::default();
        for vote in votes {
            match &vote.answer {
                Ok(Grant::Granted { uptime, .. }) if is_young(*uptime, longest) => {
                    // The latest the instance can have started: INFO's uptime may be a second
                    // ahead (see acquire.lua); and the holder's clock may be ahead of ours, so
                    // a holder up to CLOCK_SKEW after that counts as before it.
                    let uptime = Duration::from_secs(uptime.unwrap_or(0).saturating_sub(1));
                    if any_failed || held_since_before(now - uptime + CLOCK_SKEW) {
                        tally.voided += 1
                    } else {
                        tally.young += 1
                    }
                }
                Ok(Grant::Granted { .. }) => tally.granted += 1,
                Ok(Grant::Held { .. }) => tally.held += 1,
                Err(_) => tally.failed += 1,
            }
        }
        tally
    }

    /// The grants that count.
    pub(crate) fn counted(&self) -> usize {
        self.granted + self.young
    }

    /// The instances that may have written a key (and must be undone on failure).
    pub(crate) fn any_written(&self) -> bool {
        self.granted + self.young + self.voided > 0
    }

    /// True once the outcome is known: a majority granted; or so many refused or failed that
    /// none can, and also either a majority answered (held by someone else) or so many failed
    /// that no majority can answer (no quorum). Stopping as soon as no grant is possible would
    /// call "no quorum" a lease that the instances still answering hold.
    pub(crate) fn decides(&self, total: usize) -> bool {
        let majority = majority(total);
        let all_answered =
            self.granted + self.young + self.voided + self.held + self.failed == total;
        if self.counted() >= majority {
            return self.granted >= majority || all_answered;
        }
        let refused = self.held + self.voided;
        let none_can_grant = refused + self.failed > total - majority;
        let answered = self.counted() + refused >= majority;
        let none_can_answer = self.failed > total - majority;
        none_can_grant && (answered || none_can_answer)
    }
}

/// When a holder acquired its lease, as it says (`acquiredAt`).
fn acquired_at(holder: &Holder) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(holder.acquired_at.as_deref()?).ok()
}

/// Lease `lease`'s token to hand out — the largest any granting instance counted — and how
/// many granting instances already stand at it.
pub(crate) fn token_of(votes: &[Vote<Grant>], lease: usize) -> (u64, usize) {
    let tokens = votes
        .iter()
        .filter_map(|v| v.answer.as_ref().ok().and_then(|grant| grant.token(lease)));
    let token = tokens.clone().max().unwrap_or(0);
    (token, tokens.filter(|t| *t == token).count())
}

/// The instances whose answers show a counter of lease `lease` below `token`, and those whose
/// counter is unknown (they failed, or showed another lease of the set): one may be up again
/// with empty memory (a connection that died with a restarted instance fails once, then
/// reconnects), so they are raised too.
pub(crate) fn behind(votes: &[Vote<Grant>], token: u64, lease: usize) -> Vec<usize> {
    votes
        .iter()
        .filter(|v| {
            v.answer
                .as_ref()
                .ok()
                .and_then(|grant| grant.counter(lease))
                .is_none_or(|counter| counter < token)
        })
        .map(|v| v.node)
        .collect()
}

/// `Some(true)` once a majority confirmed an extension, `Some(false)` once so many denied
/// it that no majority can confirm it, `None` while undecided (or when failures leave it so).
pub(crate) fn extension(votes: &[Vote<i64>], total: usize) -> Option<bool> {
    let confirmed = votes.iter().filter(|v| matches!(v.answer, Ok(1))).count();
    let denied = votes.iter().filter(|v| matches!(v.answer, Ok(0))).count();
    if confirmed >= majority(total) {
        Some(true)
    } else if denied > total - majority(total) {
        Some(false)
    } else {
        None
    }
}

/// The holder that at least `need` instances report (the same lease id), if any.
pub(crate) fn agreed_holder<'a>(
    holders: impl IntoIterator<Item = &'a Holder>,
    need: usize,
) -> Option<&'a Holder> {
    let holders: Vec<&Holder> = holders.into_iter().collect();
    let same = |a: &Holder, b: &Holder| a.lease_id == b.lease_id && a.format == b.format;
    let agreed = holders
        .iter()
        .copied()
        .find(|candidate| holders.iter().filter(|h| same(h, candidate)).count() >= need)?;
    // The instances that agree may not all have been raised to the token yet: show the largest.
    holders
        .iter()
        .copied()
        .filter(|h| same(h, agreed))
        .max_by_key(|h| h.fencing_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(tokens: &[u64]) -> Grant {
        Grant::Granted {
            tokens: tokens.to_vec(),
            uptime: Some(100_000),
            longest: 0,
        }
    }

    const TTL: Duration = Duration::from_secs(10);

    fn vote(node: usize, grant: Grant) -> Vote<Grant> {
        Vote {
            node,
            answer: Ok(grant),
        }
    }

    #[test]
    fn majorities() {
        assert_eq!((majority(1), majority(3), majority(5)), (1, 2, 3));
        let tally = |granted, held, failed| Tally {
            granted,
            held,
            failed,
            ..Tally::default()
        };
        assert!(tally(2, 0, 0).decides(3));
        assert!(
            !tally(1, 1, 0).decides(3),
            "a split vote waits for the third"
        );
        assert!(tally(1, 1, 1).decides(3));
        // Held on one, one down, one still answering: its answer tells held from no quorum.
        assert!(!tally(0, 1, 1).decides(3));
        assert!(tally(0, 2, 1).decides(3));
        assert!(tally(0, 1, 2).decides(3));
    }

    /// A holder that acquired its lease `ago` before `now`.
    fn held_since(node: usize, now: SystemTime, ago: Duration) -> Vote<Grant> {
        let mut holder = Holder::queued(0);
        holder.acquired_at = Some(humantime::format_rfc3339_millis(now - ago).to_string());
        vote(
            node,
            Grant::Held {
                holder: Some(holder),
                counter: 1,
                lease: 0,
                longest: 0,
            },
        )
    }

    #[test]
    fn a_young_instance_counts_unless_it_may_have_forgotten_the_holder() {
        let now = SystemTime::now();
        let young = |node, uptime| {
            let grant = Grant::Granted {
                tokens: vec![7],
                uptime: Some(uptime),
                longest: 0,
            };
            vote(node, grant)
        };
        // Restarted 5 s ago, and the lease was taken 60 s ago, granted by it and the holder's
        // instance: with the third, free, it must not make a majority.
        let forgot = [
            held_since(0, now, secs(60)),
            young(1, 5),
            vote(2, granted(&[7])),
        ];
        let tally = Tally::at(&forgot, TTL, now);
        assert_eq!((tally.counted(), tally.voided, tally.held), (1, 1, 1));
        assert!(tally.decides(3) && tally.any_written());
        // Taken 1 s ago, after the young instance started: it cannot have granted and lost it.
        let later = [
            held_since(0, now, secs(1)),
            young(1, 5),
            vote(2, granted(&[7])),
        ];
        assert_eq!(Tally::at(&later, TTL, now).counted(), 2);
        // Taken 50 ms before an instance that restarted just now: it may have granted it.
        let just_before = [
            held_since(0, now, Duration::from_millis(50)),
            young(1, 0),
            vote(2, granted(&[7])),
        ];
        assert_eq!(Tally::at(&just_before, TTL, now).counted(), 1);
        // A holder whose start is unknown voids it too.
        let unknown = vote(
            0,
            Grant::Held {
                holder: None,
                counter: 1,
                lease: 0,
                longest: 0,
            },
        );
        let unknown = [unknown, young(1, 5), vote(2, granted(&[7]))];
        assert_eq!(Tally::at(&unknown, TTL, now).counted(), 1);
        // Young grants wait for every answer, since a later one may void them.
        let waiting = Tally::at(&[young(1, 5), vote(2, granted(&[7]))], TTL, now);
        assert_eq!(waiting.counted(), 2);
        assert!(!waiting.decides(3));
        let free = Tally::at(
            &[young(0, 0), young(1, 5), vote(2, granted(&[7]))],
            TTL,
            now,
        );
        assert!(free.decides(3) && free.counted() == 3);
        assert!(Tally::at(&[vote(1, granted(&[7])), vote(2, granted(&[7]))], TTL, now).decides(3));
    }

    #[test]
    fn silence_is_not_agreement_and_the_longest_ttl_decides_who_is_young() {
        let now = SystemTime::now();
        let young = |node, uptime| {
            vote(
                node,
                Grant::Granted {
                    tokens: vec![7],
                    uptime: Some(uptime),
                    longest: 0,
                },
            )
        };
        let timed_out = Vote {
            node: 0,
            answer: Err(crate::Error::Timeout {
                endpoint: "127.0.0.1:7001".into(),
                after: secs(5),
            }),
        };
        // The instance that may hold the lease did not answer: the young grant does not count.
        let silent = [timed_out, young(1, 3), vote(2, granted(&[7]))];
        let tally = Tally::at(&silent, TTL, now);
        assert_eq!((tally.counted(), tally.voided, tally.failed), (1, 1, 1));
        assert!(tally.decides(3));
        // Up 3 s is old for a 1 s TTL, unless an instance remembers the lease held for 30 s.
        let short = Duration::from_secs(1);
        let held_long = vote(
            0,
            Grant::Held {
                holder: None,
                counter: 1,
                lease: 0,
                longest: 30_000,
            },
        );
        let forgot = [held_long, young(1, 3), vote(2, granted(&[7]))];
        assert_eq!(Tally::at(&forgot, short, now).counted(), 1);
        let plain_held = vote(
            0,
            Grant::Held {
                holder: None,
                counter: 1,
                lease: 0,
                longest: 1_000,
            },
        );
        let old = [plain_held, young(1, 3), vote(2, granted(&[7]))];
        assert_eq!(Tally::at(&old, short, now).counted(), 2);
        assert!(!is_young(None, secs(60)), "without INFO an instance is old");
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn the_token_is_the_largest_count_and_lower_counters_are_behind() {
        // The sequence: A=0, B=C=5; then {A, C} grant with 1 and 6.
        let votes = vec![vote(0, granted(&[1])), vote(2, granted(&[6]))];
        assert_eq!(token_of(&votes, 0), (6, 1));
        assert_eq!(behind(&votes, 6, 0), vec![0]);
        let held = vec![vote(
            1,
            Grant::Held {
                holder: None,
                counter: 5,
                lease: 0,
                longest: 0,
            },
        )];
        assert_eq!(behind(&held, 6, 0), vec![1]);
        assert_eq!(behind(&held, 2, 0), Vec::<usize>::new());
        // A set: the answer shows only the counter of the lease that was held there.
        assert_eq!(
            behind(&held, 2, 1),
            vec![1],
            "unknown counters may be behind"
        );
        let set = vec![vote(0, granted(&[3, 9])), vote(1, granted(&[3, 7]))];
        assert_eq!((token_of(&set, 0), token_of(&set, 1)), ((3, 2), (9, 1)));
        assert_eq!(behind(&set, 9, 1), vec![1]);
        let failed = vec![Vote {
            node: 2,
            answer: Err(crate::Error::Timeout {
                endpoint: "127.0.0.1:7003".into(),
                after: std::time::Duration::from_secs(5),
            }),
        }];
        assert_eq!(
            behind(&failed, 6, 0),
            vec![2],
            "a failed instance may be behind"
        );
    }

    #[test]
    fn extensions_need_a_majority() {
        let ok = |node, n| Vote {
            node,
            answer: Ok(n),
        };
        assert_eq!(extension(&[ok(0, 1), ok(1, 1)], 3), Some(true));
        assert_eq!(extension(&[ok(0, 0), ok(1, 0)], 3), Some(false));
        assert_eq!(extension(&[ok(0, 1), ok(1, 0)], 3), None);
        assert_eq!(extension(&[ok(0, 0)], 1), Some(false));
    }
}
