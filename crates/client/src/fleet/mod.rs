//! Workers on machines the user reaches by SSH: `client up` installs and starts one and saves
//! its profile, `client down` stops it, `client workers` lists the profiles and whether each
//! answers. The machine's side is one POSIX shell script sent over SSH with every call.

mod bundle;
pub mod down;
mod ssh;
pub mod tunnel;
pub mod up;
pub mod workers;
