"""stet.ops.private_addresses: the inventory's address first, the facts' next, a named error."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.stet.ops.plugins.filter.private_addresses import private_addresses

HOSTVARS = {
    "db1": {"stet_private_address": "10.0.0.5", "ansible_facts": {"default_ipv4": {"address": "192.0.2.5"}}},
    "db2": {"ansible_facts": {"default_ipv4": {"address": "192.0.2.6"}}},
    "api1": {"stet_private_address": "", "ansible_facts": {"default_ipv4": {"address": "192.0.2.7"}}},
    "bare": {"ansible_facts": {}},
}


def test_the_inventory_address_wins_over_the_facts_and_the_order_is_kept():
    assert private_addresses(["db2", "db1"], HOSTVARS) == ["192.0.2.6", "10.0.0.5"]


def test_an_empty_inventory_address_falls_back_to_the_facts():
    assert private_addresses(["api1"], HOSTVARS) == ["192.0.2.7"]


def test_no_hosts_no_addresses():
    assert private_addresses([], HOSTVARS) == []


def test_a_host_without_either_is_named():
    with pytest.raises(AnsibleFilterError, match="bare has no stet_private_address"):
        private_addresses(["db1", "bare"], HOSTVARS)
