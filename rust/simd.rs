//! Which vector instructions the kernels' own inner loops use.
//!
//! The widest the CPU has, unless the environment variable `ALPHANET_FAST_SIMD`
//! asks for a narrower one (`avx512`, `avx2` or `scalar`; empty or `auto` means
//! the widest): so that the AVX2 loops can be measured, and tested, on an
//! AVX-512 machine. A request the CPU cannot honour falls back to the widest
//! path it has. The variable is read at every kernel call (a few hundred
//! nanoseconds), so a benchmark can switch paths between calls in one process.
//!
//! Every path computes the same operations in the same order, so results are
//! bitwise the same whichever path runs.

/// An instruction-set level for the kernels' inner loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Simd {
    /// Plain Rust, vectorised only as far as the compile target allows.
    Scalar,
    /// AVX2 and FMA (x86-64-v3: Haswell, every AMD Zen).
    Avx2,
    /// AVX-512F (x86-64-v4: Skylake-SP and later Xeons, Zen 4 and later).
    Avx512,
}

/// The name of the environment variable that narrows the path.
pub const SIMD_ENV: &str = "ALPHANET_FAST_SIMD";

impl Simd {
    /// The widest level this CPU supports.
    pub fn detected() -> Simd {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Simd::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Simd::Avx2;
            }
        }
        Simd::Scalar
    }

    /// A level by name (`None` for "auto", the empty string or an unknown name).
    pub fn parse(name: &str) -> Option<Simd> {
        match name.trim().to_ascii_lowercase().as_str() {
            "avx512" | "avx512f" => Some(Simd::Avx512),
            "avx2" => Some(Simd::Avx2),
            "scalar" | "none" => Some(Simd::Scalar),
            _ => None,
        }
    }

    /// The level the kernels use now: `ALPHANET_FAST_SIMD`, capped at what the CPU has.
    pub fn current() -> Simd {
        let detected = Simd::detected();
        match std::env::var(SIMD_ENV)
            .ok()
            .as_deref()
            .and_then(Simd::parse)
        {
            Some(asked) => asked.min(detected),
            None => detected,
        }
    }

    /// Every level this CPU supports, narrowest first (tests run each).
    pub fn available() -> Vec<Simd> {
        [Simd::Scalar, Simd::Avx2, Simd::Avx512]
            .into_iter()
            .filter(|&level| level <= Simd::detected())
            .collect()
    }

    /// Lower-case name, as `ALPHANET_FAST_SIMD` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Simd::Scalar => "scalar",
            Simd::Avx2 => "avx2",
            Simd::Avx512 => "avx512",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_means_auto() {
        for level in [Simd::Scalar, Simd::Avx2, Simd::Avx512] {
            assert_eq!(Simd::parse(level.name()), Some(level));
        }
        assert_eq!(Simd::parse(" AVX2 "), Some(Simd::Avx2));
        assert_eq!(Simd::parse("auto"), None);
        assert_eq!(Simd::parse("sse9"), None);
        assert!(Simd::Scalar < Simd::Avx2 && Simd::Avx2 < Simd::Avx512);
    }

    #[test]
    fn current_never_exceeds_the_cpu() {
        assert!(Simd::current() <= Simd::detected());
    }
}
