//! The `--stats-file` JSON that scripts and the testnet read.

use std::io::Write;
use std::path::Path;

use node::Client;

use super::net::NetArgs;

/// Rewrites the stats file if it changed.
pub async fn write_stats(client: &Client, net: &NetArgs, progress: Option<(u32, u32)>) {
    let Some(path) = &net.stats_file else {
        return;
    };
    let Ok(s) = client.stats().await else {
        return;
    };
    let (have, total) = progress.unwrap_or((0, 0));
    // Peer IDs are base58: safe inside JSON strings as they are.
    let banned: Vec<String> = s.banned.iter().map(|p| format!("\"{p}\"")).collect();
    let kinds = |b: [u64; 4]| {
        format!(
            "{{\"payload\":{},\"proofs\":{},\"control\":{},\"framing\":{}}}",
            b[0], b[1], b[2], b[3]
        )
    };
    let json = format!(
        "{{\"peer_id\":\"{}\",\"uploaded\":{},\"downloaded\":{},\"have\":{have},\"total\":{total},\"peers\":{},\"banned\":[{}],\"wire_sent\":{},\"wire_received\":{}}}\n",
        client.peer_id(),
        s.uploaded,
        s.downloaded,
        s.connected_peers,
        banned.join(","),
        kinds(s.wire_sent),
        kinds(s.wire_received)
    );
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
