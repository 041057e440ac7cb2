//! `cairn scrub` reads every stored chunk back through the real server:
//! clean on an intact store; after one byte of a pack file is flipped on
//! disk, it exits 8 and names the damaged chunk and the file that uses it,
//! while the file's other chunks still read.
mod common;
use common::*;

#[test]
fn scrub_finds_a_flipped_pack_byte_and_names_the_file() {
    let (d, s) = server();
    put(&s, d.path(), "/big", &noise(1 << 20, 1));
    put(&s, d.path(), "/other", &noise(300_000, 2));
    let clean = cairn_json(&s, &["scrub"]);
    assert_eq!(clean["clean"], true, "{clean}");
    assert!(clean["chunks"].as_u64().unwrap_or(0) >= 16, "{clean}");

    // Flip a byte inside the first frame of the first pack.
    let packs = d.path().join("store").join("packs");
    let mut names: Vec<_> = std::fs::read_dir(&packs)
        .expect("packs directory")
        .filter_map(|e| Some(e.ok()?.path()))
        .collect();
    names.sort();
    let first = names.first().expect("a pack file");
    let mut bytes = std::fs::read(first).expect("read pack");
    bytes[100] ^= 0x20;
    std::fs::write(first, &bytes).expect("write pack");

    let out = cairn(&s, &["--json", "scrub"]);
    assert_eq!(out.status.code(), Some(8), "scrub exits 8 on damage");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let damaged = r["damaged"].as_array().expect("damaged list");
    assert_eq!(damaged.len(), 1, "one damaged chunk: {r}");
    let files: Vec<&str> = damaged[0]["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert_eq!(files, vec!["root:/big"], "names the file using it: {r}");
    assert!(
        damaged[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("corrupt"),
        "{r}"
    );
    let text = String::from_utf8_lossy(&cairn(&s, &["scrub"]).stdout).into_owned();
    assert!(text.contains("used by root:/big"), "{text}");
    assert_eq!(
        cat(&s, "/other"),
        noise(300_000, 2),
        "other files still read"
    );
    let (status, log) = s.stop();
    assert!(status.success(), "{log}");
}
