//! Optimizers as pure step rules with explicit state, in `torch.optim`'s semantics and names.
//!
//! Each rule reads a gradient `g` and a learning rate `lr` and updates the iterate in place;
//! the state ([`State`]) holds the step count, the buffers the rule needs and the layers (blocks
//! of coordinates) over which `LARS` and `LAMB` take their trust ratios. The rules are written
//! like the recurrences of their references, one line per equation. Global-norm clipping
//! composes with any rule ([`Optimizer::Clipped`], as optax's `chain(clip_by_global_norm, ..)`).

use crate::errors::{CoreError, CoreResult};
use crate::linalg::norm;
use crate::real::Real;

/// Hyperparameters of a step rule (names and order as in `torch.optim`).
#[derive(Debug, Clone, PartialEq)]
pub enum Optimizer {
    /// `x ← x − lr·g`.
    Sgd,
    /// Heavy ball, `torch.optim.SGD(momentum, dampening)`: `m₁ = g₁`,
    /// `m_t = μ m_{t−1} + (1 − τ) g_t`, `x ← x − lr·m_t`.
    HeavyBall {
        /// `μ`.
        momentum: f64,
        /// `τ`.
        dampening: f64,
    },
    /// Nesterov, `torch.optim.SGD(momentum, nesterov=True)`: the heavy-ball buffer with
    /// `τ = 0`, step `x ← x − lr·(g_t + μ m_t)`.
    Nesterov {
        /// `μ`.
        momentum: f64,
    },
    /// Adam with bias correction (Kingma & Ba 2015, Alg. 1, in `torch.optim.Adam`'s form with
    /// `ε` added after the bias-corrected square root), `AMSGrad` (Reddi et al. 2018) as a flag.
    Adam {
        /// `β₁`.
        beta1: f64,
        /// `β₂`.
        beta2: f64,
        /// `ε`.
        eps: f64,
        /// Use the running maximum of the second moment.
        amsgrad: bool,
    },
    /// `RMSProp` as `torch.optim.RMSprop`: `v ← αv + (1−α)g²`, optionally centred and with momentum.
    RmsProp {
        /// `α`.
        alpha: f64,
        /// `ε`.
        eps: f64,
        /// `μ` (0: no momentum buffer).
        momentum: f64,
        /// Subtract the squared running mean of `g` from `v`.
        centered: bool,
    },
    /// `AdamW` as `torch.optim.AdamW` (Loshchilov & Hutter 2019, Alg. 2, decoupled weight
    /// decay): `x ← x (1 − lr·λ)`, then the [`Optimizer::Adam`] step on the same `g`.
    AdamW {
        /// `β₁`.
        beta1: f64,
        /// `β₂`.
        beta2: f64,
        /// `ε`.
        eps: f64,
        /// `λ`.
        weight_decay: f64,
        /// Use the running maximum of the second moment.
        amsgrad: bool,
    },
    /// LARS (You, Gitman & Ginsburg 2017, Alg. 1) in the form of NVIDIA apex's `LARC`
    /// (`clip=False`) around `torch.optim.SGD(momentum)`: per layer `B`, with `‖·‖` over `B`,
    /// `r = η‖x‖ / (‖g‖ + λ‖x‖ + ε)` when both norms are positive, `d = r (g + λ x)`, else
    /// `d = g`; then `m₁ = d₁`, `m_t = μ m_{t−1} + d_t`, `x ← x − lr·m_t` (`μ = 0`: `x ← x − lr·d`).
    Lars {
        /// `μ`.
        momentum: f64,
        /// `η`, the trust coefficient.
        trust_coefficient: f64,
        /// `λ`.
        weight_decay: f64,
        /// `ε`.
        eps: f64,
        /// The layers' sizes, if the rule brings its own partition (else the problem's).
        layers: Option<Vec<usize>>,
    },
    /// LAMB (You et al. 2020, Alg. 2, `φ` the identity): Adam's moments with bias correction,
    /// `u = m̂ / (√v̂ + ε) + λ x`, and per layer `x ← x − lr·(‖x‖/‖u‖)·u` (ratio 1 when a norm is 0).
    Lamb {
        /// `β₁`.
        beta1: f64,
        /// `β₂`.
        beta2: f64,
        /// `ε`.
        eps: f64,
        /// `λ`.
        weight_decay: f64,
        /// The layers' sizes, if the rule brings its own partition (else the problem's).
        layers: Option<Vec<usize>>,
    },
    /// Lion (Chen et al. 2023, Alg. 2): `c = β₁ m + (1 − β₁) g`, `x ← x − lr·(sign(c) + λ x)`,
    /// `m ← β₂ m + (1 − β₂) g` (`sign(0) = 0`, as `torch.sign`).
    Lion {
        /// `β₁`.
        beta1: f64,
        /// `β₂`.
        beta2: f64,
        /// `λ`.
        weight_decay: f64,
    },
    /// `rule` fed the gradient clipped to global norm `max_grad_norm`, as
    /// `torch.nn.utils.clip_grad_norm_`: `g ← g · min(1, max_grad_norm / (‖g‖ + 10⁻⁶))`.
    Clipped {
        /// The largest gradient norm passed on (up to the `10⁻⁶` of torch's denominator).
        max_grad_norm: f64,
        /// The rule that takes the clipped gradient.
        rule: Box<Optimizer>,
    },
}

/// The state of a step rule: the number of steps taken, up to three buffers (in the run's float
/// type) and the layers.
#[derive(Debug, Clone, Default)]
pub struct State<T: Real = f64> {
    /// Steps taken so far.
    pub count: u64,
    /// Momentum buffer, or Adam's, `LAMB`'s or Lion's first moment, or `RMSProp`'s momentum
    /// buffer.
    pub first: Vec<T>,
    /// Adam's, `LAMB`'s or `RMSProp`'s second moment.
    pub second: Vec<T>,
    /// `AMSGrad`'s running maximum, centred `RMSProp`'s running mean of `g`, or `LAMB`'s update
    /// direction (scratch).
    pub third: Vec<T>,
    /// The sizes of the layers over which `LARS` and `LAMB` take their trust ratios (they sum to
    /// the dimension).
    pub layers: Vec<usize>,
    /// The clipped gradient of [`Optimizer::Clipped`] (scratch).
    pub clipped: Vec<T>,
}

impl Optimizer {
    /// A zeroed state for parameters laid out in `layers` (their sizes, in order: the problem's
    /// declared layers, or one block). A rule that brings its own partition uses it instead.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidValue`] (field `optimizer.layers`) when the rule's own partition does
    /// not add up to the dimension or has an empty layer.
    pub fn init<T: Real>(&self, layers: &[usize]) -> CoreResult<State<T>> {
        let dim: usize = layers.iter().sum();
        let mut state = State {
            layers: layers.to_vec(),
            ..State::default()
        };
        self.init_into(&mut state, dim)?;
        Ok(state)
    }

    fn init_into<T: Real>(&self, state: &mut State<T>, dim: usize) -> CoreResult<()> {
        let (first, second, third) = match self {
            Self::Sgd => (0, 0, 0),
            Self::HeavyBall { .. } | Self::Nesterov { .. } | Self::Lion { .. } => (dim, 0, 0),
            Self::Lars { momentum, .. } => (if *momentum > 0.0 { dim } else { 0 }, 0, 0),
            Self::Adam { amsgrad, .. } | Self::AdamW { amsgrad, .. } => {
                (dim, dim, if *amsgrad { dim } else { 0 })
            }
            Self::Lamb { .. } => (dim, dim, dim),
            Self::RmsProp {
                momentum, centered, ..
            } => (
                if *momentum > 0.0 { dim } else { 0 },
                dim,
                if *centered { dim } else { 0 },
            ),
            Self::Clipped { rule, .. } => {
                state.clipped = vec![T::ZERO; dim];
                return rule.init_into(state, dim);
            }
        };
        if let Self::Lars {
            layers: Some(own), ..
        }
        | Self::Lamb {
            layers: Some(own), ..
        } = self
        {
            let total: usize = own.iter().sum();
            if total != dim || own.contains(&0) {
                return Err(CoreError::invalid(
                    "optimizer.layers",
                    format!(
                        "must be positive sizes that add up to the problem's {dim} \
                         coordinates, got {own:?}"
                    ),
                ));
            }
            state.layers.clone_from(own);
        }
        state.first = vec![T::ZERO; first];
        state.second = vec![T::ZERO; second];
        state.third = vec![T::ZERO; third];
        Ok(())
    }

    /// One step: update `x` in place from gradient `g` at learning rate `lr` (the
    /// hyperparameters are rounded to the run's type once per step; see [`crate::real`]).
    #[inline(always)]
    pub fn step<T: Real>(&self, state: &mut State<T>, x: &mut [T], g: &[T], lr: f64) {
        state.count += 1;
        self.update(state, x, g, lr);
    }

    /// Count a step of a linear rule (SGD, heavy ball, Nesterov) and return its form on one
    /// coordinate and the momentum buffer (empty without momentum): a caller that makes the
    /// gradient in the same pass must then apply the rule to every coordinate, in place of
    /// [`Optimizer::step`]. `None`, with nothing counted, for every other rule.
    #[inline(always)]
    pub fn step_linear<'s, T: Real>(
        &self,
        state: &'s mut State<T>,
        lr: f64,
    ) -> Option<(LinearStep<T>, &'s mut [T])> {
        let rule = self.linear_rule(state.count + 1, lr)?;
        state.count += 1;
        Some((rule, &mut state.first))
    }

    /// `(μ, τ, nesterov)` of a linear rule, one whose step is linear in the iterate and the
    /// gradient: SGD (`μ = 0`), heavy ball or Nesterov; `None` for every other rule.
    #[must_use]
    #[inline(always)]
    pub fn momentum_form(&self) -> Option<(f64, f64, bool)> {
        match *self {
            Self::Sgd => Some((0.0, 0.0, false)),
            Self::HeavyBall {
                momentum,
                dampening,
            } => Some((momentum, dampening, false)),
            Self::Nesterov { momentum } => Some((momentum, 0.0, true)),
            Self::Adam { .. }
            | Self::RmsProp { .. }
            | Self::AdamW { .. }
            | Self::Lars { .. }
            | Self::Lamb { .. }
            | Self::Lion { .. }
            | Self::Clipped { .. } => None,
        }
    }

    /// The `count`-th step (from 1) of a linear rule at learning rate `lr`; `None` for the others.
    #[inline(always)]
    fn linear_rule<T: Real>(&self, count: u64, lr: f64) -> Option<LinearStep<T>> {
        let (momentum, dampening, nesterov) = self.momentum_form()?;
        let r = T::from_f64;
        // torch keeps no buffer without momentum, so dampening has no effect: plain SGD.
        Some(if momentum == 0.0 {
            LinearStep::Plain { lr: r(lr) }
        } else {
            LinearStep::Momentum(Momentum {
                lr: r(lr),
                mu: r(momentum),
                damped: r(1.0 - dampening),
                first: count == 1,
                nesterov,
            })
        })
    }

    /// The step without the count (a composed rule counts once).
    #[inline(always)]
    fn update<T: Real>(&self, state: &mut State<T>, x: &mut [T], g: &[T], lr: f64) {
        let r = T::from_f64;
        match *self {
            Self::Sgd | Self::HeavyBall { .. } | Self::Nesterov { .. } => {
                // always `Some` for these three
                if let Some(rule) = self.linear_rule(state.count, lr) {
                    rule.apply_all(x, &mut state.first, g);
                }
            }
            Self::Adam {
                beta1,
                beta2,
                eps,
                amsgrad,
            } => adam(state, x, g, lr, beta1, beta2, eps, amsgrad),
            Self::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
                amsgrad,
            } => {
                // torch.optim.AdamW: param.mul_(1 - lr * weight_decay), then Adam.
                let decay = r(1.0 - lr * weight_decay);
                for xi in x.iter_mut() {
                    *xi *= decay;
                }
                adam(state, x, g, lr, beta1, beta2, eps, amsgrad);
            }
            Self::RmsProp {
                alpha,
                eps,
                momentum,
                centered,
            } => {
                let State {
                    first: buf,
                    second: v,
                    third: g_mean,
                    ..
                } = state;
                let (a, a1, e) = (r(alpha), r(1.0 - alpha), r(eps));
                let (mu, lr_t) = (r(momentum), r(lr));
                for i in 0..x.len() {
                    v[i] = a * v[i] + a1 * g[i] * g[i];
                    let spread = if centered {
                        g_mean[i] = a * g_mean[i] + a1 * g[i];
                        v[i] - g_mean[i] * g_mean[i]
                    } else {
                        v[i]
                    };
                    let u = g[i] / (spread.sqrt() + e);
                    if momentum > 0.0 {
                        buf[i] = mu * buf[i] + u;
                        x[i] -= lr_t * buf[i];
                    } else {
                        x[i] -= lr_t * u;
                    }
                }
            }
            Self::Lars {
                momentum,
                trust_coefficient,
                weight_decay,
                eps,
                ..
            } => lars(
                state,
                x,
                g,
                lr,
                momentum,
                trust_coefficient,
                weight_decay,
                eps,
            ),
            Self::Lamb {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => lamb(state, x, g, lr, beta1, beta2, eps, weight_decay),
            Self::Lion {
                beta1,
                beta2,
                weight_decay,
            } => {
                let (b1, b1c, b2, b2c) = (r(beta1), r(1.0 - beta1), r(beta2), r(1.0 - beta2));
                let (lr, wd) = (r(lr), r(weight_decay));
                for ((xi, &gi), mi) in x.iter_mut().zip(g).zip(state.first.iter_mut()) {
                    let c = b1 * *mi + b1c * gi;
                    *xi -= lr * (sign(c) + wd * *xi);
                    *mi = b2 * *mi + b2c * gi;
                }
            }
            Self::Clipped {
                max_grad_norm,
                ref rule,
            } => clipped_update(rule, state, x, g, lr, max_grad_norm),
        }
    }
}

/// The step of [`Optimizer::Clipped`]: `rule` on the clipped gradient. Out of line, so that the
/// recursion through [`Optimizer::update`] does not keep every other rule from inlining into the
/// SIMD step loop (it did: `update` stayed a baseline-x86 function).
#[inline(never)]
fn clipped_update<T: Real>(
    rule: &Optimizer,
    state: &mut State<T>,
    x: &mut [T],
    g: &[T],
    lr: f64,
    max_grad_norm: f64,
) {
    let mut clipped = std::mem::take(&mut state.clipped);
    clipped.clear();
    clipped.extend_from_slice(g);
    clip_by_global_norm(&mut clipped, max_grad_norm);
    rule.update(state, x, &clipped, lr);
    state.clipped = clipped;
}

/// `torch.sign`: −1, 0 or +1 (and NaN for NaN), unlike `f64::signum`, which gives ±1 at ±0.
fn sign<T: Real>(a: T) -> T {
    if a == T::ZERO {
        T::ZERO
    } else {
        a.signum()
    }
}

/// `torch.nn.utils.clip_grad_norm_` on one flat gradient: `g ← g · min(1, c / (‖g‖ + 10⁻⁶))`
/// (the norm and the coefficient in `f64`).
pub fn clip_by_global_norm<T: Real>(g: &mut [T], max_norm: f64) {
    let coef = max_norm / (norm(g) + 1e-6);
    if coef < 1.0 {
        // torch multiplies by the clamped coefficient always; by 1 that is the identity.
        let coef = T::from_f64(coef);
        for gi in g.iter_mut() {
            *gi *= coef;
        }
    }
}

fn adam<T: Real>(
    state: &mut State<T>,
    x: &mut [T],
    g: &[T],
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    amsgrad: bool,
) {
    let t = state.count as i32;
    let r = T::from_f64;
    let step_size = r(lr / (1.0 - beta1.powi(t)));
    let bias2_sqrt = r((1.0 - beta2.powi(t)).sqrt());
    let (b1, b1c, b2, b2c, eps) = (r(beta1), r(1.0 - beta1), r(beta2), r(1.0 - beta2), r(eps));
    let State {
        first: m,
        second: v,
        third: v_max,
        ..
    } = state;
    for i in 0..x.len() {
        m[i] = b1 * m[i] + b1c * g[i];
        v[i] = b2 * v[i] + b2c * g[i] * g[i];
        let v_hat = if amsgrad {
            v_max[i] = v_max[i].max(v[i]);
            v_max[i]
        } else {
            v[i]
        };
        x[i] -= step_size * m[i] / (v_hat.sqrt() / bias2_sqrt + eps);
    }
}

fn lars<T: Real>(
    state: &mut State<T>,
    x: &mut [T],
    g: &[T],
    lr: f64,
    momentum: f64,
    trust_coefficient: f64,
    weight_decay: f64,
    eps: f64,
) {
    let first_step = state.count == 1;
    let State {
        first: m, layers, ..
    } = state;
    let mut start = 0;
    for &size in layers.iter() {
        let block = start..start + size;
        start += size;
        let (x, g) = (&mut x[block.clone()], &g[block.clone()]);
        let (x_norm, g_norm) = (norm(x), norm(g));
        // apex LARC: a layer with a zero norm keeps its raw gradient (no decay, ratio 1).
        let (ratio, decay) = if x_norm > 0.0 && g_norm > 0.0 {
            (
                trust_coefficient * x_norm / (g_norm + x_norm * weight_decay + eps),
                weight_decay,
            )
        } else {
            (1.0, 0.0)
        };
        let r = T::from_f64;
        let (ratio, decay, mu, lr) = (r(ratio), r(decay), r(momentum), r(lr));
        if momentum > 0.0 {
            for ((xi, &gi), mi) in x.iter_mut().zip(g).zip(&mut m[block]) {
                let d = (gi + decay * *xi) * ratio;
                // torch.optim.SGD: the buffer starts at d itself, then m ← μ m + d.
                *mi = if first_step { d } else { mu * *mi + d };
                *xi -= lr * *mi;
            }
        } else {
            for (xi, &gi) in x.iter_mut().zip(g) {
                *xi -= lr * ((gi + decay * *xi) * ratio);
            }
        }
    }
}

fn lamb<T: Real>(
    state: &mut State<T>,
    x: &mut [T],
    g: &[T],
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
) {
    let t = state.count as i32;
    let r = T::from_f64;
    let (bias1, bias2) = (r(1.0 - beta1.powi(t)), r(1.0 - beta2.powi(t)));
    let (b1, b1c, b2, b2c) = (r(beta1), r(1.0 - beta1), r(beta2), r(1.0 - beta2));
    let (eps, wd) = (r(eps), r(weight_decay));
    let State {
        first: m,
        second: v,
        third: u,
        layers,
        ..
    } = state;
    for i in 0..x.len() {
        m[i] = b1 * m[i] + b1c * g[i];
        v[i] = b2 * v[i] + b2c * g[i] * g[i];
        let (m_hat, v_hat) = (m[i] / bias1, v[i] / bias2);
        u[i] = m_hat / (v_hat.sqrt() + eps) + wd * x[i];
    }
    let mut start = 0;
    for &size in layers.iter() {
        let block = start..start + size;
        start += size;
        let (x, u) = (&mut x[block.clone()], &u[block]);
        let (x_norm, u_norm) = (norm(x), norm(u));
        let ratio = if x_norm > 0.0 && u_norm > 0.0 {
            x_norm / u_norm
        } else {
            1.0
        };
        let step = r(lr * ratio);
        for (xi, &ui) in x.iter_mut().zip(u) {
            *xi -= step * ui;
        }
    }
}

/// One step of SGD, heavy ball or Nesterov, the hyperparameters rounded to the run's type: the
/// one definition of these rules. [`Optimizer::step`] applies it slice by slice; a problem that
/// makes its gradient coordinate by coordinate applies it in the same pass
/// ([`Optimizer::step_linear`]), coordinate by coordinate.
#[derive(Debug, Clone, Copy)]
pub enum LinearStep<T: Real> {
    /// No momentum (SGD, or a momentum of 0): `x ← x − lr·g`.
    Plain {
        /// `lr`.
        lr: T,
    },
    /// Heavy ball or Nesterov.
    Momentum(Momentum<T>),
}

/// A heavy-ball or Nesterov step: `m ← μ m + (1 − τ) g` (torch's first step `m₁ = g₁`), then
/// `x ← x − lr·m`, or `x ← x − lr·(g + μ m)` for Nesterov.
#[derive(Debug, Clone, Copy)]
pub struct Momentum<T: Real> {
    lr: T,
    mu: T,
    /// `1 − τ`.
    damped: T,
    /// torch's first step, which starts the buffer at `g` itself, without dampening.
    first: bool,
    nesterov: bool,
}

impl<T: Real> Momentum<T> {
    /// `(x, m)` after the step on gradient `g` from the buffer `m`.
    #[inline(always)]
    #[must_use]
    pub fn apply(&self, x: T, m: T, g: T) -> (T, T) {
        let m = if self.first {
            g
        } else {
            self.mu * m + self.damped * g
        };
        (
            x - self.lr * if self.nesterov { g + self.mu * m } else { m },
            m,
        )
    }
}

impl<T: Real> LinearStep<T> {
    /// The step on every coordinate, `m` the momentum buffer.
    #[inline(always)]
    fn apply_all(&self, x: &mut [T], m: &mut [T], g: &[T]) {
        match self {
            Self::Plain { lr } => {
                for (xi, &gi) in x.iter_mut().zip(g) {
                    *xi -= *lr * gi;
                }
            }
            Self::Momentum(rule) => {
                for ((xi, mi), &gi) in x.iter_mut().zip(m).zip(g) {
                    (*xi, *mi) = rule.apply(*xi, *mi, gi);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::needless_pass_by_value)] // the tables build one rule per call
    fn trajectory(opt: Optimizer, grads: &[[f64; 2]], lr: f64) -> Vec<[f64; 2]> {
        let mut state = opt.init(&[2]).unwrap();
        let mut x = [1.0, -2.0];
        grads
            .iter()
            .map(|g| {
                opt.step(&mut state, &mut x, g, lr);
                x
            })
            .collect()
    }

    const GRADS: [[f64; 2]; 5] = [
        [0.5, -1.0],
        [0.2, 0.3],
        [-0.7, 0.1],
        [1.5, -0.4],
        [0.05, 2.0],
    ];

    #[test]
    fn momentum_zero_is_sgd() {
        let sgd = trajectory(Optimizer::Sgd, &GRADS, 0.1);
        assert_eq!(
            sgd,
            trajectory(
                Optimizer::HeavyBall {
                    momentum: 0.0,
                    dampening: 0.0
                },
                &GRADS,
                0.1
            )
        );
        assert_eq!(
            sgd,
            trajectory(Optimizer::Nesterov { momentum: 0.0 }, &GRADS, 0.1)
        );
    }

    #[test]
    fn heavy_ball_matches_its_recurrence_by_hand() {
        // m1 = g1; m2 = 0.9 m1 + 0.5 g2 (dampening 0.5); x2 = x0 - lr (m1 + m2).
        let xs = trajectory(
            Optimizer::HeavyBall {
                momentum: 0.9,
                dampening: 0.5,
            },
            &GRADS[..2],
            0.1,
        );
        let m2 = [0.9 * 0.5 + 0.5 * 0.2, -0.9 + 0.5 * 0.3];
        assert!((xs[1][0] - (1.0 - 0.1 * (0.5 + m2[0]))).abs() < 1e-15);
        assert!((xs[1][1] - (-2.0 - 0.1 * (-1.0 + m2[1]))).abs() < 1e-15);
    }

    #[test]
    fn adam_first_step_is_lr_times_sign() {
        // After one step the bias-corrected m/sqrt(v) is g/|g| (up to eps).
        let xs = trajectory(
            Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 0.0,
                amsgrad: false,
            },
            &GRADS[..1],
            0.1,
        );
        assert!((xs[0][0] - 0.9).abs() < 1e-12 && (xs[0][1] + 1.9).abs() < 1e-12);
    }

    #[test]
    fn adam_with_beta1_zero_is_bias_corrected_rmsprop() {
        // beta1 = 0: x -= lr g / (sqrt(v / (1 - beta2^t)) + eps).
        let (beta2, eps, lr) = (0.99, 1e-8, 0.05);
        let adam = trajectory(
            Optimizer::Adam {
                beta1: 0.0,
                beta2,
                eps,
                amsgrad: false,
            },
            &GRADS,
            lr,
        );
        let mut v = [0.0; 2];
        let mut x = [1.0, -2.0];
        for (t, g) in GRADS.iter().enumerate() {
            for i in 0..2 {
                v[i] = beta2 * v[i] + (1.0 - beta2) * g[i] * g[i];
                x[i] -= lr * g[i] / ((v[i] / (1.0 - beta2.powi(t as i32 + 1))).sqrt() + eps);
            }
            assert!((x[0] - adam[t][0]).abs() < 1e-14 && (x[1] - adam[t][1]).abs() < 1e-14);
        }
    }

    #[test]
    fn amsgrad_never_takes_a_larger_denominator_step_than_adam_allows() {
        let plain = trajectory(
            Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                amsgrad: false,
            },
            &GRADS,
            0.1,
        );
        let ams = trajectory(
            Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                amsgrad: true,
            },
            &GRADS,
            0.1,
        );
        assert_eq!(plain[0], ams[0]); // identical until v decreases
        assert_ne!(plain[4], ams[4]);
    }

    #[test]
    fn rmsprop_centered_with_momentum_by_hand() {
        let (alpha, eps, mu, lr) = (0.9, 1e-8, 0.5, 0.01);
        let xs = trajectory(
            Optimizer::RmsProp {
                alpha,
                eps,
                momentum: mu,
                centered: true,
            },
            &GRADS[..2],
            lr,
        );
        let (mut v, mut gm, mut buf, mut x) = (0.0, 0.0, 0.0, 1.0);
        for g in [0.5, 0.2] {
            v = alpha * v + (1.0 - alpha) * g * g;
            gm = alpha * gm + (1.0 - alpha) * g;
            buf = mu * buf + g / ((v - gm * gm).sqrt() + eps);
            x -= lr * buf;
        }
        assert!((xs[1][0] - x).abs() < 1e-14);
    }

    fn adam_w(weight_decay: f64) -> Optimizer {
        Optimizer::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            amsgrad: false,
        }
    }

    #[test]
    fn adamw_without_decay_is_adam_bit_for_bit() {
        let adam = Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            amsgrad: false,
        };
        assert_eq!(
            trajectory(adam, &GRADS, 0.1),
            trajectory(adam_w(0.0), &GRADS, 0.1)
        );
    }

    #[test]
    fn adamw_decays_the_iterate_before_the_adam_step() {
        // Step 1 with eps = 0: x1 = x0 (1 - lr wd) - lr sign(g1).
        let (lr, wd) = (0.1, 0.5);
        let mut opt = adam_w(wd);
        if let Optimizer::AdamW { eps, .. } = &mut opt {
            *eps = 0.0;
        }
        let xs = trajectory(opt, &GRADS[..1], lr);
        assert!((xs[0][0] - (1.0 * (1.0 - lr * wd) - lr)).abs() < 1e-15);
        assert!((xs[0][1] - (-2.0 * (1.0 - lr * wd) + lr)).abs() < 1e-15);
    }

    #[test]
    fn lion_first_step_is_lr_times_sign_and_zero_stays_put() {
        let lion = Optimizer::Lion {
            beta1: 0.9,
            beta2: 0.99,
            weight_decay: 0.0,
        };
        let xs = trajectory(lion.clone(), &[[0.5, -1e-300]], 0.1);
        assert_eq!(xs[0], [1.0 - 0.1, -2.0 + 0.1]);
        assert_eq!(trajectory(lion, &[[0.0, 3.0]], 0.1)[0], [1.0, -2.1]);
    }

    #[test]
    fn lion_follows_algorithm_2_by_hand() {
        let (b1, b2, wd, lr) = (0.9, 0.99, 0.1, 0.05);
        let xs = trajectory(
            Optimizer::Lion {
                beta1: b1,
                beta2: b2,
                weight_decay: wd,
            },
            &GRADS,
            lr,
        );
        let (mut m, mut x) = ([0.0; 2], [1.0, -2.0]);
        for (t, g) in GRADS.iter().enumerate() {
            for i in 0..2 {
                let c: f64 = b1 * m[i] + (1.0 - b1) * g[i];
                x[i] -= lr * (c.signum() + wd * x[i]);
                m[i] = b2 * m[i] + (1.0 - b2) * g[i];
            }
            assert_eq!(xs[t], x);
        }
    }

    /// Steps of `opt` on the gradient field `g = x` (so `‖g‖ = ‖x‖` in every layer).
    fn on_identity_field(opt: &Optimizer, layers: &[usize], steps: usize) -> Vec<f64> {
        let dim = layers.iter().sum();
        let mut state = opt.init(layers).unwrap();
        let mut x: Vec<f64> = (0..dim).map(|i| 1.0 - 0.3 * i as f64).collect();
        for _ in 0..steps {
            let g = x.clone();
            opt.step(&mut state, &mut x, &g, 0.1);
        }
        x
    }

    #[test]
    fn lars_with_unit_trust_ratio_is_heavy_ball() {
        // η = 1, λ = 0, ε = 0 and g = x: the ratio is ‖x‖/‖x‖ = 1 in every layer.
        let lars = Optimizer::Lars {
            momentum: 0.9,
            trust_coefficient: 1.0,
            weight_decay: 0.0,
            eps: 0.0,
            layers: None,
        };
        let heavy = Optimizer::HeavyBall {
            momentum: 0.9,
            dampening: 0.0,
        };
        assert_eq!(
            on_identity_field(&lars, &[2, 3], 7),
            on_identity_field(&heavy, &[5], 7)
        );
    }

    #[test]
    fn lars_scales_each_layer_by_its_own_ratio() {
        // One step from momentum's fresh buffer: x ← x − lr η‖x_B‖/(‖g_B‖ + λ‖x_B‖ + ε)(g + λx).
        let (eta, wd, eps, lr) = (0.02, 0.1, 1e-8, 0.5);
        let lars = Optimizer::Lars {
            momentum: 0.9,
            trust_coefficient: eta,
            weight_decay: wd,
            eps,
            layers: Some(vec![1, 1]),
        };
        let xs = trajectory(lars, &GRADS[..1], lr);
        for (i, (x0, g)) in [(1.0_f64, 0.5_f64), (-2.0, -1.0)].into_iter().enumerate() {
            let ratio = eta * x0.abs() / (g.abs() + wd * x0.abs() + eps);
            assert!((xs[0][i] - (x0 - lr * ratio * (g + wd * x0))).abs() < 1e-15);
        }
    }

    #[test]
    fn lamb_takes_one_ratio_per_layer() {
        // Step 1: m̂ = g, v̂ = g², u = g/(|g| + ε) + λx; layer ratio ‖x_B‖/‖u_B‖.
        let (eps, wd, lr) = (1e-6, 0.01, 0.1);
        let lamb = |layers| Optimizer::Lamb {
            beta1: 0.9,
            beta2: 0.999,
            eps,
            weight_decay: wd,
            layers,
        };
        let (x0, g) = ([1.0_f64, -2.0], GRADS[0]);
        let u: Vec<f64> = (0..2)
            .map(|i| g[i] / (g[i].abs() + eps) + wd * x0[i])
            .collect();
        let split = trajectory(lamb(Some(vec![1, 1])), &GRADS[..1], lr);
        let whole = trajectory(lamb(None), &GRADS[..1], lr);
        let whole_ratio = norm(&x0) / norm(&u);
        for i in 0..2 {
            assert!((split[0][i] - (x0[i] - lr * (x0[i].abs() / u[i].abs()) * u[i])).abs() < 1e-15);
            assert!((whole[0][i] - (x0[i] - lr * whole_ratio * u[i])).abs() < 1e-15);
        }
    }

    #[test]
    fn trust_ratio_is_one_at_a_zero_norm() {
        let lamb = Optimizer::Lamb {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            weight_decay: 0.0,
            layers: None,
        };
        let mut state = lamb.init(&[2]).unwrap();
        let mut x = [0.0, 0.0];
        lamb.step(&mut state, &mut x, &[3.0, -4.0], 0.1);
        let expect = [-0.1 * 3.0 / (3.0 + 1e-6), 0.1 * 4.0 / (4.0 + 1e-6)];
        assert!((x[0] - expect[0]).abs() < 1e-15 && (x[1] - expect[1]).abs() < 1e-15);
    }

    #[test]
    fn clipping_is_torch_clip_grad_norm() {
        let clip = |rule| Optimizer::Clipped {
            max_grad_norm: 0.5,
            rule: Box::new(rule),
        };
        // Small gradients pass untouched, bit for bit.
        let small = [[0.1, 0.2], [-0.3, 0.1]];
        assert_eq!(
            trajectory(clip(Optimizer::Sgd), &small, 0.1),
            trajectory(Optimizer::Sgd, &small, 0.1)
        );
        // A large one is scaled by 0.5 / (‖g‖ + 1e-6).
        let xs = trajectory(clip(Optimizer::Sgd), &[[3.0, 4.0]], 1.0);
        let coef = 0.5 / (5.0 + 1e-6);
        assert_eq!(xs[0], [1.0 - coef * 3.0, -2.0 - coef * 4.0]);
        // The wrapped rule counts each step once (Adam's bias correction sees t = 1, 2, ...).
        let adam = Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            amsgrad: false,
        };
        assert_eq!(
            trajectory(clip(adam.clone()), &small, 0.1),
            trajectory(adam, &small, 0.1)
        );
    }

    #[test]
    fn a_partition_must_cover_the_problem() {
        let lars = |layers| Optimizer::Lars {
            momentum: 0.9,
            trust_coefficient: 0.001,
            weight_decay: 0.0,
            eps: 0.0,
            layers: Some(layers),
        };
        assert!(lars(vec![2, 3]).init::<f64>(&[5]).is_ok());
        for bad in [vec![2, 2], vec![5, 0]] {
            let err = lars(bad).init::<f64>(&[5]).unwrap_err().to_string();
            assert!(err.contains("optimizer.layers"), "{err}");
        }
        let wrapped = Optimizer::Clipped {
            max_grad_norm: 1.0,
            rule: Box::new(lars(vec![1])),
        };
        assert!(wrapped.init::<f64>(&[5]).is_err());
        assert_eq!(wrapped.init::<f64>(&[1]).unwrap().layers, vec![1]);
    }
}
