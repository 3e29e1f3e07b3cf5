//! CPU quotas for parts, so one machine can play a stack that is smaller
//! than the machine: each shop gets a share of one core, and a surge ten
//! times what the shops can serve stays within the drill's reach.
//!
//! The `cpu` controller is looked for where the kernel offers it, not by
//! which hierarchy happens to be mounted: a cgroup v2 mount whose root
//! lists `cpu` in `cgroup.controllers` (quota in `cpu.max`), else a
//! cgroup v1 mount of the `cpu` controller (`cpu.cfs_quota_us` over
//! `cpu.cfs_period_us`). The stack makes one group of its own
//! (`flashguard-<pid>`), one child per part, puts each process of the part
//! in it every time it starts, and removes them all when it stops.

use std::path::{Path, PathBuf};

/// A quota's period: 100 ms, the kernel's default.
const PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// Why no quota could be set.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("no cpu controller is available (neither a cgroup v2 mount offering cpu nor a cgroup v1 cpu mount)")]
    NoController,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn write(path: &Path, text: &str) -> Result<(), QuotaError> {
    std::fs::write(path, text).map_err(|source| QuotaError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The stack's own group, with a child per part.
#[derive(Debug)]
pub struct CpuQuotas {
    version: Version,
    root: PathBuf,
    /// Cores each part may use.
    cores: f64,
}

/// Where the cpu controller is mounted, and how.
fn find_controller(mountinfo: &str) -> Option<(Version, PathBuf)> {
    let mut v1 = None;
    for line in mountinfo.lines() {
        // "... mount_point options - fstype source super_options"
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = before.split(' ').nth(4)?;
        let mut after = after.split(' ');
        let fstype = after.next()?;
        let super_options = after.nth(1).unwrap_or("");
        match fstype {
            "cgroup2" => {
                let controllers =
                    std::fs::read_to_string(Path::new(mount_point).join("cgroup.controllers"))
                        .unwrap_or_default();
                if controllers.split_whitespace().any(|c| c == "cpu") {
                    return Some((Version::V2, PathBuf::from(mount_point)));
                }
            }
            "cgroup" if super_options.split(',').any(|o| o == "cpu") => {
                v1.get_or_insert((Version::V1, PathBuf::from(mount_point)));
            }
            _ => {}
        }
    }
    v1
}

impl CpuQuotas {
    /// A group for this stack whose parts get `cores` each. Groups left
    /// by a stack that was SIGKILLed (its pid is gone) are removed first.
    pub fn create(cores: f64) -> Result<CpuQuotas, QuotaError> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let (version, mount) = find_controller(&mountinfo).ok_or(QuotaError::NoController)?;
        remove_orphans(&mount);
        let root = mount.join(format!("flashguard-{}", std::process::id()));
        std::fs::create_dir_all(&root).map_err(|source| QuotaError::Io {
            path: root.clone(),
            source,
        })?;
        if version == Version::V2 {
            // The children's cpu files appear once the controller is
            // enabled for them.
            write(&mount.join("cgroup.subtree_control"), "+cpu")?;
            write(&root.join("cgroup.subtree_control"), "+cpu")?;
        }
        Ok(CpuQuotas {
            version,
            root,
            cores,
        })
    }

    /// The group for `part`, made with its quota if new.
    pub fn group(&self, part: &str) -> Result<PathBuf, QuotaError> {
        let group = self.root.join(part);
        if !group.exists() {
            std::fs::create_dir(&group).map_err(|source| QuotaError::Io {
                path: group.clone(),
                source,
            })?;
            self.set_quota(&group, Some(self.cores))?;
        }
        Ok(group)
    }

    /// Takes `part`'s quota away, its processes still in its group (as a
    /// container's CPU limit is lifted while it runs).
    pub fn lift(&self, part: &str) -> Result<(), QuotaError> {
        self.set_quota(&self.root.join(part), None)
    }

    /// `cores` of CPU for `group`; `None`: no limit.
    fn set_quota(&self, group: &Path, cores: Option<f64>) -> Result<(), QuotaError> {
        let quota = cores.map(|cores| ((cores * PERIOD_US as f64) as u64).max(1_000));
        match self.version {
            Version::V1 => {
                write(&group.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                let quota = quota.map_or_else(|| "-1".to_string(), |q| q.to_string());
                write(&group.join("cpu.cfs_quota_us"), &quota)
            }
            Version::V2 => {
                let quota = quota.map_or_else(|| "max".to_string(), |q| q.to_string());
                write(&group.join("cpu.max"), &format!("{quota} {PERIOD_US}"))
            }
        }
    }

    /// Removes every group made (their processes must have ended).
    pub fn remove(&self) {
        remove_tree(&self.root);
    }
}

/// A stack's group and its parts' groups.
fn remove_tree(root: &Path) {
    if let Ok(children) = std::fs::read_dir(root) {
        for child in children.flatten() {
            if child.path().is_dir() {
                remove_group(&child.path());
            }
        }
    }
    remove_group(root);
}

/// The groups of stacks whose process is gone (SIGKILLed before they
/// could remove them): `flashguard-<pid>` with no `/proc/<pid>`. Their
/// parts watch `up`'s stdin and exit with it, so the groups are empty.
fn remove_orphans(mount: &Path) {
    let Ok(entries) = std::fs::read_dir(mount) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("flashguard-"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(group = %entry.path().display(), "removing the cpu group of a stack that is gone");
            remove_tree(&entry.path());
        }
    }
}

/// Puts process `pid` in `group`.
pub fn place(group: &Path, pid: u32) -> Result<(), QuotaError> {
    write(&group.join("cgroup.procs"), &pid.to_string())
}

/// A group goes once its last process has: a process just killed may take
/// a moment to leave it.
fn remove_group(group: &Path) {
    for _ in 0..50 {
        if std::fs::remove_dir(group).is_ok() || !group.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    tracing::warn!(group = %group.display(), "could not remove a cpu group");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_controller_is_found_by_what_a_mount_offers() {
        let v1 = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                  33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n";
        assert_eq!(
            find_controller(v1),
            Some((Version::V1, PathBuf::from("/sys/fs/cgroup/cpu")))
        );
        // cpuacct alone is not cpu; a combined mount is.
        let combined =
            "33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        assert!(find_controller(combined).is_some());
        let none = "33 31 0:30 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n";
        assert_eq!(find_controller(none), None);
    }

    #[test]
    fn a_quota_is_applied_and_every_group_removed_even_a_killed_stack_s() {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let Some((version, mount)) = find_controller(&mountinfo) else {
            eprintln!("skipped: no cpu controller is mounted here");
            return;
        };
        // A stack SIGKILLed earlier left its group: its pid cannot exist
        // (beyond the kernel's largest).
        let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(4_194_304);
        let orphan = mount.join(format!("flashguard-{}", pid_max + 1));
        if let Err(err) = std::fs::create_dir_all(orphan.join("shop-1")) {
            eprintln!("skipped: cgroups are not writable here ({err})");
            return;
        }
        let quotas = CpuQuotas::create(0.25).expect("the controller is writable");
        assert!(!orphan.exists(), "the killed stack's group was left");
        let group = quotas.group("shop-1").unwrap();
        let quota = match version {
            Version::V1 => std::fs::read_to_string(group.join("cpu.cfs_quota_us")).unwrap(),
            Version::V2 => std::fs::read_to_string(group.join("cpu.max")).unwrap(),
        };
        assert!(
            quota.starts_with("25000"),
            "a quarter of a 100 ms period: {quota}"
        );
        let root = quotas.root.clone();
        quotas.remove();
        assert!(!group.exists() && !root.exists(), "groups left behind");
    }
}
