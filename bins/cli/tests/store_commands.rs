//! `cairn stats|fsck|gc|init|completions`.
mod common;
use common::*;

#[test]
fn store_commands() {
    let (dir, s) = server();
    let data = noise(1 << 20, 1);
    put(&s, dir.path(), "/one", &data);
    put(&s, dir.path(), "/two", &data);
    let st = cairn_json(&s, &["stats"]);
    assert_eq!(st["referenced_bytes"], 2 << 20);
    assert_eq!(st["unique_plain_bytes"], 1 << 20);
    assert_eq!(st["dedup_ratio"], 2.0);
    assert_eq!(st["datasets"][0]["name"], "root");
    let human = cairn_ok(&s, &["stats"]);
    assert!(
        human.contains("dedup ratio") && human.contains("2.00x"),
        "{human}"
    );

    let f = cairn_json(&s, &["fsck"]);
    assert_eq!(f["clean"], true);
    assert!(cairn_ok(&s, &["fsck"]).contains("clean"));
    let g = cairn_json(&s, &["gc"]);
    assert_eq!(g["swept"], 0);

    let path = dir.path().join("cairn.toml");
    let p = path.to_str().expect("path");
    cairn_ok(&s, &["init", p]);
    let text = std::fs::read_to_string(&path).expect("template");
    assert!(text.contains("[storage]") && text.contains("[nfs]") && text.contains("[rpc]"));
    let e = cairn_fails(&s, &["init", p], 4);
    assert!(e.contains("--force"), "{e}");
    cairn_ok(&s, &["init", p, "--force"]);
    let comp = cairn_ok(&s, &["completions", "bash"]);
    assert!(comp.contains("cairn"), "a completion script");
}
