//! cairn's NFSv3 front end: the only crate that knows NFS wire types.
//!
//! Owns: ONC RPC framing and credentials (AUTH_SYS to [`cairn_fs::Creds`]),
//! the 22 NFSv3 procedures mapped onto the [`cairn_fs::Filesystem`] trait,
//! MOUNT and the port query on the same TCP port, file handles (view id +
//! inode + store id, valid across restarts), file ids that never collide
//! between views, the per-dataset virtual `.snapshots` directory, write
//! stability (UNSTABLE buffered until COMMIT, FILE_SYNC durable before the
//! reply, a write verifier that changes at every start), and graceful
//! shutdown.
//!
//! Must never know: how the engine stores anything (keys, chunks,
//! generations), protobuf, or the admin API. The XDR types come from the
//! `nfs3_types` crate; see `docs/nfs.md` for why no server crate was used.

pub mod handle;
mod nfs3;
pub mod rpc;
mod server;
mod views;

pub use server::{NfsOptions, NfsServer};
pub use views::SNAPDIR_NAME;
