//! Enums stored as snake_case text: states, sides, effects. Each is one Rust enum with one
//! spelling per variant, used by serde, the database columns (`db::text_enum` maps them to
//! TEXT on both backends) and the CHECK constraints of migration `000009_state_checks`.
//! An unknown text is an error, never a default.

/// A text that names no variant of the enum it was read as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a known {what} (one of: {known})")]
pub struct UnknownValue {
    /// What was read, e.g. "change state".
    pub what: &'static str,
    pub value: String,
    /// The accepted spellings, comma-separated.
    pub known: String,
}

/// `VALUES`, `as_str`, `parse`, `FromStr` (error [`UnknownValue`]) and `Display` for an enum
/// whose variants each have one snake_case spelling.
macro_rules! text_enum {
    ($ty:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const VALUES: &'static [$ty] = &[$($ty::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<$ty> {
                match s {
                    $($text => Some($ty::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::domain::text_enum::UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::parse(s).ok_or_else(|| $crate::domain::text_enum::UnknownValue {
                    what: $what,
                    value: s.to_string(),
                    known: [$($text),+].join(", "),
                })
            }
        }

        /// In the OpenAPI document: a string, one of the spellings.
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $ty {}

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use text_enum;

/// The checks every text enum's unit test runs: each variant's text parses back to it and
/// is its serde spelling; an unknown text is refused with a message that names it.
#[cfg(test)]
pub(crate) fn assert_round_trip<T>(values: &[T])
where
    T: Copy
        + PartialEq
        + std::fmt::Debug
        + std::fmt::Display
        + std::str::FromStr<Err = UnknownValue>
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    assert!(!values.is_empty());
    for &v in values {
        let text = v.to_string();
        assert_eq!(text.parse::<T>(), Ok(v), "{text}");
        assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{text}\""));
        assert_eq!(
            serde_json::from_str::<T>(&format!("\"{text}\"")).unwrap(),
            v
        );
        assert!(
            text.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{text} is snake_case"
        );
    }
    for bad in ["", "bogus", "Draft", "ACTIVE", " active", "pending "] {
        if let Ok(v) = bad.parse::<T>() {
            panic!("{bad:?} parsed as {v:?}");
        }
    }
    let e = "bogus".parse::<T>().unwrap_err();
    assert_eq!(e.value, "bogus");
    assert!(e.to_string().contains("`bogus` is not a known"), "{e}");
    assert!(e.to_string().contains(&values[0].to_string()), "{e}");
}

#[cfg(test)]
mod tests {
    use crate::domain::Effect;

    #[test]
    fn effect_text_round_trips() {
        super::assert_round_trip(Effect::VALUES);
        let names: Vec<&str> = Effect::VALUES.iter().map(|e| e.as_str()).collect();
        assert_eq!(names, Effect::ALL);
    }
}
