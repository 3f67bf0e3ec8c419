//! Exact jumps on the noisy quadratic model: the state at the next checkpoint, sampled at once.
//!
//! On the NQM every coordinate moves on its own, and under SGD, heavy ball or Nesterov (the
//! linear step rules) one step is an affine map of the state plus Gaussian noise,
//! `s' = A s + B ξ` with `ξ ~ N(0, c/b)`: the state `m` steps on is Gaussian with mean `Aᵐ s`
//! and covariance `Q_m = (c/b) Σ_{k<m} (AᵏB)(AᵏB)ᵀ`. Sampling it costs one or two normals per
//! coordinate per checkpoint instead of one per step, and it is exact in distribution at the
//! checkpoints, the only times a target is judged.
//!
//! Design notes. The state is `(x, v)`, `v` the momentum buffer after the step (SGD uses `x`
//! alone). `Aᵐ` and `Q_m` come from repeated squaring with the composition
//! `(A₂A₁, A₂Q₁A₂ᵀ + Q₂)` of two segments, so a jump costs `O(log m)` 2×2 products per
//! coordinate and a schedule that changes `η` or `b` inside an interval composes segment by
//! segment without sampling in between. Doubling keeps the geometric sums accurate to a few
//! ulps per doubling, also where `|a|` is close to 1. torch starts the momentum buffer at `g₁`
//! without dampening, so with dampening the first step is its own transition. The noise is
//! drawn through the lower Cholesky factor of `Q_m`, whose second pivot is guarded at 0 for a
//! rank-one `Q` (one step, or no noise).

use crate::optimizers::Optimizer;

/// A 2×2 matrix, row-major.
type Mat2 = [[f64; 2]; 2];

const IDENTITY: Mat2 = [[1.0, 0.0], [0.0, 1.0]];
const ZERO: Mat2 = [[0.0; 2]; 2];

fn mul(a: &Mat2, b: &Mat2) -> Mat2 {
    let mut out = ZERO;
    for (i, row) in out.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            *cell = a[i][0] * b[0][j] + a[i][1] * b[1][j];
        }
    }
    out
}

fn transpose(a: &Mat2) -> Mat2 {
    [[a[0][0], a[1][0]], [a[0][1], a[1][1]]]
}

fn add(a: &Mat2, b: &Mat2) -> Mat2 {
    [
        [a[0][0] + b[0][0], a[0][1] + b[0][1]],
        [a[1][0] + b[1][0], a[1][1] + b[1][1]],
    ]
}

/// A linear step rule: the step rules whose NQM dynamics are affine in the state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinearRule {
    /// `x ← x − η g`.
    Sgd,
    /// `v ← μ v + (1 − τ) g` (`v₁ = g₁`), `x ← x − η v`.
    HeavyBall {
        /// `μ`.
        momentum: f64,
        /// `τ`.
        dampening: f64,
    },
    /// `v ← μ v + g`, `x ← x − η (g + μ v)`.
    Nesterov {
        /// `μ`.
        momentum: f64,
    },
}

impl LinearRule {
    /// The linear rule of an optimizer, or None for the nonlinear ones (Adam, `RMSProp`).
    #[must_use]
    pub fn of(optimizer: &Optimizer) -> Option<Self> {
        let (momentum, dampening, nesterov) = optimizer.momentum_form()?;
        Some(if momentum == 0.0 {
            Self::Sgd
        } else if nesterov {
            Self::Nesterov { momentum }
        } else {
            Self::HeavyBall {
                momentum,
                dampening,
            }
        })
    }

    /// One step on a coordinate of curvature `h` at learning rate `lr`: `(A, B)` with
    /// `s' = A s + B ξ`. `first` selects torch's first heavy-ball step (`v₁ = g₁`).
    #[must_use]
    pub fn step(&self, h: f64, lr: f64, first: bool) -> (Mat2, [f64; 2]) {
        match *self {
            Self::Sgd => ([[1.0 - lr * h, 0.0], [0.0, 0.0]], [-lr, 0.0]),
            Self::HeavyBall {
                momentum,
                dampening,
            } => {
                let (mu, w) = if first {
                    (0.0, 1.0)
                } else {
                    (momentum, 1.0 - dampening)
                };
                ([[1.0 - lr * w * h, -lr * mu], [w * h, mu]], [-lr * w, w])
            }
            Self::Nesterov { momentum: mu } => (
                [[1.0 - lr * (1.0 + mu) * h, -lr * mu * mu], [h, mu]],
                [-lr * (1.0 + mu), 1.0],
            ),
        }
    }

    /// Whether the state has a momentum buffer (two normals per coordinate per jump).
    #[must_use]
    pub fn has_buffer(&self) -> bool {
        !matches!(self, Self::Sgd)
    }
}

/// The transition of one coordinate over some steps: `s ← A s + L z`, `z ~ N(0, I)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    /// `Aᵐ` (the product of the steps' maps).
    pub a: Mat2,
    /// The noise covariance `Q` accumulated over the steps.
    pub q: Mat2,
}

impl Transition {
    /// No step at all.
    pub const NONE: Self = Self {
        a: IDENTITY,
        q: ZERO,
    };

    /// One step with noise variance `noise_var` (`c / b`).
    #[must_use]
    pub fn one(a: Mat2, b: [f64; 2], noise_var: f64) -> Self {
        let q = [
            [noise_var * b[0] * b[0], noise_var * b[0] * b[1]],
            [noise_var * b[1] * b[0], noise_var * b[1] * b[1]],
        ];
        Self { a, q }
    }

    /// `self` followed by `next`: `(A₂A₁, A₂Q₁A₂ᵀ + Q₂)`.
    #[must_use]
    pub fn then(&self, next: &Self) -> Self {
        Self {
            a: mul(&next.a, &self.a),
            q: add(&mul(&mul(&next.a, &self.q), &transpose(&next.a)), &next.q),
        }
    }

    /// `self` repeated `m` times, by repeated squaring.
    #[must_use]
    pub fn power(&self, mut m: u64) -> Self {
        let (mut out, mut base) = (Self::NONE, *self);
        while m > 0 {
            if m & 1 == 1 {
                out = out.then(&base);
            }
            m >>= 1;
            if m > 0 {
                base = base.then(&base);
            }
        }
        out
    }

    /// The lower Cholesky factor of `Q` (second pivot guarded at 0 for a rank-one `Q`).
    #[must_use]
    pub fn noise_factor(&self) -> Mat2 {
        let l00 = self.q[0][0].max(0.0).sqrt();
        let l10 = if l00 > 0.0 { self.q[1][0] / l00 } else { 0.0 };
        let l11 = (self.q[1][1] - l10 * l10).max(0.0).sqrt();
        [[l00, 0.0], [l10, l11]]
    }
}

/// Steps at a constant batch size and learning rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// `b`.
    pub batch_size: usize,
    /// `η`.
    pub learning_rate: f64,
    /// How many steps.
    pub steps: u64,
}

/// A jump prepared for every coordinate: `A` and the noise factor `L`.
#[derive(Debug, Clone, Default)]
pub struct Jump {
    a: Vec<Mat2>,
    l: Vec<Mat2>,
}

impl Jump {
    /// The jump of every coordinate of curvatures `h` and noise variances `c` over the
    /// segments, in order; `first` marks a jump that starts at step 0 (torch's first
    /// heavy-ball step).
    #[must_use]
    pub fn new(rule: LinearRule, h: &[f64], c: &[f64], segments: &[Segment], first: bool) -> Self {
        let mut a = Vec::with_capacity(h.len());
        let mut l = Vec::with_capacity(h.len());
        for (hi, ci) in h.iter().zip(c) {
            let mut total = Transition::NONE;
            let mut at_start = first;
            for seg in segments {
                let (lr, mut left) = (seg.learning_rate, seg.steps);
                let var = ci / seg.batch_size as f64;
                if at_start && left > 0 {
                    let (am, bm) = rule.step(*hi, lr, true);
                    total = total.then(&Transition::one(am, bm, var));
                    left -= 1;
                    at_start = false;
                }
                let (am, bm) = rule.step(*hi, lr, false);
                total = total.then(&Transition::one(am, bm, var).power(left));
            }
            a.push(total.a);
            l.push(total.noise_factor());
        }
        Self { a, l }
    }

    /// Apply the jump to the state `(x, v)` with standard normals from `normal`
    /// (one per coordinate without a buffer, two with one).
    pub fn apply(
        &self,
        x: &mut [f64],
        v: &mut [f64],
        with_buffer: bool,
        mut normal: impl FnMut() -> f64,
    ) {
        for i in 0..x.len() {
            let (a, l) = (&self.a[i], &self.l[i]);
            let z0 = normal();
            if with_buffer {
                let z1 = normal();
                let (xi, vi) = (x[i], v[i]);
                x[i] = a[0][0] * xi + a[0][1] * vi + l[0][0] * z0;
                v[i] = a[1][0] * xi + a[1][1] * vi + l[1][0] * z0 + l[1][1] * z1;
            } else {
                x[i] = a[0][0] * x[i] + l[0][0] * z0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(batch_size: usize, learning_rate: f64, steps: u64) -> Segment {
        Segment {
            batch_size,
            learning_rate,
            steps,
        }
    }

    const RULES: [LinearRule; 4] = [
        LinearRule::Sgd,
        LinearRule::HeavyBall {
            momentum: 0.9,
            dampening: 0.0,
        },
        LinearRule::HeavyBall {
            momentum: 0.8,
            dampening: 0.3,
        },
        LinearRule::Nesterov { momentum: 0.7 },
    ];

    /// The step-by-step map of the rule (the core's optimizers), noiseless.
    fn steps_by_hand(rule: LinearRule, h: f64, lr: f64, x0: f64, m: u64) -> (f64, f64) {
        let opt = match rule {
            LinearRule::Sgd => Optimizer::Sgd,
            LinearRule::HeavyBall {
                momentum,
                dampening,
            } => Optimizer::HeavyBall {
                momentum,
                dampening,
            },
            LinearRule::Nesterov { momentum } => Optimizer::Nesterov { momentum },
        };
        let mut state = opt.init(&[1]).unwrap();
        let mut x = [x0];
        for _ in 0..m {
            let g = [h * x[0]];
            opt.step(&mut state, &mut x, &g, lr);
        }
        (x[0], state.first.first().copied().unwrap_or(0.0))
    }

    #[test]
    fn noiseless_jumps_are_the_step_map() {
        for rule in RULES {
            for m in [1, 2, 7, 64] {
                let jump = Jump::new(rule, &[0.7], &[0.0], &[seg(4, 0.3, m)], true);
                let (mut x, mut v) = ([1.5], [0.0]);
                jump.apply(&mut x, &mut v, rule.has_buffer(), || 0.0);
                let (xs, vs) = steps_by_hand(rule, 0.7, 0.3, 1.5, m);
                assert!(
                    (x[0] - xs).abs() <= 1e-12 * xs.abs().max(1.0),
                    "{rule:?} {m}"
                );
                if rule.has_buffer() {
                    assert!(
                        (v[0] - vs).abs() <= 1e-12 * vs.abs().max(1.0),
                        "{rule:?} {m}"
                    );
                }
            }
        }
    }

    #[test]
    fn segments_compose_like_one_long_jump() {
        for rule in RULES {
            let whole = Jump::new(rule, &[0.4], &[2.0], &[seg(8, 0.1, 30)], false);
            let split = Jump::new(
                rule,
                &[0.4],
                &[2.0],
                &[seg(8, 0.1, 13), seg(8, 0.1, 17)],
                false,
            );
            for (p, q) in whole.a[0].iter().flatten().zip(split.a[0].iter().flatten()) {
                assert!((p - q).abs() < 1e-13);
            }
            for (p, q) in whole.l[0].iter().flatten().zip(split.l[0].iter().flatten()) {
                assert!((p - q).abs() < 1e-13);
            }
        }
    }

    #[test]
    fn sgd_covariance_is_the_geometric_sum() {
        // Q_m = η² (c/b) (1 − a^{2m}) / (1 − a²), a = 1 − ηh
        let (h, c, b, lr, m) = (0.5, 3.0, 4usize, 0.2, 50u64);
        let t =
            Transition::one([[1.0 - lr * h, 0.0], [0.0, 0.0]], [-lr, 0.0], c / b as f64).power(m);
        let a = 1.0 - lr * h;
        let expected = lr * lr * c / b as f64 * (1.0 - a.powi(2 * m as i32)) / (1.0 - a * a);
        assert!((t.q[0][0] - expected).abs() < 1e-14 * expected);
        assert!((t.a[0][0] - a.powi(m as i32)).abs() < 1e-15);
    }

    #[test]
    fn covariance_is_the_sum_of_the_propagated_noise() {
        // Q_m = s² Σ_{k<m} (A^k B)(A^k B)ᵀ, summed term by term
        for rule in RULES {
            let (a, b) = rule.step(0.9, 0.15, false);
            let s2 = 0.25;
            let m = 23;
            let mut sum = ZERO;
            let mut ak = IDENTITY;
            for _ in 0..m {
                let u = [
                    ak[0][0] * b[0] + ak[0][1] * b[1],
                    ak[1][0] * b[0] + ak[1][1] * b[1],
                ];
                for i in 0..2 {
                    for j in 0..2 {
                        sum[i][j] += s2 * u[i] * u[j];
                    }
                }
                ak = mul(&a, &ak);
            }
            let q = Transition::one(a, b, s2).power(m).q;
            for (p, r) in q.iter().flatten().zip(sum.iter().flatten()) {
                assert!((p - r).abs() < 1e-13, "{rule:?}");
            }
        }
    }

    #[test]
    fn noise_factor_reproduces_the_covariance() {
        let t = Transition::one([[0.9, -0.1], [0.3, 0.8]], [-0.2, 1.0], 0.5).power(9);
        let l = t.noise_factor();
        let back = mul(&l, &transpose(&l));
        for (p, q) in back.iter().flatten().zip(t.q.iter().flatten()) {
            assert!((p - q).abs() < 1e-14);
        }
        // one step: rank one, the second pivot is 0 and no NaN appears
        let one = Transition::one([[0.9, -0.1], [0.3, 0.8]], [-0.2, 1.0], 0.5).noise_factor();
        assert!(one.iter().flatten().all(|v| v.is_finite()));
        assert!(one[1][1].abs() < 1e-7); // sqrt of a rounding residue
    }

    #[test]
    fn adam_has_no_linear_rule() {
        let adam = Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            amsgrad: false,
        };
        assert_eq!(LinearRule::of(&adam), None);
        assert_eq!(LinearRule::of(&Optimizer::Sgd), Some(LinearRule::Sgd));
    }

    #[test]
    fn apply_uses_each_factor_entry_where_it_belongs() {
        // Identity dynamics, L = [[2, 0], [3, 5]], normals 1 then 10: x = 2, v = 3 + 50.
        let jump = Jump {
            a: vec![[[1.0, 0.0], [0.0, 1.0]]],
            l: vec![[[2.0, 0.0], [3.0, 5.0]]],
        };
        let mut z = [1.0, 10.0].into_iter();
        let (mut x, mut v) = ([0.0], [0.0]);
        jump.apply(&mut x, &mut v, true, || z.next().unwrap_or(f64::NAN));
        assert_eq!((x[0], v[0]), (2.0, 53.0));
    }

    #[test]
    fn zero_momentum_rules_are_sgd_and_dampening_scales_the_noise() {
        assert_eq!(
            LinearRule::of(&Optimizer::Nesterov { momentum: 0.0 }),
            Some(LinearRule::Sgd)
        );
        let rule = LinearRule::HeavyBall {
            momentum: 0.8,
            dampening: 0.3,
        };
        let w = 1.0 - 0.3;
        let (a, b) = rule.step(0.5, 0.1, false);
        assert_eq!(a, [[1.0 - 0.1 * w * 0.5, -0.1 * 0.8], [w * 0.5, 0.8]]);
        assert_eq!(b, [-0.1 * w, w]);
    }
}
