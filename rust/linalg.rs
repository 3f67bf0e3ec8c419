//! The vector kernels of the finite-sum problems and the optimizers, with a fixed summation order.
//!
//! `dot` keeps partial sums (8 for `f64`, 32 for `f32`, [`Real::dots`]) so the compiler can
//! vectorize it; the order of additions is part of the definition, so results are bitwise the
//! same on every instruction set.

use crate::real::{pairwise, Real};

/// `Σ a_i b_i` in the type's fixed order ([`Real::dots`]) over the common length.
#[inline(always)]
#[must_use]
pub fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let n = a.len().min(b.len());
    T::dots([&a[..n]], &b[..n])[0]
}

/// `Σ r_i b_i` for each of the `R` rows (each as long as `b`) with `L` accumulators per row:
/// blocks of `L` products added lane by lane, the lanes added pairwise ([`pairwise`]), then the
/// tail in order. With `L = 8` that is two interleaved 4-wide partial sums,
/// `((s₀ + s₂) + (s₁ + s₃)) + tail` with `s_k = lo_k + hi_k`. Each row's sum is bitwise the one
/// it has alone (`R = 1`): several rows only interleave independent chains and read `b` once.
///
/// # Panics
/// If a row is shorter than `b` (callers pass rows of one matrix against a vector of their length).
#[inline(always)]
#[must_use]
pub fn lane_dots<T: Real, const L: usize, const R: usize>(rows: [&[T]; R], b: &[T]) -> [T; R] {
    // (plain loops fill the arrays here and below: `array::from_fn` and `map` were not inlined)
    let (blocks_b, tail_b) = b.as_chunks::<L>();
    let mut split: [(&[[T; L]], &[T]); R] = [(&[], &[]); R];
    for (split, row) in split.iter_mut().zip(rows) {
        *split = row[..b.len()].as_chunks::<L>();
    }
    // Register-wide accumulators hide the add latency; the layout maps onto SIMD lanes.
    let mut acc = [[T::ZERO; L]; R];
    for (i, cb) in blocks_b.iter().enumerate() {
        for (acc, (blocks, _)) in acc.iter_mut().zip(&split) {
            let ca = &blocks[i];
            for k in 0..L {
                acc[k] += ca[k] * cb[k];
            }
        }
    }
    let mut tails = [T::ZERO; R];
    for (tail, (_, tail_a)) in tails.iter_mut().zip(&split) {
        for (&x, &y) in tail_a.iter().zip(tail_b) {
            *tail += x * y;
        }
    }
    // An identity that keeps LLVM's SLP vectorizer from shaping the loop above after the
    // reduction tree below: without it the lanes were packed two by two into 128-bit registers
    // (best of 9, a 256-long dot on AVX-512: f32 41 -> 20 ns, f64 41 -> 28 ns; same bits).
    let acc = std::hint::black_box(acc);
    for (tail, lanes) in tails.iter_mut().zip(acc) {
        // a copy the optimizer may keep in registers (`acc` is in memory, seen by black_box)
        let mut lanes = lanes;
        *tail = pairwise(&mut lanes) + *tail;
    }
    tails
}

/// `y += alpha * x`.
#[inline(always)]
pub fn axpy<T: Real>(alpha: T, x: &[T], y: &mut [T]) {
    axpys([alpha], [x], y);
}

/// `y += alphas[0] * xs[0]`, then `y += alphas[1] * xs[1]`, ... (each `x` as long as `y`), in
/// one pass over `y`: bitwise the `R` [`axpy`] calls in order.
///
/// # Panics
/// If an `x` is shorter than `y`.
#[inline(always)]
pub fn axpys<T: Real, const R: usize>(alphas: [T; R], xs: [&[T]; R], y: &mut [T]) {
    // whole blocks of `y` as arrays, so the adds of each block vectorize
    const W: usize = 16;
    let n = y.len();
    let mut split: [(&[[T; W]], &[T]); R] = [(&[], &[]); R];
    for (split, x) in split.iter_mut().zip(xs) {
        *split = x[..n].as_chunks::<W>();
    }
    let xs = split;
    let (blocks, tail) = y.as_chunks_mut::<W>();
    for (i, block) in blocks.iter_mut().enumerate() {
        let mut v = *block;
        for (&alpha, (x, _)) in alphas.iter().zip(&xs) {
            let x = &x[i];
            for k in 0..W {
                v[k] += alpha * x[k];
            }
        }
        *block = v;
    }
    for (i, yi) in tail.iter_mut().enumerate() {
        for (&alpha, (_, x)) in alphas.iter().zip(&xs) {
            *yi += alpha * x[i];
        }
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

    fn rows<T: Real>(n: usize, scale: f64) -> [Vec<T>; 5] {
        std::array::from_fn(|r| {
            (0..n)
                .map(|i| T::from_f64(((i * 7 + r * 13) as f64 * 0.37).sin() * scale))
                .collect()
        })
    }

    /// Several rows at once give each row's dot product and each row's axpy bitwise as alone.
    fn rows_at_once_are_bitwise_one_at_a_time<T: Real>() {
        for n in [0, 1, 7, 8, 31, 32, 33, 64, 100, 256, 257] {
            let [a, b, c, d, w] = rows::<T>(n, 1.0);
            let one = [&a, &b, &c, &d].map(|r| dot(r, &w).to_f64().to_bits());
            let four = T::dots([&a[..], &b, &c, &d], &w).map(|v| v.to_f64().to_bits());
            assert_eq!(one, four, "dots, n = {n}");
            let two = T::dots([&c[..], &d], &w).map(|v| v.to_f64().to_bits());
            assert_eq!(&one[2..], two, "dots, n = {n}");
            let alphas = [0.3, -1.7, 2.1, 1e-3].map(T::from_f64);
            let mut seq = w.clone();
            for (&alpha, x) in alphas.iter().zip([&a, &b, &c, &d]) {
                axpy(alpha, x, &mut seq);
            }
            let mut fused = w.clone();
            axpys(alphas, [&a[..], &b, &c, &d], &mut fused);
            let bits = |v: &[T]| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&seq), bits(&fused), "axpys, n = {n}");
        }
    }

    #[test]
    fn rows_at_once_are_bitwise_one_at_a_time_in_both_types() {
        rows_at_once_are_bitwise_one_at_a_time::<f64>();
        rows_at_once_are_bitwise_one_at_a_time::<f32>();
    }

    #[test]
    fn lanes_are_added_in_their_documented_order() {
        // 8 f64 lanes: lane k holds a_k b_k; pairwise gives ((s0 + s2) + (s1 + s3)) with
        // s_k = lane_k + lane_{k+4}; a plain left-to-right sum would round the 1.0s away
        let mut a = vec![1e16, 1.0, -1e16, 1.0, 0.0, 0.0, 0.0, 0.0, 3.0];
        let b = vec![1.0; 9];
        assert_eq!(dot(&a, &b), 5.0);
        a[8] = 0.0;
        assert_eq!(lane_dots::<f64, 8, 1>([&a], &b)[0], 2.0);
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
