//! Kernel timings of the core without Python: the normal sampler and an NQM SGD sweep on one
//! thread, in nanoseconds per normal and per coordinate-step (`cargo bench --bench core`).
//! The Python benches in this folder set these beside the `NumPy`, JAX and torch peers.

use std::hint::black_box;
use std::time::Instant;

use _core::optimizers::Optimizer;
use _core::problems::{FiniteSum, Model, Nqm, Problem, Sampling};
use _core::rng::NormalStream;
use _core::run::RunMode;
use _core::schedules::Schedule;
use _core::sweep::{Cell, Plan};
use _core::targets::Target;

fn best_of<F: FnMut()>(repeats: usize, mut f: F) -> f64 {
    (0..repeats)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let mut stream = NormalStream::new(1);
    let mut buf = vec![0.0; 1000];
    let secs = best_of(5, || {
        for _ in 0..20_000 {
            stream.fill(&mut buf);
            black_box(&buf);
        }
    });
    eprintln!("normal sampler: {:.3} ns per normal", secs / 2e7 * 1e9);

    let (d, runs, steps) = (1000usize, 64u64, 1000u64);
    let h: Vec<f64> = (1..=d).map(|i| 1.0 / i as f64).collect();
    let plan = Plan {
        problems: vec![Problem::Nqm(Nqm::new(h.clone(), h, vec![1.0; d]))],
        optimizers: vec![Optimizer::Sgd],
        schedules: vec![Schedule::CONSTANT],
        target: Target {
            loss_below: None,
            grad_norm_below: None,
            position_below: None,
            check_every: steps,
            max_steps: steps,
            divergence_factor: 1e6,
        },
        seed: 0,
        trajectory_every: 0,
        mode: RunMode::Steps,
    };
    let cells: Vec<Cell> = (0..runs)
        .map(|i| Cell {
            run_index: i,
            problem: 0,
            optimizer: 0,
            schedule: 0,
            batch_size: 4,
            learning_rate: 0.5,
        })
        .collect();
    let secs = best_of(3, || {
        black_box(plan.execute(&cells, 1).map_or(0, |r| r.len()));
    });
    eprintln!(
        "NQM SGD d={d}, {runs} runs x {steps} steps, 1 thread: {:.3} ns per coordinate-step",
        secs / (d as f64 * runs as f64 * steps as f64) * 1e9
    );

    let (n, d, b, steps) = (4096usize, 256usize, 64usize, 300u64);
    let features: Vec<f64> = (0..n * d)
        .map(|k| ((k * 7919 % 1013) as f64 / 506.0 - 1.0) / 16.0)
        .collect();
    let targets: Vec<f64> = (0..n).map(|j| (j as f64 * 0.37).sin()).collect();
    let lsq = Plan {
        problems: vec![Problem::FiniteSum(FiniteSum {
            features,
            targets,
            n,
            n_features: d,
            l2: 0.0,
            sampling: Sampling::WithReplacement,
            model: Model::LeastSquares,
            x0: vec![0.0; d],
        })],
        target: Target {
            max_steps: steps,
            check_every: steps,
            ..plan.target
        },
        ..plan.clone()
    };
    let cells: Vec<Cell> = (0..runs)
        .map(|i| Cell {
            run_index: i,
            problem: 0,
            optimizer: 0,
            schedule: 0,
            batch_size: b,
            learning_rate: 0.5,
        })
        .collect();
    let secs = best_of(3, || {
        black_box(lsq.execute(&cells, 1).map_or(0, |r| r.len()));
    });
    eprintln!(
        "least squares SGD n={n} d={d} b={b}, {runs} runs x {steps} steps, 1 thread: {:.3} us per run-step",
        secs / (runs as f64 * steps as f64) * 1e6
    );
}
