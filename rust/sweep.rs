//! Sweeps: many runs in parallel on a rayon pool, results in plan order.
//!
//! Each run's randomness comes from [`run_key`]`(sweep seed, run index)` alone (with common
//! random numbers, [`crn_key`]`(sweep seed, problem, batch size, replicate)`), so the table
//! does not depend on the number of threads, on how rayon splits the work, or on how the plan
//! was cut into chunks.
//!
//! # Design notes: interrupts and progress
//!
//! A sweep runs under a [`Control`]: a stop flag that every run reads before each of its steps
//! ([`crate::run::run_until`]), and a counter of finished runs. Whoever watches the sweep (`py.rs` polls it
//! every 50 ms, taking the GIL only for that) reads the counter for a progress bar and, on
//! Ctrl-C, cancels: the runs in flight return before their next step, the runs not yet started
//! are skipped, and [`Plan::execute_controlled`] gives `None` for both and the records of all the
//! runs that had finished, so a caller can keep them (the store writes them and a rerun runs
//! only the rest). A run's record never depends on the flag: it is either complete or absent.
//!
//! Reading the flag before every step, rather than every few thousand steps, keeps the latency
//! to one step of whatever size (a step of a large finite sum can take milliseconds) and costs
//! one relaxed load of a cache line nobody writes until the end. On 100,000 NQM runs of 20 steps
//! (d = 4, the cheapest step the core has; 2 threads, medians of 5 interleaved processes of 7
//! calls each) the call took 0.2155 s with the check and 0.2135 s without, inside the machine's
//! noise; the polling thread and a progress callback were as cheap (0.160 s against 0.158 s for
//! the code before them, 0.159 s with a callback). A failing run sets the stop flag too, so a
//! bad cell ends the call without waiting for the rest of the plan.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::errors::{CoreError, CoreResult};
use crate::optimizers::Optimizer;
use crate::problems::Problem;
use crate::real::Real;
use crate::rng::{crn_key, run_key};
use crate::run::{run_group, GroupError, RunMode, RunRecord, RunSpec, TrajectoryMetrics};
use crate::schedules::Schedule;
use crate::targets::Target;

/// One row of a plan: which specs, which base values, which run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Index of the run in the whole grid (keys its random streams).
    pub run_index: u64,
    /// Index into the plan's problems.
    pub problem: usize,
    /// Index into the plan's optimizers.
    pub optimizer: usize,
    /// Index into the plan's schedules.
    pub schedule: usize,
    /// Base batch size.
    pub batch_size: usize,
    /// Base learning rate.
    pub learning_rate: f64,
    /// Replicate id (the `seed` column): keys the streams under common random numbers.
    pub replicate: u64,
}

/// The specs of a sweep, shared by its cells; its runs compute in the float type `T` of its
/// problems ([`crate::real`]).
#[derive(Debug, Clone)]
pub struct Plan<T: Real = f64> {
    /// Problems.
    pub problems: Vec<Problem<T>>,
    /// Optimizers.
    pub optimizers: Vec<Optimizer>,
    /// Schedules.
    pub schedules: Vec<Schedule>,
    /// Stopping rule.
    pub target: Target,
    /// Sweep seed.
    pub seed: u64,
    /// Record a trajectory every this many steps (0: never).
    pub trajectory_every: u64,
    /// What a trajectory records (the loss, the full-gradient norm or both).
    pub trajectory_metrics: TrajectoryMetrics,
    /// Step by step, or exact jumps between checkpoints.
    pub mode: RunMode,
    /// The decay of the iterate average the checks read ([`RunSpec::weight_averaging`]).
    pub weight_averaging: Option<f64>,
    /// Key runs by (problem, batch size, replicate), not run index ([`crn_key`]).
    pub common_random_numbers: bool,
    /// Each problem's exact minimum, for `target.loss_gap_below` (empty: none known).
    pub min_losses: Vec<Option<f64>>,
}

impl<T: Real> Plan<T> {
    /// The same plan with its problems in another float type ([`Problem::cast`]).
    #[must_use]
    pub fn cast<U: Real>(&self) -> Plan<U> {
        Plan {
            problems: self.problems.iter().map(Problem::cast).collect(),
            optimizers: self.optimizers.clone(),
            schedules: self.schedules.clone(),
            target: self.target,
            seed: self.seed,
            trajectory_every: self.trajectory_every,
            trajectory_metrics: self.trajectory_metrics,
            mode: self.mode,
            weight_averaging: self.weight_averaging,
            common_random_numbers: self.common_random_numbers,
            min_losses: self.min_losses.clone(),
        }
    }

    /// The random key of a cell's run.
    #[must_use]
    pub fn key(&self, cell: &Cell) -> u64 {
        if self.common_random_numbers {
            crn_key(
                self.seed,
                cell.problem as u64,
                cell.batch_size as u64,
                cell.replicate,
            )
        } else {
            run_key(self.seed, cell.run_index)
        }
    }

    /// The target of each problem ([`Target::for_problem`]).
    ///
    /// # Errors
    /// A `loss_gap_below` for a problem without a known minimum, a `max_epochs` for one
    /// without a finite data set.
    pub fn targets(&self) -> CoreResult<Vec<Target>> {
        self.problems
            .iter()
            .enumerate()
            .map(|(i, p)| {
                self.target
                    .for_problem(self.min_losses.get(i).copied().flatten(), p.n_samples())
                    .map_err(|e| match e {
                        CoreError::InvalidValue { field, reason } => {
                            CoreError::invalid(field, format!("{reason} (problems[{i}])"))
                        }
                        other => other,
                    })
            })
            .collect()
    }

    /// Check that every cell refers to existing specs and has valid base values.
    pub fn validate(&self, cells: &[Cell]) -> CoreResult<()> {
        for (i, c) in cells.iter().enumerate() {
            let bad = |field: &str, reason: String| {
                Err(CoreError::invalid(format!("cells.{field}[{i}]"), reason))
            };
            if c.problem >= self.problems.len() {
                return bad(
                    "problem_index",
                    format!("must be < {}, got {}", self.problems.len(), c.problem),
                );
            }
            if c.optimizer >= self.optimizers.len() {
                return bad(
                    "optimizer_index",
                    format!("must be < {}, got {}", self.optimizers.len(), c.optimizer),
                );
            }
            if c.schedule >= self.schedules.len() {
                return bad(
                    "schedule_index",
                    format!("must be < {}, got {}", self.schedules.len(), c.schedule),
                );
            }
            if c.batch_size == 0 {
                return bad("batch_size", "must be positive, got 0".into());
            }
            if !(c.learning_rate.is_finite() && c.learning_rate > 0.0) {
                return bad(
                    "learning_rate",
                    format!("must be positive and finite, got {}", c.learning_rate),
                );
            }
        }
        Ok(())
    }

    /// Run `cells` on `threads` workers (0: rayon's default) and return their records in order;
    /// the first run that fails (see [`crate::run::run`]) fails the call, naming its cell.
    pub fn execute(&self, cells: &[Cell], threads: usize) -> CoreResult<Vec<RunRecord>> {
        self.execute_controlled(cells, threads, &Control::new())?
            .into_iter()
            .map(|record| record.ok_or(CoreError::Cancelled))
            .collect()
    }

    /// [`Plan::execute`] under `control`: one entry per cell, in order, `None` for the runs that
    /// a [`Control::cancel`] stopped or kept from starting. Errors as [`Plan::execute`].
    pub fn execute_controlled(
        &self,
        cells: &[Cell],
        threads: usize,
        control: &Control,
    ) -> CoreResult<Vec<Option<RunRecord>>> {
        self.validate(cells)?;
        let targets = self.targets()?;
        // the same start for every run of a problem: one pass over a finite sum's data, not one
        // per run (bitwise what each run would compute: the loss's order is fixed)
        let initial_losses: Vec<f64> = self.problems.iter().map(|p| p.loss(p.x0())).collect();
        let spec = |c: &Cell| RunSpec {
            problem: &self.problems[c.problem],
            optimizer: &self.optimizers[c.optimizer],
            schedule: &self.schedules[c.schedule],
            target: &targets[c.problem],
            batch_size: c.batch_size,
            learning_rate: c.learning_rate,
            key: self.key(c),
            trajectory_every: self.trajectory_every,
            trajectory_metrics: self.trajectory_metrics,
            mode: self.mode,
            weight_averaging: self.weight_averaging,
            initial_loss: Some(initial_losses[c.problem]),
        };
        // the records of the cells `members` (indices into `cells`), run as one group
        let group = |members: &[usize]| -> CoreResult<Vec<Option<RunRecord>>> {
            if control.stop.load(Ordering::Relaxed) {
                return Ok(vec![None; members.len()]);
            }
            let outcome = if let [i] = members {
                run_group(std::slice::from_ref(&spec(&cells[*i])), &control.stop)
            } else {
                let specs: Vec<RunSpec<'_, T>> = members.iter().map(|&i| spec(&cells[i])).collect();
                run_group(&specs, &control.stop)
            };
            match outcome {
                Ok(records) => {
                    let finished = records.iter().filter(|r| r.is_some()).count();
                    control
                        .finished
                        .fetch_add(finished as u64, Ordering::Relaxed);
                    Ok(records)
                }
                Err(GroupError { member, error }) => {
                    control.stop.store(true, Ordering::Relaxed);
                    Err(match error {
                        CoreError::InvalidValue { field, reason } => CoreError::invalid(
                            format!("cells.{field}[{}]", members[member]),
                            reason,
                        ),
                        other => other,
                    })
                }
            }
        };
        pool(threads)?.install(|| {
            let Some(groups) = self.groups(cells, rayon::current_num_threads()) else {
                // every run alone: straight into plan order
                return (0..cells.len())
                    .into_par_iter()
                    .with_min_len(1)
                    .map(|i| Ok(group(&[i])?.pop().flatten()))
                    .collect();
            };
            let records: Vec<Vec<Option<RunRecord>>> = groups
                .par_iter()
                .with_min_len(1)
                .map(|members| group(members))
                .collect::<CoreResult<_>>()?;
            let mut out: Vec<Option<RunRecord>> = vec![None; cells.len()];
            for (members, records) in groups.iter().zip(records) {
                for (&i, record) in members.iter().zip(records) {
                    out[i] = record;
                }
            }
            Ok(out)
        })
    }

    /// The cells that share their random streams step by step ([`run_group`]), as lists of
    /// indices into `cells`: under common random numbers (step by step), the cells with the same
    /// key, problem, schedule and base batch size, which differ only in optimizer and learning
    /// rate; `None` otherwise (each cell alone). A group holds at most [`GROUP_RUNS`] cells, and
    /// fewer where that would leave fewer than two groups per worker.
    fn groups(&self, cells: &[Cell], workers: usize) -> Option<Vec<Vec<usize>>> {
        if !self.common_random_numbers || self.mode != RunMode::Steps {
            return None;
        }
        let mut index = std::collections::HashMap::new();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, c) in cells.iter().enumerate() {
            let key = (self.key(c), c.problem, c.schedule, c.batch_size);
            let g = *index.entry(key).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(i);
        }
        let cap = GROUP_RUNS
            .min(cells.len().div_ceil(2 * workers.max(1)))
            .max(1);
        Some(
            groups
                .iter()
                .flat_map(|g| g.chunks(cap).map(<[usize]>::to_vec))
                .collect(),
        )
    }
}

/// The worker pool of `threads` threads (0: rayon's default), started on first use and kept:
/// starting one per call cost about 0.7 ms of CPU, a tenth of the core's time on a chunk of
/// 1,000 tiny runs. A process forked after a sweep (Python's `multiprocessing`) has none of its
/// parent's worker threads: its pools are left alone (leaked, never touched) and new ones start.
fn pool(threads: usize) -> CoreResult<Arc<rayon::ThreadPool>> {
    type Pools = (u32, Vec<(usize, Arc<rayon::ThreadPool>)>);
    static POOLS: Mutex<Pools> = Mutex::new((0, Vec::new()));
    let mut guard = POOLS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (owner, pools) = &mut *guard;
    if *owner != std::process::id() {
        pools.drain(..).for_each(std::mem::forget);
        *owner = std::process::id();
    }
    if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == threads) {
        return Ok(Arc::clone(pool));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| CoreError::invalid("threads", format!("could not start a pool: {e}")))?;
    let pool = Arc::new(pool);
    pools.push((threads, Arc::clone(&pool)));
    Ok(pool)
}

/// The most runs one group steps together (under common random numbers, [`Plan::execute`]):
/// one draw serves them all, and their iterates still fit in cache beside it.
pub const GROUP_RUNS: usize = 16;

/// Shared by a running sweep and whoever watches it: a stop flag and a count of finished runs.
#[derive(Debug, Default)]
pub struct Control {
    /// Read by every run before each step; set by [`Control::cancel`] or by a failing run.
    stop: AtomicBool,
    /// Set by [`Control::cancel`] only.
    cancelled: AtomicBool,
    /// Runs finished so far.
    finished: AtomicU64,
}

impl Control {
    /// A control that has not been cancelled and has counted no run.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Stop the sweep: the runs in flight return before their next step, the others never start.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether [`Control::cancel`] was called.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// The number of runs finished so far (their records will be returned).
    #[must_use]
    pub fn finished(&self) -> u64 {
        self.finished.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problems::Nqm;

    fn plan() -> Plan {
        let h: Vec<f64> = (1..=20).map(|i| 1.0 / i as f64).collect();
        Plan {
            problems: vec![Problem::Nqm(Nqm::new(h.clone(), h, vec![1.0; 20]))],
            optimizers: vec![
                Optimizer::Sgd,
                Optimizer::HeavyBall {
                    momentum: 0.5,
                    dampening: 0.0,
                },
            ],
            schedules: vec![Schedule::CONSTANT],
            target: Target {
                loss_below: Some(0.2),
                loss_gap_below: None,
                min_loss: None,
                grad_norm_below: None,
                position_below: None,
                check_every: 3,
                max_steps: 5000,
                max_sfo: None,
                max_epochs: None,
                divergence_factor: 1e6,
            },
            seed: 17,
            trajectory_every: 0,
            trajectory_metrics: TrajectoryMetrics::LOSS,
            mode: RunMode::Steps,
            weight_averaging: None,
            common_random_numbers: false,
            min_losses: Vec::new(),
        }
    }

    fn cells() -> Vec<Cell> {
        (0..64)
            .map(|i| Cell {
                run_index: i,
                problem: 0,
                optimizer: (i % 2) as usize,
                schedule: 0,
                batch_size: 1 + (i % 5) as usize,
                learning_rate: 0.05,
                replicate: i / 10,
            })
            .collect()
    }

    fn strip(mut records: Vec<RunRecord>) -> Vec<RunRecord> {
        for r in &mut records {
            r.wall_time = 0.0;
        }
        records
    }

    #[test]
    fn results_do_not_depend_on_threads_or_chunks() {
        let (p, c) = (plan(), cells());
        let one = strip(p.execute(&c, 1).unwrap());
        let two = strip(p.execute(&c, 2).unwrap());
        let chunked: Vec<RunRecord> = c
            .chunks(7)
            .flat_map(|part| strip(p.execute(part, 3).unwrap()))
            .collect();
        assert_eq!(one, two);
        assert_eq!(one, chunked);
        assert!(one.iter().all(RunRecord::reached));
    }

    #[test]
    fn grad_norm_trajectories_leave_the_loss_and_the_records_as_they_were() {
        let mut p = plan();
        p.trajectory_every = 4;
        let c = cells();
        let loss_only = strip(p.execute(&c, 2).unwrap());
        p.trajectory_metrics = TrajectoryMetrics::BOTH;
        let both = strip(p.execute(&c, 2).unwrap());
        for (a, b) in loss_only.iter().zip(&both) {
            assert!(a.grad_norm_trajectory.is_empty());
            assert_eq!(b.grad_norm_trajectory.len(), b.trajectory.len());
            assert_eq!(b.trajectory.len() as u64, b.steps / 4 + 1);
            let without = RunRecord {
                grad_norm_trajectory: Vec::new(),
                ..b.clone()
            };
            assert_eq!(*a, without);
        }
    }

    #[test]
    fn common_random_numbers_share_streams_across_optimizers_only() {
        let mut p = plan();
        p.common_random_numbers = true;
        let c = cells();
        let one = strip(p.execute(&c, 1).unwrap());
        let chunked: Vec<RunRecord> = c
            .chunks(5)
            .flat_map(|part| strip(p.execute(part, 2).unwrap()))
            .collect();
        assert_eq!(one, chunked);
        // cells 0 and 10 differ in optimizer only when both have the same batch size and
        // replicate: same key; a different replicate or batch size: another key
        let (a, b) = (
            c[0],
            Cell {
                optimizer: 1,
                ..c[0]
            },
        );
        assert_eq!(p.key(&a), p.key(&b));
        assert_ne!(p.key(&a), p.key(&Cell { replicate: 9, ..a }));
        assert_ne!(p.key(&a), p.key(&Cell { batch_size: 7, ..a }));
        assert_ne!(p.key(&a), p.key(&Cell { problem: 1, ..a }));
        p.common_random_numbers = false;
        assert_eq!(p.key(&a), run_key(17, 0));
    }

    #[test]
    fn an_sfo_budget_stops_schedules_at_the_same_sfo_to_one_batch() {
        let mut p = plan();
        p.target.loss_below = None;
        p.target.max_sfo = Some(1000);
        p.target.check_every = 7;
        let c = cells();
        for (record, cell) in p.execute(&c, 2).unwrap().iter().zip(&c) {
            assert_eq!(record.stop_reason, crate::targets::StopReason::Budget);
            assert!(record.sfo <= 1000 && record.sfo + cell.batch_size as u64 > 1000);
        }
        p.target.max_sfo = None;
        p.target.max_epochs = Some(1.0);
        let e = p.execute(&c, 1).unwrap_err().to_string();
        assert!(
            e.starts_with("target.max_epochs") && e.ends_with("(problems[0])"),
            "{e}"
        );
    }

    #[test]
    fn bad_cells_are_rejected_with_the_field() {
        let p = plan();
        let mut c = cells();
        c[5].optimizer = 9;
        let e = p.execute(&c, 1).unwrap_err();
        assert_eq!(e.to_string(), "cells.optimizer_index[5] must be < 2, got 9");
    }

    /// Cells 0, 1 and 3 reach their target within a few hundred steps; cell 2 never ends.
    fn cells_with_an_endless_run() -> (Plan, Vec<Cell>) {
        let mut p = plan();
        p.target.max_steps = u64::MAX >> 1;
        let mut c: Vec<Cell> = cells().into_iter().take(4).collect();
        c[2].learning_rate = 1e-12;
        (p, c)
    }

    #[test]
    fn a_cancelled_sweep_keeps_the_runs_that_finished() {
        let (p, c) = cells_with_an_endless_run();
        let control = Control::new();
        let records = std::thread::scope(|s| {
            s.spawn(|| {
                while control.finished() < 2 {
                    std::thread::yield_now();
                }
                control.cancel();
            });
            // One thread runs the cells in order: 0 and 1 finish, 2 runs until the cancel.
            p.execute_controlled(&c, 1, &control).unwrap()
        });
        assert!(control.is_cancelled());
        assert_eq!(control.finished(), 2);
        let done: Vec<RunRecord> = records.iter().take(2).flatten().cloned().collect();
        assert_eq!(strip(done), strip(p.execute(&c[..2], 1).unwrap()));
        assert_eq!(records[2..], [None, None]);
    }

    #[test]
    fn a_sweep_cancelled_before_it_starts_runs_nothing() {
        let (p, c) = cells_with_an_endless_run();
        let control = Control::new();
        control.cancel();
        let records = p.execute_controlled(&c, 2, &control).unwrap();
        assert!(records.iter().all(Option::is_none));
        assert_eq!(control.finished(), 0);
    }

    #[test]
    fn a_failing_run_stops_the_endless_ones() {
        let (p, mut c) = cells_with_an_endless_run();
        c[3].batch_size = 1 << 62;
        let control = Control::new();
        let e = p.execute_controlled(&c, 2, &control).unwrap_err();
        assert!(e.to_string().starts_with("cells.batch_size[3] ("), "{e}");
        assert!(!control.is_cancelled());
    }

    #[test]
    fn a_run_that_fails_names_its_cell() {
        let p = plan();
        let mut c = cells();
        c[3].batch_size = 1 << 62;
        let e = p.execute(&c, 2).unwrap_err();
        assert!(e.to_string().starts_with("cells.batch_size[3] ("), "{e}");
    }

    #[test]
    fn a_zero_learning_rate_is_rejected() {
        let p = plan();
        let mut c = cells();
        c[3].learning_rate = 0.0;
        let e = p.execute(&c, 1).unwrap_err();
        assert!(
            e.to_string().contains("learning_rate[3] must be positive"),
            "{e}"
        );
    }
}
