//! The only module that knows `PyO3`: converts plain Python descriptions (dicts of scalars and
//! `NumPy` arrays, built by `critbatch`'s spec classes) into core values, runs them with the GIL
//! released, and returns `NumPy` columns. Every failure becomes a `ValueError` or `TypeError`
//! that names the field; nothing here can panic across the boundary.

use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use pyo3::exceptions::{PyKeyboardInterrupt, PyTypeError, PyValueError};
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::errors::{check_finite, check_positive, check_unit_interval, CoreError};
use crate::optimizers::Optimizer;
use crate::problems::{
    DoubleWell, FiniteSum, Model, Nqm, Problem, RobustLoss, Sampling, MAX_DRAWN_BATCH,
};
use crate::real::Real;
use crate::rng::{run_key, NormalStream};
use crate::run::{RunMode, RunRecord, TrajectoryMetrics, MAX_SFO};
use crate::schedules::{Rule, RuleKind, Schedule, Unit, Warmup};
use crate::sweep::{Cell, Control, Plan};
use crate::targets::{StopReason, Target};

impl From<CoreError> for PyErr {
    fn from(e: CoreError) -> PyErr {
        match e {
            CoreError::Cancelled => PyKeyboardInterrupt::new_err(e.to_string()),
            _ => PyValueError::new_err(e.to_string()),
        }
    }
}

/// A dict with the path that names it in error messages.
struct Fields<'a, 'py> {
    dict: &'a Bound<'py, PyDict>,
    path: String,
}

impl<'py> Fields<'_, 'py> {
    fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &str) -> PyResult<Bound<'py, PyAny>> {
        self.dict
            .get_item(key)?
            .ok_or_else(|| PyValueError::new_err(format!("{} is missing", self.name(key))))
    }

    fn extract<T: FromPyObjectOwned<'py>>(&self, key: &str, what: &str) -> PyResult<T> {
        self.get(key)?
            .extract::<T>()
            .map_err(|_| PyTypeError::new_err(format!("{} must be {what}", self.name(key))))
    }

    fn float(&self, key: &str) -> PyResult<f64> {
        self.extract::<f64>(key, "a float")
    }

    /// A non-negative integer that fits an int64 column (every count of the core does).
    fn int(&self, key: &str) -> PyResult<u64> {
        let value = self.extract::<u64>(key, "a non-negative integer")?;
        if value > MAX_SFO {
            return Err(CoreError::invalid(
                self.name(key),
                format!("must be at most 2^63 - 1, got {value}"),
            )
            .into());
        }
        Ok(value)
    }

    fn string(&self, key: &str) -> PyResult<String> {
        self.extract::<String>(key, "a string")
    }

    fn option<T: Copy>(
        &self,
        key: &str,
        table: &[(&'static str, T)],
        allowed: &'static [&'static str],
    ) -> PyResult<T> {
        let got = self.string(key)?;
        table
            .iter()
            .find(|(name, _)| *name == got)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                CoreError::UnknownOption {
                    field: self.name(key),
                    got,
                    allowed,
                }
                .into()
            })
    }

    fn vector(&self, key: &str) -> PyResult<Vec<f64>> {
        let array = self
            .get(key)?
            .extract::<PyReadonlyArray1<'py, f64>>()
            .map_err(|_| {
                PyTypeError::new_err(format!("{} must be a 1-D float64 array", self.name(key)))
            })?;
        let values = array
            .as_slice()
            .map_err(|_| PyValueError::new_err(format!("{} must be contiguous", self.name(key))))?
            .to_vec();
        check_finite(&self.name(key), &values)?;
        Ok(values)
    }

    fn matrix(&self, key: &str) -> PyResult<(Vec<f64>, usize, usize)> {
        let array = self
            .get(key)?
            .extract::<PyReadonlyArray2<'py, f64>>()
            .map_err(|_| {
                PyTypeError::new_err(format!("{} must be a 2-D float64 array", self.name(key)))
            })?;
        let (rows, cols) = (array.shape()[0], array.shape()[1]);
        let values = array
            .as_slice()
            .map_err(|_| PyValueError::new_err(format!("{} must be C-contiguous", self.name(key))))?
            .to_vec();
        check_finite(&self.name(key), &values)?;
        Ok((values, rows, cols))
    }
}

fn fields<'a, 'py>(obj: &'a Bound<'py, PyAny>, path: String) -> PyResult<Fields<'a, 'py>> {
    let dict = obj
        .cast::<PyDict>()
        .map_err(|_| PyTypeError::new_err(format!("{path} must be a dict")))?;
    Ok(Fields { dict, path })
}

fn expect_len(field: String, got: usize, want: usize) -> Result<(), CoreError> {
    if got == want {
        Ok(())
    } else {
        Err(CoreError::shape(
            field,
            format!("({want},)"),
            format!("({got},)"),
        ))
    }
}

const PROBLEM_KINDS: &[&str] = &[
    "nqm",
    "least_squares",
    "logistic",
    "robust",
    "teacher_student",
    "double_well",
];

fn parse_problem(f: &Fields<'_, '_>) -> PyResult<Problem> {
    let kind = f.string("kind")?;
    let x0 = f.vector("x0")?;
    if x0.is_empty() {
        return Err(CoreError::invalid(f.name("x0"), "must not be empty").into());
    }
    match kind.as_str() {
        "nqm" => {
            let (h, c) = (f.vector("h")?, f.vector("c")?);
            expect_len(f.name("c"), c.len(), h.len())?;
            expect_len(f.name("x0"), x0.len(), h.len())?;
            if let Some(i) = h.iter().position(|v| *v <= 0.0) {
                return Err(CoreError::invalid(
                    format!("{}[{i}]", f.name("h")),
                    format!("must be positive, got {}", h[i]),
                )
                .into());
            }
            if let Some(i) = c.iter().position(|v| *v < 0.0) {
                return Err(CoreError::invalid(
                    format!("{}[{i}]", f.name("c")),
                    format!("must be non-negative, got {}", c[i]),
                )
                .into());
            }
            Ok(Problem::Nqm(Nqm::new(h, c, x0)))
        }
        "double_well" => {
            let kappa = check_unit_interval(&f.name("kappa"), f.float("kappa")?, 0.0, 1.0)?;
            let noise_std = f.float("noise_std")?;
            if !(noise_std.is_finite() && noise_std >= 0.0) {
                return Err(CoreError::invalid(
                    f.name("noise_std"),
                    format!("must be non-negative, got {noise_std}"),
                )
                .into());
            }
            let offset = check_positive(&f.name("wall_offset"), f.float("wall_offset")?)?;
            let stiffness = check_positive(&f.name("wall_stiffness"), f.float("wall_stiffness")?)?;
            Ok(Problem::DoubleWell(DoubleWell::new(
                kappa, noise_std, x0, offset, stiffness,
            )))
        }
        "least_squares" | "logistic" | "robust" | "teacher_student" => {
            let (features, n, n_features) = f.matrix("X")?;
            let targets = f.vector("y")?;
            expect_len(f.name("y"), targets.len(), n)?;
            if n == 0 || n > u32::MAX as usize {
                return Err(CoreError::invalid(
                    f.name("X"),
                    format!("must have between 1 and 2^32 - 1 rows, got {n}"),
                )
                .into());
            }
            let l2 = f.float("l2")?;
            if !(l2.is_finite() && l2 >= 0.0) {
                return Err(CoreError::invalid(
                    f.name("l2"),
                    format!("must be non-negative, got {l2}"),
                )
                .into());
            }
            let sampling = f.option(
                "sampling",
                &[
                    ("with_replacement", Sampling::WithReplacement),
                    ("shuffle", Sampling::Shuffle),
                ],
                &["with_replacement", "shuffle"],
            )?;
            let model = match kind.as_str() {
                "least_squares" => Model::LeastSquares,
                "logistic" => Model::Logistic,
                "robust" => Model::Robust {
                    loss: f.option(
                        "loss",
                        &[
                            ("geman_mcclure", RobustLoss::GemanMcClure),
                            ("cauchy", RobustLoss::Cauchy),
                        ],
                        &["geman_mcclure", "cauchy"],
                    )?,
                    scale: check_positive(&f.name("scale"), f.float("scale")?)?,
                },
                _ => {
                    let width = f.int("width")? as usize;
                    if width == 0 {
                        return Err(
                            CoreError::invalid(f.name("width"), "must be positive, got 0").into(),
                        );
                    }
                    Model::TeacherStudent { width }
                }
            };
            let dim = match model {
                Model::TeacherStudent { width } => width * (n_features + 1),
                _ => n_features,
            };
            expect_len(f.name("x0"), x0.len(), dim)?;
            Ok(Problem::FiniteSum(FiniteSum {
                features,
                targets,
                n,
                n_features,
                l2,
                sampling,
                model,
                x0,
            }))
        }
        _ => Err(CoreError::UnknownOption {
            field: f.name("kind"),
            got: kind,
            allowed: PROBLEM_KINDS,
        }
        .into()),
    }
}

const OPTIMIZER_KINDS: &[&str] = &[
    "sgd",
    "heavy_ball",
    "nesterov",
    "adam",
    "rmsprop",
    "adamw",
    "lars",
    "lamb",
    "lion",
];

/// An optimizer: the rule of `kind`, wrapped in global-norm clipping when `max_grad_norm` is
/// given (a missing key or None: no clipping).
fn parse_optimizer(f: &Fields<'_, '_>) -> PyResult<Optimizer> {
    let rule = parse_rule_of_optimizer(f)?;
    Ok(match optional(f, "max_grad_norm")? {
        None => rule,
        Some(value) => Optimizer::Clipped {
            max_grad_norm: check_positive(
                &f.name("max_grad_norm"),
                value.extract::<f64>().map_err(|_| {
                    PyTypeError::new_err(format!("{} must be a float", f.name("max_grad_norm")))
                })?,
            )?,
            rule: Box::new(rule),
        },
    })
}

/// The value of an optional key (missing or None: `None`).
fn optional<'py>(f: &Fields<'_, 'py>, key: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(f.dict.get_item(key)?.filter(|v| !v.is_none()))
}

fn parse_rule_of_optimizer(f: &Fields<'_, '_>) -> PyResult<Optimizer> {
    let unit = |key: &str| -> PyResult<f64> {
        Ok(check_unit_interval(&f.name(key), f.float(key)?, 0.0, 1.0)?)
    };
    let nonnegative = |key: &str| -> PyResult<f64> {
        Ok(check_unit_interval(
            &f.name(key),
            f.float(key)?,
            0.0,
            f64::INFINITY,
        )?)
    };
    let positive =
        |key: &str| -> PyResult<f64> { Ok(check_positive(&f.name(key), f.float(key)?)?) };
    let layers = || -> PyResult<Option<Vec<usize>>> {
        optional(f, "layers")?
            .map(|v| {
                let sizes = v.extract::<Vec<usize>>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "{} must be a list of positive integers",
                        f.name("layers")
                    ))
                })?;
                if sizes.is_empty() || sizes.contains(&0) {
                    return Err(CoreError::invalid(
                        f.name("layers"),
                        format!("must be positive sizes, got {sizes:?}"),
                    )
                    .into());
                }
                Ok(sizes)
            })
            .transpose()
    };
    let kind = f.string("kind")?;
    Ok(match kind.as_str() {
        "sgd" => Optimizer::Sgd,
        "heavy_ball" => Optimizer::HeavyBall {
            momentum: unit("momentum")?,
            dampening: unit("dampening")?,
        },
        "nesterov" => Optimizer::Nesterov {
            momentum: unit("momentum")?,
        },
        "adam" => Optimizer::Adam {
            beta1: unit("beta1")?,
            beta2: unit("beta2")?,
            eps: positive("eps")?,
            amsgrad: f.extract::<bool>("amsgrad", "a bool")?,
        },
        "rmsprop" => Optimizer::RmsProp {
            alpha: unit("alpha")?,
            eps: positive("eps")?,
            momentum: unit("momentum")?,
            centered: f.extract::<bool>("centered", "a bool")?,
        },
        "adamw" => Optimizer::AdamW {
            beta1: unit("beta1")?,
            beta2: unit("beta2")?,
            eps: positive("eps")?,
            weight_decay: nonnegative("weight_decay")?,
            amsgrad: f.extract::<bool>("amsgrad", "a bool")?,
        },
        "lars" => Optimizer::Lars {
            momentum: unit("momentum")?,
            trust_coefficient: positive("trust_coefficient")?,
            weight_decay: nonnegative("weight_decay")?,
            eps: nonnegative("eps")?,
            layers: layers()?,
        },
        "lamb" => Optimizer::Lamb {
            beta1: unit("beta1")?,
            beta2: unit("beta2")?,
            eps: positive("eps")?,
            weight_decay: nonnegative("weight_decay")?,
            layers: layers()?,
        },
        "lion" => Optimizer::Lion {
            beta1: unit("beta1")?,
            beta2: unit("beta2")?,
            weight_decay: nonnegative("weight_decay")?,
        },
        _ => {
            return Err(CoreError::UnknownOption {
                field: f.name("kind"),
                got: kind,
                allowed: OPTIMIZER_KINDS,
            }
            .into())
        }
    })
}

fn parse_rule(f: &Fields<'_, '_>) -> PyResult<Rule> {
    let kind = f.option(
        "kind",
        &[
            ("constant", RuleKind::Constant),
            ("step", RuleKind::Step),
            ("cosine", RuleKind::Cosine),
            ("geometric", RuleKind::Geometric),
            ("polynomial", RuleKind::Polynomial),
            ("linear", RuleKind::Linear),
        ],
        &[
            "constant",
            "step",
            "cosine",
            "geometric",
            "polynomial",
            "linear",
        ],
    )?;
    let rate = f.float("rate")?;
    if !rate.is_finite() {
        return Err(
            CoreError::invalid(f.name("rate"), format!("must be finite, got {rate}")).into(),
        );
    }
    let max_factor = f.float("max_factor")?;
    if max_factor.is_nan() || max_factor <= 0.0 {
        return Err(CoreError::invalid(
            f.name("max_factor"),
            format!("must be positive, got {max_factor}"),
        )
        .into());
    }
    Ok(Rule {
        kind,
        every: check_positive(&f.name("every"), f.float("every")?)?,
        rate,
        min_factor: check_unit_interval(&f.name("min_factor"), f.float("min_factor")?, 0.0, 1.0)?,
        max_factor,
        unit: f.option(
            "unit",
            &[("step", Unit::Step), ("epoch", Unit::Epoch)],
            &["step", "epoch"],
        )?,
    })
}

fn parse_schedule(f: &Fields<'_, '_>) -> PyResult<Schedule> {
    let lr = parse_rule(&fields(&f.get("lr")?, f.name("lr"))?)?;
    let batch = parse_rule(&fields(&f.get("batch")?, f.name("batch"))?)?;
    let cap = f.int("max_batch_size")? as usize;
    // a warm-up of 0 steps is none (Python sends 0 for `warmup=None`)
    let warmup_steps = f.int("warmup")?;
    let warmup = if warmup_steps == 0 {
        None
    } else {
        Some(Warmup {
            steps: warmup_steps,
            start: check_unit_interval(
                &f.name("warmup_start"),
                f.float("warmup_start")?,
                0.0,
                1.0,
            )?,
        })
    };
    Ok(Schedule {
        lr,
        batch,
        max_batch_size: (cap > 0).then_some(cap),
        warmup,
    })
}

fn parse_target(f: &Fields<'_, '_>) -> PyResult<Target> {
    let optional = |key: &str| -> PyResult<Option<f64>> {
        let v = f.float(key)?;
        Ok((!v.is_nan()).then_some(v))
    };
    let check_every = f.int("check_every")?;
    let max_steps = f.int("max_steps")?;
    if check_every == 0 || max_steps == 0 {
        return Err(CoreError::invalid(
            f.name(if check_every == 0 {
                "check_every"
            } else {
                "max_steps"
            }),
            "must be positive, got 0",
        )
        .into());
    }
    let factor = f.float("divergence_factor")?;
    if factor.is_nan() || factor <= 1.0 {
        return Err(CoreError::invalid(
            f.name("divergence_factor"),
            format!("must exceed 1, got {factor}"),
        )
        .into());
    }
    let position_below = match optional("position_below")? {
        Some(level) => Some((f.int("position_coordinate")? as usize, level)),
        None => None,
    };
    // The budgets and the loss gap: None when unused (absent keys too, for older callers).
    let given =
        |key: &str| -> PyResult<bool> { Ok(f.dict.get_item(key)?.is_some_and(|v| !v.is_none())) };
    let loss_gap_below = if given("loss_gap_below")? {
        let gap = f.float("loss_gap_below")?;
        if gap.is_nan() || gap < 0.0 {
            return Err(CoreError::invalid(
                f.name("loss_gap_below"),
                format!("must be non-negative, got {gap}"),
            )
            .into());
        }
        Some(gap)
    } else {
        None
    };
    let max_sfo = if given("max_sfo")? {
        let sfo = f.int("max_sfo")?;
        if sfo == 0 {
            return Err(CoreError::invalid(f.name("max_sfo"), "must be positive, got 0").into());
        }
        Some(sfo)
    } else {
        None
    };
    let max_epochs = if given("max_epochs")? {
        Some(check_positive(
            &f.name("max_epochs"),
            f.float("max_epochs")?,
        )?)
    } else {
        None
    };
    Ok(Target {
        loss_below: optional("loss_below")?,
        loss_gap_below,
        min_loss: None,
        grad_norm_below: optional("grad_norm_below")?,
        position_below,
        check_every,
        max_steps,
        max_sfo,
        max_epochs,
        divergence_factor: factor,
    })
}

fn parse_list<T>(
    obj: &Bound<'_, PyAny>,
    name: &str,
    parse: impl Fn(&Fields<'_, '_>) -> PyResult<T>,
) -> PyResult<Vec<T>> {
    let list = obj
        .cast::<PyList>()
        .map_err(|_| PyTypeError::new_err(format!("{name} must be a list")))?;
    if list.is_empty() {
        return Err(PyValueError::new_err(format!("{name} must not be empty")));
    }
    list.iter()
        .enumerate()
        .map(|(i, item)| parse(&fields(&item, format!("{name}[{i}]"))?))
        .collect()
}

fn int_column<'py>(f: &Fields<'_, 'py>, key: &str) -> PyResult<Vec<i64>> {
    let array = f
        .get(key)?
        .extract::<PyReadonlyArray1<'py, i64>>()
        .map_err(|_| PyTypeError::new_err(format!("{} must be a 1-D int64 array", f.name(key))))?;
    Ok(array.as_array().to_vec())
}

/// The cells of a plan; the `seed` column (replicate ids) is read only when `replicates`.
fn parse_cells(f: &Fields<'_, '_>, replicates: bool) -> PyResult<Vec<Cell>> {
    let run_index = f
        .get("run_index")?
        .extract::<PyReadonlyArray1<'_, u64>>()
        .map_err(|_| PyTypeError::new_err("cells.run_index must be a 1-D uint64 array"))?
        .as_array()
        .to_vec();
    let problem = int_column(f, "problem_index")?;
    let optimizer = int_column(f, "optimizer_index")?;
    let schedule = int_column(f, "schedule_index")?;
    let batch = int_column(f, "batch_size")?;
    let lr = f
        .get("learning_rate")?
        .extract::<PyReadonlyArray1<'_, f64>>()
        .map_err(|_| PyTypeError::new_err("cells.learning_rate must be a 1-D float64 array"))?
        .as_array()
        .to_vec();
    let n = run_index.len();
    let replicate = if replicates {
        int_column(f, "seed")?
    } else {
        vec![0; n]
    };
    for (key, len) in [
        ("seed", replicate.len()),
        ("problem_index", problem.len()),
        ("optimizer_index", optimizer.len()),
        ("schedule_index", schedule.len()),
        ("batch_size", batch.len()),
        ("learning_rate", lr.len()),
    ] {
        expect_len(format!("cells.{key}"), len, n)?;
    }
    let index = |key: &str, i: usize, v: i64| -> PyResult<usize> {
        usize::try_from(v).map_err(|_| {
            CoreError::invalid(
                format!("cells.{key}[{i}]"),
                format!("must be non-negative, got {v}"),
            )
            .into()
        })
    };
    (0..n)
        .map(|i| {
            Ok(Cell {
                run_index: run_index[i],
                problem: index("problem_index", i, problem[i])?,
                optimizer: index("optimizer_index", i, optimizer[i])?,
                schedule: index("schedule_index", i, schedule[i])?,
                batch_size: if batch[i] <= 0 {
                    return Err(CoreError::invalid(
                        format!("cells.batch_size[{i}]"),
                        format!("must be positive, got {}", batch[i]),
                    )
                    .into());
                } else {
                    index("batch_size", i, batch[i])?
                },
                learning_rate: lr[i],
                replicate: u64::try_from(replicate[i]).map_err(|_| {
                    CoreError::invalid(
                        format!("cells.seed[{i}]"),
                        format!("must be non-negative, got {}", replicate[i]),
                    )
                })?,
            })
        })
        .collect()
}

/// How often a running sweep runs Python's signal handlers and reports its progress.
const POLL: Duration = Duration::from_millis(50);

/// Run the cells of a plan and return one column per outcome (see `critbatch.results`).
///
/// Every [`POLL`] the call takes the GIL to run Python's signal handlers and to pass the number
/// of finished runs to `progress` (when it changed). An exception from either (Ctrl-C's
/// `KeyboardInterrupt`) cancels the sweep; once the runs in flight have stopped (within a step)
/// it is raised with the finished runs' columns attached as `partial_outcomes`, plus `rows`, their
/// positions in `cells`.
///
/// `common_random_numbers` keys each run by (seed, problem, batch size, replicate) instead of
/// its run index ([`crate::rng::crn_key`]); `min_losses` holds each problem's exact minimum
/// (None where unknown), which `target.loss_gap_below` is measured from.
///
/// `trajectory_metrics` names what a trajectory records every `trajectory_every` steps
/// ([`TrajectoryMetrics::NAMES`]; default the loss only): the losses come back as
/// `trajectories`, the full-gradient norms as `grad_norm_trajectories`, one array per run each
/// (an empty list for a metric not recorded). `dtype` (`"float64"` or `"float32"`) is the float
/// type the runs compute in ([`crate::real`]): the specs are read in `f64` and rounded once
/// ([`Plan::cast`]). `weight_averaging` (τ in (0, 1), or `None`) makes every check read the
/// bias-corrected average of the iterates ([`crate::run`]).
#[pyfunction]
#[pyo3(signature = (problems, optimizers, schedules, target, cells, seed, threads, trajectory_every, progress=None, mode="steps", common_random_numbers=false, min_losses=None, trajectory_metrics=None, dtype="float64", weight_averaging=None))]
#[allow(clippy::too_many_arguments)] // the plan's parts, as Python holds them
fn run_plan<'py>(
    py: Python<'py>,
    problems: &Bound<'py, PyAny>,
    optimizers: &Bound<'py, PyAny>,
    schedules: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    cells: &Bound<'py, PyAny>,
    seed: u64,
    threads: usize,
    trajectory_every: u64,
    progress: Option<&Bound<'py, PyAny>>,
    mode: &str,
    common_random_numbers: bool,
    min_losses: Option<Vec<Option<f64>>>,
    trajectory_metrics: Option<Vec<String>>,
    dtype: &str,
    weight_averaging: Option<f64>,
) -> PyResult<Bound<'py, PyDict>> {
    if let Some(tau) = weight_averaging {
        if !(tau > 0.0 && tau < 1.0) {
            return Err(CoreError::invalid(
                "weight_averaging",
                format!("must be in (0, 1), the average's decay, got {tau}"),
            )
            .into());
        }
    }
    let trajectory_metrics = match trajectory_metrics {
        None => TrajectoryMetrics::LOSS,
        Some(names) => TrajectoryMetrics::from_names(&names)?,
    };
    let single = match dtype {
        "float64" => false,
        "float32" => true,
        _ => {
            return Err(CoreError::UnknownOption {
                field: "dtype".into(),
                got: dtype.into(),
                allowed: &["float64", "float32"],
            }
            .into())
        }
    };
    let mode = match mode {
        "steps" => RunMode::Steps,
        "exact_jumps" => RunMode::ExactJumps,
        _ => {
            return Err(CoreError::UnknownOption {
                field: "mode".into(),
                got: mode.into(),
                allowed: &["steps", "exact_jumps"],
            }
            .into())
        }
    };
    let plan = Plan {
        problems: parse_list(problems, "problems", parse_problem)?,
        optimizers: parse_list(optimizers, "optimizers", parse_optimizer)?,
        schedules: parse_list(schedules, "schedules", parse_schedule)?,
        target: parse_target(&fields(target, "target".into())?)?,
        seed,
        trajectory_every,
        trajectory_metrics,
        mode,
        weight_averaging,
        common_random_numbers,
        min_losses: min_losses.unwrap_or_default(),
    };
    if !plan.min_losses.is_empty() {
        expect_len(
            "min_losses".into(),
            plan.min_losses.len(),
            plan.problems.len(),
        )?;
    }
    if let Some((coordinate, _)) = plan.target.position_below {
        if let Some(i) = plan.problems.iter().position(|p| coordinate >= p.dim()) {
            return Err(CoreError::invalid(
                "target.position_coordinate",
                format!(
                    "must be < {} (the dimension of problems[{i}]), got {coordinate}",
                    plan.problems[i].dim()
                ),
            )
            .into());
        }
    }
    let cells = parse_cells(&fields(cells, "cells".into())?, common_random_numbers)?;
    for (i, c) in cells.iter().enumerate() {
        if let Some(Problem::FiniteSum(fs)) = plan.problems.get(c.problem) {
            {
                if fs.sampling == Sampling::Shuffle && c.batch_size > fs.n {
                    return Err(CoreError::invalid(format!("cells.batch_size[{i}]"), format!("must be <= {} (the samples of problems[{}], drawn without replacement), got {}", fs.n, c.problem, c.batch_size)).into());
                }
            }
        }
    }
    let control = Control::new();
    let (outcome, interrupt) = if single {
        watch(py, &plan.cast::<f32>(), &cells, threads, &control, progress)?
    } else {
        watch(py, &plan, &cells, threads, &control, progress)?
    };
    let Some(err) = interrupt else {
        let records = outcome?
            .into_iter()
            .map(|record| record.ok_or(CoreError::Cancelled))
            .collect::<Result<Vec<_>, _>>()?;
        return records_to_dict(py, &records);
    };
    // A run that failed after the interrupt loses to it: the user asked to stop.
    if let Ok(records) = outcome {
        let rows: Vec<i64> = (0..records.len())
            .filter(|&i| records[i].is_some())
            .map(|i| i as i64)
            .collect();
        let finished: Vec<RunRecord> = records.into_iter().flatten().collect();
        let partial = records_to_dict(py, &finished)?;
        partial.set_item("rows", PyArray1::from_vec(py, rows))?;
        err.value(py).setattr("partial_outcomes", partial)?;
    }
    Err(err)
}

/// The records of a controlled sweep (or its error), and the Python exception that stopped it.
type Watched = (Result<Vec<Option<RunRecord>>, CoreError>, Option<PyErr>);

/// Run `cells` on a helper thread while this thread waits with the GIL released, waking every
/// [`POLL`] to run the signal handlers and report progress; an exception from either cancels the
/// sweep and is returned once the helper has stopped.
fn watch<T: Real>(
    py: Python<'_>,
    plan: &Plan<T>,
    cells: &[Cell],
    threads: usize,
    control: &Control,
    progress: Option<&Bound<'_, PyAny>>,
) -> PyResult<Watched> {
    std::thread::scope(|s| {
        let (tx, mut rx) = mpsc::channel();
        let worker = s.spawn(move || {
            // The receiver outlives the helper unless this thread panicked.
            let _ = tx.send(plan.execute_controlled(cells, threads, control));
        });
        let mut interrupt: Option<PyErr> = None;
        let mut reported = 0u64;
        let outcome = loop {
            let (got, back) = py.detach(move || (rx.recv_timeout(POLL), rx));
            rx = back;
            match got {
                Ok(outcome) => break Some(outcome),
                Err(RecvTimeoutError::Disconnected) => break None,
                Err(RecvTimeoutError::Timeout) if interrupt.is_some() => {}
                Err(RecvTimeoutError::Timeout) => {
                    let checked = py
                        .check_signals()
                        .and_then(|()| report(progress, control, &mut reported));
                    if let Err(e) = checked {
                        control.cancel();
                        interrupt = Some(e);
                    }
                }
            }
        };
        let joined = py.detach(|| worker.join());
        let outcome = match (joined, outcome) {
            (Ok(()), Some(outcome)) => outcome,
            (Err(panic), _) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(ToString::to_string)
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                return Err(PanicException::new_err(format!(
                    "the core panicked: {message}"
                )));
            }
            (Ok(()), None) => {
                return Err(PanicException::new_err(
                    "the core's sweep thread ended without a result",
                ))
            }
        };
        if interrupt.is_none() {
            if let Err(e) = report(progress, control, &mut reported) {
                interrupt = Some(e);
            }
        }
        Ok((outcome, interrupt))
    })
}

/// Pass the number of finished runs to `progress` if it changed since the last call.
fn report(
    progress: Option<&Bound<'_, PyAny>>,
    control: &Control,
    reported: &mut u64,
) -> PyResult<()> {
    let Some(callback) = progress else {
        return Ok(());
    };
    let finished = control.finished();
    if finished != *reported {
        callback.call1((finished,))?;
        *reported = finished;
    }
    Ok(())
}

fn records_to_dict<'py>(py: Python<'py>, records: &[RunRecord]) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    // Steps and SFO are at most 2^63 - 1 (`Fields::int` bounds the budget, `run` the SFO).
    let col_u =
        |f: fn(&RunRecord) -> u64| -> Vec<i64> { records.iter().map(|r| f(r) as i64).collect() };
    let col_f = |f: fn(&RunRecord) -> f64| -> Vec<f64> { records.iter().map(f).collect() };
    let col_b = |f: fn(&RunRecord) -> bool| -> Vec<bool> { records.iter().map(f).collect() };
    out.set_item("steps", PyArray1::from_vec(py, col_u(|r| r.steps)))?;
    out.set_item("sfo", PyArray1::from_vec(py, col_u(|r| r.sfo)))?;
    out.set_item("reached", PyArray1::from_vec(py, col_b(RunRecord::reached)))?;
    out.set_item(
        "diverged",
        PyArray1::from_vec(py, col_b(RunRecord::diverged)),
    )?;
    // One string object per reason, shared by the rows (`ALL` is in declaration order).
    let names = StopReason::ALL.map(|reason| PyString::new(py, reason.as_str()));
    out.set_item(
        "stop_reason",
        PyList::new(
            py,
            records
                .iter()
                .map(|r| names[r.stop_reason as usize].clone()),
        )?,
    )?;
    out.set_item(
        "final_loss",
        PyArray1::from_vec(py, col_f(|r| r.final_loss)),
    )?;
    out.set_item(
        "final_grad_norm",
        PyArray1::from_vec(py, col_f(|r| r.final_grad_norm)),
    )?;
    out.set_item("final_x0", PyArray1::from_vec(py, col_f(|r| r.final_x0)))?;
    out.set_item("wall_time", PyArray1::from_vec(py, col_f(|r| r.wall_time)))?;
    let trajectories = PyList::empty(py);
    for r in records.iter().filter(|r| !r.trajectory.is_empty()) {
        trajectories.append(PyArray1::from_slice(py, &r.trajectory))?;
    }
    out.set_item("trajectories", trajectories)?;
    let grad_norm_trajectories = PyList::empty(py);
    for r in records
        .iter()
        .filter(|r| !r.grad_norm_trajectory.is_empty())
    {
        grad_norm_trajectories.append(PyArray1::from_slice(py, &r.grad_norm_trajectory))?;
    }
    out.set_item("grad_norm_trajectories", grad_norm_trajectories)?;
    Ok(out)
}

/// The iterates `x_1..x_K` of an optimizer fed a fixed gradient sequence (rows of `grads`),
/// with the coordinates laid out in `layers` (sizes; default one block) as a problem declares.
#[pyfunction]
#[pyo3(signature = (optimizer, x0, grads, lrs, layers=None))]
#[allow(clippy::needless_pass_by_value)] // PyO3 extracts arguments by value
fn optimizer_trajectory<'py>(
    py: Python<'py>,
    optimizer: &Bound<'py, PyAny>,
    x0: PyReadonlyArray1<'py, f64>,
    grads: PyReadonlyArray2<'py, f64>,
    lrs: PyReadonlyArray1<'py, f64>,
    layers: Option<Vec<usize>>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let opt = parse_optimizer(&fields(optimizer, "optimizer".into())?)?;
    let mut x = x0.as_array().to_vec();
    let (steps, dim) = (grads.shape()[0], grads.shape()[1]);
    if dim != x.len() {
        return Err(CoreError::shape(
            "grads",
            format!("(K, {})", x.len()),
            format!("({steps}, {dim})"),
        )
        .into());
    }
    expect_len("lrs".into(), lrs.as_array().len(), steps)?;
    let grads = grads.as_array();
    let lrs = lrs.as_array();
    let layers = layers.unwrap_or_else(|| vec![dim]);
    if layers.iter().sum::<usize>() != dim || layers.contains(&0) {
        return Err(CoreError::invalid(
            "layers",
            format!("must be positive sizes that add up to {dim}, got {layers:?}"),
        )
        .into());
    }
    let mut state = opt.init(&layers)?;
    let mut out = Vec::with_capacity(steps * dim);
    for k in 0..steps {
        let g: Vec<f64> = grads.row(k).to_vec();
        opt.step(&mut state, &mut x, &g, lrs[k]);
        out.extend_from_slice(&x);
    }
    PyArray1::from_vec(py, out).reshape([steps, dim])
}

/// The exact loss and full gradient of a problem at `x`.
#[pyfunction]
#[allow(clippy::needless_pass_by_value)] // PyO3 extracts arguments by value
fn loss_and_grad<'py>(
    py: Python<'py>,
    problem: &Bound<'py, PyAny>,
    x: PyReadonlyArray1<'py, f64>,
) -> PyResult<(f64, Bound<'py, PyArray1<f64>>)> {
    let p = parse_problem(&fields(problem, "problem".into())?)?;
    let x = x.as_array().to_vec();
    expect_len("x".into(), x.len(), p.dim())?;
    let mut g = vec![0.0; x.len()];
    p.grad(&x, &mut g);
    Ok((p.loss(&x), PyArray1::from_vec(py, g)))
}

/// `n` standard normals from the core's sampler for the run `(seed, run_index)`.
#[pyfunction]
fn normals(py: Python<'_>, seed: u64, run_index: u64, n: usize) -> Bound<'_, PyArray1<f64>> {
    let mut out = vec![0.0; n];
    py.detach(|| NormalStream::new(run_key(seed, run_index)).fill(&mut out));
    PyArray1::from_vec(py, out)
}

/// The compiled core of critbatch.
#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run_plan, m)?)?;
    m.add_function(wrap_pyfunction!(optimizer_trajectory, m)?)?;
    m.add_function(wrap_pyfunction!(loss_and_grad, m)?)?;
    m.add_function(wrap_pyfunction!(normals, m)?)?;
    m.add("MAX_DRAWN_BATCH", MAX_DRAWN_BATCH)?;
    Ok(())
}
