"""The shape of the local cluster (nodes, GPUs, partitions), read from ``cluster/cluster.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ...paths import data_file


@dataclass(frozen=True)
class NodeSpec:
    name: str
    cpus: int
    memory_mb: int
    gpu_type: str = ""
    gpus: int = 0
    port: int = 0


@dataclass(frozen=True)
class PartitionSpec:
    name: str
    nodes: tuple[str, ...]
    default_time: str
    max_time: str
    default: bool = False


@dataclass(frozen=True)
class ClusterShape:
    cluster_name: str
    nodes: tuple[NodeSpec, ...]
    partitions: tuple[PartitionSpec, ...] = field(default_factory=tuple)

    @classmethod
    def load(cls, path: Path | None = None, first_node_port: int = 16830) -> ClusterShape:
        path = path or data_file("cluster", "cluster.yaml")
        raw = yaml.safe_load(path.read_text())
        nodes = tuple(
            NodeSpec(port=first_node_port + i, **n) for i, n in enumerate(raw["nodes"])
        )
        names = {n.name for n in nodes}
        partitions = []
        for p in raw["partitions"]:
            unknown = set(p["nodes"]) - names
            if unknown:
                raise ValueError(
                    f"{path}: partition {p['name']} names unknown nodes {sorted(unknown)}"
                )
            partitions.append(PartitionSpec(**{**p, "nodes": tuple(p["nodes"])}))
        return cls(raw["cluster_name"], nodes, tuple(partitions))
