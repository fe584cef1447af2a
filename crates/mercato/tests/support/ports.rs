//! Ports for the processes tests start. Tests run in parallel, as processes
//! of their own, and each starts servers on ports it picks before the server
//! binds them; two tests must never pick the same one. A pick is claimed by
//! binding an abstract Unix socket named after the port: at most one process
//! holds it, the kernel frees it when its holder exits however it ends, and
//! it leaves no file behind.

#![allow(dead_code)]

use std::net::TcpListener;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};

/// A port this test process holds until the claim is dropped.
pub struct PortClaim {
    pub port: u16,
    _claim: UnixListener,
}

/// A free port below the kernel's ephemeral range (32768–60999 on Linux): a
/// port taken from that range is free when picked but may become the local
/// port of some outgoing connection before the service binds it.
pub fn claim_port() -> PortClaim {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        let port = 20_000 + (h.finish() % 12_000) as u16;
        let Ok(name) = SocketAddr::from_abstract_name(format!("mercato-test-port-{port}")) else {
            continue;
        };
        let Ok(claim) = UnixListener::bind_addr(&name) else {
            continue; // another test holds it
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return PortClaim {
                port,
                _claim: claim,
            };
        }
    }
}
