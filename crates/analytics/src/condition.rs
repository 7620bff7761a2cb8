//! `having` filters and alert conditions: one comparison, `<value> <op> <number>`.
//!
//! The value is an aggregate of a row (`count > 0`), or — on a whole window's result —
//! the row whose group-by value is a name (`ERROR > 1`: the first aggregate of the row
//! grouped under `ERROR`, 0 when the window has no such row), or a given aggregate of it
//! (`ERROR.count > 1`).

use std::fmt;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// What is compared: an aggregate name, a group value, or `group.aggregate`.
    pub subject: String,
    /// How.
    pub op: Op,
    /// With what.
    pub number: f64,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        };
        write!(f, "{} {op} {}", self.subject, self.number)
    }
}

impl Condition {
    /// Parses `value op number`.
    ///
    /// # Errors
    /// Not of that shape.
    pub fn parse(text: &str) -> Result<Self, String> {
        let ops = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
        ];
        for (token, op) in ops {
            if let Some((left, right)) = text.split_once(token) {
                let subject = left.trim().trim_matches(['"', '\'']).to_owned();
                let number: f64 = right
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{text}`: `{}` is not a number", right.trim()))?;
                if subject.is_empty() {
                    return Err(format!("`{text}`: nothing to compare"));
                }
                return Ok(Self {
                    subject,
                    op,
                    number,
                });
            }
        }
        Err(format!(
            "`{text}` is not `<value> <op> <number>` (op one of > >= < <= == !=)"
        ))
    }

    /// Whether `value` satisfies it.
    pub fn holds(&self, value: f64) -> bool {
        match self.op {
            Op::Gt => value > self.number,
            Op::Ge => value >= self.number,
            Op::Lt => value < self.number,
            Op::Le => value <= self.number,
            Op::Eq => (value - self.number).abs() < f64::EPSILON,
            Op::Ne => (value - self.number).abs() >= f64::EPSILON,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_compares() {
        let c = Condition::parse("ERROR > 1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.subject, "ERROR");
        assert!(!c.holds(1.0) && c.holds(2.0));
        let c = Condition::parse("count >= 10").unwrap_or_else(|e| panic!("{e}"));
        assert!(c.holds(10.0) && !c.holds(9.0));
        assert!(Condition::parse("count > many").is_err());
        assert!(Condition::parse("count").is_err());
        assert!(Condition::parse(" > 1").is_err());
    }
}
