//! The `--json` events: one JSON object per line on stdout, its kind in "event".

use std::io::Write;

use serde::Serialize;

/// One thing that happened during a `share` or a `get`, as a script sees it.
///
/// Field names are the public schema (see the README); add, never rename.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event<'a> {
    /// Share: `done` of `total` bytes hashed.
    Hashing {
        done: u64,
        total: u64,
        bytes_per_sec: Option<u64>,
        eta_secs: Option<u64>,
    },
    /// Share: hashing finished; the content ID and its link.
    Hashed {
        id: &'a str,
        link: String,
        name: &'a str,
        bytes: u64,
        chunks: u32,
        secs: f64,
    },
    /// Get: the DHT search for providers of `id` began.
    Searching {
        id: &'a str,
        timeout_secs: Option<u64>,
    },
    /// Get: `count` providers found, `ms` after the command started.
    Providers { count: usize, ms: u64 },
    /// Get: the manifest arrived and was verified.
    Manifest {
        name: &'a str,
        bytes: u64,
        chunks: u32,
    },
    /// Get: `have` of `total` chunks verified.
    Progress {
        have: u32,
        total: u32,
        percent: u8,
        peers: usize,
        received_bytes: Option<u64>,
        bytes_per_sec: Option<u64>,
        eta_secs: Option<u64>,
        /// Distributed copies: fewest copies of any chunk among connected
        /// peers and us, plus the fraction of chunks above that (BitTorrent's figure).
        distributed_copies: Option<f64>,
        /// Chunks we lack that no connected peer holds.
        unavailable_chunks: Option<u32>,
    },
    /// Get: `chunks` chunks we lack have been held by no connected peer for a
    /// while (`examples` are some of them); the node keeps looking for
    /// providers. Sent again when the count changes; `chunks` 0 when it ends.
    Unavailable {
        chunks: u32,
        examples: Vec<u32>,
        message: &'a str,
    },
    /// Get: every chunk verified; the copy is at `path`.
    Complete {
        path: &'a str,
        secs: f64,
        received_bytes: Option<u64>,
    },
    /// Share or get: now serving the content until stopped.
    Seeding,
    /// Stopped by a signal before the end (a get keeps its progress).
    Interrupted,
    /// Something for people that is not one of the above.
    Note { message: &'a str },
    /// The command failed; `error` says why.
    Failed { error: &'a str },
}

impl Event<'_> {
    /// The event as one line of JSON, without the newline.
    pub fn to_line(&self) -> String {
        // Serializing plain strings and numbers cannot fail; keep a valid line regardless.
        serde_json::to_string(self).unwrap_or_else(|e| {
            serde_json::json!({ "event": "failed", "error": format!("cannot encode an event: {e}") })
                .to_string()
        })
    }

    /// Writes the line to stdout and flushes, so a script reading a pipe sees it now.
    pub fn emit(&self) {
        let mut out = std::io::stdout().lock();
        // A closed stdout (the script went away) must not stop the transfer.
        let _ = writeln!(out, "{}", self.to_line());
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Event<'static>> {
        vec![
            Event::Hashing {
                done: 5,
                total: 10,
                bytes_per_sec: Some(2),
                eta_secs: None,
            },
            Event::Hashed {
                id: "ab",
                link: "kadswarm:ab".into(),
                name: "a \"quoted\"\nname",
                bytes: 10,
                chunks: 1,
                secs: 0.5,
            },
            Event::Searching {
                id: "ab",
                timeout_secs: Some(60),
            },
            Event::Providers { count: 2, ms: 40 },
            Event::Manifest {
                name: "x",
                bytes: 10,
                chunks: 1,
            },
            Event::Progress {
                have: 1,
                total: 2,
                percent: 50,
                peers: 3,
                received_bytes: None,
                bytes_per_sec: None,
                eta_secs: Some(1),
                distributed_copies: Some(1.25),
                unavailable_chunks: Some(0),
            },
            Event::Complete {
                path: "/tmp/x",
                secs: 1.0,
                received_bytes: Some(10),
            },
            Event::Seeding,
            Event::Interrupted,
            Event::Note { message: "hi" },
            Event::Unavailable {
                chunks: 43,
                examples: vec![12, 40],
                message: "43 chunks",
            },
            Event::Failed {
                error: "no providers found",
            },
        ]
    }

    #[test]
    fn every_event_is_one_json_object_line_naming_its_event() {
        let names = [
            "hashing",
            "hashed",
            "searching",
            "providers",
            "manifest",
            "progress",
            "complete",
            "seeding",
            "interrupted",
            "note",
            "unavailable",
            "failed",
        ];
        for (ev, name) in all().iter().zip(names) {
            let line = ev.to_line();
            assert!(!line.contains('\n'), "{line}");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert!(v.is_object(), "{line}");
            assert_eq!(v["event"], name, "{line}");
        }
    }

    #[test]
    fn fields_keep_their_values_and_unknowns_are_null() {
        let v: serde_json::Value = serde_json::from_str(&all()[1].to_line()).unwrap();
        assert_eq!(v["name"], "a \"quoted\"\nname");
        assert_eq!(v["link"], "kadswarm:ab");
        assert_eq!(v["chunks"], 1);
        let v: serde_json::Value = serde_json::from_str(&all()[5].to_line()).unwrap();
        assert_eq!(v["percent"], 50);
        assert!(v["received_bytes"].is_null());
        assert_eq!(v["eta_secs"], 1);
        assert_eq!(v["distributed_copies"], 1.25);
        let v: serde_json::Value = serde_json::from_str(&all()[10].to_line()).unwrap();
        assert_eq!(v["chunks"], 43);
        assert_eq!(v["examples"], serde_json::json!([12, 40]));
        let v: serde_json::Value = serde_json::from_str(&all()[6].to_line()).unwrap();
        assert_eq!(v["path"], "/tmp/x");
        assert_eq!(v["received_bytes"], 10);
    }
}
