//! Sentinel endpoints: the hosts are Redis Sentinels and a service name names the primary they
//! monitor. Two forms: StackExchange.Redis's connection string
//! (`host1:26379,host2:26379,serviceName=mymaster[,password=…,user=…,ssl=…]`) and a
//! `redis+sentinel://[user:pass@]host1:26379[,host2:26379]/mymaster[/db]` URL
//! (`rediss+sentinel://` for TLS). The password and user apply to the sentinels and to the
//! data nodes alike (as in StackExchange.Redis).

use std::fmt;

use super::{percent_decode, split_host_port, Defaults, Endpoint};

/// The port of a sentinel when none is given.
pub const SENTINEL_PORT: u16 = 26379;

/// The sentinels of an endpoint and the service (primary) they name.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Sentinels {
    /// The name of the monitored primary (`SENTINEL MASTERS`' `name`).
    pub service: String,
    /// Each sentinel's host and port, in the order given (the first is also the endpoint's).
    pub hosts: Vec<(String, u16)>,
}

/// A sentinel endpoint when `text` is one (a `redis+sentinel://` URL, or a connection string
/// with a `serviceName=` option); `None` for any other form.
pub(super) fn parse(text: &str, defaults: Defaults) -> Option<Result<Endpoint, String>> {
    let lower = text.to_ascii_lowercase();
    for (scheme, tls) in [("redis+sentinel://", false), ("rediss+sentinel://", true)] {
        if lower.starts_with(scheme) {
            return Some(parse_url(&text[scheme.len()..], tls));
        }
    }
    if super::url_scheme(text).is_some() {
        return None;
    }
    let has_service = text.split(',').any(|part| {
        part.split_once('=')
            .is_some_and(|(key, _)| key.trim().eq_ignore_ascii_case("servicename"))
    });
    has_service.then(|| parse_connection_string(text, defaults))
}

/// `host1:26379,host2:26379,serviceName=NAME,...`: the leading parts without '=' are the
/// sentinels; the options are those of any connection string.
fn parse_connection_string(text: &str, defaults: Defaults) -> Result<Endpoint, String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let first_option = parts
        .iter()
        .position(|part| part.contains('='))
        .unwrap_or(parts.len());
    let (addresses, options) = parts.split_at(first_option);
    let mut hosts = Vec::new();
    for address in addresses.iter().filter(|a| !a.is_empty()) {
        let (host, port) = split_host_port(address)?;
        hosts.push((host, port.unwrap_or(SENTINEL_PORT)));
    }
    let mut service = None;
    let mut rest = Vec::new();
    for option in options {
        match option.split_once('=') {
            Some((key, value)) if key.trim().eq_ignore_ascii_case("servicename") => {
                service = Some(value.trim().to_string());
            }
            _ => rest.push(*option),
        }
    }
    let Some((host, port)) = hosts.first().cloned() else {
        return Err("a serviceName= connection string must start with the sentinels' host:port (host1:26379,host2:26379,serviceName=NAME)".into());
    };
    let service = check_service(service.unwrap_or_default())?;
    // The options (password, user, ssl, defaultDatabase) are read as for any string.
    let mut single = format!("{host}:{port}");
    if host.contains(':') {
        single = format!("[{host}]:{port}");
    }
    for option in rest {
        single.push(',');
        single.push_str(option);
    }
    let mut endpoint = Endpoint::parse_connection_string(&single, defaults)?;
    endpoint.sentinel = Some(Sentinels { service, hosts });
    Ok(endpoint)
}

/// What follows `redis+sentinel://`: `[user:pass@]host1[:port][,host2[:port]]/service[/db]`.
fn parse_url(rest: &str, tls: bool) -> Result<Endpoint, String> {
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, rest),
    };
    let decode = |s: &str| {
        percent_decode(s)
            .ok_or_else(|| "the URL's user or password is not valid percent-encoding".to_string())
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (user, password) = match info.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (info, None),
            };
            let user = Some(user).filter(|u| !u.is_empty()).map(decode);
            (user.transpose()?, password.map(decode).transpose()?)
        }
    };
    let (hosts_text, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut hosts = Vec::new();
    for address in hosts_text.split(',').map(str::trim) {
        if address.is_empty() {
            return Err("the sentinel URL names an empty host".into());
        }
        let (host, port) = split_host_port(address)?;
        hosts.push((host, port.unwrap_or(SENTINEL_PORT)));
    }
    let mut segments = path.trim_end_matches('/').splitn(2, '/');
    let service = check_service(decode(segments.next().unwrap_or_default())?)?;
    let database = match segments.next() {
        None => None,
        Some(db) => Some(
            db.parse::<i64>()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or_else(|| format!("the URL's database '{db}' is not a number"))?,
        ),
    };
    let (host, port) = hosts[0].clone();
    Ok(Endpoint {
        host,
        port,
        tls,
        username,
        password,
        database,
        tls_host: None,
        sentinel: Some(Sentinels { service, hosts }),
        abort_connect: None,
    })
}

fn check_service(service: String) -> Result<String, String> {
    if service.is_empty() {
        return Err(
            "no Sentinel service name: give serviceName=NAME (or redis+sentinel://host:26379/NAME)"
                .into(),
        );
    }
    if service.contains(char::is_whitespace) || service.chars().any(char::is_control) {
        return Err("the Sentinel service name must not hold spaces".into());
    }
    Ok(service)
}

impl Sentinels {
    /// `h1:26379,h2:26379`.
    pub fn addresses(&self) -> String {
        let address = |(host, port): &(String, u16)| match host.contains(':') {
            true => format!("[{host}]:{port}"),
            false => format!("{host}:{port}"),
        };
        self.hosts.iter().map(address).collect::<Vec<_>>().join(",")
    }
}

/// `redis+sentinel://user:***@h1:26379,h2:26379/mymaster/db`, the password masked.
pub(super) fn fmt(
    endpoint: &Endpoint,
    sentinels: &Sentinels,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    let scheme = if endpoint.tls { "rediss" } else { "redis" };
    write!(f, "{scheme}+sentinel://")?;
    match (&endpoint.username, &endpoint.password) {
        (Some(user), Some(_)) => write!(f, "{user}:***@")?,
        (Some(user), None) => write!(f, "{user}@")?,
        (None, Some(_)) => write!(f, ":***@")?,
        (None, None) => {}
    }
    write!(f, "{}/{}", sentinels.addresses(), sentinels.service)?;
    if let Some(db) = endpoint.database {
        write!(f, "/{db}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Defaults = Defaults {
        use_ssl: false,
        port: 6380,
    };

    #[test]
    fn stackexchange_form() {
        let e = Endpoint::parse(
            "h1:26380, h2 ,serviceName=mymaster,password=firstpart,secondpart,ssl=False",
            PLAIN,
        );
        // A ',' in the password cuts it: an error that repeats none of it.
        let err = e.unwrap_err();
        assert!(
            !err.contains("firstpart") && !err.contains("secondpart"),
            "{err}"
        );
        let e =
            Endpoint::parse("h1:26380,h2,serviceName=mymaster,password=s3,user=u", PLAIN).unwrap();
        let sentinels = e.sentinel.clone().unwrap();
        assert_eq!(sentinels.service, "mymaster");
        assert_eq!(
            sentinels.hosts,
            [("h1".to_string(), 26380), ("h2".to_string(), SENTINEL_PORT)]
        );
        assert_eq!(
            (e.password(), e.username.as_deref()),
            (Some("s3"), Some("u"))
        );
        assert_eq!(
            e.to_string(),
            "redis+sentinel://u:***@h1:26380,h2:26379/mymaster"
        );
    }

    #[test]
    fn urls() {
        let e = Endpoint::parse("redis+sentinel://:p%40@a:1,b/svc/2", PLAIN).unwrap();
        let sentinels = e.sentinel.clone().unwrap();
        assert_eq!(sentinels.addresses(), "a:1,b:26379");
        assert_eq!(
            (e.password(), e.database, e.tls),
            (Some("p@"), Some(2), false)
        );
        assert!(
            Endpoint::parse("rediss+sentinel://a/svc", PLAIN)
                .unwrap()
                .tls
        );
        assert!(!e.to_string().contains("p@"));
    }

    #[test]
    fn a_list_keeps_a_sentinel_url_whole() {
        let list = super::super::split_list("redis+sentinel://a:1,b:2/m").unwrap();
        assert_eq!(list, ["redis+sentinel://a:1,b:2/m"]);
        let list = super::super::split_list("redis://a:1,b:2").unwrap();
        assert_eq!(list, ["redis://a:1", "b:2"]);
    }

    #[test]
    fn bad_forms_say_what_is_wrong_without_the_password() {
        for bad in [
            "serviceName=m,password=topsecret",
            "h1:26379,serviceName=,password=topsecret",
            "h1:x,serviceName=m,password=topsecret",
            "redis+sentinel://:topsecret@h1:26379",
            "redis+sentinel://:topsecret@h1:26379/m/x",
            "redis+sentinel://:topsecret@/m",
        ] {
            let err = Endpoint::parse(bad, PLAIN).unwrap_err();
            assert!(
                !err.contains("topsecret") && !err.contains('\n'),
                "{bad}: {err}"
            );
        }
    }
}
