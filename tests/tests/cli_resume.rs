//! A `node get` killed with SIGKILL mid-download resumes and fetches only what it lacked.

use std::time::{Duration, Instant};

use kadswarm_tests::{
    get_args, path_str, read_stats, resume_have_count, sha256_file, start_bootstrap, start_seeder,
    write_random_file, NodeProc,
};

const CHUNK: u64 = 64 * 1024;

#[test]
fn a_killed_download_resumes_without_refetching_saved_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let size: u64 = 8 * 1024 * 1024;
    let total_chunks = size.div_ceil(CHUNK) as u32;
    let src = dir.path().join("dataset.tar");
    write_random_file(&src, size, 11).unwrap();

    let (_boot, boot_addr) = start_bootstrap(logs);
    // Capped so the download takes ~8 s and can be killed half-way.
    let (_seeder, id) = start_seeder(
        "seeder",
        logs,
        &src,
        &boot_addr,
        &["--chunk-size", "64KiB", "--max-upload", "1MiB"],
    );

    let out = dir.path().join("out");
    let data = dir.path().join("get-data");
    let stats1 = dir.path().join("stats1.json");
    let mut args = get_args(&id, &out, &data, &boot_addr);
    args.extend(["--stats-file", path_str(&stats1)]);
    let mut first = NodeProc::start("get1", logs, &args);

    // Wait for about a third of the chunks, then give the 1 s resume save time to land.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let have = read_stats(&stats1).map_or(0, |s| s.have);
        if have >= total_chunks / 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "download made no progress:\n{}",
            first.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    first.kill9();

    let part = out.join(format!(".kadswarm-{id}.part"));
    assert!(part.is_dir(), "the partial download folder is missing");
    assert!(
        !out.join("dataset.tar").exists(),
        "a partial download must not sit under the final name"
    );
    let saved = resume_have_count(&part.join("resume.cbor"));
    assert!(
        saved > 0 && saved < total_chunks,
        "the resume file records {saved} of {total_chunks} chunks"
    );

    let stats2 = dir.path().join("stats2.json");
    let mut args = get_args(&id, &out, &data, &boot_addr);
    args.extend(["--stats-file", path_str(&stats2)]);
    let mut second = NodeProc::start("get2", logs, &args);
    let status = second.wait(Duration::from_secs(180));
    assert!(
        status.success(),
        "resumed get failed:\n{}",
        second.log_text()
    );
    assert_eq!(
        sha256_file(&out.join("dataset.tar")).unwrap(),
        sha256_file(&src).unwrap(),
        "the resumed copy differs from the source"
    );
    let fetched = read_stats(&stats2)
        .expect("stats of the resumed run")
        .downloaded;
    let missing = u64::from(total_chunks - saved) * CHUNK;
    eprintln!("saved {saved}/{total_chunks} chunks; resumed run fetched {fetched} bytes, {missing} were missing");
    assert!(
        fetched <= missing,
        "the resumed run fetched {fetched} bytes but only {missing} were missing: saved chunks were refetched"
    );
    assert!(
        !part.exists(),
        "the partial download folder was left behind"
    );
}
