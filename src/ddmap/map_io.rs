//! Reading a ddmap from a regular file or a live /proc/net/iet/ddmap entry
//! (proc entries report size 0, so the data is read to its announced end).
//! The 20-byte header is always read and checked first; the data is then
//! streamed in bounded chunks, or read whole only where a whole map is
//! needed.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::Context;

use crate::shared::ddmap_file::{load_ddmap_file, Ddmap, MapReader, DDMAP_HEADER_SIZE};

/// A ddmap opened for streaming, its header read and checked.
pub type MapStream = MapReader<BufReader<File>>;

/// Opens `path` and reads its header (nothing more). A regular file whose
/// length does not match the header is refused here already.
pub fn open_map(path: &Path) -> anyhow::Result<MapStream> {
    let file = File::open(path).with_context(|| format!("opening ddmap {}", path.display()))?;
    let meta = file.metadata().with_context(|| format!("ddmap {}", path.display()))?;
    if meta.is_dir() {
        anyhow::bail!("ddmap {} is a directory, not a ddmap", path.display());
    }
    let reader = MapReader::open(BufReader::with_capacity(1 << 16, file))
        .with_context(|| format!("ddmap {}", path.display()))?;
    let expected = DDMAP_HEADER_SIZE as u64 + reader.header().map_size_bytes();
    if meta.is_file() && meta.len() != 0 && meta.len() != expected {
        anyhow::bail!(
            "ddmap {}: header map_size {} words needs {} bytes of map data, found {}",
            path.display(),
            reader.header().map_size,
            reader.header().map_size_bytes(),
            meta.len().saturating_sub(DDMAP_HEADER_SIZE as u64)
        );
    }
    tracing::info!("opened map {}", path.display());
    tracing::info!("header size {DDMAP_HEADER_SIZE}");
    Ok(reader)
}

/// Reads and parses a whole ddmap; errors name the file and the field.
pub fn load_ddmap(path: &Path) -> anyhow::Result<Ddmap> {
    let map = load_ddmap_file(path, |_| Ok(())).with_context(|| format!("ddmap {}", path.display()))?;
    tracing::info!("opened map {}", path.display());
    tracing::info!("header size {DDMAP_HEADER_SIZE}");
    Ok(map)
}
