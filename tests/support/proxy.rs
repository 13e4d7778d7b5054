//! A TCP proxy on 127.0.0.1 that a test can cut: one gateway's link to Redis refused (the
//! port closed, every connection reset) or blackholed (connections stay open, nothing moves,
//! as when packets are dropped), then healed. A blackhole holds the bytes rather than losing
//! them, as TCP's retransmission would: on healing they arrive late, in order.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the link does right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Pass,
    /// Nothing listens; existing connections are reset.
    Refused,
    /// Connections are accepted and kept, but no byte crosses.
    Blackholed,
}

/// The proxy; stops when dropped.
pub struct TcpCut {
    addr: SocketAddr,
    target: SocketAddr,
    state: Arc<watch::Sender<Link>>,
    acceptor: Option<JoinHandle<()>>,
}

impl TcpCut {
    /// Proxies a fresh loopback port to `target`.
    pub async fn start(target: SocketAddr) -> TcpCut {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)));
        let addr = listener.local_addr().expect("proxy addr");
        let (state, _) = watch::channel(Link::Pass);
        let mut cut = TcpCut {
            addr,
            target,
            state: Arc::new(state),
            acceptor: None,
        };
        cut.acceptor = Some(cut.accept_on(listener));
        cut
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the port and resets every connection: connects are refused.
    pub fn refuse(&mut self) {
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.abort();
        }
        self.state.send_replace(Link::Refused);
    }

    /// Keeps every connection open but moves no byte, new connections included.
    pub fn blackhole(&mut self) {
        self.state.send_replace(Link::Blackholed);
    }

    /// Back to passing bytes (reopening the port if it was refused).
    pub fn heal(&mut self) {
        if self.acceptor.is_none() {
            self.acceptor = Some(self.accept_on(bind(self.addr)));
        }
        self.state.send_replace(Link::Pass);
    }

    fn accept_on(&self, listener: TcpListener) -> JoinHandle<()> {
        let (target, state) = (self.target, self.state.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, target, state.subscribe()));
            }
        })
    }
}

impl Drop for TcpCut {
    fn drop(&mut self) {
        self.refuse();
    }
}

/// A listener on `addr` that can take a port back at once after it was closed.
fn bind(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.bind(addr).expect("proxy binds");
    socket.listen(128).expect("listen")
}

/// One connection: bytes both ways while the link passes, held while it is blackholed, the
/// connection dropped once it is refused.
async fn relay(client: TcpStream, target: SocketAddr, state: watch::Receiver<Link>) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = pump(client_read, server_write, state.clone()) => {}
        () = pump(server_read, client_write, state.clone()) => {}
        () = refused(state) => {}
    }
}

async fn pump(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    mut state: watch::Receiver<Link>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if state.wait_for(|link| *link == Link::Pass).await.is_err() {
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        // Bytes read just as the link was cut wait for it to heal, like a retransmission.
        if state.wait_for(|link| *link == Link::Pass).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

async fn refused(mut state: watch::Receiver<Link>) {
    let _ = state.wait_for(|link| *link == Link::Refused).await;
}
