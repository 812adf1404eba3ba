//! Runtime CPU-feature dispatch for the kernels.
//!
//! The workspace builds for the x86-64 baseline (SSE2), where the autovectorized kernels
//! run 8 or 16 pixels per instruction. Most machines that decode 1080p video have AVX2,
//! which doubles that. Rather than asking every deployment for `-C target-cpu`, every
//! public entry point runs its kernel through [`dispatch`], which compiles the same
//! (`#[inline(always)]`) kernel code a second time inside an `#[target_feature(enable =
//! "avx2")]` function and picks that copy at run time when the CPU has AVX2. The results
//! are the same integers either way (the kernels use only integer arithmetic and the
//! float formulas after it do not change), which the tests check against the reference
//! definitions on both copies.
//!
//! An AVX-512 copy was measured and is not used: the Laplacian gains ~20 %, but the
//! saturation table loop turns into gathers and runs 2.2x slower, so the whole is slower.
//!
//! The one `unsafe` call of the crate is here: calling a `#[target_feature]` function
//! from code compiled without that feature, after checking that the CPU has it.

use std::sync::atomic::{AtomicU8, Ordering};

/// The instruction sets the kernels are compiled for, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// The build's own target (x86-64 baseline: SSE2), or any non-x86 target.
    Baseline,
    /// x86-64 with AVX2 (and BMI1/BMI2, LZCNT, POPCNT: the x86-64-v3 integer set).
    Avx2,
}

/// The highest [`Isa`] callers allow; `u8::MAX` = no limit.
static LIMIT: AtomicU8 = AtomicU8::new(u8::MAX);

/// Caps the instruction set the kernels use (for benchmarks and for ruling SIMD out when
/// hunting a problem); results do not depend on it.
pub fn set_max_isa(isa: Isa) {
    LIMIT.store(isa as u8, Ordering::Relaxed);
}

/// The instruction set the kernels run with on this CPU, within [`set_max_isa`].
pub fn active_isa() -> Isa {
    let limit = LIMIT.load(Ordering::Relaxed);
    if limit >= Isa::Avx2 as u8 && has_avx2() {
        Isa::Avx2
    } else {
        Isa::Baseline
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    // std caches the CPUID answer: this is an atomic load and a bit test.
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("bmi1")
        && is_x86_feature_detected!("bmi2")
        && is_x86_feature_detected!("lzcnt")
        && is_x86_feature_detected!("popcnt")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx2() -> bool {
    false
}

/// One call of a kernel: its arguments, and the code to run on them.
pub(crate) trait Kernel {
    /// What the kernel returns.
    type Output;
    /// The kernel's code. Must be `#[inline(always)]`, and so must everything it calls in
    /// its loops, so that [`dispatch`]'s AVX2 copy really contains AVX2 loops: a closure
    /// would not do, the inliner is free to keep a large closure out of line (compiled for
    /// the baseline).
    fn run(self) -> Self::Output;
}

/// Runs `kernel` compiled for the best instruction set of this CPU.
#[inline(always)]
pub(crate) fn dispatch<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    if active_isa() == Isa::Avx2 {
        #[allow(unsafe_code)]
        // SAFETY: `active_isa` returned Avx2 only after `is_x86_feature_detected!` confirmed
        // every feature `avx2` enables, so the CPU can execute its instructions.
        return unsafe { avx2(kernel) };
    }
    kernel.run()
}

/// `kernel` compiled with the x86-64-v3 integer instruction set.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,bmi2,lzcnt,popcnt")]
fn avx2<K: Kernel>(kernel: K) -> K::Output {
    kernel.run()
}
