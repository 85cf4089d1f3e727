//! STUB (replaced by the admin/observability work): signatures are the contract.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
    Off,
}

impl Level {
    pub fn parse(_s: &str) -> Option<Level> {
        unimplemented!()
    }
    pub fn name(self) -> &'static str {
        unimplemented!()
    }
}

pub fn set_level(_l: Level) {
    unimplemented!()
}
pub fn level() -> Level {
    unimplemented!()
}
pub fn enabled(_l: Level) -> bool {
    unimplemented!()
}
/// Writes one line to stderr: `[2026-11-23 10:07:00.123][1234][info][main] message`.
pub fn write(_l: Level, _module: &str, _args: std::fmt::Arguments<'_>) {
    unimplemented!()
}

#[macro_export]
macro_rules! log_at {
    ($lvl:expr, $($arg:tt)*) => {
        if $crate::logging::enabled($lvl) {
            $crate::logging::write($lvl, module_path!(), format_args!($($arg)*));
        }
    };
}
#[macro_export]
macro_rules! error { ($($arg:tt)*) => { $crate::log_at!($crate::logging::Level::Error, $($arg)*) }; }
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { $crate::log_at!($crate::logging::Level::Warn, $($arg)*) }; }
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { $crate::log_at!($crate::logging::Level::Info, $($arg)*) }; }
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { $crate::log_at!($crate::logging::Level::Debug, $($arg)*) }; }
#[macro_export]
macro_rules! trace { ($($arg:tt)*) => { $crate::log_at!($crate::logging::Level::Trace, $($arg)*) }; }
