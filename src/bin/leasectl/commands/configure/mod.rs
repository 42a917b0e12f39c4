//! `leasectl configure`: the first-run wizard. Asks the authentication mode, then only what
//! that mode needs; tests the answers (PING and a test lease) before saving; writes
//! `appsettings.Local.json` atomically with mode 0600 and keeps it out of git. Every question
//! has a flag, so it also runs with no terminal.
//!
//! The prompts (dialoguer) block the thread; that is fine here: nothing else runs meanwhile.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use colored::Colorize;
use dialoguer::theme::{ColorfulTheme, Theme};
use dialoguer::{Confirm, Input, Password, Select};
use leasectl::settings::{Section, LOCAL_DEFAULT, LOCAL_FILE};
use leasectl::{mask_password, Acquire, LeaseClient, LeaseOptions, Settings};
use nix::sys::termios::{tcgetattr, tcsetattr, SetArg, Termios};

mod azure;
mod file;

use file::{ignore_in_git, keep_going_over, write_atomically};

use super::Interrupts;
use crate::cli::{AuthMode, ConfigureArgs, Global};
use crate::output::{errln, exit, outln, Printer, UsageError};

/// The lease the connection test takes and releases.
const TEST_LEASE: &str = "leasectl-configure-test";

/// The Entra ID credential offered first, and taken when `--credential` is not given.
const DEFAULT_CREDENTIAL: &str = "Default";

/// The answers, as they will be written.
#[derive(Clone, Debug)]
struct Answers {
    mode: AuthMode,
    /// Connection strings or URLs; several mean quorum mode. For Entra ID: `host:port`.
    endpoints: Vec<String>,
    /// `Default`, `ManagedIdentity`, `AzureCli` or `ServicePrincipal` (Entra ID only).
    credential: Option<String>,
    client_id: Option<String>,
    key_prefix: String,
    database: i64,
}

impl Answers {
    /// The file's JSON; `masked` hides passwords (for showing it).
    fn to_json(&self, masked: bool) -> serde_json::Value {
        let shown = |s: &String| if masked { mask_password(s) } else { s.clone() };
        let mut section = Section {
            key_prefix: Some(self.key_prefix.clone()),
            database: Some(self.database),
            ..Section::default()
        };
        match (self.mode, self.endpoints.as_slice()) {
            (AuthMode::EntraId, [endpoint, ..]) => {
                section.endpoint = Some(shown(endpoint));
                section.entra_id =
                    Some(self.credential.clone().unwrap_or(DEFAULT_CREDENTIAL.into()));
                section.client_id = self.client_id.clone();
            }
            (_, [one]) => section.connection_string = Some(shown(one)),
            (_, many) => section.endpoints = many.iter().map(shown).collect(),
        }
        section.to_file_json()
    }
}

/// Runs the wizard (or its flag-only form). Answers the exit code.
pub async fn run(
    args: ConfigureArgs,
    global: &Global,
    printer: &Printer,
    show_next: bool,
) -> anyhow::Result<ExitCode> {
    let path = global
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(LOCAL_FILE));
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let outcome = guarded(configure(&args, global, &path, interactive)).await;
    match outcome {
        Err(error) => Err(error),
        Ok(None) => {
            printer.note("nothing was written");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Some(answers)) => {
            outln!("{} {}", "Saved".green().bold(), path.display())?;
            outln!("{}", serde_json::to_string_pretty(&answers.to_json(true))?)?;
            if show_next {
                outln!("\nNext: leasectl run --instance us-east-1 --region us-east")?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Asks, tests and writes; answers what was saved, or `None` when the user kept the old file
/// or quit.
async fn configure(
    args: &ConfigureArgs,
    global: &Global,
    path: &Path,
    interactive: bool,
) -> anyhow::Result<Option<Answers>> {
    if path.exists() {
        let (path, yes) = (path.to_path_buf(), args.yes);
        if !blocking(move || keep_going_over(&path, yes, interactive)).await? {
            return Ok(None);
        }
    }
    let mut answers = if interactive {
        ask_blocking(args, global, None).await?
    } else {
        from_flags(args, global)?
    };
    loop {
        if args.no_test {
            break;
        }
        errln!("Testing the connection...");
        match test_connection(&answers).await {
            Ok(()) => {
                errln!("{} PING and a test lease worked", "✓".green());
                break;
            }
            Err(error) if !interactive => return Err(error.context(
                "the connection test failed; nothing was written (use --no-test to save anyway)",
            )),
            Err(error) => {
                errln!("{} {error:#}", "✗ The connection test failed:".red());
                let choice = blocking(|| {
                    Ok(Select::with_theme(&ColorfulTheme::default())
                        .with_prompt("What now?")
                        .items(["Edit the answers", "Save anyway", "Quit without saving"])
                        .default(0)
                        .interact()?)
                })
                .await?;
                match choice {
                    0 => answers = ask_blocking(args, global, Some(answers)).await?,
                    1 => break,
                    _ => return Ok(None),
                }
            }
        }
    }
    write_atomically(
        path,
        &serde_json::to_string_pretty(&answers.to_json(false))?,
    )?;
    ignore_in_git(path);
    Ok(Some(answers))
}

/// With no settings at all and a person at the terminal, offers the wizard before a command
/// that needs Redis. Answers whether it wrote settings.
pub async fn offer_first_run(global: &Global, printer: &Printer) -> anyhow::Result<bool> {
    if printer.quiet || !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Ok(false);
    }
    errln!("No Redis settings found (no appsettings.Local.json, RedisLeasing__* variables or --endpoint).");
    let wanted = guarded(blocking(|| {
        Ok(Confirm::with_theme(&ColorfulTheme::default())
            .with_prompt("Set up a connection now? (no: use the local Redis at 127.0.0.1:6379)")
            .default(true)
            .interact()?)
    }))
    .await?;
    if !wanted {
        return Ok(false);
    }
    let code = run(ConfigureArgs::default(), global, printer, false).await?;
    if code != ExitCode::SUCCESS {
        return Err(UsageError("configuration was not finished".into()).into());
    }
    let path = global
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(LOCAL_FILE));
    Ok(path.exists())
}

/// Runs `work` until it ends or Ctrl-C/SIGTERM comes. dialoguer leaves the terminal raw
/// (no echo, hidden cursor) when interrupted mid-prompt, so on a signal the terminal's
/// mode is restored before leaving; nothing is written by then (the file is written last,
/// atomically).
async fn guarded<T>(
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let saved = tcgetattr(std::io::stdin()).ok();
    let mut interrupts = Interrupts::install()?;
    tokio::select! {
        // A prompt may see the Ctrl-C key itself (and fail with `Interrupted`) before the signal.
        result = work => match result {
            Err(error) if is_interrupted(&error) => cancel(saved, exit::INTERRUPTED),
            other => other,
        },
        code = interrupts.recv() => cancel(saved, code),
    }
}

/// Restores the terminal, says nothing was written, and leaves with `code`. The prompt's
/// thread may still be blocked reading the terminal, so the process exits without it.
fn cancel(saved: Option<Termios>, code: u8) -> ! {
    if let Some(saved) = saved {
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &saved);
    }
    let _ = console_show_cursor();
    errln!("\nCancelled; nothing was written.");
    std::process::exit(i32::from(code));
}

fn is_interrupted(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let io = cause.downcast_ref::<std::io::Error>().or_else(|| {
            cause
                .downcast_ref::<dialoguer::Error>()
                .map(|dialoguer::Error::IO(io)| io)
        });
        io.is_some_and(|io| io.kind() == std::io::ErrorKind::Interrupted)
    })
}

/// Runs a blocking prompt off the async thread, so that `guarded` sees signals meanwhile.
async fn blocking<T: Send + 'static>(
    prompt: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(prompt).await?
}

async fn ask_blocking(
    args: &ConfigureArgs,
    global: &Global,
    previous: Option<Answers>,
) -> anyhow::Result<Answers> {
    let (args, global) = (args.clone(), global.clone());
    blocking(move || ask(&args, &global, previous.as_ref())).await
}

/// The questions, skipping those a flag answered; `previous` gives the defaults on a retry.
fn ask(
    args: &ConfigureArgs,
    global: &Global,
    previous: Option<&Answers>,
) -> anyhow::Result<Answers> {
    let theme = ColorfulTheme::default();
    let mode = match args.auth {
        Some(mode) if previous.is_none() => mode,
        _ => {
            let modes = [
                AuthMode::ConnectionString,
                AuthMode::EntraId,
                AuthMode::Local,
            ];
            let labels = [
                "Connection string with a password or access key",
                "Microsoft Entra ID (no password stored)",
                "Local Redis with no password",
            ];
            let default =
                previous.map_or(0, |p| modes.iter().position(|m| *m == p.mode).unwrap_or(0));
            modes[Select::with_theme(&theme)
                .with_prompt("How does leasectl authenticate to Redis?")
                .items(labels)
                .default(default)
                .interact()?]
        }
    };
    let previous_first = previous.and_then(|p| p.endpoints.first().cloned());
    let mut answers = Answers {
        mode,
        endpoints: Vec::new(),
        credential: None,
        client_id: None,
        key_prefix: String::new(),
        database: 0,
    };
    let first = match mode {
        AuthMode::ConnectionString => match (&args.connection_string, previous) {
            (Some(given), None) => given.clone(),
            _ => ask_connection_string(&theme, args, previous_first)?,
        },
        AuthMode::EntraId => {
            let given = match (global.endpoints.first(), previous) {
                (Some(given), None) => given.clone(),
                _ => text(
                    &theme,
                    "Azure cache name or host:port",
                    previous_first,
                    false,
                )?,
            };
            let endpoint = azure::expand_asking(&theme, &given, &azure_flags(args))?;
            let credentials = [
                DEFAULT_CREDENTIAL,
                "ManagedIdentity",
                "AzureCli",
                "ServicePrincipal",
            ];
            let chosen = Select::with_theme(&theme)
                .with_prompt("Which credential?")
                .items(credentials)
                .default(0)
                .interact()?;
            answers.credential = Some(credentials[chosen].to_string());
            if chosen <= 1 {
                let client_id = text(
                    &theme,
                    "Client id of a user-assigned identity (empty: system-assigned)",
                    None,
                    true,
                )?;
                answers.client_id = Some(client_id).filter(|c| !c.is_empty());
            }
            endpoint
        }
        AuthMode::Local => match (global.endpoints.first(), previous) {
            (Some(given), None) => local_url(given),
            _ => local_url(&text(
                &theme,
                "Redis host:port",
                previous_first.or(Some("127.0.0.1:6379".into())),
                false,
            )?),
        },
    };
    answers.endpoints.push(first);
    answers.key_prefix = match (&global.key_prefix, previous) {
        (Some(prefix), None) => prefix.clone(),
        _ => text(
            &theme,
            "Key prefix",
            Some(previous.map_or("lease:".into(), |p| p.key_prefix.clone())),
            false,
        )?,
    };
    answers.database = match (args.database, previous) {
        (Some(db), None) => db,
        _ => Input::with_theme(&theme)
            .with_prompt("Database number")
            .default(previous.map_or(0, |p| p.database))
            .interact_text()?,
    };
    let given_more = more_endpoints(args, global, mode)?;
    if mode != AuthMode::EntraId {
        if !given_more.is_empty() && previous.is_none() {
            answers.endpoints.extend(given_more);
        } else if Confirm::with_theme(&theme)
            .with_prompt("Add more Redis instances for quorum mode (Redlock)?")
            .default(false)
            .interact()?
        {
            loop {
                let more = text(
                    &theme,
                    "Another instance (URL or connection string; empty when done)",
                    None,
                    true,
                )?;
                if more.is_empty() {
                    break;
                }
                answers.endpoints.push(more);
            }
        }
    }
    Ok(answers)
}

/// A full connection string, or a cache name / host plus a hidden password.
fn ask_connection_string(
    theme: &ColorfulTheme,
    args: &ConfigureArgs,
    previous: Option<String>,
) -> anyhow::Result<String> {
    let given = text(
        theme,
        "Azure cache name, host:port, or a full connection string",
        previous.map(|p| address_of(&p)),
        false,
    )?;
    if given.contains(',') || given.contains("://") {
        return Ok(given);
    }
    let address = azure::expand_asking(theme, &given, &azure_flags(args))?;
    let password = Password::with_theme(theme)
        .with_prompt("Password or access key")
        .interact()?;
    let user = text(theme, "ACL user (empty for the default user)", None, true)?;
    let tls = Confirm::with_theme(theme)
        .with_prompt("Use TLS?")
        .default(address.ends_with(":6380") || address.ends_with(":10000"))
        .interact()?;
    let mut string = format!(
        "{address},password={password},ssl={}",
        if tls { "True" } else { "False" }
    );
    if !user.is_empty() {
        string.push_str(&format!(",user={user}"));
    }
    Ok(string + ",abortConnect=False")
}

/// The answers from flags alone; a missing flag is a usage error that names it.
fn from_flags(args: &ConfigureArgs, global: &Global) -> anyhow::Result<Answers> {
    let missing = |flag: &str| UsageError(format!("no terminal to ask on: pass {flag}"));
    let mode = args
        .auth
        .ok_or_else(|| missing("--auth (connection-string, entra-id or local)"))?;
    let mut endpoints = match mode {
        AuthMode::ConnectionString => vec![args
            .connection_string
            .clone()
            .ok_or_else(|| missing("--connection-string"))?],
        AuthMode::EntraId => vec![azure::expand(
            global
                .endpoints
                .first()
                .ok_or_else(|| missing("--endpoint"))?,
            &azure_flags(args),
        )?],
        AuthMode::Local => vec![local_url(
            global
                .endpoints
                .first()
                .map_or(LOCAL_DEFAULT, String::as_str),
        )],
    };
    endpoints.extend(more_endpoints(args, global, mode)?);
    let answers = Answers {
        mode,
        endpoints,
        credential: (mode == AuthMode::EntraId)
            .then(|| args.credential.clone().unwrap_or(DEFAULT_CREDENTIAL.into())),
        client_id: args.client_id.clone(),
        key_prefix: global.key_prefix.clone().unwrap_or("lease:".into()),
        database: args.database.unwrap_or(0),
    };
    check(&answers)?;
    Ok(answers)
}

/// The instances given besides the first: every `--endpoint` after the first one (with
/// `--connection-string`, every one), each taken whole, then the lists of `--endpoints`.
fn more_endpoints(
    args: &ConfigureArgs,
    global: &Global,
    mode: AuthMode,
) -> Result<Vec<String>, UsageError> {
    let skip = usize::from(mode != AuthMode::ConnectionString);
    let mut more: Vec<String> = global.endpoints.iter().skip(skip).cloned().collect();
    more.extend(crate::cli::endpoint_lists(
        "--endpoints",
        &args.more_endpoints,
        " (or give each instance its own --endpoint)",
    )?);
    Ok(more)
}

/// Every instance parses (so that nothing unusable is saved, even with `--no-test`), and an
/// Entra ID endpoint is one `host:port` with no password. Messages name the instance by its
/// place, never by its text.
fn check(answers: &Answers) -> Result<(), UsageError> {
    let defaults = leasectl::settings::DEFAULT_ENDPOINT;
    for (index, text) in answers.endpoints.iter().enumerate() {
        let endpoint = leasectl::Endpoint::parse(text, defaults)
            .map_err(|e| UsageError(format!("instance {}: {e}", index + 1)))?;
        if answers.mode == AuthMode::EntraId && endpoint.password().is_some() {
            return Err(UsageError(
                "with --auth entra-id the endpoint is host:port with no password".into(),
            ));
        }
    }
    if answers.mode == AuthMode::EntraId && answers.endpoints.len() > 1 {
        return Err(UsageError(
            "with --auth entra-id give one endpoint (quorum mode takes connection strings)".into(),
        ));
    }
    Ok(())
}

/// Connects to each instance, PINGs, and takes and releases a test lease.
async fn test_connection(answers: &Answers) -> anyhow::Result<()> {
    for endpoint in &answers.endpoints {
        let mut settings = Settings::for_endpoints(&[endpoint])?;
        if answers.mode == AuthMode::EntraId {
            let credential = answers.credential.as_deref().unwrap_or(DEFAULT_CREDENTIAL);
            let entra_id = leasectl::EntraId::parse(credential, answers.client_id.clone())
                .map_err(UsageError)?;
            settings.entra_id = Some(entra_id);
        }
        settings.key_prefix = answers.key_prefix.clone();
        settings.database = answers.database;
        settings.connect_timeout = Duration::from_secs(5);
        let client = LeaseClient::connect(settings).await?;
        let options = LeaseOptions {
            ttl: Duration::from_secs(10),
            auto_renew: None,
            ..LeaseOptions::from_settings(client.settings())
        };
        match client.try_acquire(TEST_LEASE, &options).await? {
            Acquire::Acquired(lease) => {
                lease.release().await?;
            }
            // Another wizard is testing right now: reading and answering was test enough.
            Acquire::Held(_) => {}
        }
    }
    Ok(())
}

/// Asks for a line of text. The answer is shown back with any password masked (dialoguer
/// would repeat it as typed: a full connection string holds one).
fn text(
    theme: &ColorfulTheme,
    prompt: &str,
    default: Option<String>,
    allow_empty: bool,
) -> anyhow::Result<String> {
    let mut input = Input::<String>::with_theme(theme)
        .with_prompt(prompt)
        .allow_empty(allow_empty)
        .report(false);
    if let Some(default) = default {
        input = input.default(default);
    }
    let answer = input.interact_text()?.trim().to_string();
    let mut shown = String::new();
    theme.format_input_prompt_selection(&mut shown, prompt, &mask_password(&answer))?;
    errln!("{shown}");
    Ok(answer)
}

/// The flags that say what a bare Azure cache name is.
fn azure_flags(args: &ConfigureArgs) -> azure::Given {
    azure::Given {
        kind: args.kind,
        region: args.region.clone(),
    }
}

/// `host:port` → `redis://host:port` (no TLS, no password); URLs are kept.
fn local_url(given: &str) -> String {
    if given.contains("://") {
        given.to_string()
    } else {
        format!("redis://{}", given.trim())
    }
}

/// The `host:port` of a connection string or URL, as a default on a retry (never the
/// password: the question for it comes again).
fn address_of(connection_string: &str) -> String {
    leasectl::Endpoint::parse(connection_string, leasectl::settings::DEFAULT_ENDPOINT)
        .map(|endpoint| endpoint.address())
        .unwrap_or_default()
}

fn console_show_cursor() -> std::io::Result<()> {
    let mut stderr = std::io::stderr();
    stderr.write_all(b"\x1b[?25h")?;
    stderr.flush()
}
