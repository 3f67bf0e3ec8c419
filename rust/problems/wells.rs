//! Warped double wells with a sharp and a flat minimum of equal depth (for escape-time studies
//! after Dai & Zhu 2018; the potential is the test potential of `docs/theory/dai_zhu2018.md`).

use crate::rng::NormalStream;

/// `f(x) = Σ_i V(x_i)`, `V(x) = (φ(x)² − 1)²`, `φ(x) = (e^{κx} − 1)/κ`, plus a quadratic wall
/// `½ k (x − x_w)²` for `x < x_w`, `x_w = ln(1 − κ)/κ − wall_offset`. Gradient noise is
/// `N(0, σ²/b)` per coordinate.
#[derive(Debug, Clone)]
pub struct DoubleWell {
    /// Warp `κ ∈ [0, 1)`; `κ = 0` is the symmetric quartic.
    pub kappa: f64,
    /// Per-sample gradient noise standard deviation `σ`.
    pub noise_std: f64,
    /// Start.
    pub x0: Vec<f64>,
    /// Where the wall starts.
    pub wall_at: f64,
    /// Wall stiffness `k`.
    pub wall_stiffness: f64,
}

impl DoubleWell {
    /// A potential from validated parameters.
    #[must_use]
    pub fn new(
        kappa: f64,
        noise_std: f64,
        x0: Vec<f64>,
        wall_offset: f64,
        wall_stiffness: f64,
    ) -> Self {
        let flat = if kappa == 0.0 {
            -1.0
        } else {
            (-kappa).ln_1p() / kappa
        };
        Self {
            kappa,
            noise_std,
            x0,
            wall_at: flat - wall_offset,
            wall_stiffness,
        }
    }

    /// `(φ(x), φ'(x))`.
    fn warp(&self, x: f64) -> (f64, f64) {
        if self.kappa == 0.0 {
            (x, 1.0)
        } else {
            let e = (self.kappa * x).exp();
            ((self.kappa * x).exp_m1() / self.kappa, e)
        }
    }

    fn potential(&self, x: f64) -> f64 {
        let (phi, _) = self.warp(x);
        let wall = (self.wall_at - x).max(0.0);
        (phi * phi - 1.0).powi(2) + 0.5 * self.wall_stiffness * wall * wall
    }

    fn slope(&self, x: f64) -> f64 {
        let (phi, dphi) = self.warp(x);
        let wall = (self.wall_at - x).max(0.0);
        4.0 * phi * (phi * phi - 1.0) * dphi - self.wall_stiffness * wall
    }

    pub(super) fn loss(&self, x: &[f64]) -> f64 {
        x.iter().map(|&v| self.potential(v)).sum()
    }

    pub(super) fn grad(&self, x: &[f64], out: &mut [f64]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = self.slope(v);
        }
    }

    pub(super) fn stochastic_grad(
        &self,
        x: &[f64],
        b: usize,
        noise: &mut NormalStream,
        out: &mut [f64],
    ) {
        noise.fill(out);
        let scale = self.noise_std / (b as f64).sqrt();
        for (o, &v) in out.iter_mut().zip(x) {
            *o = self.slope(v) + scale * *o;
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
