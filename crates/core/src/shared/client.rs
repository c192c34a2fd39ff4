//! Who a client is, as far as the service can tell from a request: the key
//! its address is known by. The API's rate limits count requests under it
//! and the rollout splits clients by it (`crate::operations::rollout`), so
//! both see the same client.

/// The key a client is rate-limited under: its IPv4 address, or the /64
/// network of its IPv6 address (one subscriber gets a whole /64, so a client
/// rotating addresses inside it must not get a fresh budget each time).
/// Anything else (no address, garbage) shares one `unknown` budget.
#[must_use]
pub fn rate_limit_key(client_ip: Option<&str>) -> String {
    let Some(ip) = client_ip.map(str::trim) else {
        return "unknown".to_owned();
    };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => v4.to_string(),
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_limited_by_ipv4_address_or_ipv6_64() {
        let cases = [
            (Some("203.0.113.7"), "203.0.113.7"),
            (Some(" 203.0.113.7 "), "203.0.113.7"),
            (Some("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64"),
            (
                Some("2001:0db8:0001:0002:ffff:ffff:ffff:ffff"),
                "2001:db8:1:2::/64",
            ),
            (Some("::ffff:198.51.100.9"), "198.51.100.9"),
            (Some("not an address"), "unknown"),
            (None, "unknown"),
        ];
        for (ip, key) in cases {
            assert_eq!(rate_limit_key(ip), key, "{ip:?}");
        }
    }
}
