//! ONC RPC call records from the network: the call header (with AUTH_SYS
//! credentials) and then the arguments of every NFSv3 and MOUNT procedure
//! the server decodes, never panicking on any bytes.
#![no_main]
use cairn_nfs::rpc::{parse_call, unpack};
use libfuzzer_sys::fuzz_target;
use nfs3_types::mount::{dirpath, mountres3};
use nfs3_types::nfs3::*;
use nfs3_types::portmap::mapping;

fn args(b: &[u8]) {
    let _ = unpack::<GETATTR3args>(b);
    let _ = unpack::<SETATTR3args>(b);
    let _ = unpack::<LOOKUP3args>(b);
    let _ = unpack::<ACCESS3args>(b);
    let _ = unpack::<READLINK3args>(b);
    let _ = unpack::<READ3args>(b);
    let _ = unpack::<WRITE3args>(b);
    let _ = unpack::<CREATE3args>(b);
    let _ = unpack::<MKDIR3args>(b);
    let _ = unpack::<SYMLINK3args>(b);
    let _ = unpack::<MKNOD3args>(b);
    let _ = unpack::<REMOVE3args>(b);
    let _ = unpack::<RMDIR3args>(b);
    let _ = unpack::<RENAME3args>(b);
    let _ = unpack::<LINK3args>(b);
    let _ = unpack::<READDIR3args>(b);
    let _ = unpack::<READDIRPLUS3args>(b);
    let _ = unpack::<FSSTAT3args>(b);
    let _ = unpack::<FSINFO3args>(b);
    let _ = unpack::<PATHCONF3args>(b);
    let _ = unpack::<COMMIT3args>(b);
    let _ = unpack::<dirpath>(b);
    let _ = unpack::<mapping>(b);
    let _ = unpack::<mountres3>(b);
}

fuzz_target!(|data: &[u8]| {
    if let Ok((_call, at)) = parse_call(data) {
        args(data.get(at..).unwrap_or_default());
    }
    args(data);
});
