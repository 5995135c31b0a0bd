//! The two floating-point types the kernels accept.

/// `f32` or `f64`: the element types of features and weights.
pub trait Real:
    Copy + Send + Sync + PartialOrd + std::fmt::Debug + Default + 'static + std::ops::Add<Output = Self>
{
    /// Unit roundoff (half the machine epsilon) of the type.
    const UNIT_ROUNDOFF: f64;
    /// The smallest positive (subnormal) value of the type, as float64: the
    /// absolute error a product that underflows may carry.
    const UNDERFLOW: f64;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    fn is_finite(self) -> bool;
    fn zero() -> Self;
    fn one() -> Self;
}

impl Real for f32 {
    const UNIT_ROUNDOFF: f64 = f32::EPSILON as f64 / 2.0;
    const UNDERFLOW: f64 = f32::from_bits(1) as f64;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    fn zero() -> Self {
        0.0
    }
    fn one() -> Self {
        1.0
    }
}

impl Real for f64 {
    const UNIT_ROUNDOFF: f64 = f64::EPSILON / 2.0;
    const UNDERFLOW: f64 = f64::from_bits(1);
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    fn zero() -> Self {
        0.0
    }
    fn one() -> Self {
        1.0
    }
}
