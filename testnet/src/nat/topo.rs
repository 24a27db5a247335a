//! The lab's network (root only): an "internet" namespace holding a bridge,
//! public hosts (the relay, `none` peers) wired straight to it, and per
//! private host a router namespace (`wan` on the bridge, `lan` to the host)
//! doing nftables masquerade behind a stateful firewall.
//!
//! Addresses: the internet segment is [`INTERNET`] (TEST-NET-2, a
//! documentation range), private LAN k is `10.78.k.0/24` (router `.1`,
//! host `.2`). A private host routes only the internet segment via its
//! router; nobody has a default route, and no interface of the lab is in,
//! or linked to, the host's root namespace, so nothing can leave the lab.
//!
//! Names follow [`netns`]'s scheme (`kswt-<pid>-<seq>-…`), so
//! `testnet sweep` removes what a killed run left; [`Lab::teardown`] (also
//! run on drop) kills what still runs inside and deletes every namespace.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context};

use crate::ipcmd;
use crate::netns;

/// The internet segment: public-like addresses that exist only in the lab.
pub const INTERNET: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 51, 100, 0), 24);

/// Most hosts (public or private) one lab holds: addresses stay in the /24.
pub const MAX_HOSTS: u8 = 200;

/// The bridge, inside the internet namespace.
const BRIDGE: &str = "br0";

/// Numbers labs within one process (tests may build several).
static SEQ: AtomicU32 = AtomicU32::new(0);

/// How a host is connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NatKind {
    /// Endpoint-independent mapping: port-preserving masquerade (a port
    /// stays the same whatever the destination), firewall filtering by
    /// address and port (a "port-restricted cone", the usual home router).
    Cone,
    /// Endpoint-dependent mapping: `masquerade fully-random` picks a new
    /// random port per destination, so the port a peer observes is of no
    /// use to anyone else.
    Symmetric,
    /// No NAT: an address on the internet segment.
    None,
}

impl NatKind {
    /// `cone`, `symmetric` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            NatKind::Cone => "cone",
            NatKind::Symmetric => "symmetric",
            NatKind::None => "none",
        }
    }
}

impl fmt::Display for NatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NatKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cone" => Ok(NatKind::Cone),
            "symmetric" => Ok(NatKind::Symmetric),
            "none" | "public" => Ok(NatKind::None),
            other => Err(format!(
                "unknown NAT kind {other:?} (use cone, symmetric or none)"
            )),
        }
    }
}

/// A private host's router.
#[derive(Clone, Debug)]
pub struct Router {
    /// Its namespace.
    pub netns: String,
    /// Its address on the internet segment (what peers see as the host's).
    pub wan: Ipv4Addr,
    /// Its address on the host's LAN (the host's gateway).
    pub lan: Ipv4Addr,
}

/// One host of the lab.
#[derive(Clone, Debug)]
pub struct Host {
    /// The role's name (`relay`, `seeder`, `leecher-2`).
    pub name: String,
    /// Its namespace.
    pub netns: String,
    /// Its own address (private behind a router, else on the internet segment).
    pub ip: Ipv4Addr,
    /// How it is connected.
    pub kind: NatKind,
    /// Its router, unless it is public.
    pub router: Option<Router>,
}

impl Host {
    /// `--listen` for a node here: its own address, TCP port 4001 (each
    /// namespace has a port space of its own).
    pub fn listen_addr(&self) -> String {
        format!("/ip4/{}/tcp/4001", self.ip)
    }

    /// The address the rest of the lab sees this host's connections from.
    pub fn public_ip(&self) -> Ipv4Addr {
        self.router.as_ref().map_or(self.ip, |r| r.wan)
    }
}

/// An internet namespace with its bridge, and the hosts and routers on it;
/// everything is removed on teardown or drop.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    /// Where the routers' rulesets are written (kept for inspection).
    dir: PathBuf,
    nft: PathBuf,
    /// Every namespace created, internet first; torn down in reverse.
    namespaces: Vec<String>,
    /// Bridge ports so far (public hosts and routers each take one).
    ports: u8,
    /// Private LANs so far.
    lans: u8,
}

impl Lab {
    /// Checks root and nftables, sweeps namespaces of dead runs, then
    /// creates the internet namespace with its bridge. `dir` receives the
    /// routers' nftables rulesets.
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        if !netns::is_root() {
            bail!("the NAT lab needs root (ip netns, nftables); run it as root");
        }
        let nft = ipcmd::tool("nft").map_err(|_| {
            anyhow::anyhow!(
                "`nft` not found: the NAT lab's routers need nftables (apt-get install -y nftables)"
            )
        })?;
        for name in netns::sweep_stale()? {
            eprintln!("testnet: removed stale namespace {name} of a run that is gone");
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let mut lab = Self {
            prefix: format!("{}{}-n{seq}-", netns::NAME_BASE, std::process::id()),
            dir: dir.to_path_buf(),
            nft,
            namespaces: Vec::new(),
            ports: 0,
            lans: 0,
        };
        let inet = lab.add_namespace("internet")?;
        ipcmd::ip(["-n", &inet, "link", "add", BRIDGE, "type", "bridge"])?;
        ipcmd::ip(["-n", &inet, "link", "set", BRIDGE, "up"])?;
        Ok(lab)
    }

    /// This lab's namespace name prefix (`kswt-<pid>-n<seq>-`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Namespaces created so far, internet first.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Adds host `name` of `kind`: public on the bridge, or private behind a
    /// router of its own.
    pub fn add_host(&mut self, name: &str, kind: NatKind) -> anyhow::Result<Host> {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            bail!("host name {name:?} must be ASCII letters, digits and '-'");
        }
        match kind {
            NatKind::None => self.add_public(name),
            NatKind::Cone | NatKind::Symmetric => self.add_private(name, kind),
        }
    }

    fn add_public(&mut self, name: &str) -> anyhow::Result<Host> {
        let netns = self.add_namespace(name)?;
        let ip = self.plug(&netns, "eth0")?;
        ipcmd::ip(["-n", &netns, "link", "set", "lo", "up"])?;
        Ok(Host {
            name: name.to_string(),
            netns,
            ip,
            kind: NatKind::None,
            router: None,
        })
    }

    fn add_private(&mut self, name: &str, kind: NatKind) -> anyhow::Result<Host> {
        if self.lans >= MAX_HOSTS {
            bail!("a lab holds at most {MAX_HOSTS} private hosts");
        }
        self.lans += 1;
        let k = self.lans;
        let rns = self.add_namespace(&format!("{name}-nat"))?;
        let netns = self.add_namespace(name)?;
        let wan = self.plug(&rns, "wan")?;
        let lan = Ipv4Addr::new(10, 78, k, 1);
        let ip = Ipv4Addr::new(10, 78, k, 2);
        // The LAN veth is created in the router with its peer moved straight
        // into the host: it never exists in the root namespace.
        ipcmd::ip([
            "-n", &rns, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns",
            &netns,
        ])?;
        ipcmd::ip([
            "-n",
            &rns,
            "addr",
            "add",
            &format!("{lan}/24"),
            "dev",
            "lan",
        ])?;
        ipcmd::ip(["-n", &rns, "link", "set", "lan", "up"])?;
        ipcmd::ip(["-n", &rns, "link", "set", "lo", "up"])?;
        ipcmd::ip([
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ])?;
        ipcmd::ip(["-n", &netns, "link", "set", "eth0", "up"])?;
        ipcmd::ip(["-n", &netns, "link", "set", "lo", "up"])?;
        let internet = format!("{}/{}", INTERNET.0, INTERNET.1);
        ipcmd::ip([
            "-n",
            &netns,
            "route",
            "add",
            &internet,
            "via",
            &lan.to_string(),
        ])?;
        super::probe::enable_forwarding(&rns)
            .with_context(|| format!("cannot enable forwarding in {rns}"))?;
        let rules = self.dir.join(format!("{name}-nat.nft"));
        std::fs::write(&rules, ruleset(kind))
            .with_context(|| format!("cannot write {}", rules.display()))?;
        let nft = self.nft.clone().into_os_string();
        ipcmd::ip([
            "netns".into(),
            "exec".into(),
            rns.clone().into(),
            nft,
            "-f".into(),
            rules.into_os_string(),
        ])
        .with_context(|| format!("cannot load the {kind} NAT rules into {rns}"))?;
        Ok(Host {
            name: name.to_string(),
            netns,
            ip,
            kind,
            router: Some(Router {
                netns: rns,
                wan,
                lan,
            }),
        })
    }

    /// Wires namespace `ns` to the bridge as interface `ifname` and gives it
    /// the next internet address.
    fn plug(&mut self, ns: &str, ifname: &str) -> anyhow::Result<Ipv4Addr> {
        if self.ports >= MAX_HOSTS {
            bail!("a lab holds at most {MAX_HOSTS} hosts on its internet segment");
        }
        self.ports += 1;
        let k = self.ports;
        let inet = self.namespaces[0].clone();
        let port = format!("p{k}");
        ipcmd::ip([
            "-n", &inet, "link", "add", &port, "type", "veth", "peer", "name", ifname, "netns", ns,
        ])?;
        ipcmd::ip(["-n", &inet, "link", "set", &port, "master", BRIDGE, "up"])?;
        let o = INTERNET.0.octets();
        let ip = Ipv4Addr::new(o[0], o[1], o[2], 10 + k);
        let cidr = format!("{ip}/{}", INTERNET.1);
        ipcmd::ip(["-n", ns, "addr", "add", &cidr, "dev", ifname])?;
        ipcmd::ip(["-n", ns, "link", "set", ifname, "up"])?;
        Ok(ip)
    }

    fn add_namespace(&mut self, role: &str) -> anyhow::Result<String> {
        let name = format!("{}{role}", self.prefix);
        ipcmd::ip(["netns", "add", &name])?;
        self.namespaces.push(name.clone());
        Ok(name)
    }

    /// Kills whatever still runs in the lab's namespaces and deletes them
    /// (their interfaces, the bridge and the routers' rules go with them).
    /// Safe to call twice.
    pub fn teardown(&mut self) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        while let Some(ns) = self.namespaces.pop() {
            if let Err(e) = netns::remove_namespace(&ns) {
                errors.push(format!("{e:#}"));
            }
        }
        if !errors.is_empty() {
            bail!("NAT lab teardown: {}", errors.join("; "));
        }
        Ok(())
    }
}

impl Drop for Lab {
    /// Last line of defence (early return, `?`, panic, Ctrl-C dropping the
    /// run): remove everything.
    fn drop(&mut self) {
        if self.namespaces.is_empty() {
            return;
        }
        if let Err(e) = self.teardown() {
            eprintln!("testnet: warning: {e:#}");
        }
    }
}

/// A router's nftables rules: masquerade out of `wan` (fully random for a
/// symmetric NAT) and drop whatever arrives on `wan` that is not part of a
/// connection from inside, both forwarded and addressed to the router (a
/// punch packet that reached the router itself would get a RST, and a
/// router that answers kills hole punching).
pub fn ruleset(kind: NatKind) -> String {
    let masquerade = match kind {
        NatKind::Symmetric => "masquerade fully-random",
        NatKind::Cone | NatKind::None => "masquerade",
    };
    format!(
        "table ip nat {{\n\
         \tchain post {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\toifname \"wan\" {masquerade}\n\
         \t}}\n\
         }}\n\
         table inet fw {{\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tiifname \"wan\" ct state established,related accept\n\
         \t\tiifname \"wan\" drop\n\
         \t}}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter; policy accept;\n\
         \t\tiifname \"wan\" ct state established,related accept\n\
         \t\tiifname \"wan\" drop\n\
         \t}}\n\
         }}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_masquerades_fully_random_and_both_drop_unsolicited() {
        let cone = ruleset(NatKind::Cone);
        let sym = ruleset(NatKind::Symmetric);
        assert!(cone.contains("oifname \"wan\" masquerade\n"), "{cone}");
        assert!(sym.contains("masquerade fully-random"), "{sym}");
        for r in [&cone, &sym] {
            assert_eq!(r.matches("iifname \"wan\" drop").count(), 2, "{r}");
            assert!(
                r.contains("hook input") && r.contains("hook forward"),
                "{r}"
            );
        }
    }

    #[test]
    fn nat_kinds_parse() {
        assert_eq!("cone".parse::<NatKind>(), Ok(NatKind::Cone));
        assert_eq!("Symmetric".parse::<NatKind>(), Ok(NatKind::Symmetric));
        assert_eq!("public".parse::<NatKind>(), Ok(NatKind::None));
        assert!("full-cone".parse::<NatKind>().is_err());
    }
}
