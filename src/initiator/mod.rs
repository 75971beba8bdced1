//! A native iSCSI initiator (RFC 7143) over the socket-free codec in
//! [`crate::iscsi`]: `iscsi://` URLs, login with CHAP and redirects, a
//! session that pipelines SCSI commands up to a queue depth and survives
//! dropped connections, and a block-volume view of a LUN.
//!
//! - [`url`] parses `iscsi://[USER[%PASSWORD]@]HOST[:PORT]/TARGET-IQN/LUN`;
//! - [`options`] and [`settings`] hold resolved settings, and build them
//!   from flags, the `[initiator]` config section and the environment;
//! - [`session`] logs in, then runs an event loop carrying [`Command`]s;
//! - [`volume`] offers [`IscsiVolume`] (`read_at`, `write_at`, `flush`, `size`);
//! - [`ls`] lists what a portal shows this initiator (`santools iscsi-ls`).
//!
//! docs/iscsi-initiator.md describes behaviour on redirects, failures and
//! reconnects.

pub mod chap;
pub mod cli;
mod conn;
pub mod discovery;
pub mod error;
mod login;
pub mod ls;
pub mod negotiate;
pub mod options;
mod read_pool;
pub mod scsi_ops;
pub mod secret;
pub mod session;
pub mod settings;
mod task;
pub mod url;
pub mod volume;

pub use error::InitiatorError;
pub use options::{Auth, ChapCredentials, DigestPref, InitiatorOptions};
pub use secret::Secret;
pub use session::{Session, SessionInfo};
pub use task::{Command, DataBuf, Outcome};
pub use url::{IscsiUrl, Portal};
pub use volume::{IscsiVolume, LunInfo};
