//! Which instruction set the hot loops run on: AVX-512, AVX2 or the portable build.
//!
//! Every kernel that is compiled more than once (the step loop in [`crate::run`], the normal
//! sampler in [`crate::rng`]) asks [`level`] which copy to call. The copies are the same Rust
//! code under different `target_feature`s; Rust never contracts `a * b + c` into a fused
//! multiply-add (the `f32` sampler's explicit `mul_add`s are correctly rounded on every level)
//! and the normal sampler's lanes are independent streams, so every level gives bitwise the
//! same numbers and only the speed differs (`run::tests` and `real::tests` run every level the
//! CPU has and compare the records, in `f64` and in `f32`).
//!
//! The environment variable `CRITBATCH_SIMD` (`portable`, `avx2` or `avx512`) caps the level for
//! the whole process, read once; a level the CPU lacks falls back to the best one it has.
//!
//! # Design notes (measured on the 2-core AMD EPYC development machine, loaded by other work)
//!
//! * **AVX-512 gains nothing measurable here.** NQM d=1000, 64 runs × 1000 steps
//!   (`benches/report.py`, torch CPU f32 time over ours, median of 7 interleaved rounds): 2.42x
//!   under `CRITBATCH_SIMD=avx2`, 2.46x under `avx512`. This EPYC executes a 512-bit op as two
//!   256-bit halves, and the normal sampler's 8 xoshiro lanes fill one AVX2 register; the
//!   level is kept because it costs nothing and CPUs with full-width units may gain.
//! * **The `f32` sampler is where AVX-512 pays.** Its 16 lanes fill one 512-bit register, and
//!   its mask and rotate instructions shorten the kernel: `cargo bench --bench core -- sampler`
//!   under `CRITBATCH_SIMD=avx2` and `avx512` in turn, three rounds each: 0.91-0.93 ns against
//!   0.55-0.59 ns per `f32` normal (1.6x), 1.39-1.40 ns against 1.12-1.17 ns per `f64` one;
//!   NQM d=1000 in `f32` 1.16-1.21 ns against 0.69-0.82 ns per coordinate-step. The AVX2 level
//!   requires FMA as well, which every AVX2 CPU but the rarest has: the `f32` kernel's
//!   `mul_add`s need it to run in hardware.
//! * **The level is detected once.** [`Level::supported`] caches `cpuid` in a `OnceLock`: the
//!   sampler asks before every block, and `is_x86_feature_detected!` four times per block was
//!   1 % of an exact-jumps run.
//! * **The `mode` branch of `run::run_until` costs nothing.** A suspected 35 % slow-down of tiny
//!   runs was measured with two builds of `cargo bench --bench core -- tiny` (NQM d=4, 20 steps,
//!   loss checked every step, 100,000 runs), one with the branch and one without, run
//!   alternately 9 times: median ratio 0.98 (per-round ratios 0.7-1.5 under the machine's load).

use std::sync::OnceLock;

/// An instruction-set level, ordered from the narrowest to the widest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Whatever the build targets (SSE2 on `x86_64`).
    Portable,
    /// AVX2 and FMA (256-bit registers).
    Avx2,
    /// AVX-512 F, BW, DQ and VL (512-bit registers).
    Avx512,
}

impl Level {
    /// Every level, narrowest first.
    pub const ALL: [Self; 3] = [Self::Portable, Self::Avx2, Self::Avx512];

    /// The name `CRITBATCH_SIMD` uses.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run the level (detected once per process: the kernels ask before
    /// every call, and the tiny runs of a sweep make millions of calls).
    #[must_use]
    pub fn supported(self) -> bool {
        static SUPPORTED: OnceLock<[bool; 3]> = OnceLock::new();
        SUPPORTED.get_or_init(|| Self::ALL.map(Self::detect))[self as usize]
    }

    fn detect(self) -> bool {
        match self {
            Self::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// The widest level this CPU supports, capped by `CRITBATCH_SIMD` when it is set (read once per
/// process; an unknown value is ignored).
#[must_use]
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = std::env::var("CRITBATCH_SIMD").ok().and_then(|v| {
            Level::ALL
                .into_iter()
                .find(|l| l.name() == v.trim().to_ascii_lowercase())
        });
        let best = Level::ALL
            .into_iter()
            .filter(|l| l.supported())
            .max()
            .unwrap_or(Level::Portable);
        cap.map_or(best, |c| c.min(best))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chosen_level_is_supported_and_portable_always_is() {
        assert!(level().supported());
        assert!(Level::Portable.supported());
        assert!(Level::Portable < Level::Avx2 && Level::Avx2 < Level::Avx512);
    }
}
