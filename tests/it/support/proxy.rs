//! A TCP proxy on loopback between clients and one `redis-server`, for injecting network
//! faults where this kernel has no `tc netem`: added latency, cut connections, refused new
//! connections, and a blackhole (connections accepted, nothing forwarded). It listens on
//! 127.0.0.1 and forwards to 127.0.0.1 only.
//!
//! One thread accepts; each connection has a thread per direction (blocking I/O keeps the
//! fault controls simple: a thread holds a chunk while the proxy is blackholed, sleeps out the
//! latency, and stops when its connection's generation is cut).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A proxy in front of the server on `127.0.0.1:upstream`; stops (and cuts everything) on drop.
pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
    /// Wakes the forwarding threads held by a blackhole when it ends or a cut comes.
    changed: Condvar,
    stopped: AtomicBool,
    next_id: AtomicU64,
}

#[derive(Default)]
struct State {
    latency: Duration,
    refuse: bool,
    blackhole: bool,
    /// Raised by every cut: a connection of an older generation is closed.
    generation: u64,
    /// Both sockets of every open connection, to shut them down on a cut.
    open: HashMap<u64, (TcpStream, TcpStream)>,
    /// Client sockets accepted while blackholed: never connected upstream.
    swallowed: Vec<TcpStream>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream)),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stopped: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
        });
        let accepting = shared.clone();
        std::thread::Builder::new()
            .name(format!("proxy-{port}"))
            .spawn(move || accept(listener, accepting))
            .expect("start the proxy thread");
        Proxy { port, shared }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Delays every chunk forwarded, in each direction, by `latency` (zero: none).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// Closes every open connection now.
    pub fn cut(&self) {
        self.shared.cut(&mut self.shared.lock());
    }

    /// While on, new connections are closed as soon as they are accepted.
    pub fn set_refuse(&self, refuse: bool) {
        self.shared.lock().refuse = refuse;
    }

    /// While on, connections are accepted but nothing is forwarded either way; turning it off
    /// cuts the connections it held, as a partition that heals with reset connections.
    pub fn set_blackhole(&self, on: bool) {
        let mut state = self.shared.lock();
        state.blackhole = on;
        if !on {
            self.shared.cut(&mut state);
        }
    }

    /// Ends every fault (latency, refusal, blackhole).
    pub fn heal(&self) {
        self.set_latency(Duration::ZERO);
        self.set_refuse(false);
        self.set_blackhole(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accepting thread, which then sees `stopped`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cut(&self, state: &mut State) {
        state.generation += 1;
        for (_, (client, server)) in state.open.drain() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
        for client in state.swallowed.drain(..) {
            let _ = client.shutdown(Shutdown::Both);
        }
        self.changed.notify_all();
    }
}

fn accept(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let (refuse, blackhole) = {
            let state = shared.lock();
            (state.refuse, state.blackhole)
        };
        if refuse {
            continue; // dropped: closed at once
        }
        if blackhole {
            shared.lock().swallowed.push(client);
            continue;
        }
        let Ok(server) = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(1))
        else {
            continue; // the server is down: so is the connection
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let generation = {
            let mut state = shared.lock();
            let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) else {
                continue;
            };
            state.open.insert(id, (c, s));
            state.generation
        };
        for (from, to) in [(&client, &server), (&server, &client)] {
            let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                break;
            };
            let pumping = shared.clone();
            let spawned = std::thread::Builder::new()
                .name("proxy-pump".into())
                .spawn(move || pump(from, to, &pumping, id, generation));
            if spawned.is_err() {
                shared.lock().open.remove(&id);
                break;
            }
        }
    }
}

/// Forwards one direction of connection `id` until either side closes or it is cut.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared, id: u64, generation: u64) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let arrived = Instant::now();
        let latency = {
            let mut state = shared.lock();
            while state.blackhole && state.generation == generation {
                state = shared
                    .changed
                    .wait_timeout(state, Duration::from_millis(100))
                    .map(|(state, _)| state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner().0);
            }
            if state.generation != generation {
                break;
            }
            state.latency
        };
        if let Some(left) = (arrived + latency).checked_duration_since(Instant::now()) {
            std::thread::sleep(left);
        }
        if shared.lock().generation != generation || to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    shared.lock().open.remove(&id);
}
