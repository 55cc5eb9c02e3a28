"""Checkpoint -> model: the family registry, family detection and one builder module per family
(`sam`, `sam2`, `sam3`).

Importing the package imports `samkit.build.registry` (standard library only), so that messages in
lower layers (`samkit.io.provenance.display_name`) name every registered family as people do.
"""

from samkit.build import registry as registry  # registers the display names
