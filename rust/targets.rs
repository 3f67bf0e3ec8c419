//! Targets: when a run is done, its budget, and when it has diverged.

/// A stopping rule, checked at step 0 and every `check_every` steps (and at `max_steps`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// Reached when the full loss is `<=` this.
    pub loss_below: Option<f64>,
    /// Reached when the full-gradient norm is `<=` this.
    pub grad_norm_below: Option<f64>,
    /// Reached when coordinate `.0` of the iterate is `<` `.1`.
    pub position_below: Option<(usize, f64)>,
    /// Steps between checks.
    pub check_every: u64,
    /// Step budget.
    pub max_steps: u64,
    /// Diverged when the loss exceeds this factor times `max(loss(x0), 1)`.
    pub divergence_factor: f64,
}

/// Why a run stopped: the `stop_reason` column (the names are [`StopReason::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The target is met.
    Reached,
    /// The step budget is spent.
    Budget,
    /// The loss, the iterate or the final gradient norm is not finite (NaN or infinite).
    DivergedNonfinite,
    /// The loss is finite but exceeds the blow-up level.
    DivergedBlowup,
}

impl StopReason {
    /// Every reason, in the order of the Python constant `critbatch.results.STOP_REASONS`.
    pub const ALL: [Self; 4] = [
        Self::Reached,
        Self::Budget,
        Self::DivergedNonfinite,
        Self::DivergedBlowup,
    ];

    /// The name stored in the results table.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reached => "reached",
            Self::Budget => "budget",
            Self::DivergedNonfinite => "diverged_nonfinite",
            Self::DivergedBlowup => "diverged_blowup",
        }
    }

    /// Either kind of divergence.
    #[must_use]
    pub fn is_diverged(self) -> bool {
        matches!(self, Self::DivergedNonfinite | Self::DivergedBlowup)
    }

    /// The reason after the final gradient norm is known: a run that stopped reached or at its
    /// budget with a non-finite gradient norm did not converge to anything, it diverged.
    #[must_use]
    pub fn with_final_grad_norm(self, grad_norm: f64) -> Self {
        if self.is_diverged() || grad_norm.is_finite() {
            self
        } else {
            Self::DivergedNonfinite
        }
    }
}

impl Target {
    /// Whether step `t` is a checkpoint.
    #[must_use]
    pub fn is_check(&self, t: u64) -> bool {
        t.is_multiple_of(self.check_every) || t >= self.max_steps
    }

    /// The loss above which a run that started at loss `loss0` counts as diverged.
    #[must_use]
    pub fn blow_up_level(&self, loss0: f64) -> f64 {
        self.divergence_factor * loss0.abs().max(1.0)
    }

    /// Judge a checkpoint at step `t` (`grad_norm` is NaN when it was not computed): `None`
    /// to keep going, else why the run stops.
    #[must_use]
    pub fn judge(
        &self,
        t: u64,
        loss: f64,
        grad_norm: f64,
        x: &[f64],
        blow_up: f64,
    ) -> Option<StopReason> {
        if !loss.is_finite() || x.iter().any(|v| !v.is_finite()) {
            return Some(StopReason::DivergedNonfinite);
        }
        if loss > blow_up {
            return Some(StopReason::DivergedBlowup);
        }
        let by_loss = self.loss_below.is_some_and(|tau| loss <= tau);
        let by_grad = self.grad_norm_below.is_some_and(|eps| grad_norm <= eps);
        let by_position = self.position_below.is_some_and(|(i, a)| x[i] < a);
        if by_loss || by_grad || by_position {
            Some(StopReason::Reached)
        } else if t >= self.max_steps {
            Some(StopReason::Budget)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Target = Target {
        loss_below: Some(0.5),
        grad_norm_below: None,
        position_below: Some((1, -2.0)),
        check_every: 10,
        max_steps: 25,
        divergence_factor: 100.0,
    };

    #[test]
    fn checks_fall_on_multiples_and_the_budget() {
        let checks: Vec<u64> = (0..=25).filter(|&t| T.is_check(t)).collect();
        assert_eq!(checks, vec![0, 10, 20, 25]);
    }

    #[test]
    fn verdicts() {
        let blow = T.blow_up_level(2.0);
        assert_eq!(blow, 200.0);
        let judge = |t, loss, x: &[f64]| T.judge(t, loss, f64::NAN, x, blow);
        assert_eq!(judge(3, 1.0, &[0.0, 0.0]), None);
        assert_eq!(judge(3, 0.5, &[0.0, 0.0]), Some(StopReason::Reached));
        assert_eq!(judge(3, 1.0, &[0.0, -3.0]), Some(StopReason::Reached));
        assert_eq!(judge(25, 1.0, &[0.0, 0.0]), Some(StopReason::Budget));
        assert_eq!(
            judge(3, 201.0, &[0.0, 0.0]),
            Some(StopReason::DivergedBlowup)
        );
        let nonfinite = Some(StopReason::DivergedNonfinite);
        assert_eq!(judge(3, f64::NAN, &[0.0, 0.0]), nonfinite);
        assert_eq!(judge(3, f64::INFINITY, &[0.0, 0.0]), nonfinite);
        assert_eq!(judge(3, 0.1, &[f64::INFINITY, 0.0]), nonfinite);
    }

    #[test]
    fn a_non_finite_final_gradient_norm_turns_a_stop_into_divergence() {
        let nonfinite = StopReason::DivergedNonfinite;
        assert_eq!(
            StopReason::Reached.with_final_grad_norm(f64::NAN),
            nonfinite
        );
        assert_eq!(
            StopReason::Budget.with_final_grad_norm(f64::INFINITY),
            nonfinite
        );
        assert_eq!(
            StopReason::Budget.with_final_grad_norm(1e300),
            StopReason::Budget
        );
        let blowup = StopReason::DivergedBlowup;
        assert_eq!(blowup.with_final_grad_norm(f64::NAN), blowup);
        let names: Vec<&str> = StopReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            ["reached", "budget", "diverged_nonfinite", "diverged_blowup"]
        );
    }

    #[test]
    fn a_start_at_zero_loss_does_not_count_as_diverged() {
        assert_eq!(T.blow_up_level(0.0), 100.0);
    }
}
