//! `filesystem` scraper: `system.filesystem.usage` and `system.filesystem.inodes.usage` per mounted
//! file system, from the host's mount table (`/proc/1/mounts`, so a container sees the host's mounts
//! under `root_path`) and `statvfs` on each mount point under `root_path`. As in otelcol, virtual
//! file systems (marked `nodev` in `/proc/filesystems`) are skipped unless
//! `include_virtual_filesystems` is set.

use super::config::{compile_filter, scraper, FilesystemScraper as FsConfig, Toggles};
use super::filter::IncludeExclude;
use super::{f64_point, gauge, int_point, keep, sum, Ctx, Root, Scraped, Scraper};
use serde_json::Value;
use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use vigil_core::attrs::kv_str;
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

const METRICS: &[(&str, bool)] = &[
    ("system.filesystem.usage", true),
    ("system.filesystem.inodes.usage", true),
    ("system.filesystem.utilization", false),
];

/// One line of a mount table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fs_type: String,
    /// `ro` or `rw`.
    pub mode: String,
}

/// Undoes the octal escapes (`\040` for a space) the kernel writes in mount tables.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let device = unescape(it.next()?);
            let mountpoint = unescape(it.next()?);
            let fs_type = it.next()?.to_string();
            let opts = it.next().unwrap_or("rw");
            let mode = if opts.split(',').any(|o| o == "ro") {
                "ro"
            } else {
                "rw"
            };
            Some(Mount {
                device,
                mountpoint,
                fs_type,
                mode: mode.into(),
            })
        })
        .collect()
}

/// File system types the kernel marks `nodev` (no backing device).
pub(crate) fn virtual_types(text: &str) -> HashSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("nodev"))
        .map(|t| t.trim().to_string())
        .collect()
}

/// Block and inode counts of one file system, in bytes and inodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Usage {
    pub used: u64,
    pub free: u64,
    pub reserved: u64,
    pub inodes_used: u64,
    pub inodes_free: u64,
}

fn statvfs(path: &Path) -> std::io::Result<Usage> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a plain struct statvfs fills in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let bs = st.f_frsize as u64;
    let (blocks, bfree, bavail) = (st.f_blocks as u64, st.f_bfree as u64, st.f_bavail as u64);
    Ok(Usage {
        used: blocks.saturating_sub(bfree) * bs,
        free: bavail * bs,
        reserved: bfree.saturating_sub(bavail) * bs,
        inodes_used: (st.f_files as u64).saturating_sub(st.f_ffree as u64),
        inodes_free: st.f_ffree as u64,
    })
}

pub struct FilesystemScraper {
    toggles: Toggles,
    devices: IncludeExclude,
    fs_types: IncludeExclude,
    mount_points: IncludeExclude,
    include_virtual: bool,
}

impl FilesystemScraper {
    pub fn new(id: &ComponentId, section: &Value) -> Result<Self, ConfigError> {
        let cfg: FsConfig = scraper(id, "filesystem", section)?;
        let toggles = Toggles::build_with(METRICS, &[], &cfg.metrics, |p, m| {
            ConfigError::component(
                ComponentKind::Receiver,
                id,
                format!("scrapers::filesystem::{p}"),
                m,
            )
        })?;
        let f = |key: &str, sub: &str, v| {
            compile_filter(id, &format!("scrapers::filesystem::{key}"), sub, v)
        };
        Ok(FilesystemScraper {
            toggles,
            devices: IncludeExclude {
                include: f("include_devices", "devices", &cfg.include_devices)?,
                exclude: f("exclude_devices", "devices", &cfg.exclude_devices)?,
            },
            fs_types: IncludeExclude {
                include: f("include_fs_types", "fs_types", &cfg.include_fs_types)?,
                exclude: f("exclude_fs_types", "fs_types", &cfg.exclude_fs_types)?,
            },
            mount_points: IncludeExclude {
                include: f(
                    "include_mount_points",
                    "mount_points",
                    &cfg.include_mount_points,
                )?,
                exclude: f(
                    "exclude_mount_points",
                    "mount_points",
                    &cfg.exclude_mount_points,
                )?,
            },
            include_virtual: cfg.include_virtual_filesystems,
        })
    }

    fn mounts(&self, root: &Root) -> Result<Vec<Mount>, String> {
        let text = root
            .read("/proc/1/mounts")
            .or_else(|_| root.read("/proc/self/mounts"))
            .map_err(|e| format!("reading /proc/1/mounts: {e}"))?;
        let virt = if self.include_virtual {
            HashSet::new()
        } else {
            virtual_types(&root.read("/proc/filesystems").unwrap_or_default())
        };
        Ok(parse_mounts(&text)
            .into_iter()
            .filter(|m| !virt.contains(&m.fs_type))
            .filter(|m| self.devices.pass(&m.device))
            .filter(|m| self.fs_types.pass(&m.fs_type))
            .filter(|m| self.mount_points.pass(&m.mountpoint))
            .collect())
    }
}

fn attrs(m: &Mount, state: &'static str) -> Vec<KeyValue> {
    vec![
        kv_str("device", m.device.as_str()),
        kv_str("mode", m.mode.as_str()),
        kv_str("mountpoint", m.mountpoint.as_str()),
        kv_str("type", m.fs_type.as_str()),
        kv_str("state", state),
    ]
}

impl Scraper for FilesystemScraper {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn scrape(&mut self, ctx: &Ctx) -> Result<Scraped, String> {
        let mut usage = Vec::new();
        let mut inodes = Vec::new();
        let mut util = Vec::new();
        let mut failed = Vec::new();
        let mut seen = HashSet::new();
        for m in self.mounts(ctx.root)? {
            // The same file system mounted twice at one place is reported once.
            if !seen.insert((m.device.clone(), m.mountpoint.clone())) {
                continue;
            }
            let u = match statvfs(&ctx.root.path(&m.mountpoint)) {
                Ok(u) => u,
                Err(e) => {
                    failed.push(format!("{}: {e}", m.mountpoint));
                    continue;
                }
            };
            let t = ctx.now;
            for (state, v) in [("used", u.used), ("free", u.free), ("reserved", u.reserved)] {
                usage.push(int_point(attrs(&m, state), v as i64, 0, t));
            }
            for (state, v) in [("used", u.inodes_used), ("free", u.inodes_free)] {
                inodes.push(int_point(attrs(&m, state), v as i64, 0, t));
            }
            let total = u.used + u.free;
            if total > 0 {
                let mut a = attrs(&m, "used");
                a.pop();
                util.push(f64_point(a, u.used as f64 / total as f64, 0, t));
            }
        }
        if usage.is_empty() && !failed.is_empty() {
            return Err(format!(
                "statvfs failed on every mount point: {}",
                failed.join("; ")
            ));
        }
        if !failed.is_empty() {
            tracing::debug!(
                "filesystem scraper skipped mount points: {}",
                failed.join("; ")
            );
        }
        let metrics = vec![
            sum(
                "system.filesystem.usage",
                "Filesystem bytes used.",
                "By",
                false,
                usage,
            ),
            sum(
                "system.filesystem.inodes.usage",
                "FileSystem inodes used.",
                "{inodes}",
                false,
                inodes,
            ),
            gauge(
                "system.filesystem.utilization",
                "Fraction of filesystem bytes used.",
                "1",
                util,
            ),
        ];
        Ok(Scraped {
            metrics: keep(&self.toggles, metrics),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn usage_per_physical_mount_under_the_root() {
        let root = fixture();
        let ctx = ctx(&root);
        let mut s = FilesystemScraper::new(
            &id(),
            &serde_json::json!({"metrics": {"system.filesystem.utilization": {"enabled": true}}}),
        )
        .unwrap();
        let out = s.scrape(&ctx).unwrap();
        let m = find(&out.metrics, "system.filesystem.usage");
        let pts = points(m);
        // proc and tmpfs are virtual; "/" and the escaped "/mnt/data disk" are statted under the root.
        let mounts: HashSet<String> = pts.iter().map(|(a, _)| a.clone()).collect();
        assert!(
            mounts.contains("device=/dev/vda1,mode=rw,mountpoint=/,state=used,type=ext4"),
            "{mounts:?}"
        );
        assert!(
            mounts
                .contains("device=/dev/vda2,mode=ro,mountpoint=/mnt/data disk,state=free,type=xfs"),
            "{mounts:?}"
        );
        assert_eq!(pts.len(), 6);
        let used = value(
            m,
            "device=/dev/vda1,mode=rw,mountpoint=/,state=used,type=ext4",
        );
        let free = value(
            m,
            "device=/dev/vda1,mode=rw,mountpoint=/,state=free,type=ext4",
        );
        assert!(used > 0.0 && free >= 0.0);
        let u = find(&out.metrics, "system.filesystem.utilization");
        let ratio = value(u, "device=/dev/vda1,mode=rw,mountpoint=/,type=ext4");
        assert!((ratio - used / (used + free)).abs() < 0.01, "{ratio}");
        assert_eq!(
            find(&out.metrics, "system.filesystem.inodes.usage").unit,
            "{inodes}"
        );

        let mut s = FilesystemScraper::new(
            &id(),
            &serde_json::json!({"include_virtual_filesystems": true,
                "exclude_fs_types": {"fs_types": ["xfs", "proc"], "match_type": "strict"}}),
        )
        .unwrap();
        let out = s.scrape(&ctx).unwrap();
        let types: HashSet<String> = points(find(&out.metrics, "system.filesystem.usage"))
            .iter()
            .filter_map(|(a, _)| a.rsplit("type=").next().map(str::to_string))
            .collect();
        assert_eq!(
            types,
            HashSet::from(["ext4".to_string(), "tmpfs".to_string()]),
            "/run is statted as a plain directory"
        );
    }

    #[test]
    fn mount_tables_unescape() {
        let m = parse_mounts("a\\040b /x\\011y ext4 ro 0 0\n");
        assert_eq!(m[0].device, "a b");
        assert_eq!(m[0].mountpoint, "/x\ty");
        assert_eq!(m[0].mode, "ro");
    }
}
