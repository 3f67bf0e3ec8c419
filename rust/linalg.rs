//! The vector kernels of the finite-sum problems and the optimizers, with a fixed summation order.
//!
//! `dot` keeps partial sums (8 for `f64`, 32 for `f32`, [`Real::dot`]) so the compiler can
//! vectorize it; the order of additions is part of the definition, so results are bitwise the
//! same on every instruction set.

use crate::real::{pairwise, Real};

/// `Σ a_i b_i` in the type's fixed order ([`Real::dot`]; lengths must match).
#[inline(always)]
#[must_use]
pub fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    T::dot(a, b)
}

/// `Σ a_i b_i` with `L` accumulators: blocks of `L` products added lane by lane, the lanes added
/// pairwise ([`pairwise`]), then the tail in order. With `L = 8` that is two interleaved 4-wide
/// partial sums, `((s₀ + s₂) + (s₁ + s₃)) + tail` with `s_k = lo_k + hi_k`.
#[inline(always)]
#[must_use]
pub fn lane_dot<T: Real, const L: usize>(a: &[T], b: &[T]) -> T {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    // Register-wide accumulators hide the add latency; the layout maps onto SIMD lanes.
    let mut acc = [T::ZERO; L];
    let ((blocks_a, tail_a), (blocks_b, tail_b)) = (a.as_chunks::<L>(), b.as_chunks::<L>());
    for (ca, cb) in blocks_a.iter().zip(blocks_b) {
        for k in 0..L {
            acc[k] += ca[k] * cb[k];
        }
    }
    let mut tail = T::ZERO;
    for (&x, &y) in tail_a.iter().zip(tail_b) {
        tail += x * y;
    }
    // An identity that keeps LLVM's SLP vectorizer from shaping the loop above after the
    // reduction tree below: without it the lanes were packed two by two into 128-bit registers
    // (best of 9, a 256-long dot on AVX-512: f32 41 -> 20 ns, f64 41 -> 28 ns; same bits).
    let mut acc = std::hint::black_box(acc);
    pairwise(&mut acc) + tail
}

/// `y += alpha * x`.
#[inline(always)]
pub fn axpy<T: Real>(alpha: T, x: &[T], y: &mut [T]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * *xi;
    }
}

/// `Σ x_i²` in `f64`: [`dot`]`(x, x)` for `f64`, the widened squares in [`Real::Sum`]'s lanes
/// for `f32` (where no square overflows or underflows `f64`).
#[inline(always)]
#[must_use]
pub fn sum_squares<T: Real>(x: &[T]) -> f64 {
    if T::SUM_LANES == 1 {
        return dot(x, x).to_f64();
    }
    T::sum_zip(x, x, |v, _| v.to_f64() * v.to_f64())
}

/// `2^-970`: above it, squares that underflowed change a sum of squares by under `d · 2^-104`
/// relative; below it `sqrt(dot(x, x))` may have lost bits (or everything) to underflow.
const SQUARES_UNDERFLOW: f64 = f64::MIN_POSITIVE * 4_503_599_627_370_496.0;

/// Euclidean norm, without spurious overflow or underflow (as BLAS `dnrm2` or `hypot`).
///
/// The plain `sqrt(Σ x_i²)` comes first, so results in the ordinary range are bitwise those of
/// [`sum_squares`]; only when the sum of squares overflows (some `|x_i| > 1.3e154`) or falls near the
/// bottom of the range is the norm recomputed as `m · sqrt(Σ (x_i / m)²)` with `m = max |x_i|`,
/// which is finite whenever the norm is representable. A NaN anywhere gives NaN, an infinite
/// entry (and no NaN) gives infinity.
#[inline]
#[must_use]
pub fn norm<T: Real>(x: &[T]) -> f64 {
    let squares = sum_squares(x);
    if squares.is_finite() && squares >= SQUARES_UNDERFLOW {
        return squares.sqrt();
    }
    scaled_norm(x)
}

/// `m · sqrt(Σ (x_i / m)²)` with `m = max |x_i|`: the slow path of [`norm`].
#[cold]
fn scaled_norm<T: Real>(x: &[T]) -> f64 {
    let mut largest = 0.0f64;
    for v in x.iter().map(|v| v.to_f64()) {
        if v.is_nan() {
            return f64::NAN;
        }
        largest = largest.max(v.abs());
    }
    if largest == 0.0 || largest.is_infinite() {
        return largest;
    }
    let scaled: f64 = x
        .iter()
        .map(|v| (v.to_f64() / largest) * (v.to_f64() / largest))
        .sum();
    largest * scaled.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_a_plain_sum_for_every_length() {
        for n in 0..40 {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 0.11).cos()).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-12, "n = {n}");
        }
    }

    #[test]
    fn axpy_and_norm() {
        let mut y = vec![1.0, 2.0, 3.0];
        axpy(2.0, &[1.0, 0.0, -1.0], &mut y);
        assert_eq!(y, vec![3.0, 2.0, 1.0]);
        assert_eq!(norm(&[3.0, 4.0]), 5.0);
    }

    #[test]
    fn norm_is_scaled_where_the_squares_overflow_or_underflow() {
        // The sum of squares overflows (1e320) although the norm (1e160) is representable.
        assert_eq!(norm(&[1e160, 1.0]), 1e160);
        let big = norm(&[3e200, 4e200]);
        assert!((big / 5e200 - 1.0).abs() < 1e-15, "{big}");
        // And underflows to zero although the norm is 5e-200.
        let small = norm(&[3e-200, 4e-200]);
        assert!((small / 5e-200 - 1.0).abs() < 1e-15, "{small}");
        assert_eq!(norm(&[0.0, 0.0]), 0.0);
        assert_eq!(norm::<f64>(&[]), 0.0);
        // Non-finite entries stay non-finite.
        assert!(norm(&[f64::MAX, f64::MAX]).is_infinite());
        assert!(norm(&[f64::INFINITY, 1.0]).is_infinite());
        assert!(norm(&[f64::INFINITY, f64::NAN]).is_nan());
        assert!(norm(&[1e200, f64::NAN]).is_nan());
    }

    #[test]
    fn norm_in_the_ordinary_range_is_the_plain_root() {
        let x: Vec<f64> = (0..37).map(|i| (i as f64 * 0.7).sin() * 1e3).collect();
        assert_eq!(norm(&x), dot(&x, &x).sqrt());
    }

    #[test]
    fn norm_is_scaled_where_the_squares_are_subnormal() {
        // Σ x² = 2.5e-319 is subnormal (about five significant digits): the scaled path
        // must give the norm to full precision.
        let tiny = norm(&[3e-160, 4e-160]);
        assert!((tiny / 5e-160 - 1.0).abs() < 1e-15, "{tiny}");
    }
}
