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
pub(crate) enum QuotaError {
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
pub(crate) struct CpuQuotas {
    version: Version,
    root: PathBuf,
    /// Of one core, in percent.
    percent: f64,
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
    /// A group for this stack whose parts get `percent` of one core each.
    pub(crate) fn create(percent: f64) -> Result<CpuQuotas, QuotaError> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let (version, mount) = find_controller(&mountinfo).ok_or(QuotaError::NoController)?;
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
            percent,
        })
    }

    /// The group for `part`, made with its quota if new.
    pub(crate) fn group(&self, part: &str) -> Result<PathBuf, QuotaError> {
        let group = self.root.join(part);
        if !group.exists() {
            std::fs::create_dir(&group).map_err(|source| QuotaError::Io {
                path: group.clone(),
                source,
            })?;
            let quota = ((self.percent / 100.0 * PERIOD_US as f64) as u64).max(1_000);
            match self.version {
                Version::V1 => {
                    write(&group.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                    write(&group.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
                Version::V2 => write(&group.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?,
            }
        }
        Ok(group)
    }

    /// Removes every group made (their processes must have ended).
    pub(crate) fn remove(&self) {
        if let Ok(children) = std::fs::read_dir(&self.root) {
            for child in children.flatten() {
                if child.path().is_dir() {
                    remove_group(&child.path());
                }
            }
        }
        remove_group(&self.root);
    }
}

/// Puts process `pid` in `group`.
pub(crate) fn place(group: &Path, pid: u32) -> Result<(), QuotaError> {
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
}
