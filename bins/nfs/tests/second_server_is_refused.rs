//! A second server on a store another one serves is refused with a message
//! that says so; the first keeps serving.
mod common;
use common::*;

#[test]
fn second_server_on_the_same_store_is_refused() {
    let (_d, store) = store();
    let first = Server::nfs(&store, &[]);
    let second = Server::start(
        "cairn-nfs",
        &[
            "--store",
            &store,
            "--nfs-listen",
            "127.0.0.1:0",
            "--rpc-listen",
            "127.0.0.1:0",
        ],
    );
    let err = second.err().unwrap_or_default();
    assert!(err.contains("in use by another cairn process"), "{err}");
    ok("nfs-ls", &[&first.url("/")]);
}
