//! Reading a ddmap from a regular file or a live /proc/net/iet/ddmap entry.
//! Proc entries report size 0, so the content is read to end of file
//! rather than by length.

use std::io::Read;
use std::path::Path;

use anyhow::Context;

use crate::shared::ddmap_file::Ddmap;

/// Upper bound on a ddmap's size: 2^32 words plus the header.
const MAX_MAP_BYTES: u64 = (1 << 34) + 20;

/// All bytes of a ddmap source.
pub fn read_map_bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening ddmap {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_MAP_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading ddmap {}", path.display()))?;
    if bytes.len() as u64 > MAX_MAP_BYTES {
        anyhow::bail!("ddmap {}: larger than any ddmap can be ({} bytes)", path.display(), MAX_MAP_BYTES);
    }
    tracing::info!("opened map {}", path.display());
    Ok(bytes)
}

/// Reads and parses a whole ddmap; errors name the file and the field.
pub fn load_ddmap(path: &Path) -> anyhow::Result<Ddmap> {
    let bytes = read_map_bytes(path)?;
    let map = Ddmap::parse(&bytes).with_context(|| format!("ddmap {}", path.display()))?;
    tracing::info!("header size {}", crate::shared::ddmap_file::DDMAP_HEADER_SIZE);
    Ok(map)
}
