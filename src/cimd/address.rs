//! Is an IP address on the public Internet? The metadata document fetcher connects only to addresses this
//! module calls [`AddressClass::Public`]; everything an attacker could use to reach the gateway's own host or
//! network (loopback, RFC 1918, link-local, CGNAT, ULA, multicast, documentation and reserved ranges, and
//! the IPv6 forms that embed one of those IPv4 addresses) is refused.
//!
//! IPv6 is allowed only inside global unicast `2000::/3`, minus its special-purpose blocks; the IPv4 address
//! inside an IPv4-mapped (`::ffff:0:0/96`), NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`) address is
//! classified as IPv4. The deprecated IPv4-compatible block (`::/96`), Teredo and the rest of
//! `2001::/23` are refused outright. Pure: no I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of address this is; every variant but `Public` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    Unspecified,
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`).
    Private,
    /// RFC 6598 shared address space (`100.64/10`), carrier-grade NAT.
    SharedCgnat,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// IPv6 unique local `fc00::/7` and the deprecated site-local `fec0::/10`.
    UniqueLocal,
    Multicast,
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18/15`.
    Benchmarking,
    /// Everything else that is not globally reachable unicast: `0/8`, `192.0.0/24`, `192.88.99/24`,
    /// `240/4`, `::/96`, `100::/64`, `2001::/23`, `64:ff9b:1::/48`, `5f00::/16`, outside `2000::/3`.
    Reserved,
}

impl AddressClass {
    /// A fixed label for logs and errors (never the address itself).
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::SharedCgnat => "shared (CGNAT)",
            AddressClass::LinkLocal => "link-local",
            AddressClass::UniqueLocal => "unique local",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Documentation => "documentation",
            AddressClass::Benchmarking => "benchmarking",
            AddressClass::Reserved => "reserved",
        }
    }
}

/// The class of `ip` (see the module documentation).
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// May the fetcher connect to `ip`?
pub fn is_public(ip: IpAddr) -> bool {
    classify(ip) == AddressClass::Public
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    use AddressClass::*;
    const TABLE: &[([u8; 4], u32, AddressClass)] = &[
        ([0, 0, 0, 0], 32, Unspecified),
        ([0, 0, 0, 0], 8, Reserved),
        ([10, 0, 0, 0], 8, Private),
        ([100, 64, 0, 0], 10, SharedCgnat),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([172, 16, 0, 0], 12, Private),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 0, 2, 0], 24, Documentation),
        ([192, 88, 99, 0], 24, Reserved),
        ([192, 168, 0, 0], 16, Private),
        ([198, 18, 0, 0], 15, Benchmarking),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([224, 0, 0, 0], 4, Multicast),
        ([255, 255, 255, 255], 32, Broadcast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    TABLE.iter().find(|(net, prefix, _)| in_v4(ip, *net, *prefix)).map_or(Public, |(_, _, class)| *class)
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

/// The IPv4 address in the low 32 bits.
fn low_v4(ip: Ipv6Addr) -> Ipv4Addr {
    Ipv4Addr::from((u128::from(ip) & 0xffff_ffff) as u32)
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    use AddressClass::*;
    if ip.is_unspecified() {
        return Unspecified;
    }
    if ip.is_loopback() {
        return Loopback;
    }
    // IPv4-mapped and NAT64 (well-known prefix) addresses reach the IPv4 address inside.
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96) || in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return classify_v4(low_v4(ip));
    }
    // 6to4: the IPv4 address of the relay is bits 16..48.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        let [_, a, b, ..] = ip.segments();
        return classify_v4(Ipv4Addr::from((u32::from(a) << 16) | u32::from(b)));
    }
    const TABLE: &[([u16; 8], u32, AddressClass)] = &[
        ([0, 0, 0, 0, 0, 0, 0, 0], 96, Reserved), // IPv4-compatible, deprecated (RFC 4291 §2.5.5.1)
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, Reserved), // local-use NAT64 (RFC 8215)
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, Reserved), // discard-only
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, Documentation),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, Reserved), // IETF protocol assignments, Teredo
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, Documentation),
        ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, Reserved), // SRv6 SIDs
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, UniqueLocal),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, LinkLocal),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, UniqueLocal), // site-local, deprecated
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, Multicast),
    ];
    if let Some((_, _, class)) = TABLE.iter().find(|(net, prefix, _)| in_v6(ip, *net, *prefix)) {
        return *class;
    }
    if in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        Public
    } else {
        Reserved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use AddressClass::*;

    fn class(text: &str) -> AddressClass {
        classify(text.parse().unwrap())
    }

    #[test]
    fn every_refused_ipv4_range_at_its_edges() {
        let cases = [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Reserved),
            ("10.0.0.0", Private),
            ("10.255.255.255", Private),
            ("100.64.0.0", SharedCgnat),
            ("100.127.255.255", SharedCgnat),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("169.254.169.254", LinkLocal),
            ("172.16.0.0", Private),
            ("172.31.255.255", Private),
            ("192.0.0.8", Reserved),
            ("192.0.2.1", Documentation),
            ("192.88.99.1", Reserved),
            ("192.168.1.1", Private),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("224.0.0.1", Multicast),
            ("239.255.255.255", Multicast),
            ("240.0.0.1", Reserved),
            ("255.255.255.254", Reserved),
            ("255.255.255.255", Broadcast),
        ];
        for (ip, expected) in cases {
            assert_eq!(class(ip), expected, "{ip}");
        }
    }

    #[test]
    fn public_ipv4_just_outside_the_refused_ranges() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert_eq!(class(ip), Public, "{ip}");
        }
    }

    #[test]
    fn every_refused_ipv6_range() {
        let cases = [
            ("::", Unspecified),
            ("::1", Loopback),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::127.0.0.1", Reserved),
            ("::8.8.8.8", Reserved),
            ("64:ff9b::127.0.0.1", Loopback),
            ("64:ff9b::192.168.0.1", Private),
            ("64:ff9b::100.64.0.1", SharedCgnat),
            ("64:ff9b:1::1", Reserved),
            ("100::1", Reserved),
            ("2001::1", Reserved),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Reserved),
            ("2001:db8::1", Documentation),
            ("2002:7f00:0001::1", Loopback),
            ("2002:c0a8:0101::1", Private),
            ("2002:a9fe:a9fe::1", LinkLocal),
            ("3fff::1", Documentation),
            ("5f00::1", Reserved),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", UniqueLocal),
            ("ff02::1", Multicast),
            ("::2", Reserved),
            ("1::1", Reserved),
            ("4000::1", Reserved),
        ];
        for (ip, expected) in cases {
            assert_eq!(class(ip), expected, "{ip}");
        }
    }

    #[test]
    fn public_ipv6() {
        for ip in
            ["2606:4700:4700::1111", "2a00:1450:4001::200e", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:0808:0808::1"]
        {
            assert_eq!(class(ip), Public, "{ip}");
        }
    }

    fn nat64(v4: Ipv4Addr) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u128::from(u32::from(v4))))
    }

    fn six_to_four(v4: Ipv4Addr, rest: u128) -> IpAddr {
        let bits = (0x2002_u128 << 112) | (u128::from(u32::from(v4)) << 80) | (rest & ((1 << 80) - 1));
        IpAddr::V6(Ipv6Addr::from(bits))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn embedded_ipv4_is_judged_as_the_ipv4_address(v4 in any::<u32>().prop_map(Ipv4Addr::from), rest in any::<u128>()) {
            let expected = classify(IpAddr::V4(v4));
            prop_assert_eq!(classify(IpAddr::V6(v4.to_ipv6_mapped())), expected);
            prop_assert_eq!(classify(nat64(v4)), expected);
            prop_assert_eq!(classify(six_to_four(v4, rest)), expected);
            // The deprecated IPv4-compatible form is never connected to.
            prop_assert!(!is_public(IpAddr::V6(v4.to_ipv6_compatible())));
        }

        #[test]
        fn nothing_refused_by_the_standard_library_is_public(ip in any::<IpAddr>()) {
            if is_public(ip) {
                prop_assert!(!ip.is_loopback() && !ip.is_unspecified() && !ip.is_multicast());
                if let IpAddr::V4(v4) = ip {
                    prop_assert!(!v4.is_private() && !v4.is_link_local() && !v4.is_broadcast() && !v4.is_documentation());
                }
                if let IpAddr::V6(v6) = ip {
                    prop_assert!(!v6.is_unique_local() && !v6.is_unicast_link_local());
                    let embeds_v4 = v6.to_ipv4_mapped().is_some() || u128::from(v6) >> 32 == 0x0064_ff9b << 64;
                    prop_assert!(u128::from(v6) >> 125 == 1 || embeds_v4, "outside 2000::/3");
                }
            }
        }

        #[test]
        fn a_public_ipv4_address_is_public_in_every_form(v4 in any::<u32>().prop_map(Ipv4Addr::from)) {
            prop_assume!(is_public(IpAddr::V4(v4)));
            prop_assert!(is_public(IpAddr::V6(v4.to_ipv6_mapped())));
            prop_assert!(is_public(nat64(v4)));
        }
    }
}
