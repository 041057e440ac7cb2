//! Sequential reads are read ahead: after each 1 MiB read the next 1 MiB is
//! fetched in the background. Between the reads of this test, the file is
//! overwritten where the next read will look, truncated, extended, or
//! another file is written, each after the read-ahead had time to finish;
//! every read must return what a read with no read-ahead would: the file
//! as the last change left it.
mod common;
use std::time::Duration;

use cairn_fs::{Creds, Filesystem, SetAttr};
use common::*;

const MIB: usize = 1 << 20;

#[tokio::test]
async fn read_ahead_never_shows_replaced_data() {
    let engine = memory_engine().await;
    let fs = engine.root_dataset().await;
    let mut model = noise(8 * MIB, 1);
    let ino = put(&fs, "f", &model).await;
    let mut seed = 2;
    for pass in 0..3 {
        let mut at = 0usize;
        let mut step = 0;
        while at < model.len() {
            let (got, eof) = fs
                .read(&Creds::root(), ino, at as u64, MIB as u32)
                .await
                .expect("read");
            let want = &model[at..model.len().min(at + MIB)];
            assert!(
                got[..] == *want,
                "pass {pass} step {step}: read at {at} returned {} bytes that differ from the {} expected (first difference at {:?})",
                got.len(),
                want.len(),
                got.iter().zip(want).position(|(a, b)| a != b)
            );
            assert_eq!(eof, at + got.len() == model.len(), "eof at {at}");
            at += got.len();
            // Let the read-ahead of the next range finish before the change.
            tokio::time::sleep(Duration::from_millis(20)).await;
            seed += 1;
            match (step + pass) % 5 {
                // Overwrite part of the range read next.
                0 | 1 if at < model.len() => {
                    let off = at + 4096 * (step % 7);
                    let new = noise(100_000.min(model.len() - off.min(model.len())), seed);
                    if off < model.len() {
                        fs.write(&Creds::root(), ino, off as u64, &new)
                            .await
                            .expect("overwrite");
                        model[off..off + new.len()].copy_from_slice(&new);
                    }
                }
                // Truncate inside the next range, then extend with new bytes.
                2 if at + MIB / 2 < model.len() => {
                    let cut = at + MIB / 2;
                    let attrs = SetAttr {
                        size: Some(cut as u64),
                        ..Default::default()
                    };
                    fs.setattr(&Creds::root(), ino, &attrs, None)
                        .await
                        .expect("truncate");
                    model.truncate(cut);
                    let tail = noise(2 * MIB, seed);
                    fs.write(&Creds::root(), ino, cut as u64, &tail)
                        .await
                        .expect("extend");
                    model.extend_from_slice(&tail);
                }
                // A write elsewhere: the read-ahead is dropped, reads go on.
                3 => {
                    put(&fs, "other", &noise(64 << 10, seed)).await;
                }
                _ => {}
            }
            step += 1;
        }
    }
    assert_clean(&engine).await;
}
