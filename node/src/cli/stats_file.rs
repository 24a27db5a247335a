//! The `--stats-file` JSON that scripts and the testnet read.

use std::io::Write;
use std::path::Path;

use node::Client;
use serde::Serialize;

use super::net::NetArgs;

/// What the file holds; field names and order are the format scripts read.
#[derive(Debug, Serialize)]
struct StatsJson {
    peer_id: String,
    uploaded: u64,
    downloaded: u64,
    have: u32,
    total: u32,
    peers: usize,
    banned: Vec<String>,
    wire_sent: WireBytes,
    wire_received: WireBytes,
    nat: NatJson,
    /// Distributed copies (BitTorrent's availability figure) of the content,
    /// the fewest over contents if several; null until one is active.
    distributed_copies: Option<f64>,
    /// Chunks we lack that no connected peer holds, over all contents.
    unavailable: u32,
}

/// NAT traversal: what AutoNAT found, reservations, connections by kind,
/// hole punches, and chunk payload bytes by connection kind.
#[derive(Debug, Serialize)]
struct NatJson {
    /// "public", "private" or "unknown".
    reachability: &'static str,
    /// Relays we hold a slot on, each ending in /p2p/<relay id>.
    reservations: Vec<String>,
    conns_direct: usize,
    conns_relayed: usize,
    punches_tried: u64,
    punches_ok: u64,
    /// Milliseconds from the first relayed connection to the first direct
    /// one to a peer reached over a relay; null if none.
    first_direct_ms: Option<u64>,
    /// Chunk payload sent and received with peers reached only over a relay.
    bytes_relayed: u64,
    /// Chunk payload sent and received with peers we had a direct connection to.
    bytes_direct: u64,
}

impl From<&node::client::NatStats> for NatJson {
    fn from(n: &node::client::NatStats) -> Self {
        Self {
            reachability: n.reachability.as_str(),
            reservations: n.reservations.iter().map(ToString::to_string).collect(),
            conns_direct: n.conns_direct,
            conns_relayed: n.conns_relayed,
            punches_tried: n.punches_tried,
            punches_ok: n.punches_ok,
            first_direct_ms: n.first_direct_ms,
            bytes_relayed: n.bytes_relayed,
            bytes_direct: n.bytes_direct,
        }
    }
}

/// Session bytes by kind.
#[derive(Debug, Serialize)]
struct WireBytes {
    payload: u64,
    proofs: u64,
    control: u64,
    framing: u64,
}

impl From<[u64; 4]> for WireBytes {
    fn from([payload, proofs, control, framing]: [u64; 4]) -> Self {
        Self {
            payload,
            proofs,
            control,
            framing,
        }
    }
}

/// Rewrites the stats file if it changed.
pub async fn write_stats(client: &Client, net: &NetArgs, progress: Option<(u32, u32)>) {
    let Some(path) = &net.stats_file else {
        return;
    };
    let Ok(s) = client.stats().await else {
        return;
    };
    let (have, total) = progress.unwrap_or((0, 0));
    let coverage = client.list().await.unwrap_or_default();
    let distributed_copies = coverage
        .iter()
        .filter_map(|c| c.availability.as_ref())
        .map(|a| (a.distributed_copies * 1000.0).round() / 1000.0)
        .reduce(f64::min);
    let unavailable = coverage
        .iter()
        .filter_map(|c| c.availability.as_ref())
        .map(|a| a.unavailable)
        .sum();
    let stats = StatsJson {
        peer_id: client.peer_id().to_string(),
        uploaded: s.uploaded,
        downloaded: s.downloaded,
        have,
        total,
        peers: s.connected_peers,
        banned: s.banned.iter().map(ToString::to_string).collect(),
        wire_sent: s.wire_sent.into(),
        wire_received: s.wire_received.into(),
        nat: (&s.nat).into(),
        distributed_copies,
        unavailable,
    };
    let Ok(mut json) = serde_json::to_string(&stats) else {
        return;
    };
    json.push('\n');
    // An idle node rewrites nothing: many nodes on one machine stay idle.
    static LAST: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if *last == json {
        return;
    }
    let tmp = path.with_extension("tmp");
    if write_new_file(&tmp, json.as_bytes()).is_ok() && std::fs::rename(&tmp, path).is_ok() {
        *last = json;
    }
}

/// Writes `bytes` to a file that this call creates: a link or file another
/// user planted at `path` is removed, never followed or truncated (rename
/// then replaces only the name at the final path, not what a link there names).
fn write_new_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // O_EXCL: fails rather than follow a link planted since the removal.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_keys_and_shape_scripts_read() {
        let stats = StatsJson {
            peer_id: "12D3KooWabc".into(),
            uploaded: 10,
            downloaded: 20,
            have: 3,
            total: 4,
            peers: 2,
            banned: vec!["12D3KooWbad".into()],
            wire_sent: [1, 2, 3, 4].into(),
            wire_received: [5, 6, 7, 8].into(),
            nat: (&node::client::NatStats {
                reachability: node::client::Reachability::Private,
                reservations: vec!["/ip4/192.0.2.1/tcp/4001".parse().unwrap()],
                conns_direct: 1,
                conns_relayed: 2,
                punches_tried: 3,
                punches_ok: 2,
                first_direct_ms: None,
                bytes_relayed: 10,
                bytes_direct: 20,
            })
                .into(),
            distributed_copies: Some(1.5),
            unavailable: 3,
        };
        assert_eq!(
            serde_json::to_string(&stats).unwrap(),
            "{\"peer_id\":\"12D3KooWabc\",\"uploaded\":10,\"downloaded\":20,\"have\":3,\"total\":4,\
             \"peers\":2,\"banned\":[\"12D3KooWbad\"],\
             \"wire_sent\":{\"payload\":1,\"proofs\":2,\"control\":3,\"framing\":4},\
             \"wire_received\":{\"payload\":5,\"proofs\":6,\"control\":7,\"framing\":8},\
             \"nat\":{\"reachability\":\"private\",\"reservations\":[\"/ip4/192.0.2.1/tcp/4001\"],\
             \"conns_direct\":1,\"conns_relayed\":2,\"punches_tried\":3,\"punches_ok\":2,\
             \"first_direct_ms\":null,\"bytes_relayed\":10,\"bytes_direct\":20},\
             \"distributed_copies\":1.5,\"unavailable\":3}"
        );
    }
}
