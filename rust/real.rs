//! The float type a run computes in: `f64` (the default) or `f32` (`dtype = "float32"`).
//!
//! The step loop ([`crate::run`]), the step rules ([`crate::optimizers`]) and the problems
//! ([`crate::problems`]) are written once, generic over [`Real`]; a plan is built for one of the
//! two types (`critbatch.plan`, `dtype`). What a run records (losses, norms, the first
//! coordinate) is always `f64`.
//!
//! # Design notes
//!
//! * **State, data and noise in the run's type; sums that decide a verdict in `f64`.** An
//!   `f32` run keeps its iterate, optimizer buffers, design matrix and gradient noise in `f32`
//!   and computes each step in `f32`, as torch and JAX do in single precision. Its losses and
//!   norms add `f64` terms (each `f32` value widened exactly) in [`Real::SUM_LANES`] fixed lanes,
//!   so the verdicts of a target are not blurred by a rounding error that grows with the
//!   dimension. An `f64` run sums in order, as it always has: its numbers are bitwise those of
//!   the core before `f32` existed (the golden records in `run::tests` pin them).
//! * **Hyperparameters stay `f64`.** Learning rates, momenta and scales are `f64` in the specs;
//!   a step converts each once (`from_f64`, the identity for `f64`), and combinations such as
//!   `1 − β` or `lr / (1 − β₁ᵗ)` are formed in `f64` before the conversion.
//! * **Every SIMD level gives the same bits in both types.** The fixed lanes of a sum are part
//!   of its definition and Rust never contracts `a * b + c`, so AVX2 and AVX-512 only change
//!   the speed (`run::tests` runs every level the CPU has, in `f32` and in `f64`).

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use crate::rng::Normal;

/// A float type the core computes in: `f64` or `f32` (each with its normal sampler, [`Normal`]).
pub trait Real:
    Normal
    + Copy
    + Debug
    + Default
    + PartialEq
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
{
    /// The name `dtype` gives the type (`"float64"`, `"float32"`).
    const DTYPE: &'static str;
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// Lanes of the `f64` sums of losses and squares ([`Real::Sum`]); 1 is a plain sum in order.
    const SUM_LANES: usize;

    /// `v` rounded to this type (the identity for `f64`).
    fn from_f64(v: f64) -> Self;
    /// `self` widened to `f64` (exact).
    fn to_f64(self) -> f64;
    /// `v` in this type (exact).
    fn from_f32(v: f32) -> Self;
    /// Square root.
    #[must_use]
    fn sqrt(self) -> Self;
    /// Absolute value.
    #[must_use]
    fn abs(self) -> Self;
    /// `±1` with the sign of `self` (as `f64::signum`).
    #[must_use]
    fn signum(self) -> Self;
    /// The larger of the two (the other if one is NaN, as `f64::max`).
    #[must_use]
    fn max(self, other: Self) -> Self;
    /// `e^self`.
    #[must_use]
    fn exp(self) -> Self;
    /// `e^self − 1`, accurate near 0.
    #[must_use]
    fn exp_m1(self) -> Self;
    /// Natural logarithm.
    #[must_use]
    fn ln(self) -> Self;
    /// `ln(1 + self)`, accurate near 0.
    #[must_use]
    fn ln_1p(self) -> Self;
    /// Hyperbolic tangent.
    #[must_use]
    fn tanh(self) -> Self;
    /// `self^n`.
    #[must_use]
    fn powi(self, n: i32) -> Self;
    /// Neither infinite nor NaN.
    fn is_finite(self) -> bool;
    /// NaN.
    fn is_nan(self) -> bool;

    /// The running `f64` sum of losses and squares in this type's fixed order: [`InOrder`] for
    /// `f64`, [`Lanes`] for `f32`.
    type Sum: Accumulator;

    /// `Σ term(a_i, b_i)` over the common length in the order of [`Real::Sum`], on slices (a
    /// form the compiler vectorizes; the same bits as adding the terms one by one).
    #[inline(always)]
    fn sum_zip(a: &[Self], b: &[Self], term: impl Fn(Self, Self) -> f64) -> f64 {
        a.iter().zip(b).map(|(&x, &y)| term(x, y)).sum()
    }

    /// `Σ r_i b_i` for each of the `R` rows `r` (each as long as `b`) in this type with 8
    /// accumulators ([`crate::linalg::lane_dots`]): for `f64` the two interleaved 4-wide
    /// partial sums the core has always used.
    #[inline(always)]
    fn dots<const R: usize>(rows: [&[Self]; R], b: &[Self]) -> [Self; R] {
        crate::linalg::lane_dots::<Self, 8, R>(rows, b)
    }
}

/// A running `f64` sum whose order of additions is part of its definition.
pub trait Accumulator: Default {
    /// Add the next term.
    fn add(&mut self, term: f64);
    /// The sum of the terms added so far.
    fn total(self) -> f64;
}

/// The terms added in order from `-0.0`, exactly as `Iterator::sum` (the `f64` core's order).
#[derive(Debug, Clone, Copy)]
pub struct InOrder(f64);

impl Default for InOrder {
    fn default() -> Self {
        Self(-0.0)
    }
}

impl Accumulator for InOrder {
    #[inline(always)]
    fn add(&mut self, term: f64) {
        self.0 += term;
    }
    #[inline(always)]
    fn total(self) -> f64 {
        self.0
    }
}

/// Term `i` added to lane `i mod L` (each lane in order from `0.0`), the lanes then added
/// pairwise ([`pairwise`]): independent chains that SIMD registers hold side by side.
#[derive(Debug, Clone, Copy)]
pub struct Lanes<const L: usize> {
    acc: [f64; L],
    next: usize,
}

impl<const L: usize> Default for Lanes<L> {
    fn default() -> Self {
        Self {
            acc: [0.0; L],
            next: 0,
        }
    }
}

impl<const L: usize> Accumulator for Lanes<L> {
    #[inline(always)]
    fn add(&mut self, term: f64) {
        self.acc[self.next] += term;
        self.next = (self.next + 1) % L;
    }
    #[inline(always)]
    fn total(mut self) -> f64 {
        pairwise(&mut self.acc)
    }
}

/// [`Lanes`]`<L>` of `term(a_i, b_i)` over the common length of two slices, a whole block of
/// `L` terms at a time.
#[inline(always)]
pub fn lane_sum_zip<const L: usize, T: Copy>(a: &[T], b: &[T], term: impl Fn(T, T) -> f64) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; L];
    let ((blocks_a, tail_a), (blocks_b, tail_b)) = (a.as_chunks::<L>(), b.as_chunks::<L>());
    for (ca, cb) in blocks_a.iter().zip(blocks_b) {
        // the block's terms first, then one add per lane: the same sums, in full-width registers
        let terms: [f64; L] = std::array::from_fn(|k| term(ca[k], cb[k]));
        for k in 0..L {
            acc[k] += terms[k];
        }
    }
    // The lanes reach the tail and the pairwise sum through memory (`black_box` changes no value;
    // it costs a store and a few loads per sum): seeing the adds that follow, the compiler split
    // the loop above into 2- and 4-wide pieces instead of one full-width register per block. At
    // d = 100 in float32 with the loss checked every step that was 4-5 % of a run (interleaved
    // builds, median of 41 rounds). Tried and dropped: the tail's terms made in registers and
    // added to the stored lanes in one full-width add (avoiding loads that span several scalar
    // stores): 1-1.5 % of a float32 run at d = 100, within the noise; slower at d = 37 in a
    // micro-benchmark of the check alone.
    let mut acc = std::hint::black_box(acc);
    for (k, (&x, &y)) in tail_a.iter().zip(tail_b).enumerate() {
        acc[k] += term(x, y);
    }
    pairwise(&mut acc)
}

/// The lanes of a fixed-order sum added pairwise, halving: `a[k] += a[k + len/2]` until one is
/// left (`len` a power of two; for 4 lanes `(a₀ + a₂) + (a₁ + a₃)`).
#[inline(always)]
pub fn pairwise<T: Copy + Add<Output = T>>(acc: &mut [T]) -> T {
    let mut len = acc.len();
    while len > 1 {
        len /= 2;
        for k in 0..len {
            acc[k] = acc[k] + acc[k + len];
        }
    }
    acc[0]
}

macro_rules! real_methods {
    ($t:ty) => {
        #[inline(always)]
        fn sqrt(self) -> Self {
            <$t>::sqrt(self)
        }
        #[inline(always)]
        fn abs(self) -> Self {
            <$t>::abs(self)
        }
        #[inline(always)]
        fn signum(self) -> Self {
            <$t>::signum(self)
        }
        #[inline(always)]
        fn max(self, other: Self) -> Self {
            <$t>::max(self, other)
        }
        #[inline(always)]
        fn exp(self) -> Self {
            <$t>::exp(self)
        }
        #[inline(always)]
        fn exp_m1(self) -> Self {
            <$t>::exp_m1(self)
        }
        #[inline(always)]
        fn ln(self) -> Self {
            <$t>::ln(self)
        }
        #[inline(always)]
        fn ln_1p(self) -> Self {
            <$t>::ln_1p(self)
        }
        #[inline(always)]
        fn tanh(self) -> Self {
            <$t>::tanh(self)
        }
        #[inline(always)]
        fn powi(self, n: i32) -> Self {
            <$t>::powi(self, n)
        }
        #[inline(always)]
        fn is_finite(self) -> bool {
            <$t>::is_finite(self)
        }
        #[inline(always)]
        fn is_nan(self) -> bool {
            <$t>::is_nan(self)
        }
    };
}

impl Real for f64 {
    const DTYPE: &'static str = "float64";
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const SUM_LANES: usize = 1;
    type Sum = InOrder;

    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        f64::from(v)
    }
    real_methods!(f64);
}

impl Real for f32 {
    const DTYPE: &'static str = "float32";
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    // eight f64 lanes: one AVX-512 register of widened f32 values
    const SUM_LANES: usize = 8;
    type Sum = Lanes<8>;

    #[inline(always)]
    fn sum_zip(a: &[Self], b: &[Self], term: impl Fn(Self, Self) -> f64) -> f64 {
        lane_sum_zip::<8, Self>(a, b, term)
    }

    // 32 accumulators: two 16-wide AVX-512 registers (four AVX2 ones), enough chains to hide
    // the latency of the adds
    #[inline(always)]
    fn dots<const R: usize>(rows: [&[Self]; R], b: &[Self]) -> [Self; R] {
        crate::linalg::lane_dots::<Self, 32, R>(rows, b)
    }

    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
    real_methods!(f32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_adds_lanes_in_the_documented_order() {
        // (a0 + a2) + (a1 + a3) = 0 + 2; in order 1e16 + 1 would round the first 1 away
        assert_eq!(pairwise(&mut [1e16, 1.0, -1e16, 1.0]), 2.0);
        assert_eq!(pairwise(&mut [5.0]), 5.0);
        let mut eight: Vec<f64> = (0..8).map(|k| f64::from(1 << k)).collect();
        assert_eq!(pairwise(&mut eight), 255.0);
    }

    fn total<A: Accumulator>(terms: &[f64]) -> f64 {
        let mut acc = A::default();
        for &t in terms {
            acc.add(t);
        }
        acc.total()
    }

    #[test]
    fn sums_in_f64_order_and_in_f32_lanes() {
        // in order: 1e16 + 1 + 1 loses both ones
        assert_eq!(total::<InOrder>(&[1e16, 1.0, 1.0, -1e16]), 0.0);
        assert!(
            total::<InOrder>(&[]).is_sign_negative(),
            "from -0.0, as Iterator::sum"
        );
        // 19 terms in 8 lanes: lane k holds terms k, 8 + k and 16 + k (k < 3)
        let t: Vec<f64> = (0..19)
            .map(|i| (i as f64 * 1.7).sin() * 10f64.powi(i % 5 * 4))
            .collect();
        let lane = |k: usize| (k..19).step_by(8).fold(0.0, |s, i| s + t[i]);
        let l: Vec<f64> = (0..8).map(lane).collect();
        let want = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
        assert_eq!(total::<Lanes<8>>(&t).to_bits(), want.to_bits());
        assert_ne!(total::<Lanes<8>>(&t), total::<InOrder>(&t));
        assert_eq!(total::<Lanes<8>>(&[]), 0.0);
        assert_eq!(total::<Lanes<8>>(&[1.0, 1.0, 1.0]), 3.0);
    }

    #[test]
    fn the_slice_form_of_a_sum_is_the_running_form() {
        for n in [0, 1, 7, 8, 9, 31, 100] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let term = |x: f32, y: f32| f64::from(x) * f64::from(y) * f64::from(y);
            let terms: Vec<f64> = a.iter().zip(&b).map(|(&x, &y)| term(x, y)).collect();
            let zipped = <f32 as Real>::sum_zip(&a, &b, term);
            assert_eq!(
                zipped.to_bits(),
                total::<Lanes<8>>(&terms).to_bits(),
                "n = {n}"
            );
            let (a, b): (Vec<f64>, Vec<f64>) = (
                a.iter().map(|&v| v.into()).collect(),
                b.iter().map(|&v| v.into()).collect(),
            );
            let zipped = <f64 as Real>::sum_zip(&a, &b, |x, y| x * y * y);
            let terms: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x * y * y).collect();
            assert_eq!(
                zipped.to_bits(),
                total::<InOrder>(&terms).to_bits(),
                "n = {n}"
            );
        }
    }

    // Whole runs in both types: the f64 core unchanged, f32 the same on every SIMD level and
    // statistically the same as f64.

    use std::sync::atomic::AtomicBool;

    use crate::optimizers::Optimizer;
    use crate::problems::{FiniteSum, Model, Nqm, Problem, Sampling};
    use crate::run::{run_at, RunMode, RunRecord, RunSpec};
    use crate::schedules::Schedule;
    use crate::simd::Level;
    use crate::sweep::{Cell, Plan};
    use crate::targets::Target;

    const ADAM: Optimizer = Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        amsgrad: false,
    };

    fn target(loss_below: Option<f64>, max_steps: u64, check_every: u64) -> Target {
        Target {
            loss_below,
            loss_gap_below: None,
            min_loss: None,
            grad_norm_below: None,
            position_below: None,
            check_every,
            max_steps,
            max_sfo: None,
            max_epochs: None,
            divergence_factor: 1e6,
        }
    }

    /// The NQM `h_i = c_i = 1/i`, `x0 = 1`, least squares (with replacement, `λ = 0.01`) and
    /// logistic regression (shuffled) on a design of exactly representable entries.
    fn problems() -> Vec<Problem> {
        let (n, d) = (50, 13);
        let features: Vec<f64> = (0..n * d)
            .map(|k| (k * 7919 % 101) as f64 / 50.0 - 1.0)
            .collect();
        let labels: Vec<f64> = (0..n)
            .map(|j| if j % 3 == 0 { 1.0 } else { -1.0 })
            .collect();
        let finite = |model, sampling, l2| {
            Problem::FiniteSum(FiniteSum {
                features: features.clone(),
                targets: labels.clone(),
                n,
                n_features: d,
                l2,
                sampling,
                model,
                x0: vec![0.0; d],
            })
        };
        let h: Vec<f64> = (1..=37).map(|i| 1.0 / i as f64).collect();
        vec![
            Problem::Nqm(Nqm::new(h.clone(), h, vec![1.0; 37])),
            finite(Model::LeastSquares, Sampling::WithReplacement, 0.01),
            finite(Model::Logistic, Sampling::Shuffle, 0.0),
        ]
    }

    #[test]
    fn f64_runs_are_bitwise_those_of_the_core_before_f32() {
        // (steps, final loss) of `critbatch.sweep(problems, ["sgd", "adam"], [4], [0.05], 2,
        // target(loss_below=1e-3, max_steps=300, check_every=7), seed=3)` on the core before the
        // Real trait, run by run in the grid's order
        let want: [(u64, u64); 12] = [
            (300, 0x3fc5_56cb_1cd9_532e),
            (300, 0x3fc7_c75e_6917_421a),
            (300, 0x3fae_7f59_0441_e7ef),
            (300, 0x3fac_6062_086d_1877),
            (300, 0x3fd8_e8af_3330_de44),
            (300, 0x3fd9_3753_a342_ba05),
            (300, 0x3fd9_f07f_039f_cebe),
            (300, 0x3fdc_b563_446e_ac42),
            (300, 0x3fe3_f824_c112_e95c),
            (300, 0x3fe3_f515_180a_7b66),
            (300, 0x3fe0_b220_d764_3ac0),
            (300, 0x3fe0_b9d8_b67d_9a98),
        ];
        let plan = Plan {
            problems: problems(),
            optimizers: vec![Optimizer::Sgd, ADAM],
            schedules: vec![Schedule::CONSTANT],
            target: target(Some(1e-3), 300, 7),
            seed: 3,
            trajectory_every: 0,
            trajectory_metrics: crate::run::TrajectoryMetrics::LOSS,
            mode: RunMode::Steps,
            weight_averaging: None,
            common_random_numbers: false,
            min_losses: Vec::new(),
        };
        let cells: Vec<Cell> = (0..12u64)
            .map(|i| Cell {
                run_index: i,
                problem: (i / 4) as usize,
                optimizer: (i / 2 % 2) as usize,
                schedule: 0,
                batch_size: 4,
                learning_rate: 0.05,
                replicate: i % 2,
            })
            .collect();
        let got: Vec<(u64, u64)> = plan
            .execute(&cells, 2)
            .unwrap()
            .iter()
            .map(|r| (r.steps, r.final_loss.to_bits()))
            .collect();
        assert_eq!(got, want);
    }

    fn bits(r: &RunRecord) -> (Vec<u64>, crate::targets::StopReason) {
        let floats = [r.final_loss, r.final_grad_norm, r.final_x0];
        let mut v: Vec<u64> = floats
            .iter()
            .chain(&r.trajectory)
            .map(|x| x.to_bits())
            .collect();
        v.extend([r.steps, r.sfo]);
        (v, r.stop_reason)
    }

    #[test]
    fn every_simd_level_the_cpu_has_gives_bitwise_the_same_f32_records() {
        let never = AtomicBool::new(false);
        let single: Vec<Problem<f32>> = problems().iter().map(Problem::cast).collect();
        let heavy = Optimizer::HeavyBall {
            momentum: 0.9,
            dampening: 0.0,
        };
        for problem in &single {
            for optimizer in [&Optimizer::Sgd, &heavy, &ADAM] {
                let t = target(Some(1e-3), 200, 1);
                let spec = RunSpec {
                    problem,
                    optimizer,
                    schedule: &Schedule::CONSTANT,
                    target: &t,
                    batch_size: 4,
                    learning_rate: 0.05,
                    key: 11,
                    trajectory_every: 1,
                    trajectory_metrics: crate::run::TrajectoryMetrics::LOSS,
                    mode: RunMode::Steps,
                    weight_averaging: None,
                    initial_loss: None,
                };
                let portable = bits(&run_at(Level::Portable, &spec, &never).unwrap());
                for level in Level::ALL.into_iter().filter(|l| l.supported()) {
                    let r = run_at(level, &spec, &never).unwrap();
                    assert_eq!(bits(&r), portable, "{level:?} {optimizer:?}");
                }
            }
        }
    }

    #[test]
    fn a_noiseless_f32_run_is_float32_arithmetic_step_by_step() {
        // c = 0: each SGD step is x <- x - lr (h x + sqrt(c) scale z) with sqrt(c) = 0, in f32.
        let (h, x0) = (vec![0.75f64, 0.1, 1.0 / 3.0], vec![1.0f64, -2.5, 0.3]);
        let problem = Problem::Nqm(Nqm::new(h.clone(), vec![0.0; 3], x0.clone())).cast::<f32>();
        let t = target(None, 40, 40);
        let spec = RunSpec {
            problem: &problem,
            optimizer: &Optimizer::Sgd,
            schedule: &Schedule::CONSTANT,
            target: &t,
            batch_size: 2,
            learning_rate: 0.3,
            key: 5,
            trajectory_every: 0,
            trajectory_metrics: crate::run::TrajectoryMetrics::LOSS,
            mode: RunMode::Steps,
            weight_averaging: None,
            initial_loss: None,
        };
        let r = crate::run::run(&spec).unwrap();
        let (h32, lr) = (h.iter().map(|&v| v as f32).collect::<Vec<_>>(), 0.3f32);
        let mut x: Vec<f32> = x0.iter().map(|&v| v as f32).collect();
        for _ in 0..40 {
            for (xi, hi) in x.iter_mut().zip(&h32) {
                *xi -= lr * (*hi * *xi + 0.0 * *xi);
            }
        }
        assert_eq!(r.final_x0.to_bits(), f64::from(x[0]).to_bits());
        let loss: f64 = x
            .iter()
            .zip(&h32)
            .map(|(&xi, &hi)| f64::from(hi) * f64::from(xi) * f64::from(xi))
            .sum::<f64>()
            * 0.5;
        // three terms in three of the eight lanes: the pairwise sum adds them in another order
        assert!(
            (r.final_loss - loss).abs() <= 1e-15 * loss,
            "{} {loss}",
            r.final_loss
        );
        // and it differs from the same run in f64
        let double = Problem::Nqm(Nqm::new(h, vec![0.0; 3], x0));
        let r64 = crate::run::run(&RunSpec {
            problem: &double,
            optimizer: &Optimizer::Sgd,
            schedule: &Schedule::CONSTANT,
            target: &t,
            batch_size: 2,
            learning_rate: 0.3,
            key: 5,
            trajectory_every: 0,
            trajectory_metrics: crate::run::TrajectoryMetrics::LOSS,
            mode: RunMode::Steps,
            weight_averaging: None,
            initial_loss: None,
        })
        .unwrap();
        assert_ne!(r64.final_x0, r.final_x0);
        assert!((r64.final_x0 - r.final_x0).abs() < 1e-6);
    }

    #[test]
    fn f32_and_f64_nqm_runs_match_the_exact_expected_loss() {
        // SGD on h_i = c_i = 1/i, x0 = 1: E x_K^2 = a^2K + lr^2 (c/b) (1 - a^2K)/(1 - a^2),
        // a = 1 - lr h (Zhang et al. 2019, Sec. 3; critbatch.theory.zhang2019).
        let (d, b, lr, steps, runs) = (16usize, 4usize, 0.5, 60u64, 4000u64);
        let h: Vec<f64> = (1..=d).map(|i| 1.0 / i as f64).collect();
        let exact: f64 = h
            .iter()
            .map(|&hi| {
                let a2 = (1.0 - lr * hi).powi(2);
                let m2 = a2.powi(steps as i32)
                    + lr * lr * hi / b as f64 * (1.0 - a2.powi(steps as i32)) / (1.0 - a2);
                0.5 * hi * m2
            })
            .sum();
        let plan = Plan {
            problems: vec![Problem::Nqm(Nqm::new(h.clone(), h, vec![1.0; d]))],
            optimizers: vec![Optimizer::Sgd],
            schedules: vec![Schedule::CONSTANT],
            target: target(None, steps, steps),
            seed: 8,
            trajectory_every: 0,
            trajectory_metrics: crate::run::TrajectoryMetrics::LOSS,
            mode: RunMode::Steps,
            weight_averaging: None,
            common_random_numbers: false,
            min_losses: Vec::new(),
        };
        let cells: Vec<Cell> = (0..runs)
            .map(|i| Cell {
                run_index: i,
                problem: 0,
                optimizer: 0,
                schedule: 0,
                batch_size: b,
                learning_rate: lr,
                replicate: 0,
            })
            .collect();
        let moments = |losses: Vec<f64>| {
            let n = losses.len() as f64;
            let mean = losses.iter().sum::<f64>() / n;
            let var = losses.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1.0);
            (mean, var / n)
        };
        let finals = |records: Vec<RunRecord>| records.into_iter().map(|r| r.final_loss).collect();
        let (m64, se64) = moments(finals(plan.execute(&cells, 2).unwrap()));
        let (m32, se32) = moments(finals(plan.cast::<f32>().execute(&cells, 2).unwrap()));
        // each mean within 5 standard errors of the exact expectation, and of each other (the
        // two types draw independent noise)
        for (m, se) in [(m64, se64), (m32, se32)] {
            assert!(
                (m - exact).abs() < 5.0 * se.sqrt(),
                "{m} vs {exact} (se {})",
                se.sqrt()
            );
        }
        assert!(
            (m64 - m32).abs() < 5.0 * (se64 + se32).sqrt(),
            "{m64} vs {m32}"
        );
    }

    #[test]
    fn conversions_round_and_widen() {
        assert_eq!(<f32 as Real>::from_f64(0.1), 0.1f32);
        assert_eq!(0.1f32.to_f64(), f64::from(0.1f32));
        assert_eq!(<f64 as Real>::from_f64(0.1), 0.1);
        assert_eq!(<f64 as Real>::from_f32(0.1), f64::from(0.1f32));
        assert_eq!(f32::DTYPE, "float32");
        assert_eq!(f64::DTYPE, "float64");
    }
}
