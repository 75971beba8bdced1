//! An iSCSI LUN as a block volume: `read_at`, `write_at`, `flush`
//! (SYNCHRONIZE CACHE), `size`, `block_size`. Thread-safe: callers on any
//! number of threads share one session, and each large request is split
//! into READ(16)/WRITE(16) commands that run up to the queue depth in
//! parallel.
//!
//! Durability: `flush` returns only after the target confirmed
//! SYNCHRONIZE CACHE, and fails when a reconnect may have lost
//! acknowledged writes (see session.rs): a caller that records state only
//! after `flush` succeeded never vouches for data that is not durable.

use serde::Serialize;

use super::error::InitiatorError;
use super::options::InitiatorOptions;
use super::scsi_ops::{self, status_error};
use super::session::{Session, SessionInfo};
use super::task::{Command, DataBuf, Outcome, TaskResult};
use super::url::IscsiUrl;
use crate::scsi::cdb;
use crate::scsi::data::{device_type_name, Capacity};
use crate::scsi::sense::SenseKey;

/// What was found at open.
#[derive(Clone, Debug, Serialize)]
pub struct LunInfo {
    pub url: String,
    pub target: String,
    pub lun: u16,
    pub size: u64,
    pub block_size: u32,
    pub vendor: String,
    pub product: String,
    /// Largest single command in bytes.
    pub max_transfer: u32,
    /// The LUN's global names (Device Identification VPD designators, or
    /// its serial number), sorted; empty when the target reports none.
    pub designators: Vec<String>,
    /// The target reports the medium write-protected (MODE SENSE WP).
    pub write_protected: bool,
}

impl LunInfo {
    /// What names this LUN however it is reached (through a portal's
    /// redirect or a node's own address): `TARGET-IQN/LUN/DESIGNATORS`.
    /// Never the URL: two URLs may name one LUN. Target software that
    /// derives designators from target and LUN numbers (tgt's defaults)
    /// gives a LUN recreated under the same numbers the same identity.
    pub fn identity(&self) -> String {
        let ids = if self.designators.is_empty() { "unidentified".to_string() } else { self.designators.join("+") };
        format!("{}/{}/{}", self.target, self.lun, ids)
    }
}

pub struct IscsiVolume {
    session: Session,
    info: LunInfo,
    capacity: Capacity,
    journal_limit: usize,
    queue_depth: usize,
}

fn volume_err(s: String) -> InitiatorError {
    InitiatorError::Volume(s)
}

impl IscsiVolume {
    /// Logs in and checks that the URL's LUN is a disk: TEST UNIT READY
    /// (which also takes the first UNIT ATTENTION), INQUIRY, READ
    /// CAPACITY, Block Limits.
    pub fn open(url: &IscsiUrl, opts: &InitiatorOptions) -> Result<IscsiVolume, InitiatorError> {
        let (Some(target), Some(lun)) = (url.target.as_deref(), url.lun) else {
            return Err(volume_err("a volume URL names a target and a LUN".to_string()));
        };
        let session = Session::open(&url.portal, target, opts)?;
        let inq = scsi_ops::inquiry(&session, lun)?;
        if inq.qualifier != 0 {
            return Err(volume_err(format!("target {target} has no LUN {lun}")));
        }
        if inq.device_type != 0 {
            return Err(volume_err(format!(
                "LUN {lun} is a {} device, not a disk (DIRECT_ACCESS)",
                device_type_name(inq.device_type)
            )));
        }
        if let Err(e) = scsi_ops::test_unit_ready(&session, lun) {
            return Err(volume_err(format!("LUN {lun} is not ready: {e}")));
        }
        let capacity = scsi_ops::read_capacity(&session, lun)?;
        let designators = scsi_ops::lun_identity(&session, lun);
        let write_protected = scsi_ops::write_protected(&session, lun);
        let limits = scsi_ops::block_limits(&session, lun);
        let bs = capacity.block_size;
        let mut max_transfer = opts.max_transfer / bs * bs;
        if limits.max_transfer_blocks > 0 {
            max_transfer = max_transfer.min(limits.max_transfer_blocks.saturating_mul(bs));
        }
        let max_transfer = max_transfer.max(bs);
        let info = LunInfo {
            url: url.to_string(),
            target: target.to_string(),
            lun,
            size: capacity.bytes(),
            block_size: bs,
            vendor: inq.vendor,
            product: inq.product,
            max_transfer,
            designators,
            write_protected,
        };
        tracing::info!(
            "opened {} ({} bytes, {}-byte blocks, {} {}, queue depth {}, {} KiB per command)",
            info.url,
            info.size,
            bs,
            info.vendor,
            info.product,
            opts.queue_depth,
            max_transfer / 1024
        );
        Ok(IscsiVolume {
            session,
            info,
            capacity,
            journal_limit: opts.write_journal_limit,
            queue_depth: opts.queue_depth,
        })
    }

    pub fn size(&self) -> u64 {
        self.info.size
    }

    pub fn block_size(&self) -> u32 {
        self.info.block_size
    }

    pub fn info(&self) -> &LunInfo {
        &self.info
    }

    /// Bytes the session keeps in flight at most: the queue depth times
    /// the largest command.
    pub fn bytes_in_flight(&self) -> u64 {
        self.queue_depth as u64 * u64::from(self.info.max_transfer)
    }

    pub fn session_info(&self) -> SessionInfo {
        self.session.info()
    }

    fn check_range(&self, offset: u64, len: u64, what: &str) -> Result<(), InitiatorError> {
        let past = match offset.checked_add(len) {
            Some(end) => end > self.info.size,
            None => true,
        };
        if past {
            return Err(volume_err(format!(
                "{what} of {len} bytes at offset {offset} is past the end of the LUN ({} bytes)",
                self.info.size
            )));
        }
        Ok(())
    }

    /// Within the LUN and whole blocks.
    fn check_blocks(&self, offset: u64, len: u64, what: &str) -> Result<(), InitiatorError> {
        self.check_range(offset, len, what)?;
        let bs = u64::from(self.info.block_size);
        if offset % bs != 0 || len % bs != 0 {
            return Err(volume_err(format!("{what} of {len} bytes at offset {offset} is not whole {bs}-byte blocks")));
        }
        Ok(())
    }

    /// A failed READ/WRITE in words: a LUN that shrank or vanished says so.
    fn io_error(&self, c: &cdb::Cdb, o: &Outcome) -> InitiatorError {
        let lun = self.info.lun;
        if let Some(s) = &o.sense {
            if s.key == SenseKey::IllegalRequest && s.asc == 0x21 {
                if let Ok(now) = scsi_ops::read_capacity(&self.session, lun) {
                    if now.bytes() < self.info.size {
                        return volume_err(format!(
                            "the LUN shrank from {} to {} bytes during the run",
                            self.info.size,
                            now.bytes()
                        ));
                    }
                }
            }
            if s.asc == 0x25 || (s.key == SenseKey::NotReady && s.asc == 0x3a) {
                return volume_err(format!("the LUN is gone ({s})"));
            }
        }
        status_error(c, lun, o)
    }

    /// Whether the target announced a capacity change; a smaller LUN is an error.
    fn check_capacity(&self) -> Result<(), InitiatorError> {
        if !self.session.take_capacity_changed() {
            return Ok(());
        }
        let now = scsi_ops::read_capacity(&self.session, self.info.lun)?;
        if now.bytes() < self.info.size || now.block_size != self.capacity.block_size {
            return Err(volume_err(format!(
                "the LUN changed from {} bytes ({}-byte blocks) to {} bytes ({}-byte blocks) during the run",
                self.info.size,
                self.capacity.block_size,
                now.bytes(),
                now.block_size
            )));
        }
        tracing::info!(
            "{}: the LUN grew to {} bytes; this run keeps using {}",
            self.info.url,
            now.bytes(),
            self.info.size
        );
        Ok(())
    }

    /// Fills `buf` from byte `offset` (any alignment; whole blocks are read
    /// straight into `buf`).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), InitiatorError> {
        self.check_range(offset, buf.len() as u64, "read")?;
        self.check_capacity()?;
        let bs = u64::from(self.info.block_size);
        if offset % bs == 0 && buf.len() as u64 % bs == 0 {
            return self.read_blocks(buf, offset / bs);
        }
        let first = offset / bs * bs;
        let end = (offset + buf.len() as u64).div_ceil(bs) * bs;
        let mut bounce = vec![0u8; (end - first) as usize];
        self.read_blocks(&mut bounce, first / bs)?;
        let skip = (offset - first) as usize;
        buf.copy_from_slice(&bounce[skip..skip + buf.len()]);
        Ok(())
    }

    /// Reads many ranges in one batch: all their commands go out together
    /// (up to the queue depth), the way to read scattered segments fast.
    /// Each `(offset, buf)` must be whole blocks.
    pub fn read_many(&self, reqs: &mut [(u64, &mut [u8])]) -> Result<(), InitiatorError> {
        for (off, b) in reqs.iter() {
            self.check_blocks(*off, b.len() as u64, "read")?;
        }
        self.check_capacity()?;
        let bs = u64::from(self.info.block_size);
        let mut cmds = Vec::new();
        for (off, b) in reqs.iter_mut() {
            self.push_reads(&mut cmds, b, *off / bs);
        }
        self.run_reads(cmds)
    }

    /// Reads `len` bytes from byte `offset` (whole blocks) and hands each
    /// command's bytes to `each(offset, bytes)`, in any order, on the
    /// session's thread as they arrive, in a buffer the session lends and
    /// takes back at once (read_pool.rs): for callers that only look at the
    /// data (hash it), it is used while still in the CPU's cache, and no
    /// thread waits per command. Blocks until all are done. On an error,
    /// `each` has seen some of the range. `each` must not use this volume
    /// (or its session): the session's thread would wait on itself. A
    /// panic in `each` ends the session; this call then fails.
    pub fn read_each(
        &self,
        offset: u64,
        len: u64,
        mut each: impl FnMut(u64, &[u8]) + Send,
    ) -> Result<(), InitiatorError> {
        self.check_blocks(offset, len, "read")?;
        self.check_capacity()?;
        let reads: Vec<(cdb::Cdb, usize)> = self.read_cdbs(offset, len).collect();
        let step = u64::from(self.info.max_transfer);
        let mut consume = |i: usize, bytes: &[u8]| each(offset + i as u64 * step, bytes);
        let results = self.session.read_consumed(self.info.lun, &reads, &mut consume);
        for ((c, want), r) in reads.iter().zip(results) {
            self.check_read(c, r, *want)?;
        }
        Ok(())
    }

    /// READ(16)s of at most the largest transfer covering `len` bytes
    /// from byte `offset` (whole blocks), with the bytes each reads.
    fn read_cdbs(&self, offset: u64, len: u64) -> impl Iterator<Item = (cdb::Cdb, usize)> {
        let bs = u64::from(self.info.block_size);
        let step = u64::from(self.info.max_transfer);
        (0..len.div_ceil(step)).map(move |i| {
            let n = step.min(len - i * step);
            (cdb::read_16((offset + i * step) / bs, (n / bs) as u32), n as usize)
        })
    }

    fn push_reads<'a>(&self, cmds: &mut Vec<Command<'a>>, buf: &'a mut [u8], lba: u64) {
        let offset = lba * u64::from(self.info.block_size);
        let reads = self.read_cdbs(offset, buf.len() as u64);
        for ((cdb, _), chunk) in reads.zip(buf.chunks_mut(self.info.max_transfer as usize)) {
            cmds.push(Command { lun: self.info.lun, cdb, data: DataBuf::In(chunk) });
        }
    }

    fn read_blocks(&self, buf: &mut [u8], lba: u64) -> Result<(), InitiatorError> {
        let mut cmds = Vec::new();
        self.push_reads(&mut cmds, buf, lba);
        self.run_reads(cmds)
    }

    fn run_reads(&self, mut cmds: Vec<Command<'_>>) -> Result<(), InitiatorError> {
        if cmds.is_empty() {
            return Ok(());
        }
        let results = self.session.execute(&mut cmds);
        for (c, r) in cmds.iter().zip(results) {
            let want = match &c.data {
                DataBuf::In(b) => b.len(),
                _ => 0,
            };
            self.check_read(&c.cdb, r, want)?;
        }
        Ok(())
    }

    /// A READ that ended GOOD with all `want` bytes, or the error in words.
    fn check_read(&self, c: &cdb::Cdb, r: TaskResult, want: usize) -> Result<(), InitiatorError> {
        let o = r?;
        if !o.is_good() {
            return Err(self.io_error(c, &o));
        }
        if o.transferred != want {
            return Err(self.short_read(&o, want));
        }
        Ok(())
    }

    fn short_read(&self, o: &Outcome, want: usize) -> InitiatorError {
        volume_err(format!(
            "READ(16) returned {} of {want} bytes{}",
            o.transferred,
            if o.residual.underflow { " (underflow: did the LUN shrink?)" } else { "" }
        ))
    }

    /// Writes `buf` at byte `offset`; both must be whole blocks.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), InitiatorError> {
        self.check_blocks(offset, buf.len() as u64, "write")?;
        let bs = u64::from(self.info.block_size);
        self.check_capacity()?;
        if buf.is_empty() {
            return Ok(());
        }
        // Keep the replay journal bounded: past half of it, flush first.
        if self.session.journal_bytes() > 0 && self.session.journal_bytes() + buf.len() > self.journal_limit / 2 {
            self.sync_cache()?;
        }
        let step = self.info.max_transfer as usize;
        let lba = offset / bs;
        let mut cmds: Vec<Command<'_>> = buf
            .chunks(step)
            .enumerate()
            .map(|(i, chunk)| Command {
                lun: self.info.lun,
                cdb: cdb::write_16(lba + (i * step) as u64 / bs, (chunk.len() as u64 / bs) as u32),
                data: DataBuf::Out(chunk),
            })
            .collect();
        let results = self.session.execute(&mut cmds);
        for (c, r) in cmds.iter().zip(results) {
            let o = r?;
            if !o.is_good() {
                return Err(self.io_error(&c.cdb, &o));
            }
        }
        Ok(())
    }

    fn sync_cache(&self) -> Result<(), InitiatorError> {
        let c = cdb::synchronize_cache_10();
        let o = self.session.execute_one(Command { lun: self.info.lun, cdb: c, data: DataBuf::None })?;
        if !o.is_good() {
            return Err(status_error(&c, self.info.lun, &o));
        }
        Ok(())
    }

    /// SYNCHRONIZE CACHE: everything written so far is durable when this
    /// returns Ok.
    pub fn flush(&self) -> Result<(), InitiatorError> {
        self.sync_cache()?;
        if self.session.writes_unsafe() {
            return Err(volume_err(
                "the connection was re-established after acknowledged writes that no SYNCHRONIZE CACHE had \
                 covered and that were too many to replay; the target may have lost them (run again to rewrite them)"
                    .to_string(),
            ));
        }
        Ok(())
    }
}
