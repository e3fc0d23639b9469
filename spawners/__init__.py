"""The hub side of the workbench: the Slurm GPU spawner, its form and the port callback."""

from .slurm_gpu import SlurmGPUSpawner

__all__ = ["SlurmGPUSpawner"]
