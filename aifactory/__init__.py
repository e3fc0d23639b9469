"""The AI Factory Workbench in a notebook: ``import aifactory as af``.

One public module, a thin facade: every name below lives in ``workbench`` (the logic) or
``extensions`` (the widgets) and is imported on first use, so ``import aifactory`` is quick
and pulls in neither torch nor dask.

Datasets: ``af.datasets(**filters)``, ``af.open_dataset(id)``, ``af.DatasetPicker()``.
Scaling: ``af.ClusterScaler()``, ``af.PoolCluster(...)``, ``af.torch_run(fn, nodes=...,
gpus_per_node=...)``. Asking for help is a JupyterLab command (extensions/help).
"""

from __future__ import annotations

import importlib

#: public name -> "module:attribute" where it lives
_EXPORTS: dict[str, str] = {
    # governed datasets (workbench/catalogue, extensions/widgets/picker.py)
    "datasets": "workbench.catalogue.client:datasets",
    "open_dataset": "workbench.catalogue.client:open_dataset",
    "CatalogueClient": "workbench.catalogue.client:CatalogueClient",
    "DatasetPicker": "extensions.widgets.picker:DatasetPicker",
    # scaling: Dask workers across partitions, torch runs (workbench/scaling, widgets/scaler.py)
    "ClusterScaler": "extensions.widgets.scaler:ClusterScaler",
    "PoolCluster": "workbench.scaling.cluster:PoolCluster",
    "WorkerPool": "workbench.scaling.pools:WorkerPool",
    "ScalingError": "workbench.scaling.pools:ScalingError",
    "torch_run": "workbench.scaling.torchrun:torch_run",
    "torch_submit": "workbench.scaling.torchrun:torch_submit",
    "TorchRunError": "workbench.scaling.torchrun:TorchRunError",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    try:
        target = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'aifactory' has no attribute {name!r}") from None
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
