//! Sweeps: many runs in parallel on a rayon pool, results in plan order.
//!
//! Each run's randomness comes from [`run_key`]`(sweep seed, run index)` alone, so the table
//! does not depend on the number of threads, on how rayon splits the work, or on how the plan
//! was cut into chunks.

use rayon::prelude::*;

use crate::errors::{CoreError, CoreResult};
use crate::optimizers::Optimizer;
use crate::problems::Problem;
use crate::rng::run_key;
use crate::run::{run, RunRecord, RunSpec};
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
}

/// The specs of a sweep, shared by its cells.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Problems.
    pub problems: Vec<Problem>,
    /// Optimizers.
    pub optimizers: Vec<Optimizer>,
    /// Schedules.
    pub schedules: Vec<Schedule>,
    /// Stopping rule.
    pub target: Target,
    /// Sweep seed.
    pub seed: u64,
    /// Record the loss every this many steps (0: never).
    pub trajectory_every: u64,
}

impl Plan {
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
    /// the first run that fails (see [`run`]) fails the call, naming its cell.
    pub fn execute(&self, cells: &[Cell], threads: usize) -> CoreResult<Vec<RunRecord>> {
        self.validate(cells)?;
        let one = |(i, c): (usize, &Cell)| {
            run(&RunSpec {
                problem: &self.problems[c.problem],
                optimizer: self.optimizers[c.optimizer],
                schedule: &self.schedules[c.schedule],
                target: &self.target,
                batch_size: c.batch_size,
                learning_rate: c.learning_rate,
                key: run_key(self.seed, c.run_index),
                trajectory_every: self.trajectory_every,
            })
            .map_err(|e| match e {
                CoreError::InvalidValue { field, reason } => {
                    CoreError::invalid(format!("cells.{field}[{i}]"), reason)
                }
                other => other,
            })
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| CoreError::invalid("threads", format!("could not start a pool: {e}")))?;
        pool.install(|| {
            cells
                .par_iter()
                .enumerate()
                .with_min_len(1)
                .map(one)
                .collect()
        })
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
                grad_norm_below: None,
                position_below: None,
                check_every: 3,
                max_steps: 5000,
                divergence_factor: 1e6,
            },
            seed: 17,
            trajectory_every: 0,
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
    fn bad_cells_are_rejected_with_the_field() {
        let p = plan();
        let mut c = cells();
        c[5].optimizer = 9;
        let e = p.execute(&c, 1).unwrap_err();
        assert_eq!(e.to_string(), "cells.optimizer_index[5] must be < 2, got 9");
    }

    #[test]
    fn a_run_that_fails_names_its_cell() {
        let p = plan();
        let mut c = cells();
        c[3].batch_size = 1 << 62;
        let e = p.execute(&c, 2).unwrap_err();
        assert!(e.to_string().starts_with("cells.batch_size[3] ("), "{e}");
    }
}
