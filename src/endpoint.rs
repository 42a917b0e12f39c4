//! One Redis endpoint: parsed from a `redis://`/`rediss://` URL or a StackExchange.Redis
//! connection string (`host:port,password=…,ssl=True,abortConnect=False`), turned into
//! redis-rs connection info, and shown to people without its password.

use std::fmt;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

mod list;
mod sentinel;

pub use list::split_list;
pub use sentinel::Sentinels;

/// Where and how to connect to one Redis server.
///
/// `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub username: Option<String>,
    password: Option<String>,
    /// Database number, when the string named one (otherwise the settings' `Database`).
    pub database: Option<i64>,
    /// The host name checked against the server's certificate, when it differs from `host`.
    pub tls_host: Option<String>,
    /// Redis Sentinel: the hosts are sentinels, and this names them and the primary.
    pub sentinel: Option<Sentinels>,
    /// `abortConnect=` of a connection string, when it has one.
    abort_connect: Option<bool>,
}

/// Defaults that apply where a connection string is silent (the settings' `UseSsl`, `Port`).
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    pub use_ssl: bool,
    pub port: u16,
}

impl Endpoint {
    /// Parses a URL or a StackExchange.Redis connection string.
    ///
    /// # Errors
    /// A one-line description of what is wrong; it never repeats the password.
    pub fn parse(text: &str, defaults: Defaults) -> Result<Endpoint, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("expected a redis:// URL or host:port, got an empty string".into());
        }
        if let Some(sentinel) = sentinel::parse(text, defaults) {
            return sentinel;
        }
        if let Some(scheme) = url_scheme(text) {
            return Self::parse_url(text, scheme);
        }
        Self::parse_connection_string(text, defaults)
    }

    fn parse_url(text: &str, scheme: &str) -> Result<Endpoint, String> {
        let tls = match scheme {
            "redis" | "valkey" => false,
            "rediss" | "valkeys" => true,
            other => {
                return Err(format!(
                    "unsupported URL scheme '{other}' (expected redis://, rediss:// or redis+sentinel://)"
                ))
            }
        };
        let url = url::Url::parse(text).map_err(|e| format!("not a valid Redis URL ({e})"))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("the URL has no host")?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| {
                "the URL's user or password is not valid percent-encoding".to_string()
            })
        };
        let username = Some(url.username())
            .filter(|u| !u.is_empty())
            .map(decode)
            .transpose()?;
        let password = url.password().map(decode).transpose()?;
        let database = match url.path().trim_start_matches('/') {
            "" => None,
            db => Some(
                db.parse::<i64>()
                    .map_err(|_| format!("the URL's database '{db}' is not a number"))?,
            ),
        };
        Ok(Endpoint {
            host,
            port: url.port().unwrap_or(6379),
            tls,
            username,
            password,
            database,
            tls_host: None,
            sentinel: None,
            abort_connect: None,
        })
    }

    fn parse_connection_string(text: &str, defaults: Defaults) -> Result<Endpoint, String> {
        let mut parts = text.split(',');
        let address = parts.next().unwrap_or_default().trim();
        if address.contains('=') {
            return Err("the connection string must start with host:port".into());
        }
        let (host, port) = split_host_port(address)?;
        let mut endpoint = Endpoint {
            host,
            port: port.unwrap_or(defaults.port),
            tls: defaults.use_ssl,
            username: None,
            password: None,
            database: None,
            tls_host: None,
            sentinel: None,
            abort_connect: None,
        };
        // No message below repeats an option or its value: after a password that holds a ','
        // the next "option" is the rest of that password.
        for (index, option) in parts.map(str::trim).enumerate() {
            if option.is_empty() {
                continue;
            }
            let (key, value) = option.split_once('=').ok_or_else(|| {
                format!(
                    "part {} of the connection string has no '=' (a password cannot hold a ','; \
                     use a redis:// or rediss:// URL with the password percent-encoded)",
                    index + 2
                )
            })?;
            let value = value.trim();
            match key.trim().to_ascii_lowercase().as_str() {
                "password" => endpoint.password = Some(value.to_string()),
                "user" => endpoint.username = Some(value.to_string()),
                "ssl" => {
                    endpoint.tls = parse_bool(value)
                        .ok_or("the connection string's ssl= expects True or False")?
                }
                "sslhost" => endpoint.tls_host = Some(value.to_string()),
                "abortconnect" => {
                    let expects = "the connection string's abortConnect= expects True or False";
                    endpoint.abort_connect = Some(parse_bool(value).ok_or(expects)?)
                }
                "defaultdatabase" => {
                    endpoint.database = Some(value.parse().map_err(|_| {
                        "the connection string's defaultDatabase= expects a number".to_string()
                    })?)
                }
                // Options of StackExchange.Redis that have no meaning for this client.
                _ => tracing::debug!(
                    option = %if is_known_option(key) { key.trim() } else { "(unknown)" },
                    "connection-string option ignored"
                ),
            }
        }
        Ok(endpoint)
    }

    /// `abortConnect=` of a connection string (see the `AbortOnConnectFail` setting).
    pub fn abort_connect(&self) -> Option<bool> {
        self.abort_connect
    }

    /// The password, for building the connection (never for display).
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The same endpoint without username and password (to ask the server why AUTH failed).
    pub(crate) fn without_credentials(&self) -> Endpoint {
        Endpoint {
            username: None,
            password: None,
            ..self.clone()
        }
    }

    /// `host:port`, the name used in messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The redis-rs connection info for this endpoint, with `database` unless the string set one.
    pub fn connection_info(&self, database: i64) -> redis::RedisResult<ConnectionInfo> {
        let addr = if self.tls {
            ConnectionAddr::TcpTls {
                // The name the certificate must carry: `sslHost=` when given (the connection
                // then still goes to `host`, see `link.rs`).
                host: self.tls_host.clone().unwrap_or_else(|| self.host.clone()),
                port: self.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(self.host.clone(), self.port)
        };
        let mut redis = RedisConnectionInfo::default().set_db(self.database.unwrap_or(database));
        if let Some(user) = &self.username {
            redis = redis.set_username(user);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password);
        }
        Ok(addr.into_connection_info()?.set_redis_settings(redis))
    }
}

impl fmt::Display for Endpoint {
    /// `redis://user:***@host:port/db`-like, with the password masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(sentinels) = &self.sentinel {
            return sentinel::fmt(self, sentinels, f);
        }
        let scheme = if self.tls { "rediss" } else { "redis" };
        write!(f, "{scheme}://")?;
        match (&self.username, &self.password) {
            (Some(user), Some(_)) => write!(f, "{user}:***@")?,
            (Some(user), None) => write!(f, "{user}@")?,
            (None, Some(_)) => write!(f, ":***@")?,
            (None, None) => {}
        }
        write!(f, "{}", self.address())?;
        if let Some(db) = self.database {
            write!(f, "/{db}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({self})")
    }
}

/// Masks the password in a URL or connection string, keeping everything else as written.
///
/// In a connection string everything from `password=` up to the next known option is masked:
/// a password holding a ',' must not show its tail.
pub fn mask_password(text: &str) -> String {
    if let (Some(_), Some((scheme, rest))) = (url_scheme(text), text.split_once("://")) {
        if let Some((userinfo, host)) = rest.rsplit_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
        return text.to_string();
    }
    let mut shown: Vec<String> = Vec::new();
    let mut in_password = false;
    for part in text.split(',') {
        let key = part.split_once('=').map(|(key, _)| key.trim());
        if key.is_some_and(|k| k.eq_ignore_ascii_case("password")) {
            let key = part.split_once('=').map_or("", |(key, _)| key);
            shown.push(format!("{key}=***"));
            in_password = true;
        } else if in_password && !key.is_some_and(is_known_option) {
            // The rest of the password.
        } else {
            in_password = false;
            shown.push(part.to_string());
        }
    }
    shown.join(",")
}

/// The scheme of a URL (`redis` in `redis://...`). What stands before a "://" is a scheme only
/// when it is one word: in `host:1,password=a://b` the "://" belongs to the password.
fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.trim_start().split_once("://")?;
    let mut chars = scheme.chars();
    let word = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    word.then_some(scheme)
}

/// The options of StackExchange.Redis's connection strings (lower case).
const KNOWN_OPTIONS: &[&str] = &[
    "abortconnect",
    "allowadmin",
    "asynctimeout",
    "channelprefix",
    "checkcertificaterevocation",
    "configchannel",
    "configcheckseconds",
    "connectretry",
    "connecttimeout",
    "defaultdatabase",
    "highprioritysocketthreads",
    "keepalive",
    "name",
    "password",
    "protocol",
    "proxy",
    "resolvedns",
    "responsetimeout",
    "servicename",
    "setlib",
    "ssl",
    "sslhost",
    "sslprotocols",
    "synctimeout",
    "tiebreaker",
    "tunnel",
    "user",
    "version",
    "writebuffer",
];

fn is_known_option(key: &str) -> bool {
    KNOWN_OPTIONS.contains(&key.trim().to_ascii_lowercase().as_str())
}

fn split_host_port(address: &str) -> Result<(String, Option<u16>), String> {
    // What stands before an '@' is a user or password: never repeated.
    if address.contains('@') {
        return Err(
            "a host:port has no '@' (give user= and password= options, or a \
                    redis:// URL with them)"
                .into(),
        );
    }
    let bad_port = |p: &str| format!("'{p}' is not a port number (1-65535)");
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad_port(p))
    };
    if let Some(rest) = address.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or("unclosed '[' in the host")?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(parse_port(p)?),
            None if tail.is_empty() => None,
            None => return Err(format!("unexpected '{tail}' after the host")),
        };
        return Ok((host.to_string(), port));
    }
    let (host, port) = match address.rsplit_once(':') {
        Some((host, port)) => (host, Some(parse_port(port)?)),
        None => (address, None),
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("'{host}' is not a host name"));
    }
    Ok((host.to_string(), port))
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Defaults = Defaults {
        use_ssl: true,
        port: 6380,
    };

    #[test]
    fn azure_portal_string() {
        let e = Endpoint::parse(
            "mycache.redis.cache.windows.net:6380,password=s3cr=t,ssl=True,abortConnect=False",
            DEFAULTS,
        )
        .unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.tls),
            ("mycache.redis.cache.windows.net", 6380, true)
        );
        assert_eq!(e.password(), Some("s3cr=t"));
        assert_eq!(
            e.to_string(),
            "rediss://:***@mycache.redis.cache.windows.net:6380"
        );
        assert!(!format!("{e:?}").contains("s3cr"));
    }

    #[test]
    fn defaults_fill_what_the_string_omits() {
        let e = Endpoint::parse("cache,user=app,password=p", DEFAULTS).unwrap();
        assert_eq!(
            (e.port, e.tls, e.username.as_deref()),
            (6380, true, Some("app"))
        );
        let e = Endpoint::parse("localhost:6379,ssl=False", DEFAULTS).unwrap();
        assert_eq!((e.port, e.tls), (6379, false));
    }

    #[test]
    fn masking_keeps_the_form() {
        assert_eq!(
            mask_password("h:6380,password=abc,ssl=True"),
            "h:6380,password=***,ssl=True"
        );
        assert_eq!(
            mask_password("rediss://u:p%40@h:1/2"),
            "rediss://u:***@h:1/2"
        );
        assert_eq!(mask_password("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn urls() {
        let e = Endpoint::parse("rediss://alice:p%40ss@example.com:7000/3", DEFAULTS).unwrap();
        assert_eq!((e.tls, e.port, e.database), (true, 7000, Some(3)));
        assert_eq!(
            (e.username.as_deref(), e.password()),
            (Some("alice"), Some("p@ss"))
        );
        assert_eq!(e.to_string(), "rediss://alice:***@example.com:7000/3");
        let e = Endpoint::parse("redis://127.0.0.1", DEFAULTS).unwrap();
        assert_eq!((e.tls, e.port), (false, 6379));
    }

    #[test]
    fn bad_strings_are_refused_without_the_password() {
        for bad in [
            "",
            "http://x",
            "host:notaport",
            "host:0",
            "password=x",
            "host:1,password",
        ] {
            let err = Endpoint::parse(bad, DEFAULTS).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
        let err = Endpoint::parse("h:1,ssl=maybe,password=topsecret", DEFAULTS).unwrap_err();
        assert!(!err.contains("topsecret"));
    }

    #[test]
    fn no_error_repeats_a_piece_of_a_password_that_holds_a_comma() {
        for text in [
            "h:1,password=first,second",
            "h:1,password=first,ssl=second",
            "h:1,password=first,defaultDatabase=second",
            "first@h:1",
            "redis://:first@h:second",
        ] {
            let err = Endpoint::parse(text, DEFAULTS).unwrap_err();
            assert!(
                !err.contains("first") && !err.contains("second"),
                "{text}: {err}"
            );
        }
        // A URL may hold both.
        let e = Endpoint::parse("redis://:a,b;c@h:1", DEFAULTS).unwrap();
        assert_eq!(e.password(), Some("a,b;c"));
    }

    #[test]
    fn masking_hides_the_tail_of_a_password_that_holds_a_comma() {
        assert_eq!(
            mask_password("h:1,password=first,second,ssl=True"),
            "h:1,password=***,ssl=True"
        );
        assert_eq!(
            mask_password("h:1,password=first,x=second"),
            "h:1,password=***"
        );
        assert_eq!(mask_password("rediss://u:a,b@c@h:1"), "rediss://u:***@h:1");
        assert_eq!(
            mask_password("h:1,password=a://b,ssl=True"),
            "h:1,password=***,ssl=True"
        );
    }

    #[test]
    fn a_password_holding_a_scheme_separator_stays_in_a_connection_string() {
        let e = Endpoint::parse("h:1,password=first://second,ssl=False", DEFAULTS).unwrap();
        assert_eq!((e.password(), e.port), (Some("first://second"), 1));
        let err = Endpoint::parse("h:x,password=first://second", DEFAULTS).unwrap_err();
        assert!(!err.contains("first") && !err.contains("second"), "{err}");
    }

    #[test]
    fn lists_split_only_where_no_password_can_be_cut() {
        let split = |text: &str| split_list(text);
        assert_eq!(
            split("redis://h:1, redis://h:2").unwrap(),
            ["redis://h:1", "redis://h:2"]
        );
        assert_eq!(
            split("h:1,password=a,ssl=False; h:2,ssl=False").unwrap(),
            ["h:1,password=a,ssl=False", "h:2,ssl=False"]
        );
        assert_eq!(split("redis://:a,b@h:1").unwrap(), ["redis://:a,b@h:1"]);
        assert_eq!(split("h:1, h:2").unwrap(), ["h:1", "h:2"]);
        assert_eq!(split("h:1,password=a,b").unwrap(), ["h:1,password=a,b"]);
        assert_eq!(
            split("redis://h:1,h:2,ssl=False").unwrap(),
            ["redis://h:1,h:2,ssl=False"]
        );
        assert_eq!(
            split(r#"["h:1,password=a;b", "redis://:c;d@h:2"]"#).unwrap(),
            ["h:1,password=a;b", "redis://:c;d@h:2"]
        );
        for ambiguous in [
            "h:1,password=first;second",
            "h:1,password=first;second,ssl=True",
            "redis://:first;second@h:1",
            "h:1,password=a://first;second",
        ] {
            let err = split(ambiguous).unwrap_err();
            assert!(!err.contains("first") && !err.contains("second"), "{err}");
        }
        for bad in [r#"["first", 1]"#, "[first"] {
            let err = split(bad).unwrap_err();
            assert!(!err.contains("first"), "{err}");
        }
    }
}
