//! SIGTERM stops the server even while clients keep idle connections open to
//! NFS and the admin API: after a grace period it flushes and closes.
mod common;
use common::*;

#[test]
fn idle_connections_do_not_block_shutdown() {
    let (_d, store) = store();
    let s = Server::nfs(&store, &[]);
    let _nfs = std::net::TcpStream::connect(("127.0.0.1", s.nfs_port)).expect("nfs connection");
    let _rpc = std::net::TcpStream::connect(&s.rpc_addr).expect("admin connection");
    let started = std::time::Instant::now();
    let (status, stderr) = s.stop();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("store closed"), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "shutdown took {:?}",
        started.elapsed()
    );
}
