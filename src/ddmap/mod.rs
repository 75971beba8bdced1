//! ddmap: inspect, merge and build ddmap change bitmaps, and drive IET's
//! ddmap proc controls. The library functions here are what the CLI (and
//! the archive backup) call; the format and bit math live in
//! `shared::ddmap_file` and `shared::change_map`.

pub mod cli;
mod dump;
mod map_io;
mod merge;
mod proc_control;

pub use dump::{data_row, data_rows, HeaderInfo, MapStats};
pub use map_io::{load_ddmap, open_map, MapStream};
pub use merge::{check_map_name, merge_extents, merge_file, MergeReport};
pub use proc_control::{proc_control, ProcCommand};
