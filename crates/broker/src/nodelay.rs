//! TCP_NODELAY and the accept backlog for sockets rumqttd accepts.
//!
//! rumqttd binds its listeners itself and never sets TCP_NODELAY on accepted sockets, so QoS 0
//! deliveries wait on Nagle's algorithm and delayed ACKs (5-40 ms). On Linux an accepted socket
//! inherits TCP_NODELAY from its listening socket. The listener lives in this process, so we
//! find its descriptor in `/proc/self/fd` by its local address and set the option there, before
//! any client connects.
//!
//! rumqttd's listeners also get tokio's accept backlog of 128 connections, and its accept loop
//! sleeps on tokio's 1 ms timer after every accept: a storm of thousands of connections
//! overflows the backlog, and each connection dropped there waits a second for its SYN to be
//! sent again (sensors-10k: 7,079 overflows, the last device connected after 2.15 s). Calling
//! `listen` again on the listening socket raises the backlog (the kernel caps it at
//! `net.core.somaxconn`).

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};

use socket2::SockRef;

/// The descriptors of this process that are sockets.
fn sockets() -> std::io::Result<Vec<RawFd>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")?.flatten() {
        let fd = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<RawFd>().ok());
        let is_socket = std::fs::read_link(entry.path())
            .map(|t| t.to_string_lossy().starts_with("socket:"))
            .unwrap_or(false);
        if let (Some(fd), true) = (fd, is_socket) {
            out.push(fd);
        }
    }
    Ok(out)
}

/// The first socket of this process for which `pick` answers true.
fn find(
    mut pick: impl FnMut(SockRef<'_>) -> std::io::Result<bool>,
) -> std::io::Result<Option<RawFd>> {
    for fd in sockets()? {
        if with_socket(fd, &mut pick)? {
            return Ok(Some(fd));
        }
    }
    Ok(None)
}

fn local(s: &SockRef<'_>) -> Option<SocketAddr> {
    s.local_addr().ok().and_then(|a| a.as_socket())
}

/// The accept backlog asked for on every listener (the kernel caps it at `somaxconn`).
pub const LISTEN_BACKLOG: i32 = 4096;

/// Find the listening socket bound to `addr` in this process, raise its accept backlog to
/// [`LISTEN_BACKLOG`] and, if `set_nodelay`, set TCP_NODELAY on it. Returns whether such a
/// socket was found.
pub fn find_listener(addr: SocketAddr, set_nodelay: bool) -> std::io::Result<bool> {
    let found = find(|s| {
        if !(s.is_listener().unwrap_or(false) && local(&s) == Some(addr)) {
            return Ok(false);
        }
        s.listen(LISTEN_BACKLOG)?;
        if set_nodelay {
            s.set_nodelay(true)?;
        }
        Ok(true)
    })?;
    Ok(found.is_some())
}

/// The TCP socket of this process whose local address is `local` and peer is `peer`: for tests
/// that check what an accepted socket inherited.
pub fn find_accepted(local_addr: SocketAddr, peer: SocketAddr) -> std::io::Result<Option<RawFd>> {
    find(|s| {
        Ok(local(&s) == Some(local_addr)
            && s.peer_addr().ok().and_then(|a| a.as_socket()) == Some(peer))
    })
}

/// Whether the TCP socket behind `fd` (of this process) has TCP_NODELAY set.
pub fn socket_has_nodelay(fd: RawFd) -> std::io::Result<bool> {
    with_socket(fd, |s| s.nodelay())
}

#[allow(unsafe_code)]
fn with_socket<T>(
    fd: RawFd,
    f: impl FnOnce(SockRef<'_>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    // SAFETY: the descriptor is only borrowed for the duration of a few getsockopt/setsockopt
    // calls. If another thread closed it meanwhile and the number was reused, these calls act on
    // (or fail on) the new descriptor: the address checks then fail and nothing is set.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    f(SockRef::from(&fd))
}
