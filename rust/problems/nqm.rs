//! The noisy quadratic model (Zhang et al. 2019, Sec. 3).

use crate::real::Real;
use crate::rng::NormalStream;

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

    #[inline(always)]
    pub(super) fn grad(&self, x: &[T], out: &mut [T]) {
        for ((o, h), x) in out.iter_mut().zip(&self.h).zip(x) {
            *o = *h * *x;
        }
    }

    #[inline(always)]
    pub(super) fn stochastic_grad(
        &self,
        x: &[T],
        b: usize,
        noise: &mut NormalStream<T>,
        out: &mut [T],
    ) {
        // the scale first: its division and root then overlap the sampler's work
        let scale = T::from_f64((1.0 / b as f64).sqrt());
        noise.fill(out);
        for (((o, h), x), s) in out.iter_mut().zip(&self.h).zip(x).zip(&self.sqrt_c) {
            *o = *h * *x + *s * scale * *o;
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
        let mut oracle = Oracle::new(5);
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
