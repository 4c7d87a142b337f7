//! The unpack limits' defaults and their up-front checks: a file whose announced size cannot
//! fit is refused before anything is written, whether the per-file or the total limit is the
//! one it breaks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

use guest_image::unpack::{Compression, LimitKind};
use guest_image::{UnpackError, UnpackLimits, Unpacker};
use tar::{EntryType, Header};

/// A tar stream holding the header of a regular file `name` announcing `size` bytes, followed
/// by only `present` bytes of its data: what a decompression bomb looks like at its start.
fn announced_file(name: &str, size: u64, present: usize) -> Vec<u8> {
    let mut h = Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(EntryType::Regular);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.resize(512 + present, 0);
    out
}

#[test]
fn default_limits_refuse_a_ten_gib_file_before_writing() {
    // Uncompressed it would be 10 GiB; the library's defaults must not accept it (the agent
    // lowers them further from the guest's memory, other callers get these).
    let defaults = UnpackLimits::default();
    assert!(defaults.max_total_bytes < 10 << 30, "{defaults:?}");
    assert!(
        defaults.max_file_bytes <= defaults.max_total_bytes,
        "{defaults:?}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut u = Unpacker::new(tmp.path(), defaults).unwrap();
    let layer = announced_file("zeros", 10 << 30, 1 << 20);
    let err = u.unpack_layer(&layer[..], Compression::None).unwrap_err();
    assert!(
        matches!(err, UnpackError::LimitExceeded { .. }),
        "not refused up front: {err}"
    );
    assert!(!tmp.path().join("zeros").exists());
}

#[test]
fn file_larger_than_the_remaining_total_budget_is_refused_before_writing() {
    let limits = UnpackLimits {
        max_total_bytes: 1 << 20,
        max_entries: 100,
        max_file_bytes: 1 << 30,
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut u = Unpacker::new(tmp.path(), limits).unwrap();
    // Fits on its own: 600 KiB of a 1 MiB budget.
    let mut first = announced_file("first", 600 << 10, 600 << 10);
    first.resize(first.len() + 2048, 0);
    u.unpack_layer(&first[..], Compression::None).unwrap();
    // The next layer's file would fit the per-file limit but not what is left of the total.
    let layer = announced_file("second", 600 << 10, 4096);
    let err = u.unpack_layer(&layer[..], Compression::None).unwrap_err();
    assert!(
        matches!(
            err,
            UnpackError::LimitExceeded {
                kind: LimitKind::TotalBytes,
                limit: 1_048_576
            }
        ),
        "not refused up front: {err}"
    );
    assert!(!tmp.path().join("second").exists());
    assert_eq!(
        fs::metadata(tmp.path().join("first")).unwrap().len(),
        600 << 10
    );
}
