//! Kernel timings of the core without Python: the normal sampler and an NQM SGD sweep on one
//! thread, in nanoseconds per normal and per coordinate-step (`cargo bench --bench core`).
//! The Python benches in this folder set these beside the `NumPy`, JAX and torch peers.
//!
//! `cargo bench --bench core -- WORD` runs only the sections whose name contains `WORD`
//! (`sampler`, `nqm`, `least-squares`, `tiny`, `jumps`, `million`). The `jumps` section times
//! exact jumps against the step loop in the same process, interleaved, and prints the median
//! ratio; every other section times the core in `f64` and in `f32` (`dtype = "float32"`) the
//! same way, and prints the median of the per-round ratios.

use std::hint::black_box;
use std::time::Instant;

use _core::optimizers::Optimizer;
use _core::problems::{FiniteSum, Model, Nqm, Problem, Sampling};
use _core::rng::NormalStream;
use _core::run::{RunMode, TrajectoryMetrics};
use _core::schedules::Schedule;
use _core::sweep::{Cell, Plan};
use _core::targets::Target;

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
        weight_averaging: None,
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
        let (t64, t32, ratio) = both(&plan, &cells, 5);
        let per = |t: f64| t / (d as f64 * runs as f64 * steps as f64) * 1e9;
        eprintln!(
            "NQM SGD d={d}, {runs} runs x {steps} steps, 1 thread: {:.3} ns per coordinate-step \
             in f64, {:.3} in f32 (f64 / f32 {ratio:.2}x)",
            per(t64),
            per(t32)
        );
    }
    if wanted("million") {
        // The million-run workload's shape: NQM d=100, 1000 steps, the loss checked every step
        // (a target never reached, so every run takes all its steps).
        let (d, steps, runs) = (100usize, 1000u64, 2000u64);
        let (t64, t32, ratio) = both(&checked_every_step(&plan, d, steps), &cells(runs, 4), 5);
        let per = |t: f64| t / (d as f64 * runs as f64 * steps as f64) * 1e9;
        eprintln!(
            "NQM d={d}, {steps} steps, loss checked every step, {runs} runs, 1 thread: {:.3} ns \
             per coordinate-step in f64, {:.3} in f32 (f64 / f32 {ratio:.2}x); a million runs \
             on 2 such threads: {:.0} s in f64, {:.0} s in f32",
            per(t64),
            per(t32),
            t64 / runs as f64 * 1e6 / 2.0,
            t32 / runs as f64 * 1e6 / 2.0
        );
    }
    if wanted("tiny") {
        // The sweep layer's worst case: NQM d=4, 20 steps, the loss checked at every step.
        let (d, steps, runs) = (4usize, 20u64, 100_000u64);
        let tiny = checked_every_step(&plan, d, steps);
        let cells = cells(runs, 4);
        let (t64, t32, ratio) = both(&tiny, &cells, 7);
        eprintln!(
            "tiny NQM runs d={d}, {steps} steps, loss checked every step, {runs} runs, 1 thread: \
             {:.1} ns per run in f64, {:.1} in f32 (f64 / f32 {ratio:.2}x)",
            t64 / runs as f64 * 1e9,
            t32 / runs as f64 * 1e9
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

/// `plan` on the NQM `h_i = c_i = 1/i` of dimension `d`, every run taking `steps` steps with
/// the loss checked at each (a target below zero is never reached).
fn checked_every_step(plan: &Plan, d: usize, steps: u64) -> Plan {
    let h: Vec<f64> = (1..=d).map(|i| 1.0 / i as f64).collect();
    Plan {
        problems: vec![Problem::Nqm(Nqm::new(h.clone(), h, vec![1.0; d]))],
        target: Target {
            loss_below: Some(-1.0),
            check_every: 1,
            max_steps: steps,
            ..plan.target
        },
        ..plan.clone()
    }
}

/// `(median seconds in f64, median seconds in f32, median over rounds of f64 / f32)` of `plan`
/// on one thread, the two types timed in turn.
fn both(plan: &Plan, cells: &[Cell], rounds: usize) -> (f64, f64, f64) {
    let single = plan.cast::<f32>();
    interleaved(
        rounds,
        || {
            black_box(plan.execute(cells, 1).map_or(0, |r| r.len()));
        },
        || {
            black_box(single.execute(cells, 1).map_or(0, |r| r.len()));
        },
    )
}

fn sampler() {
    let mut stream = NormalStream::<f64>::new(1);
    let mut single = NormalStream::<f32>::new(1);
    let (mut buf, mut buf32) = (vec![0.0f64; 1000], vec![0.0f32; 1000]);
    let (t64, t32, ratio) = interleaved(
        7,
        || {
            for _ in 0..20_000 {
                stream.fill(&mut buf);
                black_box(&buf);
            }
        },
        || {
            for _ in 0..20_000 {
                single.fill(&mut buf32);
                black_box(&buf32);
            }
        },
    );
    eprintln!(
        "normal sampler: {:.3} ns per normal in f64, {:.3} in f32 (f64 / f32 {ratio:.2}x)",
        t64 / 2e7 * 1e9,
        t32 / 2e7 * 1e9
    );
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
    let (t64, t32, ratio) = both(&lsq, &cells, 5);
    eprintln!(
        "least squares SGD n={n} d={d} b={b}, {runs} runs x {steps} steps, 1 thread: {:.3} us \
         per run-step in f64, {:.3} in f32 (f64 / f32 {ratio:.2}x)",
        t64 / (runs as f64 * steps as f64) * 1e6,
        t32 / (runs as f64 * steps as f64) * 1e6
    );
}
