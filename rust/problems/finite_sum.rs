//! Losses averaged over a finite data set: least squares, logistic regression, robust
//! regression (linear predictors) and a two-layer tanh teacher-student network.
//!
//! `f(w) = (1/n) Σ_j ℓ_j(w) + (λ/2)|w|²`; a minibatch gradient is the mean of the per-sample
//! gradients over the drawn indices plus `λ w`.

use crate::linalg::{axpy, axpys, dot, norm, sum_squares};

use crate::real::{Accumulator, Real};
use crate::simd::{self, Level};

/// How minibatch indices are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// Independently and uniformly, with replacement.
    WithReplacement,
    /// A fresh permutation per epoch, consumed `b` at a time; a remainder shorter than `b` is
    /// dropped; a batch larger than the data set is capped at `n`.
    Shuffle,
}

/// The nonconvex robust losses of the residual `r`, with scale `c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RobustLoss {
    /// `ρ(r) = (c²/2) r² / (c² + r²)` (Geman & `McClure` 1987).
    GemanMcClure,
    /// `ρ(r) = (c²/2) ln(1 + r²/c²)` (the Cauchy or Lorentzian loss).
    Cauchy,
}

/// The per-sample model and loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    /// `ℓ = ½ (xᵀw − y)²`.
    LeastSquares,
    /// `ℓ = ln(1 + exp(−y xᵀw))`, `y ∈ {−1, +1}`.
    Logistic,
    /// `ℓ = ρ(xᵀw − y)` with a robust `ρ`.
    Robust {
        /// Which `ρ`.
        loss: RobustLoss,
        /// Its scale `c > 0`.
        scale: f64,
    },
    /// `ℓ = ½ (Σ_k a_k tanh(w_kᵀx) − y)²`, parameters `W` (width × `d_in`, row-major) then `a`.
    TeacherStudent {
        /// Hidden units.
        width: usize,
    },
}

/// A finite-sum problem over rows of `features` (n × `n_features`, row-major), stored in the
/// run's float type (an `f32` design halves the memory a minibatch gathers).
#[derive(Debug, Clone)]
pub struct FiniteSum<T: Real = f64> {
    /// Row-major design matrix.
    pub features: Vec<T>,
    /// Targets (labels ±1 for logistic regression).
    pub targets: Vec<T>,
    /// Number of samples.
    pub n: usize,
    /// Number of features per sample.
    pub n_features: usize,
    /// L2 penalty `λ`.
    pub l2: f64,
    /// Minibatch sampling.
    pub sampling: Sampling,
    /// Per-sample model.
    pub model: Model,
    /// Start.
    pub x0: Vec<T>,
}

/// Hint the cache to load `data` (every 64-byte line); a no-op off x86-64.
#[inline(always)]
fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(64 / std::mem::size_of::<T>()) {
        // SAFETY: prefetching is a hint that never faults, and the pointer is in bounds.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// `ln(1 + e^t)` without overflow.
fn softplus<T: Real>(t: T) -> T {
    if t > T::ZERO {
        t + (-t).exp().ln_1p()
    } else {
        t.exp().ln_1p()
    }
}

/// The logistic function `1 / (1 + e^{-t})` without overflow.
fn sigmoid<T: Real>(t: T) -> T {
    if t >= T::ZERO {
        T::ONE / (T::ONE + (-t).exp())
    } else {
        let e = t.exp();
        e / (T::ONE + e)
    }
}

/// `(ρ(r), ρ'(r))` of a robust loss with scale `c`, in a form whose intermediates overflow only
/// when the result does.
///
/// With `u = r/c`: Geman-`McClure` is `ρ = ½ r² / (1 + u²)`, `ρ' = r / (1 + u²)²` and Cauchy is
/// `ρ = ½ r² · ln(1 + u²)/u²`, `ρ' = r / (1 + u²)`. For `|u| > 1` they are rewritten in
/// `v = c/r = 1/u` (`½ c²/(1 + v²)`, `c v³/(1 + v²)²`; `½ c² (2 ln|u| + ln(1 + v²))`,
/// `c v/(1 + v²)`), so neither `c²`, `c⁴` nor `r²` is ever formed: the textbook
/// `c² c² r / (c² + r²)²` is NaN from `c ≈ 1e77` on, although `ρ'` is then about `r`.
#[inline(always)]
pub(crate) fn robust<T: Real>(loss: RobustLoss, r: T, c: T) -> (T, T) {
    let (one, half) = (T::ONE, T::from_f64(0.5));
    let u = r / c;
    if u.abs() <= one {
        let x = u * u;
        let q = one + x;
        match loss {
            RobustLoss::GemanMcClure => (half * r * (r / q), r / (q * q)),
            RobustLoss::Cauchy => {
                // ln(1 + x)/x → 1 as x → 0 (and x may have underflowed to 0).
                let ratio = if x == T::ZERO { one } else { x.ln_1p() / x };
                (half * r * (r * ratio), r / q)
            }
        }
    } else {
        // Also taken for a NaN residual, which then propagates to both values.
        let v = c / r;
        let p = one + v * v;
        match loss {
            RobustLoss::GemanMcClure => (half * c * (c / p), (c * v) * (v / p) * (v / p)),
            RobustLoss::Cauchy => {
                // ln|u| without forming u when r/c overflowed (a tiny c and a huge r).
                let log_u = if u.is_finite() {
                    u.abs().ln()
                } else {
                    r.abs().ln() - c.ln()
                };
                let two = T::from_f64(2.0);
                (half * c * (c * (two * log_u + (v * v).ln_1p())), c * v / p)
            }
        }
    }
}

impl<T: Real> FiniteSum<T> {
    /// The same problem in another float type (design, targets and start rounded once).
    #[must_use]
    pub fn cast<U: Real>(&self) -> FiniteSum<U> {
        let to = |v: &[T]| v.iter().map(|x| U::from_f64(x.to_f64())).collect();
        FiniteSum {
            features: to(&self.features),
            targets: to(&self.targets),
            n: self.n,
            n_features: self.n_features,
            l2: self.l2,
            sampling: self.sampling,
            model: self.model,
            x0: to(&self.x0),
        }
    }

    fn row(&self, j: usize) -> &[T] {
        &self.features[j * self.n_features..(j + 1) * self.n_features]
    }

    /// Loss of a linear predictor value `z` against target `y`, and its derivative in `z`.
    #[inline(always)]
    fn linear_loss(&self, z: T, y: T) -> (T, T) {
        match self.model {
            Model::Logistic => (softplus(-y * z), -y * sigmoid(-y * z)),
            Model::Robust { loss, scale } => robust(loss, z - y, T::from_f64(scale)),
            // Least squares; the teacher-student model never comes here.
            _ => (T::from_f64(0.5) * (z - y) * (z - y), z - y),
        }
    }

    #[inline(always)]
    /// Loss of sample `j`, and (if `grad` is given) `scale ×` its gradient added to `grad`.
    fn sample(
        &self,
        w: &[T],
        j: usize,
        scale: T,
        grad: Option<&mut [T]>,
        hidden: &mut Vec<T>,
    ) -> T {
        let x = self.row(j);
        let y = self.targets[j];
        if let Model::TeacherStudent { width } = self.model {
            let d = self.n_features;
            let (weights, out_weights) = w.split_at(width * d);
            hidden.clear();
            hidden.extend((0..width).map(|k| dot(&weights[k * d..(k + 1) * d], x).tanh()));
            let r = dot(out_weights, hidden) - y;
            if let Some(g) = grad {
                let (g_w, g_a) = g.split_at_mut(width * d);
                for k in 0..width {
                    let t = hidden[k];
                    g_a[k] += scale * r * t;
                    axpy(
                        scale * r * out_weights[k] * (T::ONE - t * t),
                        x,
                        &mut g_w[k * d..(k + 1) * d],
                    );
                }
            }
            return T::from_f64(0.5) * r * r;
        }
        let (loss, slope) = self.linear_loss(dot(x, w), y);
        if let Some(g) = grad {
            axpy(scale * slope, x, g);
        }
        loss
    }

    /// `(1/n) Σ_j ℓ_j(w) + (λ/2)|w|²`, each `ℓ_j` in the run's type, summed in `f64`
    /// ([`Real::Sum`]).
    #[inline(always)]
    pub(super) fn loss(&self, w: &[T]) -> f64 {
        let mut hidden = Vec::new();
        let mut data = T::Sum::default();
        for j in 0..self.n {
            data.add(self.sample(w, j, T::ZERO, None, &mut hidden).to_f64());
        }
        let data = data.total();
        data / self.n as f64 + self.penalty(w)
    }

    /// `(λ/2)|w|²`: zero without a penalty (not `0 · ∞`), and scaled where `|w|²` overflows.
    fn penalty(&self, w: &[T]) -> f64 {
        if self.l2 == 0.0 {
            return 0.0;
        }
        let squares = sum_squares(w);
        if squares.is_finite() {
            0.5 * self.l2 * squares
        } else {
            let length = norm(w);
            0.5 * self.l2 * length * length
        }
    }

    /// The mean gradient over the rows `row_at(0..count)` plus `λ w`, written to `out`; with
    /// `losses`, each row's loss is added to it in row order (as [`FiniteSum::loss`] adds them).
    #[inline(always)]
    fn mean_grad(
        &self,
        w: &[T],
        row_at: impl Fn(usize) -> usize,
        count: usize,
        hidden: &mut Vec<T>,
        out: &mut [T],
        mut losses: Option<&mut T::Sum>,
    ) {
        out.fill(T::ZERO);
        let scale = T::from_f64(1.0 / count as f64);
        let mut add_loss = |loss: T| {
            if let Some(sum) = losses.as_deref_mut() {
                sum.add(loss.to_f64());
            }
        };
        let mut k = 0;
        if !matches!(self.model, Model::TeacherStudent { .. }) {
            // Four rows at a time (their dot products' lanes fill 4-8 registers), but two for
            // `f32` below AVX-512: four rows of 32 lanes would take all sixteen AVX2 registers;
            // then the rest one by one.
            k = if T::SUM_LANES > 1 && simd::level() < Level::Avx512 {
                self.linear_rows::<2>(w, &row_at, 0, count, scale, out, &mut add_loss)
            } else {
                self.linear_rows::<4>(w, &row_at, 0, count, scale, out, &mut add_loss)
            };
            k = self.linear_rows::<1>(w, &row_at, k, count, scale, out, &mut add_loss);
        }
        for k in k..count {
            if k + 1 < count {
                prefetch(self.row(row_at(k + 1)));
            }
            add_loss(self.sample(w, row_at(k), scale, Some(out), hidden));
        }
        if self.l2 != 0.0 {
            axpy(T::from_f64(self.l2), w, out);
        }
    }

    /// The rows `row_at(from..)` of a linear model `R` at a time, while `R` are left, bitwise as
    /// one by one: `R` independent dot products read `w` once and one pass adds the `R` scaled
    /// rows to `out`. Returns where it stopped.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // the pieces of `mean_grad`'s one loop
    fn linear_rows<const R: usize>(
        &self,
        w: &[T],
        row_at: &impl Fn(usize) -> usize,
        from: usize,
        count: usize,
        scale: T,
        out: &mut [T],
        add_loss: &mut impl FnMut(T),
    ) -> usize {
        let mut k = from;
        while k + R <= count {
            // plain loops: `array::from_fn` was not inlined here (8 % of a step)
            let mut rows: [&[T]; R] = [&[]; R];
            for (r, row) in rows.iter_mut().enumerate() {
                *row = self.row(row_at(k + r));
            }
            // A minibatch row is a random read from a design that rarely fits in cache: ask for
            // the next rows while these are computed (one to eight rows ahead measured the same).
            for r in k + R..count.min(k + 2 * R) {
                prefetch(self.row(row_at(r)));
            }
            let z = T::dots(rows, w);
            let mut slopes = [T::ZERO; R];
            for (r, slope) in slopes.iter_mut().enumerate() {
                let (loss, derivative) = self.linear_loss(z[r], self.targets[row_at(k + r)]);
                add_loss(loss);
                *slope = scale * derivative;
            }
            axpys(slopes, rows, out);
            k += R;
        }
        k
    }

    #[inline(always)]
    pub(super) fn grad(&self, w: &[T], out: &mut [T]) {
        self.mean_grad(w, |j| j, self.n, &mut Vec::new(), out, None);
    }

    /// [`FiniteSum::loss`] returned and [`FiniteSum::grad`] written to `out`, bitwise those two,
    /// in one pass over the data (a run's last check needs both).
    #[inline(always)]
    pub(super) fn loss_and_grad(&self, w: &[T], out: &mut [T]) -> f64 {
        let mut data = T::Sum::default();
        self.mean_grad(w, |j| j, self.n, &mut Vec::new(), out, Some(&mut data));
        data.total() / self.n as f64 + self.penalty(w)
    }

    #[inline(always)]
    pub(super) fn batch_grad(&self, w: &[T], batch: &[u32], hidden: &mut Vec<T>, out: &mut [T]) {
        self.mean_grad(w, |k| batch[k] as usize, batch.len(), hidden, out, None);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check_gradient, check_unbiased};
    use super::super::{Oracle, Problem};
    use super::*;

    fn data(n: usize, d: usize) -> (Vec<f64>, Vec<f64>) {
        let features: Vec<f64> = (0..n * d)
            .map(|k| ((k * 7919 % 101) as f64 / 50.0) - 1.0)
            .collect();
        let targets: Vec<f64> = (0..n)
            .map(|j| if j % 3 == 0 { 1.0 } else { -1.0 })
            .collect();
        (features, targets)
    }

    fn problem(model: Model, d_params: usize, l2: f64) -> Problem {
        let (features, targets) = data(12, 3);
        let x0 = (0..d_params).map(|i| 0.3 - 0.1 * i as f64).collect();
        Problem::FiniteSum(FiniteSum {
            features,
            targets,
            n: 12,
            n_features: 3,
            l2,
            sampling: Sampling::WithReplacement,
            model,
            x0,
        })
    }

    macro_rules! gradient_cases {
        ($($name:ident: $model:expr, $dim:expr;)*) => {$(
            #[test]
            fn $name() {
                let p = problem($model, $dim, 0.1);
                let x: Vec<f64> = p.x0().to_vec();
                check_gradient(&p, &x, 1e-6);
                // Means of 20000 minibatch gradients of 4 rows: sd about 1e-2 / sqrt(5000).
                check_unbiased(&p, &x, 4, 20_000, 0.03);
            }
        )*};
    }

    #[test]
    fn loss_and_grad_are_bitwise_the_loss_and_the_gradient() {
        for (model, dim) in [
            (Model::LeastSquares, 3),
            (Model::Logistic, 3),
            (
                Model::Robust {
                    loss: RobustLoss::Cauchy,
                    scale: 0.7,
                },
                3,
            ),
            (Model::TeacherStudent { width: 2 }, 8),
        ] {
            for l2 in [0.0, 0.1] {
                let Problem::FiniteSum(p) = problem(model, dim, l2) else {
                    unreachable!()
                };
                let w: Vec<f64> = (0..dim).map(|i| 0.2 * i as f64 - 0.5).collect();
                let (mut g, mut both) = (vec![0.0; dim], vec![0.0; dim]);
                p.grad(&w, &mut g);
                let loss = p.loss_and_grad(&w, &mut both);
                assert_eq!(loss.to_bits(), p.loss(&w).to_bits(), "{model:?}");
                assert_eq!(g, both, "{model:?}");
            }
        }
    }

    #[test]
    fn a_batch_gradient_takes_rows_in_blocks_bitwise_as_one_by_one() {
        // 12 rows of 3 features: blocks of 4 (or 2) rows, then a remainder of 3 one by one
        let Problem::FiniteSum(p) = problem(Model::LeastSquares, 3, 0.0) else {
            unreachable!()
        };
        let w = [0.3, -0.2, 0.9];
        let batch: Vec<u32> = vec![5, 0, 11, 5, 3, 7, 2, 9, 1, 4, 8];
        let mut blocked = vec![0.0; 3];
        p.batch_grad(&w, &batch, &mut Vec::new(), &mut blocked);
        let mut one_by_one = vec![0.0; 3];
        let scale = 1.0 / batch.len() as f64;
        for &j in &batch {
            p.sample(
                &w,
                j as usize,
                scale,
                Some(&mut one_by_one),
                &mut Vec::new(),
            );
        }
        assert_eq!(blocked, one_by_one);
    }

    gradient_cases! {
        least_squares_gradient: Model::LeastSquares, 3;
        logistic_gradient: Model::Logistic, 3;
        geman_mcclure_gradient: Model::Robust { loss: RobustLoss::GemanMcClure, scale: 0.7 }, 3;
        cauchy_gradient: Model::Robust { loss: RobustLoss::Cauchy, scale: 0.7 }, 3;
        teacher_student_gradient: Model::TeacherStudent { width: 2 }, 8;
    }

    #[test]
    fn full_batch_shuffle_is_gradient_descent() {
        let mut p = problem(Model::LeastSquares, 3, 0.0);
        if let Problem::FiniteSum(fs) = &mut p {
            fs.sampling = Sampling::Shuffle;
        }
        let x = p.x0().to_vec();
        let (mut full, mut stoch) = (vec![0.0; 3], vec![0.0; 3]);
        p.grad(&x, &mut full);
        let mut oracle = Oracle::new(1, &p);
        for _ in 0..3 {
            p.stochastic_grad(&x, 12, &mut oracle, &mut stoch);
            for i in 0..3 {
                assert!((full[i] - stoch[i]).abs() < 1e-14);
            }
        }
    }

    /// `(ρ, ρ')` in extended precision terms: the textbook formulas on `r/c` scaled by `c`.
    fn robust_by_hand(loss: RobustLoss, r: f64, c: f64) -> (f64, f64) {
        let u = r / c;
        match loss {
            RobustLoss::GemanMcClure => (
                0.5 * c * c * (u * u / (1.0 + u * u)),
                c * (u / ((1.0 + u * u) * (1.0 + u * u))),
            ),
            RobustLoss::Cauchy => (0.5 * c * c * (u * u).ln_1p(), c * (u / (1.0 + u * u))),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        a == b || (a - b).abs() <= 1e-14 * a.abs().max(b.abs())
    }

    #[test]
    fn robust_losses_agree_with_the_textbook_formulas_where_those_are_exact() {
        for loss in [RobustLoss::GemanMcClure, RobustLoss::Cauchy] {
            for c in [1e-3, 0.7, 1.0, 5.0, 1e3] {
                for r in [-40.0, -1.3, -1e-9, 0.0, 2e-4, 0.5, 0.7, 3.0, 1e5] {
                    let (got, want) = (robust(loss, r, c), robust_by_hand(loss, r, c));
                    assert!(
                        close(got.0, want.0),
                        "{loss:?} c={c} r={r}: {got:?} vs {want:?}"
                    );
                    assert!(
                        close(got.1, want.1),
                        "{loss:?} c={c} r={r}: {got:?} vs {want:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn robust_losses_stay_finite_where_c_squared_or_r_squared_overflow() {
        for loss in [RobustLoss::GemanMcClure, RobustLoss::Cauchy] {
            // Huge scales (c⁴ overflows from 1e78 on, c² from 1.4e154): ρ ≈ r²/2, ρ' ≈ r.
            for c in [1e78, 1e155, 1e300, f64::MAX] {
                let (value, slope) = robust(loss, 3.0, c);
                assert!(close(value, 4.5) && close(slope, 3.0), "{loss:?} c={c}");
                let (value, slope) = robust(loss, -2e100, c);
                assert!(value.is_finite() && slope.is_finite(), "{loss:?} c={c}");
                assert!(
                    slope < 0.0 && close(slope, -2e100) == (c >= 1e155),
                    "{loss:?} c={c}"
                );
            }
            // Huge residuals against a small scale: no r², the textbook values by hand.
            for (r, c) in [(1e200, 1e100), (-1e300, 1e150), (1e100, 1e30)] {
                let (value, slope) = robust(loss, r, c);
                let u = r / c;
                let (want_value, want_slope) = match loss {
                    RobustLoss::GemanMcClure => (0.5 * c * c, c / u / u / u),
                    RobustLoss::Cauchy => (c * c * u.abs().ln(), c / u),
                };
                assert!(
                    close(value, want_value),
                    "{loss:?} r={r} c={c}: {value} vs {want_value}"
                );
                assert!(
                    (slope - want_slope).abs() <= 1e-12 * want_slope.abs(),
                    "{loss:?} r={r} c={c}: {slope} vs {want_slope}"
                );
            }
        }
        // r/c itself overflows: still the right value.
        let (value, slope) = robust(RobustLoss::Cauchy, 1e300, 1e-10);
        let want = 1e-10 * 1e-10 * (1e300f64.ln() - 1e-10f64.ln());
        assert!(close(value, want), "{value} vs {want}");
        assert!((0.0..1e-300).contains(&slope), "{slope}");
        assert!(robust(RobustLoss::GemanMcClure, f64::NAN, 1.0).1.is_nan());
        assert!(robust(RobustLoss::Cauchy, f64::NAN, 1.0).0.is_nan());
    }

    #[test]
    fn robust_regression_at_a_huge_scale_has_the_least_squares_gradient() {
        for loss in [RobustLoss::GemanMcClure, RobustLoss::Cauchy] {
            let robust_problem = problem(Model::Robust { loss, scale: 1e200 }, 3, 0.0);
            let plain = problem(Model::LeastSquares, 3, 0.0);
            let x = robust_problem.x0().to_vec();
            let (mut g, mut want) = (vec![0.0; 3], vec![0.0; 3]);
            robust_problem.grad(&x, &mut g);
            plain.grad(&x, &mut want);
            for i in 0..3 {
                assert!(
                    (g[i] - want[i]).abs() < 1e-15,
                    "{loss:?}: {g:?} vs {want:?}"
                );
            }
            assert!((robust_problem.loss(&x) - plain.loss(&x)).abs() < 1e-15);
        }
    }

    #[test]
    fn the_l2_penalty_is_zero_without_l2_and_scaled_where_the_squares_overflow() {
        let penalty = |l2: f64, w: &[f64]| match problem(Model::LeastSquares, 3, l2) {
            Problem::FiniteSum(fs) => fs.penalty(w),
            _ => unreachable!(),
        };
        // |w|² = 1e400 overflows: no 0 · ∞ without a penalty, (λ/2)|w|² = 5e299 with λ = 1e-100.
        assert_eq!(penalty(0.0, &[1e200, 0.0, 0.0]), 0.0);
        assert!((penalty(1e-100, &[1e200, 0.0, 0.0]) / 5e299 - 1.0).abs() < 1e-14);
        assert_eq!(penalty(0.5, &[1.0, 2.0, 2.0]), 0.25 * 9.0);
    }

    #[test]
    fn softplus_and_sigmoid_are_stable() {
        assert!((softplus(800.0) - 800.0).abs() < 1e-12);
        assert!(softplus(-800.0) >= 0.0 && softplus(-800.0) < 1e-300);
        assert_eq!(sigmoid(-800.0), 0.0);
        assert_eq!(sigmoid(800.0), 1.0);
    }
}
