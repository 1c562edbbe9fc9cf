//! E.164 phone numbers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A phone number in E.164 form: `+`, a country code not starting with 0, at most 15 digits.
///
/// Spaces, dashes, dots and parentheses are accepted on input and removed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

/// Why a phone number was rejected.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPhoneNumber {
    #[error("phone number must start with '+' and a country code (E.164)")]
    MissingPlus,
    #[error("phone number may contain only digits after '+'")]
    NotDigits,
    #[error("phone number must have 8 to 15 digits, not {0}")]
    Length(usize),
    #[error("country code cannot start with 0")]
    LeadingZero,
}

impl PhoneNumber {
    pub fn parse(input: &str) -> Result<Self, InvalidPhoneNumber> {
        let compact: String = input
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let digits = compact
            .strip_prefix('+')
            .ok_or(InvalidPhoneNumber::MissingPlus)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidPhoneNumber::NotDigits);
        }
        if !(8..=15).contains(&digits.len()) {
            return Err(InvalidPhoneNumber::Length(digits.len()));
        }
        if digits.starts_with('0') {
            return Err(InvalidPhoneNumber::LeadingZero);
        }
        Ok(PhoneNumber(compact))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PhoneNumber {
    type Err = InvalidPhoneNumber;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PhoneNumber::parse(s)
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = InvalidPhoneNumber;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        PhoneNumber::parse(&s)
    }
}

impl From<PhoneNumber> for String {
    fn from(p: PhoneNumber) -> String {
        p.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises_e164() {
        assert_eq!(
            PhoneNumber::parse("+1 (555) 010-0001").unwrap().as_str(),
            "+15550100001"
        );
        assert_eq!(
            PhoneNumber::parse("+447700900123").unwrap().as_str(),
            "+447700900123"
        );
    }

    #[test]
    fn rejects_malformed_numbers() {
        assert_eq!(
            PhoneNumber::parse("15550100001"),
            Err(InvalidPhoneNumber::MissingPlus)
        );
        assert_eq!(
            PhoneNumber::parse("+1555abc0001"),
            Err(InvalidPhoneNumber::NotDigits)
        );
        assert_eq!(
            PhoneNumber::parse("+1234"),
            Err(InvalidPhoneNumber::Length(4))
        );
        assert_eq!(
            PhoneNumber::parse("+1234567890123456"),
            Err(InvalidPhoneNumber::Length(16))
        );
        assert_eq!(
            PhoneNumber::parse("+0123456789"),
            Err(InvalidPhoneNumber::LeadingZero)
        );
    }
}
