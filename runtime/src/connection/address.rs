//! `Address`: where a [`Listener`](crate::Listener) or manager listens — a TCP socket address or
//! a local (`AF_UNIX`) socket, by path or by Linux abstract name — and the conversions callers
//! pass in (`"127.0.0.1:5000"`, `"unix:/run/app.sock"`, a `SocketAddr`, ...).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sys::net::Endpoint;

/// The address of a [`Listener`](crate::Listener) or a [`Manager`](crate::Manager) server
/// (Python's `address` argument: a `(host, port)` pair or a socket path).
///
/// Written as text: `host:port` for TCP (`127.0.0.1:5000`, `[::1]:5000`, `localhost:5000`),
/// `unix:/path/to.sock` for a socket file, and `unix:@name` for a Linux abstract socket (no
/// file; gone when its listener closes).
///
/// ```
/// let tcp: mp::Address = "127.0.0.1:5000".parse()?;
/// assert_eq!(tcp.to_string(), "127.0.0.1:5000");
/// let local: mp::Address = "unix:@my-app".parse()?;
/// assert_eq!(local, mp::Address::UnixAbstract(b"my-app".to_vec()));
/// assert!("no port here".parse::<mp::Address>().is_err());
/// # Ok::<(), mp::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Address {
    /// A TCP socket address. Port 0 asks the listener for a free port.
    Tcp(SocketAddr),
    /// A local socket bound to a file path.
    Unix(PathBuf),
    /// A local socket in Linux's abstract namespace (no file to clean up).
    UnixAbstract(Vec<u8>),
}

impl Address {
    pub(crate) fn endpoint(&self) -> Endpoint {
        match self {
            Address::Tcp(a) => Endpoint::Tcp(*a),
            Address::Unix(p) => Endpoint::UnixPath(p.clone()),
            Address::UnixAbstract(n) => Endpoint::UnixAbstract(n.clone()),
        }
    }

    pub(crate) fn from_endpoint(endpoint: Endpoint) -> Address {
        match endpoint {
            Endpoint::Tcp(a) => Address::Tcp(a),
            Endpoint::UnixPath(p) => Address::Unix(p),
            Endpoint::UnixAbstract(n) => Address::UnixAbstract(n),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::UnixAbstract(n) => write!(f, "unix:@{}", String::from_utf8_lossy(n)),
        }
    }
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(s: &str) -> Result<Address> {
        if let Some(rest) = s.strip_prefix("unix:") {
            return match rest.strip_prefix('@') {
                Some("") => Err(Error::InvalidArgument(
                    "an abstract socket address needs a name after `unix:@`".to_owned(),
                )),
                Some(name) => Ok(Address::UnixAbstract(name.as_bytes().to_vec())),
                None if rest.is_empty() => Err(Error::InvalidArgument(
                    "a unix socket address needs a path after `unix:`".to_owned(),
                )),
                None => Ok(Address::Unix(PathBuf::from(rest))),
            };
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Address::Tcp(addr));
        }
        let bad = |why: String| {
            Error::InvalidArgument(format!(
                "`{s}` is not an address ({why}); write `host:port`, `unix:/path` or `unix:@name`"
            ))
        };
        let mut resolved = s.to_socket_addrs().map_err(|e| bad(e.to_string()))?;
        resolved
            .next()
            .map(Address::Tcp)
            .ok_or_else(|| bad("the name resolves to no address".to_owned()))
    }
}

/// What can name an [`Address`]: an `Address`, text such as `"127.0.0.1:5000"` or
/// `"unix:/tmp/app.sock"`, a `SocketAddr`, or a `(host, port)` pair.
///
/// ```
/// use mp::ToAddress;
/// let a = ("127.0.0.1", 5000).to_address()?;
/// assert_eq!(a, "127.0.0.1:5000".to_address()?);
/// # Ok::<(), mp::Error>(())
/// ```
pub trait ToAddress {
    /// Converts (parsing or resolving text).
    fn to_address(&self) -> Result<Address>;
}

impl ToAddress for Address {
    fn to_address(&self) -> Result<Address> {
        Ok(self.clone())
    }
}

impl ToAddress for str {
    fn to_address(&self) -> Result<Address> {
        self.parse()
    }
}

impl ToAddress for String {
    fn to_address(&self) -> Result<Address> {
        self.parse()
    }
}

impl ToAddress for SocketAddr {
    fn to_address(&self) -> Result<Address> {
        Ok(Address::Tcp(*self))
    }
}

impl ToAddress for (&str, u16) {
    fn to_address(&self) -> Result<Address> {
        format!("{}:{}", self.0, self.1).parse()
    }
}

impl<T: ToAddress + ?Sized> ToAddress for &T {
    fn to_address(&self) -> Result<Address> {
        (**self).to_address()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for text in [
            "127.0.0.1:80",
            "[::1]:5000",
            "unix:/tmp/x.sock",
            "unix:@name",
        ] {
            let a: Address = text.parse().unwrap();
            assert_eq!(a.to_string(), text);
        }
        assert!(matches!(
            "localhost:1".parse::<Address>(),
            Ok(Address::Tcp(_))
        ));
    }

    #[test]
    fn bad_addresses_say_why() {
        for text in ["", "unix:", "unix:@", "127.0.0.1", "host:notaport"] {
            let e = text.parse::<Address>().unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{text}: {e}");
        }
    }
}
