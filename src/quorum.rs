//! How the instances' answers become one answer: a majority for or against an acquire or an
//! extension, the fencing token a majority stands at, and the majority's view of who holds a
//! lease. Single mode is the case of one instance, whose majority is itself.

use redis::Value;

use crate::holder::Holder;
use crate::nodes::Vote;

/// How many of `total` instances make a majority.
pub(crate) fn majority(total: usize) -> usize {
    total / 2 + 1
}

/// One instance's answer to the acquire script (for one lease, or a set taken together).
pub(crate) enum Grant {
    /// Taken here, with this instance's count of each lease as its token.
    Granted(Vec<u64>),
    /// Lease `lease` (its index in the set) is held here by someone else (`None`: the key
    /// vanished between the check and the read), with this instance's counter of it.
    Held {
        holder: Option<Holder>,
        counter: u64,
        lease: usize,
    },
}

impl Grant {
    /// Reads `{1, token...}`, `{0, {type, pttl, fields}, counter, i}` or
    /// `{2, waiters, counter, i}` (`i` counts from 1).
    pub(crate) fn parse(reply: &Value) -> Option<Grant> {
        let Value::Array(parts) = reply else {
            return None;
        };
        let lease = match parts.get(3) {
            Some(Value::Int(i)) if *i >= 1 => *i as usize - 1,
            _ => 0,
        };
        match (parts.first(), parts.get(1), parts.get(2)) {
            (Some(Value::Int(1)), Some(Value::Int(_)), _) => {
                let tokens = parts[1..].iter().map(|part| match part {
                    Value::Int(token) => Some(*token as u64),
                    _ => None,
                });
                tokens.collect::<Option<Vec<u64>>>().map(Grant::Granted)
            }
            (Some(Value::Int(0)), Some(holder), Some(Value::Int(counter))) => Some(Grant::Held {
                holder: Holder::from_reply(holder),
                counter: *counter as u64,
                lease,
            }),
            // Free, but promised to the first of the queued waiters.
            (Some(Value::Int(2)), Some(Value::Int(waiters)), Some(Value::Int(counter))) => {
                Some(Grant::Held {
                    holder: Some(Holder::queued(*waiters as u64)),
                    counter: *counter as u64,
                    lease,
                })
            }
            _ => None,
        }
    }

    fn token(&self, lease: usize) -> Option<u64> {
        match self {
            Grant::Granted(tokens) => tokens.get(lease).copied(),
            Grant::Held { .. } => None,
        }
    }

    /// The instance's counter of lease `lease` as this answer shows it (`None`: not shown).
    fn counter(&self, lease: usize) -> Option<u64> {
        match self {
            Grant::Granted(tokens) => tokens.get(lease).copied(),
            Grant::Held {
                counter,
                lease: held,
                ..
            } if *held == lease => Some(*counter),
            Grant::Held { .. } => None,
        }
    }
}

/// What the acquire votes add up to.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    pub(crate) granted: usize,
    pub(crate) held: usize,
    pub(crate) failed: usize,
}

impl Tally {
    pub(crate) fn of(votes: &[Vote<Grant>]) -> Tally {
        let mut tally = Tally::default();
        for vote in votes {
            match &vote.answer {
                Ok(Grant::Granted(_)) => tally.granted += 1,
                Ok(Grant::Held { .. }) => tally.held += 1,
                Err(_) => tally.failed += 1,
            }
        }
        tally
    }

    /// True once the outcome is known: a majority granted; or so many refused or failed that
    /// none can, and also either a majority answered (held by someone else) or so many failed
    /// that no majority can answer (no quorum). Stopping as soon as no grant is possible would
    /// call "no quorum" a lease that the instances still answering hold.
    pub(crate) fn decides(&self, total: usize) -> bool {
        let majority = majority(total);
        let none_can_grant = self.held + self.failed > total - majority;
        let answered = self.granted + self.held >= majority;
        let none_can_answer = self.failed > total - majority;
        self.granted >= majority || (none_can_grant && (answered || none_can_answer))
    }
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

    fn vote(node: usize, grant: Grant) -> Vote<Grant> {
        Vote {
            node,
            answer: Ok(grant),
        }
    }

    #[test]
    fn majorities() {
        assert_eq!((majority(1), majority(3), majority(5)), (1, 2, 3));
        let two_of_three = Tally {
            granted: 2,
            held: 0,
            failed: 0,
        };
        assert!(two_of_three.decides(3));
        let split = Tally {
            granted: 1,
            held: 1,
            failed: 0,
        };
        assert!(!split.decides(3));
        assert!(Tally {
            granted: 1,
            held: 1,
            failed: 1
        }
        .decides(3));
        // Held on one, one down, one still answering: its answer tells held from no quorum.
        let held_and_down = Tally {
            granted: 0,
            held: 1,
            failed: 1,
        };
        assert!(!held_and_down.decides(3));
        assert!(Tally {
            held: 2,
            ..held_and_down
        }
        .decides(3));
        assert!(Tally {
            failed: 2,
            ..held_and_down
        }
        .decides(3));
    }

    #[test]
    fn the_token_is_the_largest_count_and_lower_counters_are_behind() {
        // The sequence: A=0, B=C=5; then {A, C} grant with 1 and 6.
        let votes = vec![
            vote(0, Grant::Granted(vec![1])),
            vote(2, Grant::Granted(vec![6])),
        ];
        assert_eq!(token_of(&votes, 0), (6, 1));
        assert_eq!(behind(&votes, 6, 0), vec![0]);
        let held = vec![vote(
            1,
            Grant::Held {
                holder: None,
                counter: 5,
                lease: 0,
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
        let set = vec![
            vote(0, Grant::Granted(vec![3, 9])),
            vote(1, Grant::Granted(vec![3, 7])),
        ];
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
