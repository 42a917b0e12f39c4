//! The faults that hit a holder rather than a server: kill or stop an `exec` in its critical
//! section, slow a library holder's renewals until it loses its lease, force-release a lease.

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgid, Pid};

use super::checker::Deletion;
use super::faults::*;
use super::history::now;
use super::*;
use crate::support::Leasectl;

/// Hits a holder: an `exec` in its critical section (kill, stop), a library competitor in a
/// long hold (slowed renewal), or either (forced release). `None` when there is none right now.
pub(super) fn hit_holder(
    ctx: &Ctx,
    deployment: &Deployment,
    kind: Fault,
    rng: &mut fastrand::Rng,
) -> Option<Vec<(u64, Undo)>> {
    let ttl = ctx.config.ttl;
    let library_holding = |long_only: bool| -> Vec<(usize, String)> {
        (0..ctx.holding.len())
            .filter_map(|c| {
                let held = ctx.holding[c].lock().unwrap();
                let held = held.as_ref().filter(|h| h.long || !long_only)?;
                Some((c, held.name.clone()))
            })
            .collect()
    };
    if kind == Fault::SlowRenewal {
        let long: Vec<usize> = library_holding(true).into_iter().map(|(c, _)| c).collect();
        let client = *long.get(rng.usize(..long.len().max(1)))?;
        let group = client + 1;
        for proxy in &deployment.proxies[group] {
            proxy.set_latency(ttl * 2);
        }
        let targets = (0..deployment.instances()).map(|i| (group, i)).collect();
        return Some(vec![(
            now() + 3 * ttl.as_nanos() as u64,
            Undo::Latency(targets),
        )]);
    }
    let mut execs = ctx.execs.lock().unwrap();
    let holding: Vec<(u32, u32, String)> = execs
        .iter()
        .filter(|(_, running)| running.hit.is_none())
        .filter_map(|(pid, running)| {
            let (child, name) = running.holding_child()?;
            Some((*pid, child, name))
        })
        .collect();
    if kind == Fault::ForceRelease {
        drop(execs);
        // A library holder in a long hold has renewals to come, which must all fail now:
        // such holders first.
        let mut names: Vec<String> = library_holding(true).into_iter().map(|(_, n)| n).collect();
        let long = !names.is_empty();
        if !long {
            names = holding.into_iter().map(|(_, _, name)| name).collect();
            names.extend(library_holding(false).into_iter().map(|(_, name)| name));
        }
        let name = names.get(rng.usize(..names.len().max(1)))?;
        let released = force_release(ctx, deployment, name);
        if released && long {
            ctx.long_holds_released
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        return released.then(Vec::new);
    }
    let (pid, child, _) = holding.get(rng.usize(..holding.len().max(1)))?.clone();
    let running = execs.get_mut(&pid).expect("listed");
    let at = now();
    match kind {
        Fault::Kill => {
            running.hit = Some((at, Hit::Killed));
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            Some(Vec::new())
        }
        Fault::Stop | Fault::FenceRestart => {
            running.hit = Some((at, Hit::Frozen));
            // The child runs in a process group of its own (with what it starts): both groups.
            let child_group = getpgid(Some(Pid::from_raw(child as i32))).ok();
            if let Some(group) = child_group {
                let _ = killpg(group, Signal::SIGSTOP);
            }
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGSTOP);
            // The child wakes a moment before `leasectl`, as a worker that goes on before its
            // supervisor sees the loss: its next write is late, and the fence must refuse it.
            let wake = at + scaled(ttl, rng, 130, 200);
            let mut undo = vec![(wake, Undo::Continue(child))];
            if let Some(group) = child_group {
                undo.push((
                    wake + 30_000_000,
                    Undo::ContinueGroup(group.as_raw() as u32),
                ));
            }
            undo.push((wake + 30_000_000, Undo::ContinueGroup(pid)));
            if kind == Fault::FenceRestart {
                // By then the next holder has usually written: the fence's first instance
                // forgets that write's token, and must not let the late write through.
                undo.push((wake - scaled(ttl, rng, 5, 15), Undo::Restart(0)));
            }
            Some(undo)
        }
        _ => unreachable!("{kind:?} hits no holder"),
    }
}

/// `leasectl release NAME --force --yes` straight to the servers (past the proxies); answers
/// whether it released a lease.
pub(super) fn force_release(ctx: &Ctx, deployment: &Deployment, name: &str) -> bool {
    let urls = deployment.direct_urls();
    let leasectl = Leasectl::new();
    let mut command = leasectl.command();
    for url in urls {
        command.arg("--endpoint").arg(url);
    }
    let timeout = ctx.config.timeout().as_millis().to_string();
    command
        .env("RedisLeasing__SyncTimeout", &timeout)
        .envs(ctx.leasectl_env.iter().map(|(k, v)| (k, v)))
        .args(["release", name, "--force", "--yes"])
        .stderr(std::process::Stdio::null());
    let from = now();
    // Exit 0 is also "not held; nothing to release": only a deletion counts as one.
    let released = command.output().is_ok_and(|output| {
        output.status.success() && output.stdout.starts_with(b"Force-released")
    });
    if released {
        ctx.deletions.lock().unwrap().push(Deletion {
            from,
            to: now(),
            name: Some(name.to_string()),
            what: "forced release",
            certain: true,
        });
    }
    released
}
