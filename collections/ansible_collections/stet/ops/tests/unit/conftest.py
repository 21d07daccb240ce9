"""Makes ansible_collections.stet.ops importable when pytest runs outside ansible-test."""

import sys
from pathlib import Path

COLLECTIONS_ROOT = Path(__file__).resolve().parents[5]
if str(COLLECTIONS_ROOT) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_ROOT))
