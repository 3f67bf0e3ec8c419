//! Warped double wells with a sharp and a flat minimum of equal depth (for escape-time studies
//! after Dai & Zhu 2018; the potential is the test potential of `docs/theory/dai_zhu2018.md`).

use crate::real::Real;

/// `f(x) = Σ_i V(x_i)`, `V(x) = (φ(x)² − 1)²`, `φ(x) = (e^{κx} − 1)/κ`, plus a quadratic wall
/// `½ k (x − x_w)²` for `x < x_w`, `x_w = ln(1 − κ)/κ − wall_offset`. Gradient noise is
/// `N(0, σ²/b)` per coordinate.
#[derive(Debug, Clone)]
pub struct DoubleWell<T: Real = f64> {
    /// Warp `κ ∈ [0, 1)`; `κ = 0` is the symmetric quartic.
    pub kappa: T,
    /// Per-sample gradient noise standard deviation `σ`.
    pub noise_std: T,
    /// Start.
    pub x0: Vec<T>,
    /// Where the wall starts.
    pub wall_at: T,
    /// Wall stiffness `k`.
    pub wall_stiffness: T,
}

impl<T: Real> DoubleWell<T> {
    /// A potential from validated parameters (`x_w` computed in `f64`, then rounded).
    #[must_use]
    pub fn new(
        kappa: f64,
        noise_std: f64,
        x0: Vec<T>,
        wall_offset: f64,
        wall_stiffness: f64,
    ) -> Self {
        let flat = if kappa == 0.0 {
            -1.0
        } else {
            (-kappa).ln_1p() / kappa
        };
        Self {
            kappa: T::from_f64(kappa),
            noise_std: T::from_f64(noise_std),
            x0,
            wall_at: T::from_f64(flat - wall_offset),
            wall_stiffness: T::from_f64(wall_stiffness),
        }
    }

    /// The same potential in another float type (each parameter rounded once).
    #[must_use]
    pub fn cast<U: Real>(&self) -> DoubleWell<U> {
        let to = |v: T| U::from_f64(v.to_f64());
        DoubleWell {
            kappa: to(self.kappa),
            noise_std: to(self.noise_std),
            x0: self.x0.iter().map(|&v| to(v)).collect(),
            wall_at: to(self.wall_at),
            wall_stiffness: to(self.wall_stiffness),
        }
    }

    /// `(φ(x), φ'(x))`.
    fn warp(&self, x: T) -> (T, T) {
        if self.kappa == T::ZERO {
            (x, T::ONE)
        } else {
            let e = (self.kappa * x).exp();
            ((self.kappa * x).exp_m1() / self.kappa, e)
        }
    }

    fn potential(&self, x: T) -> T {
        let (phi, _) = self.warp(x);
        let wall = (self.wall_at - x).max(T::ZERO);
        (phi * phi - T::ONE).powi(2) + T::from_f64(0.5) * self.wall_stiffness * wall * wall
    }

    fn slope(&self, x: T) -> T {
        let (phi, dphi) = self.warp(x);
        let wall = (self.wall_at - x).max(T::ZERO);
        T::from_f64(4.0) * phi * (phi * phi - T::ONE) * dphi - self.wall_stiffness * wall
    }

    /// `Σ V(x_i)`, each term in the run's type, summed in `f64` ([`Real::sum_zip`]).
    pub(super) fn loss(&self, x: &[T]) -> f64 {
        T::sum_zip(x, x, |v, _| self.potential(v).to_f64())
    }

    pub(super) fn grad(&self, x: &[T], out: &mut [T]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = self.slope(v);
        }
    }

    /// The stochastic gradient on the standard normals `z` (one per coordinate).
    pub(super) fn stochastic_grad(&self, x: &[T], b: usize, z: &[T], out: &mut [T]) {
        let scale = T::from_f64(self.noise_std.to_f64() / (b as f64).sqrt());
        for ((o, &v), &z) in out.iter_mut().zip(x).zip(z) {
            *o = self.slope(v) + scale * z;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check_gradient, check_unbiased};
    use super::super::Problem;
    use super::*;

    #[test]
    fn minima_barrier_and_curvatures_are_as_stated() {
        let kappa = 0.5;
        let w = DoubleWell::new(kappa, 1.0, vec![0.0], 1.0, 8.0);
        let (flat, sharp) = ((-kappa).ln_1p() / kappa, kappa.ln_1p() / kappa);
        assert!(w.potential(flat).abs() < 1e-15 && w.potential(sharp).abs() < 1e-15);
        assert!((w.potential(0.0) - 1.0).abs() < 1e-15);
        let curv = |x: f64| (w.slope(x + 1e-5) - w.slope(x - 1e-5)) / 2e-5;
        assert!((curv(flat) - 8.0 * (1.0 - kappa).powi(2)).abs() < 1e-5);
        assert!((curv(sharp) - 8.0 * (1.0 + kappa).powi(2)).abs() < 1e-5);
    }

    #[test]
    fn gradient_is_exact_including_the_wall() {
        let p = Problem::DoubleWell(DoubleWell::new(0.5, 0.3, vec![0.0; 4], 0.5, 8.0));
        check_gradient(&p, &[-2.5, -1.0, 0.2, 0.9], 1e-6);
        check_unbiased(&p, &[-2.5, -1.0, 0.2, 0.9], 2, 20_000, 0.01);
    }

    #[test]
    fn kappa_zero_is_the_symmetric_quartic() {
        // Kills a mutant of the `kappa == 0.0` branch of `warp` (0/0 there, the quartic here).
        let w = DoubleWell::new(0.0, 1.0, vec![0.0], 1.0, 8.0);
        assert_eq!(w.warp(0.5), (0.5, 1.0));
        assert_eq!(w.potential(0.5), 0.5625);
        assert_eq!(w.slope(0.5), 4.0 * 0.5 * (0.25 - 1.0));
        let w = DoubleWell::new(0.9, 1.0, vec![0.0], 1.0, 8.0);
        assert!((w.warp(1.0).1 - 0.9f64.exp()).abs() < 1e-15);
    }
}
