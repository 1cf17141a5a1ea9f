"""Which addresses a URL fetched on someone's behalf may reach: one policy for the engine and the pipeline.

A URL that comes from a caller (a talk's source_url or webhook, a CSV cell, a file dropped in an inbox) must
not reach what we can reach and the caller cannot: loopback, private networks, link-local, and above all
the cloud metadata services, which hand out credentials. So:

- public addresses only, unless an explicit allowlist names networks (CIDR) or host names;
- cloud metadata and credential endpoints never, allowlisted or not, in any spelling (an IPv4 address
  inside an IPv6 one, decimal or hex forms: the resolver's answer is what is checked);
- every address the host's lookup answers is checked (one refused answer refuses the URL), and the
  client connects to the checked address, not to the name again: a second lookup could answer a private
  address ("DNS rebinding");
- a redirect is a new URL: each hop passes the same check.

The HTTP clients that apply it live in each half (talkmill_engine.fetch, connectors.urlfetch); this module
only decides. Standard library only.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_REDIRECTS = 5
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
HTTP_SCHEMES = ("http", "https")

# Cloud metadata and credential endpoints: reachable from inside the machine only, and answering with
# its secrets. Never allowed, whatever an allowlist says.
METADATA_NETWORKS: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in (
    "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean instance metadata
    "169.254.170.2/32",  # AWS ECS task credentials
    "169.254.170.23/32",  # AWS EKS Pod Identity credentials
    "fd00:ec2::254/128",  # AWS instance metadata over IPv6
    "fd00:ec2::23/128",  # AWS EKS Pod Identity over IPv6
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "168.63.129.16/32",  # Azure WireServer (looks public; it is the host platform)
))  # fmt: skip
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known prefix: the last 32 bits are an IPv4 address
PUBLIC_ONLY_TEXT = ("public internet addresses only "
                    "(no private, loopback, link-local, multicast or reserved ones)")
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


class UrlRefused(ValueError):
    """A URL the policy refuses: what was wrong and what is allowed. `transient`: its host could not be
    resolved, which may pass (a refused address will not)."""

    def __init__(self, problem: str, allowed: str, *, transient: bool = False) -> None:
        super().__init__(problem)
        self.problem, self.allowed, self.transient = problem, allowed, transient


@dataclass(frozen=True)
class UrlPolicy:
    """Public addresses, plus the allowlisted `networks` and `hosts` (names, lowercase); metadata never."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def from_entries(cls, entries: str | Iterable[str]) -> UrlPolicy:
        """From "127.0.0.1/32,10.0.0.0/8,intranet.example" (commas or spaces) or a list of such entries: a
        network in CIDR form (a bare address is one address), or a host name. ValueError names a bad entry."""
        items = re.split(r"[,\s]+", entries) if isinstance(entries, str) else list(entries)
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in (item.strip() for item in items):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(_host_entry(entry))
        return cls(tuple(networks), frozenset(hosts))

    @property
    def entries(self) -> list[str]:
        return [str(network) for network in self.networks] + sorted(self.hosts)

    @property
    def allowed(self) -> str:
        """What this policy lets through, for error messages."""
        extra = ", ".join(self.entries)
        return f"{PUBLIC_ONLY_TEXT}, and the allowlist: {extra}" if extra else PUBLIC_ONLY_TEXT

    def check(self, host: str, addresses: list[str]) -> str:
        """The address to connect to for `host`, whose lookup answered `addresses`: each must pass, or
        UrlRefused names the first that does not."""
        if not addresses:
            raise UrlRefused(f"could not resolve the host {host!r}", "a resolvable host", transient=True)
        for address in addresses:
            if problem := self.refusal(host, address):
                raise UrlRefused(problem, self.allowed)
        return addresses[0]

    def refusal(self, host: str, address: str) -> str | None:
        """Why connecting to `address` (an answer of `host`'s lookup) is refused, or None."""
        ip = _address(address)
        if is_metadata_address(ip):
            return (f"the host {host!r} is (or resolves to) the cloud metadata address {ip}, "
                    "which is never allowed")
        if is_public_address(ip) or _host_key(host) in self.hosts:
            return None
        if any(_unmapped(ip) in network for network in self.networks):
            return None
        return f"the host {host!r} is (or resolves to) the non-public address {ip}"


PUBLIC_ONLY = UrlPolicy()


def resolve_host(host: str, port: int) -> list[str]:
    """Every address the host resolves to (an IP literal, in any spelling the resolver reads, resolves to
    itself), in the resolver's order, without repeats."""
    infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public_address(address: str | IPAddress) -> bool:
    """A global unicast address, and so is every IPv4 address inside it (mapped, 6to4, Teredo, NAT64)."""
    ip = _address(address)
    return all(_is_public(candidate) for candidate in (ip, *_embedded_ipv4(ip)))


def is_metadata_address(address: str | IPAddress) -> bool:
    ip = _address(address)
    candidates = (ip, *_embedded_ipv4(ip))
    return any(c in net for c in candidates for net in METADATA_NETWORKS if c.version == net.version)


def _is_public(ip: IPAddress) -> bool:
    # is_global alone misses multicast (224.0.0.1 counts as "global") and IPv4-compatible ::a.b.c.d
    flags = (ip.is_private, ip.is_loopback, ip.is_link_local, ip.is_multicast, ip.is_reserved)
    return ip.is_global and not ip.is_unspecified and not any(flags)


def _embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped ::ffff:a.b.c.d, IPv4-compatible ::a.b.c.d,
    6to4, Teredo, NAT64): each is checked too, as it may be where the packets end up."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    compatible = low32 if int(ip) >> 32 == 0 else None
    nat64 = low32 if ip in NAT64 else None
    teredo = list(ip.teredo) if ip.teredo else []
    return [a for a in (ip.ipv4_mapped, compatible, nat64, ip.sixtofour, *teredo) if a is not None]


def _unmapped(ip: IPAddress) -> IPAddress:
    """::ffff:10.0.0.1 is 10.0.0.1 for the allowlist: an IPv4 network names both spellings."""
    return ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip


def _address(address: str | IPAddress) -> IPAddress:
    if isinstance(address, str):
        return ipaddress.ip_address(address.strip("[]").split("%", 1)[0])  # drop a zone ("fe80::1%eth0")
    return address


def _host_key(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _host_entry(entry: str) -> str:
    host = _host_key(entry)
    if not _HOST_NAME.fullmatch(host):
        raise ValueError(f"{entry!r} is neither a network (CIDR, e.g. 10.0.0.0/8) nor a host name")
    return host
