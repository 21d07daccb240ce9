"""The package layers of scripts/testhosts preinstall only what the roles install.

A layer spares a scenario's hosts the apt time of a converge. A package the roles no longer
install, left in a layer, would sit on those test hosts and hide the removal; a layer a
scenario names must exist, or its hosts cannot be created.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = (ROOT / "scripts" / "testhosts").read_text()


def bash_array(name: str) -> dict[str, str]:
    body = re.search(rf"^declare -A {name}=\((.*?)\)$", SCRIPT, re.MULTILINE | re.DOTALL)
    assert body, f"{name} not found in scripts/testhosts"
    pairs = re.findall(r'\[([\w-]+)\]=(?:"([^"]*)"|(\S*))', body[1])
    return {key: quoted or bare for key, quoted, bare in pairs}


LAYERS = bash_array("LAYER_PACKAGES")


def role_install_text() -> str:
    """The roles' tasks and OS variables, with `{{ var }}` replaced by the role defaults' value."""
    defaults: dict = {}
    for path in ROOT.glob("roles/*/defaults/main.yml"):
        defaults.update(yaml.safe_load(path.read_text()) or {})
    text = "\n".join(
        p.read_text()
        for pattern in ("roles/*/tasks/*.yml", "roles/*/vars/*.yml")
        for p in sorted(ROOT.glob(pattern))
    )
    return re.sub(r"\{\{ *(\w+) *\}\}", lambda m: str(defaults.get(m[1], m[0])), text)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_every_preinstalled_package_is_one_a_role_installs(layer):
    text = role_install_text()
    packages = (bash_array("LAYER_RECOMMENDED")[layer] + " " + LAYERS[layer]).split()
    assert packages
    unknown = [p for p in packages if not re.search(rf"(?<![\w.-]){re.escape(p)}(?![\w.-])", text)]
    assert not unknown, f"layer {layer} preinstalls what no role installs: {unknown}"


def test_every_layer_a_scenario_names_exists():
    named = {
        platform["preinstalled"]
        for path in ROOT.glob("molecule/*/molecule.yml")
        for platform in yaml.safe_load(path.read_text())["platforms"]
        if "preinstalled" in platform
    }
    assert named, "no scenario names a layer: this test reads the wrong key"
    assert named <= set(LAYERS), f"layers named but not defined: {named - set(LAYERS)}"
    parents = {parent for parent in bash_array("LAYER_FROM").values() if parent}
    assert parents <= set(LAYERS)
