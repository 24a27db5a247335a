//! Unit tests of chunk storage: round trips, resume, existing output, and the safety checks.

use super::*;
use crate::scan::scan_path;
use protocol::manifest::MIN_CHUNK_SIZE;
use resume::{ResumeFile, NODE_LEN, RESUME_SLACK};
use std::fs;

pub(super) const CS: u32 = MIN_CHUNK_SIZE;

pub(super) fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7 + i / 251) as u8).wrapping_add(seed))
        .collect()
}

/// src/share: a.bin, sub/b.bin (crosses several chunks), sub/empty, void/ (empty), z.bin.
pub(super) fn source_tree(tmp: &Path) -> PathBuf {
    let root = tmp.join("src").join("share");
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::create_dir_all(root.join("void")).unwrap();
    fs::write(root.join("a.bin"), bytes(20_000, 1)).unwrap();
    fs::write(root.join("sub/b.bin"), bytes(100_000, 2)).unwrap();
    fs::write(root.join("sub/empty"), b"").unwrap();
    fs::write(root.join("z.bin"), bytes(5, 3)).unwrap();
    root
}

pub(super) fn scan(path: &Path) -> (Manifest, MerkleTree) {
    scan_path(path, CS, &mut |_, _| {}).unwrap()
}

/// Fetches `which` chunks from the seed into the download, verifying each as the node would.
pub(super) fn fetch(
    seed: &Storage,
    seed_tree: &MerkleTree,
    dl: &mut Opened,
    which: impl Iterator<Item = u32>,
) {
    for i in which {
        let data = seed.read_chunk(i).unwrap();
        dl.tree
            .verify_and_insert(i, &data, &seed_tree.proof(i).unwrap())
            .unwrap();
        dl.storage.write_chunk(i, &data).unwrap();
        dl.have.set(i);
    }
}

/// The one part folder in `out`.
pub(super) fn part_in(out: &Path) -> PathBuf {
    let parts = parts_in(out);
    assert_eq!(
        parts.len(),
        1,
        "part folders in {}: {parts:?}",
        out.display()
    );
    parts[0].clone()
}

pub(super) fn has_part(out: &Path) -> bool {
    !parts_in(out).is_empty()
}

fn parts_in(out: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(out) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(".kadswarm-") && n.ends_with(".part")
        })
        .map(|e| e.path())
        .collect()
}

pub(super) fn files_under(root: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if p.is_dir() {
                stack.push(p);
                out.push((rel, None));
            } else {
                out.push((rel, Some(fs::read(&p).unwrap())));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn storage_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Storage>();
    check::<Arc<Storage>>();
}

#[test]
fn round_trip_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_tree(tmp.path());
    let (m, seed_tree) = scan(&src);
    assert_eq!(m.chunk_count(), 8);
    let seed = Storage::open_seed(&m, &src).unwrap();
    let out = tmp.path().join("out");
    let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
    assert!(!dl.complete);
    assert!(dl.have.none_set());
    fetch(&seed, &seed_tree, &mut dl, 0..m.chunk_count());
    assert!(dl.have.is_full());
    dl.storage.save_resume(&dl.have, &dl.tree).unwrap();
    let done = dl.storage.finish().unwrap();
    assert_eq!(done, out.join("share"));
    assert_eq!(dl.storage.final_path(), out.join("share"));

    assert_eq!(files_under(&src), files_under(&done));
    assert_eq!(fs::read(done.join("sub/empty")).unwrap(), b"");
    assert!(done.join("void").is_dir());
    assert!(!has_part(&out));
    assert_eq!(fs::read_dir(&out).unwrap().count(), 1);

    // Seeding continues from the final location, read-only.
    for i in 0..m.chunk_count() {
        assert_eq!(
            dl.storage.read_chunk(i).unwrap(),
            seed.read_chunk(i).unwrap()
        );
    }
    let err = dl
        .storage
        .write_chunk(0, &seed.read_chunk(0).unwrap())
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    assert!(dl.storage.save_resume(&dl.have, &dl.tree).is_err());
    // Finishing twice is harmless.
    assert_eq!(dl.storage.finish().unwrap(), done);
}

#[test]
fn round_trip_single_file() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("movie.bin");
    fs::write(&src, bytes(3 * CS as usize + 17, 9)).unwrap();
    let (m, seed_tree) = scan(&src);
    let seed = Storage::open_seed(&m, &src).unwrap();
    let out = tmp.path().join("out");
    let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
    let content = part_in(&out).join("content");
    assert!(content.is_file());
    assert_eq!(fs::metadata(&content).unwrap().len(), m.total_length());
    fetch(&seed, &seed_tree, &mut dl, (0..m.chunk_count()).rev());
    let done = dl.storage.finish().unwrap();
    assert_eq!(fs::read(&done).unwrap(), fs::read(&src).unwrap());
    assert!(!has_part(&out));
    assert_eq!(dl.storage.read_chunk(3).unwrap().len(), 17);
}

#[test]
fn chunks_spanning_file_boundaries() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_tree(tmp.path());
    let (m, _) = scan(&src);
    let seed = Storage::open_seed(&m, &src).unwrap();
    let mut all = bytes(20_000, 1);
    all.extend(bytes(100_000, 2));
    all.extend(bytes(5, 3));
    assert_eq!(all.len() as u64, m.total_length());
    for i in 0..m.chunk_count() {
        let r = m.chunk_range(i);
        assert_eq!(
            seed.read_chunk(i).unwrap(),
            &all[r.start as usize..r.end as usize],
            "chunk {i}"
        );
        let mine: Vec<_> = seed
            .spans(i)
            .map(|s| (s.file, s.offset, s.len as u64))
            .collect();
        let theirs: Vec<_> = m
            .chunk_spans(i)
            .iter()
            .map(|s| (s.file, s.offset, s.len))
            .collect();
        assert_eq!(mine, theirs, "chunk {i}");
    }
    // Chunk 1 covers the end of a.bin and the start of sub/b.bin; the last
    // one the end of b.bin, the empty file (nothing) and z.bin.
    assert_eq!(seed.spans(1).count(), 2);
    assert_eq!(
        seed.spans(7).map(|s| s.file).collect::<Vec<_>>(),
        vec![1, 3]
    );
    // Written across the boundary, read back the same.
    let out = tmp.path().join("out");
    let dl = Storage::open_download(&m, &m.id(), &out).unwrap();
    dl.storage
        .write_chunk(1, &seed.read_chunk(1).unwrap())
        .unwrap();
    let part = part_in(&out).join("content");
    let a = fs::read(part.join("a.bin")).unwrap();
    let b = fs::read(part.join("sub/b.bin")).unwrap();
    assert_eq!(&a[CS as usize..], &all[CS as usize..20_000]);
    assert_eq!(
        &b[..2 * CS as usize - 20_000],
        &all[20_000..2 * CS as usize]
    );
}

#[test]
fn partial_folder_is_used_until_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_tree(tmp.path());
    let (m, seed_tree) = scan(&src);
    let seed = Storage::open_seed(&m, &src).unwrap();
    let out = tmp.path().join("out");
    let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
    let part = part_in(&out);
    // Every file at its final length, the empty ones too, before any chunk arrives.
    assert_eq!(
        fs::metadata(part.join("content/sub/b.bin")).unwrap().len(),
        100_000
    );
    assert_eq!(
        fs::metadata(part.join("content/sub/empty")).unwrap().len(),
        0
    );
    assert!(part.join("content/void").is_dir());
    fetch(&seed, &seed_tree, &mut dl, 0..3);
    assert!(!lock(&dl.storage.state).dirty.is_empty());
    dl.storage.save_resume(&dl.have, &dl.tree).unwrap();
    // Data was synced before the state claiming it was written.
    assert!(lock(&dl.storage.state).dirty.is_empty());
    assert!(part.join("resume.cbor").is_file());
    assert!(!part.join("resume.cbor.tmp").exists());
    assert!(!out.join("share").exists());
    assert_eq!(dl.storage.final_path(), out.join("share"));
    fetch(&seed, &seed_tree, &mut dl, 3..m.chunk_count());
    assert!(!out.join("share").exists());
    dl.storage.finish().unwrap();
    assert!(out.join("share").is_dir());
    assert!(!part.exists());
}

#[test]
fn resume_keeps_saved_chunks_and_drops_corrupted_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_tree(tmp.path());
    let (m, seed_tree) = scan(&src);
    let seed = Storage::open_seed(&m, &src).unwrap();
    let out = tmp.path().join("out");
    let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
    let saved = [0u32, 2, 3, 7];
    fetch(&seed, &seed_tree, &mut dl, saved.iter().copied());
    dl.storage.save_resume(&dl.have, &dl.tree).unwrap();
    // Written after the save: not claimed on reopen.
    fetch(&seed, &seed_tree, &mut dl, [5].into_iter());
    drop(dl);

    let dl = Storage::open_download(&m, &m.id(), &out).unwrap();
    assert!(!dl.complete);
    assert_eq!(dl.have.iter_ones().collect::<Vec<_>>(), saved);
    for i in saved {
        assert_eq!(dl.tree.proof(i), seed_tree.proof(i), "proof for chunk {i}");
    }
    drop(dl);

    // Flip one byte of chunk 3 (it lies inside sub/b.bin) on disk.
    let b = part_in(&out).join("content/sub/b.bin");
    let mut data = fs::read(&b).unwrap();
    let at = 3 * CS as usize - 20_000 + 10;
    data[at] ^= 0xff;
    fs::write(&b, &data).unwrap();
    let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
    assert_eq!(dl.have.iter_ones().collect::<Vec<_>>(), [0, 2, 7]);

    // The rest can still be fetched and the result is exact.
    let missing: Vec<u32> = (0..m.chunk_count()).filter(|&i| !dl.have.get(i)).collect();
    fetch(&seed, &seed_tree, &mut dl, missing.into_iter());
    let done = dl.storage.finish().unwrap();
    assert_eq!(files_under(&src), files_under(&done));
}

fn rewrite_resume(out: &Path, edit: impl FnOnce(&mut ResumeFile)) {
    let path = part_in(out).join("resume.cbor");
    let mut r: ResumeFile = cbor4ii::serde::from_slice(&fs::read(&path).unwrap()).unwrap();
    edit(&mut r);
    fs::write(&path, cbor4ii::serde::to_vec(Vec::new(), &r).unwrap()).unwrap();
}

fn saved_download(tmp: &Path) -> (Manifest, PathBuf) {
    let src = source_tree(tmp);
    let (m, seed_tree) = scan(&src);
    let seed = Storage::open_seed(&m, &src).unwrap();
    let out = tmp.join("out");
    let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
    fetch(&seed, &seed_tree, &mut dl, 0..4);
    dl.storage.save_resume(&dl.have, &dl.tree).unwrap();
    (m, out)
}

#[test]
fn resume_for_a_different_id_is_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let (m, out) = saved_download(tmp.path());
    rewrite_resume(&out, |r| r.id = ContentId::from_bytes([0xab; 32]));
    // A stray file from the other download must not survive into our content.
    fs::write(part_in(&out).join("content/stray"), b"x").unwrap();
    let dl = Storage::open_download(&m, &m.id(), &out).unwrap();
    assert!(dl.have.none_set());
    assert!(!part_in(&out).join("content/stray").exists());
    assert_eq!(
        fs::metadata(part_in(&out).join("content/sub/b.bin"))
            .unwrap()
            .len(),
        100_000
    );
}

#[test]
fn forged_claims_in_resume_are_rechecked() {
    let tmp = tempfile::tempdir().unwrap();
    let (m, out) = saved_download(tmp.path());
    // Claims every chunk and adds a forged leaf: only the four written ones survive.
    rewrite_resume(&out, |r| {
        r.have = Bitfield::full(m.chunk_count()).to_bytes();
        let mut forged = vec![0u8; NODE_LEN];
        forged[4] = 6; // level 0, position 6
        r.nodes.extend_from_slice(&forged);
    });
    let dl = Storage::open_download(&m, &m.id(), &out).unwrap();
    assert_eq!(dl.have.iter_ones().collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert!(!dl.tree.has_leaf(6));
}

#[test]
fn corrupt_resume_is_ignored_without_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let resume_of = |out: &Path| part_in(out).join("resume.cbor");
    let edits: [fn(&Path); 4] = [
        |p| fs::write(p, b"not cbor at all").unwrap(),
        |p| fs::write(p, b"").unwrap(),
        |p| {
            let good = fs::read(p).unwrap();
            fs::write(p, &good[..good.len() / 2]).unwrap()
        },
        |p| {
            // Over the size bound: rejected unread.
            let f = File::create(p).unwrap();
            f.set_len(RESUME_SLACK + (1 << 20)).unwrap();
        },
    ];
    for (k, edit) in edits.iter().enumerate() {
        let (m, out) = saved_download(&tmp.path().join(format!("bytes{k}")));
        edit(&resume_of(&out));
        let dl = Storage::open_download(&m, &m.id(), &out).unwrap();
        assert!(dl.have.none_set(), "case {k}: {:?}", dl.have);
    }
    // A bitfield of the wrong length, ragged nodes, an unknown version.
    let fields: [fn(&mut ResumeFile); 3] =
        [|r| r.have.push(0), |r| r.nodes.push(0), |r| r.version = 9];
    for (k, edit) in fields.into_iter().enumerate() {
        let (m, out) = saved_download(&tmp.path().join(format!("field{k}")));
        rewrite_resume(&out, edit);
        let dl = Storage::open_download(&m, &m.id(), &out).unwrap();
        assert!(dl.have.none_set(), "case {k}: {:?}", dl.have);
    }
}

#[test]
fn existing_complete_output_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_tree(tmp.path());
    let (m, seed_tree) = scan(&src);
    // The source's parent already holds the complete content.
    let opened = Storage::open_download(&m, &m.id(), src.parent().unwrap()).unwrap();
    assert!(opened.complete);
    assert!(opened.have.is_full());
    assert_eq!(opened.tree.root(), m.root);
    for i in 0..m.chunk_count() {
        assert_eq!(opened.tree.proof(i), seed_tree.proof(i));
    }
    assert_eq!(opened.storage.read_chunk(0).unwrap().len(), CS as usize);
    assert!(opened
        .storage
        .write_chunk(0, &vec![0; CS as usize])
        .is_err());
    // Nothing was written next to it.
    assert!(!has_part(src.parent().unwrap()));
    assert_eq!(fs::read_dir(src.parent().unwrap()).unwrap().count(), 1);
}

#[test]
fn existing_different_output_is_refused_and_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_tree(tmp.path());
    let (m, _) = scan(&src);
    let out = src.parent().unwrap();
    let before = files_under(&src);

    // Same lengths, one byte different.
    let z = src.join("z.bin");
    let mut data = fs::read(&z).unwrap();
    data[0] ^= 1;
    fs::write(&z, &data).unwrap();
    let before_edit = files_under(&src);
    let err = Storage::open_download(&m, &m.id(), out).unwrap_err();
    match &err {
        StorageError::OutputExists { path, .. } => assert_eq!(path, &src),
        other => panic!("expected OutputExists, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("--out") && msg.contains("share"), "{msg}");
    assert_eq!(files_under(&src), before_edit);
    assert_ne!(files_under(&src), before);

    // Different length.
    fs::write(&z, b"longer than before").unwrap();
    let err = Storage::open_download(&m, &m.id(), out).unwrap_err();
    assert!(matches!(err, StorageError::OutputExists { .. }), "{err}");
    assert_eq!(fs::read(&z).unwrap(), b"longer than before");

    // A file where the directory should be.
    let other_out = tmp.path().join("o2");
    fs::create_dir(&other_out).unwrap();
    fs::write(other_out.join("share"), b"hi").unwrap();
    let err = Storage::open_download(&m, &m.id(), &other_out).unwrap_err();
    assert!(matches!(err, StorageError::OutputExists { .. }), "{err}");
    assert_eq!(fs::read(other_out.join("share")).unwrap(), b"hi");
    assert!(!has_part(out));
    assert!(!has_part(&other_out));
}

#[test]
fn output_appearing_before_finish_is_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("f.bin");
    fs::write(&src, bytes(40_000, 4)).unwrap();
    let (m, seed_tree) = scan(&src);
    let seed = Storage::open_seed(&m, &src).unwrap();
    let out = tmp.path().join("out");
    let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
    fetch(&seed, &seed_tree, &mut dl, 0..m.chunk_count());
    fs::write(out.join("f.bin"), b"mine").unwrap();
    let err = dl.storage.finish().unwrap_err();
    assert!(matches!(err, StorageError::OutputExists { .. }), "{err}");
    assert_eq!(fs::read(out.join("f.bin")).unwrap(), b"mine");
    // The download is intact and still writable; it finishes once the way is clear.
    fs::remove_file(out.join("f.bin")).unwrap();
    dl.storage
        .write_chunk(0, &seed.read_chunk(0).unwrap())
        .unwrap();
    let done = dl.storage.finish().unwrap();
    assert_eq!(fs::read(done).unwrap(), fs::read(&src).unwrap());
}

#[test]
fn wrong_length_and_out_of_range_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_tree(tmp.path());
    let (m, _) = scan(&src);
    let out = tmp.path().join("out");
    let dl = Storage::open_download(&m, &m.id(), &out).unwrap();
    let s = &dl.storage;
    let err = s.write_chunk(0, &vec![1; CS as usize - 1]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(s.write_chunk(0, &vec![1; CS as usize + 1]).is_err());
    // The last chunk is short: a full-size write is wrong there.
    assert!(s.write_chunk(7, &vec![1; CS as usize]).is_err());
    assert!(s.write_chunk(8, &[]).is_err());
    assert!(s.read_chunk(8).is_err());
    assert!(s.read_chunk(u32::MAX).is_err());
    // Nothing reached the disk.
    assert_eq!(
        fs::read(part_in(&out).join("content/a.bin")).unwrap(),
        vec![0; 20_000]
    );
    // A seed is read-only.
    let mut seed = Storage::open_seed(&m, &src).unwrap();
    let err = seed.write_chunk(0, &vec![0; CS as usize]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    // Finishing a share is a no-op: it is already in place.
    assert_eq!(seed.finish().unwrap(), src);
    assert!(seed
        .save_resume(&Bitfield::new(8), &MerkleTree::with_root(m.root, 8))
        .is_err());
    assert_eq!(fs::read(src.join("a.bin")).unwrap(), bytes(20_000, 1));
}

#[test]
fn seed_checks_file_lengths() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_tree(tmp.path());
    let (m, _) = scan(&src);
    fs::write(src.join("z.bin"), b"123456").unwrap();
    match Storage::open_seed(&m, &src) {
        Err(StorageError::LengthMismatch {
            path,
            expected,
            found,
        }) => {
            assert_eq!((path, expected, found), (src.join("z.bin"), 5, 6));
        }
        other => panic!("expected LengthMismatch, got {other:?}"),
    }
    fs::remove_file(src.join("z.bin")).unwrap();
    let err = Storage::open_seed(&m, &src).unwrap_err();
    assert!(err.to_string().contains("z.bin"), "{err}");
}

#[test]
fn open_handles_stay_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("many");
    fs::create_dir(&root).unwrap();
    let mut all = Vec::new();
    for k in 0..12u8 {
        let data = bytes(5_000 + usize::from(k) * 300, k);
        fs::write(root.join(format!("f{k:02}")), &data).unwrap();
        all.extend(data);
    }
    let (m, seed_tree) = scan(&root);
    let mut seed = Storage::open_seed(&m, &root).unwrap();
    seed.max_open = 3;
    let out = tmp.path().join("out");
    let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
    dl.storage.max_open = 3;
    for i in 0..m.chunk_count() {
        let r = m.chunk_range(i);
        assert_eq!(
            seed.read_chunk(i).unwrap(),
            &all[r.start as usize..r.end as usize]
        );
        assert!(seed.open_handles() <= 3);
    }
    fetch(&seed, &seed_tree, &mut dl, 0..m.chunk_count());
    assert!(dl.storage.open_handles() <= 3);
    dl.storage.save_resume(&dl.have, &dl.tree).unwrap();
    let done = dl.storage.finish().unwrap();
    assert_eq!(files_under(&root), files_under(&done));
}

#[test]
fn empty_content_downloads_and_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("hollow");
    fs::create_dir_all(root.join("inner/deeper")).unwrap();
    fs::write(root.join("zero"), b"").unwrap();
    let (m, _) = scan(&root);
    assert_eq!(m.chunk_count(), 0);
    let out = tmp.path().join("out");
    let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
    assert!(dl.have.is_full() && !dl.complete);
    dl.storage.save_resume(&dl.have, &dl.tree).unwrap();
    let done = dl.storage.finish().unwrap();
    assert!(done.join("inner/deeper").is_dir());
    assert_eq!(fs::metadata(done.join("zero")).unwrap().len(), 0);
    // And once there, it is recognised as complete.
    assert!(Storage::open_download(&m, &m.id(), &out).unwrap().complete);
}

#[test]
fn concurrent_reads_and_writes_through_arc() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_tree(tmp.path());
    let (m, _) = scan(&src);
    let seed = Arc::new(Storage::open_seed(&m, &src).unwrap());
    let dl = Storage::open_download(&m, &m.id(), &tmp.path().join("out")).unwrap();
    let dst = Arc::new(dl.storage);
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let (seed, dst) = (Arc::clone(&seed), Arc::clone(&dst));
            std::thread::spawn(move || {
                for i in (t..8).step_by(4) {
                    dst.write_chunk(i, &seed.read_chunk(i).unwrap()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for i in 0..m.chunk_count() {
        assert_eq!(dst.read_chunk(i).unwrap(), seed.read_chunk(i).unwrap());
    }
    let mut dst = Arc::try_unwrap(dst).unwrap();
    let done = dst.finish().unwrap();
    assert_eq!(files_under(&src), files_under(&done));
}
