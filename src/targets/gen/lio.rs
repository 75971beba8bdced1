//! LIO: rtslib-fb's saveconfig.json (storage objects, iSCSI targets with one
//! TPG each: portals from the portal group, LUNs, node ACLs with mapped
//! LUNs and CHAP). JSON with sorted keys, two-space indent, so the bytes are
//! stable; every LUN names an existing storage object and every mapped LUN
//! an existing TPG LUN (checked by [`check_references`]).

use serde_json::{json, Map, Value};

use super::Files;
use crate::targets::model::{IoMode, NodeView};

fn object_path(io: IoMode, name: &str) -> String {
    match io {
        IoMode::Blockio => format!("/backstores/block/{name}"),
        IoMode::Fileio => format!("/backstores/fileio/{name}"),
    }
}

pub fn saveconfig(view: &NodeView) -> Value {
    let mut objects = Vec::new();
    let mut targets = Vec::new();
    for t in &view.targets {
        let mut luns = Vec::new();
        for (i, l) in t.luns.iter().enumerate() {
            let mut o = Map::new();
            o.insert("name".into(), json!(l.serial));
            o.insert("dev".into(), json!(l.device.to_string_lossy()));
            o.insert("wwn".into(), json!(l.serial));
            o.insert("readonly".into(), json!(false));
            match l.io {
                IoMode::Blockio => {
                    o.insert("plugin".into(), json!("block"));
                    o.insert("write_back".into(), json!(false));
                }
                IoMode::Fileio => {
                    o.insert("plugin".into(), json!("fileio"));
                    o.insert("write_back".into(), json!(true));
                }
            }
            objects.push(Value::Object(o));
            luns.push(json!({"index": i, "storage_object": object_path(l.io, &l.serial), "alias": format!("lun{i}")}));
        }
        let mapped: Vec<Value> =
            (0..t.luns.len()).map(|i| json!({"index": i, "tpg_lun": i, "write_protect": false})).collect();
        let open = t.open_to_all();
        let node_acls: Vec<Value> = if open {
            Vec::new()
        } else {
            t.initiators
                .iter()
                .map(|n| {
                    let mut acl = Map::new();
                    acl.insert("node_wwn".into(), json!(n));
                    acl.insert("mapped_luns".into(), json!(mapped));
                    if let Some(a) = t.incoming_users.first() {
                        acl.insert("chap_userid".into(), json!(a.user));
                        acl.insert("chap_password".into(), json!(a.secret));
                    }
                    if let Some(a) = &t.outgoing_user {
                        acl.insert("chap_mutual_userid".into(), json!(a.user));
                        acl.insert("chap_mutual_password".into(), json!(a.secret));
                    }
                    Value::Object(acl)
                })
                .collect()
        };
        let mut params = Map::new();
        for (k, v) in view.inventory.global_options.iter().chain(&t.options) {
            if LIO_PARAMS.contains(&k.as_str()) {
                params.insert(k.clone(), json!(v));
            }
        }
        let portals: Vec<Value> = view
            .addresses(&t.portal_group)
            .iter()
            .map(|a| json!({"ip_address": a.to_string(), "port": view.inventory.port}))
            .collect();
        let auth = !t.incoming_users.is_empty();
        targets.push(json!({
            "fabric": "iscsi",
            "wwn": t.iqn,
            "tpgs": [{
                "tag": 1,
                "enable": true,
                "attributes": {
                    "authentication": u8::from(auth),
                    "generate_node_acls": u8::from(open),
                    "demo_mode_write_protect": 0,
                    "cache_dynamic_acls": u8::from(open),
                },
                "parameters": Value::Object(params),
                "portals": portals,
                "luns": luns,
                "node_acls": node_acls,
            }],
        }));
    }
    json!({"fabric_modules": [], "storage_objects": objects, "targets": targets})
}

/// iSCSI parameters LIO keeps per TPG under the same names as IET.
const LIO_PARAMS: &[&str] = &[
    "InitialR2T",
    "ImmediateData",
    "MaxRecvDataSegmentLength",
    "MaxXmitDataSegmentLength",
    "MaxBurstLength",
    "FirstBurstLength",
    "MaxOutstandingR2T",
    "MaxConnections",
    "HeaderDigest",
    "DataDigest",
    "DefaultTime2Wait",
    "DefaultTime2Retain",
    "ErrorRecoveryLevel",
];

/// Every TPG LUN names a storage object of the file, and every mapped LUN a
/// LUN of its TPG.
pub fn check_references(config: &Value) -> Result<(), String> {
    let mut objects = std::collections::BTreeSet::new();
    for o in config["storage_objects"].as_array().into_iter().flatten() {
        let plugin = match o["plugin"].as_str() {
            Some("block") => "block",
            Some("fileio") => "fileio",
            other => return Err(format!("storage object with unknown plugin {other:?}")),
        };
        objects.insert(format!("/backstores/{plugin}/{}", o["name"].as_str().unwrap_or("")));
    }
    for t in config["targets"].as_array().into_iter().flatten() {
        for tpg in t["tpgs"].as_array().into_iter().flatten() {
            let mut lun_indexes = std::collections::BTreeSet::new();
            for l in tpg["luns"].as_array().into_iter().flatten() {
                let so = l["storage_object"].as_str().unwrap_or("");
                if !objects.contains(so) {
                    return Err(format!("target {}: LUN {} names missing storage object {so}", t["wwn"], l["index"]));
                }
                lun_indexes.insert(l["index"].as_u64().ok_or("LUN without index")?);
            }
            for acl in tpg["node_acls"].as_array().into_iter().flatten() {
                for m in acl["mapped_luns"].as_array().into_iter().flatten() {
                    let tl = m["tpg_lun"].as_u64().ok_or("mapped LUN without tpg_lun")?;
                    if !lun_indexes.contains(&tl) {
                        return Err(format!("target {}: ACL {} maps missing TPG LUN {tl}", t["wwn"], acl["node_wwn"]));
                    }
                }
            }
        }
    }
    Ok(())
}

pub fn generate(view: &NodeView) -> Files {
    let mut bytes = serde_json::to_vec_pretty(&saveconfig(view)).expect("JSON values serialise");
    bytes.push(b'\n');
    vec![("saveconfig.json".into(), bytes)]
}
