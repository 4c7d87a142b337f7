//! Initial VMSA pages (the SEV-ES save area, AMD APM vol. 2 table B-4) as the
//! VMM sets them up before SNP_LAUNCH_UPDATE.

use super::VmmType;

/// Offsets of the save-area fields this crate sets.
mod off {
    pub const ES: usize = 0x00;
    pub const CS: usize = 0x10;
    pub const SS: usize = 0x20;
    pub const DS: usize = 0x30;
    pub const FS: usize = 0x40;
    pub const GS: usize = 0x50;
    pub const GDTR: usize = 0x60;
    pub const LDTR: usize = 0x70;
    pub const IDTR: usize = 0x80;
    pub const TR: usize = 0x90;
    pub const EFER: usize = 0xd0;
    pub const CR4: usize = 0x148;
    pub const CR0: usize = 0x158;
    pub const DR7: usize = 0x160;
    pub const DR6: usize = 0x168;
    pub const RFLAGS: usize = 0x170;
    pub const RIP: usize = 0x178;
    pub const G_PAT: usize = 0x268;
    pub const RDX: usize = 0x310;
    pub const SEV_FEATURES: usize = 0x3b0;
    pub const XCR0: usize = 0x3e8;
    pub const MXCSR: usize = 0x408;
    pub const X87_FCW: usize = 0x410;
}

/// The reset vector of the bootstrap processor.
pub const BSP_EIP: u32 = 0xffff_fff0;

fn put_u16(p: &mut [u8; 4096], o: usize, v: u16) {
    p[o..o + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(p: &mut [u8; 4096], o: usize, v: u32) {
    p[o..o + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(p: &mut [u8; 4096], o: usize, v: u64) {
    p[o..o + 8].copy_from_slice(&v.to_le_bytes());
}
/// A VMCB segment: selector u16, attrib u16, limit u32, base u64.
fn put_seg(p: &mut [u8; 4096], o: usize, selector: u16, attrib: u16, limit: u32, base: u64) {
    put_u16(p, o, selector);
    put_u16(p, o + 2, attrib);
    put_u32(p, o + 4, limit);
    put_u64(p, o + 8, base);
}

/// Builds the VMSA page of a vCPU starting at `eip`.
pub fn save_area(eip: u32, sev_features: u64, vcpu_sig: u32, vmm: VmmType) -> [u8; 4096] {
    let mut g_pat: u64 = 0x0007_0406_0007_0406; // power-on PAT (APM vol. 2 A.3)
    let (cs_flags, ss_flags, tr_flags, rdx, mxcsr, fcw) = match vmm {
        VmmType::Qemu => (0x9b, 0x93, 0x8b, u64::from(vcpu_sig), 0x1f80, 0x37f),
        VmmType::Ec2 => {
            let cs = if eip == BSP_EIP { 0x9a } else { 0x9b };
            (cs, 0x92, 0x83, 0x600, 0, 0)
        }
        VmmType::Gce => {
            g_pat = 0x0007_0106;
            (0x9b, 0x93, 0x8b, 0x600, 0, 0)
        }
    };
    let mut p = [0u8; 4096];
    put_seg(&mut p, off::ES, 0, 0x93, 0xffff, 0);
    put_seg(
        &mut p,
        off::CS,
        0xf000,
        cs_flags,
        0xffff,
        u64::from(eip & 0xffff_0000),
    );
    put_seg(&mut p, off::SS, 0, ss_flags, 0xffff, 0);
    put_seg(&mut p, off::DS, 0, 0x93, 0xffff, 0);
    put_seg(&mut p, off::FS, 0, 0x93, 0xffff, 0);
    put_seg(&mut p, off::GS, 0, 0x93, 0xffff, 0);
    put_seg(&mut p, off::GDTR, 0, 0, 0xffff, 0);
    put_seg(&mut p, off::IDTR, 0, 0, 0xffff, 0);
    put_seg(&mut p, off::LDTR, 0, 0x82, 0xffff, 0);
    put_seg(&mut p, off::TR, 0, tr_flags, 0xffff, 0);
    put_u64(&mut p, off::EFER, 0x1000); // EFER.SVME, set by KVM
    put_u64(&mut p, off::CR4, 0x40); // CR4.MCE, set by KVM
    put_u64(&mut p, off::CR0, 0x10);
    put_u64(&mut p, off::DR7, 0x400);
    put_u64(&mut p, off::DR6, 0xffff_0ff0);
    put_u64(&mut p, off::RFLAGS, 0x2);
    put_u64(&mut p, off::RIP, u64::from(eip & 0xffff));
    put_u64(&mut p, off::G_PAT, g_pat);
    put_u64(&mut p, off::RDX, rdx);
    put_u64(&mut p, off::SEV_FEATURES, sev_features);
    put_u64(&mut p, off::XCR0, 0x1);
    put_u32(&mut p, off::MXCSR, mxcsr);
    put_u16(&mut p, off::X87_FCW, fcw);
    p
}
