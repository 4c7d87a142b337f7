//! Multi-buffer SHA-384 of 4 KiB pages: eight independent pages at once, one per 64-bit
//! lane of an AVX-512 register.
//!
//! The SNP launch digest needs the SHA-384 of every firmware page (512 pages for a 2 MiB
//! OVMF), and these hashes are independent of each other. ring and sha2 hash one message
//! at a time: the 80 rounds of one SHA-512 compression form a serial dependency chain, so a
//! single message cannot fill the vector units. No maintained crate hashes many independent
//! messages per SIMD register, so this module implements the SHA-512 compression function
//! of FIPS 180-4 (section 6.4) across eight lanes, with SHA-384's initial hash value
//! (section 5.3.4) and its 48-byte truncated output. Only whole 4096-byte pages, in groups
//! of eight, take this path; everything else, and every CPU without AVX-512 F and BW, goes
//! through ring. The tests check both paths against ring and a fixed known answer.

/// Length of a SHA-384 digest.
const DIGEST_LEN: usize = 48;

/// The message length the SIMD path handles: one page.
const PAGE_LEN: usize = 4096;

/// SHA-384/512 round constants K[0..80] (FIPS 180-4, section 4.2.3).
#[rustfmt::skip]
const K: [u64; 80] = [
    0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc,
    0x3956c25bf348b538, 0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118,
    0xd807aa98a3030242, 0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
    0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235, 0xc19bf174cf692694,
    0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
    0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
    0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4,
    0xc6e00bf33da88fc2, 0xd5a79147930aa725, 0x06ca6351e003826f, 0x142929670a0e6e70,
    0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
    0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
    0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30,
    0xd192e819d6ef5218, 0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8,
    0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8,
    0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3,
    0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
    0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b,
    0xca273eceea26619c, 0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178,
    0x06f067aa72176fba, 0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
    0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc, 0x431d67c49c100d4c,
    0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817,
];

/// SHA-384 initial hash value H(0) (FIPS 180-4, section 5.3.4).
#[rustfmt::skip]
const H384: [u64; 8] = [
    0xcbbb9d5dc1059ed8, 0x629a292a367cd507, 0x9159015a3070dd17, 0x152fecd8f70e5939,
    0x67332667ffc00b31, 0x8eb44a8768581511, 0xdb0c2e0d64f98fa7, 0x47b5481dbefa4fa4,
];

/// K[t] + W[t] of the padding block that ends every 4096-byte message: a 0x80 byte, zeros,
/// and the 128-bit big-endian bit length 32768 (FIPS 180-4, section 5.1.2). The block is the
/// same for every page, so its message schedule (section 6.4.2 step 1) is computed once here.
const PAD_KW: [u64; 80] = pad_kw();

/// Computes [`PAD_KW`].
const fn pad_kw() -> [u64; 80] {
    let mut w = [0u64; 80];
    w[0] = 0x80 << 56;
    w[15] = PAGE_LEN as u64 * 8;
    let mut t = 16;
    while t < 80 {
        let (x, y) = (w[t - 15], w[t - 2]);
        let s0 = x.rotate_right(1) ^ x.rotate_right(8) ^ (x >> 7);
        let s1 = y.rotate_right(19) ^ y.rotate_right(61) ^ (y >> 6);
        w[t] = s1
            .wrapping_add(w[t - 7])
            .wrapping_add(s0)
            .wrapping_add(w[t - 16]);
        t += 1;
    }
    let mut t = 0;
    while t < 80 {
        w[t] = w[t].wrapping_add(K[t]);
        t += 1;
    }
    w
}

/// SHA-384 of one message through ring.
fn ring_sha384(data: &[u8]) -> [u8; DIGEST_LEN] {
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA384, data).as_ref());
    out
}

/// SHA-384 of each of `pages`, one at a time through ring (the reference path).
pub(crate) fn sha384_pages_portable(pages: &[&[u8]]) -> Vec<[u8; DIGEST_LEN]> {
    pages.iter().map(|p| ring_sha384(p)).collect()
}

/// SHA-384 of each of `pages`, in order. Whole 4096-byte pages are hashed eight at a time
/// with AVX-512 when the CPU has it; any other slice, the last `n % 8` pages, and all pages
/// on other CPUs go through ring.
pub(crate) fn sha384_pages(pages: &[&[u8]]) -> Vec<[u8; DIGEST_LEN]> {
    #[cfg(target_arch = "x86_64")]
    if let Some(digests) = x86::sha384_pages(pages) {
        return digests;
    }
    sha384_pages_portable(pages)
}

/// The AVX-512 implementation.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{DIGEST_LEN, H384, K, PAD_KW, PAGE_LEN, ring_sha384};

    /// Whether the CPU has AVX-512 F and BW (the macro caches the CPUID answer).
    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
    }

    /// Like [`super::sha384_pages`], or `None` if the CPU lacks AVX-512 F/BW.
    #[allow(unsafe_code)] // the call of `hash8`: see SAFETY below.
    pub(super) fn sha384_pages(pages: &[&[u8]]) -> Option<Vec<[u8; DIGEST_LEN]>> {
        if !available() {
            return None;
        }
        let mut out = vec![[0u8; DIGEST_LEN]; pages.len()];
        let mut whole = Vec::with_capacity(pages.len());
        for (i, p) in pages.iter().enumerate() {
            match <&[u8; PAGE_LEN]>::try_from(*p) {
                Ok(page) => whole.push((i, page)),
                Err(_) => out[i] = ring_sha384(p),
            }
        }
        let groups = whole.chunks_exact(8);
        for &(i, page) in groups.remainder() {
            out[i] = ring_sha384(page);
        }
        for group in groups {
            let batch: [&[u8; PAGE_LEN]; 8] = std::array::from_fn(|k| group[k].1);
            // SAFETY: `hash8` only needs AVX-512 F and BW, and `available()` just confirmed
            // at run time that this CPU has both.
            let digests = unsafe { hash8(&batch) };
            for (&(i, _), d) in group.iter().zip(digests) {
                out[i] = d;
            }
        }
        Some(out)
    }

    /// SHA-384 of eight 4096-byte pages; page `i` is carried in 64-bit lane `i`.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn hash8(pages: &[&[u8; PAGE_LEN]; 8]) -> [[u8; DIGEST_LEN]; 8] {
        let mut state = [_mm512_setzero_si512(); 8];
        for (s, &h) in state.iter_mut().zip(H384.iter()) {
            *s = _mm512_set1_epi64(h as i64);
        }
        let chunks: [&[[u8; 64]]; 8] = pages.map(|p| p.as_chunks::<64>().0);
        for block in 0..PAGE_LEN / 128 {
            let mut w = [_mm512_setzero_si512(); 16];
            for half in 0..2 {
                let mut rows = [_mm512_setzero_si512(); 8];
                for (row, page) in rows.iter_mut().zip(chunks.iter()) {
                    *row = load_be(&page[2 * block + half]);
                }
                w[8 * half..8 * half + 8].copy_from_slice(&transpose(rows));
            }
            compress(&mut state, &mut w);
        }
        let mut s = state;
        for &kw in PAD_KW.iter() {
            round(&mut s, _mm512_set1_epi64(kw as i64));
        }
        let mut out = [[0u8; DIGEST_LEN]; 8];
        for j in 0..DIGEST_LEN / 8 {
            let lanes = to_lanes(add(state[j], s[j]));
            for (digest, word) in out.iter_mut().zip(lanes) {
                digest[8 * j..8 * j + 8].copy_from_slice(&word.to_be_bytes());
            }
        }
        out
    }

    /// Loads eight big-endian 64-bit words.
    #[inline]
    #[allow(unsafe_code)] // the unaligned load: see SAFETY below.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn load_be(bytes: &[u8; 64]) -> __m512i {
        // SAFETY: `bytes` is a reference to 64 readable bytes, exactly the size of the
        // load, and `loadu` has no alignment requirement.
        let v = unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) };
        // Reverse the bytes of each 64-bit element (indices are within each 128-bit lane).
        let m = _mm512_broadcast_i32x4(_mm_set_epi64x(0x08090a0b0c0d0e0f, 0x0001020304050607));
        _mm512_shuffle_epi8(v, m)
    }

    /// The eight 64-bit lanes of `v`.
    #[inline]
    #[allow(unsafe_code)] // the unaligned store: see SAFETY below.
    #[target_feature(enable = "avx512f")]
    fn to_lanes(v: __m512i) -> [u64; 8] {
        let mut out = [0u64; 8];
        // SAFETY: `out` is 64 writable bytes, exactly the size of the store, and `storeu`
        // has no alignment requirement.
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), v) };
        out
    }

    /// Transposes an 8x8 matrix of 64-bit words: row `i` (page `i`'s words) becomes lane
    /// `i` of every output. Swaps bit `b` of the register index with bit `b` of the lane
    /// index for b = 0, 1, 2.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose(r: [__m512i; 8]) -> [__m512i; 8] {
        let mut s = r;
        for k in [0, 2, 4, 6] {
            s[k] = _mm512_unpacklo_epi64(r[k], r[k + 1]);
            s[k + 1] = _mm512_unpackhi_epi64(r[k], r[k + 1]);
        }
        let lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
        let hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
        let mut t = s;
        for k in [0, 1, 4, 5] {
            t[k] = _mm512_permutex2var_epi64(s[k], lo, s[k + 2]);
            t[k + 2] = _mm512_permutex2var_epi64(s[k], hi, s[k + 2]);
        }
        let lo = _mm512_setr_epi64(0, 1, 2, 3, 8, 9, 10, 11);
        let hi = _mm512_setr_epi64(4, 5, 6, 7, 12, 13, 14, 15);
        let mut u = t;
        for k in 0..4 {
            u[k] = _mm512_permutex2var_epi64(t[k], lo, t[k + 4]);
            u[k + 4] = _mm512_permutex2var_epi64(t[k], hi, t[k + 4]);
        }
        u
    }

    /// `x` rotated right by `N` bits (ROTR, FIPS 180-4 section 3.2) in each lane.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn ror<const N: i32>(x: __m512i) -> __m512i {
        _mm512_ror_epi64::<N>(x)
    }

    /// The XOR of three words.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn xor3(a: __m512i, b: __m512i, c: __m512i) -> __m512i {
        _mm512_ternarylogic_epi64::<0x96>(a, b, c)
    }

    /// Addition modulo 2^64 in each lane.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn add(a: __m512i, b: __m512i) -> __m512i {
        _mm512_add_epi64(a, b)
    }

    /// One SHA-512 round (FIPS 180-4, section 6.4.2 step 3) with `kw` = K[t] + W[t].
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn round(s: &mut [__m512i; 8], kw: __m512i) {
        let [a, b, c, d, e, f, g, h] = *s;
        let sum1 = xor3(ror::<14>(e), ror::<18>(e), ror::<41>(e));
        let ch = _mm512_ternarylogic_epi64::<0xCA>(e, f, g);
        let t1 = add(add(h, sum1), add(ch, kw));
        let sum0 = xor3(ror::<28>(a), ror::<34>(a), ror::<39>(a));
        let maj = _mm512_ternarylogic_epi64::<0xE8>(a, b, c);
        *s = [add(t1, add(sum0, maj)), a, b, c, add(d, t1), e, f, g];
    }

    /// One SHA-512 compression of the message block `w` (W[0..16]) into `state`; `w` is
    /// reused as the rolling 16-word window of the message schedule.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn compress(state: &mut [__m512i; 8], w: &mut [__m512i; 16]) {
        let mut s = *state;
        for (t, &k) in K.iter().enumerate() {
            if t >= 16 {
                let (x, y) = (w[(t - 15) % 16], w[(t - 2) % 16]);
                let s0 = xor3(ror::<1>(x), ror::<8>(x), _mm512_srli_epi64::<7>(x));
                let s1 = xor3(ror::<19>(y), ror::<61>(y), _mm512_srli_epi64::<6>(y));
                w[t % 16] = add(add(s1, w[(t - 7) % 16]), add(s0, w[t % 16]));
            }
            round(&mut s, add(w[t % 16], _mm512_set1_epi64(k as i64)));
        }
        for (h, v) in state.iter_mut().zip(s) {
            *h = add(*h, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-384 of 4096 zero bytes, from Python's hashlib.
    const ZERO_PAGE_SHA384: &str = "c0e59a3e3ffbd3b5c75428fb36432facabc745944296ff515f737c4fef4efc64586809f7a16f56354a1eaecf2aa8d774";

    /// `n` pages of xorshift64 output, different for every page.
    fn random_pages(n: usize, seed: u64) -> Vec<Vec<u8>> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                (0..PAGE_LEN)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x >> 32) as u8
                    })
                    .collect()
            })
            .collect()
    }

    /// Borrows each page as a slice.
    fn refs(pages: &[Vec<u8>]) -> Vec<&[u8]> {
        pages.iter().map(Vec::as_slice).collect()
    }

    /// Asserts that the dispatching path and the ring path agree on every page.
    fn assert_same(pages: &[&[u8]], what: &str) {
        let fast = sha384_pages(pages);
        let slow = sha384_pages_portable(pages);
        assert_eq!(fast.len(), pages.len(), "{what}");
        for (i, (f, s)) in fast.iter().zip(&slow).enumerate() {
            assert_eq!(hex::encode(f), hex::encode(s), "{what}: page {i}");
        }
    }

    #[test]
    fn matches_ring_for_every_group_shape() {
        for n in [0, 1, 7, 8, 9, 15, 16, 17, 33] {
            let random = random_pages(n, n as u64 + 1);
            assert_same(&refs(&random), &format!("{n} random pages"));
            let zero = vec![vec![0u8; PAGE_LEN]; n];
            assert_same(&refs(&zero), &format!("{n} zero pages"));
            let ones = vec![vec![0xffu8; PAGE_LEN]; n];
            assert_same(&refs(&ones), &format!("{n} 0xff pages"));
        }
    }

    #[test]
    fn slices_that_are_not_pages_fall_back_to_ring() {
        let random = random_pages(20, 7);
        let long = [random[0].as_slice(), random[1].as_slice()].concat();
        let mut pages = refs(&random);
        pages.insert(0, &random[5][..100]);
        pages.insert(3, &[]);
        pages.insert(9, &random[2][..PAGE_LEN - 1]);
        pages.insert(14, &long[..PAGE_LEN + 1]);
        pages.push(&long);
        assert_same(&pages, "mixed slices");
    }

    #[test]
    fn zero_page_known_answer() {
        let zero = vec![0u8; PAGE_LEN];
        assert_eq!(hex::encode(ring_sha384(&zero)), ZERO_PAGE_SHA384);
        let nine = vec![zero.as_slice(); 9];
        for d in sha384_pages(&nine) {
            assert_eq!(hex::encode(d), ZERO_PAGE_SHA384);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    #[allow(unsafe_code)]
    fn avx512_path_is_exercised() {
        if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")) {
            eprintln!("note: no AVX-512 F/BW on this CPU; only the ring path was tested");
            assert!(x86::sha384_pages(&[]).is_none());
            return;
        }
        let random = random_pages(8, 99);
        let batch: [&[u8; PAGE_LEN]; 8] =
            std::array::from_fn(|i| random[i].as_slice().try_into().unwrap());
        // SAFETY: AVX-512 F and BW were detected just above.
        let direct = unsafe { x86::hash8(&batch) };
        assert_eq!(direct.to_vec(), sha384_pages_portable(&refs(&random)));
        let via = x86::sha384_pages(&refs(&random)).expect("AVX-512 path");
        assert_eq!(via, direct.to_vec());
    }
}
