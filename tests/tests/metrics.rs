//! `--metrics ADDR`: a seeder's and a getter's `/metrics`, fetched over
//! HTTP on 127.0.0.1, parse as OpenMetrics text, and their byte counters
//! match the bytes actually moved: the seeder sent the file once, the getter
//! received at least the file and exactly what its stats file says.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use kadswarm_tests::{
    get_args, path_str, read_stats, start_bootstrap, start_seeder, write_random_file, NodeProc,
};

const DONE: Duration = Duration::from_secs(180);
const SIZE: u64 = 3 * 1024 * 1024 + 4321;
/// The chunk size the seeder is given, so the chunk count is known.
const CHUNK: u64 = 64 * 1024;

#[test]
fn metrics_parse_and_count_the_bytes_a_transfer_moved() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let src = logs.join("film.bin");
    write_random_file(&src, SIZE, 11).unwrap();
    let (_boot, boot) = start_bootstrap(logs);
    let (seeder, id) = start_seeder(
        "seeder",
        logs,
        &src,
        &boot,
        &["--metrics", "127.0.0.1:0", "--chunk-size", "64KiB"],
    );
    let seeder_metrics = metrics_addr(&seeder);

    let out = logs.join("out");
    let data = logs.join("get-data");
    let stats = logs.join("get-stats.json");
    // Seeding after the download keeps the getter up to be scraped.
    let mut getter = NodeProc::start(
        "get",
        logs,
        &[
            "get",
            &id,
            "--out",
            path_str(&out),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            &boot,
            "--data-dir",
            path_str(&data),
            "--stats-file",
            path_str(&stats),
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let path = getter.next_line(DONE);
    assert_eq!(
        path,
        path_str(&out.join("film.bin")),
        "get printed {path:?}"
    );
    let getter_metrics = metrics_addr(&getter);
    let content = format!("{{content=\"{id}\"}}");

    // The getter: what its stats file says it received, at least the file,
    // every chunk verified once and none rejected. The stats file is
    // rewritten every 500 ms, so wait until the two agree.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (m, file) = loop {
        let m = scrape(&getter_metrics);
        let file = read_stats(&stats);
        let downloaded = file.as_ref().map(|s| s.downloaded);
        if downloaded == m.get("kadswarm_downloaded_bytes_total").map(|v| *v as u64) {
            break (m, file.unwrap_or_default());
        }
        assert!(
            Instant::now() < deadline,
            "the getter's downloaded_bytes_total {:?} never matched its stats file {downloaded:?}",
            m.get("kadswarm_downloaded_bytes_total")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let file_downloaded = file.downloaded;
    assert!(
        file_downloaded >= SIZE,
        "the getter counted {file_downloaded} bytes received for a {SIZE}-byte file"
    );
    let per_content = value(
        &m,
        &format!("kadswarm_content_downloaded_bytes_total{content}"),
    );
    assert!(
        per_content >= SIZE as f64 && per_content <= file_downloaded as f64,
        "the getter's per-content count {per_content} is not between {SIZE} and {file_downloaded}"
    );
    assert_eq!(
        value(&m, "kadswarm_chunks_verified_total"),
        SIZE.div_ceil(CHUNK) as f64,
        "every chunk verified exactly once"
    );
    assert_eq!(value(&m, "kadswarm_chunks_rejected_total"), 0.0);
    assert_eq!(value(&m, "kadswarm_bans_total"), 0.0);
    assert!(
        value(&m, "kadswarm_dht_provider_lookup_first_seconds_count") >= 1.0,
        "the getter found the seeder through a DHT lookup; its latency was not recorded"
    );

    // The seeder sent every chunk once, and says so in total and for the content.
    let deadline = Instant::now() + Duration::from_secs(30);
    let m = loop {
        let m = scrape(&seeder_metrics);
        let per_content = m.get(&format!("kadswarm_content_uploaded_bytes_total{content}"));
        if per_content == Some(&(SIZE as f64)) {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "the seeder's per-content uploaded count stayed at {per_content:?}, not {SIZE}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        value(&m, "kadswarm_uploaded_bytes_total"),
        SIZE as f64,
        "the seeder's uploaded_bytes_total is not the file's size"
    );
    assert_eq!(
        value(&m, "kadswarm_wire_sent_bytes_total{kind=\"payload\"}"),
        SIZE as f64
    );
    assert!(value(&m, "kadswarm_peers_connected") >= 1.0);
    assert_eq!(value(&m, "kadswarm_contents"), 1.0);
    assert!(
        m.keys()
            .any(|k| k.starts_with("libp2p_bandwidth_bytes_total")),
        "libp2p's transport bandwidth is missing"
    );
}

#[test]
fn a_daemon_counts_each_content_it_serves_and_forgets_a_stopped_one() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let src = logs.join("notes.bin");
    write_random_file(&src, SIZE, 12).unwrap();
    let (_boot, boot) = start_bootstrap(logs);
    let data = logs.join("daemon-data");
    let mut daemon = NodeProc::start(
        "daemon",
        logs,
        &[
            "join",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            &boot,
            "--data-dir",
            path_str(&data),
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let _addr = daemon.next_line(Duration::from_secs(30));
    let metrics = metrics_addr(&daemon);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !data.join("control.json").exists() {
        assert!(
            Instant::now() < deadline,
            "the daemon wrote no control.json"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, out) = run(
        "share",
        logs,
        &["share", path_str(&src), "--data-dir", path_str(&data)],
    );
    assert!(ok, "share through the daemon failed");
    let id = out.last().cloned().unwrap_or_default();
    let series = format!("kadswarm_content_uploaded_bytes_total{{content=\"{id}\"}}");

    let out_dir = logs.join("out");
    let get_data = logs.join("get-data");
    let mut args = get_args(&id, &out_dir, &get_data, &boot);
    args.extend(["--metrics", "127.0.0.1:0"]);
    let (ok, _) = run("get", logs, &args);
    assert!(ok, "get from the daemon failed");

    let deadline = Instant::now() + Duration::from_secs(30);
    let m = loop {
        let m = scrape(&metrics);
        if m.get(&series) == Some(&(SIZE as f64)) {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon's {series} stayed at {:?}, not {SIZE}",
            m.get(&series)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(value(&m, "kadswarm_uploaded_bytes_total"), SIZE as f64);
    assert_eq!(value(&m, "kadswarm_contents"), 1.0);

    // A stopped content's series go away: labels stay bounded by what is held.
    let (ok, _) = run("stop", logs, &["stop", &id, "--data-dir", path_str(&data)]);
    assert!(ok, "stop failed");
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = scrape(&metrics);
        let left: Vec<&String> = m.keys().filter(|k| k.contains(&id)).collect();
        if left.is_empty() {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "a stopped content still has series: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(value(&m, "kadswarm_contents"), 0.0);
    assert_eq!(
        value(&m, "kadswarm_uploaded_bytes_total"),
        SIZE as f64,
        "the node's total outlives the content"
    );
}

/// Runs `node <args>` to its end; returns success and its stdout lines.
fn run(name: &str, logs: &Path, args: &[&str]) -> (bool, Vec<String>) {
    let mut p = NodeProc::start(name, logs, args);
    let ok = p.wait(DONE).success();
    if !ok {
        eprintln!("{name} failed; log:\n{}", p.log_text());
    }
    (ok, p.remaining_lines())
}

/// The address a node printed for its metrics.
fn metrics_addr(p: &NodeProc) -> String {
    const SAYS: &str = "serving metrics on http://";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = p.log_text();
        if let Some(at) = log.find(SAYS) {
            let rest = &log[at + SAYS.len()..];
            let end = rest.find('/').unwrap_or(rest.len());
            return rest[..end].to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{} never said where its metrics are; log:\n{log}",
            p.name
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    match samples.get(series) {
        Some(v) => *v,
        None => panic!("no sample {series}; have: {:?}", samples.keys()),
    }
}

/// GET /metrics from `addr`: checks the status and content type, and parses the body.
fn scrape(addr: &str) -> HashMap<String, f64> {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header and a body");
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    assert!(status.starts_with("HTTP/1.1 200"), "status: {status}");
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let body = if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    parse_openmetrics(&body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// Parses OpenMetrics text strictly: `# HELP`/`# TYPE`/`# UNIT` lines,
/// samples `name{label="value",...} number` of declared families with the
/// suffixes their type allows, valid names, and `# EOF` last. Returns the
/// samples by their series (`name{labels}` as written).
fn parse_openmetrics(text: &str) -> HashMap<String, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    let mut lines = text.lines();
    let mut eof = false;
    for line in lines.by_ref() {
        if line == "# EOF" {
            eof = true;
            break;
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let kind = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default();
            assert!(valid_name(name), "bad family name in {line:?}");
            match kind {
                "TYPE" => {
                    let ty = parts.next().unwrap_or_default();
                    assert!(
                        [
                            "counter",
                            "gauge",
                            "histogram",
                            "info",
                            "summary",
                            "unknown"
                        ]
                        .contains(&ty),
                        "unknown type in {line:?}"
                    );
                    assert!(
                        types.insert(name.to_string(), ty.to_string()).is_none(),
                        "family {name} declared twice"
                    );
                }
                "HELP" | "UNIT" => {}
                _ => panic!("unknown comment line {line:?}"),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, Some(l)),
            None => (series, None),
        };
        assert!(valid_name(name), "bad metric name in {line:?}");
        if let Some(labels) = labels {
            let inner = labels
                .strip_suffix('}')
                .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
            assert!(labels_ok(inner), "bad labels in {line:?}");
        }
        let family = types
            .keys()
            .filter(|f| name.starts_with(f.as_str()))
            .max_by_key(|f| f.len())
            .unwrap_or_else(|| panic!("sample of an undeclared family: {line:?}"));
        let allowed: &[&str] = match types[family].as_str() {
            "counter" => &["_total", "_created"],
            "gauge" | "unknown" => &[""],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "info" => &["_info"],
            _ => &["", "_sum", "_count", "_created"],
        };
        assert!(
            allowed.contains(&&name[family.len()..]),
            "sample {name} does not fit its family {family} ({})",
            types[family]
        );
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "series {series} twice"
        );
    }
    assert!(eof, "the text does not end with # EOF");
    assert!(lines.next().is_none(), "text after # EOF");
    samples
}

/// `k="v",k2="v2"` with `\\`, `\"` and `\n` escapes in values.
fn labels_ok(mut s: &str) -> bool {
    while !s.is_empty() {
        let Some((k, rest)) = s.split_once("=\"") else {
            return false;
        };
        if !valid_name(k) {
            return false;
        }
        let mut end = None;
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            match (escaped, c) {
                (true, '\\' | '"' | 'n') => escaped = false,
                (true, _) => return false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            return false;
        };
        s = &rest[end + 1..];
        if let Some(next) = s.strip_prefix(',') {
            s = next;
        } else if !s.is_empty() {
            return false;
        }
    }
    true
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}
