//! Which instruction set the kernels run with, chosen once per process. A leaf of its own because every
//! kernel family asks (the dot products, the activation quantizer, the 8-bit attention), and they must
//! all agree: one detection, one answer.

use std::sync::OnceLock;

/// The instruction set the kernels run with, detected once per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512 (F, BW, VL, VNNI) with AVX2, FMA and F16C: two weight rows per 512-bit register.
    Avx512Vnni,
    /// AVX2 with FMA and F16C.
    Avx2,
    /// Plain Rust: any CPU, same results, several times slower.
    Portable,
}

/// The best instruction set this CPU offers. `LLAMAGATE_KERNELS=portable` or `=avx2` forces a lesser one
/// (to compare paths, or to rule the SIMD code out when chasing a problem).
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let detected = detect();
        match std::env::var("LLAMAGATE_KERNELS").ok().as_deref() {
            Some("portable") => Isa::Portable,
            Some("avx2") if detected != Isa::Portable => Isa::Avx2,
            _ => detected,
        }
    })
}

/// What this CPU offers, ignoring `LLAMAGATE_KERNELS`.
pub(crate) fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 =
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
        if avx2
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx512vl")
        {
            return Isa::Avx512Vnni;
        }
        if avx2 {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}
