//! `testnet nat`: a lab that measures NAT traversal (root only). Each trial
//! builds fresh namespaces (an "internet" segment with a relay/bootstrap
//! node, every peer behind a router of its own doing nftables masquerade
//! with a stateful firewall), checks that the NATs behave as their kind
//! says, transfers a file from a NATed seeder and records whether the
//! peers got a direct connection (hole punch) or stayed on the relay.
//!
//! - [`topo`]: namespaces, veths, routers and their nftables rules.
//! - [`probe`]: sockets inside namespaces; the control checks.
//! - [`trial`]: one trial's nodes and what their stats files say.
//! - [`report`]: `nat.csv` and the per-topology summary.
//! - [`cli`]: the command's flags and its loop over topologies and trials.

pub mod cli;
pub mod probe;
pub mod report;
pub mod topo;
pub mod trial;

use std::fmt;
use std::str::FromStr;

pub use topo::NatKind;

/// Who sits behind what in one trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topology {
    /// Seeder and leecher behind cone NATs: hole punching should work.
    ConeCone,
    /// Seeder behind a cone NAT, leecher behind a symmetric one: relay.
    ConeSymmetric,
    /// Both behind symmetric NATs: relay.
    SymmetricSymmetric,
    /// One seeder behind a cone NAT; leechers behind cone and symmetric NATs
    /// by turns, and one public leecher.
    Swarm,
}

impl Topology {
    /// Every topology, in the order a run measures them.
    pub const ALL: [Topology; 4] = [
        Topology::ConeCone,
        Topology::ConeSymmetric,
        Topology::SymmetricSymmetric,
        Topology::Swarm,
    ];

    /// `cone-cone`, `cone-symmetric`, `symmetric-symmetric`, `swarm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Topology::ConeCone => "cone-cone",
            Topology::ConeSymmetric => "cone-symmetric",
            Topology::SymmetricSymmetric => "symmetric-symmetric",
            Topology::Swarm => "swarm",
        }
    }

    /// The seeder's NAT, then each leecher's name and NAT;
    /// `swarm_nated` is how many NATed leechers the swarm has.
    pub fn roles(self, swarm_nated: usize) -> (NatKind, Vec<(String, NatKind)>) {
        let one = |kind| vec![("leecher".to_string(), kind)];
        match self {
            Topology::ConeCone => (NatKind::Cone, one(NatKind::Cone)),
            Topology::ConeSymmetric => (NatKind::Cone, one(NatKind::Symmetric)),
            Topology::SymmetricSymmetric => (NatKind::Symmetric, one(NatKind::Symmetric)),
            Topology::Swarm => {
                let mut leechers: Vec<(String, NatKind)> = (1..=swarm_nated)
                    .map(|k| {
                        let kind = if k % 2 == 1 {
                            NatKind::Cone
                        } else {
                            NatKind::Symmetric
                        };
                        (format!("leecher-{k}"), kind)
                    })
                    .collect();
                leechers.push(("leecher-public".to_string(), NatKind::None));
                (NatKind::Cone, leechers)
            }
        }
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Topology {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        Topology::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown topology {s:?} (use cone-cone, cone-symmetric, symmetric-symmetric or swarm)"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topologies_parse_and_name_their_roles() {
        for t in Topology::ALL {
            assert_eq!(t.as_str().parse::<Topology>(), Ok(t));
        }
        assert!("cone".parse::<Topology>().is_err());
        let (seeder, leechers) = Topology::Swarm.roles(4);
        assert_eq!(seeder, NatKind::Cone);
        let kinds: Vec<NatKind> = leechers.iter().map(|(_, k)| *k).collect();
        use NatKind::*;
        assert_eq!(kinds, [Cone, Symmetric, Cone, Symmetric, None]);
    }
}
