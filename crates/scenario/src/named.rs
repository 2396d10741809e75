//! Kinds that travel by name: a unit enum whose variants each have one name, written once, from
//! which serde, `Display`, the list of all and the parsing of a name all follow.

/// Declares `enum $name` with `$name::ALL`, `$name::name`, `Display`, serde through the name,
/// and `TryFrom<String>` whose error `$error` says "NAME is not $what; expected one of [...]".
#[macro_export]
macro_rules! named_kinds {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident, error $error:ident ($what:literal) {
            $($(#[$vmeta:meta])* $variant:ident => $text:literal),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            ::serde::Serialize, ::serde::Deserialize,
        )]
        #[serde(into = "&'static str", try_from = "String")]
        $vis enum $name {
            $($(#[$vmeta])* $variant),*
        }

        impl $name {
            /// Every kind, in the order declared.
            pub const ALL: [$name; [$($text),*].len()] = [$($name::$variant),*];

            /// Its name in scenarios, reports and logs.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text),*
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl From<$name> for &'static str {
            fn from(k: $name) -> &'static str {
                k.name()
            }
        }

        #[doc = concat!("A name that is not ", $what, ".")]
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $error(pub String);

        impl ::std::fmt::Display for $error {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                let names = $name::ALL.map($name::name);
                write!(f, "{:?} is not {}; expected one of {names:?}", self.0, $what)
            }
        }

        impl ::std::error::Error for $error {}

        impl TryFrom<String> for $name {
            type Error = $error;

            fn try_from(name: String) -> Result<$name, $error> {
                ($name::ALL.into_iter())
                    .find(|k| k.name() == name)
                    .ok_or($error(name))
            }
        }
    };
}
