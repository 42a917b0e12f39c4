//! What the torture's holders record: each critical section on the host's monotonic clock
//! (`CLOCK_MONOTONIC`, shared by every process on this machine, so the test, `leasectl exec`
//! children and library tasks are on one time line), its lease id and fencing token, and every
//! fenced write with its outcome. `exec` children write theirs to a file, one line per event.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

/// Nanoseconds on `CLOCK_MONOTONIC`.
pub fn now() -> u64 {
    let mut time = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_MONOTONIC, &mut time) };
    time.tv_sec as u64 * 1_000_000_000 + time.tv_nsec as u64
}

/// `instant` (tokio's monotonic clock, which is `CLOCK_MONOTONIC` on Linux) in [`now`]'s
/// nanoseconds. The two clocks are read back to back; a pair that a preemption split by more
/// than 0.2 ms is read again, so the error stays below that.
pub fn mono_of(instant: tokio::time::Instant) -> u64 {
    let (then, here) = loop {
        let before = now();
        let then = tokio::time::Instant::now();
        let after = now();
        if after - before < 200_000 {
            break (then, before);
        }
    };
    if instant >= then {
        here + (instant - then).as_nanos() as u64
    } else {
        here.saturating_sub((then - instant).as_nanos() as u64)
    }
}

/// Who held a section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// Library competitor number N, in the test process.
    Library(usize),
    /// A `leasectl exec` process (its pid) and its child.
    Exec(u32),
}

/// What the protected resource answered to a fenced write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Written,
    Stale,
    /// The write failed (connection error): its effect is unknown, so it is in no check.
    Failed,
}

#[derive(Clone, Debug)]
pub struct Write {
    pub sent: u64,
    pub answered: u64,
    pub outcome: Outcome,
}

/// A fault that ended a holder's part in the history early: from then on it is no longer
/// trusted to hold the lease (the fence must stop it instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hit {
    /// SIGKILL of its `leasectl exec`.
    Killed,
    /// SIGSTOP of its `leasectl exec` and child, past the TTL.
    Frozen,
    /// Its key deleted: its single Redis restarted with empty memory, or an operator
    /// force-released it (the checker finds these from the run's deletions).
    Deleted,
}

/// One holder's critical section.
#[derive(Clone, Debug)]
pub struct Section {
    pub name: String,
    pub holder: Holder,
    pub lease_id: String,
    pub token: u64,
    /// When its holder asked for the lease: the lease is surely not older.
    pub asked: u64,
    pub start: u64,
    /// When it stopped working of its own accord (`None`: killed, or stopped by its loss).
    pub end: Option<u64>,
    /// When the lease's loss took effect for its holder: for a library holder the end of the
    /// validity the library computed (its lost signal fires then; or the signal, if it came
    /// earlier), for `exec` when its child got SIGTERM.
    pub lost: Option<u64>,
    /// Library holders: when the task saw the lost signal.
    pub lost_seen: Option<u64>,
    pub writes: Vec<Write>,
    /// Library holders: `(seen at, valid until, renewals so far)` of the lease, read while
    /// holding.
    pub validity: Vec<(u64, u64, u64)>,
    /// A fault that hit this holder, and when.
    pub hit: Option<(u64, Hit)>,
    /// Its lease's TTL in nanoseconds, when not the run's (competitors differ).
    pub ttl: Option<u64>,
}

impl Section {
    /// A section that started at `start` (asked for then too, until known better), with
    /// nothing recorded yet.
    pub fn new(name: &str, holder: Holder, lease_id: &str, token: u64, start: u64) -> Section {
        Section {
            name: name.to_string(),
            holder,
            lease_id: lease_id.to_string(),
            token,
            asked: start,
            start,
            end: None,
            lost: None,
            lost_seen: None,
            writes: Vec::new(),
            validity: Vec::new(),
            hit: None,
            ttl: None,
        }
    }

    /// The last instant the holder is trusted to have held the lease alone: its end, its loss,
    /// or the fault that hit it, whichever came first.
    pub fn trusted_until(&self) -> u64 {
        [self.end, self.lost, self.hit.map(|(at, _)| at)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(u64::MAX)
    }

    /// The section as a record file's lines (for the test of the format).
    pub fn to_record(&self) -> String {
        let mut text = format!(
            "start {} {} {} {}\n",
            self.start, self.name, self.lease_id, self.token
        );
        for write in &self.writes {
            let _ = writeln!(
                text,
                "write {} {} {}",
                write.sent,
                write.answered,
                outcome_letter(write.outcome)
            );
        }
        if let Some(lost) = self.lost {
            let _ = writeln!(text, "term {lost}");
        }
        if let Some(end) = self.end {
            let _ = writeln!(text, "end {end}");
        }
        text
    }
}

pub fn outcome_letter(outcome: Outcome) -> char {
    match outcome {
        Outcome::Written => 'W',
        Outcome::Stale => 'S',
        Outcome::Failed => 'F',
    }
}

/// Appends one whole line to an `exec` child's record (one `write` call: a kill cannot leave
/// half a line).
pub fn append(file: &mut std::fs::File, line: std::fmt::Arguments<'_>) {
    let mut text = String::new();
    let _ = text.write_fmt(line);
    text.push('\n');
    let _ = file.write_all(text.as_bytes());
}

/// Reads an `exec` child's record: `None` when the child never started working.
pub fn read_record(path: &Path, holder: Holder) -> Option<Section> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_record(&text, holder)
}

pub fn parse_record(text: &str, holder: Holder) -> Option<Section> {
    let mut section: Option<Section> = None;
    // Only whole lines: the last one may be cut short by a SIGKILL.
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        match (fields.first().copied(), section.as_mut()) {
            (Some("start"), None) => {
                section = Some(Section::new(
                    fields.get(2)?,
                    holder.clone(),
                    fields.get(3)?,
                    number(4)?,
                    number(1)?,
                ))
            }
            (Some("write"), Some(section)) => section.writes.push(Write {
                sent: number(1)?,
                answered: number(2)?,
                outcome: match fields.get(3).copied() {
                    Some("W") => Outcome::Written,
                    Some("S") => Outcome::Stale,
                    _ => Outcome::Failed,
                },
            }),
            (Some("term"), Some(section)) => section.lost = number(1),
            (Some("end"), Some(section)) => section.end = number(1),
            _ => return None,
        }
    }
    section
}

#[test]
fn a_record_reads_back_and_a_torn_last_line_is_ignored() {
    let mut section = Section::new("a", Holder::Exec(7), "id-1", 42, 10);
    section.end = Some(90);
    section.lost = Some(80);
    section.writes.push(Write {
        sent: 20,
        answered: 30,
        outcome: Outcome::Stale,
    });
    let text = section.to_record();
    let back = parse_record(&text, Holder::Exec(7)).unwrap();
    assert_eq!((back.token, back.end, back.lost), (42, Some(90), Some(80)));
    assert_eq!(back.writes[0].outcome, Outcome::Stale);
    let torn = parse_record("start 1 a id 3\nwrite 2 3 W\nwrite 4", Holder::Exec(1)).unwrap();
    assert_eq!(torn.writes.len(), 1);
}
