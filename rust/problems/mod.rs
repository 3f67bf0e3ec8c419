//! Problems: an exact loss, an exact full gradient and a stochastic-gradient oracle at batch size b.
//!
//! One enum, dispatched statically in the step loop. The Python specs in
//! `python/critbatch/problems.py` describe the same variants and conventions.

mod finite_sum;
mod nqm;
mod wells;

pub use finite_sum::{FiniteSum, Model, RobustLoss, Sampling};
pub use nqm::Nqm;
pub use wells::DoubleWell;

use crate::optimizers::{Optimizer, State};
use crate::real::Real;
use crate::rng::{NormalStream, Purpose, Xoshiro256pp};

/// The most indices one step draws with replacement (2^24, 64 MiB of indices): a finite sum
/// sampled with replacement stores its batch, so this bounds the memory of a run. Python
/// rejects larger batches up front (`critbatch.problems.MAX_DRAWN_BATCH`, checked equal by
/// the tests); batches of the streamed problems (NQM, wells) are limited only by the SFO.
pub const MAX_DRAWN_BATCH: usize = 1 << 24;

/// A problem of the core, in the float type its runs compute in ([`Real`]).
#[derive(Debug, Clone)]
pub enum Problem<T: Real = f64> {
    /// Noisy quadratic model (Zhang et al. 2019).
    Nqm(Nqm<T>),
    /// A loss averaged over a finite data set, sampled in minibatches.
    FiniteSum(FiniteSum<T>),
    /// Independent warped double wells with Gaussian gradient noise.
    DoubleWell(DoubleWell<T>),
}

/// A run's private randomness and scratch space for drawing stochastic gradients.
#[derive(Debug, Clone)]
pub struct Oracle<T: Real = f64> {
    noise: NormalStream<T>,
    indices: Xoshiro256pp,
    permutation: Vec<u32>,
    cursor: usize,
    batch: Vec<u32>,
    /// Room for a step's normals where the stream cannot lend them in place.
    normals: Vec<T>,
}

/// What one step of a run draws from its [`Oracle`]: `d` standard normals (NQM, double wells) or
/// a minibatch of sample indices (finite sums). Runs that share their random streams (common
/// random numbers, the same batch sizes) share it: drawn once, applied to each run's iterate.
#[derive(Debug, Clone, Copy)]
pub enum Draw<'a, T: Real> {
    /// Standard normals, one per coordinate.
    Normals(&'a [T]),
    /// Sample indices.
    Batch(&'a [u32]),
}

impl<T: Real> Oracle<T> {
    /// Streams for the runs of `problem` with key `key` (see [`crate::rng::run_key`]).
    #[must_use]
    pub fn new(key: u64, problem: &Problem<T>) -> Self {
        Self {
            noise: NormalStream::new(key),
            indices: Xoshiro256pp::new(key, Purpose::Indices),
            permutation: Vec::new(),
            cursor: 0,
            batch: Vec::new(),
            normals: vec![T::ZERO; problem.dim()],
        }
    }

    /// The draw of a step of `problem` (the one the oracle was made for) at batch size `b`.
    #[inline(always)]
    pub fn draw(&mut self, problem: &Problem<T>, b: usize) -> Draw<'_, T> {
        match problem {
            Problem::FiniteSum(p) => {
                self.draw_batch(p.n, b, p.sampling);
                Draw::Batch(&self.batch)
            }
            _ => Draw::Normals(self.noise.next_slice(&mut self.normals)),
        }
    }

    /// Draw `b` sample indices from `0..n` into the batch buffer.
    fn draw_batch(&mut self, n: usize, b: usize, sampling: Sampling) {
        self.batch.clear();
        match sampling {
            Sampling::WithReplacement => {
                for _ in 0..b {
                    self.batch.push(self.indices.below(n as u32));
                }
            }
            Sampling::Shuffle => {
                let b = b.min(n);
                if self.permutation.len() != n || self.cursor + b > n {
                    // A new epoch: the remainder of the last one is dropped (drop-last).
                    self.permutation.clear();
                    self.permutation.extend(0..n as u32);
                    for i in (1..n).rev() {
                        let j = self.indices.below(i as u32 + 1) as usize;
                        self.permutation.swap(i, j);
                    }
                    self.cursor = 0;
                }
                self.batch
                    .extend_from_slice(&self.permutation[self.cursor..self.cursor + b]);
                self.cursor += b;
            }
        }
    }
}

impl<T: Real> Problem<T> {
    /// The same problem in another float type (`critbatch.plan`'s `dtype`): every array and
    /// parameter rounded once from its `f64` value.
    #[must_use]
    pub fn cast<U: Real>(&self) -> Problem<U> {
        match self {
            Self::Nqm(p) => Problem::Nqm(p.cast()),
            Self::FiniteSum(p) => Problem::FiniteSum(p.cast()),
            Self::DoubleWell(p) => Problem::DoubleWell(p.cast()),
        }
    }

    /// Number of parameters.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.x0().len()
    }

    /// The sizes of the layers the problem declares, in the order of its coordinates (LARS and
    /// LAMB take one trust ratio per layer): the teacher-student network's `W` (width × `d_in`)
    /// then `a` (width); one block for every other problem.
    #[must_use]
    pub fn layers(&self) -> Vec<usize> {
        match self {
            Self::FiniteSum(FiniteSum {
                model: Model::TeacherStudent { width },
                n_features,
                ..
            }) => vec![width * n_features, *width],
            _ => vec![self.dim()],
        }
    }

    /// The starting point.
    #[must_use]
    pub fn x0(&self) -> &[T] {
        match self {
            Self::Nqm(p) => &p.x0,
            Self::FiniteSum(p) => &p.x0,
            Self::DoubleWell(p) => &p.x0,
        }
    }

    /// The size of the data set, if the problem has one.
    #[must_use]
    pub fn n_samples(&self) -> Option<usize> {
        match self {
            Self::FiniteSum(p) => Some(p.n),
            _ => None,
        }
    }

    /// The exact full loss at `x` (summed in `f64`, see [`Real::Sum`]); inlined, so that the
    /// NQM's per-step check runs on the step loop's SIMD level.
    #[must_use]
    #[inline(always)]
    pub fn loss(&self, x: &[T]) -> f64 {
        match self {
            Self::Nqm(p) => p.loss(x),
            Self::FiniteSum(p) => p.loss(x),
            Self::DoubleWell(p) => p.loss(x),
        }
    }

    /// The exact full gradient at `x`, written to `out` (inlined, like [`Problem::loss`]).
    #[inline(always)]
    pub fn grad(&self, x: &[T], out: &mut [T]) {
        match self {
            Self::Nqm(p) => p.grad(x, out),
            Self::FiniteSum(p) => p.grad(x, out),
            Self::DoubleWell(p) => p.grad(x, out),
        }
    }

    /// [`Problem::loss`] at `x`, returned, and [`Problem::grad`] written to `out`, bitwise those
    /// two: a finite sum computes both in one pass over its data set.
    #[inline(always)]
    pub fn loss_and_grad(&self, x: &[T], out: &mut [T]) -> f64 {
        if let Self::FiniteSum(p) = self {
            return p.loss_and_grad(x, out);
        }
        self.grad(x, out);
        self.loss(x)
    }

    /// A stochastic gradient at batch size `b`, written to `out`: [`Oracle::draw`], then
    /// [`Problem::stochastic_grad_on`] it.
    pub fn stochastic_grad(&self, x: &[T], b: usize, oracle: &mut Oracle<T>, out: &mut [T]) {
        let draw = oracle.draw(self, b);
        self.stochastic_grad_on(x, b, draw, &mut Vec::new(), out);
    }

    /// The stochastic gradient at batch size `b` that `draw` (of this problem, at this `b`)
    /// gives at `x`, written to `out`; `hidden` is scratch for the teacher-student network.
    #[inline(always)]
    pub fn stochastic_grad_on(
        &self,
        x: &[T],
        b: usize,
        draw: Draw<'_, T>,
        hidden: &mut Vec<T>,
        out: &mut [T],
    ) {
        match (self, draw) {
            (Self::Nqm(p), Draw::Normals(z)) => p.stochastic_grad(x, b, z, out),
            (Self::DoubleWell(p), Draw::Normals(z)) => p.stochastic_grad(x, b, z, out),
            (Self::FiniteSum(p), Draw::Batch(batch)) => p.batch_grad(x, batch, hidden, out),
            _ => unreachable!("a draw of another problem"),
        }
    }

    /// [`Problem::stochastic_grad_on`] and `optimizer`'s step on it in one pass over the
    /// coordinates, with bitwise the iterate and optimizer state of the two: the NQM under SGD,
    /// heavy ball or Nesterov (`Nqm::fused_step`). `false`, with nothing done, for every other
    /// problem and rule.
    #[inline(always)]
    pub fn fused_step(
        &self,
        x: &mut [T],
        b: usize,
        draw: Draw<'_, T>,
        optimizer: &Optimizer,
        state: &mut State<T>,
        lr: f64,
    ) -> bool {
        let (Self::Nqm(p), Draw::Normals(z)) = (self, draw) else {
            return false;
        };
        let Some((rule, m)) = optimizer.step_linear(state, lr) else {
            return false;
        };
        p.fused_step(x, b, z, &rule, m);
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Central finite differences of `problem.loss` against `problem.grad`.
    pub(crate) fn check_gradient(problem: &Problem, x: &[f64], tol: f64) {
        let mut g = vec![0.0; x.len()];
        problem.grad(x, &mut g);
        let mut xp = x.to_vec();
        for i in 0..x.len() {
            let h = 1e-6 * (1.0 + x[i].abs());
            xp[i] = x[i] + h;
            let up = problem.loss(&xp);
            xp[i] = x[i] - h;
            let down = problem.loss(&xp);
            xp[i] = x[i];
            let numeric = (up - down) / (2.0 * h);
            assert!(
                (numeric - g[i]).abs() <= tol * (1.0 + g[i].abs()),
                "coordinate {i}: analytic {} numeric {numeric}",
                g[i]
            );
        }
    }

    /// The mean of many stochastic gradients against the full gradient.
    pub(crate) fn check_unbiased(problem: &Problem, x: &[f64], b: usize, draws: usize, tol: f64) {
        let d = x.len();
        let mut oracle = Oracle::new(11, problem);
        let (mut mean, mut g) = (vec![0.0; d], vec![0.0; d]);
        for _ in 0..draws {
            problem.stochastic_grad(x, b, &mut oracle, &mut g);
            for (m, gi) in mean.iter_mut().zip(&g) {
                *m += gi / draws as f64;
            }
        }
        let mut full = vec![0.0; d];
        problem.grad(x, &mut full);
        for i in 0..d {
            assert!(
                (mean[i] - full[i]).abs() < tol,
                "coordinate {i}: {} vs {}",
                mean[i],
                full[i]
            );
        }
    }

    /// An oracle whose index stream is all these tests use.
    fn oracle(key: u64) -> Oracle<f64> {
        Oracle::new(
            key,
            &Problem::Nqm(Nqm::new(vec![1.0], vec![1.0], vec![0.0])),
        )
    }

    #[test]
    fn shuffle_visits_every_sample_once_per_epoch() {
        let mut oracle = oracle(3);
        let mut seen = vec![0; 10];
        for _ in 0..5 {
            oracle.draw_batch(10, 2, Sampling::Shuffle);
            for &i in &oracle.batch {
                seen[i as usize] += 1;
            }
        }
        assert_eq!(seen, vec![1; 10]);
    }

    #[test]
    fn shuffle_drops_the_last_partial_batch() {
        let mut oracle = oracle(3);
        oracle.draw_batch(10, 4, Sampling::Shuffle);
        oracle.draw_batch(10, 4, Sampling::Shuffle);
        let first_epoch: Vec<u32> = oracle.permutation.clone();
        oracle.draw_batch(10, 4, Sampling::Shuffle); // 2 left < 4: new epoch
        assert_eq!(oracle.cursor, 4);
        assert_ne!(first_epoch, oracle.permutation);
    }
}
