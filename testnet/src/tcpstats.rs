//! TCP's own counters in each node's namespace (`/proc/net/snmp`): segments
//! sent and segments sent again. They split what a capped uplink carried
//! beyond the nodes' bytes into what TCP adds (headers, the ACKs of the
//! node's downloads, retransmissions), which the tbf counters cannot tell apart.

use anyhow::Context;

use crate::ipcmd;

/// Segment counters of one namespace's TCP stack (every connection of the node in it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// Segments sent, data and pure ACKs alike, retransmissions excluded.
    pub out_segs: u64,
    /// Segments sent again (lost, or presumed lost).
    pub retrans_segs: u64,
}

impl TcpCounters {
    /// Reads the counters of namespace `netns`.
    pub fn read(netns: &str) -> anyhow::Result<Self> {
        let snmp = ipcmd::ip(["netns", "exec", netns, "cat", "/proc/net/snmp"])?;
        Self::parse(&snmp).with_context(|| format!("no Tcp counters in {netns}'s /proc/net/snmp"))
    }

    /// Picks `OutSegs` and `RetransSegs` from `/proc/net/snmp` text: a `Tcp:`
    /// line of names followed by a `Tcp:` line of values.
    pub fn parse(snmp: &str) -> Option<Self> {
        let mut tcp = snmp.lines().filter_map(|l| l.strip_prefix("Tcp:"));
        let names: Vec<&str> = tcp.next()?.split_whitespace().collect();
        let values: Vec<&str> = tcp.next()?.split_whitespace().collect();
        let field = |name: &str| -> Option<u64> {
            let i = names.iter().position(|n| *n == name)?;
            values.get(i)?.parse().ok()
        };
        Some(Self {
            out_segs: field("OutSegs")?,
            retrans_segs: field("RetransSegs")?,
        })
    }

    /// Retransmitted segments per segment sent, in percent (0 when nothing was sent).
    pub fn retrans_pct(&self) -> f64 {
        if self.out_segs == 0 {
            0.0
        } else {
            100.0 * self.retrans_segs as f64 / self.out_segs as f64
        }
    }

    fn add(&mut self, other: Self) {
        self.out_segs += other.out_segs;
        self.retrans_segs += other.retrans_segs;
    }
}

/// The counters of a run, summed by role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSummary {
    /// The seeder's namespace.
    pub seeder: TcpCounters,
    /// All leechers' namespaces together.
    pub leechers: TcpCounters,
}

impl TcpSummary {
    /// Sums `(node name, counters)` pairs by role; other nodes (the bootstrap) are left out.
    pub fn of<'a>(per_node: impl IntoIterator<Item = (&'a str, TcpCounters)>) -> Self {
        let mut sum = Self::default();
        for (name, c) in per_node {
            if name == "seeder" {
                sum.seeder.add(c);
            } else if name.starts_with("leecher-") {
                sum.leechers.add(c);
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "Ip: Forwarding DefaultTTL InReceives\n\
                        Ip: 1 64 12345\n\
                        Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\n\
                        Tcp: 1 200 120000 -1 40 38 0 2 36 15877 18285 57 0 3 0\n\
                        Udp: InDatagrams NoPorts\n\
                        Udp: 7 0\n";

    #[test]
    fn reads_out_and_retransmitted_segments() {
        let c = TcpCounters::parse(SNMP).expect("Tcp lines present");
        assert_eq!(
            c,
            TcpCounters {
                out_segs: 18285,
                retrans_segs: 57
            }
        );
        assert!((c.retrans_pct() - 100.0 * 57.0 / 18285.0).abs() < 1e-9);
    }

    #[test]
    fn missing_or_short_tcp_lines_are_none() {
        assert_eq!(TcpCounters::parse(""), None);
        assert_eq!(
            TcpCounters::parse("Tcp: InSegs OutSegs RetransSegs\n"),
            None
        );
        assert_eq!(
            TcpCounters::parse("Tcp: OutSegs RetransSegs\nTcp: 5\n"),
            None
        );
        assert_eq!(TcpCounters::default().retrans_pct(), 0.0);
    }

    #[test]
    fn sums_by_role_without_the_bootstrap_node() {
        let c = |o, r| TcpCounters {
            out_segs: o,
            retrans_segs: r,
        };
        let s = TcpSummary::of([
            ("bootstrap", c(1000, 100)),
            ("seeder", c(50, 5)),
            ("leecher-1", c(10, 1)),
            ("leecher-12", c(20, 2)),
        ]);
        assert_eq!(s.seeder, c(50, 5));
        assert_eq!(s.leechers, c(30, 3));
    }
}
