//! What one deployment's run came to: its figures and the checker's findings, as the summary
//! the long run prints.

use super::*;

/// The outcome of one deployment's run.
pub struct Report {
    pub(super) deployment: String,
    pub(super) seed: u64,
    pub(super) library: u64,
    pub(super) exec: u64,
    pub(super) faults: faults::Counts,
    pub(super) long_holds_released: u64,
    pub(super) exec_outcomes: BTreeMap<String, u64>,
    pub(super) errors: u64,
    pub(super) keys_left: Vec<String>,
    pub(super) findings: Findings,
    pub(super) wall: Duration,
}

impl Report {
    pub(super) fn failures(&self) -> usize {
        self.findings.violations() + self.keys_left.len()
    }

    pub(super) fn merge(reports: &[Report]) -> Report {
        let mut total = Report {
            deployment: "all".into(),
            seed: reports.first().map_or(0, |r| r.seed),
            library: 0,
            exec: 0,
            faults: BTreeMap::new(),
            long_holds_released: 0,
            exec_outcomes: BTreeMap::new(),
            errors: 0,
            keys_left: Vec::new(),
            findings: Findings::default(),
            wall: Duration::ZERO,
        };
        for report in reports {
            total.library += report.library;
            total.exec += report.exec;
            for (kind, count) in &report.faults {
                *total.faults.entry(*kind).or_default() += count;
            }
            for (outcome, count) in &report.exec_outcomes {
                *total.exec_outcomes.entry(outcome.clone()).or_default() += count;
            }
            total.errors += report.errors;
            total.long_holds_released += report.long_holds_released;
            total.keys_left.extend(report.keys_left.iter().cloned());
            total.findings.merge(&report.findings);
            total.wall = total.wall.max(report.wall);
        }
        total
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let found = &self.findings;
        writeln!(
            f,
            "torture summary: {} (seed {}, {:.1} s)",
            self.deployment,
            self.seed,
            self.wall.as_secs_f64()
        )?;
        writeln!(
            f,
            "  acquisitions             {} ({} library, {} exec)",
            self.library + self.exec,
            self.library,
            self.exec
        )?;
        for (kind, count) in &self.faults {
            write!(f, "  fault: {:<33} {count}", kind.name())?;
            if *kind == Fault::ForceRelease {
                write!(
                    f,
                    " ({} of a library holder in a long hold)",
                    self.long_holds_released
                )?;
            }
            writeln!(f)?;
        }
        for (hit, count) in &found.hits {
            writeln!(f, "  holders {hit:<32} {count}")?;
        }
        writeln!(f, "  overlaps found           {}", found.overlaps)?;
        writeln!(
            f,
            "    of which after a quorum restart {}",
            found.after_restart
        )?;
        writeln!(
            f,
            "  overlaps with writes of both accepted {} (the earlier holder wrote after the later \
             one began, before its first write)",
            found.accepted_overlaps
        )?;
        writeln!(f, "  stale writes accepted    {}", found.stale_accepted)?;
        writeln!(
            f,
            "  stale writes refused     {} ({} after a takeover the checker saw)",
            found.refused, found.refused_taken_over
        )?;
        writeln!(
            f,
            "  writes accepted          {} ({} failed on a connection)",
            found.accepted, found.failed
        )?;
        writeln!(f, "  leases lost              {}", found.lost)?;
        if found.across_failover > 0 {
            writeln!(
                f,
                "  lost in a failover       {} of {} library holders across one",
                found.lost_in_failover, found.across_failover
            )?;
        }
        let margin = |margin: Option<i64>, count: usize| match margin {
            Some(margin) => format!("{} ms ({count} measured)", ms(margin)),
            None => "none measured".into(),
        };
        writeln!(
            f,
            "  smallest loss margin     {} library, {} exec",
            margin(found.smallest_margin, found.margins),
            margin(found.smallest_exec_margin, found.exec_margins)
        )?;
        writeln!(
            f,
            "  lost signal seen late by at most {} ms (library tasks, after the validity ended)",
            ms(found.slowest_signal as i64)
        )?;
        writeln!(f, "  late loss signals        {}", found.late_losses)?;
        writeln!(
            f,
            "  renewed after deletion   {} (of {} holders that went on for a renewal)",
            found.renewed_after_deletion, found.outlived_deletions
        )?;
        writeln!(f, "  keys left behind        {}", self.keys_left.len())?;
        writeln!(f, "  library acquire errors   {}", self.errors)?;
        let outcomes: Vec<String> = self
            .exec_outcomes
            .iter()
            .map(|(outcome, count)| format!("{outcome}: {count}"))
            .collect();
        writeln!(f, "  leasectl exec outcomes   {}", outcomes.join(", "))?;
        for example in found.examples.iter().chain(&self.keys_left) {
            writeln!(f, "  ! {example}")?;
        }
        Ok(())
    }
}
