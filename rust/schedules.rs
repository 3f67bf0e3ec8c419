//! Learning-rate and batch-size schedules: multiplicative factors of time (steps or epochs).
//!
//! Mirrors `python/critbatch/schedules.py`: with stage `m = ⌊t / every⌋`, the factor is 1
//! (constant), `γ^m` (step), a cosine from 1 to `min_factor` over `every` (cosine), `min(ρ^m, f_max)`
//! (geometric), `min((1 + m)^p, f_max)` (polynomial) or `min(1 + a·m, f_max)` (linear).

/// The shape of a factor over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// Always 1.
    Constant,
    /// `γ^m`.
    Step,
    /// Cosine decay over one period, then flat.
    Cosine,
    /// `min(ρ^m, f_max)`.
    Geometric,
    /// `min((1 + m)^p, f_max)`.
    Polynomial,
    /// `min(1 + a·m, f_max)`.
    Linear,
}

/// What `t` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Optimizer steps.
    Step,
    /// Epochs: samples seen (the SFO so far) divided by the data set size.
    Epoch,
}

/// A factor of time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// Shape.
    pub kind: RuleKind,
    /// Stage length (or the cosine period), positive.
    pub every: f64,
    /// `γ`, `ρ`, `p` or `a`, by kind.
    pub rate: f64,
    /// Floor of the cosine.
    pub min_factor: f64,
    /// Cap of the growth rules.
    pub max_factor: f64,
    /// What time counts.
    pub unit: Unit,
}

impl Rule {
    /// The constant rule.
    pub const CONSTANT: Self = Self {
        kind: RuleKind::Constant,
        every: 1.0,
        rate: 1.0,
        min_factor: 0.0,
        max_factor: f64::INFINITY,
        unit: Unit::Step,
    };

    /// The factor at time `t >= 0`.
    #[must_use]
    #[inline(always)]
    pub fn factor(&self, t: f64) -> f64 {
        // the stage in the arms that read it: hoisted above the match, its division and floor
        // were, with the time `Schedule::at` skips, 3-5 % of an NQM run at d = 100 (constant rules)
        let stage = || (t / self.every).floor();
        match self.kind {
            RuleKind::Constant => 1.0,
            RuleKind::Step => self.rate.powf(stage()),
            RuleKind::Cosine => {
                let frac = t.min(self.every) / self.every;
                self.min_factor
                    + (1.0 - self.min_factor) * (1.0 + (std::f64::consts::PI * frac).cos()) / 2.0
            }
            RuleKind::Geometric => self.rate.powf(stage()).min(self.max_factor),
            RuleKind::Polynomial => (1.0 + stage()).powf(self.rate).min(self.max_factor),
            // A zero increment stays 1 even at an infinite stage (no 0 · ∞).
            RuleKind::Linear if self.rate == 0.0 => 1.0,
            RuleKind::Linear => (1.0 + self.rate * stage()).min(self.max_factor),
        }
    }
}

/// A linear learning-rate warm-up over the first `steps` steps from the factor `start`:
/// `w(t) = start + (1 - start) · min(t / steps, 1)` (Goyal et al. 2017, Sec. 2.2), multiplying
/// the learning-rate rule's factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warmup {
    /// The warm-up length `W` in steps, positive.
    pub steps: u64,
    /// The start factor `s`, in `[0, 1)`.
    pub start: f64,
}

impl Warmup {
    /// The factor at step `t`.
    #[must_use]
    pub fn factor(&self, t: u64) -> f64 {
        self.start + (1.0 - self.start) * (t as f64 / self.steps as f64).min(1.0)
    }
}

/// A learning-rate rule, a batch-size rule, a batch cap and an optional warm-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Factor of the base learning rate.
    pub lr: Rule,
    /// Factor of the base batch size.
    pub batch: Rule,
    /// Cap of the batch size (`None`: none; the batch sizes a schedule can reach within the step
    /// budget are bounded up front in Python, `critbatch.plan.check_batch_bounds`).
    pub max_batch_size: Option<usize>,
    /// Linear warm-up of the learning rate (`None`: none).
    pub warmup: Option<Warmup>,
}

impl Schedule {
    /// The constant schedule.
    pub const CONSTANT: Self = Self {
        lr: Rule::CONSTANT,
        batch: Rule::CONSTANT,
        max_batch_size: None,
        warmup: None,
    };

    /// Time as `rule` counts it, after `steps` steps that used `sfo` samples of a set of `n`.
    fn time(rule: &Rule, steps: u64, sfo: u64, n: Option<usize>) -> f64 {
        match (rule.unit, n) {
            (Unit::Epoch, Some(n)) => sfo as f64 / n as f64,
            _ => steps as f64,
        }
    }

    /// `(b_t, η_t)` for a run with base values `(b0, lr0)` on a problem with `n` samples
    /// (`cap_at_n` for sampling without replacement). Nothing else caps `b_t`: a factor that
    /// overflowed gives `usize::MAX`, which the run rejects rather than draw a smaller batch.
    #[must_use]
    #[inline(always)]
    pub fn at(
        &self,
        b0: usize,
        lr0: f64,
        steps: u64,
        sfo: u64,
        n: Option<usize>,
        cap_at_n: bool,
    ) -> (usize, f64) {
        // a constant rule's factor is 1 without its time: no division on the step loop's path
        let factor = if self.lr.kind == RuleKind::Constant {
            1.0
        } else {
            self.lr.factor(Self::time(&self.lr, steps, sfo, n))
        };
        // (η0 · w) · factor, the order of the Python schedules and the NumPy reference
        let lr = match self.warmup {
            None => lr0 * factor,
            Some(w) => lr0 * w.factor(steps) * factor,
        };
        let mut b = if self.batch.kind == RuleKind::Constant {
            b0
        } else {
            let raw =
                (b0 as f64 * self.batch.factor(Self::time(&self.batch, steps, sfo, n))).ceil();
            // `as` saturates (infinity to usize::MAX); the factor is never NaN.
            raw as usize
        };
        if let Some(cap) = self.max_batch_size {
            b = b.min(cap);
        }
        if let (true, Some(n)) = (cap_at_n, n) {
            b = b.min(n);
        }
        (b.max(1), lr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: RuleKind, every: f64, rate: f64) -> Rule {
        Rule {
            kind,
            every,
            rate,
            ..Rule::CONSTANT
        }
    }

    macro_rules! factor_cases {
        ($($name:ident: $rule:expr, $t:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                let got = $rule.factor($t);
                assert!((got - $want).abs() < 1e-12, "got {got}, want {}", $want);
            }
        )*};
    }

    factor_cases! {
        constant_is_one: Rule::CONSTANT, 123.0 => 1.0;
        step_decay_after_two_stages: rule(RuleKind::Step, 10.0, 0.5), 25.0 => 0.25;
        step_decay_at_a_boundary: rule(RuleKind::Step, 10.0, 0.5), 10.0 => 0.5;
        cosine_half_way: rule(RuleKind::Cosine, 100.0, 1.0), 50.0 => 0.5;
        cosine_after_the_period: Rule { min_factor: 0.1, ..rule(RuleKind::Cosine, 100.0, 1.0) }, 500.0 => 0.1;
        geometric_growth: rule(RuleKind::Geometric, 5.0, 2.0), 17.0 => 8.0;
        geometric_capped: Rule { max_factor: 4.0, ..rule(RuleKind::Geometric, 5.0, 2.0) }, 17.0 => 4.0;
        polynomial_growth: rule(RuleKind::Polynomial, 1.0, 2.0), 2.5 => 9.0;
        linear_growth: rule(RuleKind::Linear, 3.0, 0.5), 7.0 => 2.0;
    }

    #[test]
    fn batch_sizes_round_up_and_respect_caps() {
        let s = Schedule {
            batch: rule(RuleKind::Geometric, 1.0, 1.5),
            max_batch_size: Some(20),
            ..Schedule::CONSTANT
        };
        assert_eq!(s.at(3, 0.1, 0, 0, None, false).0, 3);
        assert_eq!(s.at(3, 0.1, 1, 3, None, false).0, 5); // ceil(4.5)
        assert_eq!(s.at(3, 0.1, 9, 0, None, false).0, 20);
        assert_eq!(s.at(3, 0.1, 9, 0, Some(12), true).0, 12);
    }

    #[test]
    fn nothing_caps_the_batch_size_silently() {
        // A constant batch is the base batch, however large (no hidden 2^24).
        let big = 1usize << 40;
        assert_eq!(Schedule::CONSTANT.at(big, 0.1, 7, 0, None, false).0, big);
        // Growth without a cap goes past 2^24, and an overflowing factor saturates, so the
        // run sees an impossible batch instead of a smaller one.
        let grow = Schedule {
            batch: rule(RuleKind::Geometric, 1.0, 2.0),
            ..Schedule::CONSTANT
        };
        assert_eq!(grow.at(3, 0.1, 30, 0, None, false).0, 3 << 30);
        assert_eq!(grow.at(3, 0.1, 5000, 0, None, false).0, usize::MAX);
    }

    #[test]
    fn warmup_ramps_linearly_then_multiplies_the_decay() {
        let s = Schedule {
            lr: rule(RuleKind::Step, 10.0, 0.5),
            warmup: Some(Warmup {
                steps: 4,
                start: 0.2,
            }),
            ..Schedule::CONSTANT
        };
        let lr = |t: u64| s.at(1, 2.0, t, 0, None, false).1;
        // w(t) = 0.2 + 0.8 t / 4 for t < 4, then 1; the step decay halves at t = 10
        for (t, want) in [(0, 0.4), (1, 0.8), (2, 1.2), (4, 2.0), (9, 2.0), (10, 1.0)] {
            assert!((lr(t) - want).abs() < 1e-15, "t = {t}: {} vs {want}", lr(t));
        }
    }

    #[test]
    fn epochs_count_samples_seen() {
        let s = Schedule {
            lr: Rule {
                unit: Unit::Epoch,
                ..rule(RuleKind::Step, 2.0, 0.1)
            },
            ..Schedule::CONSTANT
        };
        assert!((s.at(10, 1.0, 5, 199, Some(100), false).1 - 1.0).abs() < 1e-15);
        assert!((s.at(10, 1.0, 5, 200, Some(100), false).1 - 0.1).abs() < 1e-15);
    }
}
