//! A list of endpoints given as one string: an environment variable or a flag.

use super::url_scheme;

/// Splits a list of endpoints given as one string (an environment variable, a flag): a JSON
/// array of strings, URLs or `host:port`s separated by ',', or any forms separated by ';'.
///
/// # Errors
/// When it is not a valid list, or when a ';' may lie inside a password (one that ends a
/// piece's `password=`, or that cuts a URL's user and password from its '@'): splitting there
/// would cut the password and show its pieces. No message repeats any of the text.
pub fn split_list(text: &str) -> Result<Vec<String>, String> {
    let text = text.trim();
    if text.starts_with('[') {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            format!(
                "not a valid JSON array (line {} column {})",
                e.line(),
                e.column()
            )
        })?;
        let items = value.as_array().ok_or("expected a JSON array of strings")?;
        return items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str()
                    .map(|s| s.trim().to_string())
                    .ok_or_else(|| format!("item {} of the JSON array is not a string", i + 1))
            })
            .filter(|item| item.as_ref().map_or(true, |s| !s.is_empty()))
            .collect();
    }
    // A ',' separates instances only when no part can be an option or a piece of a password:
    // each is a URL or a bare host:port.
    let single = |part: &str| {
        url_scheme(part).is_some()
            || !(part.trim().is_empty() || part.contains(['=', '@', ';', '/']))
    };
    let pieces: Vec<&str> = if text.contains(',') && text.split(',').all(single) {
        text.split(',').collect()
    } else {
        text.split(';').collect()
    };
    let last = pieces.len() - 1;
    for (index, piece) in pieces.iter().enumerate() {
        let is_url = url_scheme(piece).is_some();
        let ends_in_password = !is_url
            && piece
                .rsplit(',')
                .next()
                .and_then(|option| option.split_once('='))
                .is_some_and(|(key, _)| key.trim().eq_ignore_ascii_case("password"));
        if (index < last && ends_in_password) || (!is_url && piece.contains('@')) {
            return Err(
                "a ';' there may be part of a password; give the list as a JSON \
                        array of strings, or each instance on its own"
                    .into(),
            );
        }
    }
    Ok(pieces
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect())
}
