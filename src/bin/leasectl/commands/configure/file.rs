//! The settings file `configure` writes: shown masked before it is replaced, written
//! atomically with mode 0600, and kept out of git.

use std::io::Write;
use std::path::Path;

use dialoguer::theme::ColorfulTheme;
use dialoguer::Confirm;
use leasectl::mask_password;

use crate::output::{errln, UsageError};

/// An existing file is shown and kept unless the user (or `--yes`) says to replace it.
pub(super) fn keep_going_over(path: &Path, yes: bool, interactive: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !interactive {
        return Err(UsageError(format!(
            "{} exists; pass --yes to replace it",
            path.display()
        ))
        .into());
    }
    let current = std::fs::read(path).unwrap_or_default();
    errln!(
        "{} already exists:\n{}",
        path.display(),
        mask_file(&current)
    );
    Ok(Confirm::with_theme(&ColorfulTheme::default())
        .with_prompt("Replace it?")
        .default(false)
        .interact()?)
}

/// Writes `contents` to a temporary file beside `path` (mode 0600), then renames it over
/// `path`: readers see the old file or the new one, never half of one.
pub(super) fn write_atomically(path: &Path, contents: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?; // created with mode 0600
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Adds the file to the `.gitignore` beside it when it is inside a git work tree and not
/// ignored yet.
pub(super) fn ignore_in_git(path: &Path) {
    let Ok(absolute) = std::path::absolute(path) else {
        return;
    };
    let Some(dir) = absolute.parent() else { return };
    if !dir.ancestors().any(|d| d.join(".git").exists()) {
        return;
    }
    let ignored = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["check-ignore", "-q"])
        .arg(&absolute)
        .status()
        .is_ok_and(|s| s.success());
    if ignored {
        return;
    }
    let name = absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let gitignore = dir.join(".gitignore");
    let existing = std::fs::read_to_string(&gitignore).unwrap_or_default();
    let separator = if existing.is_empty() || existing.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    let line = format!("{separator}# Credentials written by leasectl configure\n{name}\n");
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&gitignore)
    {
        Ok(mut file) => {
            if file.write_all(line.as_bytes()).is_ok() {
                errln!("Added {name} to {}", gitignore.display());
            }
        }
        Err(error) => tracing::warn!("cannot add {name} to {}: {error}", gitignore.display()),
    }
}

/// The existing file's settings with any `password=`/URL password masked (comments, which
/// may hold anything, are not shown).
fn mask_file(bytes: &[u8]) -> String {
    let Ok(mut value) = leasectl::settings::settings_json(bytes) else {
        return "    (not valid JSON)".into();
    };
    mask_strings(&mut value);
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

fn mask_strings(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => *s = mask_password(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_strings),
        serde_json::Value::Object(map) => map.values_mut().for_each(mask_strings),
        _ => {}
    }
}
