"""The ``catalogue`` hub service: the governed datasets' DCAT-AP catalogue, licence
acceptance and open (:mod:`.service`; ``python -m extensions.catalogue``). The logic lives in
:mod:`workbench.catalogue`; notebooks reach it through ``aifactory`` (``af.datasets``,
``af.open_dataset``, ``af.DatasetPicker``)."""
