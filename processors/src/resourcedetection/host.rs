//! What the `system` detector reads from the host beyond its name: the CPU (`/proc/cpuinfo`), the
//! network interfaces (`getifaddrs`, `/sys/class/net`) and the OS release (`/etc/os-release`).

use std::collections::BTreeSet;

/// The first processor's identity from `/proc/cpuinfo` (x86 field names; absent fields are
/// absent attributes, as on ARM, where the kernel does not report them).
#[derive(Debug, Default, PartialEq)]
pub struct Cpu {
    pub vendor_id: Option<String>,
    pub family: Option<String>,
    pub model_id: Option<String>,
    pub model_name: Option<String>,
    pub stepping: Option<i64>,
    /// In bytes (the kernel reports KB).
    pub cache_l2_size: Option<i64>,
}

pub fn parse_cpuinfo(text: &str) -> Cpu {
    let mut cpu = Cpu::default();
    // Only the first processor's block: every core of a host reports the same identity.
    for line in text.lines().take_while(|l| !l.trim().is_empty()) {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim().to_string();
        match k.trim() {
            "vendor_id" => cpu.vendor_id = Some(v),
            "cpu family" => cpu.family = Some(v),
            "model" => cpu.model_id = Some(v),
            "model name" => cpu.model_name = Some(v),
            "stepping" => cpu.stepping = v.parse().ok(),
            "cache size" => {
                cpu.cache_l2_size = v
                    .trim_end_matches("KB")
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .map(|kb| kb * 1024)
            }
            _ => {}
        }
    }
    cpu
}

pub fn cpu() -> Cpu {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|t| parse_cpuinfo(&t))
        .unwrap_or_default()
}

/// Interfaces that are up and not loopback, with their addresses, in name order.
#[derive(Debug, Default)]
pub struct Interfaces {
    pub names: Vec<String>,
    pub ips: Vec<String>,
    pub macs: Vec<String>,
}

pub fn interfaces() -> Interfaces {
    let mut names = BTreeSet::new();
    let mut ips = Vec::new();
    // SAFETY: getifaddrs allocates a list that we walk while it is alive and free once; each
    // sockaddr is read as the family it declares.
    unsafe {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut head) == 0 {
            let mut cur = head;
            while !cur.is_null() {
                let ifa = &*cur;
                cur = ifa.ifa_next;
                let flags = ifa.ifa_flags;
                if flags & libc::IFF_LOOPBACK as u32 != 0 || flags & libc::IFF_UP as u32 == 0 {
                    continue;
                }
                let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                    .to_string_lossy()
                    .into_owned();
                if ifa.ifa_addr.is_null() {
                    continue;
                }
                match i32::from((*ifa.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let a = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                        ips.push(ip.to_string());
                        names.insert(name);
                    }
                    libc::AF_INET6 => {
                        let a = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        ips.push(std::net::Ipv6Addr::from(a.sin6_addr.s6_addr).to_string());
                        names.insert(name);
                    }
                    _ => {}
                }
            }
            libc::freeifaddrs(head);
        }
    }
    let macs = names
        .iter()
        .filter_map(|n| std::fs::read_to_string(format!("/sys/class/net/{n}/address")).ok())
        .map(|m| ieee_mac(m.trim()))
        .filter(|m| !m.is_empty() && m != "00-00-00-00-00-00")
        .collect();
    Interfaces {
        names: names.into_iter().collect(),
        ips,
        macs,
    }
}

/// The semantic conventions' MAC form: upper-case hex pairs joined by hyphens.
pub fn ieee_mac(m: &str) -> String {
    m.replace(':', "-").to_uppercase()
}

/// `NAME`, `VERSION_ID` and `BUILD_ID` of os-release(5).
#[derive(Debug, Default, PartialEq)]
pub struct OsRelease {
    pub name: Option<String>,
    pub version: Option<String>,
    pub build_id: Option<String>,
}

pub fn parse_os_release(text: &str) -> OsRelease {
    let mut r = OsRelease::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
        match k.trim() {
            "NAME" => r.name = Some(v),
            "VERSION_ID" => r.version = Some(v),
            "BUILD_ID" => r.build_id = Some(v),
            _ => {}
        }
    }
    r
}

pub fn os_release() -> OsRelease {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| parse_os_release(&t))
        .unwrap_or_default()
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string())
}
