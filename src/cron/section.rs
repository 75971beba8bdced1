//! The santools-owned section of a crontab (seed chunks 126/136):
//!
//! ```text
//! # >>> MultiHost Cron BEGIN (zfs-archive1 2011-07-05 22:20:13)
//! # 7:00am daily
//! 0 7 * * * /usr/bin/flock -n /run/santools/cron/santools-cron-snapcheck.lock /usr/local/sbin/santools snapcheck -d
//! # <<< MultiHost Cron END
//! ```
//!
//! Pure: every other line of the crontab is kept as it is.

use crate::shared::command::shell_quote;

pub const BEGIN: &str = "# >>> MultiHost Cron BEGIN";
pub const END: &str = "# <<< MultiHost Cron END";

/// One crontab line of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronLine {
    pub comment: Option<String>,
    pub schedule: String,
    /// The full argument vector (lock wrapper included).
    pub argv: Vec<String>,
}

/// Quotes an argument for cron: cron hands the line to `sh`, and `%` is
/// cron's own newline, so it is escaped as well.
pub fn cron_quote(arg: &str) -> String {
    shell_quote(arg).replace('%', "\\%")
}

pub fn render(host: &str, time: &str, lines: &[CronLine]) -> String {
    let mut s = format!("{BEGIN} ({host} {time})\n");
    for l in lines {
        if let Some(c) = &l.comment {
            s.push_str(&format!("# {}\n", c.replace(['\n', '\r'], " ")));
        }
        let cmd: Vec<String> = l.argv.iter().map(|a| cron_quote(a)).collect();
        s.push_str(&format!("{} {}\n", l.schedule, cmd.join(" ")));
    }
    s.push_str(END);
    s.push('\n');
    s
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SectionError {
    #[error("line {0}: a MultiHost Cron BEGIN marker without its END marker; fix the crontab by hand first")]
    Unterminated(usize),
    #[error("line {0}: a second MultiHost Cron section; fix the crontab by hand first")]
    Duplicate(usize),
    #[error("line {0}: a MultiHost Cron END marker without a BEGIN")]
    StrayEnd(usize),
}

/// The crontab's existing section (lines) and where it is.
fn find(crontab: &str) -> Result<Option<(usize, usize)>, SectionError> {
    let lines: Vec<&str> = crontab.lines().collect();
    let mut found = None;
    let mut i = 0;
    while i < lines.len() {
        if lines[i].starts_with(BEGIN) {
            if found.is_some() {
                return Err(SectionError::Duplicate(i + 1));
            }
            let end =
                (i + 1..lines.len()).find(|&j| lines[j].starts_with(END)).ok_or(SectionError::Unterminated(i + 1))?;
            if let Some(b) = (i + 1..end).find(|&j| lines[j].starts_with(BEGIN)) {
                return Err(SectionError::Unterminated(b + 1));
            }
            found = Some((i, end));
            i = end + 1;
            continue;
        }
        if lines[i].starts_with(END) {
            return Err(SectionError::StrayEnd(i + 1));
        }
        i += 1;
    }
    Ok(found)
}

/// The section's body without its BEGIN line (whose time changes each run).
fn body(section_lines: &[&str]) -> Vec<String> {
    section_lines.iter().skip(1).map(|l| l.to_string()).collect()
}

/// `crontab` with its section replaced by `section` (or the section
/// appended); None when the section's content is already the same.
pub fn replace(crontab: &str, section: &str) -> Result<Option<String>, SectionError> {
    let lines: Vec<&str> = crontab.lines().collect();
    let new_lines: Vec<&str> = section.lines().collect();
    match find(crontab)? {
        Some((b, e)) => {
            if body(&lines[b..=e]) == body(&new_lines) {
                return Ok(None);
            }
            let mut out: Vec<&str> = lines[..b].to_vec();
            out.extend(&new_lines);
            out.extend(&lines[e + 1..]);
            Ok(Some(out.join("\n") + "\n"))
        }
        None => {
            let mut out = crontab.to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(section);
            Ok(Some(out))
        }
    }
}

/// A minimal diff for `-n`: the section's lines removed and added.
pub fn diff(old: &str, new: &str) -> String {
    let o: Vec<&str> = old.lines().collect();
    let n: Vec<&str> = new.lines().collect();
    let mut s = String::new();
    for l in &o {
        if !n.contains(l) {
            s.push_str(&format!("-{l}\n"));
        }
    }
    for l in &n {
        if !o.contains(l) {
            s.push_str(&format!("+{l}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Vec<CronLine> {
        vec![CronLine {
            comment: Some("7:00am daily".into()),
            schedule: "0 7 * * *".into(),
            argv: vec!["/root/santools/snapcheck_job.sh".into(), "100%".into(), "a b".into()],
        }]
    }

    #[test]
    fn renders_the_seeds_markers_and_quotes_for_cron() {
        let s = render("zfs-archive1", "2011-07-05 22:20:13", &lines());
        assert_eq!(
            s,
            "# >>> MultiHost Cron BEGIN (zfs-archive1 2011-07-05 22:20:13)\n# 7:00am daily\n0 7 * * * /root/santools/snapcheck_job.sh 100\\% 'a b'\n# <<< MultiHost Cron END\n"
        );
    }

    #[test]
    fn only_the_section_changes_and_a_second_run_changes_nothing() {
        let mine = "MAILTO=root\n# my own job\n*/5 * * * * /usr/local/bin/check\n";
        let s1 = render("h", "t1", &lines());
        let with = replace(mine, &s1).unwrap().unwrap();
        assert!(with.starts_with(mine), "{with}");
        // Same content, another time: nothing to do.
        assert_eq!(replace(&with, &render("h", "t2", &lines())).unwrap(), None);
        // Changed content: replaced in place, the rest untouched.
        let mut l2 = lines();
        l2[0].schedule = "0 8 * * *".into();
        let after = replace(&format!("{with}# trailing\n"), &render("h", "t3", &l2)).unwrap().unwrap();
        assert!(after.starts_with(mine) && after.ends_with("# <<< MultiHost Cron END\n# trailing\n"), "{after}");
        assert!(after.contains("0 8 * * *") && !after.contains("0 7 * * *"), "{after}");
        assert!(diff(&with, &after).contains("+0 8 * * *"));
    }

    #[test]
    fn damaged_sections_are_refused() {
        assert_eq!(replace("# >>> MultiHost Cron BEGIN (h t)\nx\n", "s\n"), Err(SectionError::Unterminated(1)));
        let two = "# >>> MultiHost Cron BEGIN (h t)\n# <<< MultiHost Cron END\n# >>> MultiHost Cron BEGIN (h t)\n# <<< MultiHost Cron END\n";
        assert_eq!(replace(two, "s\n"), Err(SectionError::Duplicate(3)));
        assert_eq!(replace("# <<< MultiHost Cron END\n", "s\n"), Err(SectionError::StrayEnd(1)));
        assert_eq!(replace("", "s\n").unwrap().as_deref(), Some("s\n"));
    }
}
