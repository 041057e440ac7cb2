//! ONC RPC over TCP (RFC 5531): record marking, call headers, credentials and
//! reply framing. The XDR types come from `nfs3_types`.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use cairn_fs::Creds;
use nfs3_types::rpc::{
    RPC_VERSION_2, accept_stat_data, accepted_reply, auth_flavor, auth_stat, auth_unix, msg_body,
    opaque_auth, rejected_reply, reply_body, rpc_msg,
};
use nfs3_types::xdr_codec::{Pack, Unpack};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest RPC record accepted, in bytes: a 1 MiB WRITE plus headers. A
/// larger record closes the connection.
pub const MAX_RECORD_BYTES: usize = (1 << 20) + 64 * 1024;
/// Supplementary groups kept from an AUTH_UNIX credential (its protocol limit).
pub const MAX_GROUPS: usize = 16;
/// The credentials AUTH_NULL calls run with (nobody).
pub const NOBODY: u32 = 65534;

/// A parsed call header.
#[derive(Debug)]
pub struct Call {
    /// Transaction id.
    pub xid: u32,
    /// Program number.
    pub prog: u32,
    /// Program version.
    pub vers: u32,
    /// Procedure number.
    pub proc_: u32,
    /// The caller's credentials.
    pub creds: Creds,
}

/// Why a record is not a call we can serve; each maps to one reply (or none).
#[derive(Debug)]
pub enum BadCall {
    /// Not even an RPC header: no reply is possible (the xid is unknown).
    Garbage,
    /// A reply message or other non-call: ignored.
    NotACall,
    /// RPC version other than 2.
    RpcMismatch(u32),
    /// Unsupported or malformed credentials.
    Auth(u32, auth_stat),
}

/// Read one record (all fragments). `Ok(None)` at a clean end of stream.
///
/// Before each fragment's buffer is allocated, one permit of `budget` per
/// byte is taken (waiting while the budget is spent elsewhere), so memory
/// held by calls across all connections stays within it. The permits come
/// back with the record; dropping them returns the bytes to the budget.
///
/// The wait for a record's first byte is unbounded (an idle client is
/// fine), but once a record has begun, each later read (a fragment's body,
/// the next fragment's header) must complete within `stall`, or the read
/// fails with `TimedOut`: a client that announces a fragment and then sends
/// it slowly cannot hold its share of the budget for long.
pub async fn read_record<R: AsyncRead + Unpin>(
    r: &mut R,
    budget: &Arc<Semaphore>,
    stall: Duration,
) -> std::io::Result<Option<(Vec<u8>, OwnedSemaphorePermit)>> {
    let shutting_down = |_| std::io::Error::other("the server is shutting down");
    let mut hdr = [0u8; 4];
    match r.read_exact(&mut hdr).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut record = Vec::new();
    let mut held = budget
        .clone()
        .acquire_many_owned(0)
        .await
        .map_err(shutting_down)?;
    loop {
        let word = u32::from_be_bytes(hdr);
        let last = word & 0x8000_0000 != 0;
        let len = (word & 0x7fff_ffff) as usize;
        if record.len() + len > MAX_RECORD_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "RPC record of more than {MAX_RECORD_BYTES} bytes ({} so far)",
                    record.len() + len
                ),
            ));
        }
        // `len` is at most MAX_RECORD_BYTES here, so it fits a u32.
        held.merge(
            budget
                .clone()
                .acquire_many_owned(len as u32)
                .await
                .map_err(shutting_down)?,
        );
        let start = record.len();
        record.resize(start + len, 0);
        within(stall, STALLED, r.read_exact(&mut record[start..])).await?;
        if last {
            return Ok(Some((record, held)));
        }
        within(stall, STALLED, r.read_exact(&mut hdr)).await?;
    }
}

/// `io` if it completes within `limit`; otherwise a `TimedOut` error saying
/// what the client did not do (`what`) for how long.
pub(crate) async fn within<T>(
    limit: Duration,
    what: &str,
    io: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(limit, io).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{what} for {} s", limit.as_secs_f64()),
        )
    })?
}

/// What a stalled call's client did not do, for [`within`].
const STALLED: &str = "the client sent part of a call and then nothing";

/// A procedure's result: its packed XDR, then `data`, the bytes of an
/// opaque that ends the result (READ's data: its length word is the last
/// word of `packed`; the XDR padding after it is added when written). So
/// file data goes to the socket from the buffer the engine returned,
/// never copied into the reply.
#[derive(Debug, Default)]
pub struct Body {
    /// The packed result (with the opaque's length word last, if `data`).
    pub packed: Vec<u8>,
    /// The trailing opaque's bytes (empty for every other result).
    pub data: bytes::Bytes,
}

impl From<Vec<u8>> for Body {
    fn from(packed: Vec<u8>) -> Self {
        Self {
            packed,
            data: bytes::Bytes::new(),
        }
    }
}

/// One reply record as it goes on the wire: the record mark, the reply
/// header and packed result in `head`, then the trailing opaque's bytes
/// and padding.
#[derive(Debug)]
pub struct Reply {
    /// Record mark (filled in by [`Reply::new`]), header, packed result.
    head: Vec<u8>,
    data: bytes::Bytes,
}

/// Zeros for XDR padding.
const PAD: [u8; 3] = [0; 3];

impl Reply {
    /// A record of `head` (whose first 4 bytes are room for the record
    /// mark) followed by `data` and its padding to a 4-byte boundary.
    fn new(mut head: Vec<u8>, data: bytes::Bytes) -> Self {
        let len = head.len() - 4 + data.len() + pad_len(data.len());
        let mark = (len as u32) | 0x8000_0000;
        head[..4].copy_from_slice(&mark.to_be_bytes());
        Self { head, data }
    }

    /// Bytes on the wire, record mark included.
    pub fn len(&self) -> usize {
        self.head.len() + self.data.len() + pad_len(self.data.len())
    }

    /// Whether the record is empty (never: it has at least its mark).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The whole record in one buffer (tests, small replies).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        v.extend_from_slice(&self.head);
        v.extend_from_slice(&self.data);
        v.extend_from_slice(&PAD[..pad_len(self.data.len())]);
        v
    }

    /// Write the record to `w`: one vectored write of its parts where the
    /// socket takes it, so the data is not copied first.
    pub async fn write_to<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        w: &mut W,
    ) -> std::io::Result<()> {
        use bytes::Buf;
        use tokio::io::AsyncWriteExt;
        let mut parts = Buf::chain(
            Buf::chain(&self.head[..], &self.data[..]),
            &PAD[..pad_len(self.data.len())],
        );
        w.write_all_buf(&mut parts).await
    }
}

/// XDR padding after `n` opaque bytes.
fn pad_len(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// Frame `msg` as one record (a client's call, in tests).
pub fn frame(msg: Vec<u8>) -> Vec<u8> {
    let mut head = Vec::with_capacity(msg.len() + 4);
    head.extend_from_slice(&[0; 4]);
    head.extend_from_slice(&msg);
    Reply::new(head, bytes::Bytes::new()).to_vec()
}

/// Parse a call header; returns it and the offset of the procedure's
/// arguments.
pub fn parse_call(record: &[u8]) -> Result<(Call, usize), BadCall> {
    let mut cur = Cursor::new(record);
    let (msg, _) = rpc_msg::unpack(&mut cur).map_err(|_| BadCall::Garbage)?;
    let xid = msg.xid;
    let msg_body::CALL(call) = msg.body else {
        return Err(BadCall::NotACall);
    };
    if call.rpcvers != RPC_VERSION_2 {
        return Err(BadCall::RpcMismatch(xid));
    }
    let creds = match call.cred.flavor {
        auth_flavor::AUTH_UNIX => {
            let body: &[u8] = call.cred.body.0.as_ref();
            let (a, _) = auth_unix::unpack(&mut Cursor::new(body))
                .map_err(|_| BadCall::Auth(xid, auth_stat::AUTH_BADCRED))?;
            let mut groups = a.gids;
            groups.truncate(MAX_GROUPS);
            Creds {
                uid: a.uid,
                gid: a.gid,
                groups,
            }
        }
        auth_flavor::AUTH_NULL => Creds::user(NOBODY, NOBODY),
        _ => return Err(BadCall::Auth(xid, auth_stat::AUTH_TOOWEAK)),
    };
    Ok((
        Call {
            xid,
            prog: call.prog,
            vers: call.vers,
            proc_: call.proc,
            creds,
        },
        cur.position() as usize,
    ))
}

fn accepted(xid: u32, data: accept_stat_data, body: Body) -> Reply {
    let msg = rpc_msg {
        xid,
        body: msg_body::REPLY(reply_body::MSG_ACCEPTED(accepted_reply {
            verf: opaque_auth::default(),
            reply_data: data,
        })),
    };
    let mut head = Vec::with_capacity(4 + msg.packed_size() + body.packed.len());
    head.extend_from_slice(&[0; 4]);
    // Packing into a Vec cannot fail.
    let _ = msg.pack(&mut head);
    head.extend_from_slice(&body.packed);
    Reply::new(head, body.data)
}

/// A successful reply carrying the result `body`.
pub fn success(xid: u32, body: Body) -> Reply {
    accepted(xid, accept_stat_data::SUCCESS, body)
}

/// An accepted reply with an error status (PROG_UNAVAIL, PROC_UNAVAIL, ...).
pub fn accept_error(xid: u32, data: accept_stat_data) -> Reply {
    accepted(xid, data, Body::default())
}

/// A denied reply.
pub fn denied(xid: u32, why: rejected_reply) -> Reply {
    let msg = rpc_msg {
        xid,
        body: msg_body::REPLY(reply_body::MSG_DENIED(why)),
    };
    let mut head = Vec::with_capacity(4 + msg.packed_size());
    head.extend_from_slice(&[0; 4]);
    let _ = msg.pack(&mut head);
    Reply::new(head, bytes::Bytes::new())
}

/// Pack any XDR value.
pub fn pack<T: Pack>(v: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.packed_size());
    let _ = v.pack(&mut out);
    out
}

/// Unpack procedure arguments; every byte must be used.
pub fn unpack<T: Unpack>(args: &[u8]) -> Option<T> {
    let mut cur = Cursor::new(args);
    let (v, _) = T::unpack(&mut cur).ok()?;
    (cur.position() as usize == args.len()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfs3_types::rpc::call_body;

    fn call(cred: opaque_auth<'static>) -> Vec<u8> {
        let msg = rpc_msg {
            xid: 7,
            body: msg_body::CALL(call_body {
                rpcvers: 2,
                prog: 100_003,
                vers: 3,
                proc: 1,
                cred,
                verf: opaque_auth::default(),
            }),
        };
        let mut out = pack(&msg);
        out.extend_from_slice(&[1, 2, 3, 4]);
        out
    }

    #[test]
    fn parses_auth_unix_and_finds_the_arguments() {
        let auth = auth_unix {
            uid: 1000,
            gid: 100,
            gids: (0..40).collect(),
            ..Default::default()
        };
        let rec = call(opaque_auth::auth_unix(&auth));
        let (c, off) = parse_call(&rec).expect("a valid call");
        assert_eq!((c.xid, c.prog, c.vers, c.proc_), (7, 100_003, 3, 1));
        assert_eq!((c.creds.uid, c.creds.gid), (1000, 100));
        assert_eq!(c.creds.groups.len(), MAX_GROUPS);
        assert_eq!(&rec[off..], &[1, 2, 3, 4]);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(parse_call(&[0, 1, 2]), Err(BadCall::Garbage)));
        let mut rec = call(opaque_auth::default());
        rec[11] = 9; // rpcvers
        assert!(matches!(parse_call(&rec), Err(BadCall::RpcMismatch(7))));
    }

    const STALL: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn a_record_that_stalls_midway_times_out_and_returns_its_budget() {
        let budget = Arc::new(Semaphore::new(MAX_RECORD_BYTES));
        let (mut client, mut server) = tokio::io::duplex(1024);
        use tokio::io::AsyncWriteExt;
        // Announces 100 bytes, sends 10, then nothing (the socket stays open).
        client
            .write_all(&(100u32 | 0x8000_0000).to_be_bytes())
            .await
            .expect("write");
        client.write_all(&[7; 10]).await.expect("write");
        let r = read_record(&mut server, &budget, Duration::from_millis(100)).await;
        let e = r.expect_err("a stalled record must fail");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        assert_eq!(budget.available_permits(), MAX_RECORD_BYTES);
        // An idle connection (no record begun) is not timed out.
        let (_idle_client, mut idle) = tokio::io::duplex(1024);
        let idle_read = tokio::time::timeout(
            Duration::from_millis(300),
            read_record(&mut idle, &budget, Duration::from_millis(100)),
        )
        .await;
        assert!(
            idle_read.is_err(),
            "an idle connection was cut: {idle_read:?}"
        );
    }

    #[tokio::test]
    async fn records_reassemble_and_oversized_ones_fail() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&3u32.to_be_bytes());
        wire.extend_from_slice(b"abc");
        wire.extend_from_slice(&(2u32 | 0x8000_0000).to_be_bytes());
        wire.extend_from_slice(b"de");
        let budget = Arc::new(Semaphore::new(MAX_RECORD_BYTES));
        let mut r = &wire[..];
        let (rec, held) = read_record(&mut r, &budget, STALL)
            .await
            .ok()
            .flatten()
            .expect("a record");
        assert_eq!(rec, b"abcde");
        assert_eq!(held.num_permits(), 5);
        drop(held);
        assert_eq!(budget.available_permits(), MAX_RECORD_BYTES);
        assert!(matches!(
            read_record(&mut r, &budget, STALL).await,
            Ok(None)
        ));
        let huge = ((MAX_RECORD_BYTES as u32 + 1) | 0x8000_0000).to_be_bytes();
        let mut r = &huge[..];
        assert!(read_record(&mut r, &budget, STALL).await.is_err());
    }

    #[tokio::test]
    async fn a_spent_budget_holds_the_next_record_back() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&(8u32 | 0x8000_0000).to_be_bytes());
        wire.extend_from_slice(b"12345678");
        let budget = Arc::new(Semaphore::new(10));
        let held_elsewhere = budget.clone().acquire_many_owned(4).await.expect("permits");
        let mut r = &wire[..];
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            read_record(&mut r, &budget, STALL),
        )
        .await;
        assert!(waiting.is_err(), "read a record beyond the budget");
        drop(held_elsewhere);
        let mut r = &wire[..];
        let (rec, held) = read_record(&mut r, &budget, STALL)
            .await
            .ok()
            .flatten()
            .expect("a record once the budget is back");
        assert_eq!(rec, b"12345678");
        assert_eq!(budget.available_permits(), 2);
        drop(held);
        assert_eq!(budget.available_permits(), 10);
    }
}
