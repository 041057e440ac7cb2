//! A call whose length prefixes claim gigabytes is refused without
//! allocating them: decoding is bounded by the bytes that arrived, not by
//! what the wire claims (regression for the `nfs_call` fuzz finding; see
//! `third_party/nfs3_types/PATCHED.md`).
use cairn_nfs::rpc::{parse_call, unpack};
use cap::Cap;
use nfs3_types::nfs3::{SYMLINK3args, WRITE3args};

/// The system allocator under a limit that decoding sets: an allocation
/// beyond it fails, and the test process aborts saying how many bytes it
/// asked for.
#[global_allocator]
static ALLOC: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

/// What decoding a call of a few bytes may allocate on top of what the
/// process holds already.
const HEADROOM: usize = 16 << 20;

fn be(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// Run `f` with at most [`HEADROOM`] more bytes allocatable.
fn bounded<T>(f: impl FnOnce() -> T) -> T {
    ALLOC
        .set_limit(ALLOC.allocated() + HEADROOM)
        .expect("limit above what is allocated");
    let out = f();
    ALLOC.set_limit(usize::MAX).expect("no limit");
    out
}

#[test]
fn huge_length_prefixes_fail_without_huge_allocations() {
    // WRITE3args: a 4-byte handle, offset, count, stable, then a data
    // opaque claiming 4 GiB - 4 with 8 bytes present.
    let mut write = be(&[4, 0x0102_0304, 0, 0, 16, 0, 0xFFFF_FFFC]);
    write.extend_from_slice(b"12345678");
    let ok = bounded(|| unpack::<WRITE3args>(&write).is_some());
    assert!(!ok, "a WRITE with a truncated 4 GiB payload decoded");

    // SYMLINK3args: a directory handle claiming 4 GiB.
    let symlink = be(&[0xFFFF_FFF0, 1, 2, 3]);
    let ok = bounded(|| unpack::<SYMLINK3args>(&symlink).is_some());
    assert!(!ok, "a SYMLINK with a truncated handle decoded");
}

#[test]
fn huge_credential_counts_fail_without_huge_allocations() {
    // An RPC call whose AUTH_SYS body claims 4 GiB, and one whose group
    // list claims 2^32 - 1 groups.
    let header = [7, 0, 2, 100_003, 3, 0];
    let mut body_too_long = be(&header);
    body_too_long.extend(be(&[1, 0xFFFF_FFF8, 0, 0]));
    let ok = bounded(|| parse_call(&body_too_long).is_ok());
    assert!(!ok, "a call with a truncated 4 GiB credential parsed");

    // machine name "", uid, gid, then 2^32 - 1 groups with 2 present.
    let cred = be(&[0, 0, 1000, 100, 0xFFFF_FFFF, 1, 2]);
    let mut groups_too_many = be(&header);
    groups_too_many.extend(be(&[1, cred.len() as u32]));
    groups_too_many.extend(&cred);
    groups_too_many.extend(be(&[0, 0]));
    let ok = bounded(|| parse_call(&groups_too_many).is_ok());
    assert!(!ok, "a call with a truncated group list parsed");
}
