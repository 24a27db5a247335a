//! Sockets inside the lab's namespaces, made by this process: a short-lived
//! thread joins the namespace (`setns`) and creates the socket, which stays
//! in that namespace for its whole life wherever it is then used. Used to
//! switch on a router's forwarding and for the control checks that show
//! each NAT behaves as its kind says before any node starts.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::net::{TcpListener, TcpSocket};

use super::topo::{Host, NatKind};

/// Port of the probe listener on the relay's host.
const PROBE_PORT: u16 = 7000;

/// Local ports the private hosts probe from (not the nodes' 4001).
const FROM_PORTS: [u16; 2] = [7001, 7002];

/// How long a connect or accept that should work may take.
const WORKS: Duration = Duration::from_secs(3);

/// How long an unsolicited connect is given before it counts as dropped.
const DROPPED: Duration = Duration::from_secs(2);

/// Runs `f` on a thread that has joined network namespace `ns`, and returns
/// what it made (a socket made there stays there).
fn in_netns<T, F>(ns: &str, f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).with_context(|| format!("cannot open namespace {path}"))?;
    let joined = std::thread::spawn(move || {
        // SAFETY: setns only switches this (fresh, short-lived) thread's
        // network namespace; the fd is valid while `file` lives.
        let rc = unsafe { nix::libc::setns(file.as_raw_fd(), nix::libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        f()
    })
    .join();
    match joined {
        Ok(r) => r.with_context(|| format!("in namespace {ns}")),
        Err(_) => bail!("the thread working in namespace {ns} panicked"),
    }
}

/// Sets `net.ipv4.ip_forward=1` in namespace `ns` (a router) and reads it
/// back. Network sysctls belong to the namespace of the thread that opens
/// them, so the host's own setting is never touched.
pub fn enable_forwarding(ns: &str) -> anyhow::Result<()> {
    const KEY: &str = "/proc/sys/net/ipv4/ip_forward";
    let value = in_netns(ns, || {
        std::fs::write(KEY, "1")?;
        std::fs::read_to_string(KEY)
    })?;
    if value.trim() != "1" {
        bail!("{KEY} reads {value:?} after writing 1");
    }
    Ok(())
}

/// A TCP listener on `addr` inside namespace `ns`.
async fn listen_in(ns: &str, addr: SocketAddrV4) -> anyhow::Result<TcpListener> {
    let std_listener = in_netns(ns, move || {
        let l = std::net::TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
    .with_context(|| format!("cannot listen on {addr}"))?;
    Ok(TcpListener::from_std(std_listener)?)
}

/// Connects from namespace `ns` (from `from` when given) to `to`, giving up after `limit`.
async fn connect_from(
    ns: &str,
    from: Option<SocketAddrV4>,
    to: SocketAddrV4,
    limit: Duration,
) -> anyhow::Result<tokio::net::TcpStream> {
    let socket = in_netns(ns, move || {
        let s = TcpSocket::new_v4()?;
        s.set_reuseaddr(true)?;
        if let Some(from) = from {
            s.bind(SocketAddr::V4(from))?;
        }
        Ok(s)
    })?;
    match tokio::time::timeout(limit, socket.connect(SocketAddr::V4(to))).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(e).with_context(|| format!("connect to {to}")),
        Err(_) => bail!("connect to {to}: no answer within {limit:?}"),
    }
}

/// Where `listener`'s next connection comes from.
async fn accept_from(listener: &TcpListener) -> anyhow::Result<SocketAddr> {
    match tokio::time::timeout(WORKS, listener.accept()).await {
        Ok(Ok((_, peer))) => Ok(peer),
        Ok(Err(e)) => Err(e).context("accept"),
        Err(_) => bail!("no connection arrived within {WORKS:?}"),
    }
}

/// What the control checks saw, for the log and the CSV.
#[derive(Clone, Debug, Default)]
pub struct ControlReport {
    /// One line per check that passed.
    pub passed: Vec<String>,
}

/// Proves the lab is what it claims before nodes start:
/// - every host reaches a listener on `relay`'s address, and a private
///   host is seen there from its router's `wan` address (masquerade);
/// - a cone NAT keeps the source port, a symmetric one replaces it;
/// - an unsolicited connect from another host to a private host's router
///   (where a listener waits, reachable from the LAN side) fails.
///
/// Fails with what went wrong: a lab that does not NAT or filter would
/// make every figure after it meaningless.
pub async fn control_checks(relay: &Host, hosts: &[Host]) -> anyhow::Result<ControlReport> {
    let mut report = ControlReport::default();
    let probe = SocketAddrV4::new(relay.ip, PROBE_PORT);
    let listener = listen_in(&relay.netns, probe).await?;
    for h in hosts {
        let mut ports = Vec::new();
        for port in FROM_PORTS {
            let from = SocketAddrV4::new(h.ip, port);
            let _stream = connect_from(&h.netns, Some(from), probe, WORKS)
                .await
                .with_context(|| format!("{} cannot reach the internet segment", h.name))?;
            let seen = accept_from(&listener)
                .await
                .with_context(|| format!("{}'s probe did not reach {probe}", h.name))?;
            if seen.ip() != h.public_ip() {
                bail!(
                    "{} connected from {from} and was seen from {seen}, not from {}: \
                     its router does not masquerade",
                    h.name,
                    h.public_ip()
                );
            }
            ports.push((port, seen.port()));
            if h.kind != NatKind::Symmetric {
                // One probe shows a preserved port; symmetric needs two.
                break;
            }
        }
        match h.kind {
            NatKind::Cone | NatKind::None if ports.iter().any(|(a, b)| a != b) => bail!(
                "{} ({}) did not keep its source port: {ports:?} (local, seen)",
                h.name,
                h.kind
            ),
            // Two preserved ports in a row happen by chance about once in 4·10^9.
            NatKind::Symmetric if ports.iter().all(|(a, b)| a == b) => bail!(
                "{}'s symmetric NAT kept its source ports {ports:?}: it is not fully random",
                h.name
            ),
            _ => {}
        }
        report.passed.push(format!(
            "{} ({}) reaches {probe}, seen from {} with ports {ports:?} (local, seen)",
            h.name,
            h.kind,
            h.public_ip()
        ));
    }
    drop(listener);

    let checks = hosts
        .iter()
        .filter_map(|target| {
            let router = target.router.as_ref()?;
            // Another private host when there is one (the other NAT's
            // traffic then leaves through its own router), else the relay.
            let from = hosts
                .iter()
                .find(|h| h.name != target.name && h.router.is_some())
                .unwrap_or(relay);
            Some(unsolicited_is_dropped(target, router, from))
        })
        .collect::<Vec<_>>();
    for r in futures::future::join_all(checks).await {
        report.passed.push(r?);
    }
    Ok(report)
}

/// A listener on the target's router (port `FROM_PORTS[0]`, which the
/// target's own probe has just mapped) answers from the LAN side but not to
/// `from` on the internet side.
async fn unsolicited_is_dropped(
    target: &Host,
    router: &super::topo::Router,
    from: &Host,
) -> anyhow::Result<String> {
    let port = FROM_PORTS[0];
    let listener = listen_in(
        &router.netns,
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port),
    )
    .await
    .with_context(|| format!("{}'s router", target.name))?;
    // Reachable from inside: so a failure from outside is the firewall's doing.
    let lan_side = SocketAddrV4::new(router.lan, port);
    let _inside = connect_from(&target.netns, None, lan_side, WORKS)
        .await
        .with_context(|| format!("{} cannot reach its own router's probe", target.name))?;
    accept_from(&listener).await?;
    let wan_side = SocketAddrV4::new(router.wan, port);
    match connect_from(&from.netns, None, wan_side, DROPPED).await {
        Ok(_) => bail!(
            "{} reached {}'s router at {wan_side} unsolicited: its firewall lets \
             inbound connections through",
            from.name,
            target.name
        ),
        Err(e) => Ok(format!(
            "{} -> {}'s router {wan_side} unsolicited: blocked ({e:#})",
            from.name, target.name
        )),
    }
}
