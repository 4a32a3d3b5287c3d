"""A small NetworkPolicy evaluator: would a connection from one pod to another be allowed?

Follows the Kubernetes semantics the rendered policies use: a pod selected by no policy of
a direction is open in that direction; otherwise some rule of some selecting policy must
match the peer (podSelector / namespaceSelector / ipBlock) and the port.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from tests.deploy.manifests import selects


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace + labels) or, with `ip`, an address outside the cluster."""
    namespace: str | None
    labels: dict = field(default_factory=dict)
    namespace_labels: dict = field(default_factory=dict)
    ip: str | None = None

    @classmethod
    def pod(cls, namespace: str, labels: dict) -> Endpoint:
        return cls(namespace, dict(labels), {"kubernetes.io/metadata.name": namespace})

    @classmethod
    def external(cls, ip: str) -> Endpoint:
        return cls(None, ip=ip)


def _peer_matches(peer: dict, other: Endpoint, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        if other.ip is None:
            return False  # pod traffic is matched by pod/namespace selectors, not ipBlock
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", []))
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or selects(peer["podSelector"], other.labels)


def _port_matches(ports: list[dict] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports)


def _side_allows(policies: list[dict], pod: Endpoint, other: Endpoint, port: int, protocol: str,
                 direction: str) -> bool:
    if pod.namespace is None:
        return True  # outside the cluster: no policy applies
    peer_key = "from" if direction == "Ingress" else "to"
    selecting = [p for p in policies
                 if p["metadata"].get("namespace") == pod.namespace
                 and selects(p["spec"]["podSelector"], pod.labels)
                 and direction in p["spec"].get("policyTypes", ["Ingress"])]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(direction.lower(), []):
            peers = rule.get(peer_key)
            peer_ok = not peers or any(_peer_matches(peer, other, pod.namespace) for peer in peers)
            if peer_ok and _port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def allowed(policies: list[dict], source: Endpoint, target: Endpoint, port: int, protocol: str = "TCP") -> bool:
    return (_side_allows(policies, source, target, port, protocol, "Egress")
            and _side_allows(policies, target, source, port, protocol, "Ingress"))
