//! Clients that stop half way are disconnected, and the store-wide call
//! bound holds other clients back meanwhile (backpressure, not memory):
//! - one that announces a call and then sends nothing more is cut after the
//!   call stall timeout;
//! - one that sends READs and never takes the replies holds the only call
//!   permits until the reply timeout cuts it; a well-behaved client (the
//!   crates.io `nfs3_client`) waits for them, then is served.
//!
//! The server runs in process (real engine on a `file://` store, real TCP)
//! so the timeouts and bounds can be set small.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cairn_engine::{Engine, EngineOptions};
use cairn_nfs::rpc::{frame, pack};
use cairn_nfs::{NfsOptions, NfsServer};
use cairn_testkit::nfs3_types::nfs3::{GETATTR3args, Nfs3Result, READ3args, nfs_fh3};
use cairn_testkit::nfs3_types::rpc::{auth_unix, call_body, msg_body, opaque_auth, rpc_msg};
use cairn_testkit::{commit, create_file, mount, noise, write_unstable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const MIB: usize = 1 << 20;
const STALL: Duration = Duration::from_millis(500);
const REPLY: Duration = Duration::from_secs(6);
/// How long the test lets the non-reading client clog its connection.
const CLOG: Duration = Duration::from_secs(2);
/// Guard against a hang: every wait below ends by then.
const GUARD: Duration = Duration::from_secs(60);

async fn server() -> (u16, CancellationToken, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().join("store").display());
    let engine = Engine::open(&url, EngineOptions::default())
        .await
        .expect("engine");
    let options = NfsOptions {
        max_calls_in_flight: 2,
        reply_timeout: REPLY,
        call_stall_timeout: STALL,
        ..NfsOptions::default()
    };
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let server = NfsServer::bind(engine, addr, options).await.expect("bind");
    let port = server.local_addr().expect("addr").port();
    let stop = CancellationToken::new();
    tokio::spawn(server.serve(stop.clone()));
    (port, stop, dir)
}

/// Read until the server closes the connection; the bytes read.
async fn until_closed(s: &mut TcpStream) -> usize {
    let mut total = 0;
    let mut buf = vec![0u8; MIB];
    loop {
        match tokio::time::timeout(GUARD, s.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open ({total} bytes read)"),
            Ok(Ok(0)) | Ok(Err(_)) => return total,
            Ok(Ok(n)) => total += n,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_stops_midway_is_cut() {
    let (port, stop, _dir) = server().await;
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // A last fragment of 100 bytes is announced; 10 arrive.
    s.write_all(&(100u32 | 0x8000_0000).to_be_bytes())
        .await
        .expect("write");
    s.write_all(&[0; 10]).await.expect("write");
    let got = until_closed(&mut s).await;
    assert_eq!(got, 0, "the server answered a call it never fully received");
    // Others are still served.
    let mut c = mount(port, "/", 0, 0).await;
    let root = c.root_nfs_fh3();
    let r = c
        .getattr(&GETATTR3args { object: root })
        .await
        .expect("getattr after the cut");
    assert!(
        matches!(r, Nfs3Result::Ok(_)),
        "getattr after the cut failed"
    );
    stop.cancel();
}

fn read_call(xid: u32, fh: &nfs_fh3) -> Vec<u8> {
    let auth = auth_unix::default(); // uid 0, gid 0
    let msg = rpc_msg {
        xid,
        body: msg_body::CALL(call_body {
            rpcvers: 2,
            prog: 100_003,
            vers: 3,
            proc: 6, // READ
            cred: opaque_auth::auth_unix(&auth),
            verf: opaque_auth::default(),
        }),
    };
    let mut rec = pack(&msg);
    rec.extend(pack(&READ3args {
        file: fh.clone(),
        offset: 0,
        count: MIB as u32,
    }));
    frame(rec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_takes_no_replies_holds_others_back_until_cut() {
    let (port, stop, _dir) = server().await;
    let mut good = mount(port, "/", 0, 0).await;
    let fh = create_file(&mut good, "one-mib").await;
    write_unstable(&mut good, &fh, 0, &noise(MIB, 1))
        .await
        .expect("write");
    commit(&mut good, &fh).await;

    // 64 READs of 1 MiB, never read: far more than the socket buffers
    // hold, so the server's replies stall with both call permits held.
    let mut greedy = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let calls: Vec<u8> = (0..64).flat_map(|x| read_call(x, &fh)).collect();
    greedy.write_all(&calls).await.expect("send the READs");
    tokio::time::sleep(CLOG).await;

    let asked = Instant::now();
    let r = tokio::time::timeout(GUARD, good.getattr(&GETATTR3args { object: fh.clone() }))
        .await
        .expect("the well-behaved client was never served");
    assert!(matches!(r, Ok(Nfs3Result::Ok(_))), "getattr failed");
    let waited = asked.elapsed();
    assert!(
        waited >= CLOG,
        "served after {waited:?}: the stalled replies did not hold the call bound \
         (expected a wait for the {REPLY:?} reply timeout)"
    );

    let got = until_closed(&mut greedy).await;
    assert!(
        got < 64 * MIB,
        "all {got} bytes of replies arrived; the client was not cut"
    );
    stop.cancel();
}
