//! Integration tests: the real santools binary on temp files, loop devices
//! and (later) real daemons. One test binary, one module per area.

mod archive_lab;
mod fake_node;
mod helpers;
mod hostile_target;
mod initiator_lab;
mod iscsi_captures;
mod iscsi_lab;
mod raw_iscsi;
mod ssh_lab;

mod archive_acceptance;
mod archive_copy;
mod archive_crash;
mod archive_hostile;
mod archive_iscsi;
mod archive_reports;
mod archive_rotate;
mod cron_sync;
mod ddless_adversarial;
mod ddless_cli;
mod ddless_crash;
mod ddless_iscsi;
mod ddless_loopdev;
mod ddless_property;
mod ddmap_cli;
mod initiator;
mod initiator_hostile;
mod initiator_newuser;
mod lun_snapshot;
mod lvm_tools;
mod multicall;
mod portal;
mod portal_hardening;
mod targets_cli;
mod targets_live;
