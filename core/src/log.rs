//! Logging through `defmt` (feature `defmt`), and nothing without it: the
//! crate's private `info!` and `warning!` (defmt's `warn!`) take defmt's format strings and
//! arguments; without the feature each argument is only borrowed, so
//! nothing is formatted, linked or sent, and no variable is left unused.

#[cfg(feature = "defmt")]
macro_rules! info {
    ($($t:tt)*) => { defmt::info!($($t)*) };
}

#[cfg(feature = "defmt")]
macro_rules! warning {
    ($($t:tt)*) => { defmt::warn!($($t)*) };
}

#[cfg(not(feature = "defmt"))]
macro_rules! info {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{ $( let _ = &$arg; )* }};
}

#[cfg(not(feature = "defmt"))]
macro_rules! warning {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{ $( let _ = &$arg; )* }};
}

pub(crate) use {info, warning};
