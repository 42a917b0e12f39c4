//! S5: many leases held and renewed by one process — what a renewal costs in CPU and a lease
//! in memory, read from the process's own `/proc` and `getrusage`.

use std::time::Duration;

use leasectl::{Acquire, LeaseClient};
use tokio::time::Instant;

use super::{options, report, round, Figures, Renewal, Report};
use crate::cli::BenchArgs;

/// S5: `leases` leases held and renewed automatically for the window: CPU per renewal,
/// memory per lease (the most the process held from the first acquisition to the end of the
/// window), leases whose renewal came too late (lost).
pub(super) async fn renewal_at_scale(
    client: &LeaseClient,
    args: &BenchArgs,
) -> anyhow::Result<Report> {
    let mut options = options(args, client);
    options.auto_renew = Some(args.ttl / 3);
    // The peak from here on: Linux resets the process's high-water mark on "5".
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = rss_bytes();
    let mut leases = Vec::with_capacity(args.leases as usize);
    let names: Vec<String> = (0..args.leases)
        .map(|i| format!("bench:S5:{}:{i}", std::process::id()))
        .collect();
    for chunk in names.chunks(500) {
        let takes = chunk.iter().map(|name| client.try_acquire(name, &options));
        for outcome in futures_util::future::join_all(takes).await {
            if let Acquire::Acquired(lease) = outcome? {
                leases.push(lease);
            }
        }
    }
    let rss_acquired = rss_bytes();
    // Only the window's renewals count (some came while the last leases were taken).
    let renewed_before: u64 = leases.iter().map(|l| l.renewals()).sum();
    let cpu_before = cpu_time()?;
    let started = Instant::now();
    tokio::time::sleep(args.duration).await;
    let cpu = cpu_time()?.saturating_sub(cpu_before);
    let elapsed = started.elapsed();
    let rss = rss_acquired.max(rss_bytes()).max(peak_rss_bytes());
    let rss_per_lease = rss.saturating_sub(rss_before) / leases.len().max(1) as u64;
    let renewals = leases.iter().map(|l| l.renewals()).sum::<u64>() - renewed_before;
    let lost = leases.iter().filter(|l| l.lost_error().is_some()).count() as u64;
    let mut leases = leases.into_iter();
    while leases.len() > 0 {
        let releases = leases.by_ref().take(500).map(|lease| lease.release());
        futures_util::future::join_all(releases).await;
    }
    let figures = Figures {
        renewal: Some(Renewal {
            cpu_us_per_renewal: (renewals > 0)
                .then(|| round(cpu.as_secs_f64() * 1e6 / renewals as f64)),
            rss_bytes_per_lease: rss_per_lease,
            late_renewals: lost,
        }),
        ..Figures::default()
    };
    Ok(report("S5", client, &mut Vec::new(), elapsed, lost, figures).with_ops(renewals, elapsed))
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The most the process has held (`VmHWM`), 0 when unknown.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        });
    kib.unwrap_or(0) * 1024
}

fn cpu_time() -> anyhow::Result<Duration> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)?;
    let micros = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    Ok(Duration::from_micros(
        micros(usage.user_time()) + micros(usage.system_time()),
    ))
}
