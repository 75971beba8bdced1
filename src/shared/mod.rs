//! Formats and math shared by every santools tool: segment geometry, the
//! ddless checksum file, the ddmap change bitmap, and the small file-system
//! primitives (atomic replace, locks, device size, aligned buffers) that the
//! writing tools build their crash safety on.
//!
//! Nothing here prints or parses command-line arguments; errors are typed so
//! the tool front ends can add the file name and decide the exit code.

pub mod aligned_buffer;
pub mod atomic_file;
pub mod block_device;
pub mod change_map;
pub mod checksum_file;
pub mod checksum_record;
pub mod checksum_x8;
pub mod command;
pub mod crc32_fold;
pub mod ddmap_file;
pub mod extents;
pub mod failpoint;
pub mod file_identity;
pub mod file_lock;
pub mod mapped_file;
pub mod murmur3;
pub mod object_stamp;
pub mod owned_dir;
pub mod reflink;
pub mod segment;
#[cfg(test)]
pub(crate) mod test_bytes;
pub mod text_file;
pub mod units;
