//! The SNP launch digest: SNP_LAUNCH_UPDATE page-info chaining with SHA-384
//! (SEV-SNP ABI specification, PAGE_INFO structure).

use super::ovmf::PAGE;

/// Size of a launch digest.
pub const LD_SIZE: usize = 48;

/// VMSA pages are recorded at GPA `(u64)-1`, page aligned, bits above 51 cleared.
const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

/// Regions at least this many pages long are hashed on two threads.
const PARALLEL_MIN_PAGES: usize = 64;

/// SHA-384 of each page: eight at a time with AVX-512 where the CPU has it (see
/// `sha384x8`), else through ring.
fn hash_pages(pages: &[&[u8]]) -> Vec<[u8; LD_SIZE]> {
    super::sha384x8::sha384_pages(pages)
}

/// SHA-384 through ring: its assembly (AVX2) hashes 4 KiB pages ~1.7x faster than the
/// sha2 crate's on this project's x86-64 hosts, and firmware pages are most of the work.
fn sha384(data: &[u8]) -> [u8; LD_SIZE] {
    let mut out = [0u8; LD_SIZE];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA384, data).as_ref());
    out
}

/// The page types of SNP_LAUNCH_UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PageType {
    /// Normal page with measured contents.
    Normal = 0x01,
    /// VMSA page.
    Vmsa = 0x02,
    /// Zero page.
    Zero = 0x03,
    /// Unmeasured page.
    Unmeasured = 0x04,
    /// Secrets page.
    Secrets = 0x05,
    /// CPUID page.
    Cpuid = 0x06,
}

/// The guest context: the running launch digest.
#[derive(Debug, Clone)]
pub struct GuestContext {
    ld: [u8; LD_SIZE],
}

impl Default for GuestContext {
    fn default() -> Self {
        Self::new()
    }
}

impl GuestContext {
    /// A fresh context (all-zero digest).
    pub fn new() -> Self {
        Self { ld: [0; LD_SIZE] }
    }

    /// The current launch digest.
    pub fn digest(&self) -> [u8; LD_SIZE] {
        self.ld
    }

    /// One SNP_LAUNCH_UPDATE of one page: hash the 0x70-byte PAGE_INFO.
    fn update(&mut self, page_type: PageType, gpa: u64, contents: &[u8; LD_SIZE]) {
        let mut info = [0u8; 0x70];
        info[..48].copy_from_slice(&self.ld);
        info[48..96].copy_from_slice(contents);
        info[96..98].copy_from_slice(&0x70u16.to_le_bytes());
        info[98] = page_type as u8;
        // 99: IS_IMI = 0; 100..103: VMPL3/2/1 permissions = 0; 103: reserved.
        info[104..112].copy_from_slice(&gpa.to_le_bytes());
        self.ld = sha384(&info);
    }

    /// Measures `data` (a multiple of 4096 bytes) as normal pages starting at `gpa`.
    pub fn update_normal_pages(&mut self, gpa: u64, data: &[u8]) {
        // Page digests are independent; only the chaining is sequential. Hash
        // large regions on two threads.
        let pages: Vec<&[u8]> = data.chunks(PAGE as usize).collect();
        let digests: Vec<[u8; LD_SIZE]> = if pages.len() >= PARALLEL_MIN_PAGES {
            let (first, second) = pages.split_at(pages.len() / 2);
            std::thread::scope(|s| {
                let other = s.spawn(|| hash_pages(second));
                let mut d = hash_pages(first);
                // A panic in the other thread is impossible (pure hashing); fall
                // back to hashing here if it ever happens.
                d.extend(other.join().unwrap_or_else(|_| hash_pages(second)));
                d
            })
        } else {
            hash_pages(&pages)
        };
        for (i, h) in digests.iter().enumerate() {
            self.update(PageType::Normal, gpa + i as u64 * PAGE, h);
        }
    }

    /// Measures one VMSA page.
    pub fn update_vmsa_page(&mut self, page: &[u8; PAGE as usize]) {
        let h = sha384(page);
        self.update(PageType::Vmsa, VMSA_GPA, &h);
    }

    /// Records `len` bytes of pages of a contents-less type (zero, unmeasured) at `gpa`.
    pub fn update_empty_pages(&mut self, page_type: PageType, gpa: u64, len: u64) {
        let mut off = 0;
        while off < len {
            self.update(page_type, gpa + off, &[0; LD_SIZE]);
            off += PAGE;
        }
    }

    /// Records the secrets page at `gpa`.
    pub fn update_secrets_page(&mut self, gpa: u64) {
        self.update(PageType::Secrets, gpa, &[0; LD_SIZE]);
    }

    /// Records the CPUID page at `gpa`.
    pub fn update_cpuid_page(&mut self, gpa: u64) {
        self.update(PageType::Cpuid, gpa, &[0; LD_SIZE]);
    }
}
