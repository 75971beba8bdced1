//! ietd_routing / ietd_iptables: from ifcfg-style interface definitions
//! with the seed's IET_PORTAL_GROUP and IET_ROUTE_TABLE, print the
//! rt_tables entries, the `ip route` / `ip rule` commands for source
//! routing, the arp_filter sysctl, and the iptables lines that block or
//! unblock the iSCSI port. Generated, never applied.

use std::net::IpAddr;

use crate::targets::import::Interface;

/// The route tables in use, numbered from `base` in name order (the seed
/// starts at 10).
/// The numbers are refused (naming --table-base) when one would be the
/// kernel's own (0 unspec, 253 default, 254 main, 255 local: `stop`'s
/// `ip route flush table` would then empty the main table) or beyond u32.
pub fn rt_tables(ifaces: &[Interface], base: u32) -> Result<Vec<(u32, String)>, String> {
    let mut names: Vec<&str> = ifaces.iter().filter_map(|i| i.route_table.as_deref()).collect();
    names.sort();
    names.dedup();
    let mut out = Vec::with_capacity(names.len());
    for (i, n) in names.into_iter().enumerate() {
        let number = u32::try_from(i).ok().and_then(|i| base.checked_add(i)).filter(|t| !RESERVED_TABLES.contains(t));
        let Some(number) = number else {
            return Err(format!(
                "--table-base {base}: route table {base}+{i} would be beyond 4294967295 or one of the kernel's \
                 (0 unspec, 253 default, 254 main, 255 local)"
            ));
        };
        out.push((number, n.to_string()));
    }
    Ok(out)
}

/// Route table numbers the kernel reserves.
const RESERVED_TABLES: [u32; 4] = [0, 253, 254, 255];

fn network(addr: IpAddr, len: u8) -> String {
    match addr {
        IpAddr::V4(a) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            format!("{}/{len}", std::net::Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => format!("{a}/{len}"),
    }
}

/// Commands that set up (`start`) or tear down source routing.
pub fn routing_commands(ifaces: &[Interface], start: bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    if start {
        out.push(vec!["sysctl".into(), "-w".into(), "net.ipv4.conf.all.arp_filter=1".into()]);
    }
    for i in ifaces {
        let Some(t) = &i.route_table else { continue };
        let net = network(i.address, i.prefix_len);
        let ip = i.address.to_string();
        if start {
            out.push(
                ["ip", "route", "replace", &net, "dev", &i.device, "src", &ip, "table", t]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            );
            out.push(["ip", "rule", "add", "from", &ip, "table", t].iter().map(|s| s.to_string()).collect());
        } else {
            out.push(["ip", "rule", "del", "from", &ip, "table", t].iter().map(|s| s.to_string()).collect());
            out.push(["ip", "route", "flush", "table", t].iter().map(|s| s.to_string()).collect());
        }
    }
    out
}

/// An iptables source spec: an address or network.
pub fn check_spec(spec: &str) -> Result<(), String> {
    let (a, len) = spec.split_once('/').map_or((spec, None), |(a, l)| (a, Some(l)));
    let ip: IpAddr = a.parse().map_err(|_| format!("{spec:?} is not an address or ADDRESS/PREFIX"))?;
    if let Some(l) = len {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if !l.parse::<u8>().is_ok_and(|n| n <= max) {
            return Err(format!("{spec:?}: prefix must be 0-{max}"));
        }
    }
    Ok(())
}

/// The iptables line that blocks (`-I`) or unblocks (`-D`) iSCSI traffic.
pub fn iptables(block: bool, port: u16, source: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> =
        vec!["iptables".into(), if block { "-I" } else { "-D" }.into(), "INPUT".into(), "-p".into(), "tcp".into()];
    if let Some(s) = source {
        v.extend(["-s".into(), s.into()]);
    }
    v.extend(["--dport".into(), port.to_string(), "-j".into(), "DROP".into()]);
    v
}

/// The kernel's own tables: `stop` flushes the interface's table, so
/// `IET_ROUTE_TABLE=main` (or `254`, the same table by number) would print
/// `ip route flush table main` and take the node off the network.
const RESERVED_TABLE_NAMES: [&str; 4] = ["unspec", "default", "main", "local"];

/// An IET_ROUTE_TABLE value: a name for rt_tables, not a number (ip takes
/// a number as the table id itself) and not one of the kernel's tables.
pub fn check_table_name(t: &str) -> Result<(), String> {
    crate::targets::model::check_lvm_name(t).map_err(|_| format!("{t:?} is not a table name"))?;
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{t:?} is a number: ip reads it as a table id, give the table a name"));
    }
    if RESERVED_TABLE_NAMES.iter().any(|r| r.eq_ignore_ascii_case(t)) {
        return Err(format!("{t:?} is one of the kernel's tables (unspec, default, main, local): stop would flush it"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::import::read_ifcfg;

    fn ifaces() -> Vec<Interface> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ifcfg");
        let mut v = Vec::new();
        let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for p in names {
            if let Some(i) = read_ifcfg(&p.display().to_string(), &std::fs::read_to_string(&p).unwrap()).unwrap() {
                v.push(i);
            }
        }
        v
    }

    /// Finding T10 (attack-targets): IET_ROUTE_TABLE=main (or 254) was
    /// accepted and `ietd-routing stop` printed `ip route flush table main`.
    #[test]
    fn kernel_tables_and_numbers_are_not_route_table_names() {
        for bad in ["main", "MAIN", "local", "default", "unspec", "254", "0", "rt a", "a\nb", ""] {
            assert!(check_table_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_table_name("main").unwrap_err().contains("flush"));
        for good in ["rt_vlan10_port0", "rt-1", "main2"] {
            check_table_name(good).unwrap();
        }
    }

    #[test]
    fn seed_interfaces_give_tables_routes_and_rules() {
        let i = ifaces();
        assert_eq!(
            rt_tables(&i, 10).unwrap(),
            [(10, "rt_vlan10_port0".to_string()), (11, "rt_vlan10_port1".to_string())]
        );
        // Finding (attack-final): 253 numbered the second table 254 (main),
        // u32::MAX overflowed (a panic); 0 is no table.
        for base in [0, 252, 253, 254, 255, u32::MAX] {
            let e = rt_tables(&i, base).unwrap_err();
            assert!(e.contains("--table-base"), "{e}");
        }
        assert_eq!(rt_tables(&i, 256).unwrap()[1].0, 257);
        assert_eq!(rt_tables(&i, u32::MAX - 1).unwrap()[1].0, u32::MAX);
        let lines: Vec<String> = routing_commands(&i, true).iter().map(|v| v.join(" ")).collect();
        assert_eq!(
            lines,
            [
                "sysctl -w net.ipv4.conf.all.arp_filter=1",
                "ip route replace 10.0.1.0/24 dev eth2.10 src 10.0.1.1 table rt_vlan10_port0",
                "ip rule add from 10.0.1.1 table rt_vlan10_port0",
                "ip route replace 10.0.1.0/24 dev eth3.10 src 10.0.1.2 table rt_vlan10_port1",
                "ip rule add from 10.0.1.2 table rt_vlan10_port1",
            ]
        );
        let stop: Vec<String> = routing_commands(&i, false).iter().map(|v| v.join(" ")).collect();
        assert_eq!(stop[0], "ip rule del from 10.0.1.1 table rt_vlan10_port0");
    }

    #[test]
    fn iptables_lines() {
        assert_eq!(iptables(true, 3260, None).join(" "), "iptables -I INPUT -p tcp --dport 3260 -j DROP");
        assert_eq!(
            iptables(false, 3260, Some("10.0.1.0/24")).join(" "),
            "iptables -D INPUT -p tcp -s 10.0.1.0/24 --dport 3260 -j DROP"
        );
        assert!(check_spec("10.0.1.0/24").is_ok());
        for bad in ["10.0.1.0/33", "x", "10.0.1.1;reboot"] {
            assert!(check_spec(bad).is_err(), "{bad}");
        }
    }
}
