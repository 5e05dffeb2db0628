//! A tiny fault-injecting TCP proxy, **an allowed fake** (STYLE habit 11): real services do not
//! answer 503 or cut connections on demand, so this proxy sits between a client and a real
//! service and injects those faults. Everything it passes through is the real service's answer.
//!
//! Faults are consumed one per accepted connection, in order; once the plan is empty the proxy
//! forwards bytes both ways unchanged. [`FaultProxy::set_down`] makes it refuse service entirely
//! (every connection cut at once), like a killed service; [`FaultProxy::cut_after`] lets a byte
//! budget through (client to server, over all connections) and then behaves as down.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to do to one connection.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Read the request head, answer `503 Service Unavailable`, close.
    Http503,
    /// Close the connection without answering.
    Cut,
}

#[derive(Default)]
struct State {
    plan: Mutex<VecDeque<Fault>>,
    down: AtomicBool,
    /// Bytes still allowed client->server before going down (u64::MAX: unlimited).
    budget: AtomicU64,
    faults_served: AtomicU64,
    connections: AtomicU64,
    /// Called once when the byte budget runs out (for example: kill the real service).
    on_down: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl State {
    fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        let hook = self.on_down.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = hook {
            h();
        }
    }
}

/// A running proxy (it stops when dropped).
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Start a proxy to `upstream` (`host:port`) with a plan of faults.
    pub async fn start(upstream: &str, plan: Vec<Fault>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let state = Arc::new(State {
            plan: Mutex::new(plan.into()),
            budget: AtomicU64::new(u64::MAX),
            ..Default::default()
        });
        let st = state.clone();
        let upstream = upstream.to_string();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    st.connections.fetch_add(1, Ordering::SeqCst);
                    if st.down.load(Ordering::SeqCst) {
                        return; // drop = cut
                    }
                    let fault = st.plan.lock().ok().and_then(|mut p| p.pop_front());
                    match fault {
                        Some(Fault::Cut) => {
                            st.faults_served.fetch_add(1, Ordering::SeqCst);
                        }
                        Some(Fault::Http503) => {
                            st.faults_served.fetch_add(1, Ordering::SeqCst);
                            answer_503(client).await;
                        }
                        None => pass(client, &upstream, &st).await,
                    }
                });
            }
        });
        FaultProxy { addr, state, task }
    }

    /// `127.0.0.1:port`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Cut every connection (true) or serve again (false).
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
        if !down {
            self.state.budget.store(u64::MAX, Ordering::SeqCst);
        }
    }

    /// Let `bytes` more bytes through (client to server), then go down.
    pub fn cut_after(&self, bytes: u64) {
        self.state.budget.store(bytes, Ordering::SeqCst);
    }

    /// Run `f` once, at the moment the byte budget of [`FaultProxy::cut_after`] runs out.
    pub fn on_down(&self, f: impl FnOnce() + Send + 'static) {
        if let Ok(mut h) = self.state.on_down.lock() {
            *h = Some(Box::new(f));
        }
    }

    /// Faults injected so far.
    pub fn faults_served(&self) -> u64 {
        self.state.faults_served.load(Ordering::SeqCst)
    }
}

async fn answer_503(mut client: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 64 * 1024 {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let _ = client
        .write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
    let _ = client.shutdown().await;
}

async fn pass(client: TcpStream, upstream: &str, st: &Arc<State>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let st2 = st.clone();
    let up = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            if st2.down.load(Ordering::SeqCst) {
                return;
            }
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let left = st2.budget.load(Ordering::SeqCst);
            if left != u64::MAX {
                if (n as u64) >= left {
                    st2.budget.store(0, Ordering::SeqCst);
                    st2.go_down();
                    return;
                }
                st2.budget.store(left - n as u64, Ordering::SeqCst);
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let st3 = st.clone();
    let down = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            if st3.down.load(Ordering::SeqCst) {
                return;
            }
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if cw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Whichever side ends first ends the connection (both halves are dropped).
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// What an [`EndlessOrigin`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endless {
    /// Every request: `200 OK` and a body that never ends.
    Body,
    /// A registry whose token service never ends: `/v2/...` answers `401` with a bearer challenge
    /// whose realm is `/token` on this same origin, and `/token` answers an endless body.
    Token,
}

/// An HTTP origin whose answers never end: `200 OK`, no `Content-Length`, `Connection: close`,
/// then bytes until the client goes away. **An allowed fake** (STYLE habit 11): no real server
/// sends an endless body on demand, and this is exactly the fault a reader must survive in
/// bounded memory. Blocking threads, so synchronous tests can use it.
pub struct EndlessOrigin {
    /// Where clients connect.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
}

impl EndlessOrigin {
    /// Listen on `127.0.0.1:<free port>`.
    pub fn start(mode: Endless) -> EndlessOrigin {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind endless origin");
        let addr = l.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let (st, rq) = (stop.clone(), requests.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut c) = conn else { continue };
                rq.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match c.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&head);
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    if mode == Endless::Token && !path.starts_with("/token") {
                        let _ = write!(
                            c,
                            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{addr}/token\",service=\"endless\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                        return;
                    }
                    if c
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n{\"schemaVersion\":2,\"padding\":\"",
                        )
                        .is_err()
                    {
                        return;
                    }
                    let chunk = vec![b'a'; 64 * 1024];
                    while c.write_all(&chunk).is_ok() {}
                });
            }
        });
        EndlessOrigin {
            addr,
            stop,
            requests,
        }
    }

    /// `127.0.0.1:port`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Requests (connections) served so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for EndlessOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}
