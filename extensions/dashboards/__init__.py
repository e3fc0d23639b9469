"""The support and manager dashboards: one top-level widget each, served by Voila behind the
hub (:mod:`.service`). The data comes from :mod:`workbench.dashboards`.

The widgets are imported lazily, so the service launcher pulls in no widget library."""

__all__ = ["ManagerDashboard", "SupportDashboard"]


def __getattr__(name):
    if name == "ManagerDashboard":
        from .manager import ManagerDashboard
        return ManagerDashboard
    if name == "SupportDashboard":
        from .support import SupportDashboard
        return SupportDashboard
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
