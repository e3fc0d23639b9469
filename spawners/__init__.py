"""The hub side of the workbench: the Slurm GPU spawner, its form and the port callback; and
``singleuser``, the job side, which must stay light (so nothing is imported here eagerly)."""

__all__ = ["SlurmGPUSpawner"]


def __getattr__(name):
    if name == "SlurmGPUSpawner":
        from .slurm_gpu import SlurmGPUSpawner

        return SlurmGPUSpawner
    raise AttributeError(f"module 'spawners' has no attribute {name!r}")
