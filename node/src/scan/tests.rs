//! Tests of the share scanner.

use super::*;
use protocol::manifest::MIN_CHUNK_SIZE;
use protocol::merkle::verify_chunk;
use std::ffi::OsStr;

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn no_progress() -> impl FnMut(u64, u64) {
    |_, _| {}
}

/// tmp/share/{b/c.bin, b/empty.txt, a.txt, d/ (empty), e/f/ (empty)}
fn nested(tmp: &Path) -> PathBuf {
    let root = tmp.join("share");
    fs::create_dir_all(root.join("b")).unwrap();
    fs::create_dir_all(root.join("d")).unwrap();
    fs::create_dir_all(root.join("e/f")).unwrap();
    fs::write(root.join("b/c.bin"), content(40_000, 1)).unwrap();
    fs::write(root.join("b/empty.txt"), b"").unwrap();
    fs::write(root.join("a.txt"), content(10_000, 2)).unwrap();
    root
}

fn strs(p: &[&str]) -> Vec<String> {
    p.iter().map(|s| s.to_string()).collect()
}

#[test]
fn nested_directory_lists_files_empty_file_and_empty_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = nested(tmp.path());
    let (m, tree) = scan_path(&root, MIN_CHUNK_SIZE, &mut no_progress()).unwrap();
    assert_eq!(m.name, "share");
    let Layout::Directory { entries } = &m.layout else {
        panic!("expected a directory layout, got {:?}", m.layout);
    };
    let expected = vec![
        Entry {
            path: strs(&["a.txt"]),
            kind: EntryKind::File { length: 10_000 },
        },
        Entry {
            path: strs(&["b", "c.bin"]),
            kind: EntryKind::File { length: 40_000 },
        },
        Entry {
            path: strs(&["b", "empty.txt"]),
            kind: EntryKind::File { length: 0 },
        },
        Entry {
            path: strs(&["d"]),
            kind: EntryKind::Dir,
        },
        Entry {
            path: strs(&["e", "f"]),
            kind: EntryKind::Dir,
        },
    ];
    assert_eq!(entries, &expected);
    assert_eq!(m.total_length(), 50_000);
    assert_eq!(m.chunk_count(), 4);
    // Every chunk of the concatenation verifies against the root.
    let mut all = content(10_000, 2);
    all.extend(content(40_000, 1));
    for i in 0..m.chunk_count() {
        let r = m.chunk_range(i);
        let data = &all[r.start as usize..r.end as usize];
        verify_chunk(&m.root, m.chunk_count(), i, data, &tree.proof(i).unwrap()).unwrap();
    }
    assert_eq!(
        file_paths(&m, &root),
        vec![
            root.join("a.txt"),
            root.join("b/c.bin"),
            root.join("b/empty.txt")
        ]
    );
}

#[test]
fn same_tree_gives_same_id_and_order_is_bytewise() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("s");
    fs::create_dir(&root).unwrap();
    for n in ["b", "B", "a", "_", "a.b", "10", "9"] {
        fs::write(root.join(n), n).unwrap();
    }
    let (m1, _) = scan_path(&root, MIN_CHUNK_SIZE, &mut no_progress()).unwrap();
    let (m2, _) = scan_path(&root, MIN_CHUNK_SIZE, &mut no_progress()).unwrap();
    assert_eq!(m1.id(), m2.id());
    let names: Vec<&str> = m1.files().map(|(p, _)| p[0].as_str()).collect();
    assert_eq!(names, ["10", "9", "B", "_", "a", "a.b", "b"]);
}

#[test]
fn single_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("movie.bin");
    let data = content(3 * MIN_CHUNK_SIZE as usize + 5, 9);
    fs::write(&path, &data).unwrap();
    let mut calls = Vec::new();
    let (m, tree) = scan_path(&path, MIN_CHUNK_SIZE, &mut |d, t| calls.push((d, t))).unwrap();
    assert_eq!(m.name, "movie.bin");
    assert_eq!(
        m.layout,
        Layout::File {
            length: data.len() as u64
        }
    );
    assert_eq!(m.chunk_count(), 4);
    assert_eq!(tree.root(), m.root);
    assert_eq!(file_paths(&m, &path), vec![path.clone()]);
    let total = data.len() as u64;
    assert_eq!(calls.first(), Some(&(0, total)));
    assert_eq!(calls.last(), Some(&(total, total)));
}

#[test]
fn progress_is_reported_every_few_mib() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("big");
    fs::write(&path, vec![7u8; 10 << 20]).unwrap();
    let mut calls = Vec::new();
    scan_path(&path, MIN_CHUNK_SIZE, &mut |d, t| calls.push((d, t))).unwrap();
    // Start, at 4 and 8 MiB, end.
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
}

#[test]
fn empty_directory_share() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("nothing");
    fs::create_dir(&root).unwrap();
    let (m, _) = scan_path(&root, MIN_CHUNK_SIZE, &mut no_progress()).unwrap();
    assert_eq!(m.layout, Layout::Directory { entries: vec![] });
    assert_eq!(m.chunk_count(), 0);
}

#[test]
fn missing_path_errors_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("no-such-thing");
    let err = scan_path(&path, MIN_CHUNK_SIZE, &mut no_progress()).unwrap_err();
    assert!(matches!(&err, ScanError::NotFound { path: p } if p == &path));
    let msg = err.to_string();
    assert!(
        msg.contains("no-such-thing") && msg.contains("not found"),
        "{msg}"
    );
}

#[test]
fn symlinks_and_special_files_are_skipped_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("secret");
    fs::write(&outside, b"do not share").unwrap();
    let root = tmp.path().join("share");
    fs::create_dir_all(root.join("links")).unwrap();
    fs::write(root.join("real"), b"ok").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("links/to-file")).unwrap();
    std::os::unix::fs::symlink(tmp.path(), root.join("to-dir")).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    let (m, _) = scan_path(&root, MIN_CHUNK_SIZE, &mut no_progress()).unwrap();
    let Layout::Directory { entries } = &m.layout else {
        panic!("not a directory");
    };
    assert_eq!(
        entries,
        &vec![
            Entry {
                path: strs(&["links"]),
                kind: EntryKind::Dir
            },
            Entry {
                path: strs(&["real"]),
                kind: EntryKind::File { length: 2 }
            },
        ]
    );
    assert_eq!(m.total_length(), 2);
}

#[test]
fn special_file_as_the_share_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("sock");
    let _sock = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let err = scan_path(&path, MIN_CHUNK_SIZE, &mut no_progress()).unwrap_err();
    assert!(matches!(err, ScanError::NotFileOrDirectory { .. }), "{err}");
}

#[test]
fn non_utf8_name_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("share");
    fs::create_dir(&root).unwrap();
    let bad = root.join(OsStr::from_bytes(b"caf\xe9"));
    fs::write(&bad, b"x").unwrap();
    let err = scan_path(&root, MIN_CHUNK_SIZE, &mut no_progress()).unwrap_err();
    assert!(
        matches!(&err, ScanError::NonUtf8Name { path } if path == &bad),
        "{err}"
    );
    assert!(err.to_string().contains("UTF-8"));
}

#[test]
fn unsafe_name_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("share");
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("sub/back\\slash"), b"x").unwrap();
    let err = scan_path(&root, MIN_CHUNK_SIZE, &mut no_progress()).unwrap_err();
    match &err {
        ScanError::UnsafeName { path, name } => {
            assert_eq!(path, &root.join("sub/back\\slash"));
            assert_eq!(name, "back\\slash");
        }
        other => panic!("expected UnsafeName, got {other}"),
    }
}

#[test]
fn bad_chunk_size_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f");
    fs::write(&path, b"x").unwrap();
    let err = scan_path(&path, 1000, &mut no_progress()).unwrap_err();
    assert!(matches!(err, ScanError::Limits { .. }), "{err}");
}

#[test]
fn length_change_during_scan_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f");
    fs::write(&path, content(5000, 3)).unwrap();
    let meta = fs::metadata(&path).unwrap();
    let mut builder =
        ManifestBuilder::new("f".into(), MIN_CHUNK_SIZE, Layout::File { length: 5000 }).unwrap();
    let mut buf = vec![0u8; READ_BUF];
    let mut progress = no_progress();
    let mut meter = Meter {
        done: 0,
        last: 0,
        total: 5000,
        progress: &mut progress,
    };
    // Listed with 5000 bytes; it has 4000 when hashed.
    let source = Source::new(path.clone(), &meta);
    fs::write(&path, content(4000, 3)).unwrap();
    let err = hash_file(&source, &mut builder, &mut buf, &mut meter).unwrap_err();
    assert!(
        matches!(&err, ScanError::Changed { path: p, .. } if p == &path),
        "{err}"
    );
    // A file swapped for another one is caught too.
    let other = tmp.path().join("g");
    fs::write(&other, content(5000, 3)).unwrap();
    fs::rename(&other, &path).unwrap();
    let source = Source::new(path.clone(), &meta);
    let err = hash_file(&source, &mut builder, &mut buf, &mut meter).unwrap_err();
    assert!(matches!(err, ScanError::Changed { .. }), "{err}");
}

#[test]
fn dot_path_takes_the_directory_name() {
    let tmp = tempfile::tempdir().unwrap();
    let root = nested(tmp.path());
    // "b/.." has no file name: it is resolved to "share".
    let (m, _) = scan_path(&root.join("b/.."), MIN_CHUNK_SIZE, &mut no_progress()).unwrap();
    assert_eq!(m.name, "share");
    let (m, _) = scan_path(&root.join("."), MIN_CHUNK_SIZE, &mut no_progress()).unwrap();
    assert_eq!(m.name, "share");
}
