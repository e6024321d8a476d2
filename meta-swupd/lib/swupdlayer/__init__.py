"""Helpers of the meta-swupd layer, called from swupd-image.bbclass.

Listed in BBIMPORTS so that BitBake tracks their code in task signatures: editing a helper
reruns the tasks that call it.
"""

BBIMPORTS = ["bundles"]
