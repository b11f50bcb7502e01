//! A share's DAX settings and `st_blksize` checks live in the `settings` crate, which the jail's
//! policy checks share; this path keeps the device's own modules naming them as before.

pub use settings::dax::*;
