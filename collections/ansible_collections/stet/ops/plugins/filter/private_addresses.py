# Copyright: STET Ops contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# Plugins open with their documentation strings, so imports come after them.
# ruff: noqa: E402
"""The private_addresses filter: the address other hosts dial, for each host of a list."""

from __future__ import annotations

DOCUMENTATION = r"""
name: private_addresses
short_description: The private address of each host in a list
version_added: 1.2.0
description:
  - For each inventory host name, the address the other hosts of the platform dial, that is
    its C(stet_private_address) when the inventory sets one, else the default IPv4 address
    from its gathered facts. Every role that writes an allow-list, a peer list or a connection
    string from a group uses it, so they all agree on a host's address.
  - Fails, naming the host, when a host has neither (its facts were not gathered).
options:
  _input:
    description: Inventory host names, in the order wanted.
    type: list
    elements: string
    required: true
  hostvars:
    description: The play's C(hostvars).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Allow PostgreSQL from every API host
  community.general.ufw:
    rule: allow
    port: "5432"
    proto: tcp
    from_ip: "{{ item }}"
  loop: "{{ groups['stet_api'] | stet.ops.private_addresses(hostvars) }}"
"""

RETURN = r"""
_value:
  description: One address per host, in the order of the input.
  type: list
  elements: string
"""

from ansible.errors import AnsibleFilterError


def private_addresses(hosts, hostvars):
    addresses = []
    for host in hosts:
        host_vars = hostvars[host]
        address = host_vars.get("stet_private_address") or (
            (host_vars.get("ansible_facts") or {}).get("default_ipv4") or {}
        ).get("address")
        if not address:
            raise AnsibleFilterError(
                f"private_addresses: {host} has no stet_private_address and no gathered default IPv4"
                " address; gather the facts of every host first (playbooks/facts.yml)"
            )
        addresses.append(address)
    return addresses


class FilterModule:
    def filters(self):
        return {"private_addresses": private_addresses}
