//! The `node` binary as a user runs it: `join`, `share`, `get --no-seed`, on 127.0.0.1.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kadswarm_tests::{
    get_args, sha256_file, start_bootstrap, start_seeder, without_peer_id, write_random_file,
    NodeProc,
};

const DONE: Duration = Duration::from_secs(180);

#[test]
fn a_shared_file_reaches_two_getters_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let src = dir.path().join("video.bin");
    write_random_file(&src, 5 * 1024 * 1024 + 777, 7).unwrap();
    let want = sha256_file(&src).unwrap();

    let (_boot, boot_addr) = start_bootstrap(logs);
    let (_seeder, id) = start_seeder("seeder", logs, &src, &boot_addr, &[]);

    // One getter names the bootstrap peer with its ID, the other without it.
    let bare = without_peer_id(&boot_addr);
    let mut getters = Vec::new();
    for (k, boot) in [boot_addr.as_str(), bare.as_str()].into_iter().enumerate() {
        let out = dir.path().join(format!("out{k}"));
        let data = dir.path().join(format!("get{k}-data"));
        let p = NodeProc::start(&format!("get{k}"), logs, &get_args(&id, &out, &data, boot));
        getters.push((p, out));
    }
    for (mut p, out) in getters {
        let status = p.wait(DONE);
        assert!(status.success(), "{} failed:\n{}", p.name, p.log_text());
        let path = out.join("video.bin");
        let printed = p.remaining_lines();
        assert_eq!(
            printed.last().map(String::as_str),
            path.to_str(),
            "get should print the path of the finished copy"
        );
        assert_eq!(
            sha256_file(&path).unwrap(),
            want,
            "{} differs",
            path.display()
        );
        assert!(
            !out.join(format!(".kadswarm-{id}.part")).exists(),
            "the partial-download folder was left behind"
        );
    }
}

#[test]
fn a_directory_share_keeps_nested_folders_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let src = dir.path().join("album");
    std::fs::create_dir_all(src.join("disc1/bonus")).unwrap();
    std::fs::create_dir_all(src.join("empty-folder")).unwrap();
    write_random_file(&src.join("cover.jpg"), 300_001, 1).unwrap();
    write_random_file(&src.join("disc1/track01.flac"), 1_200_000, 2).unwrap();
    std::fs::write(src.join("disc1/bonus/notes.txt"), b"liner notes\n").unwrap();
    std::fs::write(src.join("disc1/empty.cue"), b"").unwrap();

    let (_boot, boot_addr) = start_bootstrap(logs);
    let (_seeder, id) = start_seeder("seeder", logs, &src, &boot_addr, &[]);
    let out = dir.path().join("out");
    let data = dir.path().join("get-data");
    let mut getter = NodeProc::start("get", logs, &get_args(&id, &out, &data, &boot_addr));
    let status = getter.wait(DONE);
    assert!(status.success(), "get failed:\n{}", getter.log_text());

    let copy = out.join("album");
    assert_eq!(tree_of(&copy), tree_of(&src), "the copy's tree differs");
    assert_eq!(
        std::fs::metadata(copy.join("disc1/empty.cue"))
            .unwrap()
            .len(),
        0
    );
    assert!(copy.join("empty-folder").is_dir());
}

#[test]
fn get_refuses_to_overwrite_a_different_file_and_leaves_it_intact() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let src = dir.path().join("report.pdf");
    write_random_file(&src, 400_000, 3).unwrap();
    let (_boot, boot_addr) = start_bootstrap(logs);
    let (_seeder, id) = start_seeder("seeder", logs, &src, &boot_addr, &[]);

    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let precious = out.join("report.pdf");
    std::fs::write(&precious, b"my own report, not the shared one").unwrap();
    let data = dir.path().join("get-data");
    let mut getter = NodeProc::start("get", logs, &get_args(&id, &out, &data, &boot_addr));
    let status = getter.wait(DONE);
    assert!(
        !status.success(),
        "get should fail when the output name is taken"
    );
    assert!(
        getter.log_text().contains("already exists"),
        "the error should say why:\n{}",
        getter.log_text()
    );
    assert_eq!(
        std::fs::read(&precious).unwrap(),
        b"my own report, not the shared one",
        "an existing file was modified"
    );
}

/// Relative path → SHA-256 for files, "dir" for directories.
fn tree_of(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.insert(rel, "dir".into());
                stack.push(p);
            } else {
                out.insert(rel, sha256_file(&p).unwrap());
            }
        }
    }
    out
}
