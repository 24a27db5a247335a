//! Network-namespace testbeds (root only): every node in a Linux network
//! namespace of its own, wired by a veth pair to one bridge that lives in a
//! hub namespace of the testbed's own, with per-node upload and download caps
//! by `tc tbf`.
//!
//! Network safety: nothing is created in the host's namespace. The node
//! namespaces have one interface (plus `lo`) with an address in [`SUBNET`]
//! and no default route, and the hub has no address at all, so no packet
//! can leave the testbed.
//!
//! Cleanup: deleting a namespace destroys its interfaces (and so the veth
//! pair and the bridge). [`Testbed::teardown`] kills whatever still runs in
//! the namespaces, then deletes them; `Drop` calls it on early return, error
//! and panic. Names carry the creating process's PID (`kswt-<pid>-<seq>-…`),
//! so [`sweep_stale`] can remove what a crashed (SIGKILLed) run left behind
//! without touching a live run's testbed, and parallel runs never clash.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::ipcmd;
use crate::tcpstats::TcpCounters;
use crate::units::{ByteSize, Rate};

/// Every namespace a testbed creates starts with this.
pub const NAME_BASE: &str = "kswt-";

/// The private subnet nodes get their addresses from; it exists only inside
/// the testbed's namespaces, so parallel testbeds can all use it.
pub const SUBNET: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 77, 0, 0), 16);

/// Most nodes one testbed holds (addresses stay well inside [`SUBNET`]).
pub const MAX_NODES: usize = 1000;

/// The bridge, inside the hub namespace.
const BRIDGE: &str = "br0";

/// A node's interface, inside its namespace.
const NODE_IF: &str = "eth0";

/// How long teardown waits for killed processes to leave a namespace.
const KILL_WAIT: Duration = Duration::from_secs(3);

/// Numbers testbeds within one process (tests run several in parallel).
static SEQ: AtomicU32 = AtomicU32::new(0);

/// Token-bucket settings for every `tc tbf` cap of a testbed.
///
/// The burst is how many bytes may pass at line rate after an idle spell;
/// it must hold at least one full (GSO-split) packet and ideally `rate/HZ`.
/// The latency bounds the queue (`limit = rate·latency + burst`): longer
/// means fewer drops but later requests behind a saturated uplink.
#[derive(Clone, Copy, Debug)]
pub struct Shaping {
    /// `tbf burst`.
    pub burst: ByteSize,
    /// `tbf latency`.
    pub latency: Duration,
}

impl Default for Shaping {
    /// 32 KiB (8 ms at 32 Mbit/s, negligible against seconds of transfer) and 50 ms.
    fn default() -> Self {
        Self {
            burst: ByteSize(32 * 1024),
            latency: Duration::from_millis(50),
        }
    }
}

/// A node's caps: `None` is uncapped.
#[derive(Clone, Copy, Debug, Default)]
pub struct Caps {
    /// What the node may send (tbf on its own interface).
    pub upload: Option<Rate>,
    /// What the node may receive (tbf on its bridge port, egress towards it).
    pub download: Option<Rate>,
}

/// One node's place in the testbed.
#[derive(Clone, Debug)]
pub struct Slot {
    /// The node's name (`seeder`, `leecher-3`).
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its address in [`SUBNET`].
    pub ip: Ipv4Addr,
}

impl Slot {
    /// `--listen` for a node here: its own address, a fixed TCP port (each
    /// namespace has its own port space).
    pub fn listen_addr(&self) -> String {
        format!("/ip4/{}/tcp/4001", self.ip)
    }

    /// Checks that a printed multiaddr is this node's own, ending in `/p2p/<id>`.
    pub fn check_addr(&self, addr: &str) -> anyhow::Result<String> {
        let addr = addr.trim();
        let prefix = format!("{}/p2p/", self.listen_addr());
        match addr.strip_prefix(&prefix) {
            Some(peer) if !peer.is_empty() && !peer.contains(['/', ' ']) => Ok(addr.to_string()),
            _ => bail!(
                "{} printed {addr:?}, not an address starting with {prefix}",
                self.name
            ),
        }
    }
}

/// A bridge namespace and the node namespaces wired to it; removed on drop.
#[derive(Debug)]
pub struct Testbed {
    prefix: String,
    shaping: Shaping,
    /// Every namespace created, hub first; torn down in reverse.
    namespaces: Vec<String>,
    slots: Vec<Slot>,
}

impl Testbed {
    /// Sweeps namespaces left by dead runs, then creates the hub namespace
    /// with its bridge. Fails unless running as root.
    pub fn create(shaping: Shaping) -> anyhow::Result<Self> {
        if !is_root() {
            bail!("namespace mode needs root (ip netns, tc); run as root or use loopback mode");
        }
        if shaping.burst.0 < 2048 {
            bail!(
                "tbf burst {} is too small: it must hold a full packet (use at least 2KiB)",
                shaping.burst
            );
        }
        for name in sweep_stale()? {
            eprintln!("testnet: removed stale namespace {name} of a run that is gone");
        }
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let mut bed = Self {
            prefix: format!("{NAME_BASE}{}-{seq}-", std::process::id()),
            shaping,
            namespaces: Vec::new(),
            slots: Vec::new(),
        };
        let hub = bed.add_namespace("hub")?;
        ipcmd::ip(["-n", &hub, "link", "add", BRIDGE, "type", "bridge"])?;
        ipcmd::ip(["-n", &hub, "link", "set", BRIDGE, "up"])?;
        Ok(bed)
    }

    /// This testbed's namespace name prefix (`kswt-<pid>-<seq>-`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Namespaces created so far, hub first.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// The nodes added so far.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Creates a namespace for node `name`, wires it to the bridge, gives it
    /// the next address and applies its caps.
    pub fn add_node(&mut self, name: &str, caps: Caps) -> anyhow::Result<Slot> {
        let k = self.slots.len() + 1;
        if k > MAX_NODES {
            bail!("a testbed holds at most {MAX_NODES} nodes");
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            bail!("node name {name:?} must be ASCII letters, digits and '-'");
        }
        let netns = self.add_namespace(name)?;
        let hub = self.namespaces[0].clone();
        let port = format!("p{k}");
        // Created in the hub with the peer end moved straight into the node's
        // namespace: no interface ever appears in the host's namespace.
        ipcmd::ip([
            "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", NODE_IF, "netns",
            &netns,
        ])?;
        ipcmd::ip(["-n", &hub, "link", "set", &port, "master", BRIDGE, "up"])?;
        let ip = node_ip(k);
        let cidr = format!("{ip}/{}", SUBNET.1);
        ipcmd::ip(["-n", &netns, "addr", "add", &cidr, "dev", NODE_IF])?;
        ipcmd::ip(["-n", &netns, "link", "set", NODE_IF, "up"])?;
        ipcmd::ip(["-n", &netns, "link", "set", "lo", "up"])?;
        if let Some(rate) = caps.upload {
            self.cap(&netns, NODE_IF, rate)
                .with_context(|| format!("cannot cap {name}'s upload"))?;
        }
        if let Some(rate) = caps.download {
            self.cap(&hub, &port, rate)
                .with_context(|| format!("cannot cap {name}'s download"))?;
        }
        let slot = Slot {
            name: name.to_string(),
            netns,
            ip,
        };
        self.slots.push(slot.clone());
        Ok(slot)
    }

    /// What each node's caps have done so far, in the order nodes were
    /// added: bytes sent and packets dropped by the tbf on its uplink and on
    /// its downlink (zeros where a direction is uncapped). Drops make TCP
    /// back off, so many of them mean the queue (`latency`) or `burst` is
    /// too small; bytes sent count every frame that crossed the cap,
    /// retransmissions and headers included.
    pub fn caps_stats(&self) -> anyhow::Result<Vec<NodeCaps>> {
        let hub = &self.namespaces[0];
        let mut out = Vec::with_capacity(self.slots.len());
        for (k, slot) in self.slots.iter().enumerate() {
            let up = ipcmd::tc(["-s", "-n", &slot.netns, "qdisc", "show", "dev", NODE_IF])?;
            let port = format!("p{}", k + 1);
            let down = ipcmd::tc(["-s", "-n", hub, "qdisc", "show", "dev", &port])?;
            out.push(NodeCaps {
                name: slot.name.clone(),
                up: TbfStats::parse(&up),
                down: TbfStats::parse(&down),
            });
        }
        Ok(out)
    }

    /// TCP's counters in each node's namespace so far, with the node's name,
    /// in the order nodes were added.
    pub fn tcp_stats(&self) -> anyhow::Result<Vec<(String, TcpCounters)>> {
        self.slots
            .iter()
            .map(|slot| Ok((slot.name.clone(), TcpCounters::read(&slot.netns)?)))
            .collect()
    }

    /// Kills every process still inside the testbed's namespaces and deletes
    /// them (their interfaces go with them). Safe to call twice.
    pub fn teardown(&mut self) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        while let Some(ns) = self.namespaces.pop() {
            if let Err(e) = remove_namespace(&ns) {
                errors.push(format!("{e:#}"));
            }
        }
        self.slots.clear();
        if !errors.is_empty() {
            bail!("testbed teardown: {}", errors.join("; "));
        }
        Ok(())
    }

    fn add_namespace(&mut self, role: &str) -> anyhow::Result<String> {
        let name = format!("{}{role}", self.prefix);
        ipcmd::ip(["netns", "add", &name])?;
        self.namespaces.push(name.clone());
        Ok(name)
    }

    fn cap(&self, netns: &str, dev: &str, rate: Rate) -> anyhow::Result<()> {
        let latency = format!("{}ms", self.shaping.latency.as_millis().max(1));
        ipcmd::tc([
            "-n",
            netns,
            "qdisc",
            "add",
            "dev",
            dev,
            "root",
            "tbf",
            "rate",
            &rate.tc(),
            "burst",
            &self.shaping.burst.0.to_string(),
            "latency",
            &latency,
        ])?;
        Ok(())
    }
}

impl Drop for Testbed {
    /// Last line of defence (early return, `?`, panic): remove everything.
    fn drop(&mut self) {
        if self.namespaces.is_empty() {
            return;
        }
        if let Err(e) = self.teardown() {
            eprintln!("testnet: warning: {e:#}");
        }
    }
}

/// Whether this process runs as root (namespace mode needs it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Names of the network namespaces that exist now.
pub fn list_namespaces() -> anyhow::Result<Vec<String>> {
    let out = ipcmd::ip(["netns", "list"])?;
    // Lines look like `name` or `name (id: 3)`.
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect())
}

/// Removes testbed namespaces whose creating process is gone; returns their names.
pub fn sweep_stale() -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in list_namespaces()? {
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue; // a live run's (or a reused PID: leave it rather than guess)
        }
        remove_namespace(&name)?;
        removed.push(name);
    }
    Ok(removed)
}

/// The PID in `kswt-<pid>-…`, or `None` for a name that is not a testbed's.
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(NAME_BASE)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// One node's caps as `tc -s qdisc` counts them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCaps {
    /// The node's name (`seeder`, `leecher-3`, …).
    pub name: String,
    /// Its uplink's tbf.
    pub up: TbfStats,
    /// Its downlink's tbf.
    pub down: TbfStats,
}

/// Counters of one tbf qdisc (all zero when the link has no tbf: an
/// uncapped link is not ours to count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TbfStats {
    /// Bytes the qdisc sent (whole frames).
    pub sent_bytes: u64,
    /// Packets it dropped (queue full).
    pub dropped: u64,
}

impl TbfStats {
    /// Reads the tbf's `Sent N bytes M pkt (dropped D, …)` line from `tc -s qdisc show` output.
    pub fn parse(tc_output: &str) -> Self {
        let mut in_tbf = false;
        for line in tc_output.lines() {
            if line.starts_with("qdisc ") {
                in_tbf = line.starts_with("qdisc tbf ");
            } else if in_tbf {
                if let Some(rest) = line.trim_start().strip_prefix("Sent ") {
                    return Self {
                        sent_bytes: leading_number(rest),
                        dropped: rest.split("(dropped ").nth(1).map_or(0, leading_number),
                    };
                }
            }
        }
        Self::default()
    }
}

/// The decimal number `s` starts with (0 if none).
fn leading_number(s: &str) -> u64 {
    s.split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The address of the k-th node (1-based): 10.77.0.11, 10.77.0.12, …
fn node_ip(k: usize) -> Ipv4Addr {
    let host = u32::try_from(k + 10).unwrap_or(u32::MAX);
    Ipv4Addr::from(u32::from(SUBNET.0) + host)
}

/// PIDs of the processes inside namespace `ns`.
pub fn pids_in(ns: &str) -> anyhow::Result<Vec<i32>> {
    let out = ipcmd::ip(["netns", "pids", ns])?;
    Ok(out.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// Kills what runs in `ns` (SIGKILL by PID: only our nodes can be in there),
/// waits for it to go, and deletes the namespace.
pub fn remove_namespace(ns: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let pids = pids_in(ns).unwrap_or_default();
        if pids.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("testnet: warning: processes {pids:?} still in {ns} after SIGKILL");
            break;
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ipcmd::ip(["netns", "del", ns]).with_context(|| format!("cannot delete namespace {ns}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_owner_pid() {
        assert_eq!(owner_pid("kswt-1234-0-hub"), Some(1234));
        assert_eq!(owner_pid("kswt-1234-7-leecher-3"), Some(1234));
        assert_eq!(owner_pid("kswt-x-0-hub"), None);
        assert_eq!(owner_pid("other-1234-0-hub"), None);
    }

    #[test]
    fn reads_tbf_counters() {
        let out = "qdisc tbf 8001: root refcnt 3 rate 8Mbit burst 32Kb lat 50ms \n \
                   Sent 17553420 bytes 11808 pkt (dropped 42, overlimits 9317 requeues 0) \n \
                   backlog 0b 0p requeues 0\n";
        assert_eq!(
            TbfStats::parse(out),
            TbfStats {
                sent_bytes: 17553420,
                dropped: 42
            }
        );
        let noqueue = "qdisc noqueue 0: root refcnt 2 \n Sent 9 bytes 1 pkt (dropped 7, overlimits 0 requeues 0)\n";
        assert_eq!(TbfStats::parse(noqueue), TbfStats::default());
        assert_eq!(TbfStats::parse(""), TbfStats::default());
    }

    #[test]
    fn addresses_stay_in_the_subnet() {
        assert_eq!(node_ip(1), Ipv4Addr::new(10, 77, 0, 11));
        assert_eq!(node_ip(300), Ipv4Addr::new(10, 77, 1, 54));
        assert_eq!(node_ip(MAX_NODES), Ipv4Addr::new(10, 77, 3, 242));
    }

    #[test]
    fn slots_accept_only_their_own_address() {
        let slot = Slot {
            name: "bootstrap".into(),
            netns: "kswt-1-0-bootstrap".into(),
            ip: Ipv4Addr::new(10, 77, 0, 11),
        };
        let ok = "/ip4/10.77.0.11/tcp/4001/p2p/12D3KooWabc";
        assert_eq!(slot.check_addr(ok).unwrap(), ok);
        for bad in [
            "/ip4/10.77.0.12/tcp/4001/p2p/12D3KooWabc",
            "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWabc",
            "/ip4/10.77.0.11/tcp/4001",
            "/ip4/10.77.0.11/tcp/4001/p2p/",
        ] {
            assert!(slot.check_addr(bad).is_err(), "{bad}");
        }
    }
}
