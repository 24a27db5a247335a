//! The control API's JSON bodies, shared by the daemon and the command line.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// API version prefix of every path.
pub const API: &str = "/v1";

/// `control.json`: where the daemon listens and the token it wants.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ControlInfo {
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// Bearer token, random per start.
    pub token: String,
    /// The daemon's process ID (for people; never trusted).
    pub pid: u32,
}

/// What kind of work an item is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Serving local files.
    Share,
    /// Fetching content, then serving it.
    Get,
}

/// One share or download the daemon keeps.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ItemView {
    /// Its key in this daemon.
    pub key: u64,
    /// Share or get.
    pub kind: Kind,
    /// Content ID in hex; unknown while a share is still being hashed.
    pub id: Option<String>,
    /// hashing, searching, opening, fetching, finishing, seeding, retrying, failed.
    pub state: String,
    /// Content name, once known.
    pub name: Option<String>,
    /// Verified chunks held.
    pub have: u32,
    /// Chunks in all (0 until known).
    pub total: u32,
    /// Content bytes (0 until known).
    pub bytes: u64,
    /// Bytes hashed so far (shares being hashed).
    pub hashed: u64,
    /// Peers in its swarm.
    pub peers: usize,
    /// Distributed copies among its connected peers and us (once fetching or seeding).
    #[serde(default)]
    pub distributed_copies: Option<f64>,
    /// Chunks we lack that no connected peer holds.
    #[serde(default)]
    pub unavailable: u32,
    /// The lowest few of those chunks.
    #[serde(default)]
    pub unavailable_examples: Vec<u32>,
    /// A share's source; a download's output directory, then its copy.
    pub path: PathBuf,
    /// Why it failed or is being retried.
    pub error: Option<String>,
}

/// The daemon itself.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct NodeView {
    /// Our peer ID.
    pub peer_id: String,
    /// Listen addresses, each ending in /p2p/<peer id>.
    pub listen: Vec<String>,
    /// Peers with an open connection.
    pub connected_peers: usize,
    /// Chunk payload bytes sent.
    pub uploaded: u64,
    /// Chunk payload bytes received.
    pub downloaded: u64,
    /// Peers banned for bad data.
    pub banned: usize,
    /// Shares and downloads kept.
    pub items: usize,
}

/// One connected peer.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct PeerView {
    /// Its peer ID.
    pub peer_id: String,
    /// Addresses known for it.
    pub addrs: Vec<String>,
    /// How many of our swarms it is in.
    pub swarms: usize,
}

/// `POST /v1/shares`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ShareRequest {
    /// Absolute path of the file or directory.
    pub path: PathBuf,
    /// Chunk size in bytes; None picks one from the size.
    pub chunk_size: Option<u32>,
}

/// `POST /v1/gets`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct GetRequest {
    /// Content ID (hex or kadswarm:<hex>).
    pub id: String,
    /// Absolute output directory.
    pub out: PathBuf,
}

/// Answer to a share or get: the item's key for `GET /v1/items/{key}`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Created {
    /// The item's key.
    pub key: u64,
}

/// Any failed request.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ApiError {
    /// What went wrong, for people.
    pub error: String,
}
