//! `MaxRetryAttempts` and `RetryDelay`: transient errors retried within one operation —
//! a timed-out acquire whose first attempt did write, and a server answering `LOADING`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use leasectl::{Acquire, LeaseClient};

use super::*;
use crate::support::leases::{connect_within, options, within};
use crate::support::proxy::Proxy;

/// The acquire's first attempt reaches Redis only after the client gave up on it (latency
/// past `SyncTimeout`), and writes the lease; the retry finds the key holding its own lease
/// id and counts as granted, with the token the first attempt took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_acquire_whose_first_attempt_wrote_is_granted_on_retry() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port);
    let mut settings = leasectl::Settings::for_endpoints(&[proxy.url()]).unwrap();
    settings.sync_timeout = Duration::from_millis(300);
    settings.max_retry_attempts = 10;
    settings.retry_delay = Duration::from_millis(50);
    let client: LeaseClient = connect_within(BOUND, settings).await;
    // The script is loaded first: at this latency a NOSCRIPT answer would come too late.
    let warm_up = client
        .try_acquire("slow", &options(Duration::from_secs(30)))
        .await;
    let Ok(Acquire::Acquired(warm_up)) = warm_up else {
        panic!("{warm_up:?}");
    };
    warm_up.release().await.unwrap();
    proxy.set_latency(Duration::from_secs(1));
    let acquiring = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .try_acquire("slow", &options(Duration::from_secs(30)))
                .await
        }
    });
    let key = support::key("slow");
    let written = tokio::task::spawn_blocking({
        let port = server.port;
        move || {
            let server = RedisConnection(port);
            support::eventually(BOUND, || server.exists(&key))
        }
    });
    assert!(written.await.unwrap(), "the first attempt never wrote");
    proxy.heal();
    let outcome = within(BOUND, "the retried acquire", acquiring)
        .await
        .unwrap();
    let Ok(Acquire::Acquired(lease)) = outcome else {
        panic!("not granted on retry: {outcome:?}");
    };
    let hash = support::hgetall(&server, &support::key("slow"));
    assert_eq!(hash["leaseId"], lease.id());
    assert_eq!(hash["fencingToken"], lease.fencing_token().to_string());
    // One acquisition after the warm-up's: the counter moved once, to the lease's token.
    let counter: Option<String> = support::get(&server, &support::fence_key("slow"));
    assert_eq!(counter, Some(lease.fencing_token().to_string()));
    lease.release().await.unwrap();
}

/// A plain connection to the server on `port`, for polling from a blocking thread.
struct RedisConnection(u16);

impl RedisConnection {
    fn exists(&self, key: &str) -> bool {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.0)).unwrap();
        let mut connection = client.get_connection().unwrap();
        redis::cmd("EXISTS")
            .arg(key)
            .query::<i64>(&mut connection)
            .unwrap()
            == 1
    }
}

/// `leasectl acquire` through a front that answers the first EVALSHAs `-LOADING` (a server
/// loading its data set): retried by default, and failing at once with `MaxRetryAttempts: 0`.
#[test]
fn loading_is_retried_unless_max_retry_attempts_is_zero() {
    let server = RedisServer::start();
    let front = LoadingFront::start(server.port, 2);
    let tool = Leasectl::new();
    let mut command = tool.command();
    command.args(["--endpoint", &front.url(), "acquire", "job", "--json"]);
    complete(command).expect(0);
    assert_eq!(front.left(), 0);
    assert!(support::exists(&server, &support::key("job")));

    let front = LoadingFront::start(server.port, 1);
    let file = r#"{"RedisLeasing": {"MaxRetryAttempts": 0}}"#;
    std::fs::write(tool.dir().join("appsettings.json"), file).unwrap();
    let mut command = tool.command();
    command.args(["--endpoint", &front.url(), "acquire", "other"]);
    let output = complete(command);
    let error = output.failed_with(1);
    assert!(error.to_lowercase().contains("loading"), "{output}");
    assert!(!support::exists(&server, &support::key("other")));
}

/// A TCP front for the server on `upstream` that answers the first `loading` EVALSHA
/// commands itself with `-LOADING`, and forwards everything else.
struct LoadingFront {
    port: u16,
    left: Arc<AtomicU32>,
}

impl LoadingFront {
    fn start(upstream: u16, loading: u32) -> LoadingFront {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let left = Arc::new(AtomicU32::new(loading));
        let counting = left.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                let left = counting.clone();
                std::thread::spawn(move || forward(client, server, &left));
            }
        });
        LoadingFront { port, left }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn left(&self) -> u32 {
        self.left.load(Ordering::SeqCst)
    }
}

/// One client connection, forwarded both ways; while `left` lasts, an EVALSHA is replaced
/// by a script that makes the server itself answer `-LOADING` (so that the answers keep
/// their order with the commands still under way on the connection).
fn forward(mut client: TcpStream, mut server: TcpStream, left: &AtomicU32) {
    let (mut from_server, mut to_client) =
        (server.try_clone().unwrap(), client.try_clone().unwrap());
    std::thread::spawn(move || std::io::copy(&mut from_server, &mut to_client));
    let mut buffer = [0u8; 16 * 1024];
    while let Ok(read @ 1..) = client.read(&mut buffer) {
        let chunk = &buffer[..read];
        let mut out = Vec::with_capacity(read);
        // Whole commands are rewritten; a chunk that is not whole commands goes as it is.
        match commands(chunk) {
            Some(commands) => {
                for command in commands {
                    // The command's name: the first bulk string.
                    let name = command
                        .splitn(3, |b| *b == b'\n')
                        .nth(2)
                        .unwrap_or_default();
                    let evalsha = name.len() >= 7 && name[..7].eq_ignore_ascii_case(b"EVALSHA");
                    let taken = |n: u32| n.checked_sub(1);
                    if evalsha
                        && left
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, taken)
                            .is_ok()
                    {
                        out.extend_from_slice(LOADING_SCRIPT);
                    } else {
                        out.extend_from_slice(command);
                    }
                }
            }
            None => out.extend_from_slice(chunk),
        }
        if server.write_all(&out).is_err() {
            return;
        }
    }
}

/// `EVAL "return redis.error_reply('LOADING ...')" 0` in RESP.
const LOADING_SCRIPT: &[u8] = b"*3\r\n$4\r\nEVAL\r\n$74\r\nreturn redis.error_reply('LOADING Redis is loading the dataset in memory')\r\n$1\r\n0\r\n";

/// The RESP commands (arrays of bulk strings) that make up `chunk`, when it is whole ones.
fn commands(chunk: &[u8]) -> Option<Vec<&[u8]>> {
    let line = |at: usize| -> Option<(usize, usize)> {
        let end = at + chunk.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        let number = std::str::from_utf8(chunk.get(at + 1..end)?)
            .ok()?
            .parse()
            .ok()?;
        Some((number, end + 2))
    };
    let (mut commands, mut at) = (Vec::new(), 0);
    while at < chunk.len() {
        let start = at;
        if chunk[at] != b'*' {
            return None;
        }
        let (items, mut next) = line(at)?;
        for _ in 0..items {
            if chunk.get(next) != Some(&b'$') {
                return None;
            }
            let (len, data) = line(next)?;
            next = data + len + 2;
        }
        if next > chunk.len() {
            return None;
        }
        commands.push(&chunk[start..next]);
        at = next;
    }
    Some(commands)
}
