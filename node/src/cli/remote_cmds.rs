//! `share`, `get`, `ls`, `status`, `stop` and `peers` handled by a running daemon.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use node::daemon::views::{Created, GetRequest, ItemView, NodeView, PeerView, ShareRequest};
use protocol::transfer::Availability;
use protocol::ContentId;
use serde::Serialize;

use super::human::human;
use super::output::Output;
use super::remote::Remote;

/// How often a following command asks the daemon for news.
const POLL: Duration = Duration::from_millis(250);

/// Hands `path` to the daemon; prints the content ID once it is hashed and served.
pub async fn share(
    remote: &Remote,
    path: PathBuf,
    chunk_size: Option<u32>,
    json: bool,
) -> anyhow::Result<()> {
    let path = path
        .canonicalize()
        .with_context(|| format!("cannot share {}: no such file or directory", path.display()))?;
    let mut out = Output::new(json);
    let started = Instant::now();
    let created: Created = remote
        .post("shares", &ShareRequest { path, chunk_size })
        .await?;
    loop {
        let item: ItemView = remote.get(&format!("items/{}", created.key)).await?;
        match item.state.as_str() {
            "hashing" | "starting" => out.hashing(item.hashed, item.bytes),
            "failed" => {
                let e = item.error.unwrap_or_else(|| "the share failed".into());
                out.failed(&e);
                bail!("{e}");
            }
            _ => {
                let id = item
                    .id
                    .context("the daemon serves the share but reports no ID")?;
                let name = item.name.unwrap_or_default();
                let secs = started.elapsed().as_secs_f64();
                out.hashed(&id, &name, item.bytes, item.total, secs);
                out.note("the daemon seeds it");
                return Ok(());
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Hands a download to the daemon; unless `detach`, follows it until the
/// copy is verified and prints its path.
pub async fn get(
    remote: &Remote,
    id: ContentId,
    out_dir: PathBuf,
    detach: bool,
    json: bool,
) -> anyhow::Result<()> {
    let out_dir = std::path::absolute(&out_dir)
        .with_context(|| format!("invalid --out {}", out_dir.display()))?;
    let created: Created = remote
        .post(
            "gets",
            &GetRequest {
                id: id.to_string(),
                out: out_dir,
            },
        )
        .await?;
    let mut out = Output::new(json);
    if detach {
        out.note(&format!(
            "the daemon is fetching {id} (item {})",
            created.key
        ));
        return Ok(());
    }
    out.searching(&id.to_string(), None);
    let started = Instant::now();
    let mut said_retry = false;
    let mut said_manifest = false;
    let signal = super::serve::shutdown_signal();
    tokio::pin!(signal);
    loop {
        let item: ItemView = remote.get(&format!("items/{}", created.key)).await?;
        if !said_manifest && item.total > 0 {
            said_manifest = true;
            out.manifest(item.name.as_deref().unwrap_or(""), item.bytes, item.total);
        }
        match item.state.as_str() {
            "seeding" => {
                out.complete(&item.path, started.elapsed().as_secs_f64(), None);
                out.note("the daemon seeds it");
                return Ok(());
            }
            "failed" => {
                let e = item.error.unwrap_or_else(|| "the download failed".into());
                out.failed(&e);
                bail!("{e}");
            }
            "retrying" if !said_retry => {
                said_retry = true;
                out.note(&format!(
                    "{}; the daemon keeps looking (Ctrl-C stops following, not the download)",
                    item.error.unwrap_or_default()
                ));
            }
            _ => {}
        }
        if item.total > 0 {
            let availability = item.distributed_copies.map(|copies| Availability {
                distributed_copies: copies,
                unavailable: item.unavailable,
                unavailable_examples: item.unavailable_examples.clone(),
            });
            out.progress(
                item.have,
                item.total,
                item.peers,
                None,
                availability.as_ref(),
            );
        }
        tokio::select! {
            _ = &mut signal => {
                out.finish();
                out.note(&format!("stopped following; the daemon goes on fetching {id}"));
                return Ok(());
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// One JSON line per item, or a table.
pub async fn ls(remote: &Remote, json: bool) -> anyhow::Result<()> {
    let items: Vec<ItemView> = remote.get("items").await?;
    print_items(&items, json)
}

/// The node's summary, then its items.
pub async fn status(remote: &Remote, json: bool) -> anyhow::Result<()> {
    let node: NodeView = remote.get("node").await?;
    let items: Vec<ItemView> = remote.get("items").await?;
    if json {
        json_line(&Tagged {
            kind: "node",
            body: &node,
        })?;
        for item in &items {
            json_line(&Tagged {
                kind: "item",
                body: item,
            })?;
        }
        return Ok(());
    }
    println!("peer id    {}", node.peer_id);
    for a in &node.listen {
        println!("listening  {a}");
    }
    println!(
        "peers      {} connected, {} banned",
        node.connected_peers, node.banned
    );
    println!(
        "traffic    {} up, {} down",
        human(node.uploaded),
        human(node.downloaded)
    );
    println!("items      {}", node.items);
    print_items(&items, false)
}

/// Stops the daemon's work on `id`.
pub async fn stop(remote: &Remote, id: ContentId) -> anyhow::Result<()> {
    remote.delete(&format!("contents/{id}")).await?;
    eprintln!("stopped {id}; verified data stays on disk");
    Ok(())
}

/// Connected peers, one per line.
pub async fn peers(remote: &Remote, json: bool) -> anyhow::Result<()> {
    let peers: Vec<PeerView> = remote.get("peers").await?;
    for p in &peers {
        if json {
            json_line(p)?;
        } else {
            println!(
                "{}  {} swarm(s)  {}",
                p.peer_id,
                p.swarms,
                p.addrs.join(" ")
            );
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

fn print_items(items: &[ItemView], json: bool) -> anyhow::Result<()> {
    for i in items {
        if json {
            json_line(i)?;
            continue;
        }
        let pct = if i.total > 0 {
            format!("{:3}%", u64::from(i.have) * 100 / u64::from(i.total))
        } else {
            "   -".into()
        };
        println!(
            "{:<64}  {:<5} {:<9} {pct}  {:>4} peers  {:>10}  {}  {}",
            i.id.as_deref().unwrap_or("-"),
            match i.kind {
                node::daemon::views::Kind::Share => "share",
                node::daemon::views::Kind::Get => "get",
            },
            i.state,
            i.peers,
            human(i.bytes),
            i.name.as_deref().unwrap_or("-"),
            i.path.display()
        );
        if let Some(e) = &i.error {
            println!("    {e}");
        }
    }
    Ok(())
}

fn json_line<T: Serialize>(v: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v).context("writing JSON")?;
    writeln!(out).context("writing JSON")?;
    Ok(())
}
