//! `node get` and `node share` against a hostile neighbour on the same disk, and everyday edge cases.
//!
//! A get never prints a path to bytes that are not its own content, never
//! writes through a link planted under `--out` or its data dir, and a share
//! never serves a file swapped for a link after it was scanned.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kadswarm_tests::{
    get_args, path_str, read_stats, sha256_file, start_bootstrap, start_seeder, write_random_file,
    NodeProc,
};

const DONE: Duration = Duration::from_secs(180);

/// `get_args` plus a short provider search, so a get that cannot find its content gives up.
fn get_args_quick<'a>(id: &'a str, out: &'a Path, data: &'a Path, boot: &'a str) -> Vec<&'a str> {
    let mut args = get_args(id, out, data, boot);
    args.extend(["--find-timeout", "20"]);
    args
}

/// Content of `len` random bytes at `dir/name`; returns its path and SHA-256.
fn content(dir: &Path, name: &str, len: u64, seed: u64) -> (PathBuf, String) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    write_random_file(&path, len, seed).unwrap();
    let hash = sha256_file(&path).unwrap();
    (path, hash)
}

#[test]
fn two_contents_with_one_name_fetched_at_once_never_mix() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let (src_a, want_a) = content(&dir.path().join("a"), "report.bin", 3 << 20, 21);
    let (src_b, want_b) = content(&dir.path().join("b"), "report.bin", 3 << 20, 22);
    assert_ne!(want_a, want_b);

    let (_boot, boot) = start_bootstrap(logs);
    // Capped uploads keep both downloads in flight at the same time.
    let cap = ["--chunk-size", "64KiB", "--max-upload", "2MiB"];
    let (_seed_a, id_a) = start_seeder("seed-a", logs, &src_a, &boot, &cap);
    let (_seed_b, id_b) = start_seeder("seed-b", logs, &src_b, &boot, &cap);

    let out = dir.path().join("out");
    let mut getters = Vec::new();
    for (k, (id, want)) in [(&id_a, &want_a), (&id_b, &want_b)].into_iter().enumerate() {
        let data = dir.path().join(format!("get{k}-data"));
        let p = NodeProc::start(&format!("get{k}"), logs, &get_args(id, &out, &data, &boot));
        getters.push((p, want.clone()));
    }
    let mut succeeded = 0;
    for (mut p, want) in getters {
        let status = p.wait(DONE);
        let log = p.log_text();
        if status.success() {
            succeeded += 1;
            let printed = p.remaining_lines();
            let path = printed.last().expect("a successful get prints its path");
            assert_eq!(
                sha256_file(Path::new(path)).unwrap(),
                want,
                "{} printed {path} but it holds other bytes:\n{log}",
                p.name
            );
        } else {
            assert!(
                log.contains("already exists") || log.contains("another kadswarm process"),
                "{} failed without a clear reason:\n{log}",
                p.name
            );
        }
    }
    assert!(succeeded >= 1, "neither get finished");
    let got = sha256_file(&out.join("report.bin")).unwrap();
    assert!(
        got == want_a || got == want_b,
        "the file in --out is neither content"
    );
}

#[test]
fn links_planted_under_out_and_the_data_dir_leave_victims_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let (src, want) = content(&dir.path().join("src"), "movie.bin", 700_000, 31);
    let (_boot, boot) = start_bootstrap(logs);
    let (_seeder, id) = start_seeder("seeder", logs, &src, &boot, &["--chunk-size", "64KiB"]);

    // Victims outside every --out and data dir, one per planted link, so a
    // failure says which link was followed.
    let victim = |name: &str| {
        let p = dir.path().join("victims").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"precious").unwrap();
        p
    };
    let v_probe = victim("write-probe");
    let v_content = victim("content");
    let v_resume_tmp = victim("resume-tmp");
    let v_key_tmp = victim("key-tmp");
    let v_final = victim("final");
    // A folder that looks like a part folder.
    let victim_dir = dir.path().join("victim-dir");
    std::fs::create_dir(&victim_dir).unwrap();
    std::fs::write(victim_dir.join("content"), b"precious").unwrap();
    std::fs::write(victim_dir.join("resume.cbor"), b"precious").unwrap();
    let part_name = format!(".kadswarm-{id}.part");

    // 1. Links at the part folder (today's name and the old name-keyed one).
    let out1 = dir.path().join("out1");
    std::fs::create_dir(&out1).unwrap();
    symlink(&victim_dir, out1.join(&part_name)).unwrap();
    symlink(&victim_dir, out1.join("movie.bin.kadswarm-part")).unwrap();

    // 2. A real part folder whose `content` and temp resume file are links, a data
    //    dir whose temp key file is a link, and links at the write-probe names
    //    of the next few hundred process IDs.
    let out2 = dir.path().join("out2");
    let part = out2.join(&part_name);
    std::fs::create_dir_all(&part).unwrap();
    set_mode(&part, 0o700);
    symlink(&v_content, part.join("content")).unwrap();
    symlink(&v_resume_tmp, part.join("resume.cbor.tmp")).unwrap();
    let data2 = dir.path().join("get2-data");
    std::fs::create_dir(&data2).unwrap();
    symlink(&v_key_tmp, data2.join("identity.key.tmp")).unwrap();
    if let Some(last) = last_pid() {
        for pid in last + 1..last + 400 {
            let _ = symlink(&v_probe, out2.join(format!(".kadswarm-write-test-{pid}")));
        }
    }

    // 3. A link at the final path.
    let out3 = dir.path().join("out3");
    std::fs::create_dir(&out3).unwrap();
    symlink(&v_final, out3.join("movie.bin")).unwrap();

    let mut getters = Vec::new();
    for (k, out) in [&out1, &out2, &out3].into_iter().enumerate() {
        let data = dir.path().join(format!("get{}-data", k + 1));
        let name = format!("get{}", k + 1);
        getters.push(NodeProc::start(
            &name,
            logs,
            &get_args_quick(&id, out, &data, &boot),
        ));
    }
    let statuses: Vec<_> = getters.iter_mut().map(|p| p.wait(DONE)).collect();

    let mut followed = Vec::new();
    for v in [&v_probe, &v_content, &v_resume_tmp, &v_key_tmp, &v_final] {
        if std::fs::read(v).unwrap_or_default() != b"precious" {
            followed.push(v.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    for f in ["content", "resume.cbor"] {
        if std::fs::read(victim_dir.join(f)).unwrap_or_default() != b"precious" {
            followed.push(format!("part folder ({f})"));
        }
    }
    if std::fs::read_dir(&victim_dir).unwrap().count() != 2 {
        followed.push("part folder (new files)".into());
    }
    assert!(
        followed.is_empty(),
        "links were followed and their targets changed: {followed:?}"
    );

    // 1 fails and says why.
    let log1 = getters[0].log_text();
    assert!(
        !statuses[0].success(),
        "get into out1 should refuse the linked part folder"
    );
    assert!(log1.contains("download folder"), "{log1}");
    // 2 replaces the links themselves and finishes with the right bytes.
    assert!(
        statuses[1].success(),
        "get into out2 failed:\n{}",
        getters[1].log_text()
    );
    assert_eq!(sha256_file(&out2.join("movie.bin")).unwrap(), want);
    // 3 refuses to touch what is at the final path.
    let log3 = getters[2].log_text();
    assert!(
        !statuses[2].success(),
        "get into out3 should refuse the link"
    );
    assert!(log3.contains("already exists"), "{log3}");
    assert!(std::fs::symlink_metadata(out3.join("movie.bin"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_shared_file_swapped_for_a_link_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let len = 400_000;
    let (src, _) = content(&dir.path().join("src"), "notes.bin", len, 41);
    let (secret, _) = content(&dir.path().join("private"), "secret.bin", len, 42);

    let (_boot, boot) = start_bootstrap(logs);
    let seed_stats = dir.path().join("seed-stats.json");
    let (_seeder, id) = start_seeder(
        "seeder",
        logs,
        &src,
        &boot,
        &[
            "--chunk-size",
            "16KiB",
            "--stats-file",
            path_str(&seed_stats),
        ],
    );
    // The stats file appears once the share is open and served.
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_stats(&seed_stats).is_none() {
        assert!(
            Instant::now() < deadline,
            "the seeder never started serving"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Same length, same name, now a link to a file that was never shared.
    std::fs::remove_file(&src).unwrap();
    symlink(&secret, &src).unwrap();

    let out = dir.path().join("out");
    let data = dir.path().join("get-data");
    let mut getter = NodeProc::start("get", logs, &get_args_quick(&id, &out, &data, &boot));
    // Long enough to fetch 400 kB many times over.
    std::thread::sleep(Duration::from_secs(15));
    let printed = getter.remaining_lines();
    getter.kill9();
    let uploaded = read_stats(&seed_stats).map_or(0, |s| s.uploaded);
    assert_eq!(
        uploaded,
        0,
        "the seeder sent {uploaded} bytes of a file swapped for a link:\n{}",
        getter.log_text()
    );
    assert!(
        printed.is_empty(),
        "the get reported {printed:?} for content the seeder no longer has"
    );
    assert!(!out.join("notes.bin").exists());
}

/// Shares `src`, then runs `get` for it once per name in `runs` into one --out; each must succeed and print the copy's path.
fn share_then_get(dir: &Path, src: &Path, runs: &[&str]) -> PathBuf {
    let logs = dir;
    let (_boot, boot) = start_bootstrap(logs);
    let (_seeder, id) = start_seeder("seeder", logs, src, &boot, &[]);
    let out = dir.join("out");
    let data = dir.join("get-data");
    let copy = out.join(src.file_name().unwrap());
    for run in runs {
        let mut p = NodeProc::start(run, logs, &get_args_quick(&id, &out, &data, &boot));
        let status = p.wait(DONE);
        assert!(status.success(), "{run} failed:\n{}", p.log_text());
        assert_eq!(
            p.remaining_lines().last().map(String::as_str),
            copy.to_str(),
            "{run} should print the path of the copy"
        );
        assert_eq!(
            sha256_file(&copy).unwrap(),
            sha256_file(src).unwrap(),
            "{run}: the copy differs"
        );
    }
    // No part folder or probe is left behind.
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "left behind in --out: {left:?}");
    copy
}

#[test]
fn a_250_byte_file_name_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{}.bin", "n".repeat(246));
    assert_eq!(name.len(), 250);
    let (src, _) = content(&dir.path().join("src"), &name, 300_000, 51);
    share_then_get(dir.path(), &src, &["get"]);
}

#[test]
fn getting_a_finished_copy_again_verifies_it_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = content(&dir.path().join("src"), "album.bin", 300_000, 52);
    share_then_get(dir.path(), &src, &["get", "get-again"]);
}

#[test]
fn an_empty_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src").join("empty.txt");
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    std::fs::write(&src, b"").unwrap();
    let copy = share_then_get(dir.path(), &src, &["get", "get-again"]);
    let meta = std::fs::metadata(&copy).unwrap();
    assert!(meta.is_file() && meta.len() == 0);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The last process ID the kernel handed out, to guess the next getter's.
fn last_pid() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()?
        .trim()
        .parse()
        .ok()
}
