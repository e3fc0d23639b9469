"""Governed datasets: the DCAT-AP catalogue, who may read what, and what was read.

Modules, one job each: :mod:`.model` (the catalogue file, loaded with line numbers),
:mod:`.search` (the search index), :mod:`.jsonld` (DCAT-AP JSON-LD), :mod:`.policy`
(programme/project rules, licence acceptances), :mod:`.fsaccess` (the file system enforces
it: a Unix group per project, ACLs), :mod:`.lineage` (opens in the audit trail and on the
Slurm job), :mod:`.store` (what the ``catalogue`` service serves), :mod:`.demodata` (the demo
datasets), :mod:`.aiact` (the AI Act training-data summary), :mod:`.client` and
:mod:`.torchdata` (``af.datasets``, ``af.open_dataset`` and the handle's loaders).
"""
