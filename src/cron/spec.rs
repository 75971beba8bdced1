//! Cron schedules (`m h dom mon dow`, or @daily...) checked field by field,
//! and the same schedule as systemd `OnCalendar=` lines. Pure.

use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronSpec {
    /// As written (for the crontab line).
    pub text: String,
    minute: Field,
    hour: Field,
    dom: Field,
    month: Field,
    dow: Field,
}

/// One field: every value (`*`) or the set of values it allows.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Field {
    Any,
    Set(BTreeSet<u32>),
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const SYSTEMD_DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

fn value(s: &str, lo: u32, hi: u32, names: &[&str], name_base: u32) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(i as u32 + name_base);
    }
    let v: u32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v < lo || v > hi {
        return Err(format!("{v} is outside {lo}-{hi}"));
    }
    Ok(v)
}

fn field(text: &str, lo: u32, hi: u32, names: &[&str], name_base: u32) -> Result<Field, String> {
    if text == "*" {
        return Ok(Field::Any);
    }
    let mut set = BTreeSet::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let st: u32 = s.parse().map_err(|_| format!("step {s:?} is not a number"))?;
                if st == 0 {
                    return Err("a step of 0".into());
                }
                (r, st)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, lo, hi, names, name_base)?, value(b, lo, hi, names, name_base)?)
        } else {
            let v = value(range, lo, hi, names, name_base)?;
            (v, if part.contains('/') { hi } else { v })
        };
        if a > b {
            return Err(format!("range {range:?} runs backwards"));
        }
        set.extend((a..=b).step_by(step as usize));
    }
    Ok(Field::Set(set))
}

impl CronSpec {
    pub fn parse(text: &str) -> Result<CronSpec, String> {
        let t = text.trim();
        let expanded = match t {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            s if s.starts_with('@') => return Err(format!("{s:?}: only @hourly, @daily, @weekly, @monthly, @yearly")),
            s => s,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!("{t:?}: expected five fields (minute hour day-of-month month day-of-week)"));
        }
        fn ctx<'a>(t: &'a str, what: &'a str) -> impl Fn(String) -> String + 'a {
            move |e| format!("{t:?}: {what}: {e}")
        }
        let mut dow = field(f[4], 0, 7, &DAYS, 0).map_err(ctx(t, "day of week"))?;
        if let Field::Set(s) = &mut dow {
            if s.remove(&7) {
                s.insert(0);
            }
        }
        Ok(CronSpec {
            text: if t.starts_with('@') { t.to_string() } else { f.join(" ") },
            minute: field(f[0], 0, 59, &[], 0).map_err(ctx(t, "minute"))?,
            hour: field(f[1], 0, 23, &[], 0).map_err(ctx(t, "hour"))?,
            dom: field(f[2], 1, 31, &[], 0).map_err(ctx(t, "day of month"))?,
            month: field(f[3], 1, 12, &MONTHS, 1).map_err(ctx(t, "month"))?,
            dow,
        })
    }

    /// The same schedule as `OnCalendar=` values. Cron runs a job when the
    /// day of month OR the day of week matches (both restricted); systemd
    /// ANDs them, so that case becomes two lines (a timer fires on either).
    pub fn on_calendar(&self) -> Vec<String> {
        fn list(f: &Field, width: usize) -> String {
            match f {
                Field::Any => "*".into(),
                Field::Set(s) => s.iter().map(|v| format!("{v:0width$}")).collect::<Vec<_>>().join(","),
            }
        }
        let time = format!("{}:{}:00", list(&self.hour, 2), list(&self.minute, 2));
        let date = |dom: &Field| format!("*-{}-{}", list(&self.month, 2), list(dom, 2));
        let dows = match &self.dow {
            Field::Any => None,
            Field::Set(s) => Some(s.iter().map(|d| SYSTEMD_DAYS[*d as usize]).collect::<Vec<_>>().join(",")),
        };
        match (&self.dom, dows) {
            (_, None) => vec![format!("{} {time}", date(&self.dom))],
            (Field::Any, Some(d)) => vec![format!("{d} {} {time}", date(&Field::Any))],
            (dom, Some(d)) => vec![format!("{} {time}", date(dom)), format!("{d} {} {time}", date(&Field::Any))],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_and_their_calendars() {
        let cases = [
            ("0 7 * * *", vec!["*-*-* 07:00:00"]),
            ("@daily", vec!["*-*-* 00:00:00"]),
            ("0 */12 * * *", vec!["*-*-* 00,12:00:00"]),
            ("30 9 1 */3 *", vec!["*-01,04,07,10-01 09:30:00"]),
            ("0 22 * * mon-fri", vec!["Mon,Tue,Wed,Thu,Fri *-*-* 22:00:00"]),
            ("0 0 * * 7", vec!["Sun *-*-* 00:00:00"]),
            ("15 3 1 * 0", vec!["*-*-01 03:15:00", "Sun *-*-* 03:15:00"]),
            ("0 23 * jan,jul *", vec!["*-01,07-* 23:00:00"]),
        ];
        for (text, want) in cases {
            assert_eq!(CronSpec::parse(text).unwrap().on_calendar(), want, "{text}");
        }
        for bad in [
            "",
            "0 7 * *",
            "60 * * * *",
            "0 24 * * *",
            "0 0 0 * *",
            "0 0 * 13 *",
            "*/0 * * * *",
            "5-1 * * * *",
            "@reboot",
            "x * * * *",
            "0 7 * * * extra",
        ] {
            assert!(CronSpec::parse(bad).is_err(), "{bad:?}");
        }
    }
}
