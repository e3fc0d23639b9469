# JupyterHub configuration of the AI Factory Workbench.
#
# Thin on purpose: the logic lives in workbench/hubconfig.py (tested with a plain Config()).
# Site overrides go in jupyterhub_config.d/*.py next to this file, loaded in sorted order.
# Environment variables a site may set are listed in workbench.hubconfig.Site.
from pathlib import Path

from workbench import hubconfig

c = get_config()  # noqa: F821 (provided by JupyterHub)
hubconfig.configure(c)

for site_file in sorted(Path(__file__).parent.glob("jupyterhub_config.d/*.py")):
    load_subconfig(str(site_file))  # noqa: F821
