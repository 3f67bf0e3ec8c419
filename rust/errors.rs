//! Errors of the core, as data. `py.rs` maps them to Python exceptions at the boundary.

use std::fmt;

/// Everything the core can reject; each variant names the offending field.
#[derive(Debug, Clone, PartialEq)]
pub enum CoreError {
    /// A numeric field is out of its allowed range (value and the rule it broke).
    InvalidValue {
        /// Dotted path of the field, e.g. `problems[0].h`.
        field: String,
        /// The rule, e.g. `must be positive, got -1`.
        reason: String,
    },
    /// A string option is not one of the allowed values.
    UnknownOption {
        /// Dotted path of the field.
        field: String,
        /// What was given.
        got: String,
        /// What would have been accepted.
        allowed: &'static [&'static str],
    },
    /// Two arrays (or an array and a count) disagree in length.
    ShapeMismatch {
        /// Dotted path of the field.
        field: String,
        /// The expected shape, in words.
        expected: String,
        /// The shape received.
        got: String,
    },
    /// The run was stopped by a cancelled sweep ([`crate::sweep::Control::cancel`]) before it
    /// finished; a sweep drops such runs from its records instead of failing.
    Cancelled,
}

impl CoreError {
    /// Shorthand for [`CoreError::InvalidValue`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidValue {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`CoreError::ShapeMismatch`].
    pub fn shape(
        field: impl Into<String>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Self::ShapeMismatch {
            field: field.into(),
            expected: expected.into(),
            got: got.into(),
        }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidValue { field, reason } => write!(f, "{field} {reason}"),
            Self::UnknownOption {
                field,
                got,
                allowed,
            } => {
                write!(
                    f,
                    "{field} must be one of {}, got {got:?}",
                    allowed.join(", ")
                )
            }
            Self::ShapeMismatch {
                field,
                expected,
                got,
            } => {
                write!(f, "{field} must have shape {expected}, got {got}")
            }
            Self::Cancelled => write!(f, "the sweep was cancelled before the run finished"),
        }
    }
}

impl std::error::Error for CoreError {}

/// Result type of the core.
pub type CoreResult<T> = Result<T, CoreError>;

/// Check that `value` is finite and positive.
pub fn check_positive(field: &str, value: f64) -> CoreResult<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(CoreError::invalid(
            field,
            format!("must be positive and finite, got {value}"),
        ))
    }
}

/// Check that `value` lies in `[low, high)`.
pub fn check_unit_interval(field: &str, value: f64, low: f64, high: f64) -> CoreResult<f64> {
    if value >= low && value < high {
        Ok(value)
    } else {
        Err(CoreError::invalid(
            field,
            format!("must be in [{low}, {high}), got {value}"),
        ))
    }
}

/// Check that every entry of `values` is finite.
pub fn check_finite(field: &str, values: &[f64]) -> CoreResult<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(CoreError::invalid(
            format!("{field}[{i}]"),
            format!("must be finite, got {}", values[i]),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field() {
        let e = check_positive("learning_rate", -1.0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "learning_rate must be positive and finite, got -1"
        );
        let e = check_finite("h", &[1.0, f64::NAN]).unwrap_err();
        assert!(e.to_string().starts_with("h[1] must be finite"));
        let e = CoreError::UnknownOption {
            field: "sampling".into(),
            got: "x".into(),
            allowed: &["a", "b"],
        };
        assert_eq!(e.to_string(), "sampling must be one of a, b, got \"x\"");
    }

    #[test]
    fn unit_interval_is_closed_below_and_open_above() {
        assert_eq!(
            check_unit_interval("momentum", 0.0, 0.0, 1.0).ok(),
            Some(0.0)
        );
        assert!(check_unit_interval("momentum", 1.0, 0.0, 1.0).is_err());
        assert!(check_unit_interval("momentum", -1e-12, 0.0, 1.0).is_err());
        assert_eq!(
            check_unit_interval("momentum", 0.5, 0.0, 1.0).ok(),
            Some(0.5)
        );
    }
}
