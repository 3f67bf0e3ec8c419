//! One run: (problem, optimizer, schedule, target, b, η, random key) → one record.
//!
//! The loop, shared with the `NumPy` reference and the torch backend:
//! at every checkpoint (step 0, multiples of `check_every`, the budget) the exact loss is
//! judged; otherwise the schedule gives `(b_t, η_t)`, the oracle a stochastic gradient, the
//! optimizer a step, and the SFO grows by `b_t`.
//!
//! Every `trajectory_every` steps from step 0 a run can also record what
//! [`TrajectoryMetrics`] asks for: the exact loss `f(x_t)` and the exact full-gradient norm
//! `‖∇f(x_t)‖` (computed as `final_grad_norm` is). A step that is both recorded and checked
//! computes each once; with nothing recorded the loop does what it did before the option.
//!
//! With weight averaging ([`RunSpec::weight_averaging`] = τ) every check and record reads the
//! bias-corrected exponentially weighted average of the iterates instead of the iterate (Zhang
//! et al. 2024's EWA, corrected as in their code, docs/spec.md): after step `k ≥ 1`,
//! `m_k = τ m_{k-1} + (1 - τ) x_k` from `m_0 = 0`, read as `x̄_k = m_k / (1 - τ^k)`, and
//! `x̄_0 = x_0`. The optimizer never sees the average.
//!
//! Runs that share their random streams (common random numbers: one key, problem, schedule and
//! base batch size) can run as a group ([`run_group`]): the loop steps them together and makes
//! each step's draw once for all of them, so each record is bitwise the run's own; a lone run
//! is a group of one, on the same loop.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::errors::{CoreError, CoreResult};
use crate::jumps::{Jump, LinearRule, Segment};
use crate::linalg::norm;
use crate::optimizers::{Optimizer, State};
use crate::problems::{Oracle, Problem, Sampling, MAX_DRAWN_BATCH};
use crate::real::Real;
use crate::rng::NormalStream;
use crate::schedules::Schedule;
use crate::simd::{self, Level};
use crate::targets::{StopReason, Target};

/// The largest SFO a record holds: the `sfo` column is int64.
pub const MAX_SFO: u64 = i64::MAX as u64;

/// The inputs of one run, computed in the float type `T` of its problem ([`crate::real`]).
#[derive(Debug, Clone, Copy)]
pub struct RunSpec<'a, T: Real = f64> {
    /// Problem.
    pub problem: &'a Problem<T>,
    /// Step rule.
    pub optimizer: &'a Optimizer,
    /// Schedules of η and b.
    pub schedule: &'a Schedule,
    /// Stopping rule.
    pub target: &'a Target,
    /// Base batch size `b0 >= 1`.
    pub batch_size: usize,
    /// Base learning rate `η0 > 0`.
    pub learning_rate: f64,
    /// The run's random key ([`crate::rng::run_key`], or [`crate::rng::crn_key`] with common
    /// random numbers).
    pub key: u64,
    /// Record a trajectory every this many steps (0: never).
    pub trajectory_every: u64,
    /// What a trajectory records.
    pub trajectory_metrics: TrajectoryMetrics,
    /// Step by step, or exact jumps between checkpoints ([`crate::jumps`]).
    pub mode: RunMode,
    /// The decay τ in (0, 1) of the iterate average the checks read (module docs); `None`:
    /// checks read the iterate.
    pub weight_averaging: Option<f64>,
    /// `problem.loss(problem.x0())` when the caller has it (a sweep computes it once per
    /// problem: on a finite sum it is a pass over the whole data set); `None`: the run computes it.
    pub initial_loss: Option<f64>,
}

/// The bias-corrected exponentially weighted average of a run's iterates (module docs).
struct Average<T: Real> {
    tau: T,
    weight: T,
    /// `m_k`.
    sum: Vec<T>,
    /// `x̄_k`, filled when read.
    point: Vec<T>,
    /// `τ^k`, in `f64` so the correction does not lose digits in a `f32` run.
    decay: f64,
    tau_f64: f64,
}

impl<T: Real> Average<T> {
    fn new(tau: f64, dim: usize) -> Self {
        Self {
            tau: T::from_f64(tau),
            weight: T::from_f64(1.0 - tau),
            sum: vec![T::ZERO; dim],
            point: vec![T::ZERO; dim],
            decay: 1.0,
            tau_f64: tau,
        }
    }

    /// Fold in the iterate after a step.
    fn update(&mut self, x: &[T]) {
        for (m, &xi) in self.sum.iter_mut().zip(x) {
            *m = self.tau * *m + self.weight * xi;
        }
        self.decay *= self.tau_f64;
    }

    /// `x̄_t`: the iterate itself at step 0, else the corrected average.
    fn read<'a>(&'a mut self, x: &'a [T], t: u64) -> &'a [T] {
        if t == 0 {
            return x;
        }
        let scale = T::from_f64(1.0 / (1.0 - self.decay));
        for (p, &m) in self.point.iter_mut().zip(&self.sum) {
            *p = m * scale;
        }
        &self.point
    }
}

/// What a trajectory records at each of its steps `t` (multiples of `trajectory_every`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrajectoryMetrics {
    /// The exact loss `f(x_t)` ([`RunRecord::trajectory`]).
    pub loss: bool,
    /// The exact full-gradient norm `‖∇f(x_t)‖` ([`RunRecord::grad_norm_trajectory`]).
    pub grad_norm: bool,
}

impl TrajectoryMetrics {
    /// The loss only: what trajectories held before the gradient norm could be recorded.
    pub const LOSS: Self = Self {
        loss: true,
        grad_norm: false,
    };
    /// The loss and the full-gradient norm.
    pub const BOTH: Self = Self {
        loss: true,
        grad_norm: true,
    };
    /// The names of the metrics, as `critbatch.plan.TRAJECTORY_METRICS` spells them.
    pub const NAMES: &'static [&'static str] = &["loss", "grad_norm"];

    /// The metrics `names` lists: each of [`Self::NAMES`] at most once, at least one of them.
    ///
    /// # Errors
    /// An unknown name, a repeated one, or none (field `trajectory_metrics`).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> CoreResult<Self> {
        let mut out = Self {
            loss: false,
            grad_norm: false,
        };
        for name in names {
            let name = name.as_ref();
            let flag = match name {
                "loss" => &mut out.loss,
                "grad_norm" => &mut out.grad_norm,
                _ => {
                    return Err(CoreError::UnknownOption {
                        field: "trajectory_metrics".into(),
                        got: name.into(),
                        allowed: Self::NAMES,
                    })
                }
            };
            if *flag {
                return Err(CoreError::invalid(
                    "trajectory_metrics",
                    format!("names {name:?} twice"),
                ));
            }
            *flag = true;
        }
        if out.loss || out.grad_norm {
            Ok(out)
        } else {
            Err(CoreError::invalid(
                "trajectory_metrics",
                format!("must name at least one of {}", Self::NAMES.join(", ")),
            ))
        }
    }
}

impl Default for TrajectoryMetrics {
    fn default() -> Self {
        Self::LOSS
    }
}

/// How a run advances between checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunMode {
    /// One stochastic gradient and one optimizer step at a time.
    #[default]
    Steps,
    /// NQM with SGD, heavy ball or Nesterov only: sample the state at the next checkpoint
    /// directly from its exact Gaussian law ([`crate::jumps`]); the loss is judged at the same
    /// checkpoints, the random stream differs from [`RunMode::Steps`].
    ExactJumps,
}

/// The outcome of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// Steps taken when the run stopped.
    pub steps: u64,
    /// Stochastic gradient evaluations: the sum of the batch sizes used.
    pub sfo: u64,
    /// Why the run stopped.
    pub stop_reason: StopReason,
    /// Exact loss at the stop.
    pub final_loss: f64,
    /// Exact full-gradient norm at the stop.
    pub final_grad_norm: f64,
    /// First coordinate of the final iterate.
    pub final_x0: f64,
    /// Seconds the run took.
    pub wall_time: f64,
    /// The exact loss every `trajectory_every` steps from step 0 (empty unless
    /// [`TrajectoryMetrics::loss`]).
    pub trajectory: Vec<f64>,
    /// The exact full-gradient norm at the same steps (empty unless
    /// [`TrajectoryMetrics::grad_norm`]).
    pub grad_norm_trajectory: Vec<f64>,
}

impl RunRecord {
    /// The target was met.
    #[must_use]
    pub fn reached(&self) -> bool {
        self.stop_reason == StopReason::Reached
    }

    /// The run diverged (a non-finite value or a blown-up loss).
    #[must_use]
    pub fn diverged(&self) -> bool {
        self.stop_reason.is_diverged()
    }
}

/// Execute one run, on the widest SIMD the CPU has ([`crate::simd::level`]; the numbers are the
/// same on every level: no floating-point contraction is allowed, so AVX2 or AVX-512 only change
/// the speed).
///
/// Fails (field `batch_size`) when a step would draw more than [`MAX_DRAWN_BATCH`] indices with
/// replacement or push the SFO past [`MAX_SFO`]; `critbatch.plan` rejects such plans up front,
/// so this is a guard, never a cap.
pub fn run<T: Real>(spec: &RunSpec<'_, T>) -> CoreResult<RunRecord> {
    run_until(spec, &AtomicBool::new(false))
}

/// [`run`], abandoned with [`CoreError::Cancelled`] as soon as `stop` is set (it is read before
/// every step: one relaxed load of a flag that stays in cache, below the noise of a 4-coordinate
/// NQM step; see `sweep.rs` for the measurement).
pub fn run_until<T: Real>(spec: &RunSpec<'_, T>, stop: &AtomicBool) -> CoreResult<RunRecord> {
    run_at(simd::level(), spec, stop)
}

/// [`run_until`] on the step loop compiled for `level` (the portable loop where the CPU lacks
/// it); the tests force every level through here.
pub(crate) fn run_at<T: Real>(
    level: Level,
    spec: &RunSpec<'_, T>,
    stop: &AtomicBool,
) -> CoreResult<RunRecord> {
    match run_group_at(level, std::slice::from_ref(spec), stop) {
        Ok(mut records) => records.pop().flatten().ok_or(CoreError::Cancelled),
        Err(GroupError { error, .. }) => Err(error),
    }
}

/// Why a group of runs failed: the first failing run's position in the group, and its error.
#[derive(Debug)]
pub struct GroupError {
    /// The run's position in the group.
    pub member: usize,
    /// What went wrong.
    pub error: CoreError,
}

/// Runs that share their random streams, stepped together: one draw per step serves them all
/// (the NQM's normals, a finite sum's minibatch rows), applied to each run's own iterate, so
/// every record is bitwise the one the run gives alone ([`run`]). The runs must share the
/// problem, the schedule, the base batch size, the target, the key (common random numbers),
/// the trajectory settings and the mode; they may differ in optimizer, learning rate and
/// weight averaging. A record is `None` for a run that `stop` abandoned.
///
/// Each run's `wall_time` is its share of the group's time: between two steps at which runs
/// stop, the time is split evenly among the runs in flight, so the `wall_time`s add up to the
/// group's time (a group of one: the run's own time).
///
/// # Errors
/// The first run that fails ([`run`]), with its position in the group.
pub fn run_group<T: Real>(
    specs: &[RunSpec<'_, T>],
    stop: &AtomicBool,
) -> Result<Vec<Option<RunRecord>>, GroupError> {
    run_group_at(simd::level(), specs, stop)
}

fn run_group_at<T: Real>(level: Level, specs: &[RunSpec<'_, T>], stop: &AtomicBool) -> GroupResult {
    let Some(lead) = specs.first() else {
        return Ok(Vec::new());
    };
    if lead.mode == RunMode::ExactJumps {
        return specs
            .iter()
            .enumerate()
            .map(|(member, spec)| match run_jumps(spec, stop) {
                Ok(record) => Ok(Some(record)),
                Err(CoreError::Cancelled) => Ok(None),
                Err(error) => Err(GroupError { member, error }),
            })
            .collect();
    }
    #[cfg(target_arch = "x86_64")]
    {
        if level >= Level::Avx512 && Level::Avx512.supported() {
            // SAFETY: the CPU supports AVX-512 F/BW/DQ/VL, checked just above.
            return unsafe { run_avx512(specs, stop) };
        }
        if level >= Level::Avx2 && Level::Avx2.supported() {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { run_avx2(specs, stop) };
        }
    }
    run_loop(specs, stop)
}

type GroupResult = Result<Vec<Option<RunRecord>>, GroupError>;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2<T: Real>(specs: &[RunSpec<'_, T>], stop: &AtomicBool) -> GroupResult {
    run_loop(specs, stop)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn run_avx512<T: Real>(specs: &[RunSpec<'_, T>], stop: &AtomicBool) -> GroupResult {
    run_loop(specs, stop)
}

/// A step at which a group checks or records (`check`, `recording`), and what its runs share.
#[derive(Clone, Copy)]
struct Checkpoint<'a, T: Real> {
    problem: &'a Problem<T>,
    target: &'a Target,
    metrics: TrajectoryMetrics,
    /// The loss at the shared start, and the level above which a run has diverged.
    loss0: f64,
    blow_up: f64,
    t: u64,
    sfo: u64,
    check: bool,
    recording: bool,
    /// The next step would cross the SFO budget.
    sfo_spent: bool,
}

/// One run of a group in flight: what it owns between steps.
struct Flight<'s, 'a, T: Real> {
    /// The run's position in its group.
    member: usize,
    spec: &'s RunSpec<'a, T>,
    x: Vec<T>,
    /// The gradient (scratch).
    g: Vec<T>,
    /// The teacher-student network's hidden units (scratch).
    hidden: Vec<T>,
    state: State<T>,
    average: Option<Average<T>>,
    trajectory: Vec<f64>,
    grad_norm_trajectory: Vec<f64>,
    /// This step's learning rate.
    lr: f64,
    /// Seconds of the group's time attributed to the run so far.
    seconds: f64,
}

impl<'s, 'a, T: Real> Flight<'s, 'a, T> {
    fn new(member: usize, spec: &'s RunSpec<'a, T>) -> CoreResult<Self> {
        let problem = spec.problem;
        let x = problem.x0().to_vec();
        Ok(Self {
            g: vec![T::ZERO; x.len()],
            hidden: Vec::new(),
            state: spec.optimizer.init(&problem.layers())?,
            average: spec
                .weight_averaging
                .map(|tau| Average::<T>::new(tau, x.len())),
            trajectory: Vec::new(),
            grad_norm_trajectory: Vec::new(),
            lr: spec.learning_rate,
            seconds: 0.0,
            x,
            member,
            spec,
        })
    }

    /// The checks and records of step `at.t` (module docs); the record if the run stops here
    /// (its `wall_time` still to be set).
    #[inline(always)]
    fn checkpoint(&mut self, now: &Checkpoint<'_, T>) -> Option<RunRecord> {
        let Checkpoint {
            problem,
            target,
            metrics:
                TrajectoryMetrics {
                    loss: record_loss,
                    grad_norm: record_grad_norm,
                },
            loss0,
            blow_up,
            t,
            sfo,
            check,
            recording,
            sfo_spent,
        } = *now;
        let g = &mut self.g;
        let at: &[T] = match self.average.as_mut() {
            Some(avg) => avg.read(&self.x, t),
            None => &self.x,
        };
        // a check at the budget ends the run whatever else the judge finds, and the record
        // needs the final gradient norm: computed with the loss (one pass on a finite sum)
        let last = check && (t >= target.max_steps || sfo_spent);
        let needs_grad_norm = target.grad_norm_below.is_some();
        let with_grad = (check && (needs_grad_norm || last)) || (recording && record_grad_norm);
        let with_loss = t != 0 && (check || record_loss);
        let loss = match (with_loss, with_grad) {
            (true, true) => problem.loss_and_grad(at, g),
            (true, false) => problem.loss(at),
            (false, with_grad) => {
                if with_grad {
                    problem.grad(at, g);
                }
                // step 0's loss, or NaN on a step that only records the gradient norm
                if t == 0 {
                    loss0
                } else {
                    f64::NAN
                }
            }
        };
        let grad_norm = if with_grad { norm(g) } else { f64::NAN };
        if recording {
            if record_loss {
                self.trajectory.push(loss);
            }
            if record_grad_norm {
                self.grad_norm_trajectory.push(grad_norm);
            }
        }
        if !check {
            return None;
        }
        let stop = target.judge(t, sfo_spent, loss, grad_norm, at, blow_up)?;
        let final_grad_norm = if with_grad {
            grad_norm
        } else {
            problem.grad(at, g);
            norm(g)
        };
        Some(RunRecord {
            steps: t,
            sfo,
            stop_reason: stop.with_final_grad_norm(final_grad_norm),
            final_loss: loss,
            final_grad_norm,
            final_x0: at[0].to_f64(),
            wall_time: f64::NAN,
            trajectory: std::mem::take(&mut self.trajectory),
            grad_norm_trajectory: std::mem::take(&mut self.grad_norm_trajectory),
        })
    }
}

#[inline(always)]
fn run_loop<T: Real>(specs: &[RunSpec<'_, T>], stop: &AtomicBool) -> GroupResult {
    let mut clock = Instant::now();
    let lead = &specs[0];
    let (problem, target, schedule) = (lead.problem, lead.target, lead.schedule);
    let n = problem.n_samples();
    let (without_replacement, with_replacement) = match problem {
        Problem::FiniteSum(p) => (
            p.sampling == Sampling::Shuffle,
            p.sampling == Sampling::WithReplacement,
        ),
        _ => (false, false),
    };
    // the runs in flight (in no particular order: a run that stops leaves by `swap_remove`)
    let mut flights = Vec::with_capacity(specs.len());
    for (member, spec) in specs.iter().enumerate() {
        flights.push(Flight::new(member, spec).map_err(|error| GroupError { member, error })?);
    }
    let fail = |error| GroupError { member: 0, error };
    let mut records: Vec<Option<RunRecord>> = specs.iter().map(|_| None).collect();
    let mut stopped: Vec<(usize, f64, RunRecord)> = Vec::new();
    let mut oracle = Oracle::new(lead.key, problem);
    // the runs share the start, so its loss and the divergence level are the group's
    let loss0 = lead
        .initial_loss
        .unwrap_or_else(|| problem.loss(problem.x0()));
    let blow_up = target.blow_up_level(loss0);
    let (mut t, mut sfo) = (0u64, 0u64);
    loop {
        // b is the group's (shared schedule and base batch); η is each run's
        let mut b = lead.batch_size;
        for f in &mut flights {
            (b, f.lr) = schedule.at(
                f.spec.batch_size,
                f.spec.learning_rate,
                t,
                sfo,
                n,
                without_replacement,
            );
        }
        // the step of batch b would cross the SFO budget: a checkpoint, and the last one
        let sfo_spent = target.sfo_spent(sfo, b);
        let check = target.is_check(t) || sfo_spent;
        let recording = lead.trajectory_every > 0 && t % lead.trajectory_every == 0;
        if check || recording {
            let in_flight = flights.len();
            let now = Checkpoint {
                problem,
                target,
                metrics: lead.trajectory_metrics,
                loss0,
                blow_up,
                t,
                sfo,
                check,
                recording,
                sfo_spent,
            };
            // a loop, not `retain`: a closure would not inherit the SIMD level of this function
            // (the check compiled for the portable level cost 45 % of a float32 NQM run)
            let mut k = 0;
            while k < flights.len() {
                if let Some(record) = flights[k].checkpoint(&now) {
                    let f = flights.swap_remove(k);
                    stopped.push((f.member, f.seconds, record));
                } else {
                    k += 1;
                }
            }
            if !stopped.is_empty() {
                // the time since the last stop, split evenly among the runs in flight during it
                let share = clock.elapsed().as_secs_f64() / in_flight as f64;
                clock = Instant::now();
                for f in &mut flights {
                    f.seconds += share;
                }
                for (member, seconds, mut record) in stopped.drain(..) {
                    record.wall_time = seconds + share;
                    records[member] = Some(record);
                }
                if flights.is_empty() {
                    return Ok(records);
                }
            }
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(records);
        }
        if with_replacement && b > MAX_DRAWN_BATCH {
            return Err(fail(CoreError::invalid(
                "batch_size",
                format!(
                    "reaches {b} at step {t}, more than the {MAX_DRAWN_BATCH} samples a step \
                     draws with replacement"
                ),
            )));
        }
        sfo = add_sfo(sfo, b, t).map_err(fail)?;
        let draw = oracle.draw(problem, b);
        for f in &mut flights {
            // one pass for the NQM under SGD, heavy ball or Nesterov (bitwise these two; see
            // `Nqm::fused_step` for what it saves), two for every other problem and rule
            if !problem.fused_step(&mut f.x, b, draw, f.spec.optimizer, &mut f.state, f.lr) {
                problem.stochastic_grad_on(&f.x, b, draw, &mut f.hidden, &mut f.g);
                f.spec.optimizer.step(&mut f.state, &mut f.x, &f.g, f.lr);
            }
            if let Some(avg) = f.average.as_mut() {
                avg.update(&f.x);
            }
        }
        t += 1;
    }
}

/// `sfo + b` after the step `t`, or an error past [`MAX_SFO`] (`critbatch.plan` rejects such plans
/// up front, so this is a guard, never a cap).
#[inline(always)]
fn add_sfo(sfo: u64, b: usize, t: u64) -> CoreResult<u64> {
    sfo.checked_add(b as u64)
        .filter(|total| *total <= MAX_SFO)
        .ok_or_else(|| {
            CoreError::invalid(
                "batch_size",
                format!("({b} at step {t}) takes the SFO past {MAX_SFO} (2^63 - 1)"),
            )
        })
}

/// The exact-jump loop: from checkpoint to checkpoint, the NQM state is drawn from its exact
/// law (see [`crate::jumps`]); the checks, the stop rule and the SFO are those of the step loop.
/// The laws are computed in `f64`, so the problem must be `f64` too.
fn run_jumps<T: Real>(spec: &RunSpec<'_, T>, stop: &AtomicBool) -> CoreResult<RunRecord> {
    let started = Instant::now();
    let Some(problem) = (spec.problem as &dyn Any).downcast_ref::<Problem>() else {
        return Err(CoreError::invalid(
            "mode",
            format!("exact jumps compute in float64, not {}", T::DTYPE),
        ));
    };
    let (Problem::Nqm(nqm), Some(rule)) = (problem, LinearRule::of(spec.optimizer)) else {
        return Err(CoreError::invalid(
            "mode",
            "exact jumps need an NQM problem and SGD, heavy ball or Nesterov",
        ));
    };
    if spec.trajectory_every > 0 {
        return Err(CoreError::invalid(
            "trajectory_every",
            "must be 0 with exact jumps (the state exists only at the checkpoints)",
        ));
    }
    if spec.weight_averaging.is_some() {
        return Err(CoreError::invalid(
            "weight_averaging",
            "is not available with exact jumps (the average needs every step's iterate)",
        ));
    }
    let target = spec.target;
    let mut x = nqm.x0.clone();
    let mut v = vec![0.0; x.len()];
    let mut g = vec![0.0; x.len()];
    let mut noise = NormalStream::<f64>::new(spec.key);
    let loss0 = problem.loss(&x);
    let blow_up = target.blow_up_level(loss0);
    let (mut t, mut sfo) = (0u64, 0u64);
    // the last interval's segments and jump: a constant schedule reuses one jump throughout
    let mut cached: Option<(Vec<Segment>, bool, Jump)> = None;
    loop {
        let loss = if t == 0 { loss0 } else { problem.loss(&x) };
        problem.grad(&x, &mut g);
        let grad_norm = norm(&g);
        let (b, _) = spec
            .schedule
            .at(spec.batch_size, spec.learning_rate, t, sfo, None, false);
        let sfo_spent = target.sfo_spent(sfo, b);
        if let Some(reason) = target.judge(t, sfo_spent, loss, grad_norm, &x, blow_up) {
            return Ok(RunRecord {
                steps: t,
                sfo,
                stop_reason: reason.with_final_grad_norm(grad_norm),
                final_loss: loss,
                final_grad_norm: grad_norm,
                final_x0: x[0],
                wall_time: started.elapsed().as_secs_f64(),
                trajectory: Vec::new(),
                grad_norm_trajectory: Vec::new(),
            });
        }
        if stop.load(Ordering::Relaxed) {
            return Err(CoreError::Cancelled);
        }
        // the steps to the next checkpoint, grouped into segments of constant (b, η)
        let mut next = ((t / target.check_every) + 1)
            .saturating_mul(target.check_every)
            .min(target.max_steps);
        let mut segments: Vec<Segment> = Vec::new();
        for s in t..next {
            let (b, lr) =
                spec.schedule
                    .at(spec.batch_size, spec.learning_rate, s, sfo, None, false);
            if target.sfo_spent(sfo, b) {
                // the step that would cross the SFO budget is not taken: a checkpoint
                next = s;
                break;
            }
            sfo = add_sfo(sfo, b, s)?;
            match segments.last_mut() {
                Some(last) if last.batch_size == b && last.learning_rate == lr => last.steps += 1,
                _ => segments.push(Segment {
                    batch_size: b,
                    learning_rate: lr,
                    steps: 1,
                }),
            }
        }
        let first = t == 0;
        let reuse = matches!(&cached, Some((seg, f, _)) if *seg == segments && *f == first);
        if !reuse {
            let jump = Jump::new(rule, &nqm.h, &nqm.c, &segments, first);
            cached = Some((segments, first, jump));
        }
        if let Some((_, _, jump)) = &cached {
            jump.apply(&mut x, &mut v, rule.has_buffer(), || noise.next_normal());
        }
        t = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problems::Nqm;
    use crate::schedules::{Rule, RuleKind};

    fn run_ok(spec: &RunSpec<'_>) -> RunRecord {
        run(spec).unwrap()
    }

    fn nqm() -> Problem {
        let h: Vec<f64> = (1..=10).map(|i| 1.0 / i as f64).collect();
        Problem::Nqm(Nqm::new(h.clone(), h, vec![1.0; 10]))
    }

    fn target(loss_below: Option<f64>, max_steps: u64) -> Target {
        Target {
            loss_below,
            loss_gap_below: None,
            min_loss: None,
            grad_norm_below: None,
            position_below: None,
            check_every: 1,
            max_steps,
            max_sfo: None,
            max_epochs: None,
            divergence_factor: 1e6,
        }
    }

    fn spec<'a>(p: &'a Problem, s: &'a Schedule, t: &'a Target, lr: f64) -> RunSpec<'a> {
        RunSpec {
            problem: p,
            optimizer: &Optimizer::Sgd,
            schedule: s,
            target: t,
            batch_size: 4,
            learning_rate: lr,
            key: 1,
            trajectory_every: 0,
            trajectory_metrics: TrajectoryMetrics::LOSS,
            mode: RunMode::Steps,
            weight_averaging: None,
            initial_loss: None,
        }
    }

    const ADAM: Optimizer = Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        amsgrad: false,
    };

    /// Step rules linear in (iterate, gradient): what exact jumps and the gradient twin need.
    const LINEAR: [Optimizer; 3] = [
        Optimizer::Sgd,
        Optimizer::HeavyBall {
            momentum: 0.9,
            dampening: 0.2,
        },
        Optimizer::Nesterov { momentum: 0.5 },
    ];

    /// Least squares on `n` deterministic samples of `d` features, with an L2 term.
    fn least_squares(d: usize, n: usize, sampling: Sampling) -> Problem {
        use crate::problems::{FiniteSum, Model};
        Problem::FiniteSum(FiniteSum {
            features: (0..n * d).map(|i| (i as f64 * 0.37).sin()).collect(),
            targets: (0..n).map(|j| (j as f64 * 0.11).cos()).collect(),
            n,
            n_features: d,
            l2: 0.01,
            sampling,
            model: Model::LeastSquares,
            x0: vec![0.0; d],
        })
    }

    /// Everything a record holds but its wall time, as bits.
    fn bits(r: &RunRecord) -> (Vec<u64>, StopReason) {
        let floats = [r.final_loss, r.final_grad_norm, r.final_x0];
        let mut v: Vec<u64> = floats
            .iter()
            .chain(&r.trajectory)
            .chain(&r.grad_norm_trajectory)
            .map(|x| x.to_bits())
            .collect();
        v.extend([r.steps, r.sfo, r.trajectory.len() as u64]);
        (v, r.stop_reason)
    }

    #[test]
    fn every_simd_level_the_cpu_has_gives_bitwise_the_same_records() {
        let lsq = least_squares(13, 50, Sampling::WithReplacement);
        let h: Vec<f64> = (1..=37).map(|i| 1.0 / i as f64).collect();
        let nqm = Problem::Nqm(Nqm::new(h.clone(), h, vec![1.0; 37]));
        let t = target(Some(1e-3), 300);
        let never = AtomicBool::new(false);
        for problem in [&nqm, &lsq] {
            for optimizer in [&Optimizer::Sgd, &ADAM] {
                let mut sp = spec(problem, &Schedule::CONSTANT, &t, 0.05);
                sp.optimizer = optimizer;
                sp.trajectory_every = 1;
                sp.trajectory_metrics = TrajectoryMetrics::BOTH;
                let portable = bits(&run_at(Level::Portable, &sp, &never).unwrap());
                for level in Level::ALL.into_iter().filter(|l| l.supported()) {
                    let r = run_at(level, &sp, &never).unwrap();
                    assert_eq!(bits(&r), portable, "{level:?} {optimizer:?}");
                }
            }
        }
    }

    #[test]
    fn a_group_gives_each_run_bitwise_its_solo_record_on_every_simd_level() {
        // runs of one key, problem and schedule that stop at different steps in different ways
        // (reached, budget, diverged), with different rules, learning rates and averaging
        let lsq = least_squares(13, 50, Sampling::Shuffle);
        let wells = Problem::DoubleWell(crate::problems::DoubleWell::new(
            0.5,
            1.0,
            vec![0.3; 5],
            0.4,
            8.0,
        ));
        let t = target(Some(0.05), 200);
        let never = AtomicBool::new(false);
        let rules = [Optimizer::Sgd, LINEAR[1].clone(), LINEAR[2].clone(), ADAM];
        let mut ends = std::collections::BTreeSet::new();
        for problem in [&nqm(), &lsq, &wells] {
            let mut specs = Vec::new();
            for (k, lr) in [0.02, 0.3, 1.5, 40.0, 0.1].into_iter().enumerate() {
                let mut sp = spec(problem, &Schedule::CONSTANT, &t, lr);
                sp.optimizer = &rules[k % rules.len()];
                sp.weight_averaging = (k == 4).then_some(0.9);
                sp.trajectory_every = 3;
                sp.trajectory_metrics = TrajectoryMetrics::BOTH;
                specs.push(sp);
            }
            let solo: Vec<_> = specs.iter().map(|sp| bits(&run(sp).unwrap())).collect();
            for r in specs.iter().map(|sp| run(sp).unwrap()) {
                ends.insert((r.steps, r.stop_reason as u8));
            }
            for level in Level::ALL.into_iter().filter(|l| l.supported()) {
                let group = run_group_at(level, &specs, &never).unwrap();
                let group: Vec<_> = group.iter().map(|r| bits(r.as_ref().unwrap())).collect();
                assert_eq!(group, solo, "{level:?}");
            }
        }
        // runs left the groups at many steps, by every way a run ends
        let reasons: std::collections::BTreeSet<u8> = ends.iter().map(|e| e.1).collect();
        assert!(ends.len() >= 6 && reasons.len() == 3, "{ends:?}");
    }

    #[test]
    fn a_group_shares_its_time_and_keeps_what_finished_before_a_stop() {
        let p = nqm();
        let t = target(None, 20_000);
        // the first run diverges within a few steps, the others run to the budget
        let specs: Vec<_> = [40.0, 0.2, 0.3]
            .map(|lr| spec(&p, &Schedule::CONSTANT, &t, lr))
            .to_vec();
        let records = run_group(&specs, &AtomicBool::new(false)).unwrap();
        let times: Vec<f64> = records
            .iter()
            .map(|r| r.as_ref().unwrap().wall_time)
            .collect();
        // the first run's share is a third of the time to step 10: less than the others'
        assert!(
            times.iter().all(|&s| s > 0.0) && times[0] < times[1],
            "{times:?}"
        );
        let stopped = run_group(&specs, &AtomicBool::new(true)).unwrap();
        assert!(stopped.iter().all(Option::is_none));
    }

    /// Each linear rule and its `wrap`ped form give bitwise the same records, trajectories of the
    /// loss and the gradient norm included, over [`fused_grid`] on every SIMD level the CPU has;
    /// the grid's runs end in every way a run can.
    fn fused_and_two_pass<T: Real>(problem: &Problem<T>, wrap: impl Fn(&Optimizer) -> Optimizer) {
        let never = AtomicBool::new(false);
        let mut seen = std::collections::BTreeSet::new();
        let rules = [
            Optimizer::Sgd,
            Optimizer::HeavyBall {
                momentum: 0.9,
                dampening: 0.2,
            },
            // no momentum: torch's plain SGD, with a buffer that stays untouched
            Optimizer::HeavyBall {
                momentum: 0.0,
                dampening: 0.5,
            },
            Optimizer::Nesterov { momentum: 0.5 },
            Optimizer::Nesterov { momentum: 0.0 },
        ];
        let growing = Schedule {
            batch: Rule {
                kind: RuleKind::Geometric,
                every: 7.0,
                rate: 2.0,
                ..Rule::CONSTANT
            },
            warmup: Some(crate::schedules::Warmup {
                steps: 10,
                start: 0.1,
            }),
            ..Schedule::CONSTANT
        };
        for rule in &rules {
            let wrapped = wrap(rule);
            for (b, lr, check_every, max_sfo, averaging, schedule) in fused_grid(&growing) {
                let mut t = target(Some(0.15), 60);
                t.check_every = check_every;
                t.max_sfo = max_sfo;
                let mut sp = RunSpec {
                    problem,
                    optimizer: rule,
                    schedule,
                    target: &t,
                    batch_size: b,
                    learning_rate: lr,
                    key: 3,
                    trajectory_every: 1,
                    trajectory_metrics: TrajectoryMetrics::BOTH,
                    mode: RunMode::Steps,
                    weight_averaging: averaging,
                    initial_loss: None,
                };
                for level in Level::ALL.into_iter().filter(|l| l.supported()) {
                    sp.optimizer = rule;
                    let fused = run_at(level, &sp, &never).unwrap();
                    seen.insert(fused.stop_reason.as_str());
                    sp.optimizer = &wrapped;
                    let two_pass = run_at(level, &sp, &never).unwrap();
                    assert_eq!(
                        bits(&fused),
                        bits(&two_pass),
                        "{} {level:?} {rule:?} b={b} lr={lr} every {check_every} sfo \
                         {max_sfo:?} average {averaging:?}",
                        T::DTYPE
                    );
                }
            }
        }
        let all: std::collections::BTreeSet<_> = StopReason::ALL.map(StopReason::as_str).into();
        assert_eq!(seen, all, "{}", T::DTYPE);
    }

    /// The settings [`fused_and_two_pass`] crosses: batch sizes, learning rates (the last two
    /// diverge), check intervals, SFO budgets, weight averaging and schedules.
    #[allow(clippy::type_complexity)]
    fn fused_grid(
        growing: &Schedule,
    ) -> Vec<(usize, f64, u64, Option<u64>, Option<f64>, &Schedule)> {
        let mut grid = Vec::new();
        for b in [1, 5] {
            for lr in [0.3, 3.0, 1e200] {
                for check_every in [1, 4] {
                    for max_sfo in [None, Some(97)] {
                        for averaging in [None, Some(0.9)] {
                            for schedule in [&Schedule::CONSTANT, growing] {
                                grid.push((b, lr, check_every, max_sfo, averaging, schedule));
                            }
                        }
                    }
                }
            }
        }
        grid
    }

    #[test]
    fn the_fused_nqm_step_gives_bitwise_the_records_of_two_passes() {
        // Clipping at an infinite norm changes no gradient (torch's coefficient is never below
        // 1), but it is no linear rule, so it runs the same rule the two-pass way: the
        // stochastic gradient, then the step.
        let unclipped = |rule: &Optimizer| Optimizer::Clipped {
            max_grad_norm: f64::INFINITY,
            rule: Box::new(rule.clone()),
        };
        let h: Vec<f64> = (1..=37).map(|i| 1.0 / i as f64).collect();
        let c: Vec<f64> = (1..=37).map(|i| 0.5 + 0.1 * i as f64).collect();
        let x0: Vec<f64> = (1..=37).map(|i| (i as f64 * 0.7).sin()).collect();
        let p = Problem::Nqm(Nqm::new(h, c, x0));
        fused_and_two_pass(&p, unclipped);
        fused_and_two_pass(&p.cast::<f32>(), unclipped);
    }

    #[test]
    fn noiseless_exact_jumps_reproduce_the_step_loop() {
        let h: Vec<f64> = (1..=10).map(|i| 1.0 / i as f64).collect();
        let p = Problem::Nqm(Nqm::new(h.clone(), vec![0.0; 10], vec![1.0; 10]));
        let mut t = target(Some(0.05), 10_000);
        // a warm-up changes η at every step of its ramp: jumps of one step each, still exact
        let warm = Schedule {
            warmup: Some(crate::schedules::Warmup {
                steps: 23,
                start: 0.1,
            }),
            ..Schedule::CONSTANT
        };
        for (check_every, schedule) in [
            (1, &Schedule::CONSTANT),
            (5, &Schedule::CONSTANT),
            (64, &Schedule::CONSTANT),
            (5, &warm),
            (64, &warm),
        ] {
            t.check_every = check_every;
            for optimizer in LINEAR {
                let mut sp = spec(&p, schedule, &t, 0.3);
                sp.optimizer = &optimizer;
                let steps = run_ok(&sp);
                sp.mode = RunMode::ExactJumps;
                let jumps = run_ok(&sp);
                assert_eq!((steps.steps, steps.sfo), (jumps.steps, jumps.sfo));
                assert_eq!(steps.stop_reason, jumps.stop_reason);
                assert!((steps.final_loss - jumps.final_loss).abs() <= 1e-12 * steps.final_loss);
            }
        }
    }

    #[test]
    fn exact_jumps_refuse_what_they_cannot_do() {
        let (p, t) = (nqm(), target(Some(0.5), 100));
        let mut sp = spec(&p, &Schedule::CONSTANT, &t, 0.1);
        sp.mode = RunMode::ExactJumps;
        sp.optimizer = &ADAM;
        assert!(run(&sp).unwrap_err().to_string().contains("exact jumps"));
        sp.optimizer = &Optimizer::Sgd;
        sp.trajectory_every = 3;
        assert!(run(&sp)
            .unwrap_err()
            .to_string()
            .contains("trajectory_every"));
    }

    #[test]
    fn reaches_a_loose_target_and_counts_sfo() {
        let (p, t) = (nqm(), target(Some(0.5), 10_000));
        let r = run_ok(&spec(&p, &Schedule::CONSTANT, &t, 0.5));
        assert!(r.reached() && !r.diverged() && r.final_loss <= 0.5);
        assert_eq!(r.sfo, 4 * r.steps);
    }

    #[test]
    fn a_huge_learning_rate_is_recorded_as_diverged() {
        let (p, t) = (nqm(), target(Some(1e-3), 10_000));
        let r = run_ok(&spec(&p, &Schedule::CONSTANT, &t, 50.0));
        assert!(r.diverged() && !r.reached() && r.steps < 100);
        assert_eq!(r.stop_reason, StopReason::DivergedBlowup);
    }

    #[test]
    fn the_budget_stops_a_run_that_cannot_reach() {
        let (p, t) = (nqm(), target(Some(-1.0), 37));
        let r = run_ok(&spec(&p, &Schedule::CONSTANT, &t, 0.1));
        assert_eq!(r.stop_reason, StopReason::Budget);
        assert_eq!(r.steps, 37);
    }

    #[test]
    fn sfo_follows_a_growing_batch_schedule() {
        let (p, t) = (nqm(), target(None, 6));
        let s = Schedule {
            batch: Rule {
                kind: RuleKind::Geometric,
                every: 2.0,
                rate: 2.0,
                ..Rule::CONSTANT
            },
            ..Schedule::CONSTANT
        };
        let r = run_ok(&spec(&p, &s, &t, 0.1));
        assert_eq!(r.sfo, 4 + 4 + 8 + 8 + 16 + 16);
    }

    #[test]
    fn the_same_key_reproduces_the_run() {
        let (p, t) = (nqm(), target(Some(0.05), 100_000));
        let mut sp = spec(&p, &Schedule::CONSTANT, &t, 0.3);
        sp.trajectory_every = 7;
        let (mut a, mut b) = (run_ok(&sp), run_ok(&sp));
        a.wall_time = 0.0;
        b.wall_time = 0.0;
        assert_eq!(a, b);
        assert_eq!(a.trajectory.len() as u64, a.steps / 7 + 1);
    }

    #[test]
    fn final_x0_is_the_first_coordinate_of_the_final_iterate() {
        // Noise-free, so one SGD step moves x_i to x_i (1 - η h_i): every coordinate differs.
        let p = Problem::Nqm(Nqm::new(
            vec![1.0, 0.5, 0.25],
            vec![0.0; 3],
            vec![2.0, -3.0, 5.0],
        ));
        let t = target(None, 1);
        let r = run_ok(&spec(&p, &Schedule::CONSTANT, &t, 0.5));
        assert_eq!((r.steps, r.stop_reason), (1, StopReason::Budget));
        assert_eq!(r.final_x0, 2.0 * (1.0 - 0.5 * 1.0));
        assert_ne!(r.final_x0, 5.0 * (1.0 - 0.5 * 0.25));
    }

    #[test]
    fn a_huge_gradient_has_a_finite_norm_and_a_non_finite_one_is_divergence() {
        // |∇f| = 1e160: the sum of squares overflows, the norm does not.
        let p = Problem::Nqm(Nqm::new(vec![1e160, 1.0], vec![0.0; 2], vec![1.0; 2]));
        let t = target(None, 1);
        let r = run_ok(&spec(&p, &Schedule::CONSTANT, &t, 1e-200));
        assert_eq!(r.stop_reason, StopReason::Budget);
        assert!((r.final_grad_norm / 1e160 - 1.0).abs() < 1e-15);
        // A loss that is already infinite at the start is non-finite, not a blow-up.
        let p = Problem::Nqm(Nqm::new(vec![f64::MAX, 1.0], vec![0.0; 2], vec![2.0; 2]));
        let r = run_ok(&spec(&p, &Schedule::CONSTANT, &t, 0.1));
        assert_eq!((r.steps, r.stop_reason), (0, StopReason::DivergedNonfinite));
    }

    #[test]
    fn a_set_stop_flag_abandons_the_run_before_its_next_step() {
        let (p, t) = (nqm(), target(Some(-1.0), 1_000_000_000));
        let sp = spec(&p, &Schedule::CONSTANT, &t, 0.1);
        let stop = AtomicBool::new(true);
        assert_eq!(run_until(&sp, &stop).unwrap_err(), CoreError::Cancelled);
        // A run that is done at step 0 is done before the flag is read.
        let t = target(Some(1e9), 10);
        let r = run_until(&spec(&p, &Schedule::CONSTANT, &t, 0.1), &stop).unwrap();
        assert_eq!((r.steps, r.stop_reason), (0, StopReason::Reached));
    }

    #[test]
    fn batch_sizes_past_the_limits_are_errors_not_caps() {
        let p = nqm();
        let t = target(None, 3);
        let mut sp = spec(&p, &Schedule::CONSTANT, &t, 0.1);
        // 2^25 is used as it is: SFO 3 · 2^25.
        sp.batch_size = 1 << 25;
        assert_eq!(run_ok(&sp).sfo, 3 << 25);
        // A batch whose SFO would not fit an int64 column is refused.
        sp.batch_size = 1 << 62;
        let e = run(&sp).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("batch_size (4611686018427387904 at step 1) takes the SFO past"),
            "{e}"
        );
    }

    #[test]
    fn exact_jumps_report_x0_and_allow_an_sfo_of_exactly_the_limit() {
        // Noise-free SGD: x_i after T steps is x0_i (1 - η h_i)^T, so every coordinate differs.
        let p = Problem::Nqm(Nqm::new(vec![1.0, 0.5], vec![0.0; 2], vec![2.0, -3.0]));
        let t = target(None, 3);
        let mut sp = spec(&p, &Schedule::CONSTANT, &t, 0.5);
        sp.mode = RunMode::ExactJumps;
        let r = run_ok(&sp);
        assert_eq!((r.steps, r.stop_reason), (3, StopReason::Budget));
        assert!((r.final_x0 - 2.0 * 0.125).abs() < 1e-15, "{}", r.final_x0);
        // One step of a batch of 2^63 - 1 reaches the SFO limit and is allowed; two are not.
        let t = target(None, 1);
        let mut sp = spec(&p, &Schedule::CONSTANT, &t, 0.5);
        sp.mode = RunMode::ExactJumps;
        sp.batch_size = MAX_SFO as usize;
        assert_eq!(run_ok(&sp).sfo, MAX_SFO);
        let t = target(None, 2);
        let mut sp = spec(&p, &Schedule::CONSTANT, &t, 0.5);
        sp.mode = RunMode::ExactJumps;
        sp.batch_size = MAX_SFO as usize;
        assert!(run(&sp)
            .unwrap_err()
            .to_string()
            .contains("takes the SFO past"));
    }

    #[test]
    fn checks_read_the_bias_corrected_average_of_the_iterates() {
        // Noise-free SGD on h = 1 from x0 = 1 with η = 0.5: x_k = 0.5^k, and the average read
        // at step k is Σ_{j=1..k} (1 - τ) τ^(k-j) x_j / (1 - τ^k) (x̄_0 = x_0).
        let p = Problem::Nqm(Nqm::new(vec![1.0], vec![0.0], vec![1.0]));
        let t = target(None, 12);
        let tau = 0.8;
        let mut sp = spec(&p, &Schedule::CONSTANT, &t, 0.5);
        sp.trajectory_every = 1;
        sp.weight_averaging = Some(tau);
        let r = run_ok(&sp);
        let average = |k: i32| -> f64 {
            if k == 0 {
                return 1.0;
            }
            let sum: f64 = (1..=k)
                .map(|j| (1.0 - tau) * tau.powi(k - j) * 0.5f64.powi(j))
                .sum();
            sum / (1.0 - tau.powi(k))
        };
        assert_eq!(r.trajectory.len(), 13);
        for (k, &l) in r.trajectory.iter().enumerate() {
            let want = 0.5 * average(k as i32).powi(2);
            assert!((l - want).abs() <= 1e-13 * want, "step {k}: {l} vs {want}");
        }
        assert!((r.final_x0 - average(12)).abs() <= 1e-13 * average(12));
        // the same in float32, to float32's precision
        let p32 = p.cast::<f32>();
        let sp32 = RunSpec {
            problem: &p32,
            optimizer: sp.optimizer,
            schedule: sp.schedule,
            target: sp.target,
            batch_size: sp.batch_size,
            learning_rate: sp.learning_rate,
            key: sp.key,
            trajectory_every: 0,
            trajectory_metrics: TrajectoryMetrics::LOSS,
            mode: RunMode::Steps,
            weight_averaging: Some(tau),
            initial_loss: None,
        };
        let r32 = run(&sp32).unwrap();
        assert!((r32.final_x0 - average(12)).abs() <= 1e-5 * average(12));
        // exact jumps keep no average
        sp.trajectory_every = 0;
        sp.mode = RunMode::ExactJumps;
        assert!(run(&sp)
            .unwrap_err()
            .to_string()
            .contains("weight_averaging"));
    }

    #[test]
    fn the_trajectory_records_the_loss_and_the_grad_norm_after_each_recorded_step() {
        // Noise-free: x_{t,i} = x0_i (1 - η h_i)^t, so the loss is Σ ½ h_i x0_i² (1 - η h_i)^{2t}
        // and ‖∇f(x_t)‖² = Σ h_i² x0_i² (1 - η h_i)^{2t}.
        let p = Problem::Nqm(Nqm::new(vec![1.0, 0.5], vec![0.0; 2], vec![2.0, -3.0]));
        let t = target(None, 2);
        let mut sp = spec(&p, &Schedule::CONSTANT, &t, 0.5);
        sp.trajectory_every = 1;
        let r = run_ok(&sp);
        let loss = |s: i32| 0.5 * 4.0 * 0.5f64.powi(2 * s) + 0.5 * 0.5 * 9.0 * 0.75f64.powi(2 * s);
        assert_eq!(r.trajectory.len(), 3);
        assert!(r.grad_norm_trajectory.is_empty());
        for (s, &l) in r.trajectory.iter().enumerate() {
            assert!((l - loss(s as i32)).abs() < 1e-12, "step {s}: {l}");
        }
        // only the gradient norm, every second step of 7: steps 0, 2, 4, 6
        let t = target(None, 7);
        let mut sp = spec(&p, &Schedule::CONSTANT, &t, 0.25);
        sp.trajectory_every = 2;
        sp.trajectory_metrics = TrajectoryMetrics::from_names(&["grad_norm"]).unwrap();
        let r = run_ok(&sp);
        let squared = |s: i32| 4.0 * 0.75f64.powi(2 * s) + 0.25 * 9.0 * 0.875f64.powi(2 * s);
        assert!(r.trajectory.is_empty());
        assert_eq!(r.grad_norm_trajectory.len(), 4);
        for (j, &g) in r.grad_norm_trajectory.iter().enumerate() {
            let want = squared(2 * j as i32);
            assert!((g * g - want).abs() <= 1e-14 * want, "step {}: {g}", 2 * j);
        }
    }

    #[test]
    fn trajectory_metrics_are_read_from_their_names() {
        let grad_only = TrajectoryMetrics {
            loss: false,
            grad_norm: true,
        };
        assert_eq!(
            TrajectoryMetrics::from_names(&["loss"]),
            Ok(TrajectoryMetrics::LOSS)
        );
        assert_eq!(
            TrajectoryMetrics::from_names(&["grad_norm", "loss"]),
            Ok(TrajectoryMetrics::BOTH)
        );
        assert_eq!(TrajectoryMetrics::from_names(&["grad_norm"]), Ok(grad_only));
        for (names, message) in [
            (
                &["loss", "norm"][..],
                "trajectory_metrics must be one of loss, grad_norm, got \"norm\"",
            ),
            (
                &["loss", "loss"][..],
                "trajectory_metrics names \"loss\" twice",
            ),
            (
                &[][..],
                "trajectory_metrics must name at least one of loss, grad_norm",
            ),
        ] {
            let e = TrajectoryMetrics::from_names(names).unwrap_err();
            assert_eq!(e.to_string(), message);
        }
    }

    #[test]
    fn the_grad_norm_trajectory_is_the_loss_of_the_gradient_twin() {
        // With y = √h ⊙ x the NQM (h, c, x0) maps onto the NQM (h, h ⊙ c, √h ⊙ x0) fed the same
        // normals, whose loss ½ Σ h_i y_i² is ½ ‖∇f(x)‖² (critbatch.testing.bounds, "twin").
        let h: Vec<f64> = (1..=10).map(|i| 1.0 / i as f64).collect();
        let c: Vec<f64> = (1..=10).map(|i| 0.5 + 0.1 * i as f64).collect();
        let x0: Vec<f64> = (1..=10).map(|i| (i as f64 * 0.7).sin()).collect();
        let p = Problem::Nqm(Nqm::new(h.clone(), c.clone(), x0.clone()));
        let twin = Problem::Nqm(Nqm::new(
            h.clone(),
            h.iter().zip(&c).map(|(h, c)| h * c).collect(),
            h.iter().zip(&x0).map(|(h, x)| h.sqrt() * x).collect(),
        ));
        let t = target(None, 200);
        for optimizer in LINEAR {
            let mut sp = spec(&p, &Schedule::CONSTANT, &t, 0.3);
            sp.optimizer = &optimizer;
            sp.trajectory_every = 1;
            sp.trajectory_metrics = TrajectoryMetrics::BOTH;
            let r = run_ok(&sp);
            sp.problem = &twin;
            sp.trajectory_metrics = TrajectoryMetrics::LOSS;
            let w = run_ok(&sp);
            assert_eq!(r.grad_norm_trajectory.len(), 201);
            assert_eq!(w.trajectory.len(), 201);
            for (s, (g, l)) in r.grad_norm_trajectory.iter().zip(&w.trajectory).enumerate() {
                // the two runs round differently; the contraction keeps it to a few ulps a step
                assert!(
                    (0.5 * g * g - l).abs() <= 1e-12 * l,
                    "{optimizer:?} step {s}: {} vs {l}",
                    0.5 * g * g
                );
            }
        }
    }

    #[test]
    fn the_grad_norm_trajectory_is_the_final_grad_norm_of_shorter_runs() {
        // A run's stream depends only on its key, so a run stopped after k steps ends at the
        // iterate x_k of a longer one: its final_grad_norm is the exact ‖∇f(x_k)‖, bit for bit.
        let lsq = least_squares(5, 30, Sampling::Shuffle);
        let mut t = target(None, 12);
        t.check_every = 5;
        let mut sp = spec(&lsq, &Schedule::CONSTANT, &t, 0.05);
        sp.optimizer = &ADAM;
        sp.trajectory_every = 1;
        let loss_only = run_ok(&sp);
        sp.trajectory_metrics = TrajectoryMetrics::BOTH;
        let both = run_ok(&sp);
        // recording the gradient norm changes nothing else in the record
        assert_eq!(
            (both.steps, both.sfo, both.stop_reason, &both.trajectory),
            (
                loss_only.steps,
                loss_only.sfo,
                loss_only.stop_reason,
                &loss_only.trajectory
            )
        );
        assert_eq!(
            [both.final_loss, both.final_grad_norm, both.final_x0].map(f64::to_bits),
            [
                loss_only.final_loss,
                loss_only.final_grad_norm,
                loss_only.final_x0
            ]
            .map(f64::to_bits)
        );
        assert!(loss_only.grad_norm_trajectory.is_empty());
        assert_eq!(both.grad_norm_trajectory.len(), 13);
        for k in 0..=12 {
            let short = target(None, k);
            let mut sp = spec(&lsq, &Schedule::CONSTANT, &short, 0.05);
            sp.optimizer = &ADAM;
            let r = run_ok(&sp);
            assert_eq!(
                r.final_grad_norm.to_bits(),
                both.grad_norm_trajectory[k as usize].to_bits(),
                "step {k}"
            );
        }
    }
}
