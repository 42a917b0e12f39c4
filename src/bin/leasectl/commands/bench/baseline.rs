//! What `redis-benchmark` does against the same server in the same run: the limits the
//! scenarios are compared with.

use anyhow::Context;
use leasectl::Settings;
use serde::Serialize;

/// `redis-benchmark`'s figures against the first endpoint, measured in the same run.
#[derive(Serialize)]
pub(super) struct Baseline {
    pub(super) scenario: &'static str,
    pub(super) tool: &'static str,
    pub(super) figures: BaselineFigures,
}

#[derive(Serialize)]
pub(super) struct BaselineFigures {
    pub(super) ping_c1_per_s: f64,
    pub(super) ping_c50_per_s: f64,
    pub(super) evalsha_pipelined_per_s: f64,
}

/// `redis-benchmark`'s PING (multibulk) requests per second at 1 and 50 clients, against the
/// first endpoint, measured now.
pub(super) async fn redis_benchmark(settings: &Settings) -> anyhow::Result<Baseline> {
    // The pipelined EVALSHA limit: the cheapest script, 50 clients, 16 requests in flight each.
    let evalsha = ["-P", "16", "EVALSHA", RETURN_1_SHA, "0"];
    redis_benchmark_once(settings, &["SCRIPT", "LOAD", "return 1"], 1, 1).await?;
    let figures = BaselineFigures {
        ping_c1_per_s: redis_benchmark_once(settings, &["PING"], 1, 50_000).await?,
        ping_c50_per_s: redis_benchmark_once(settings, &["PING"], 50, 200_000).await?,
        evalsha_pipelined_per_s: redis_benchmark_once(settings, &evalsha, 50, 1_000_000).await?,
    };
    Ok(Baseline {
        scenario: "baseline",
        tool: "redis-benchmark",
        figures,
    })
}

/// The SHA1 of the script `return 1`.
const RETURN_1_SHA: &str = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db";

/// Runs `redis-benchmark` for one command against the first endpoint: requests per second.
pub(super) async fn redis_benchmark_once(
    settings: &Settings,
    command_line: &[&str],
    clients: u32,
    requests: u32,
) -> anyhow::Result<f64> {
    let endpoint = &settings.endpoints[0];
    let mut command = tokio::process::Command::new("redis-benchmark");
    command.args([
        "-h",
        &endpoint.host,
        "-p",
        &endpoint.port.to_string(),
        "--csv",
    ]);
    command.args(["-c", &clients.to_string(), "-n", &requests.to_string()]);
    if let Some(password) = endpoint.password() {
        command.env("REDISCLI_AUTH", password);
    }
    if endpoint.tls {
        command.arg("--tls");
    }
    command.args(command_line);
    let output = command
        .output()
        .await
        .context("running redis-benchmark (install redis-tools)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    // The CSV has a header line, then one line per command: "NAME","RPS",...
    text.lines()
        .filter(|line| !line.starts_with("\"test\""))
        .find_map(|line| line.split(',').nth(1))
        .and_then(|field| field.trim_matches('"').parse::<f64>().ok())
        .with_context(|| {
            format!(
                "redis-benchmark printed no figure for {}",
                command_line.join(" ")
            )
        })
}
