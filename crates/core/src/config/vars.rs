//! Reading vars strictly: an unset var takes its default, a set but blank or
//! invalid one is a [`ConfigProblem`] naming the var and what it accepts.
//! All problems are collected, not just the first ([`ConfigError`]).
//!
//! Never holds a default of its own: callers pass them.

use std::fmt;

/// One var that is set to something the service cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The var's name.
    pub var: &'static str,
    /// Its value as set.
    pub value: String,
    /// What it accepts.
    pub expected: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.trim().is_empty() {
            write!(f, "{} is blank; expected {}", self.var, self.expected)
        } else {
            write!(
                f,
                "{} is {:?}; expected {}",
                self.var, self.value, self.expected
            )
        }
    }
}

/// Every var that is set wrongly (all of them, not just the first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", self.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ConfigError {
    /// The problems, in the order the vars are read.
    pub problems: Vec<ConfigProblem>,
}

/// Reads vars and collects problems.
pub(crate) struct Vars<F> {
    pub(crate) get: F,
    pub(crate) problems: Vec<ConfigProblem>,
}

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    /// `parse` of the var's trimmed value; `default` when unset; a problem
    /// (and `default`, to keep reading) when blank or refused.
    pub(crate) fn read<T>(
        &mut self,
        var: &'static str,
        default: T,
        expected: impl Into<String>,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> T {
        let Some(value) = (self.get)(var) else {
            return default;
        };
        match Some(value.trim()).filter(|v| !v.is_empty()).and_then(parse) {
            Some(parsed) => parsed,
            None => {
                self.problems.push(ConfigProblem {
                    var,
                    value,
                    expected: expected.into(),
                });
                default
            }
        }
    }

    pub(crate) fn text(&mut self, var: &'static str, default: &str) -> String {
        self.read(var, default.to_owned(), "a non-blank name", |v| {
            Some(v.to_owned())
        })
    }

    pub(crate) fn number<T: std::str::FromStr + PartialOrd + fmt::Display + Copy>(
        &mut self,
        var: &'static str,
        default: T,
        min: T,
        max: T,
    ) -> T {
        self.read(
            var,
            default,
            format!("a whole number from {min} to {max}"),
            |v| v.parse::<T>().ok().filter(|n| *n >= min && *n <= max),
        )
    }
}
