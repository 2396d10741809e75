//! TCP_NODELAY for sockets rumqttd accepts.
//!
//! rumqttd binds its listeners itself and never sets TCP_NODELAY on accepted sockets, so QoS 0
//! deliveries wait on Nagle's algorithm and delayed ACKs (5-40 ms). On Linux an accepted socket
//! inherits TCP_NODELAY from its listening socket. The listener lives in this process, so we
//! find its descriptor in `/proc/self/fd` by its local address and set the option there, before
//! any client connects.

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};

use socket2::SockRef;

/// Find the listening socket bound to `addr` in this process and, if `set_nodelay`, set
/// TCP_NODELAY on it. Returns whether such a socket was found.
pub fn find_listener(addr: SocketAddr, set_nodelay: bool) -> std::io::Result<bool> {
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(entry) = entry else { continue };
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<RawFd>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .map(|t| t.to_string_lossy().starts_with("socket:"))
            .unwrap_or(false);
        if !is_socket {
            continue;
        }
        if with_socket(fd, |s| {
            let listening = s.is_listener().unwrap_or(false);
            let here = s.local_addr().ok().and_then(|a| a.as_socket()) == Some(addr);
            if listening && here {
                if set_nodelay {
                    s.set_nodelay(true)?;
                }
                Ok(true)
            } else {
                Ok(false)
            }
        })? {
            return Ok(true);
        }
    }
    Ok(false)
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
    // (or fail on) the new descriptor: the address check above then fails and nothing is set.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    f(SockRef::from(&fd))
}

/// All TCP sockets of this process whose local address is `local` and peer is `peer`: for tests
/// that check what an accepted socket inherited.
pub fn find_accepted(local: SocketAddr, peer: SocketAddr) -> std::io::Result<Option<RawFd>> {
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(entry) = entry else { continue };
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<RawFd>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .map(|t| t.to_string_lossy().starts_with("socket:"))
            .unwrap_or(false);
        if is_socket
            && with_socket(fd, |s| {
                Ok(
                    s.local_addr().ok().and_then(|a| a.as_socket()) == Some(local)
                        && s.peer_addr().ok().and_then(|a| a.as_socket()) == Some(peer),
                )
            })?
        {
            return Ok(Some(fd));
        }
    }
    Ok(None)
}
