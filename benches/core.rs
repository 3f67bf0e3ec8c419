//! Kernel timings of the core without Python: the normal sampler and an NQM SGD sweep on one
//! thread, in nanoseconds per normal and per coordinate-step (`cargo bench --bench core`).
//! The Python benches in this folder set these beside the `NumPy`, JAX and torch peers.
//!
//! `cargo bench --bench core -- WORD` runs only the sections whose name contains `WORD`
//! (`sampler`, `nqm`, `least-squares`, `tiny`, `jumps`). The `jumps` section times exact jumps
//! against the step loop in the same process, interleaved, and prints the median ratio.

use std::hint::black_box;
use std::time::Instant;

use _core::optimizers::Optimizer;
use _core::problems::{FiniteSum, Model, Nqm, Problem, Sampling};
use _core::rng::NormalStream;
use _core::run::{RunMode, TrajectoryMetrics};
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

/// `(median seconds of a, median seconds of b, median over rounds of a / b)`, timing `a` and
/// `b` in turn so that a load that comes and goes hits both alike.
fn interleaved<A: FnMut(), B: FnMut()>(rounds: usize, mut a: A, mut b: B) -> (f64, f64, f64) {
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut ta, mut tb, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    a();
    b();
    for _ in 0..rounds {
        let (x, y) = (time(&mut a), time(&mut b));
        ta.push(x);
        tb.push(y);
        ratio.push(x / y);
    }
    (median(ta), median(tb), median(ratio))
}

fn main() {
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let wanted = |section: &str| only.as_deref().is_none_or(|w| section.contains(w));
    if wanted("sampler") {
        sampler();
    }
    let (d, runs, steps) = (1000usize, 64u64, 1000u64);
    let h: Vec<f64> = (1..=d).map(|i| 1.0 / i as f64).collect();
    let plan = Plan {
        problems: vec![Problem::Nqm(Nqm::new(h.clone(), h, vec![1.0; d]))],
        optimizers: vec![Optimizer::Sgd],
        schedules: vec![Schedule::CONSTANT],
        target: Target {
            loss_below: None,
            loss_gap_below: None,
            min_loss: None,
            grad_norm_below: None,
            position_below: None,
            check_every: steps,
            max_steps: steps,
            max_sfo: None,
            max_epochs: None,
            divergence_factor: 1e6,
        },
        seed: 0,
        trajectory_every: 0,
        trajectory_metrics: TrajectoryMetrics::LOSS,
        mode: RunMode::Steps,
        common_random_numbers: false,
        min_losses: Vec::new(),
    };
    let cells = |runs: u64, b: usize| -> Vec<Cell> {
        (0..runs)
            .map(|i| Cell {
                run_index: i,
                problem: 0,
                optimizer: 0,
                schedule: 0,
                batch_size: b,
                learning_rate: 0.5,
                replicate: 0,
            })
            .collect()
    };
    if wanted("nqm") {
        let cells = cells(runs, 4);
        let secs = best_of(3, || {
            black_box(plan.execute(&cells, 1).map_or(0, |r| r.len()));
        });
        eprintln!(
            "NQM SGD d={d}, {runs} runs x {steps} steps, 1 thread: {:.3} ns per coordinate-step",
            secs / (d as f64 * runs as f64 * steps as f64) * 1e9
        );
    }
    if wanted("tiny") {
        // The sweep layer's worst case: NQM d=4, 20 steps, the loss checked at every step.
        let (d, steps, runs) = (4usize, 20u64, 100_000u64);
        let h: Vec<f64> = (1..=d).map(|i| 1.0 / i as f64).collect();
        let tiny = Plan {
            problems: vec![Problem::Nqm(Nqm::new(h.clone(), h, vec![1.0; d]))],
            target: Target {
                loss_below: Some(-1.0),
                check_every: 1,
                max_steps: steps,
                ..plan.target
            },
            ..plan.clone()
        };
        let cells = cells(runs, 4);
        let secs = best_of(7, || {
            black_box(tiny.execute(&cells, 1).map_or(0, |r| r.len()));
        });
        eprintln!(
            "tiny NQM runs d={d}, {steps} steps, loss checked every step, {runs} runs, 1 thread: \
             {:.1} ns per run",
            secs / runs as f64 * 1e9
        );
    }
    if wanted("jumps") {
        // Exact jumps against the step loop: NQM d=100, SGD, checkpoints every 100 steps.
        let (d, steps, runs, every) = (100usize, 10_000u64, 200u64, 100u64);
        let h: Vec<f64> = (1..=d).map(|i| 1.0 / i as f64).collect();
        let stepwise = Plan {
            problems: vec![Problem::Nqm(Nqm::new(h.clone(), h, vec![1.0; d]))],
            target: Target {
                check_every: every,
                max_steps: steps,
                ..plan.target
            },
            ..plan.clone()
        };
        let jumping = Plan {
            mode: RunMode::ExactJumps,
            ..stepwise.clone()
        };
        let cells = cells(runs, 4);
        let (t_steps, t_jumps, ratio) = interleaved(
            7,
            || {
                black_box(stepwise.execute(&cells, 1).map_or(0, |r| r.len()));
            },
            || {
                black_box(jumping.execute(&cells, 1).map_or(0, |r| r.len()));
            },
        );
        eprintln!(
            "NQM d={d}, {runs} runs x {steps} steps, checks every {every}: step loop {:.2} us \
             per run, exact jumps {:.2} us per run, median ratio {ratio:.1}x",
            t_steps / runs as f64 * 1e6,
            t_jumps / runs as f64 * 1e6
        );
    }
    if wanted("least-squares") {
        least_squares(&plan, runs);
    }
}

fn sampler() {
    let mut stream = NormalStream::new(1);
    let mut buf = vec![0.0; 1000];
    let secs = best_of(5, || {
        for _ in 0..20_000 {
            stream.fill(&mut buf);
            black_box(&buf);
        }
    });
    eprintln!("normal sampler: {:.3} ns per normal", secs / 2e7 * 1e9);
}

fn least_squares(plan: &Plan, runs: u64) {
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
            replicate: 0,
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
