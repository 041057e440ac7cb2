//! A 64 MiB random file goes in and comes back byte-identical through
//! Debian's libnfs utilities (`nfs-cp`), a client we did not write.
mod common;
use common::*;

#[test]
fn sixty_four_mib_round_trip_is_byte_identical() {
    let (dir, store) = store();
    let s = Server::nfs(&store, &[]);
    let src = dir.path().join("in.bin");
    let back = dir.path().join("out.bin");
    let data = noise(64 << 20, 64);
    std::fs::write(&src, &data).expect("write local");
    ok("nfs-cp", &[src.to_str().expect("path"), &s.url("/big.bin")]);
    ok(
        "nfs-cp",
        &[&s.url("/big.bin"), back.to_str().expect("path")],
    );
    let got = std::fs::read(&back).expect("read local");
    assert_eq!(got.len(), data.len(), "size");
    assert!(got == data, "content differs");
    let ls = ok("nfs-ls", &[&s.url("/")]);
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.contains("67108864 big.bin"),
        "listing shows the size: {ls}"
    );
}
