//! Unit tests of what storage must refuse: a neighbour on the same disk
//! planting links or swapping files, concurrent downloads, a full disk.

use super::tests::{bytes, fetch, files_under, has_part, part_in, scan, source_tree, CS};
use super::*;
use crate::scan::scan_share;
use std::fs;
use std::os::unix::fs::symlink;

/// A single-file content `name` of `len` bytes from `seed`, shared from `dir`.
fn single(dir: &Path, name: &str, len: usize, seed: u8) -> (PathBuf, Manifest, MerkleTree) {
    fs::create_dir_all(dir).unwrap();
    let src = dir.join(name);
    fs::write(&src, bytes(len, seed)).unwrap();
    let (m, tree) = scan(&src);
    (src, m, tree)
}

/// Downloads everything of `m` from `src` into `out` but does not finish.
fn downloaded(src: &Path, m: &Manifest, tree: &MerkleTree, out: &Path) -> Opened {
    let seed = Storage::open_seed(m, src).unwrap();
    let mut dl = Storage::open_download(m, &m.id(), out).unwrap();
    fetch(&seed, tree, &mut dl, 0..m.chunk_count());
    dl
}

#[test]
fn same_name_different_content_never_mix() {
    let tmp = tempfile::tempdir().unwrap();
    let (src_a, ma, ta) = single(&tmp.path().join("a"), "report.pdf", 50_000, 1);
    let (src_b, mb, tb) = single(&tmp.path().join("b"), "report.pdf", 50_000, 2);
    assert_ne!(ma.id(), mb.id());
    let out = tmp.path().join("out");
    // Both in progress at once in the same output folder.
    let mut a = downloaded(&src_a, &ma, &ta, &out);
    let mut b = downloaded(&src_b, &mb, &tb, &out);
    for i in 0..ma.chunk_count() {
        assert_eq!(
            a.storage.read_chunk(i).unwrap(),
            Storage::open_seed(&ma, &src_a)
                .unwrap()
                .read_chunk(i)
                .unwrap()
        );
    }
    let done = a.storage.finish().unwrap();
    assert_eq!(fs::read(&done).unwrap(), fs::read(&src_a).unwrap());
    // The second finds the name taken: an error, never the other's bytes as its own.
    let err = b.storage.finish().unwrap_err();
    assert!(matches!(err, StorageError::OutputExists { .. }), "{err}");
    assert_eq!(fs::read(&done).unwrap(), fs::read(&src_a).unwrap());
    // Its own data is intact in its own part folder.
    let kept = out.join(part_name(&mb.id())).join("content");
    assert_eq!(fs::read(kept).unwrap(), fs::read(&src_b).unwrap());
}

#[test]
fn a_second_download_of_the_same_content_is_refused_while_the_first_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, m, _) = single(tmp.path(), "f.bin", 40_000, 3);
    let out = tmp.path().join("out");
    let first = Storage::open_download(&m, &m.id(), &out).unwrap();
    let err = Storage::open_download(&m, &m.id(), &out).unwrap_err();
    assert!(matches!(err, StorageError::Busy { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("another kadswarm process is downloading"));
    drop(first);
    Storage::open_download(&m, &m.id(), &out).unwrap();
}

#[test]
fn finish_refuses_files_this_download_did_not_write() {
    let tmp = tempfile::tempdir().unwrap();
    // A single file replaced in the part folder by another of the same length.
    let (src, m, tree) = single(&tmp.path().join("s"), "f.bin", 40_000, 4);
    let out = tmp.path().join("out1");
    let mut dl = downloaded(&src, &m, &tree, &out);
    let content = part_in(&out).join("content");
    let forged = tmp.path().join("forged");
    fs::write(&forged, bytes(40_000, 99)).unwrap();
    fs::rename(&forged, &content).unwrap();
    let err = dl.storage.finish().unwrap_err();
    assert!(matches!(err, StorageError::Changed { .. }), "{err}");
    assert!(!out.join("f.bin").exists());

    // A link to a victim in place of `content`: refused, victim untouched, nothing moved.
    let out = tmp.path().join("out2");
    let mut dl = downloaded(&src, &m, &tree, &out);
    let victim = tmp.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    let content = part_in(&out).join("content");
    fs::remove_file(&content).unwrap();
    symlink(&victim, &content).unwrap();
    let err = dl.storage.finish().unwrap_err();
    assert!(matches!(err, StorageError::Changed { .. }), "{err}");
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(fs::symlink_metadata(out.join("f.bin")).is_err());

    // The same file, cut short behind our back.
    let out = tmp.path().join("out4");
    let mut dl = downloaded(&src, &m, &tree, &out);
    let content = part_in(&out).join("content");
    fs::OpenOptions::new()
        .write(true)
        .open(&content)
        .unwrap()
        .set_len(100)
        .unwrap();
    let err = dl.storage.finish().unwrap_err();
    assert!(matches!(err, StorageError::Changed { .. }), "{err}");
    assert!(!out.join("f.bin").exists());

    // A file inside a directory download swapped for another.
    let tree_src = source_tree(&tmp.path().join("t"));
    let (m, tree) = scan(&tree_src);
    let out = tmp.path().join("out3");
    let mut dl = downloaded(&tree_src, &m, &tree, &out);
    let b = part_in(&out).join("content/sub/b.bin");
    let other = tmp.path().join("other");
    fs::write(&other, fs::read(&b).unwrap()).unwrap();
    fs::rename(&other, &b).unwrap();
    let err = dl.storage.finish().unwrap_err();
    assert!(matches!(err, StorageError::Changed { .. }), "{err}");
    assert!(!out.join("share").exists());
}

#[test]
fn links_planted_under_out_are_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, m, tree) = single(&tmp.path().join("s"), "f.bin", 40_000, 5);
    let victim_dir = tmp.path().join("victim-dir");
    fs::create_dir(&victim_dir).unwrap();
    fs::write(victim_dir.join("content"), b"precious").unwrap();
    fs::write(victim_dir.join("resume.cbor"), b"precious").unwrap();
    let victim = tmp.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    let untouched = || {
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(victim_dir.join("content")).unwrap(), b"precious");
        assert_eq!(
            fs::read(victim_dir.join("resume.cbor")).unwrap(),
            b"precious"
        );
        assert_eq!(fs::read_dir(&victim_dir).unwrap().count(), 2);
    };

    // At the part folder: refused.
    let out = tmp.path().join("out1");
    fs::create_dir(&out).unwrap();
    symlink(&victim_dir, out.join(part_name(&m.id()))).unwrap();
    let err = Storage::open_download(&m, &m.id(), &out).unwrap_err();
    assert!(matches!(err, StorageError::UnsafePart { .. }), "{err}");
    untouched();

    // At the content path and the temp resume path inside a real part folder:
    // the links themselves are replaced, the download completes.
    let out = tmp.path().join("out2");
    let part = out.join(part_name(&m.id()));
    fs::create_dir_all(&part).unwrap();
    symlink(&victim, part.join("content")).unwrap();
    symlink(&victim, part.join("resume.cbor.tmp")).unwrap();
    let mut dl = downloaded(&src, &m, &tree, &out);
    dl.storage.save_resume(&dl.have, &dl.tree).unwrap();
    let done = dl.storage.finish().unwrap();
    assert_eq!(fs::read(&done).unwrap(), fs::read(&src).unwrap());
    untouched();

    // A link at resume.cbor is read as no state (not followed).
    let out = tmp.path().join("out3");
    let part = out.join(part_name(&m.id()));
    fs::create_dir_all(&part).unwrap();
    symlink(victim_dir.join("resume.cbor"), part.join("resume.cbor")).unwrap();
    let dl = Storage::open_download(&m, &m.id(), &out).unwrap();
    assert!(dl.have.none_set());
    drop(dl);
    untouched();

    // At the final path: refused as existing output, never read or replaced.
    let out = tmp.path().join("out4");
    fs::create_dir(&out).unwrap();
    symlink(&src, out.join("f.bin")).unwrap();
    let err = Storage::open_download(&m, &m.id(), &out).unwrap_err();
    assert!(
        matches!(&err, StorageError::OutputExists { reason, .. } if reason.contains("link")),
        "{err}"
    );
    assert!(fs::symlink_metadata(out.join("f.bin"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(!has_part(&out));

    // A link appearing at the final path while downloading is not replaced.
    let out = tmp.path().join("out5");
    let mut dl = downloaded(&src, &m, &tree, &out);
    symlink(&victim, out.join("f.bin")).unwrap();
    let err = dl.storage.finish().unwrap_err();
    assert!(matches!(err, StorageError::OutputExists { .. }), "{err}");
    assert!(fs::symlink_metadata(out.join("f.bin"))
        .unwrap()
        .file_type()
        .is_symlink());
    untouched();
}

#[test]
fn links_inside_a_resumed_directory_download_are_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_tree(tmp.path());
    let (m, tree) = scan(&src);
    let seed = Storage::open_seed(&m, &src).unwrap();
    let out = tmp.path().join("out");
    let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
    fetch(&seed, &tree, &mut dl, 0..2);
    dl.storage.save_resume(&dl.have, &dl.tree).unwrap();
    drop(dl);
    let victim = tmp.path().join("victim");
    fs::create_dir(&victim).unwrap();
    fs::write(victim.join("b.bin"), b"precious").unwrap();
    let sub = part_in(&out).join("content/sub");
    fs::remove_dir_all(&sub).unwrap();
    symlink(&victim, &sub).unwrap();
    // Fails clearly or goes on without the link; the victim is never written.
    match Storage::open_download(&m, &m.id(), &out) {
        Ok(mut dl) => {
            fetch(&seed, &tree, &mut dl, 0..m.chunk_count());
            let done = dl.storage.finish().unwrap();
            assert_eq!(files_under(&src), files_under(&done));
        }
        Err(e) => assert!(e.to_string().contains("sub"), "{e}"),
    }
    assert_eq!(fs::read(victim.join("b.bin")).unwrap(), b"precious");
    assert_eq!(fs::read_dir(&victim).unwrap().count(), 1);
}

#[test]
fn a_shared_file_swapped_after_the_scan_is_never_served() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_tree(tmp.path());
    let scanned = scan_share(&src, Some(CS), &mut |_, _| {}).unwrap();
    let m = &scanned.manifest;
    let secret = tmp.path().join("secret");
    fs::write(&secret, vec![0x5a; 100_000]).unwrap();
    let seed = Storage::open_share(m, &src, &scanned.files).unwrap();
    // sub/b.bin spans chunks 1..=7; replaced by a same-length link to the secret.
    fs::remove_file(src.join("sub/b.bin")).unwrap();
    symlink(&secret, src.join("sub/b.bin")).unwrap();
    for i in 1..m.chunk_count() {
        match seed.read_chunk(i) {
            Ok(data) => panic!("chunk {i} served after the swap ({} bytes)", data.len()),
            Err(e) => assert!(e.to_string().contains("b.bin"), "{e}"),
        }
    }
    // Chunk 0 lies in a.bin alone: still served.
    assert_eq!(seed.read_chunk(0).unwrap(), bytes(20_000, 1)[..CS as usize]);
    // Opening the share again after the swap is refused too.
    let err = Storage::open_share(m, &src, &scanned.files).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::NotAFile { .. } | StorageError::Replaced { .. }
        ),
        "{err}"
    );

    // A directory on the way swapped for a link to a look-alike.
    let src = source_tree(&tmp.path().join("two"));
    let scanned = scan_share(&src, Some(CS), &mut |_, _| {}).unwrap();
    let seed = Storage::open_share(&scanned.manifest, &src, &scanned.files).unwrap();
    let fake = tmp.path().join("fake-sub");
    fs::create_dir(&fake).unwrap();
    fs::write(fake.join("b.bin"), vec![0x5a; 100_000]).unwrap();
    fs::write(fake.join("empty"), b"").unwrap();
    fs::remove_dir_all(src.join("sub")).unwrap();
    symlink(&fake, src.join("sub")).unwrap();
    for i in 1..scanned.manifest.chunk_count() {
        assert!(seed.read_chunk(i).is_err(), "chunk {i} served via a link");
    }

    // A same-length regular file put in its place is another file: refused too.
    let src = source_tree(&tmp.path().join("three"));
    let scanned = scan_share(&src, Some(CS), &mut |_, _| {}).unwrap();
    let seed = Storage::open_share(&scanned.manifest, &src, &scanned.files).unwrap();
    let other = tmp.path().join("other");
    fs::write(&other, b"12345").unwrap();
    fs::rename(&other, src.join("z.bin")).unwrap();
    let last = scanned.manifest.chunk_count() - 1;
    assert!(seed.read_chunk(last).is_err());
}

#[test]
fn finishing_content_that_was_already_complete_returns_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, m, tree) = single(&tmp.path().join("s"), "f.bin", 40_000, 6);
    let out = tmp.path().join("out");
    let mut dl = downloaded(&src, &m, &tree, &out);
    let done = dl.storage.finish().unwrap();
    // A second `get` into the same folder: verified in place, then "finished".
    let mut again = Storage::open_download(&m, &m.id(), &out).unwrap();
    assert!(again.complete);
    assert_eq!(again.storage.finish().unwrap(), done);
    assert_eq!(fs::read(&done).unwrap(), fs::read(&src).unwrap());
    assert!(!has_part(&out));
}

#[test]
fn a_name_of_250_bytes_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("{}.bin", "n".repeat(246));
    assert_eq!(name.len(), 250);
    let (src, m, tree) = single(&tmp.path().join("s"), &name, 40_000, 7);
    let out = tmp.path().join("out");
    let mut dl = downloaded(&src, &m, &tree, &out);
    dl.storage.save_resume(&dl.have, &dl.tree).unwrap();
    let done = dl.storage.finish().unwrap();
    assert_eq!(done, out.join(&name));
    assert_eq!(fs::read(&done).unwrap(), fs::read(&src).unwrap());
}

#[test]
fn a_zero_byte_file_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, m, _) = single(&tmp.path().join("s"), "empty.txt", 0, 0);
    assert_eq!(m.chunk_count(), 0);
    let out = tmp.path().join("out");
    let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
    assert!(dl.have.is_full());
    let done = dl.storage.finish().unwrap();
    assert_eq!(fs::read(&done).unwrap(), fs::read(&src).unwrap());
    assert!(!has_part(&out));
    let mut again = Storage::open_download(&m, &m.id(), &out).unwrap();
    assert!(again.complete);
    assert_eq!(again.storage.finish().unwrap(), done);
}

#[test]
fn a_failed_resume_save_leaves_no_temp_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, m, tree) = single(&tmp.path().join("s"), "f.bin", 40_000, 8);
    let out = tmp.path().join("out");
    let dl = downloaded(&src, &m, &tree, &out);
    // A directory in the way makes the final rename fail after the temp file is written.
    let part = part_in(&out);
    fs::create_dir_all(part.join("resume.cbor/blocker")).unwrap();
    let err = dl.storage.save_resume(&dl.have, &dl.tree).unwrap_err();
    assert!(err.to_string().contains("resume.cbor"), "{err}");
    assert!(
        fs::symlink_metadata(part.join("resume.cbor.tmp")).is_err(),
        "a failed save left its temp file"
    );
    // Once the way is clear, saving works again.
    fs::remove_dir_all(part.join("resume.cbor")).unwrap();
    dl.storage.save_resume(&dl.have, &dl.tree).unwrap();
    assert!(part.join("resume.cbor").is_file());
}

#[test]
fn too_little_free_space_is_refused_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, m, _) = single(&tmp.path().join("s"), "f.bin", 40_000, 9);
    let out = tmp.path().join("out");
    let err = Storage::download(&m, &m.id(), &out, &|_| Ok(1_000)).unwrap_err();
    match &err {
        StorageError::NoSpace {
            needed, available, ..
        } => assert_eq!((*needed, *available), (40_000, 1_000)),
        other => panic!("expected NoSpace, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("40000") && msg.contains("1000"), "{msg}");
    // Nothing was left behind, and with room it proceeds.
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
    Storage::download(&m, &m.id(), &out, &|_| Ok(40_000)).unwrap();
}
