//! The noisy quadratic model (Zhang et al. 2019, Sec. 3).

use crate::optimizers::LinearStep;
use crate::real::Real;

/// `f(x) = ½ Σ h_i x_i²`; stochastic gradient `h ⊙ x + ξ`, `ξ ~ N(0, diag(c)/b)`.
#[derive(Debug, Clone)]
pub struct Nqm<T: Real = f64> {
    /// Curvatures, positive.
    pub h: Vec<T>,
    /// Per-sample gradient noise variances, non-negative.
    pub c: Vec<T>,
    /// Start.
    pub x0: Vec<T>,
    /// `sqrt(c_i)`, precomputed so a step costs one `sqrt(1/b)` instead of `d` square roots.
    sqrt_c: Vec<T>,
}

impl<T: Real> Nqm<T> {
    /// A model from validated arrays of equal length.
    #[must_use]
    pub fn new(h: Vec<T>, c: Vec<T>, x0: Vec<T>) -> Self {
        let sqrt_c = c.iter().map(|v| v.sqrt()).collect();
        Self { h, c, x0, sqrt_c }
    }

    /// The same model in another float type (each array rounded once, `sqrt(c)` included).
    #[must_use]
    pub fn cast<U: Real>(&self) -> Nqm<U> {
        let to = |v: &[T]| v.iter().map(|x| U::from_f64(x.to_f64())).collect();
        Nqm {
            h: to(&self.h),
            c: to(&self.c),
            x0: to(&self.x0),
            sqrt_c: to(&self.sqrt_c),
        }
    }

    /// `½ Σ h_i x_i²`, summed in `f64` ([`Real::sum_zip`]).
    #[inline(always)]
    pub(super) fn loss(&self, x: &[T]) -> f64 {
        0.5 * T::sum_zip(&self.h, x, |h, x| h.to_f64() * x.to_f64() * x.to_f64())
    }

    /// `sqrt(1/b)`, the noise scale of a batch of `b`.
    #[inline(always)]
    fn noise_scale(b: usize) -> T {
        T::from_f64((1.0 / b as f64).sqrt())
    }

    /// `h x + sqrt(c) · scale · z`: a coordinate of the stochastic gradient on the normal `z`.
    #[inline(always)]
    fn noisy_grad(h: T, x: T, sqrt_c: T, scale: T, z: T) -> T {
        h * x + sqrt_c * scale * z
    }

    #[inline(always)]
    pub(super) fn grad(&self, x: &[T], out: &mut [T]) {
        for ((o, h), x) in out.iter_mut().zip(&self.h).zip(x) {
            *o = *h * *x;
        }
    }

    /// The stochastic gradient on the standard normals `z` (one per coordinate).
    #[inline(always)]
    pub(super) fn stochastic_grad(&self, x: &[T], b: usize, z: &[T], out: &mut [T]) {
        let scale = Self::noise_scale(b);
        let coordinates = out
            .iter_mut()
            .zip(x.iter().zip(z))
            .zip(self.h.iter().zip(&self.sqrt_c));
        for ((o, (&x, &z)), (&h, &s)) in coordinates {
            *o = Self::noisy_grad(h, x, s, scale, z);
        }
    }

    /// [`Nqm::stochastic_grad`] and the step `rule` on it in one pass over the coordinates, `m`
    /// the rule's momentum buffer and `g` scratch: the iterate is bitwise the one of the two
    /// passes (the same expressions in the same order), without storing and reloading `g`.
    ///
    /// Design note (d = 100, 1000 steps, the loss checked every step; the old and new core in
    /// one process, interleaved, median of 21-41 rounds): one pass instead of two made SGD
    /// 9-10 % faster in `f64`, and 6-9 % in `f32` together with the full-width loss lanes of
    /// [`crate::real::lane_sum_zip`] (4-5 % of it); heavy ball and Nesterov 2-5 %. Summing the new
    /// iterate's loss in this step as well, for a check at the next step, measured slower than
    /// leaving it to the check's own pass over the iterate (still in L1): with the loss terms
    /// buffered per block of 64 coordinates an `f32` run was 10-15 % slower than with the two
    /// original passes (the lanes' 512-bit loads waited on the block's 512-bit stores); with the
    /// loss summed right after this pass it was 2-3 % slower than this pass alone (`f64`: 5-6 %);
    /// and the in-order `f64` sum inside the pass kept the pass from vectorizing. Also tried and
    /// dropped (float32, interleaved processes, min of 9-15 rounds): the noise scale read from a
    /// per-`b` table instead of a division and a root each step (no change: their latency hides
    /// behind the check), and the loss reading `h` widened to `f64` once (no change end to end,
    /// though 7-13 % faster in a micro-benchmark of the check alone).
    #[inline(always)]
    pub(super) fn fused_step(
        &self,
        x: &mut [T],
        b: usize,
        z: &[T],
        rule: &LinearStep<T>,
        m: &mut [T],
    ) {
        let scale = Self::noise_scale(b);
        let coordinates = x.iter_mut().zip(z.iter().zip(&self.h).zip(&self.sqrt_c));
        match rule {
            LinearStep::Plain { lr } => {
                for (x, ((&z, &h), &s)) in coordinates {
                    *x -= *lr * Self::noisy_grad(h, *x, s, scale, z);
                }
            }
            LinearStep::Momentum(rule) => {
                for ((x, ((&z, &h), &s)), m) in coordinates.zip(m) {
                    (*x, *m) = rule.apply(*x, *m, Self::noisy_grad(h, *x, s, scale, z));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check_gradient, check_unbiased};
    use super::super::{Oracle, Problem};
    use super::*;

    fn model() -> Problem {
        Problem::Nqm(Nqm::new(
            vec![1.0, 0.5, 0.25],
            vec![1.0, 2.0, 0.0],
            vec![1.0; 3],
        ))
    }

    #[test]
    fn gradient_is_exact_and_oracle_unbiased() {
        check_gradient(&model(), &[0.3, -1.0, 2.0], 1e-7);
        // sd of the mean per coordinate <= sqrt(2/4)/sqrt(20000) = 5e-3; 5 sd.
        check_unbiased(&model(), &[0.3, -1.0, 2.0], 4, 20_000, 0.025);
    }

    #[test]
    fn noise_variance_is_c_over_b() {
        let p = model();
        let mut oracle = Oracle::new(5, &p);
        let x = [0.0; 3];
        let mut g = [0.0; 3];
        let draws = 40_000;
        let mut second = [0.0; 3];
        for _ in 0..draws {
            p.stochastic_grad(&x, 8, &mut oracle, &mut g);
            for i in 0..3 {
                second[i] += g[i] * g[i] / draws as f64;
            }
        }
        // Var of a sample variance is 2σ⁴/n: relative sd sqrt(2/40000) = 0.7%; allow 4%.
        assert!((second[0] - 1.0 / 8.0).abs() < 0.04 / 8.0);
        assert!((second[1] - 2.0 / 8.0).abs() < 0.08 / 8.0);
        assert_eq!(second[2], 0.0);
    }
}
